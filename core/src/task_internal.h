/* SPDX-License-Identifier: MIT */
#ifndef LB_TASK_INTERNAL_H
#define LB_TASK_INTERNAL_H

#include <loopbridge/task.h>

#include "fiber/fiber.h"
#include "fiber/stack.h"
#include "future_internal.h"

typedef enum lb__task_state {
    LB__TASK_CREATED,   /* spawned, first step queued */
    LB__TASK_RUNNING,   /* on its own stack now */
    LB__TASK_SUSPENDED, /* waiting in lb_await / lb_sleep / lb_yield */
    LB__TASK_DONE,
} lb__task_state;

/* Why a suspended task waits, so that cancellation knows what to undo. */
typedef enum lb__task_wait {
    LB__WAIT_NONE,
    LB__WAIT_FUTURE, /* awaiting, the future's done callback resumes it */
    LB__WAIT_TIMER,  /* lb_sleep: a timer handle resumes it */
    LB__WAIT_STEP,   /* lb_yield or first run: a queued step resumes it */
} lb__task_wait;

struct lb_task {
    lb_loop *loop;
    unsigned refs; /* the loop holds one until the task ends */
    lb__task_state state;
    lb__task_wait wait;
    lb_task_fn fn;
    void *data;
    lb_future *future;      /* the task's outcome */
    lb_future *awaiting;    /* LB__WAIT_FUTURE */
    lb_handle *timer;       /* LB__WAIT_TIMER */
    /* lb_wait_for's timer and whether it fired: kept here, not in the
     * task's frames, which a shared-stack task's neighbours overwrite
     * while it waits. */
    lb_handle *deadline;
    bool deadline_passed;
    unsigned cancel_requests;
    bool must_cancel;       /* deliver -ECANCELED at the next (or current) wait */
    bool close_cancelled;   /* close already asked it to unwind */
    void *result;
    lb_destroy_fn result_destroy;
    int status;             /* what fn returned */
    lb__stack *stack;       /* NULL for a shared-stack task */
    lb__fiber fiber;        /* the task's own context */
    /* Shared-stack tasks (LB_TASK_SHARED_STACK, task_shared.c): where
     * their frames wait while another task has the shared stack. */
    bool shared;
    bool parked;            /* woken while the shared stack was taken */
    lb_task *next_parked;
    unsigned char *saved;
    size_t saved_len, saved_cap;
    lb__fiber caller;       /* where to go when it suspends or ends */
    lb_task *prev, *next;   /* the loop's live tasks */
    char name[32];
};

/* The loop's task state (loop->task_state). */
typedef struct lb__tasks {
    lb__stack_pool *stacks;
    lb__stack *shared;      /* the shared stack, made on first use */
    lb_task *shared_owner;  /* whose frames are on it */
    lb_task *parked, *parked_tail; /* waiting for it, oldest first */
    lb_task *live;
    size_t count;
    uint64_t next_id;
} lb__tasks;

/* Suspends the running task until something resumes it. Returns when it
 * was resumed. */
void lb__task_suspend(lb_task *t, lb__task_wait why);

/* Queues a step that resumes t in the next iteration. Returns 0 or
 * -ENOMEM. */
int lb__task_schedule_step(lb_task *t);

/* Shared-stack tasks (task_shared.c). */

/* Makes a new task a shared-stack one: the loop's shared stack is made if
 * need be, and entry(t) runs when the task first gets it. 0 or -ENOMEM. */
int lb__shared_prepare(lb__tasks *ts, lb_task *t, void (*entry)(void *arg));

/* Makes t's frames live on the shared stack, saving the owner's; false
 * when the owner is running (t has been parked: lb__shared_unpark resumes
 * it once the owner stops running). */
bool lb__shared_claim(lb__tasks *ts, lb_task *t);

/* Before a shared-stack task suspends: makes room to save its frames, so
 * that saving them later cannot fail. 0 or -ENOMEM. */
int lb__shared_reserve(lb_task *t);

/* Resumes the parked tasks while the shared stack's owner is not running. */
void lb__shared_unpark(lb__tasks *ts, void (*resume)(lb_task *t));

/* A shared-stack task ended: its frames and save area go. */
void lb__shared_release(lb__tasks *ts, lb_task *t);

/* Frees the shared stack (every task ended). */
void lb__shared_destroy(lb__tasks *ts);

#endif
