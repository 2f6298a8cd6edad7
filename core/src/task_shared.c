/* SPDX-License-Identifier: MIT */
/* Shared-stack tasks: all run on one stack per loop, and a suspended
 * task's frames wait in a save area of its own, copied out when another
 * shared-stack task needs the stack and back (to the same addresses) when
 * it runs again. A task costs its save area (its frames: a few hundred
 * bytes while it awaits) instead of a stack's pages, at the price of two
 * copies when the tasks taking turns differ. The copies are lazy: a task
 * that suspends and resumes with nobody in between copies nothing.
 *
 * What this asks of the code running in such a task: nothing may point
 * into its frames while it is suspended (its locals are elsewhere then),
 * and if it runs a nested main loop, other shared-stack tasks wait until
 * that loop returns (their frames cannot go where the running task's
 * are). */
#include "task_internal.h"

#include "alloc.h"
#include "error.h"

#include <stdlib.h>

/* Slack above the depth measured when a task reserves, for the frames of
 * the suspension itself (lb__task_suspend, the switch: under 100 bytes in
 * optimised and sanitizer builds alike). */
#define SUSPEND_FRAMES 256

static unsigned char *stack_top(const lb__tasks *ts) {
    return (unsigned char *)ts->shared->lo + ts->shared->size;
}

int lb__shared_reserve(lb_task *t) {
    lb__tasks *ts = t->loop->task_state;
    unsigned char here;
    size_t need = (size_t)(stack_top(ts) - &here) + SUSPEND_FRAMES;
    if (need <= t->saved_cap)
        return 0;
    /* Grow by halves, so a task that goes deeper step by step does not
     * reallocate at every suspension. */
    size_t cap = t->saved_cap + t->saved_cap / 2;
    if (cap < need)
        cap = need;
    unsigned char *p = lb__realloc(t->saved, cap);
    if (!p)
        return -ENOMEM;
    t->saved = p;
    t->saved_cap = cap;
    return 0;
}

static void save_frames(lb__tasks *ts, lb_task *t) {
    unsigned char *start = lb__fiber_frames_start(&t->fiber);
    t->saved_len = (size_t)(stack_top(ts) - start);
    /* lb__shared_reserve made room before the task suspended; frames
     * deeper than that would mean SUSPEND_FRAMES is wrong for this
     * compiler, and copying them would corrupt memory. */
    if (t->saved_len > t->saved_cap) {
        lb__log(LB_LOG_ERROR, "task %s: %zu bytes of frames, room for %zu: SUSPEND_FRAMES "
                              "is too small for this build", t->name, t->saved_len, t->saved_cap);
        abort();
    }
    lb__fiber_copy_frames(t->saved, start, t->saved_len, false);
}

static void restore_frames(lb__tasks *ts, lb_task *t) {
    lb__fiber_copy_frames(stack_top(ts) - t->saved_len, t->saved, t->saved_len, true);
}

static void park(lb__tasks *ts, lb_task *t) {
    if (t->parked)
        return;
    t->parked = true;
    t->next_parked = NULL;
    if (ts->parked_tail)
        ts->parked_tail->next_parked = t;
    else
        ts->parked = t;
    ts->parked_tail = t;
}

bool lb__shared_claim(lb__tasks *ts, lb_task *t) {
    lb_task *owner = ts->shared_owner;
    if (owner == t)
        return true;
    if (owner && owner->state == LB__TASK_RUNNING) {
        /* Its nested main loop is what resumes t. */
        park(ts, t);
        return false;
    }
    if (owner)
        save_frames(ts, owner);
    if (t->state == LB__TASK_CREATED) /* spawn left the entry in the fiber */
        lb__fiber_init(&t->fiber, ts->shared, t->fiber.entry, t->fiber.arg);
    else
        restore_frames(ts, t);
    ts->shared_owner = t;
    ts->shared->owner = t->name;
    return true;
}

void lb__shared_unpark(lb__tasks *ts, void (*resume)(lb_task *t)) {
    while (ts->parked) {
        if (ts->shared_owner && ts->shared_owner->state == LB__TASK_RUNNING)
            return;
        lb_task *t = ts->parked;
        ts->parked = t->next_parked;
        if (!ts->parked)
            ts->parked_tail = NULL;
        t->parked = false;
        if (t->state == LB__TASK_CREATED || t->state == LB__TASK_SUSPENDED)
            resume(t);
    }
}

void lb__shared_release(lb__tasks *ts, lb_task *t) {
    if (ts->shared_owner == t)
        ts->shared_owner = NULL;
    if (t->parked) {
        /* Ended without getting the stack (reclaimed at close). */
        lb_task **link = &ts->parked, *prev = NULL;
        while (*link != t) {
            prev = *link;
            link = &(*link)->next_parked;
        }
        *link = t->next_parked;
        if (ts->parked_tail == t)
            ts->parked_tail = prev;
        t->parked = false;
    }
    lb__free(t->saved);
    t->saved = NULL;
    t->saved_len = t->saved_cap = 0;
}

int lb__shared_prepare(lb__tasks *ts, lb_task *t, void (*entry)(void *arg)) {
    if (!ts->shared) {
        int r = lb__stack_acquire(ts->stacks, 0, &ts->shared);
        if (r < 0)
            return r;
    }
    t->shared = true;
    t->fiber.entry = entry;
    t->fiber.arg = t;
    return 0;
}

void lb__shared_destroy(lb__tasks *ts) {
    if (ts->shared)
        lb__stack_release(ts->stacks, ts->shared);
    ts->shared = NULL;
    ts->shared_owner = NULL;
}
