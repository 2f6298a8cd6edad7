/* SPDX-License-Identifier: MIT */
/* Debug mode and monitoring; lb_run. */
#include "fixture.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct logged {
    int warnings;
    char last[512];
} logged;

static void capture(lb_log_level level, const char *message, void *data) {
    logged *l = data;
    if (level == LB_LOG_WARNING) {
        l->warnings++;
        strncpy(l->last, message, sizeof l->last - 1);
    }
}

/* Exported: debug mode names callbacks from the dynamic symbol table
 * (the suite is linked with -rdynamic; the project builds with hidden
 * visibility by default). */
__attribute__((visibility("default"))) void conformance_slow_callback(lb_loop *loop, void *data);
void conformance_slow_callback(lb_loop *loop, void *data) {
    (void)data;
    struct timespec ts = {0, 60 * 1000 * 1000};
    nanosleep(&ts, NULL);
    lb_loop_stop(loop);
}

/* Not exported: the dynamic symbol table cannot name it, and the report
 * gives the module and the offset instead (addr2line's input). */
static void unnamed_slow_callback(lb_loop *loop, void *data) {
    conformance_slow_callback(loop, data);
}

static void test_debug_slow_callback_named(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    logged l = {0};
    assert_int_equal(lb_loop_set_debug(loop, true), 0);
    assert_int_equal(lb_loop_set_slow_callback_duration(loop, 0.02), 0);
    assert_int_equal(lb_loop_set_slow_callback_duration(loop, -1), -EINVAL);
    lb_set_log_handler(capture, &l);
    assert_int_equal(lb_loop_call_soon(loop, conformance_slow_callback, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    lb_set_log_handler(NULL, NULL);
    assert_true(l.warnings >= 1);
    if (!strstr(l.last, "conformance_slow_callback"))
        fail_msg("last warning: %s", l.last);
    lb_loop_stats st;
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    assert_true(st.slowest_callback >= 0.05);
    assert_string_equal(st.slowest_callback_name, "conformance_slow_callback");
    lb_set_log_handler(capture, &l);
    assert_int_equal(lb_loop_call_soon(loop, unnamed_slow_callback, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    lb_set_log_handler(NULL, NULL);
    if (!strstr(l.last, "slow callback: conformance+0x"))
        fail_msg("last warning: %s", l.last);
    fixture_loop_free(loop);
}

/* A task that blocks between two awaits, the common mistake inside tasks:
 * the report names the task and its function, not the library's step. */
__attribute__((visibility("default"))) int conformance_slow_task(lb_task *task, void *data);
int conformance_slow_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(0.001);
    struct timespec ts = {0, 60 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return r;
}

static void test_debug_slow_task_named(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    logged l = {0};
    assert_int_equal(lb_loop_set_debug(loop, true), 0);
    assert_int_equal(lb_loop_set_slow_callback_duration(loop, 0.02), 0);
    lb_set_log_handler(capture, &l);
    lb_task_options opts = {.name = "blocker"};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, conformance_slow_task, NULL, &opts, &t), 0);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    lb_set_log_handler(NULL, NULL);
    assert_true(l.warnings >= 1); /* under valgrind, other steps may be slow too */
    if (!strstr(l.last, "task blocker (conformance_slow_task) took"))
        fail_msg("last warning: %s", l.last);
    lb_loop_stats st;
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    assert_string_equal(st.slowest_callback_name, "conformance_slow_task");
    fixture_loop_free(loop);
}

typedef struct all_logged {
    int count, warnings;
    char first[512];
} all_logged;

static void capture_all(lb_log_level level, const char *message, void *data) {
    all_logged *l = data;
    if (l->count++ == 0)
        strncpy(l->first, message, sizeof l->first - 1);
    l->warnings += level == LB_LOG_WARNING;
}

__attribute__((visibility("default"))) int conformance_failing_task(lb_task *task, void *data);
int conformance_failing_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return -EPIPE;
}

/* A task's error nobody read is reported once, as a warning (a GLib
 * application run with G_DEBUG=fatal-criticals must not abort for it),
 * naming the task and its function. */
static void test_debug_unread_task_error_named_once(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    all_logged l = {0};
    lb_task_options opts = {.name = "doomed"};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, conformance_failing_task, NULL, &opts, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    lb_set_log_handler(capture_all, &l);
    lb_task_unref(t);
    lb_set_log_handler(NULL, NULL);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.warnings, 1);
    if (!strstr(l.first, "task doomed (conformance_failing_task)") ||
        !strstr(l.first, "never retrieved"))
        fail_msg("logged: %s", l.first);
    fixture_loop_free(loop);
}

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static void stop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static int sleeper(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(3600);
}

static void test_debug_stats(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_loop_stats st;
    assert_int_equal(lb_loop_get_stats(loop, NULL), -EINVAL);
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_loop_call_soon(loop, nop, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 3600, nop, NULL, NULL), 0);
    assert_int_equal(lb_task_spawn(loop, sleeper, NULL, NULL, NULL), 0);
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    assert_int_equal(st.ready, 11); /* ten callbacks and the task's first step */
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    assert_true(st.iterations >= 1);
    assert_true(st.callbacks_run >= 12);
    assert_int_equal(st.timers_alive, 2); /* the far timer and the task's sleep */
    assert_int_equal(st.tasks_alive, 1);
    assert_true(st.loop_lag >= 0);
    assert_true(st.max_loop_lag >= st.loop_lag);
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(lb_loop_get_stats(loop, &st), -EBADF);
    lb_loop_unref(loop);
}

enum { BACKGROUND_TASKS = 100 };
static int unwound;
static atomic_bool job_started, job_finished;

static int background(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(3600);
    if (r == -ECANCELED)
        unwound++; /* its cleanup ran */
    return r;
}

static int slow_job(void *data, void **ret) {
    (void)data;
    (void)ret;
    atomic_store(&job_started, true);
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&job_finished, true);
    return 0;
}

static int main_task(lb_task *task, void *data) {
    int *cleanup = data;
    (void)task;
    lb_loop *loop = lb_loop_get_running();
    assert_non_null(loop);
    /* Background tasks that run() must cancel and let unwind, and a job
     * still running on the default executor that it must wait for. */
    for (int i = 0; i < BACKGROUND_TASKS; i++)
        assert_int_equal(lb_task_spawn(loop, background, NULL, NULL, NULL), 0);
    lb_future *job = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, slow_job, NULL, &job), 0);
    lb_future_unref(job);
    /* Running, not queued: close cancels a queued job instead. */
    while (!atomic_load(&job_started))
        if (lb_sleep(0.001) < 0)
            return -ECANCELED;
    (*cleanup)++;
    return lb_task_return(strdup("async result"), free);
}

static void test_debug_lb_run(void **state) {
    (void)state;
    int cleanup = 0;
    void *result = NULL;
    unwound = 0;
    atomic_store(&job_started, false);
    atomic_store(&job_finished, false);
    assert_int_equal(lb_run(main_task, &cleanup, &result), 0);
    assert_int_equal(cleanup, 1);
    assert_int_equal(unwound, BACKGROUND_TASKS);
    assert_true(atomic_load(&job_finished));
    assert_string_equal(result, "async result");
    free(result);
    assert_null(lb_loop_get_running());
    assert_int_equal(lb_run(NULL, NULL, NULL), -EINVAL);
}

int run_debug_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debug_slow_callback_named),
        cmocka_unit_test(test_debug_slow_task_named),
        cmocka_unit_test(test_debug_unread_task_error_named_once),
        cmocka_unit_test(test_debug_stats),
        cmocka_unit_test(test_debug_lb_run),
    };
    return cmocka_run_group_tests_name("debug", tests, NULL, NULL);
}
