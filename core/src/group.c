/* SPDX-License-Identifier: MIT */
/* Task groups (asyncio's TaskGroup): children are awaited together; the
 * first child that fails cancels its siblings and the group's body (the
 * task that made the group), and lb_group_wait takes the body's
 * cancellation back. LB_GROUP_COLLECT_ERRORS keeps every child running
 * instead. lb_group_cancel and lb_group_cancel_then serve the GUI close:
 * cancel, and hear on the loop once every child unwound, without running
 * the loop from inside one of its callbacks. */
#include "task_internal.h"

#include <limits.h>
#include <math.h>

#include "alloc.h"
#include "error.h"

/* A callback waiting for the group's children to end (lb_group_cancel_then). */
typedef struct group_waiter {
    struct group_waiter *next;
    lb_callback done;
    void *data;
    lb_destroy_fn destroy;
} group_waiter;

/* A child, and whether the group counted its end. */
typedef struct group_child {
    lb_group *group;
    lb_task *task;   /* one reference */
    bool counted;
} group_child;

struct lb_group {
    lb_loop *loop;
    unsigned flags;    /* LB_GROUP_* */
    bool cancelled;    /* by lb_group_cancel: lb_group_wait says -ECANCELED */
    unsigned refs;     /* the caller's, plus one per live child */
    size_t live;       /* children not ended */
    int first_error;   /* the first child failure, 0 if none */
    bool aborting;     /* siblings are being cancelled */
    lb_task *body;     /* the task that made the group, or NULL */
    bool body_cancelled; /* by the group: lb_group_wait uncancels it */
    lb_future *idle;   /* completed when live drops to 0 (while waited on) */
    group_waiter *waiters, **waiters_tail; /* oldest first */
    group_child **children;
    size_t n, cap;
    /* Pending until the loop's close cancels it: children that ended while
     * the close unwound them are counted then, as their own done callbacks
     * were dropped with the loop's queue. */
    lb_future *close_watch;
    bool watch_ran;     /* its callback ran */
    bool free_deferred; /* the last reference went while it was queued */
};

int lb_group_new_full(lb_loop *loop, unsigned flags, lb_group **ret) {
    lb_assert_return(ret, -EINVAL);
    LB__CHECK_LOOP(loop);
    if (flags & ~(unsigned)LB_GROUP_COLLECT_ERRORS)
        return lb__fail(loop, -EINVAL, "lb_group_new_full: unknown flags 0x%x", flags);
    lb_group *g = lb__calloc(1, sizeof *g);
    if (!g)
        return lb__fail(loop, -ENOMEM, "lb_group_new: out of memory");
    g->loop = lb_loop_ref(loop);
    g->flags = flags;
    g->waiters_tail = &g->waiters;
    g->refs = 1;
    lb_task *current = lb_task_current();
    if (current && current->loop == loop)
        g->body = lb_task_ref(current);
    *ret = g;
    return 0;
}

int lb_group_new(lb_loop *loop, lb_group **ret) {
    return lb_group_new_full(loop, 0, ret);
}

/* Takes the waiters off the group (oldest first). */
static group_waiter *group_take_waiters(lb_group *g) {
    group_waiter *w = g->waiters;
    g->waiters = NULL;
    g->waiters_tail = &g->waiters;
    return w;
}

/* Runs (or, drop true, only destroys) each waiter once and frees it. */
static void group_finish_waiters(lb_loop *loop, group_waiter *w, bool drop) {
    while (w) {
        group_waiter *next = w->next;
        if (!drop)
            w->done(loop, w->data);
        if (w->destroy)
            w->destroy(w->data);
        lb__free(w);
        w = next;
    }
}

static void group_free(lb_group *g) {
    /* Waiters can only remain when children never ended (tasks the
     * loop's close reclaimed): destroyed, not run. */
    group_finish_waiters(g->loop, group_take_waiters(g), true);
    for (size_t i = 0; i < g->n; i++) {
        lb_task_unref(g->children[i]->task);
        lb__free(g->children[i]);
    }
    lb__free(g->children);
    lb_future_unref(g->idle);
    lb_task_unref(g->body);
    lb_loop_unref(g->loop);
    lb__free(g);
}

static void group_loop_closing(lb_future *f, void *data);

static void group_release(lb_group *g) {
    if (--g->refs > 0)
        return;
    if (g->close_watch) {
        if (lb_future_is_done(g->close_watch) && !g->watch_ran) {
            /* Its callback is queued and will find the group: it frees. */
            g->free_deferred = true;
            return;
        }
        if (!lb_future_is_done(g->close_watch))
            lb_future_remove_done_callback(g->close_watch, group_loop_closing, g);
        g->close_watch = lb_future_unref(g->close_watch);
    }
    group_free(g);
}

static void group_ref(void *group) {
    ((lb_group *)group)->refs++;
}

lb_group *lb_group_ref(lb_group *group) {
    return group && lb__loop_release_call(group->loop, __func__, group_ref, group) ? group : NULL;
}

static void group_unref(void *group) {
    group_release(group);
}

lb_group *lb_group_unref(lb_group *group) {
    if (group)
        lb__loop_release_call(group->loop, __func__, group_unref, group);
    return NULL;
}

static void group_abort(lb_group *g) {
    if (g->aborting)
        return;
    g->aborting = true;
    for (size_t i = 0; i < g->n; i++)
        if (!lb_task_is_done(g->children[i]->task))
            lb_task_cancel(g->children[i]->task);
}

/* A child ended: counted once, from its done callback or, when the
 * loop's close dropped that, from the close watch. */
static void group_child_ended(group_child *c) {
    lb_group *g = c->group;
    if (c->counted)
        return;
    c->counted = true;
    int st = lb_future_result(lb_task_future(c->task), NULL);
    g->live--;
    if (st < 0 && st != -ECANCELED && g->first_error == 0) {
        g->first_error = st;
        /* As asyncio's TaskGroup, the body is interrupted too (its awaits,
         * its nested groups), unless the group is cancelling already
         * (its waiter was cancelled, or lb_group_cancel) or collects the
         * children's errors instead. */
        if (!g->aborting && !(g->flags & LB_GROUP_COLLECT_ERRORS)) {
            group_abort(g);
            if (g->body && !lb_task_is_done(g->body) && !g->body_cancelled) {
                g->body_cancelled = true;
                lb_task_cancel(g->body);
            }
        }
    }
    if (g->live == 0) {
        if (g->idle && !lb_future_is_done(g->idle))
            lb_future_set_result(g->idle, NULL, NULL);
        /* A done callback of the child's future runs from the loop's ready
         * queue, not on a task's stack: the waiters may close windows. */
        group_finish_waiters(g->loop, group_take_waiters(g), false);
    }
    group_release(g);
}

static void group_child_done(lb_future *f, void *data) {
    (void)f;
    group_child_ended(data);
}

static void group_loop_closing(lb_future *f, void *data) {
    (void)f;
    lb_group *g = data;
    g->watch_ran = true;
    if (g->free_deferred) {
        g->close_watch = lb_future_unref(g->close_watch);
        group_free(g);
        return;
    }
    g->refs++;
    for (size_t i = 0; i < g->n; i++)
        if (lb_task_is_done(g->children[i]->task))
            group_child_ended(g->children[i]);
    group_release(g);
}

int lb_group_spawn(lb_group *group, lb_task_fn fn, void *data, const lb_task_options *opts,
                   lb_task **ret) {
    lb_assert_return(group, -EINVAL);
    /* The thread (and the loop) first: nothing of the group is touched
     * from a thread that does not run its loop. */
    LB__CHECK_LOOP(group->loop);
    if (group->aborting)
        return lb__fail(group->loop, -ECANCELED,
                        "lb_group_spawn: the group is cancelling its tasks");
    if (group->n == group->cap) {
        size_t cap = group->cap ? group->cap * 2 : 8;
        group_child **v = lb__realloc(group->children, cap * sizeof *v);
        if (!v)
            return lb__fail(group->loop, -ENOMEM, "lb_group_spawn: out of memory");
        group->children = v;
        group->cap = cap;
    }
    if (!group->close_watch) {
        int r = lb_future_new(group->loop, &group->close_watch);
        if (r == 0)
            r = lb_future_add_done_callback(group->close_watch, group_loop_closing, group);
        if (r < 0) {
            group->close_watch = lb_future_unref(group->close_watch);
            return r;
        }
    }
    group_child *c = lb__calloc(1, sizeof *c);
    if (!c)
        return lb__fail(group->loop, -ENOMEM, "lb_group_spawn: out of memory");
    lb_task *t = NULL;
    int r = lb_task_spawn(group->loop, fn, data, opts, &t);
    if (r < 0) {
        lb__free(c);
        return r;
    }
    c->group = group;
    c->task = t;
    r = lb_future_add_done_callback(lb_task_future(t), group_child_done, c);
    if (r < 0) {
        lb_task_cancel(t);
        lb_task_unref(t);
        lb__free(c);
        return r;
    }
    group->children[group->n++] = c;
    group->live++;
    group->refs++;
    if (ret)
        *ret = lb_task_ref(t);
    return 0;
}

int lb_group_wait(lb_group *group) {
    lb_assert_return(group, -EINVAL);
    if (!lb_task_current())
        return lb__fail(group->loop, -EPERM, "lb_group_wait: called outside a task");
    bool cancelled = false;
    while (group->live > 0) {
        if (!group->idle || lb_future_is_done(group->idle)) {
            lb_future_unref(group->idle);
            group->idle = NULL;
            int r = lb_future_new(group->loop, &group->idle);
            if (r < 0)
                return r;
        }
        int r = lb_await(group->idle, NULL);
        if (r == -ECANCELED) {
            /* The waiter was cancelled: so are the children, and the
             * waiter still waits for them to unwind. */
            cancelled = true;
            group_abort(group);
        } else if (r < 0) {
            return r;
        }
    }
    if (group->body_cancelled) {
        /* The group cancelled its body: taken back, so that it does not
         * leak out as a cancellation from outside. */
        group->body_cancelled = false;
        if (lb_task_uncancel(group->body) == 0 && group->body == lb_task_current())
            cancelled = false;
    }
    if (cancelled)
        return -ECANCELED;
    if (group->first_error == 0 && group->cancelled)
        return -ECANCELED;
    return group->first_error;
}

int lb_group_cancel(lb_group *group) {
    lb_assert_return(group, -EINVAL);
    LB__CHECK_LOOP(group->loop);
    group->cancelled = true;
    if (group->aborting)
        return 0;
    int n = 0;
    for (size_t i = 0; i < group->n; i++)
        if (!lb_task_is_done(group->children[i]->task))
            n++;
    group_abort(group);
    return n;
}

/* lb_group_cancel_then on a group with no live child: the callback still
 * runs from the loop, never from inside the call. */
static void group_waiters_soon(lb_loop *loop, void *data) {
    lb_group *g = data;
    if (g->live == 0)
        group_finish_waiters(loop, group_take_waiters(g), false);
    group_release(g);
}

int lb_group_cancel_then(lb_group *group, lb_callback done, void *data, lb_destroy_fn destroy) {
    lb_assert_return(group, -EINVAL);
    lb_assert_return(done, -EINVAL);
    LB__CHECK_LOOP(group->loop);
    group_waiter *w = lb__calloc(1, sizeof *w);
    if (!w)
        return lb__fail(group->loop, -ENOMEM, "lb_group_cancel_then: out of memory");
    if (group->live == 0) {
        /* Nothing to wait for: a loop callback delivers it, holding the
         * group meanwhile. */
        int r = lb_loop_call_soon(group->loop, group_waiters_soon, group, NULL);
        if (r < 0) {
            lb__free(w);
            return r;
        }
        group->refs++;
    }
    w->done = done;
    w->data = data;
    w->destroy = destroy;
    *group->waiters_tail = w;
    group->waiters_tail = &w->next;
    lb_group_cancel(group);
    return 0;
}

static void drain_done(lb_loop *loop, void *data) {
    (void)loop;
    if (!lb_future_is_done(data))
        lb_future_set_result(data, NULL, NULL);
}

static void drain_timeout(lb_loop *loop, void *data) {
    (void)loop;
    lb_future_cancel(data);
}

static void drain_release(void *data) {
    lb_future_unref(data);
}

int lb_group_cancel_and_drain(lb_group *group, double timeout) {
    lb_assert_return(group, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    LB__CHECK_LOOP(group->loop);
    lb_loop *loop = group->loop;
    if (lb_task_current())
        return lb__fail(loop, -EBUSY, "lb_group_cancel_and_drain: called in a task (use "
                                      "lb_group_cancel() and lb_group_wait())");
    lb_future *drained = NULL;
    int r = lb_future_new(loop, &drained);
    if (r < 0)
        return r;
    r = lb_group_cancel_then(group, drain_done, lb_future_ref(drained), drain_release);
    if (r < 0) {
        lb_future_unref(drained);
        lb_future_unref(drained);
        return r;
    }
    lb_handle *timer = NULL;
    if (timeout >= 0) {
        r = lb_loop_call_later(loop, timeout, drain_timeout, drained, &timer);
        if (r < 0) {
            lb_future_unref(drained);
            return r;
        }
    }
    r = lb_loop_run_until_complete(loop, drained);
    if (timer) {
        lb_handle_cancel(timer);
        lb_handle_unref(timer);
    }
    if (r == -EBUSY)
        r = lb__fail(loop, -EBUSY, "lb_group_cancel_and_drain: the loop is running (called "
                                   "from one of its callbacks): use lb_group_cancel_then()");
    else if (r == 0 && lb_future_is_cancelled(drained))
        r = lb__fail(loop, -ETIMEDOUT, "lb_group_cancel_and_drain: tasks still unwinding "
                                       "after %g s", timeout);
    lb_future_unref(drained);
    return r;
}

int lb_group_results(const lb_group *group, lb_gather_item *items, size_t cap) {
    lb_assert_return(group, -EINVAL);
    lb_assert_return(items || cap == 0, -EINVAL);
    /* Also after the loop closed: the outcomes stay readable. */
    int r = lb__loop_check_thread(group->loop, __func__);
    if (r < 0)
        return r;
    for (size_t i = 0; i < group->n && i < cap; i++) {
        lb_future *f = lb_task_future(group->children[i]->task);
        items[i].value = NULL;
        items[i].status = lb_future_is_done(f) ? lb_future_result(f, &items[i].value)
                                                : -EINPROGRESS;
    }
    return group->n > INT_MAX ? INT_MAX : (int)group->n;
}
