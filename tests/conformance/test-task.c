/* SPDX-License-Identifier: MIT */
/* Tasks: await, sleep, yield, cancellation, results, combinators,
 * groups, and close with live tasks. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

static lb_task *spawn(lb_loop *loop, lb_task_fn fn, void *data, const char *name) {
    lb_task *t = NULL;
    lb_task_options o = {.name = name};
    int r = lb_task_spawn(loop, fn, data, &o, &t);
    if (r < 0)
        fail_msg("lb_task_spawn: %s (%s)", lb_strerror(r), lb_error_detail());
    return t;
}

static int run_task(lb_loop *loop, lb_task *t) {
    return lb_loop_run_until_complete(loop, lb_task_future(t));
}

/* ---------------- await what resolves a future ---------------- */

typedef struct awaited {
    lb_future *f;
    int status;
    void *value;
} awaited;

static int await_body(lb_task *task, void *data) {
    awaited *a = data;
    assert_ptr_equal(lb_task_current(), task);
    a->status = lb_await(a->f, &a->value);
    return a->status;
}

static void resolve_cb(lb_loop *loop, void *data) {
    (void)loop;
    assert_int_equal(lb_future_set_result(data, "resolved", NULL), 0);
}

static void test_task_await_callback_and_timer(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    for (int via_timer = 0; via_timer < 2; via_timer++) {
        awaited a = {0};
        assert_int_equal(lb_future_new(loop, &a.f), 0);
        lb_task *t = spawn(loop, await_body, &a, "awaiter");
        if (via_timer)
            assert_int_equal(lb_loop_call_later(loop, 0.01, resolve_cb, a.f, NULL), 0);
        else
            assert_int_equal(lb_loop_call_soon(loop, resolve_cb, a.f, NULL), 0);
        assert_int_equal(run_task(loop, t), 0);
        assert_int_equal(a.status, 0);
        assert_string_equal(a.value, "resolved");
        assert_true(lb_task_is_done(t));
        assert_int_equal(lb_future_result(lb_task_future(t), NULL), 0);
        lb_task_unref(t);
        lb_future_unref(a.f);
    }
    assert_null(lb_task_current());
    fixture_loop_free(loop);
}

static int producer_task(lb_task *task, void *data) {
    (void)task;
    assert_int_equal(lb_sleep(0.01), 0);
    assert_int_equal(lb_future_set_result(data, "from a task", NULL), 0);
    return 0;
}

static void test_task_await_other_task(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    awaited a = {0};
    assert_int_equal(lb_future_new(loop, &a.f), 0);
    lb_task *consumer = spawn(loop, await_body, &a, "consumer");
    lb_task *producer = spawn(loop, producer_task, a.f, "producer");
    assert_int_equal(run_task(loop, consumer), 0);
    assert_string_equal(a.value, "from a task");
    assert_int_equal(run_task(loop, producer), 0);
    lb_task_unref(consumer);
    lb_task_unref(producer);
    lb_future_unref(a.f);
    fixture_loop_free(loop);
}

static void *thread_resolver(void *data) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    lb_future_set_result_threadsafe(data, "from a thread", NULL);
    return NULL;
}

static void test_task_await_thread(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    awaited a = {0};
    assert_int_equal(lb_future_new(loop, &a.f), 0);
    lb_task *t = spawn(loop, await_body, &a, "thread-awaiter");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, thread_resolver, a.f), 0);
    assert_int_equal(run_task(loop, t), 0);
    pthread_join(th, NULL);
    assert_string_equal(a.value, "from a thread");
    lb_task_unref(t);
    lb_future_unref(a.f);
    fixture_loop_free(loop);
}

/* ---------------- interleaving ---------------- */

enum { INTERLEAVE_TASKS = 10000, INTERLEAVE_ROUNDS = 3 };

typedef struct interleave {
    int *log;
    size_t n;
} interleave;

typedef struct interleave_arg {
    interleave *il;
    int id;
} interleave_arg;

static int interleave_body(lb_task *task, void *data) {
    interleave_arg *a = data;
    (void)task;
    for (int round = 0; round < INTERLEAVE_ROUNDS; round++) {
        a->il->log[a->il->n++] = a->id;
        if (lb_yield() != 0)
            return -EIO;
    }
    return 0;
}

static void test_task_interleave_yield(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    interleave il = {.log = calloc(INTERLEAVE_TASKS * INTERLEAVE_ROUNDS, sizeof(int))};
    interleave_arg *args = calloc(INTERLEAVE_TASKS, sizeof *args);
    lb_task *last = NULL;
    for (int i = 0; i < INTERLEAVE_TASKS; i++) {
        args[i] = (interleave_arg){&il, i};
        lb_task *t = NULL;
        assert_int_equal(lb_task_spawn(loop, interleave_body, &args[i], NULL,
                                       i == INTERLEAVE_TASKS - 1 ? &t : NULL),
                         0);
        if (t)
            last = t;
    }
    assert_int_equal(lb_loop_task_count(loop), INTERLEAVE_TASKS);
    assert_int_equal(run_task(loop, last), 0);
    /* Round-robin: every task runs once per round, in spawn order. */
    assert_int_equal(il.n, INTERLEAVE_TASKS * INTERLEAVE_ROUNDS);
    for (size_t i = 0; i < il.n; i++)
        assert_int_equal(il.log[i], (int)(i % INTERLEAVE_TASKS));
    assert_int_equal(lb_loop_task_count(loop), 0);
    lb_task_unref(last);
    free(args);
    free(il.log);
    fixture_loop_free(loop);
}

/* ---------------- cancellation ---------------- */

typedef struct cancel_probe {
    int where;       /* 0: await, 1: sleep, 2: yield */
    lb_future *f;
    int first;       /* what the interrupted wait returned */
    int cleanup;     /* what a wait after the cancellation returned */
    bool reached_end;
} cancel_probe;

static int cancel_body(lb_task *task, void *data) {
    cancel_probe *p = data;
    (void)task;
    switch (p->where) {
    case 0:
        p->first = lb_await(p->f, NULL);
        break;
    case 1:
        p->first = lb_sleep(60);
        break;
    default:
        for (;;) {
            p->first = lb_yield();
            if (p->first)
                break;
        }
    }
    /* The task may clean up, and even await again. */
    p->cleanup = lb_sleep(0.001);
    p->reached_end = true;
    return p->first;
}

static void cancel_cb(lb_loop *loop, void *data) {
    (void)loop;
    assert_int_equal(lb_task_cancel(data), 1);
}

static void test_task_cancel_at_each_wait(void **state) {
    (void)state;
    for (int where = 0; where < 3; where++) {
        lb_loop *loop = fixture_loop_new();
        cancel_probe p = {.where = where};
        assert_int_equal(lb_future_new(loop, &p.f), 0);
        lb_task *t = spawn(loop, cancel_body, &p, "cancelled");
        assert_int_equal(lb_loop_call_later(loop, 0.01, cancel_cb, t, NULL), 0);
        assert_int_equal(run_task(loop, t), 0);
        assert_int_equal(p.first, -ECANCELED);
        assert_int_equal(p.cleanup, 0);
        assert_true(p.reached_end);
        assert_true(lb_future_is_cancelled(lb_task_future(t)));
        assert_true(lb_task_cancelling(t));
        /* The awaited future was cancelled with the task. */
        if (where == 0)
            assert_true(lb_future_is_cancelled(p.f));
        assert_int_equal(lb_task_cancel(t), 0);
        lb_task_unref(t);
        lb_future_unref(p.f);
        fixture_loop_free(loop);
    }
}

static int never_runs(lb_task *task, void *data) {
    (void)task;
    (void)data;
    fail_msg("a task cancelled before it first ran, ran");
    return 0;
}

static void test_task_cancel_before_start(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_task *t = spawn(loop, never_runs, NULL, "never");
    assert_int_equal(lb_task_cancel(t), 1);
    assert_int_equal(run_task(loop, t), 0);
    assert_true(lb_future_is_cancelled(lb_task_future(t)));
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* Cancelling the task's future is cancelling the task. */
static void test_task_cancel_through_future(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    cancel_probe p = {.where = 1};
    lb_task *t = spawn(loop, cancel_body, &p, "via-future");
    assert_int_equal(lb_future_cancel(lb_task_future(t)), 1);
    assert_int_equal(run_task(loop, t), 0);
    assert_false(p.reached_end); /* never ran */
    lb_task_unref(t);
    fixture_loop_free(loop);
}

static int uncancel_body(lb_task *task, void *data) {
    int *out = data;
    int r = lb_sleep(60);
    assert_int_equal(r, -ECANCELED);
    assert_int_equal(lb_task_uncancel(task), 0);
    assert_false(lb_task_cancelling(task));
    *out = lb_sleep(0.001);
    return 0;
}

static void test_task_uncancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int after = -1;
    lb_task *t = spawn(loop, uncancel_body, &after, "uncancel");
    assert_int_equal(lb_loop_call_later(loop, 0.005, cancel_cb, t, NULL), 0);
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(after, 0);
    assert_int_equal(lb_future_result(lb_task_future(t), NULL), 0);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* ---------------- results ---------------- */

static int result_value(lb_task *task, void *data) {
    (void)task;
    (void)data;
    assert_int_equal(lb_task_return(strdup("value"), free), 0);
    return 0;
}

static int result_error(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return -EPIPE;
}

static int result_cancelled(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return -ECANCELED;
}

static int result_positive(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return 3;
}

static void quiet_handler(lb_loop *loop, const lb_exception_context *ctx, void *data) {
    (void)loop;
    (void)ctx;
    (*(int *)data)++;
}

static void test_task_results(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int reports = 0;
    assert_int_equal(lb_loop_set_exception_handler(loop, quiet_handler, &reports), 0);
    lb_task *a = spawn(loop, result_value, NULL, "value");
    lb_task *b = spawn(loop, result_error, NULL, "error");
    lb_task *c = spawn(loop, result_cancelled, NULL, "cancelled");
    lb_task *d = spawn(loop, result_positive, NULL, "positive");
    assert_string_equal(lb_task_name(a), "value");
    assert_int_equal(run_task(loop, d), 0);
    assert_int_equal(run_task(loop, a), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(lb_task_future(a), &v), 0);
    assert_string_equal(v, "value");
    assert_int_equal(lb_future_result(lb_task_future(b), NULL), -EPIPE);
    assert_int_equal(lb_future_result(lb_task_future(c), NULL), -ECANCELED);
    assert_int_equal(lb_future_result(lb_task_future(d), NULL), -EINVAL);
    assert_int_equal(reports, 1); /* the positive return */
    lb_task_unref(a);
    lb_task_unref(b);
    lb_task_unref(c);
    lb_task_unref(d);
    fixture_loop_free(loop);
}

/* ---------------- nesting ---------------- */

static int nest(lb_task *task, void *data) {
    intptr_t depth = (intptr_t)data;
    if (depth == 0) {
        assert_int_equal(lb_sleep(0.001), 0);
        return lb_task_return((void *)(intptr_t)100, NULL);
    }
    lb_task *child = NULL;
    assert_int_equal(lb_task_spawn(lb_future_get_loop(lb_task_future(task)), nest,
                                   (void *)(depth - 1), NULL, &child),
                     0);
    void *v = NULL;
    int r = lb_await(lb_task_future(child), &v);
    lb_task_unref(child);
    if (r < 0)
        return r;
    return lb_task_return((void *)((intptr_t)v + 1), NULL);
}

static void test_task_nested_three_deep(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_task *t = spawn(loop, nest, (void *)3, "outer");
    assert_int_equal(run_task(loop, t), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(lb_task_future(t), &v), 0);
    assert_int_equal((intptr_t)v, 103);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* ---------------- outside a task ---------------- */

static void test_task_outside_is_eperm(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_await(f, NULL), -EPERM);
    assert_int_equal(lb_sleep(0.1), -EPERM);
    assert_int_equal(lb_yield(), -EPERM);
    assert_int_equal(lb_task_return(NULL, NULL), -EPERM);
    assert_int_equal(lb_wait_for(f, 1, NULL), -EPERM);
    assert_null(lb_task_current());
    lb_task_options bad = {.stack_size = 1024};
    assert_int_equal(lb_task_spawn(loop, never_runs, NULL, &bad, NULL), -EINVAL);
    assert_int_equal(lb_task_spawn(loop, NULL, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(lb_task_spawn(NULL, never_runs, NULL, NULL, NULL), -EINVAL);
    lb_future_unref(f);
    fixture_loop_free(loop);
}

/* ---------------- gather ---------------- */

static int sleeper(lb_task *task, void *data) {
    (void)task;
    intptr_t ms = (intptr_t)data;
    int r = lb_sleep(ms / 1000.0);
    if (r < 0)
        return r;
    if (ms < 0)
        return -EIO;
    return lb_task_return((void *)ms, NULL);
}

typedef struct gather_case {
    unsigned flags;
    intptr_t ms[3];
    int status;
    lb_gather_result *result;
    lb_future *g;
} gather_case;

static int gatherer(lb_task *task, void *data) {
    gather_case *gc = data;
    lb_loop *loop = lb_future_get_loop(lb_task_future(task));
    lb_task *kids[3];
    lb_future *fs[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lb_task_spawn(loop, sleeper, (void *)gc->ms[i], NULL, &kids[i]), 0);
        fs[i] = lb_task_future(kids[i]);
    }
    assert_int_equal(lb_gather(fs, 3, gc->flags, &gc->g), 0);
    void *v = NULL;
    gc->status = lb_await(gc->g, &v);
    gc->result = v;
    for (int i = 0; i < 3; i++) {
        /* Let every child end before the test checks the loop. */
        lb_await(lb_task_future(kids[i]), NULL);
        lb_task_unref(kids[i]);
    }
    return 0;
}

static void test_task_gather(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    gather_case ok = {.ms = {30, 10, 20}};
    lb_task *t = spawn(loop, gatherer, &ok, "gather-ok");
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(ok.status, 0);
    assert_int_equal(ok.result->n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ok.result->items[i].status, 0);
        assert_int_equal((intptr_t)ok.result->items[i].value, ok.ms[i]);
    }
    lb_future_unref(ok.g);
    lb_task_unref(t);

    gather_case bad = {.ms = {30, -5, 20}};
    t = spawn(loop, gatherer, &bad, "gather-fail");
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(bad.status, -EIO);
    lb_future_unref(bad.g);
    lb_task_unref(t);

    gather_case all = {.flags = LB_GATHER_RETURN_ERRORS, .ms = {5, -5, 10}};
    t = spawn(loop, gatherer, &all, "gather-all");
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(all.status, 0);
    assert_int_equal(all.result->items[0].status, 0);
    assert_int_equal(all.result->items[1].status, -EIO);
    assert_int_equal(all.result->items[2].status, 0);
    lb_future_unref(all.g);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* ---------------- wait_for ---------------- */

typedef struct wf {
    double timeout;
    intptr_t child_ms;
    int status;
    bool child_cancelled;
} wf;

static int wait_for_body(lb_task *task, void *data) {
    wf *w = data;
    lb_task *child = NULL;
    assert_int_equal(lb_task_spawn(lb_future_get_loop(lb_task_future(task)), sleeper,
                                   (void *)w->child_ms, NULL, &child),
                     0);
    w->status = lb_wait_for(lb_task_future(child), w->timeout, NULL);
    w->child_cancelled = lb_future_is_cancelled(lb_task_future(child));
    lb_task_unref(child);
    return 0;
}

static void test_task_wait_for(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    wf slow = {.timeout = 0.02, .child_ms = 60000};
    lb_task *t = spawn(loop, wait_for_body, &slow, "wait-for-slow");
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(slow.status, -ETIMEDOUT);
    assert_true(slow.child_cancelled);
    lb_task_unref(t);

    wf fast = {.timeout = 30, .child_ms = 5};
    t = spawn(loop, wait_for_body, &fast, "wait-for-fast");
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(fast.status, 0);
    assert_false(fast.child_cancelled);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* ---------------- shield ---------------- */

typedef struct shielded {
    lb_task *inner;
    int status;
} shielded;

static int shield_body(lb_task *task, void *data) {
    shielded *s = data;
    lb_future *outer = NULL;
    (void)task;
    assert_int_equal(lb_shield(lb_task_future(s->inner), &outer), 0);
    s->status = lb_await(outer, NULL);
    lb_future_unref(outer);
    return 0;
}

static void test_task_shield(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    shielded s = {0};
    s.inner = spawn(loop, sleeper, (void *)20, "inner");
    lb_task *t = spawn(loop, shield_body, &s, "shielding");
    assert_int_equal(lb_loop_call_later(loop, 0.005, cancel_cb, t, NULL), 0);
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(s.status, -ECANCELED);
    /* The inner work was not cancelled and completes. */
    assert_int_equal(run_task(loop, s.inner), 0);
    assert_int_equal(lb_future_result(lb_task_future(s.inner), NULL), 0);
    lb_task_unref(s.inner);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* ---------------- groups ---------------- */

typedef struct group_case {
    intptr_t ms[3];
    int status;
    int cancelled_children;
} group_case;

static int group_body(lb_task *task, void *data) {
    group_case *gc = data;
    lb_group *g = NULL;
    assert_int_equal(lb_group_new(lb_future_get_loop(lb_task_future(task)), &g), 0);
    lb_task *kids[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(lb_group_spawn(g, sleeper, (void *)gc->ms[i], NULL, &kids[i]), 0);
    gc->status = lb_group_wait(g);
    for (int i = 0; i < 3; i++) {
        assert_true(lb_task_is_done(kids[i]));
        if (lb_future_is_cancelled(lb_task_future(kids[i])))
            gc->cancelled_children++;
        lb_task_unref(kids[i]);
    }
    lb_group_unref(g);
    return 0;
}

static void test_task_group(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    group_case ok = {.ms = {5, 10, 1}};
    lb_task *t = spawn(loop, group_body, &ok, "group-ok");
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(ok.status, 0);
    assert_int_equal(ok.cancelled_children, 0);
    lb_task_unref(t);

    /* The second child fails at 5 ms: its 60 s siblings are cancelled. */
    group_case bad = {.ms = {60000, -5, 60000}};
    t = spawn(loop, group_body, &bad, "group-fail");
    double t0 = fixture_now();
    assert_int_equal(run_task(loop, t), 0);
    assert_true(fixture_now() - t0 < 30);
    assert_int_equal(bad.status, -EIO);
    assert_int_equal(bad.cancelled_children, 2);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

static void test_task_group_waiter_cancelled(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    group_case gc = {.ms = {60000, 60000, 60000}};
    lb_task *t = spawn(loop, group_body, &gc, "group-waiter");
    assert_int_equal(lb_loop_call_later(loop, 0.01, cancel_cb, t, NULL), 0);
    assert_int_equal(run_task(loop, t), 0);
    assert_int_equal(gc.status, -ECANCELED);
    assert_int_equal(gc.cancelled_children, 3);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* ---------------- asyncio parity of cancellation and combinators ---------------- */

static lb_loop *loop_of(lb_task *task) {
    return lb_future_get_loop(lb_task_future(task));
}

/* Runs fn as the one task of a loop of its own, until it ended. */
static void run_alone(lb_task_fn fn, const char *name) {
    lb_loop *loop = fixture_loop_new();
    lb_task *t = spawn(loop, fn, NULL, name);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    fixture_loop_free(loop);
}

/* wait_for with no time left cancels at once, as asyncio does. */
static int sets_flag(lb_task *task, void *data) {
    (void)task;
    *(bool *)data = true;
    return lb_task_return("too late", NULL);
}

static int wait_for_zero(lb_task *task, void *data) {
    (void)data;
    bool ran = false;
    lb_task *child = NULL;
    assert_int_equal(lb_task_spawn(loop_of(task), sets_flag, &ran, NULL, &child), 0);
    void *v = NULL;
    assert_int_equal(lb_wait_for(lb_task_future(child), 0, &v), -ETIMEDOUT);
    assert_false(ran);
    assert_true(lb_future_is_cancelled(lb_task_future(child)));
    lb_task_unref(child);

    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop_of(task), &f), 0);
    assert_int_equal(lb_wait_for(f, 0, NULL), -ETIMEDOUT);
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);

    /* Done already: its outcome, with no time needed. */
    assert_int_equal(lb_future_new(loop_of(task), &f), 0);
    assert_int_equal(lb_future_set_result(f, "ready", NULL), 0);
    assert_int_equal(lb_wait_for(f, 0, &v), 0);
    assert_string_equal(v, "ready");
    lb_future_unref(f);
    return 0;
}

static void test_task_wait_for_zero(void **state) {
    (void)state;
    run_alone(wait_for_zero, "wait-for-zero");
}

/* A task that caught a cancellation (without uncancelling) still gets
 * -ETIMEDOUT from its later timeouts. */
static int timeouts_after_caught_cancel(lb_task *task, void *data) {
    (void)data;
    assert_int_equal(lb_task_cancel(task), 1);
    assert_int_equal(lb_yield(), -ECANCELED);
    assert_true(lb_task_cancelling(task));
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop_of(task), &f), 0);
    assert_int_equal(lb_wait_for(f, 0.01, NULL), -ETIMEDOUT);
    lb_future_unref(f);
    assert_int_equal(lb_future_new(loop_of(task), &f), 0);
    assert_int_equal(lb_wait_for(f, 0, NULL), -ETIMEDOUT);
    lb_future_unref(f);
    int fd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0);
    char c;
    assert_int_equal(lb_read(fd[0], &c, 1, 0.01), -ETIMEDOUT);
    close(fd[0]);
    close(fd[1]);
    return 0;
}

static void test_task_timeouts_after_caught_cancel(void **state) {
    (void)state;
    run_alone(timeouts_after_caught_cancel, "caught-cancel");
}

/* A task cancelled while it runs that returns without awaiting again
 * ends cancelled, its result dropped. */
static int cancel_self_then_return(lb_task *task, void *data) {
    int *requested = data;
    *requested = lb_task_cancel(task);
    assert_int_equal(lb_task_return(strdup("dropped"), free), 0);
    return 0;
}

static void test_task_cancelled_while_running_ends_cancelled(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int requested = 0;
    lb_task *t = spawn(loop, cancel_self_then_return, &requested, "self-cancel");
    run_task(loop, t);
    assert_int_equal(requested, 1);
    assert_true(lb_task_is_done(t));
    assert_true(lb_future_is_cancelled(lb_task_future(t)));
    assert_int_equal(lb_future_result(lb_task_future(t), NULL), -ECANCELED);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* Unwinds slowly: its cleanup awaits twice. */
static int slow_unwinder(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(3600);
    if (r == -ECANCELED) {
        assert_int_equal(lb_sleep(0.005), 0);
        assert_int_equal(lb_yield(), 0);
    }
    return r;
}

typedef struct await_unwind {
    lb_task *inner[2];
    bool cancel_self; /* else a callback cancels the awaiting task */
    bool via_gather;
    bool waiting; /* about to await: the canceller may go */
    int status;
    bool inner_done_at_return;
} await_unwind;

static int await_unwinding(lb_task *task, void *data) {
    await_unwind *u = data;
    /* Let the inner tasks start their sleep. */
    assert_int_equal(lb_yield(), 0);
    lb_future *what = lb_task_future(u->inner[0]);
    lb_future *g = NULL;
    if (u->via_gather) {
        lb_future *fs[2] = {lb_task_future(u->inner[0]), lb_task_future(u->inner[1])};
        assert_int_equal(lb_gather(fs, 2, 0, &g), 0);
        what = g;
    }
    if (u->cancel_self)
        assert_int_equal(lb_task_cancel(task), 1);
    u->waiting = true;
    u->status = lb_await(what, NULL);
    u->inner_done_at_return = lb_task_is_done(u->inner[0]) &&
                              (!u->via_gather || lb_task_is_done(u->inner[1]));
    lb_future_unref(g);
    return 0;
}

static void test_task_await_waits_for_unwinding(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    for (int mode = 0; mode < 4; mode++) {
        await_unwind u = {.cancel_self = mode & 1, .via_gather = mode & 2};
        u.inner[0] = spawn(loop, slow_unwinder, NULL, "unwinder-0");
        u.inner[1] = spawn(loop, slow_unwinder, NULL, "unwinder-1");
        lb_task *t = spawn(loop, await_unwinding, &u, "awaiter");
        fixture_canceller k = {.target = t, .waiting = &u.waiting};
        if (!u.cancel_self)
            fixture_cancel_when_waiting(loop, &k);
        assert_int_equal(fixture_finish(loop, t, 30), 0);
        assert_int_equal(u.status, -ECANCELED);
        assert_true(u.inner_done_at_return);
        lb_task_cancel(u.inner[1]);
        fixture_finish(loop, u.inner[0], 30);
        fixture_finish(loop, u.inner[1], 30);
    }
    fixture_loop_free(loop);
}

/* Cancelling a gather whose children all finished, before they reported,
 * is too late: the results are kept. */
static void test_task_gather_cancel_too_late(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *fs[2], *g = NULL;
    for (int i = 0; i < 2; i++)
        assert_int_equal(lb_future_new(loop, &fs[i]), 0);
    assert_int_equal(lb_gather(fs, 2, 0, &g), 0);
    assert_int_equal(lb_future_set_result(fs[0], "a", NULL), 0);
    assert_int_equal(lb_future_set_result(fs[1], "b", NULL), 0);
    assert_int_equal(lb_future_cancel(g), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, g), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(g, &v), 0);
    lb_gather_result *res = v;
    assert_int_equal(res->n, 2);
    assert_string_equal(res->items[0].value, "a");
    assert_string_equal(res->items[1].value, "b");
    lb_future_unref(g);
    for (int i = 0; i < 2; i++)
        lb_future_unref(fs[i]);
    fixture_loop_free(loop);
}

/* A cancelled gather completes only once its children ended. */
typedef struct gather_unwind {
    lb_task *kids[2];
    lb_future *g;
    bool kids_done_when_cancelled;
    bool reported;
} gather_unwind;

static void gather_reported(lb_future *g, void *data) {
    gather_unwind *gu = data;
    (void)g;
    gu->kids_done_when_cancelled = lb_task_is_done(gu->kids[0]) && lb_task_is_done(gu->kids[1]);
    gu->reported = true;
}

static void cancel_gather_cb(lb_loop *loop, void *data) {
    gather_unwind *gu = data;
    (void)loop;
    assert_int_equal(lb_future_cancel(gu->g), 1);
}

static void test_task_gather_cancel_waits_for_children(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    for (unsigned flags = 0; flags <= LB_GATHER_RETURN_ERRORS; flags++) {
        gather_unwind gu = {0};
        gu.kids[0] = spawn(loop, slow_unwinder, NULL, "kid-0");
        gu.kids[1] = spawn(loop, slow_unwinder, NULL, "kid-1");
        lb_future *fs[2] = {lb_task_future(gu.kids[0]), lb_task_future(gu.kids[1])};
        assert_int_equal(lb_gather(fs, 2, flags, &gu.g), 0);
        assert_int_equal(lb_future_add_done_callback(gu.g, gather_reported, &gu), 0);
        assert_int_equal(lb_loop_call_later(loop, 0.005, cancel_gather_cb, &gu, NULL), 0);
        fixture_run_until(loop, &gu.reported, 30);
        assert_true(lb_future_is_cancelled(gu.g));
        assert_true(gu.kids_done_when_cancelled);
        fixture_finish(loop, gu.kids[0], 30);
        fixture_finish(loop, gu.kids[1], 30);
        lb_future_unref(gu.g);
    }
    fixture_loop_free(loop);
}

/* A gather of nothing is done at once with an empty result. */
static int gather_nothing(lb_task *task, void *data) {
    (void)task;
    (void)data;
    lb_future *g = NULL;
    assert_int_equal(lb_gather(NULL, 0, 0, &g), 0);
    assert_true(lb_future_is_done(g));
    void *v = NULL;
    assert_int_equal(lb_await(g, &v), 0);
    assert_int_equal(((lb_gather_result *)v)->n, 0);
    lb_future_unref(g);
    return 0;
}

static void test_task_gather_of_nothing(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_task *t = spawn(loop, gather_nothing, NULL, "gather-nothing");
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    /* No loop runs here to own the future. */
    lb_future *g = NULL;
    assert_int_equal(lb_gather(NULL, 0, 0, &g), -EINVAL);
    assert_null(g);
    fixture_loop_free(loop);
}

/* A failing child cancels the group's body too, so its awaits and nested
 * groups are interrupted; the group takes that cancellation back when it
 * ends. */
static int fails_soon(lb_task *task, void *data) {
    (void)task;
    (void)data;
    assert_int_equal(lb_yield(), 0);
    return -EIO;
}

typedef struct body_case {
    bool nested;
    int await_status;
    int inner_status;
    int status;
    int after;
    bool cancelling_after;
} body_case;

static int group_body_interrupted(lb_task *task, void *data) {
    body_case *bc = data;
    lb_group *g = NULL, *inner = NULL;
    assert_int_equal(lb_group_new(loop_of(task), &g), 0);
    assert_int_equal(lb_group_spawn(g, fails_soon, NULL, NULL, NULL), 0);
    if (bc->nested) {
        assert_int_equal(lb_group_new(loop_of(task), &inner), 0);
        assert_int_equal(lb_group_spawn(inner, sleeper, (void *)3600000, NULL, NULL), 0);
        bc->inner_status = lb_group_wait(inner);
        lb_group_unref(inner);
    } else {
        bc->await_status = lb_sleep(3600);
    }
    bc->status = lb_group_wait(g);
    lb_group_unref(g);
    bc->after = lb_sleep(0.001);
    bc->cancelling_after = lb_task_cancelling(task);
    return 0;
}

static void test_task_group_failure_cancels_body(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    for (int nested = 0; nested < 2; nested++) {
        body_case bc = {.nested = nested};
        lb_task *t = spawn(loop, group_body_interrupted, &bc, "group-body");
        assert_int_equal(fixture_finish(loop, t, 30), 0);
        if (nested)
            assert_int_equal(bc.inner_status, -ECANCELED);
        else
            assert_int_equal(bc.await_status, -ECANCELED);
        assert_int_equal(bc.status, -EIO);
        assert_int_equal(bc.after, 0);
        assert_false(bc.cancelling_after);
    }
    fixture_loop_free(loop);
}

/* lb_group_spawn checks its thread before it looks at the group. */
typedef struct foreign_spawn {
    lb_group *g;
    int status;
} foreign_spawn;

static void *spawn_from_thread(void *arg) {
    foreign_spawn *fs = arg;
    fs->status = lb_group_spawn(fs->g, sleeper, (void *)1, NULL, NULL);
    return NULL;
}

static int group_aborted(lb_task *task, void *data) {
    foreign_spawn *fs = data;
    assert_int_equal(lb_group_new(loop_of(task), &fs->g), 0);
    assert_int_equal(lb_group_spawn(fs->g, fails_soon, NULL, NULL, NULL), 0);
    assert_int_equal(lb_group_wait(fs->g), -EIO);
    /* While the loop runs, so that it has a thread. */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spawn_from_thread, fs), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    return 0;
}

static void test_task_group_spawn_checks_thread_first(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    foreign_spawn fs = {0};
    lb_task *t = spawn(loop, group_aborted, &fs, "group-aborted");
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_int_equal(fs.status, -EPERM);
    lb_group_unref(fs.g);
    fixture_loop_free(loop);
}

/* ---------------- close with live tasks ---------------- */

typedef struct unwinder {
    int started;
    int unwound;
} unwinder;

static int long_runner(lb_task *task, void *data) {
    unwinder *u = data;
    (void)task;
    u->started++;
    int r = lb_sleep(3600);
    if (r == -ECANCELED) {
        /* Cleanup that itself awaits. */
        lb_sleep(0.001);
        u->unwound++;
    }
    return r;
}

static void stop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static void test_task_close_cancels_live_tasks(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    unwinder u = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(lb_task_spawn(loop, long_runner, &u, NULL, NULL), 0);
    lb_task *held = spawn(loop, long_runner, &u, "held");
    assert_int_equal(lb_loop_call_later(loop, 0.02, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(u.started, 101);
    assert_int_equal(lb_loop_task_count(loop), 101);
    lb_task *all[4];
    assert_int_equal(lb_loop_all_tasks(loop, all, 4), 101);
    fixture_loop_free(loop);
    assert_int_equal(u.unwound, 101);
    assert_true(lb_task_is_done(held));
    assert_true(lb_future_is_cancelled(lb_task_future(held)));
    lb_task_unref(held);
}

static int stubborn(lb_task *task, void *data) {
    (void)task;
    (void)data;
    for (;;)
        lb_sleep(0.05); /* ignores cancellation */
    return 0;
}

/* A task unwinding at close completes a future whose done callback is
 * then queued; close drops that callback without running it, and the
 * future (and its value) must still be freed. */
typedef struct close_unwinder {
    lb_future *never;  /* what the task awaits until close cancels it */
    lb_future *result; /* the task's reference: completed while it unwinds */
    int destroyed;
} close_unwinder;

static close_unwinder *the_close_unwinder;

static void count_destroy(void *value) {
    (void)value;
    the_close_unwinder->destroyed++;
}

static void ignore_done(lb_future *f, void *data) {
    (void)f;
    (void)data;
}

static int unwind_and_complete(lb_task *task, void *data) {
    (void)task;
    close_unwinder *u = data;
    int r = lb_await(u->never, NULL);
    if (r == -ECANCELED)
        assert_int_equal(lb_future_set_result(u->result, u, count_destroy), 0);
    u->result = lb_future_unref(u->result); /* only its done callback holds it now */
    return r;
}

static void test_task_close_frees_futures_of_dropped_callbacks(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    close_unwinder u = {0};
    the_close_unwinder = &u;
    assert_int_equal(lb_future_new(loop, &u.never), 0);
    assert_int_equal(lb_future_new(loop, &u.result), 0);
    assert_int_equal(lb_future_add_done_callback(u.result, ignore_done, NULL), 0);
    lb_task *t = spawn(loop, unwind_and_complete, &u, "unwinder");
    /* Let it start and wait, then close under it. */
    lb_loop_stop(loop);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    lb_task_unref(t);
    assert_int_equal(lb_loop_close(loop), 0);
    /* Whether the callback ran or was dropped, the future went, and its
     * value's destroy function ran. */
    assert_int_equal(u.destroyed, 1);
    lb_future_unref(u.never);
    lb_loop_unref(loop);
}

static void test_task_close_reports_stubborn_task(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int reports = 0;
    assert_int_equal(lb_loop_set_exception_handler(loop, quiet_handler, &reports), 0);
    assert_int_equal(lb_task_spawn(loop, stubborn, NULL, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    fixture_loop_free(loop);
    assert_int_equal(reports, 1);
}

/* ---------------- stacks used nearly to their end ---------------- */

/* Recurses in 8 KiB frames, each filled with a pattern, and yields at the
 * bottom: a switch with the stack pointer close to the stack's limit is
 * no overflow, and nothing below the limit (the guard) may be touched. */
enum { CHUNK = 8192 };

static int use_stack(int levels, uintptr_t seed) {
    volatile unsigned char chunk[CHUNK];
    for (size_t i = 0; i < CHUNK; i++)
        chunk[i] = (unsigned char)(seed + i * 13u);
    int r = 0;
    if (levels > 1)
        r = use_stack(levels - 1, seed + 1);
    else
        for (int y = 0; y < 3 && r == 0; y++)
            r = lb_yield();
    for (size_t i = 0; i < CHUNK && r == 0; i++)
        if (chunk[i] != (unsigned char)(seed + i * 13u))
            r = -EIO;
    return r;
}

static int deep_user(lb_task *task, void *data) {
    return use_stack((int)(intptr_t)data, (uintptr_t)task);
}

static void test_task_stack_used_to_its_end(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    struct {
        lb_task_options opts;
        int levels;
    } cases[] = {
        {{.name = "small", .stack_size = 16 * 1024}, 1},
        {{.name = "default"}, 26},     /* about 216 KiB of 256 */
        {{.name = "default-2"}, 26},   /* its neighbour, just as deep */
        {{.name = "large", .stack_size = 1024 * 1024}, 110},
        {{.name = "shared", .flags = LB_TASK_SHARED_STACK}, 20},
        {{.name = "shared-2", .flags = LB_TASK_SHARED_STACK}, 20},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    lb_task *tasks[N];
    for (size_t i = 0; i < N; i++)
        assert_int_equal(lb_task_spawn(loop, deep_user, (void *)(intptr_t)cases[i].levels,
                                       &cases[i].opts, &tasks[i]),
                         0);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(tasks[i])), 0);
        assert_int_equal(lb_future_result(lb_task_future(tasks[i]), NULL), 0);
        lb_task_unref(tasks[i]);
    }
    fixture_loop_free(loop);
}

/* ---------------- the memory a burst leaves ---------------- */

/* Giving pages back flushes the TLB, which on a virtual machine with
 * shadow page tables stalled the loop for 40-70 ms in the middle of a
 * flood (docs/performance.md, "What G1's pause on glib is"). So what a
 * burst of tasks and callbacks leaves (stacks, ready-queue chunks) stays
 * while work is ready, and goes back once the loop has nothing to do. */
enum { BURST_TASKS = 5000, BURST_CALLS = 1000000, BURST_FRAME = 8192 };

typedef struct burst {
    long tasks_done, calls_done;
    long at_end_kb; /* resident when the burst's last piece ran */
    bool over, idle_over;
} burst;

static void burst_check_end(burst *b) {
    if (b->tasks_done == BURST_TASKS && b->calls_done == BURST_CALLS) {
        b->at_end_kb = fixture_resident_kb();
        b->over = true;
    }
}

static int burst_task(lb_task *task, void *data) {
    burst *b = data;
    (void)task;
    volatile char frame[BURST_FRAME]; /* the stack's pages in use */
    memset((char *)frame, 1, sizeof frame);
    int r = lb_sleep(0);
    b->tasks_done++;
    burst_check_end(b);
    return r < 0 ? r : frame[BURST_FRAME / 2] - 1;
}

static void burst_call(lb_loop *loop, void *data) {
    (void)loop;
    burst *b = data;
    b->calls_done++;
    burst_check_end(b);
}

static void burst_calls(lb_loop *loop, void *data) {
    for (long i = 0; i < BURST_CALLS; i++)
        assert_int_equal(lb_loop_call_soon(loop, burst_call, data, NULL), 0);
}

static void idle_over(lb_loop *loop, void *data) {
    (void)loop;
    ((burst *)data)->idle_over = true;
}

static void test_task_burst_memory_back_when_idle(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    burst b = {0};
    long before = fixture_resident_kb();
    assert_int_equal(lb_loop_call_soon(loop, burst_calls, &b, NULL), 0);
    for (int i = 0; i < BURST_TASKS; i++)
        assert_int_equal(lb_task_spawn(loop, burst_task, &b, NULL, NULL), 0);
    fixture_run_until(loop, &b.over, 60);
    assert_true(b.over);
    /* Idle for a while: nothing ready, a timer pending. */
    assert_int_equal(lb_loop_call_later(loop, 0.3, idle_over, &b, NULL), 0);
    fixture_run_until(loop, &b.idle_over, 60);
    long after = fixture_resident_kb();
    /* Each task's stack had at least its frame in use; the queue held a
     * 16-byte entry per call. */
    long burst_kb = (long)BURST_TASKS * BURST_FRAME / 1024 + (long)BURST_CALLS * 16 / 1024;
    printf("# resident: %ld KiB before, %ld KiB as the burst ended, %ld KiB after 0.3 s idle "
           "(the burst's stacks and queue: %ld KiB)\n",
           before, b.at_end_kb, after, burst_kb);
    if (fixture_memory_measurable()) {
        /* Kept while the loop was busy... */
        assert_true(b.at_end_kb - before > burst_kb * 8 / 10);
        /* ...and given back once it idled. */
        assert_true(b.at_end_kb - after > burst_kb * 8 / 10);
    }
    fixture_loop_free(loop);
}

int run_task_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_await_callback_and_timer),
        cmocka_unit_test(test_task_await_other_task),
        cmocka_unit_test(test_task_await_thread),
        cmocka_unit_test(test_task_interleave_yield),
        cmocka_unit_test(test_task_cancel_at_each_wait),
        cmocka_unit_test(test_task_cancel_before_start),
        cmocka_unit_test(test_task_cancel_through_future),
        cmocka_unit_test(test_task_uncancel),
        cmocka_unit_test(test_task_results),
        cmocka_unit_test(test_task_burst_memory_back_when_idle),
        cmocka_unit_test(test_task_nested_three_deep),
        cmocka_unit_test(test_task_outside_is_eperm),
        cmocka_unit_test(test_task_gather),
        cmocka_unit_test(test_task_wait_for),
        cmocka_unit_test(test_task_shield),
        cmocka_unit_test(test_task_group),
        cmocka_unit_test(test_task_group_waiter_cancelled),
        cmocka_unit_test(test_task_wait_for_zero),
        cmocka_unit_test(test_task_timeouts_after_caught_cancel),
        cmocka_unit_test(test_task_cancelled_while_running_ends_cancelled),
        cmocka_unit_test(test_task_await_waits_for_unwinding),
        cmocka_unit_test(test_task_gather_cancel_too_late),
        cmocka_unit_test(test_task_gather_cancel_waits_for_children),
        cmocka_unit_test(test_task_gather_of_nothing),
        cmocka_unit_test(test_task_group_failure_cancels_body),
        cmocka_unit_test(test_task_group_spawn_checks_thread_first),
        cmocka_unit_test(test_task_close_cancels_live_tasks),
        cmocka_unit_test(test_task_close_reports_stubborn_task),
        cmocka_unit_test(test_task_close_frees_futures_of_dropped_callbacks),
        cmocka_unit_test(test_task_stack_used_to_its_end),
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
