/* SPDX-License-Identifier: MIT */
#ifndef LB_FUTURE_INTERNAL_H
#define LB_FUTURE_INTERNAL_H

#include "loop_internal.h"

enum {
    LB__FUTURE_PENDING = 0,
    LB__FUTURE_RESULT = 1,
    LB__FUTURE_ERROR = 2,
    LB__FUTURE_CANCELLED = 3,
};

/* What a future owned by another layer (a task's result future) does
 * when someone cancels it: the task is cancelled, and the future
 * completes when the task has unwound. */
typedef struct lb__future_hooks {
    /* Returns 1 if cancellation was requested, 0 if it was too late. */
    int (*cancel)(lb_future *future, void *data);
    /* Called when the future is freed (may be NULL). */
    void (*free)(lb_future *future, void *data);
    /* Only the owner completes the future (a task's, when the task
     * ends): lb_future_set_result / _set_error refuse it. */
    bool owner_completes;
} lb__future_hooks;

struct lb_future {
    lb_loop *loop;
    atomic_uint refs;
    atomic_int state;
    int error;
    atomic_bool retrieved;
    void *value;
    lb_destroy_fn destroy;

    /* Done callbacks: handles allocated when the callback is added, so
     * completing the future never allocates and cannot lose one. */
    lb_handle *cb_head, *cb_tail;

    atomic_uint waiters; /* threads blocked in lb_future_wait */

    const lb__future_hooks *hooks;
    void *hooks_data;

    lb_future *live_prev, *live_next;
};

/* Completes a pending future (loop thread). Returns 0 or -EALREADY. */
int lb__future_complete(lb_future *f, int state, void *value, lb_destroy_fn destroy, int error);

/* Cancels the future itself, bypassing hooks. */
int lb__future_cancel_plain(lb_future *f);

/* lb_future_result(), with the ownership of a result passing to the
 * caller: the future will not destroy it. */
int lb__future_take_result(lb_future *future, void **value);

#endif
