/* SPDX-License-Identifier: MIT */
/* A SIGUSR1 storm: another thread sends the signal as fast as it can
 * while the loop runs a 1 ms ticker. The handler runs (deliveries may
 * coalesce), the ticker keeps its pace, and a signal sent once the storm
 * has settled still gets through: nothing wedges. */
#include "stress.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

typedef struct storm {
    lb_loop *loop;
    long to_send;
    atomic_long sent;
    atomic_long handled;
    /* Once the storm has settled: the handler's count before the last
     * signal was sent (-1 until then). A run past it is that signal's. */
    atomic_long handled_before_final;
    atomic_int barrier_ran;
    bool final_seen;
    long ticks;
    int64_t last_tick, max_gap;
} storm;

static void on_usr1(lb_loop *loop, void *data) {
    storm *s = data;
    (void)loop;
    long before = atomic_load(&s->handled_before_final);
    long now = atomic_fetch_add(&s->handled, 1) + 1;
    if (before >= 0 && now > before)
        s->final_seen = true;
}

static void tick(lb_loop *loop, void *data) {
    storm *s = data;
    int64_t now = stress_now_ns();
    if (s->ticks++ > 0 && now - s->last_tick > s->max_gap)
        s->max_gap = now - s->last_tick;
    s->last_tick = now;
    if (!s->final_seen)
        assert_int_equal(lb_loop_call_later(loop, 0.001, tick, s, NULL), 0);
}

static void barrier_cb(lb_loop *loop, void *data) {
    storm *s = data;
    (void)loop;
    atomic_fetch_add(&s->barrier_ran, 1);
}

/* Round trips through the loop until one saw the handler's count
 * unchanged: the storm's deliveries are in by then (a signal a thread
 * sends itself is handled before kill() returns, and the handler's pipe
 * is read in the iteration that follows). */
static void settle(storm *s) {
    long seen = -1;
    for (;;) {
        int target = atomic_load(&s->barrier_ran) + 1;
        assert_int_equal(lb_loop_call_soon_threadsafe(s->loop, barrier_cb, s), 0);
        while (atomic_load(&s->barrier_ran) < target)
            usleep(100);
        long now = atomic_load(&s->handled);
        if (now == seen)
            return;
        seen = now;
    }
}

static void *sender_main(void *data) {
    storm *s = data;
    for (long i = 0; i < s->to_send; i++) {
        kill(getpid(), SIGUSR1);
        atomic_fetch_add(&s->sent, 1);
    }
    settle(s);
    /* Sent after the storm settled, so the loop must see it once more. */
    atomic_store(&s->handled_before_final, atomic_load(&s->handled));
    kill(getpid(), SIGUSR1);
    atomic_fetch_add(&s->sent, 1);
    return NULL;
}

static void test_signals_storm(void **state) {
    (void)state;
    storm s = {.loop = fixture_loop_new(), .to_send = stress_size(100000, 500),
               .handled_before_final = -1};
    assert_int_equal(lb_loop_add_signal_handler(s.loop, SIGUSR1, on_usr1, &s), 0);
    assert_int_equal(lb_loop_call_soon(s.loop, tick, &s, NULL), 0);
    pthread_t th;
    int64_t t0 = stress_now_ns();
    assert_int_equal(pthread_create(&th, NULL, sender_main, &s), 0);
    fixture_run_until(s.loop, &s.final_seen, 120.0);
    double took = (double)(stress_now_ns() - t0) / 1e9;
    pthread_join(th, NULL);
    long handled = atomic_load(&s.handled);
    printf("# signals: %ld SIGUSR1 sent in %.2f s, handler ran %ld times (deliveries "
           "coalesce), %ld ticks, longest gap between 1 ms ticks %.1f ms\n",
           atomic_load(&s.sent), took, handled, s.ticks, (double)s.max_gap / 1e6);
    assert_true(handled >= 2);
    assert_true(handled <= atomic_load(&s.sent));
    assert_true(s.ticks >= 1);
    /* Responsive under the storm: wide margin, measured figures only. */
    if (stress_timing_checked())
        assert_true(s.max_gap < (int64_t)2 * 1000 * 1000 * 1000);
    assert_int_equal(lb_loop_remove_signal_handler(s.loop, SIGUSR1), 1);
    fixture_loop_free(s.loop);
}

int run_signal_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signals_storm),
    };
    return cmocka_run_group_tests_name("signals", tests, NULL, NULL);
}
