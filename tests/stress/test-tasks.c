/* SPDX-License-Identifier: MIT */
/* A hundred thousand tasks, cancelled at random points: each sleeps,
 * yields, awaits futures and timeouts in a random pattern while a
 * canceller picks tasks at random. Every task ends exactly once: as
 * cancelled if a cancellation was accepted, else normally. */
#include "stress.h"

#include <stdio.h>
#include <stdlib.h>

enum { WAVE = 1000 };

typedef struct job {
    lb_task *task;
    uint64_t seed;
    bool cancel_accepted;
    bool ended;  /* the body returned */
    int status;
} job;

typedef struct tasks {
    lb_loop *loop;
    job jobs[WAVE];
    size_t wave_size;
    size_t done;       /* futures of this wave completed */
    long cancelled;
    long errors;
    stress_rng rng;
    bool wave_done;
    bool stop_cancelling;
    bool canceller_running; /* one chain of cancel_some for the whole test */
} tasks;

static tasks *current;

static void resolve(lb_loop *loop, void *data) {
    (void)loop;
    lb_future_set_result(data, NULL, NULL);
}

/* The scheduled resolve holds a reference of its own: a task cancelled
 * while it awaits the future drops its reference before the callback
 * runs. */
static void future_release(void *data) {
    lb_future_unref(data);
}

/* One awaited step of a task, chosen by its own generator. */
static int step(stress_rng *rng) {
    lb_loop *loop = current->loop;
    switch (stress_below(rng, 4)) {
    case 0:
        return lb_yield();
    case 1:
        return lb_sleep((double)stress_below(rng, 2000) * 1e-6);
    case 2: {
        lb_future *f = NULL;
        int r = lb_future_new(loop, &f);
        if (r == 0)
            r = stress_below(rng, 2)
                    ? lb_loop_call_soon_full(loop, resolve, lb_future_ref(f), future_release, NULL)
                    : lb_loop_call_later_full(loop, 0.0005, resolve, lb_future_ref(f),
                                              future_release, NULL);
        if (r == 0)
            r = lb_await(f, NULL);
        lb_future_unref(f);
        return r;
    }
    default: {
        lb_future *never = NULL;
        int r = lb_future_new(loop, &never);
        if (r == 0)
            r = lb_wait_for(never, 0.0003, NULL);
        lb_future_unref(never);
        return r == -ETIMEDOUT ? 0 : r;
    }
    }
}

static int body(lb_task *task, void *data) {
    job *j = data;
    stress_rng rng = {j->seed};
    (void)task;
    int r = 0;
    int steps = 1 + (int)stress_below(&rng, 6);
    for (int i = 0; i < steps && r == 0; i++)
        r = step(&rng);
    j->ended = true;
    j->status = r;
    return r;
}

static void on_task_done(lb_future *f, void *data) {
    tasks *t = data;
    (void)f;
    if (++t->done == t->wave_size)
        t->wave_done = true;
}

static void cancel_some(lb_loop *loop, void *data) {
    tasks *t = data;
    if (t->stop_cancelling) {
        t->canceller_running = false;
        return;
    }
    for (int k = 0; k < 8; k++) {
        job *j = &t->jobs[stress_below(&t->rng, t->wave_size)];
        if (lb_task_cancel(j->task) == 1 && !j->cancel_accepted) {
            j->cancel_accepted = true;
            t->cancelled++;
        }
    }
    assert_int_equal(lb_loop_call_later(loop, 0.0002, cancel_some, t, NULL), 0);
}

static void test_tasks_cancelled_at_random(void **state) {
    (void)state;
    tasks *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->loop = fixture_loop_new();
    t->rng.s = 0xD1B54A32D192ED03ULL;
    current = t;
    long total = stress_size(100000, 2000);
    long run = 0, ended_normally = 0;
    int64_t t0 = stress_now_ns();
    while (run < total) {
        t->wave_size = (size_t)(total - run < WAVE ? total - run : WAVE);
        t->done = 0;
        t->wave_done = false;
        for (size_t i = 0; i < t->wave_size; i++) {
            job *j = &t->jobs[i];
            *j = (job){.seed = stress_next(&t->rng) | 1};
            assert_int_equal(lb_task_spawn(t->loop, body, j, NULL, &j->task), 0);
            assert_int_equal(
                lb_future_add_done_callback(lb_task_future(j->task), on_task_done, t), 0);
        }
        /* The canceller's next tick may still be scheduled from the last
         * wave (the loop stopped, it did not run): it carries on. */
        t->stop_cancelling = false;
        if (!t->canceller_running) {
            t->canceller_running = true;
            assert_int_equal(lb_loop_call_soon(t->loop, cancel_some, t, NULL), 0);
        }
        fixture_run_until(t->loop, &t->wave_done, 120.0);
        for (size_t i = 0; i < t->wave_size; i++) {
            job *j = &t->jobs[i];
            assert_true(lb_task_is_done(j->task));
            int r = lb_future_result(lb_task_future(j->task), NULL);
            if (j->cancel_accepted) {
                /* Cancelled before it first ran (never ran), or at one
                 * of its waits. */
                if (r != -ECANCELED || (j->ended && j->status != -ECANCELED))
                    t->errors++;
            } else {
                if (r != 0 || !j->ended || j->status != 0)
                    t->errors++;
                ended_normally++;
            }
            lb_task_unref(j->task);
        }
        run += (long)t->wave_size;
    }
    t->stop_cancelling = true;
    double took = (double)(stress_now_ns() - t0) / 1e9;
    printf("# tasks: %ld in waves of %d, %ld cancelled at random points, %ld ended normally, "
           "%.2f s (%.1f us per task)\n",
           run, WAVE, t->cancelled, ended_normally, took, took * 1e6 / (double)run);
    assert_int_equal(t->errors, 0);
    assert_int_equal(t->cancelled + ended_normally, run);
    assert_int_equal(lb_loop_task_count(t->loop), 0);
    fixture_loop_free(t->loop);
    free(t);
}

int run_task_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tasks_cancelled_at_random),
    };
    return cmocka_run_group_tests_name("tasks", tests, NULL, NULL);
}
