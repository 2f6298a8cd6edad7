/* SPDX-License-Identifier: MIT */
/* The GLib driver inside a real GMainContext: no CPU while idle, a 60 Hz
 * GLib tick that survives a flood of callbacks and tasks, tasks inside a
 * nested main loop, wakeups from other GLib sources, a loop on a context
 * a GApplication runs, and timers at scale. No display needed. */
#include <loopbridge/glib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <cmocka.h>

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static lb_loop *new_loop(GMainContext *ctx) {
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, ctx), 0);
    assert_ptr_equal(lb_glib_loop_get_context(loop), ctx ? ctx : g_main_context_default());
    return loop;
}

static void free_loop(lb_loop *loop) {
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static gboolean quit_main(gpointer data) {
    g_main_loop_quit(data);
    return G_SOURCE_REMOVE;
}

/* 1,000 timers a minute away, nothing ready: two seconds of the context
 * cost (almost) no CPU, as there is no polling. */
static void test_glib_idle_costs_no_cpu(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(lb_loop_call_later(loop, 60 + i * 0.001, nop, NULL, NULL), 0);
    GMainLoop *ml = g_main_loop_new(ctx, FALSE);
    GSource *t = g_timeout_source_new(2000);
    g_source_set_callback(t, quit_main, ml, NULL);
    g_source_attach(t, ctx);
    g_source_unref(t);
    /* Let the loop settle first. */
    while (g_main_context_iteration(ctx, FALSE))
        ;
    double c0 = cpu_seconds();
    g_main_loop_run(ml);
    double used = cpu_seconds() - c0;
    printf("# idle: %.1f ms CPU over 2 s\n", used * 1000);
    assert_true(used < 0.020);
    g_main_loop_unref(ml);
    free_loop(loop);
    g_main_context_unref(ctx);
}

/* A 16 ms GLib tick keeps its pace while loopbridge runs 1,000,000
 * callbacks and 10,000 tasks that yield: the bridge steps aside after
 * each budget. */
typedef struct flood {
    lb_loop *loop;
    long callbacks;
    long tasks_done;
    gint64 last_tick;
    gint64 max_gap;
    long ticks;
    GMainLoop *ml;
} flood;

static void flood_cb(lb_loop *loop, void *data) {
    flood *f = data;
    (void)loop;
    f->callbacks++;
}

static void flood_start(lb_loop *loop, void *data) {
    for (int i = 0; i < 1000000; i++)
        lb_loop_call_soon(loop, flood_cb, data, NULL);
}

static int yielder(lb_task *task, void *data) {
    flood *f = data;
    (void)task;
    for (int i = 0; i < 20; i++)
        if (lb_yield() < 0)
            return -ECANCELED;
    f->tasks_done++;
    return 0;
}

static gboolean tick(gpointer data) {
    flood *f = data;
    gint64 now = g_get_monotonic_time();
    if (f->last_tick && now - f->last_tick > f->max_gap)
        f->max_gap = now - f->last_tick;
    f->last_tick = now;
    f->ticks++;
    if (f->callbacks == 1000000 && f->tasks_done == 10000)
        g_main_loop_quit(f->ml);
    return G_SOURCE_CONTINUE;
}

static void test_glib_flood_keeps_frames(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    flood f = {.loop = loop};
    f.ml = g_main_loop_new(ctx, FALSE);
    assert_int_equal(lb_loop_call_soon(loop, flood_start, &f, NULL), 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(lb_task_spawn(loop, yielder, &f, NULL, NULL), 0);
    GSource *t = g_timeout_source_new(16);
    g_source_set_callback(t, tick, &f, NULL);
    g_source_attach(t, ctx);
    g_main_loop_run(f.ml);
    g_source_destroy(t);
    g_source_unref(t);
    printf("# flood: %ld ticks, max gap %.1f ms\n", f.ticks, f.max_gap / 1000.0);
    assert_int_equal(f.callbacks, 1000000);
    assert_int_equal(f.tasks_done, 10000);
    assert_true(f.max_gap < 50 * 1000);
    g_main_loop_unref(f.ml);
    free_loop(loop);
    g_main_context_unref(ctx);
}

/* A callback opens a nested main loop (a modal dialog does); tasks and
 * timers keep running inside it. */
typedef struct nested {
    int ticks_inside;
    gboolean inside;
    GMainLoop *inner;
    GMainContext *ctx;
} nested;

static int ticking_task(lb_task *task, void *data) {
    nested *n = data;
    (void)task;
    for (;;) {
        if (lb_sleep(0.01) < 0)
            return -ECANCELED;
        if (n->inside)
            n->ticks_inside++;
    }
}

static void open_modal(lb_loop *loop, void *data) {
    nested *n = data;
    n->inner = g_main_loop_new(n->ctx, FALSE);
    GSource *t = g_timeout_source_new(300);
    g_source_set_callback(t, quit_main, n->inner, NULL);
    g_source_attach(t, n->ctx);
    g_source_unref(t);
    n->inside = TRUE;
    g_main_loop_run(n->inner); /* the "dialog" */
    n->inside = FALSE;
    g_main_loop_unref(n->inner);
    lb_loop_stop(loop);
}

static void test_glib_tasks_run_in_nested_loop(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    nested n = {.ctx = ctx};
    assert_int_equal(lb_task_spawn(loop, ticking_task, &n, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, open_modal, &n, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    printf("# %d task ticks inside the nested loop\n", n.ticks_inside);
    assert_true(n.ticks_inside >= 5);
    free_loop(loop);
    g_main_context_unref(ctx);
}

/* Work scheduled from another GLib source's callback (a GTK signal
 * handler is one) runs in the same context iteration or the next. */
typedef struct from_source {
    lb_loop *loop;
    lb_future *future;
    int ran;
    int iterations_after;
} from_source;

static void mark(lb_loop *loop, void *data) {
    (void)loop;
    ((from_source *)data)->ran++;
}

static void future_done(lb_future *f, void *data) {
    (void)f;
    ((from_source *)data)->ran++;
}

static gboolean other_source(gpointer data) {
    from_source *s = data;
    lb_loop_call_soon(s->loop, mark, s, NULL);
    lb_future_set_result(s->future, NULL, NULL);
    return G_SOURCE_REMOVE;
}

static void test_glib_wakeup_from_other_source(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    from_source s = {.loop = loop};
    assert_int_equal(lb_future_new(loop, &s.future), 0);
    assert_int_equal(lb_future_add_done_callback(s.future, future_done, &s), 0);
    while (g_main_context_iteration(ctx, FALSE))
        ;
    GSource *idle = g_idle_source_new();
    g_source_set_callback(idle, other_source, &s, NULL);
    g_source_attach(idle, ctx);
    g_source_unref(idle);
    /* Blocking iterations: a missed wakeup would hang here, so bound it. */
    for (int i = 0; i < 4 && s.ran < 2; i++) {
        g_main_context_iteration(ctx, TRUE);
        s.iterations_after++;
    }
    assert_int_equal(s.ran, 2);
    assert_true(s.iterations_after <= 3);
    lb_future_unref(s.future);
    free_loop(loop);
    g_main_context_unref(ctx);
}

/* A loop made on the default context while a GApplication runs it. */
static int app_task(lb_task *task, void *data) {
    (void)task;
    if (lb_sleep(0.02) < 0)
        return -ECANCELED;
    g_application_release(data);
    return 0;
}

static void app_activate(GApplication *app, gpointer data) {
    lb_loop **loop = data;
    assert_int_equal(lb_glib_loop_new(loop, NULL), 0);
    g_application_hold(app);
    assert_int_equal(lb_task_spawn(*loop, app_task, app, NULL, NULL), 0);
}

static void test_glib_inside_gapplication(void **state) {
    (void)state;
    GApplication *app = g_application_new("org.loopbridge.Test", G_APPLICATION_NON_UNIQUE);
    lb_loop *loop = NULL;
    g_signal_connect(app, "activate", G_CALLBACK(app_activate), &loop);
    char *argv[] = {"test", NULL};
    assert_int_equal(g_application_run(app, 1, argv), 0);
    assert_non_null(loop);
    free_loop(loop);
    g_object_unref(app);
}

/* 200,000 timers (W3's) on one GSource fire on time. */
static long timers_left;
static gint64 worst_late_us;

typedef struct timed {
    gint64 due_us;
} timed;

static void timer_fired(lb_loop *loop, void *data) {
    timed *t = data;
    gint64 late = g_get_monotonic_time() - t->due_us;
    if (late > worst_late_us)
        worst_late_us = late;
    if (--timers_left == 0)
        lb_loop_stop(loop);
}

static void test_glib_many_timers(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    enum { N = 200000 };
    timed *t = calloc(N, sizeof *t);
    uint64_t x = 42;
    gint64 t0 = g_get_monotonic_time();
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        double delay = (double)(x >> 11) / 9007199254740992.0 * 0.5;
        t[i].due_us = g_get_monotonic_time() + (gint64)(delay * 1e6) + 1;
        assert_int_equal(lb_loop_call_later(loop, delay, timer_fired, &t[i], NULL), 0);
    }
    gint64 setup = g_get_monotonic_time() - t0;
    timers_left = N;
    worst_late_us = 0;
    assert_int_equal(lb_loop_run_forever(loop), 0);
    printf("# 200,000 timers: setup %.1f ms, worst lateness %.2f ms\n", setup / 1000.0,
           worst_late_us / 1000.0);
    assert_int_equal(timers_left, 0);
    free(t);
    free_loop(loop);
    g_main_context_unref(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glib_idle_costs_no_cpu),
        cmocka_unit_test(test_glib_flood_keeps_frames),
        cmocka_unit_test(test_glib_tasks_run_in_nested_loop),
        cmocka_unit_test(test_glib_wakeup_from_other_source),
        cmocka_unit_test(test_glib_inside_gapplication),
        cmocka_unit_test(test_glib_many_timers),
    };
    return cmocka_run_group_tests_name("glib_driver", tests, NULL, NULL);
}
