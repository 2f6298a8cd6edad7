/* SPDX-License-Identifier: MIT */
/* `update` (and any run of Tcl_DoOneEvent(TCL_DONT_WAIT) until it returns
 * 0) while the loop is busy: it returns however much work the loop has,
 * a task that yields for ever included, both as Tcl's `update` (one quiet
 * pass ends it) and as Tk's (a second quiet pass after the displays are
 * synced), and while another thread posts without a pause; each call
 * moves the loop on; a vwait after a run of updates still runs
 * everything, once each; and what an `update` costs under a steady load,
 * printed. Tcl only: no display needed. */
#include "tk-fixture.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum {
    FLOOD = 100000,
    /* A pass through Tcl's notifier that serviced something; an update
     * that returns takes a handful. */
    PASS_BOUND = 1000,
};

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

/* ------------------------------------------------------------------ */
/* Bounded updates                                                      */
/* ------------------------------------------------------------------ */

/* Tcl's `update` in C, failing the test instead of hanging when it does
 * not end within `bound` passes. Returns the passes that serviced
 * something. */
static int tcl_update_bounded(const char *where) {
    int n = 0;
    while (Tcl_DoOneEvent(TCL_ALL_EVENTS | TCL_DONT_WAIT))
        if (++n >= PASS_BOUND)
            fail_msg("%s: `update` still busy after %d passes", where, n);
    return n;
}

/* Tk's `update` (tkinter's root.update()): passes until one is quiet,
 * then (where Tk syncs the displays) one more, and again from the start
 * if that one found something. */
static int tk_update_bounded(const char *where) {
    int n = 0;
    do
        n += tcl_update_bounded(where);
    while (Tcl_DoOneEvent(TCL_DONT_WAIT) && ++n < PASS_BOUND);
    if (n >= PASS_BOUND)
        fail_msg("%s: Tk's `update` still busy after %d passes", where, n);
    return n;
}

/* ------------------------------------------------------------------ */
/* A loop that always has work                                          */
/* ------------------------------------------------------------------ */

typedef struct busy {
    long callbacks;
    long yields;
    lb_task *spinner;
} busy;

static void count_callback(lb_loop *loop, void *data) {
    (void)loop;
    ((busy *)data)->callbacks++;
}

static int spin(lb_task *task, void *data) {
    busy *b = data;
    (void)task;
    for (;;) {
        if (lb_yield() < 0)
            return -ECANCELED;
        b->yields++;
    }
}

/* A task that yields for ever, and 100,000 callbacks behind it. */
static void busy_start(lb_loop *loop, busy *b) {
    assert_int_equal(lb_task_spawn(loop, spin, b, NULL, &b->spinner), 0);
    for (int i = 0; i < FLOOD; i++)
        assert_int_equal(lb_loop_call_soon(loop, count_callback, b, NULL), 0);
}

static void busy_stop(busy *b) {
    lb_task_cancel(b->spinner);
    b->spinner = lb_task_unref(b->spinner);
}

/* Updates (run by `update_fn`) until the flood is through and the task
 * yielded 10 times more: every one returns, and every one moves the loop
 * on. */
static void update_until_through(busy *b, int (*update_fn)(const char *), const char *where) {
    long calls = 0, before = b->callbacks + b->yields, yields_after_flood = -1;
    while (b->callbacks < FLOOD || b->yields < yields_after_flood + 10) {
        update_fn(where);
        calls++;
        long now = b->callbacks + b->yields;
        if (now <= before)
            fail_msg("%s: update %ld ran nothing of the loop", where, calls);
        before = now;
        if (b->callbacks == FLOOD && yields_after_flood < 0)
            yields_after_flood = b->yields;
        if (calls > 2 * FLOOD)
            fail_msg("%s: the flood is not through after %ld updates", where, calls);
    }
    printf("# %s: %ld updates for %d callbacks and %ld yields\n", where, calls, FLOOD, b->yields);
}

static void updates_on_a_busy_loop(int (*update_fn)(const char *), const char *where) {
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    busy b = {0};
    busy_start(loop, &b);
    update_until_through(&b, update_fn, where);
    busy_stop(&b);
    tk_loop_free(loop, interp);
}

static void test_tk_update_returns_while_the_loop_is_busy(void **state) {
    (void)state;
    updates_on_a_busy_loop(tcl_update_bounded, "Tcl's update");
}

static void test_tk_tk_update_returns_while_the_loop_is_busy(void **state) {
    (void)state;
    updates_on_a_busy_loop(tk_update_bounded, "Tk's update");
}

/* The `update` command, 100 times in a row, from a Tcl script: each
 * returns, and the task goes on between them. */
static void test_tk_update_command_returns(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    busy b = {0};
    busy_start(loop, &b);
    for (int i = 0; i < 100; i++) {
        long before = b.callbacks + b.yields;
        tk_eval_update(interp);
        assert_true(b.callbacks + b.yields > before);
    }
    busy_stop(&b);
    tk_loop_free(loop, interp);
}

/* An update from a loop callback (the nested case): it returns too, and
 * moves the loop on. */
typedef struct nested {
    Tcl_Interp *interp;
    busy *b;
    int updates;
} nested;

static void update_from_callback(lb_loop *loop, void *data) {
    nested *n = data;
    long before = n->b->callbacks + n->b->yields;
    tk_eval_update(n->interp);
    assert_true(n->b->callbacks + n->b->yields > before);
    if (++n->updates < 20)
        assert_int_equal(lb_loop_call_soon(loop, update_from_callback, n, NULL), 0);
    else
        lb_loop_stop(loop);
}

static void test_tk_update_in_a_callback_returns(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    busy b = {0};
    busy_start(loop, &b);
    nested n = {.interp = interp, .b = &b};
    assert_int_equal(lb_loop_call_soon(loop, update_from_callback, &n, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(n.updates, 20);
    busy_stop(&b);
    tk_loop_free(loop, interp);
}

/* Another thread posts as fast as it can while the program updates:
 * every update returns, and once the thread stops, a vwait runs the
 * rest, each post once. */
typedef struct poster {
    lb_loop *loop;
    Tcl_Interp *interp;
    atomic_bool stop;
    long posted; /* written by the thread, read after the join */
    long ran;    /* the loop's thread */
} poster;

static void count_post(lb_loop *loop, void *data) {
    (void)loop;
    ((poster *)data)->ran++;
}

/* Posted last, from the same thread: runs after every other post. */
static void posts_done(lb_loop *loop, void *data) {
    (void)loop;
    Tcl_SetVar(((poster *)data)->interp, "posts_done", "1", TCL_GLOBAL_ONLY);
}

static void *post_flood(void *data) {
    poster *p = data;
    while (!atomic_load(&p->stop))
        if (lb_loop_call_soon_threadsafe(p->loop, count_post, p) == 0)
            p->posted++;
    assert_int_equal(lb_loop_call_soon_threadsafe(p->loop, posts_done, p), 0);
    return NULL;
}

static void test_tk_update_returns_while_a_thread_posts(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    poster p = {.loop = loop, .interp = interp};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_flood, &p), 0);
    for (int i = 0; i < 100; i++) {
        tcl_update_bounded("update while a thread posts");
        tk_eval_update(interp);
    }
    long ran_in_updates = p.ran;
    atomic_store(&p.stop, true);
    pthread_join(th, NULL);
    tk_eval(interp, "vwait posts_done");
    printf("# %ld posts: %ld ran in 200 updates, the rest in a vwait\n", p.posted,
           ran_in_updates);
    assert_true(ran_in_updates > 0);
    assert_int_equal(p.ran, p.posted);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* vwait after updates: everything runs, once                           */
/* ------------------------------------------------------------------ */

enum { CHAIN = 10000 };

typedef struct waits {
    Tcl_Interp *interp;
    long links;
    lb_future *future;
    bool task_done;
} waits;

static void maybe_done(waits *w) {
    if (w->links == CHAIN && w->task_done)
        Tcl_SetVar(w->interp, "loop_done", "1", TCL_GLOBAL_ONLY);
}

static void link_cb(lb_loop *loop, void *data) {
    waits *w = data;
    if (++w->links < CHAIN)
        assert_int_equal(lb_loop_call_soon(loop, link_cb, w, NULL), 0);
    maybe_done(w);
}

static void resolve(lb_loop *loop, void *data) {
    waits *w = data;
    (void)loop;
    assert_int_equal(lb_future_set_result(w->future, (void *)(intptr_t)42, NULL), 0);
}

static int awaiter(lb_task *task, void *data) {
    waits *w = data;
    (void)task;
    void *v = NULL;
    int r = lb_await(w->future, &v);
    if (r < 0)
        return r;
    assert_int_equal((intptr_t)v, 42);
    w->task_done = true;
    maybe_done(w);
    return 0;
}

static void test_tk_vwait_after_updates_runs_everything(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    waits w = {.interp = interp};
    assert_int_equal(lb_future_new(loop, &w.future), 0);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, awaiter, &w, NULL, &t), 0);
    assert_int_equal(lb_loop_call_soon(loop, link_cb, &w, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, resolve, &w, NULL), 0);
    /* Updates leave the chain part done. */
    for (int i = 0; i < 5; i++)
        tcl_update_bounded("update before vwait");
    printf("# after 5 updates: %ld of %d links\n", w.links, CHAIN);
    assert_true(w.links > 0);
    /* A Tcl `after 0` chain next to the loop's. */
    tk_eval(interp, "set tcl_links 0\n"
                    "proc tcl_link {} { if {[incr ::tcl_links] < 1000} { after 0 tcl_link } }\n"
                    "after 0 tcl_link");
    int64_t t0 = tk_now_ns();
    tk_eval(interp, "vwait loop_done; while {$::tcl_links < 1000} { vwait ::tcl_links }");
    int64_t took = tk_now_ns() - t0;
    printf("# vwait: the rest in %.1f ms\n", took / 1e6);
    assert_int_equal(w.links, CHAIN);
    assert_true(w.task_done);
    assert_int_equal(tk_get_long(interp, "tcl_links"), 1000);
    if (tk_timing_checked())
        assert_true(took < 10 * 1000000000LL);
    assert_true(lb_task_is_done(t));
    assert_int_equal(lb_future_result(lb_task_future(t), NULL), 0);
    lb_task_unref(t);
    lb_future_unref(w.future);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* What an update costs under a steady load                             */
/* ------------------------------------------------------------------ */

/* 100 tasks, each sleeping 1 ms and then yielding 20 times (a little
 * work between the yields): work comes ready all the time, though none of
 * it is always ready, so an update returns before the fix too. */
enum { STEADY_TASKS = 100, STEADY_YIELDS = 20, UPDATES = 300 };

typedef struct steady {
    volatile bool stop;
    long steps;
} steady;

static void work_us(int us) {
    int64_t until = tk_now_ns() + us * 1000;
    while (tk_now_ns() < until)
        ;
}

static int steady_task(lb_task *task, void *data) {
    steady *s = data;
    (void)task;
    while (!s->stop) {
        if (lb_sleep(0.001) < 0)
            return -ECANCELED;
        for (int i = 0; i < STEADY_YIELDS; i++) {
            work_us(1);
            s->steps++;
            if (lb_yield() < 0)
                return -ECANCELED;
        }
    }
    return 0;
}

static void test_tk_update_latency_under_load(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    steady s = {0};
    lb_task *tasks[STEADY_TASKS];
    for (int i = 0; i < STEADY_TASKS; i++)
        assert_int_equal(lb_task_spawn(loop, steady_task, &s, NULL, &tasks[i]), 0);
    /* A program's own loop: 1 ms of work, then `update`. */
    static int64_t took[UPDATES];
    long steps0 = s.steps;
    for (int i = 0; i < UPDATES; i++) {
        work_us(1000);
        int64_t t0 = tk_now_ns();
        tk_eval_update(interp);
        took[i] = tk_now_ns() - t0;
    }
    long steps = s.steps - steps0;
    int64_t median = tk_percentile(took, UPDATES, 50);
    int64_t p99 = tk_percentile(took, UPDATES, 99);
    int64_t max = took[UPDATES - 1];
    printf("# update under a steady load: median %.3f ms, p99 %.3f ms, max %.3f ms; "
           "%ld task steps in %d updates\n",
           median / 1e6, p99 / 1e6, max / 1e6, steps, UPDATES);
    assert_true(steps > 0);
    s.stop = true;
    for (int i = 0; i < STEADY_TASKS; i++) {
        lb_task_cancel(tasks[i]);
        lb_task_unref(tasks[i]);
    }
    tk_loop_free(loop, interp);
}

/* The same `update` with the loop idle, for comparison. */
static void test_tk_update_latency_idle(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    assert_int_equal(lb_loop_call_later(loop, 60, nop, NULL, NULL), 0);
    static int64_t took[UPDATES];
    for (int i = 0; i < UPDATES; i++) {
        int64_t t0 = tk_now_ns();
        tk_eval_update(interp);
        took[i] = tk_now_ns() - t0;
    }
    int64_t median = tk_percentile(took, UPDATES, 50);
    printf("# update with the loop idle: median %.3f ms, max %.3f ms\n", median / 1e6,
           took[UPDATES - 1] / 1e6);
    tk_loop_free(loop, interp);
}

int main(int argc, char **argv) {
    /* One test by name, as `test-tk-update <name>`. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tk_update_returns_while_the_loop_is_busy),
        cmocka_unit_test(test_tk_tk_update_returns_while_the_loop_is_busy),
        cmocka_unit_test(test_tk_update_command_returns),
        cmocka_unit_test(test_tk_update_in_a_callback_returns),
        cmocka_unit_test(test_tk_update_returns_while_a_thread_posts),
        cmocka_unit_test(test_tk_vwait_after_updates_runs_everything),
        cmocka_unit_test(test_tk_update_latency_idle),
        cmocka_unit_test(test_tk_update_latency_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
