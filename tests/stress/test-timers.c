/* SPDX-License-Identifier: MIT */
/* A million timers, some cancelled at random while the loop runs: each
 * runs once or never, never before its deadline. */
#include "stress.h"

#include <stdio.h>
#include <stdlib.h>

enum { PENDING = 0, RAN = 1, CANCELLED = 2 };

typedef struct timers {
    lb_loop *loop;
    long n;
    uint8_t *state;
    int64_t *due;      /* a lower bound of each deadline, ns */
    lb_handle **held;  /* the handles kept for cancelling (NULL: floating) */
    long ran, cancelled, cancel_misses;
    long early, twice;
    int64_t max_late;
    stress_rng rng;
    bool all_done;
} timers;

static timers *current;

static void on_timer(lb_loop *loop, void *data) {
    timers *t = current;
    long i = (long)(uintptr_t)data;
    int64_t now = stress_now_ns();
    if (t->state[i] != PENDING)
        t->twice++;
    if (now < t->due[i] || lb_loop_time_ns(loop) < t->due[i])
        t->early++;
    if (now - t->due[i] > t->max_late)
        t->max_late = now - t->due[i];
    t->state[i] = RAN;
    if (++t->ran + t->cancelled == t->n)
        t->all_done = true;
}

/* Every half millisecond: cancel a few timers picked at random. A cancel
 * that succeeds means the timer never runs; one that finds nothing to
 * cancel means it ran (or was cancelled) already. */
static void cancel_some(lb_loop *loop, void *data) {
    timers *t = data;
    for (int k = 0; k < 512; k++) {
        long i = (long)stress_below(&t->rng, (uint64_t)t->n);
        if (!t->held[i])
            continue;
        int r = lb_handle_cancel(t->held[i]);
        if (r == 1) {
            if (t->state[i] != PENDING)
                t->cancel_misses++;
            t->state[i] = CANCELLED;
            if (t->ran + ++t->cancelled == t->n)
                t->all_done = true;
        } else if (t->state[i] == PENDING) {
            t->cancel_misses++;
        }
    }
    if (loop && !t->all_done)
        assert_int_equal(lb_loop_call_later(loop, 0.0005, cancel_some, t, NULL), 0);
}

static void test_timers_million_with_cancels(void **state) {
    (void)state;
    timers t = {.loop = fixture_loop_new(), .n = stress_size(1000000, 2000)};
    t.rng.s = 0x2545F4914F6CDD1DULL;
    t.state = calloc((size_t)t.n, 1);
    t.due = calloc((size_t)t.n, sizeof *t.due);
    t.held = calloc((size_t)t.n, sizeof *t.held);
    assert_non_null(t.state);
    assert_non_null(t.due);
    assert_non_null(t.held);
    current = &t;
    int64_t t0 = stress_now_ns();
    for (long i = 0; i < t.n; i++) {
        /* Up to 0.8 s, at microsecond steps: many share a deadline, so
         * the FIFO tie-break is exercised too. */
        double delay = (double)stress_below(&t.rng, 800) * 1e-3 +
                       (double)stress_below(&t.rng, 4) * 1e-6;
        lb_handle **keep = stress_below(&t.rng, 4) == 0 ? &t.held[i] : NULL;
        t.due[i] = stress_now_ns() + (int64_t)(delay * 1e9);
        assert_int_equal(lb_loop_call_later(t.loop, delay, on_timer, (void *)(uintptr_t)i, keep),
                         0);
    }
    double scheduling = (double)(stress_now_ns() - t0) / 1e9;
    /* A first wave of cancels before the loop runs, then more while the
     * timers fire. */
    for (int k = 0; k < 200; k++)
        cancel_some(NULL, &t);
    assert_int_equal(lb_loop_call_soon(t.loop, cancel_some, &t, NULL), 0);
    fixture_run_until(t.loop, &t.all_done, 300.0);
    double took = (double)(stress_now_ns() - t0) / 1e9;

    long pending = 0;
    for (long i = 0; i < t.n; i++)
        pending += t.state[i] == PENDING;
    printf("# timers: %ld scheduled in %.2f s, %ld ran, %ld cancelled at random, %ld early, "
           "max lateness %.1f ms, %.2f s in all\n",
           t.n, scheduling, t.ran, t.cancelled, t.early, (double)t.max_late / 1e6, took);
    assert_int_equal(t.twice, 0);
    assert_int_equal(t.early, 0);
    assert_int_equal(t.cancel_misses, 0);
    assert_int_equal(pending, 0);
    assert_int_equal(t.ran + t.cancelled, t.n);
    for (long i = 0; i < t.n; i++)
        lb_handle_unref(t.held[i]);
    fixture_loop_free(t.loop);
    free(t.state);
    free(t.due);
    free(t.held);
}

int run_timer_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_million_with_cancels),
    };
    return cmocka_run_group_tests_name("timers", tests, NULL, NULL);
}
