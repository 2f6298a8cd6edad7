/* SPDX-License-Identifier: MIT */
/* Coalescing cross-thread posts. A coalescer holds one slot, swapped
 * atomically, and a "scheduled" flag: a post stores its value in the
 * slot (destroying the unread one it replaced) and posts a delivery to
 * the loop only if none is scheduled; the delivery clears the flag
 * before it empties the slot. So a value stored after the delivery took
 * the slot finds the flag clear and schedules the next one (the flag's
 * check comes after the store in every post, and the clearing before the
 * take in every delivery: all sequentially consistent), and no value is
 * ever left in the slot without a delivery on its way, except at close,
 * where the dropped delivery empties the slot and later posts fail.
 *
 * A scheduled delivery holds a reference to the coalescer, so that the
 * coalescer outlives it whenever the user frees it. The delivery goes
 * through the inbox with a drop function, run instead of it when the
 * loop closes first, which destroys the value it would have delivered.
 *
 * Paced (lb_coalesce_set_interval), a delivery that comes less than the
 * interval after the previous one waits on a loop timer instead, the
 * flag still set: posts meanwhile only replace the slot, and the timer
 * delivers the latest value. The timer takes over the delivery's
 * reference; its destroy notify, which runs once whether the timer fired
 * or the loop closed first, gives it back (and, closing, destroys the
 * value). */
#include <loopbridge/coalesce.h>

#include "alloc.h"
#include "error.h"
#include "loop_internal.h"

struct lb_coalesce {
    lb_loop *loop;
    lb_coalesce_fn cb;
    void *data;
    lb_destroy_fn destroy;
    _Atomic(void *) slot; /* the latest unread value, or EMPTY */
    atomic_bool scheduled; /* a delivery is on its way to the loop */
    atomic_bool freed;     /* lb_coalesce_free() was called */
    atomic_uint refs;      /* the user's, and one per scheduled delivery */
    /* Loop thread only: */
    int64_t interval_ns;   /* deliveries at least this far apart; 0: unpaced */
    int64_t last_ns;       /* lb_loop_time_ns() of the last delivery, 0: none */
    bool paced_ran;        /* the pacing timer's callback ran (for its destroy) */
};

/* Marks the empty slot: an address no caller can pass as a value, so
 * that NULL and every integer cast to a pointer remain values. */
static char empty_marker;
#define EMPTY ((void *)&empty_marker)

static void drop_value(lb_coalesce *c, void *value) {
    if (value != EMPTY && c->destroy)
        c->destroy(value);
}

static void coalesce_unref(lb_coalesce *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    drop_value(c, atomic_exchange(&c->slot, EMPTY));
    lb_loop_unref(c->loop);
    lb__free(c);
}

/* On the loop's thread: the latest value goes to the callback. The
 * caller gives back the delivery's reference. */
static void deliver_latest(lb_loop *loop, lb_coalesce *c) {
    atomic_store(&c->scheduled, false);
    void *value = atomic_exchange(&c->slot, EMPTY);
    if (value != EMPTY) {
        if (atomic_load(&c->freed)) {
            drop_value(c, value);
        } else {
            c->last_ns = lb_loop_time_ns(loop);
            c->cb(loop, value, c->data);
        }
    }
}

static void paced_deliver(lb_loop *loop, void *data) {
    lb_coalesce *c = data;
    c->paced_ran = true;
    deliver_latest(loop, c);
}

/* The pacing timer's destroy: after paced_deliver, or instead of it when
 * the loop closes first. */
static void paced_done(void *data) {
    lb_coalesce *c = data;
    if (!c->paced_ran) {
        atomic_store(&c->scheduled, false);
        drop_value(c, atomic_exchange(&c->slot, EMPTY));
    }
    c->paced_ran = false;
    coalesce_unref(c);
}

static void deliver(lb_loop *loop, void *data) {
    lb_coalesce *c = data;
    if (c->interval_ns > 0 && c->last_ns && !atomic_load(&c->freed)) {
        int64_t due = c->last_ns + c->interval_ns;
        if (lb_loop_time_ns(loop) < due &&
            lb_loop_call_at_full(loop, (double)due / 1e9, paced_deliver, c, paced_done, NULL) == 0)
            return; /* the timer has the delivery and its reference now */
        /* due already, or no timer to be had: delivered now */
    }
    deliver_latest(loop, c);
    coalesce_unref(c);
}

/* The loop closed before the delivery ran (possibly under the inbox's
 * lock): the value it would have delivered is destroyed; posts from now
 * on fail, as the loop is closed. */
static void dropped(lb_loop *loop, void *data) {
    lb_coalesce *c = data;
    (void)loop;
    atomic_store(&c->scheduled, false);
    drop_value(c, atomic_exchange(&c->slot, EMPTY));
    coalesce_unref(c);
}

int lb_coalesce_new(lb_loop *loop, lb_coalesce_fn cb, void *data, lb_destroy_fn destroy,
                    lb_coalesce **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(cb, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    if (lb__loop_closing(loop))
        return lb__fail(loop, -EBADF, "lb_coalesce_new: loop is closing");
    lb_coalesce *c = lb__calloc(1, sizeof *c);
    if (!c)
        return lb__fail(loop, -ENOMEM, "lb_coalesce_new: out of memory");
    c->loop = lb_loop_ref(loop);
    c->cb = cb;
    c->data = data;
    c->destroy = destroy;
    atomic_init(&c->slot, EMPTY);
    atomic_init(&c->scheduled, false);
    atomic_init(&c->freed, false);
    atomic_init(&c->refs, 1);
    *ret = c;
    return 0;
}

int lb_coalesce_post(lb_coalesce *coalesce, void *value) {
    lb_assert_return(coalesce, -EINVAL);
    lb_coalesce *c = coalesce;
    if (lb_loop_is_closed(c->loop)) {
        drop_value(c, value);
        return lb__fail(NULL, -EBADF, "lb_coalesce_post: loop is closed");
    }
    drop_value(c, atomic_exchange(&c->slot, value)); /* the unread one it replaced */
    if (atomic_exchange(&c->scheduled, true))
        return 0; /* the delivery on its way takes it */
    atomic_fetch_add(&c->refs, 1);
    int r = lb__post_internal(c->loop, deliver, c, dropped);
    if (r == 0)
        return 0;
    /* Nothing will deliver the slot: clear the flag first, so that a post
     * storing after the take below schedules its own delivery, then
     * destroy what is there (this value, or a later one whose poster saw
     * the flag set and returned 0: either way destroyed once). */
    atomic_store(&c->scheduled, false);
    drop_value(c, atomic_exchange(&c->slot, EMPTY));
    coalesce_unref(c);
    return lb__fail(NULL, r, r == -EBADF ? "lb_coalesce_post: loop is closed"
                                         : "lb_coalesce_post: out of memory");
}

int lb_coalesce_set_interval(lb_coalesce *coalesce, double seconds) {
    lb_assert_return(coalesce, -EINVAL);
    LB__CHECK_LOOP(coalesce->loop);
    if (!(seconds >= 0 && seconds <= LB_COALESCE_MAX_INTERVAL))
        return lb__fail(coalesce->loop, -EINVAL,
                        "lb_coalesce_set_interval: %g s is not within 0 and %g s", seconds,
                        (double)LB_COALESCE_MAX_INTERVAL);
    coalesce->interval_ns = (int64_t)(seconds * 1e9);
    return 0;
}

lb_coalesce *lb_coalesce_free(lb_coalesce *coalesce) {
    if (!coalesce)
        return NULL;
    atomic_store(&coalesce->freed, true);
    drop_value(coalesce, atomic_exchange(&coalesce->slot, EMPTY));
    coalesce_unref(coalesce);
    return NULL;
}
