/* SPDX-License-Identifier: MIT */
/* Shared-stack tasks (LB_TASK_SHARED_STACK): locals survive while other
 * tasks take the stack, deep frames, mixing with stacks of their own,
 * cancellation, a nested main loop holding the stack, and the memory a
 * sleeping task costs. */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const lb_task_options shared_opts = {.flags = LB_TASK_SHARED_STACK};

static lb_task *spawn_shared(lb_loop *loop, lb_task_fn fn, void *data) {
    lb_task *t = NULL;
    int r = lb_task_spawn(loop, fn, data, &shared_opts, &t);
    if (r < 0)
        fail_msg("lb_task_spawn: %s (%s)", lb_strerror(r), lb_error_detail());
    return t;
}

/* Fills a local buffer with a pattern of the task's own, switches many
 * times, and checks the buffer after each switch. */
enum { TASKS = 2000, SWITCHES = 20, PATTERN = 96 };

typedef struct tally {
    int finished;
    int corrupted;
} tally;

static unsigned char pattern_byte(uintptr_t id, int i) {
    return (unsigned char)(id * 131u + (unsigned)i * 7u);
}

static int keep_locals(lb_task *task, void *data) {
    tally *t = data;
    uintptr_t id = (uintptr_t)task;
    unsigned char local[PATTERN];
    for (int i = 0; i < PATTERN; i++)
        local[i] = pattern_byte(id, i);
    for (int s = 0; s < SWITCHES; s++) {
        int r = (s % 3 == 0) ? lb_sleep(0.0001) : lb_yield();
        if (r < 0)
            return r;
        for (int i = 0; i < PATTERN; i++)
            if (local[i] != pattern_byte(id, i)) {
                t->corrupted++;
                return -EIO;
            }
    }
    t->finished++;
    return 0;
}

static void test_task_shared_locals_survive_switches(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    tally t = {0};
    lb_task **ts = calloc(TASKS, sizeof *ts);
    for (int i = 0; i < TASKS; i++) {
        /* Every fourth task has a stack of its own: the two kinds mix. */
        lb_task_options o = {.flags = (i % 4 == 3) ? 0 : LB_TASK_SHARED_STACK};
        assert_int_equal(lb_task_spawn(loop, keep_locals, &t, &o, &ts[i]), 0);
    }
    lb_future *all = NULL;
    lb_future **fs = calloc(TASKS, sizeof *fs);
    for (int i = 0; i < TASKS; i++)
        fs[i] = lb_task_future(ts[i]);
    assert_int_equal(lb_gather(fs, TASKS, 0, &all), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, all), 0);
    assert_int_equal(lb_future_result(all, NULL), 0);
    assert_int_equal(t.corrupted, 0);
    assert_int_equal(t.finished, TASKS);
    lb_future_unref(all);
    for (int i = 0; i < TASKS; i++)
        lb_task_unref(ts[i]);
    free(fs);
    free(ts);
    fixture_loop_free(loop);
}

/* Frames far deeper than the first suspension made room for. */
static int deep(int depth, uintptr_t seed) {
    volatile unsigned char frame[512];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (unsigned char)(seed + i + (uintptr_t)depth);
    int r = depth > 0 ? deep(depth - 1, seed) : lb_yield();
    for (size_t i = 0; i < sizeof frame; i++)
        if (frame[i] != (unsigned char)(seed + i + (uintptr_t)depth))
            return -EIO;
    return r;
}

static int go_deep(lb_task *task, void *data) {
    (void)data;
    uintptr_t seed = (uintptr_t)task;
    for (int depth = 0; depth <= 160; depth += 40) {
        int r = deep(depth, seed);
        if (r < 0)
            return r;
    }
    return 0;
}

static void test_task_shared_deep_frames(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_task *a = spawn_shared(loop, go_deep, NULL);
    lb_task *b = spawn_shared(loop, go_deep, NULL);
    lb_future *fs[2] = {lb_task_future(a), lb_task_future(b)}, *all = NULL;
    assert_int_equal(lb_gather(fs, 2, 0, &all), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, all), 0);
    assert_int_equal(lb_future_result(all, NULL), 0);
    lb_future_unref(all);
    lb_task_unref(a);
    lb_task_unref(b);
    fixture_loop_free(loop);
}

/* ---------------- cancellation ---------------- */

static int never_runs(lb_task *task, void *data) {
    (void)task;
    *(int *)data = 1;
    return 0;
}

static int sleeps_long(lb_task *task, void *data) {
    (void)task;
    int r = lb_sleep(3600);
    *(int *)data = r;
    return r;
}

static void test_task_shared_cancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int ran = 0, slept = 1;
    lb_task *a = spawn_shared(loop, never_runs, &ran);
    lb_task *b = spawn_shared(loop, sleeps_long, &slept);
    assert_int_equal(lb_task_cancel(a), 1);
    /* Let b start and go to sleep, then cancel it. */
    lb_loop_stop(loop);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(lb_task_cancel(b), 1);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(b)), 0);
    assert_int_equal(ran, 0);
    assert_int_equal(slept, -ECANCELED);
    assert_true(lb_future_is_cancelled(lb_task_future(a)));
    assert_true(lb_future_is_cancelled(lb_task_future(b)));
    lb_task_unref(a);
    lb_task_unref(b);
    fixture_loop_free(loop);
}

static void test_task_shared_bad_options(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_task_options sized = {.flags = LB_TASK_SHARED_STACK, .stack_size = 64 * 1024};
    assert_int_equal(lb_task_spawn(loop, never_runs, NULL, &sized, NULL), -EINVAL);
    lb_task_options unknown = {.flags = 1u << 7};
    assert_int_equal(lb_task_spawn(loop, never_runs, NULL, &unknown, NULL), -EINVAL);
    assert_non_null(strstr(lb_error_detail(), "flags"));
    fixture_loop_free(loop);
}

/* ---------------- a nested main loop holds the stack ---------------- */

typedef struct nested {
    lb_loop *loop;
    bool stop_nested;
    bool nested_running;
    bool sleeper_ran_inside;
    int sleeper_done;
} nested;

static void end_nested(lb_loop *loop, void *data) {
    (void)loop;
    ((nested *)data)->stop_nested = true;
}

/* Runs a nested main loop (lb_driver_dispatch, as a modal dialog's loop
 * would) until a timer ends it. */
static int runs_nested_loop(lb_task *task, void *data) {
    (void)task;
    nested *n = data;
    unsigned char local[64];
    memset(local, 0x5c, sizeof local);
    if (lb_loop_call_later(n->loop, 0.05, end_nested, n, NULL) < 0)
        return -ENOMEM;
    n->nested_running = true;
    while (!n->stop_nested)
        if (lb_driver_dispatch(n->loop, lb_driver_prepare(n->loop), INT64_MAX) < 0)
            return -EIO;
    n->nested_running = false;
    for (size_t i = 0; i < sizeof local; i++)
        if (local[i] != 0x5c)
            return -EIO;
    return lb_yield();
}

static int sleeper(lb_task *task, void *data) {
    (void)task;
    nested *n = data;
    unsigned char local[64];
    memset(local, 0xa3, sizeof local);
    int r = lb_sleep(0.005); /* wakes while the nested loop runs */
    if (r < 0)
        return r;
    if (n->nested_running)
        n->sleeper_ran_inside = true;
    for (size_t i = 0; i < sizeof local; i++)
        if (local[i] != 0xa3)
            return -EIO;
    n->sleeper_done++;
    return 0;
}

static void test_task_shared_nested_loop_holds_the_stack(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    nested n = {.loop = loop};
    lb_task *s = spawn_shared(loop, sleeper, &n);
    lb_task *m = spawn_shared(loop, runs_nested_loop, &n);
    lb_future *fs[2] = {lb_task_future(s), lb_task_future(m)}, *all = NULL;
    assert_int_equal(lb_gather(fs, 2, 0, &all), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, all), 0);
    assert_int_equal(lb_future_result(all, NULL), 0);
    /* The sleeper's frames could not go where the running task's are: it
     * waited for the nested loop to end, and then ran. (Where frames cannot
     * move, it has a stack of its own and runs inside.) */
#ifndef LB_TEST_FRAMES_FIXED
    assert_false(n.sleeper_ran_inside);
#endif
    assert_int_equal(n.sleeper_done, 1);
    lb_future_unref(all);
    lb_task_unref(s);
    lb_task_unref(m);
    fixture_loop_free(loop);
}

/* ---------------- what a sleeping task costs ---------------- */

enum { SLEEPERS = 20000 };

static int sleep_a_while(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(0.2);
}

typedef struct sleepers {
    long before, during;
} sleepers;

static void measure(lb_loop *loop, void *data) {
    (void)loop;
    ((sleepers *)data)->during = fixture_resident_kb();
}

static void test_task_shared_sleeping_tasks_are_small(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    sleepers m = {.before = fixture_resident_kb()};
    for (int i = 0; i < SLEEPERS; i++)
        assert_int_equal(lb_task_spawn(loop, sleep_a_while, NULL, &shared_opts, NULL), 0);
    /* Measured once every task is asleep. */
    assert_int_equal(lb_loop_call_later(loop, 0.1, measure, &m, NULL), 0);
    while (lb_loop_task_count(loop) > 0) {
        lb_loop_stop(loop);
        assert_int_equal(lb_loop_run_forever(loop), 0);
    }
    double per_task = (double)(m.during - m.before) * 1024 / SLEEPERS;
    printf("# %d sleeping shared-stack tasks: %.0f bytes each\n", SLEEPERS, per_task);
    /* A stack of its own costs at least a page (4 KiB) per task. Resident
     * memory means nothing under memcheck or AddressSanitizer. */
    if (fixture_memory_measurable())
        assert_true(per_task < 2048);
    fixture_loop_free(loop);
}

/* Timeouts in many shared-stack tasks at once: the state of a pending
 * timeout must not live in a task's frames, which other tasks' frames
 * replace while it waits. The even tasks time out quickly (reading a
 * silent socket, or in lb_wait_for); the odd ones wait with a long timeout
 * and get their byte or result once the even ones ended. */
enum { TIMEOUT_TASKS = 64 };

typedef struct timeout_tally {
    int fd[TIMEOUT_TASKS][2];
    lb_future *f[TIMEOUT_TASKS];
    int next;
    int right, wrong, finished;
    bool quick_done, all_done;
} timeout_tally;

static int wait_with_timeout(lb_task *task, void *data) {
    timeout_tally *tt = data;
    (void)task;
    int i = tt->next++;
    bool quick = i % 2 == 0;
    double timeout = quick ? 0.01 : 3600;
    char buf[8] = {0};
    void *v = NULL;
    bool ok;
    if (i % 4 < 2) {
        ssize_t n = lb_read(tt->fd[i][0], buf, sizeof buf, timeout);
        ok = quick ? n == -ETIMEDOUT : n == 1 && buf[0] == 'x';
    } else {
        int r = lb_wait_for(tt->f[i], timeout, &v);
        ok = quick ? r == -ETIMEDOUT : r == 0 && v == tt;
    }
    if (ok)
        tt->right++;
    else
        tt->wrong++;
    if (quick && ++tt->finished == TIMEOUT_TASKS / 2)
        tt->quick_done = true;
    if (!quick && ++tt->finished == TIMEOUT_TASKS)
        tt->all_done = true;
    return 0;
}

static void test_task_shared_timeouts(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    timeout_tally tt = {0};
    for (int i = 0; i < TIMEOUT_TASKS; i++) {
        assert_int_equal(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, tt.fd[i]), 0);
        assert_int_equal(lb_future_new(loop, &tt.f[i]), 0);
        assert_int_equal(lb_task_spawn(loop, wait_with_timeout, &tt, &shared_opts, NULL), 0);
    }
    fixture_run_until(loop, &tt.quick_done, 30);
    assert_int_equal(tt.wrong, 0);
    for (int i = 1; i < TIMEOUT_TASKS; i += 2) {
        assert_int_equal(write(tt.fd[i][1], "x", 1), 1);
        assert_int_equal(lb_future_set_result(tt.f[i], &tt, NULL), 0);
    }
    fixture_run_until(loop, &tt.all_done, 30);
    assert_int_equal(tt.wrong, 0);
    assert_int_equal(tt.right, TIMEOUT_TASKS);
    for (int i = 0; i < TIMEOUT_TASKS; i++) {
        close(tt.fd[i][0]);
        close(tt.fd[i][1]);
        lb_future_unref(tt.f[i]);
    }
    fixture_loop_free(loop);
}

int run_task_shared_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_shared_locals_survive_switches),
        cmocka_unit_test(test_task_shared_deep_frames),
        cmocka_unit_test(test_task_shared_cancel),
        cmocka_unit_test(test_task_shared_bad_options),
        cmocka_unit_test(test_task_shared_nested_loop_holds_the_stack),
        cmocka_unit_test(test_task_shared_sleeping_tasks_are_small),
        cmocka_unit_test(test_task_shared_timeouts),
    };
    return cmocka_run_group_tests_name("task_shared", tests, NULL, NULL);
}
