/* SPDX-License-Identifier: MIT */
/* Task groups (asyncio's TaskGroup): children are awaited together; the
 * first child that fails cancels its siblings and the group's body (the
 * task that made the group), and lb_group_wait takes the body's
 * cancellation back. */
#include "task_internal.h"

#include "alloc.h"
#include "error.h"

struct lb_group {
    lb_loop *loop;
    unsigned refs;     /* the caller's, plus one per live child */
    size_t live;       /* children not ended */
    int first_error;   /* the first child failure, 0 if none */
    bool aborting;     /* siblings are being cancelled */
    lb_task *body;     /* the task that made the group, or NULL */
    bool body_cancelled; /* by the group: lb_group_wait uncancels it */
    lb_future *idle;   /* completed when live drops to 0 (while waited on) */
    lb_task **children;
    size_t n, cap;
};

int lb_group_new(lb_loop *loop, lb_group **ret) {
    lb_assert_return(ret, -EINVAL);
    LB__CHECK_LOOP(loop);
    lb_group *g = lb__calloc(1, sizeof *g);
    if (!g)
        return lb__fail(loop, -ENOMEM, "lb_group_new: out of memory");
    g->loop = lb_loop_ref(loop);
    g->refs = 1;
    lb_task *current = lb_task_current();
    if (current && current->loop == loop)
        g->body = lb_task_ref(current);
    *ret = g;
    return 0;
}

static void group_release(lb_group *g) {
    if (--g->refs > 0)
        return;
    for (size_t i = 0; i < g->n; i++)
        lb_task_unref(g->children[i]);
    lb__free(g->children);
    lb_future_unref(g->idle);
    lb_task_unref(g->body);
    lb_loop_unref(g->loop);
    lb__free(g);
}

lb_group *lb_group_unref(lb_group *group) {
    if (group && !lb__loop_refuse_thread(group->loop, __func__))
        group_release(group);
    return NULL;
}

static void group_abort(lb_group *g) {
    if (g->aborting)
        return;
    g->aborting = true;
    for (size_t i = 0; i < g->n; i++)
        if (!lb_task_is_done(g->children[i]))
            lb_task_cancel(g->children[i]);
}

static void group_child_done(lb_future *f, void *data) {
    lb_group *g = data;
    int st = lb_future_result(f, NULL);
    g->live--;
    if (st < 0 && st != -ECANCELED && g->first_error == 0) {
        g->first_error = st;
        /* As asyncio's TaskGroup, the body is interrupted too (its awaits,
         * its nested groups), unless the group is cancelling already
         * because its waiter was cancelled. */
        bool was_aborting = g->aborting;
        group_abort(g);
        if (!was_aborting && g->body && !lb_task_is_done(g->body) && !g->body_cancelled) {
            g->body_cancelled = true;
            lb_task_cancel(g->body);
        }
    }
    if (g->live == 0 && g->idle && !lb_future_is_done(g->idle))
        lb_future_set_result(g->idle, NULL, NULL);
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
        lb_task **v = lb__realloc(group->children, cap * sizeof *v);
        if (!v)
            return lb__fail(group->loop, -ENOMEM, "lb_group_spawn: out of memory");
        group->children = v;
        group->cap = cap;
    }
    lb_task *t = NULL;
    int r = lb_task_spawn(group->loop, fn, data, opts, &t);
    if (r < 0)
        return r;
    r = lb_future_add_done_callback(lb_task_future(t), group_child_done, group);
    if (r < 0) {
        lb_task_cancel(t);
        lb_task_unref(t);
        return r;
    }
    group->children[group->n++] = t;
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
    return group->first_error;
}
