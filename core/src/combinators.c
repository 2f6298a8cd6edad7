/* SPDX-License-Identifier: MIT */
/* gather, shield and wait_for, built from futures and done callbacks. */
#include "task_internal.h"

#include "alloc.h"
#include "error.h"

#include <math.h>

/* ------------------------------------------------------------------ */
/* gather                                                              */
/* ------------------------------------------------------------------ */

/* Lives until every child reported and the result (which borrows the
 * children's values) was freed. */
typedef struct gather {
    lb_future *outer;
    unsigned flags;
    size_t n;
    size_t pending;
    bool cancel_requested; /* ends cancelled once every child reported */
    unsigned refs; /* one per pending child callback, one for the result */
    lb_future *children[];
} gather;

/* The result handed out: a pointer back to the gather that owns the
 * children, the public struct, and the items it points to. */
typedef struct gather_result {
    gather *owner;
    lb_gather_result pub;
    lb_gather_item items[];
} gather_result;

static void gather_unref(gather *g) {
    if (--g->refs > 0)
        return;
    for (size_t i = 0; i < g->n; i++)
        lb_future_unref(g->children[i]);
    lb__free(g);
}

static void gather_result_free(void *value) {
    lb_gather_result *pub = value;
    gather_result *gr = (gather_result *)((char *)pub - offsetof(gather_result, pub));
    gather_unref(gr->owner);
    lb__free(gr);
}

static void gather_complete(gather *g) {
    gather_result *gr = lb__malloc(sizeof *gr + g->n * sizeof(lb_gather_item));
    if (!gr) {
        lb__future_complete(g->outer, LB__FUTURE_ERROR, NULL, NULL, -ENOMEM);
        return;
    }
    gr->owner = g;
    gr->pub.n = g->n;
    gr->pub.items = gr->items;
    for (size_t i = 0; i < g->n; i++) {
        void *v = NULL;
        int st = lb_future_result(g->children[i], &v);
        gr->items[i] = (lb_gather_item){.status = st, .value = st == 0 ? v : NULL};
    }
    g->refs++;
    lb__future_complete(g->outer, LB__FUTURE_RESULT, &gr->pub, gather_result_free, 0);
}

static void gather_child_done(lb_future *child, void *data) {
    gather *g = data;
    g->pending--;
    if (g->cancel_requested) {
        /* Cancelled: it ends when its children have unwound. */
        if (g->pending == 0)
            lb__future_cancel_plain(g->outer);
    } else if (!lb_future_is_done(g->outer)) {
        int st = lb_future_result(child, NULL);
        if (st < 0 && !(g->flags & LB_GATHER_RETURN_ERRORS)) {
            if (st == -ECANCELED)
                lb__future_cancel_plain(g->outer);
            else
                lb__future_complete(g->outer, LB__FUTURE_ERROR, NULL, NULL, st);
        } else if (g->pending == 0) {
            gather_complete(g);
        }
    }
    if (g->pending == 0)
        lb_future_unref(g->outer);
    gather_unref(g);
}

/* As asyncio's: too late (0) when no child could be cancelled, every
 * one done already even if not yet reported (their results are kept);
 * otherwise the gather ends cancelled once every child has ended. */
static int gather_cancel(lb_future *outer, void *data) {
    gather *g = data;
    (void)outer;
    bool requested = false;
    for (size_t i = 0; i < g->n; i++)
        if (!lb_future_is_done(g->children[i]) && lb_future_cancel(g->children[i]) > 0)
            requested = true;
    if (requested)
        g->cancel_requested = true;
    return requested ? 1 : 0;
}

/* Only consulted while the outer future is pending, when the gather is
 * alive for certain. */
static const lb__future_hooks gather_hooks = {.cancel = gather_cancel};

/* A gather of n children (not filled in yet) and its outer future, with
 * one reference. */
static int gather_new(lb_loop *loop, size_t n, gather **ret) {
    gather *g = lb__calloc(1, sizeof *g + n * sizeof(lb_future *));
    if (!g)
        return lb__fail(loop, -ENOMEM, "lb_gather: out of memory");
    int r = lb_future_new(loop, &g->outer);
    if (r < 0) {
        lb__free(g);
        return r;
    }
    g->n = n;
    g->refs = 1;
    *ret = g;
    return 0;
}

/* A gather of nothing: done at once with an empty result, on the loop
 * of the calling task or the loop running on this thread. */
static int gather_nothing(lb_future **ret) {
    lb_loop *loop = lb__current_task ? lb__current_task->loop : lb_loop_get_running();
    if (!loop)
        return lb__fail(NULL, -EINVAL,
                        "lb_gather: no futures, and no loop runs on this thread for the result");
    gather *g = NULL;
    int r = gather_new(loop, 0, &g);
    if (r < 0)
        return r;
    /* Its reference is dropped below: the result holds the gather. */
    gather_complete(g);
    if (lb_future_result(g->outer, NULL) < 0) {
        r = lb__fail(loop, -ENOMEM, "lb_gather: out of memory");
        lb_future_unref(g->outer);
        gather_unref(g);
        return r;
    }
    *ret = g->outer;
    gather_unref(g);
    return 0;
}

int lb_gather(lb_future *const *futures, size_t n, unsigned flags, lb_future **ret) {
    lb_assert_return(ret, -EINVAL);
    lb_assert_return(futures || n == 0, -EINVAL);
    lb_assert_return((flags & ~LB_GATHER_RETURN_ERRORS) == 0, -EINVAL);
    if (n == 0)
        return gather_nothing(ret);
    lb_loop *loop = NULL;
    for (size_t i = 0; i < n; i++) {
        lb_assert_return(futures[i], -EINVAL);
        if (loop && futures[i]->loop != loop)
            return lb__fail(loop, -EXDEV, "lb_gather: the futures belong to different loops");
        loop = futures[i]->loop;
    }
    gather *g = NULL;
    int r = gather_new(loop, n, &g);
    if (r < 0)
        return r;
    g->flags = flags;
    for (size_t i = 0; i < n; i++)
        g->children[i] = lb_future_ref(futures[i]);
    /* Its reference is dropped below, after the callbacks are added. */
    for (size_t i = 0; i < n; i++) {
        r = lb_future_add_done_callback(futures[i], gather_child_done, g);
        if (r < 0) {
            /* Undo: none of the callbacks have run yet (they are queued
             * at the earliest), so take them all back. */
            for (size_t j = 0; j < i; j++)
                lb_future_remove_done_callback(futures[j], gather_child_done, g);
            g->refs = 1;
            lb_future_unref(g->outer);
            gather_unref(g);
            return r;
        }
    }
    g->pending = n;
    g->refs += n;
    lb_future_ref(g->outer); /* held until the last child reported */
    g->outer->hooks = &gather_hooks;
    g->outer->hooks_data = g;
    *ret = g->outer;
    gather_unref(g);
    return 0;
}

/* ------------------------------------------------------------------ */
/* shield                                                              */
/* ------------------------------------------------------------------ */

static void shield_inner_done(lb_future *inner, void *data) {
    lb_future *outer = data;
    if (!lb_future_is_done(outer)) {
        void *v = NULL;
        int st = lb_future_result(inner, &v);
        if (st == 0)
            lb__future_complete(outer, LB__FUTURE_RESULT, v, NULL, 0);
        else if (st == -ECANCELED)
            lb__future_cancel_plain(outer);
        else
            lb__future_complete(outer, LB__FUTURE_ERROR, NULL, NULL, st);
    }
    lb_future_unref(outer);
}

/* The outer result borrows the inner's value: the outer keeps the inner
 * alive until it is freed. */
static void shield_outer_freed(lb_future *outer, void *data) {
    (void)outer;
    lb_future_unref(data);
}

static const lb__future_hooks shield_hooks = {.free = shield_outer_freed};

int lb_shield(lb_future *future, lb_future **ret) {
    lb_assert_return(future, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    lb_future *outer = NULL;
    int r = lb_future_new(future->loop, &outer);
    if (r < 0)
        return r;
    r = lb_future_add_done_callback(future, shield_inner_done, outer);
    if (r < 0) {
        lb_future_unref(outer);
        return r;
    }
    lb_future_ref(outer); /* the callback's */
    outer->hooks = &shield_hooks;
    outer->hooks_data = lb_future_ref(future);
    *ret = outer;
    return 0;
}

/* ------------------------------------------------------------------ */
/* wait_for                                                            */
/* ------------------------------------------------------------------ */

/* The task waits in lb_await(future) while its deadline is pending (the
 * timer is cancelled before lb_wait_for returns), so what to cancel is
 * what it awaits. */
static void wait_for_expired(lb_loop *loop, void *data) {
    lb_task *t = data;
    (void)loop;
    t->deadline_passed = true;
    if (t->awaiting)
        lb_future_cancel(t->awaiting);
}

int lb_wait_for(lb_future *future, double timeout, void **value) {
    lb_task *t = lb__current_task;
    if (!t)
        return lb__fail(NULL, -EPERM, "lb_wait_for: called outside a task");
    lb_assert_return(future, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    /* lb_await reports a future it cannot await, delivers a cancellation
     * already requested, and returns what is done already. */
    if (timeout < 0 || future->loop != t->loop || future == t->future || t->must_cancel ||
        lb_future_is_done(future))
        return lb_await(future, value);
    /* Only a cancellation that the timeout made becomes -ETIMEDOUT: the
     * task's own, requested while it waits, wins. Counting requests (not
     * asking whether any is left) keeps a cancellation the task caught
     * earlier from turning its later timeouts into cancellations. */
    unsigned requests = t->cancel_requests;
    bool timed_out;
    int r;
    if (timeout == 0) {
        /* No time at all: cancelled at once (the work does not get one
         * more iteration), and awaited until the cancellation landed. */
        lb_future_cancel(future);
        r = lb_await(future, value);
        timed_out = true;
    } else {
        t->deadline_passed = false;
        r = lb_loop_call_later(t->loop, timeout, wait_for_expired, t, &t->deadline);
        if (r < 0)
            return r;
        r = lb_await(future, value);
        lb_handle_cancel(t->deadline);
        t->deadline = lb_handle_unref(t->deadline);
        timed_out = t->deadline_passed;
    }
    if (timed_out && r == -ECANCELED && t->cancel_requests <= requests)
        return lb__fail(t->loop, -ETIMEDOUT, "lb_wait_for: timed out after %.3f s", timeout);
    return r;
}
