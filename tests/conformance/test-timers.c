/* SPDX-License-Identifier: MIT */
/* call_later / call_at: ordering, FIFO among equal deadlines, never
 * early, cancellation. Time bounds are generous: correctness never
 * depends on the machine being fast. */
#include "fixture.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct fired {
    char order[16];
    int n;
    double at[16];
} fired;

typedef struct tag {
    fired *f;
    char name;
    double earliest; /* monotonic seconds before which it must not run */
} tag;

static void fire(lb_loop *loop, void *data) {
    tag *t = data;
    double now = fixture_now();
    assert_true(now >= t->earliest);
    t->f->at[t->f->n] = now;
    t->f->order[t->f->n++] = t->name;
    (void)loop;
}

static void count_cb_timers(lb_loop *loop, void *data) {
    (*(int *)data)++;
    (void)loop;
}

static void stop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

/* The seed's call_later example: B (1 s) fires before A (2 s); scaled
 * down to 50 and 100 ms. */
static void test_timer_call_later_order(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fired f = {0};
    double t0 = fixture_now();
    tag a = {&f, 'A', t0 + 0.1}, b = {&f, 'B', t0 + 0.05};
    assert_int_equal(lb_loop_call_later(loop, 0.1, fire, &a, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, fire, &b, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.15, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.order[0], 'B');
    assert_int_equal(f.order[1], 'A');
    fixture_loop_free(loop);
}

static void test_timer_equal_deadlines_fifo(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fired f = {0};
    tag t[8];
    double when = lb_loop_time(loop) + 0.02;
    for (int i = 0; i < 8; i++) {
        t[i] = (tag){&f, (char)('a' + i), 0};
        assert_int_equal(lb_loop_call_at(loop, when, fire, &t[i], NULL), 0);
    }
    assert_int_equal(lb_loop_call_at(loop, when + 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(f.n, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(f.order[i], 'a' + i);
    fixture_loop_free(loop);
}

static void test_timer_call_at_loop_time(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fired f = {0};
    tag t = {&f, 'x', 0};
    lb_handle *h = NULL;
    double when = lb_loop_time(loop) + 0.03;
    assert_int_equal(lb_loop_call_at(loop, when, fire, &t, &h), 0);
    assert_true(lb_handle_when(h) >= when - 1e-9 && lb_handle_when(h) <= when + 1e-6);
    assert_int_equal(lb_loop_call_at(loop, when + 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(f.n, 1);
    /* The loop's clock at the iteration that ran it was past its time. */
    assert_true(lb_loop_time(loop) >= when);
    lb_handle_unref(h);
    fixture_loop_free(loop);
}

static void test_timer_cancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_handle *h = NULL;
    assert_int_equal(lb_loop_call_later(loop, 0.01, (lb_callback)abort, NULL, &h), 0);
    assert_int_equal(lb_handle_cancel(h), 1);
    assert_int_equal(lb_loop_call_later(loop, 0.05, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(lb_handle_cancel(h), 0);
    lb_handle_unref(h);
    fixture_loop_free(loop);
}

static void test_timer_negative_delay_runs(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fired f = {0};
    tag t = {&f, 'n', 0};
    assert_int_equal(lb_loop_call_later(loop, -5.0, fire, &t, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(f.n, 1);
    fixture_loop_free(loop);
}

/* A cancelled far-away timer must not keep the loop awake, nor a
 * cancelled near one make it wake for nothing: the loop just runs. */
typedef struct storm {
    lb_loop *loop;
    long fired;
    long expected;
    double last_deadline_seen;
    uint64_t rng;
} storm;

typedef struct storm_timer {
    storm *s;
    double deadline;
    lb_handle *h;
} storm_timer;

static void storm_fire(lb_loop *loop, void *data) {
    storm_timer *t = data;
    double now = fixture_now();
    assert_true(now >= t->deadline);
    t->s->fired++;
    if (t->s->fired == t->s->expected)
        lb_loop_stop(loop);
}

static uint64_t next_rand(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void test_timer_random_with_cancels(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    enum { N = 20000 };
    storm s = {.loop = loop, .rng = 42};
    storm_timer *t = calloc(N, sizeof *t);
    for (int i = 0; i < N; i++) {
        double delay = (double)(next_rand(&s.rng) >> 11) / 9007199254740992.0 * 0.2;
        t[i].s = &s;
        t[i].deadline = fixture_now() + delay;
        assert_int_equal(lb_loop_call_later(loop, delay, storm_fire, &t[i], &t[i].h), 0);
    }
    for (int i = 0; i < N; i++) {
        if (next_rand(&s.rng) & 1)
            assert_int_equal(lb_handle_cancel(t[i].h), 1);
        else
            s.expected++;
    }
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(s.fired, s.expected);
    for (int i = 0; i < N; i++)
        lb_handle_unref(t[i].h);
    free(t);
    fixture_loop_free(loop);
}

/* Two timers come due in the same iteration; the first cancels the
 * second while it waits in the ready queue, out of the heap already. */
typedef struct due_pair {
    lb_handle *second;
    int cancelled;
    size_t alive_after_cancel;
    bool second_ran;
} due_pair;

static void cancel_second(lb_loop *loop, void *data) {
    due_pair *p = data;
    p->cancelled = lb_handle_cancel(p->second);
    lb_loop_stats st;
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    p->alive_after_cancel = st.timers_alive;
}

static void mark_second(lb_loop *loop, void *data) {
    ((due_pair *)data)->second_ran = true;
    (void)loop;
}

static void test_timer_cancel_while_due(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    due_pair p = {0};
    int64_t past = lb_loop_time_ns(loop) - 1000000;
    assert_int_equal(lb_loop_call_at_ns(loop, past, cancel_second, &p, NULL), 0);
    assert_int_equal(lb_loop_call_at_ns(loop, past, mark_second, &p, &p.second), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(p.cancelled, 1);
    assert_false(p.second_ran);
    /* The stop timer is the only one left when the second is cancelled. */
    assert_true(p.alive_after_cancel <= 1);
    lb_loop_stats st;
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    assert_int_equal(st.timers_alive, 0);
    lb_handle_unref(p.second);
    fixture_loop_free(loop);
}

/* A bound that does not rely on the loop's own timers: a thread stops the
 * loop after a while unless the test finished first. */
typedef struct watchdog {
    lb_loop *loop;
    atomic_bool done;
    atomic_bool fired;
} watchdog;

static void *watchdog_main(void *data) {
    watchdog *w = data;
    for (int i = 0; i < 500 && !atomic_load(&w->done); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    if (!atomic_load(&w->done)) {
        atomic_store(&w->fired, true);
        lb_loop_call_soon_threadsafe(w->loop, stop_cb, NULL);
    }
    return NULL;
}

/* Runs the loop until it stops itself, failing the test if the watchdog
 * had to stop it. */
static void run_with_watchdog(lb_loop *loop) {
    watchdog w = {.loop = loop};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watchdog_main, &w), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    atomic_store(&w.done, true);
    pthread_join(th, NULL);
    assert_false(atomic_load(&w.fired));
}

static void stop_and_note(lb_loop *loop, void *data) {
    *(bool *)data = true;
    lb_loop_stop(loop);
}

/* The earliest possible deadline is in the past, not a reason to sleep
 * through the other timers (the distance to it overflowed). */
static void test_timer_call_at_earliest_time(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int first = 0;
    bool later_ran = false;
    assert_int_equal(lb_loop_call_at_ns(loop, INT64_MIN, count_cb_timers, &first, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, stop_and_note, &later_ran, NULL), 0);
    run_with_watchdog(loop);
    assert_int_equal(first, 1);
    assert_true(later_ran);
    fixture_loop_free(loop);
}

static char timer_log[512];
static void capture_timer_log(lb_log_level level, const char *message, void *data) {
    (void)level;
    (void)data;
    snprintf(timer_log, sizeof timer_log, "%s", message);
}

/* Unreffing a pending timer's handle once too often is reported, and the
 * timer still runs, at its own deadline (the extra unref freed the slot
 * under the heap, and the next timer took it over). */
static void test_timer_double_unref_pending(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    bool first_ran = false, second_ran = false;
    lb_handle *h = NULL, *h2 = NULL;
    assert_int_equal(lb_loop_call_later(loop, 0.05, stop_and_note, &first_ran, &h), 0);
    timer_log[0] = '\0';
    lb_set_log_handler(capture_timer_log, NULL);
    lb_handle_unref(h);
    lb_handle_unref(h); /* the mistake */
    lb_set_log_handler(NULL, NULL);
    assert_non_null(strstr(timer_log, "has no reference left"));
    assert_int_equal(lb_loop_call_later(loop, 3600, stop_and_note, &second_ran, &h2), 0);
    run_with_watchdog(loop);
    assert_true(first_ran);
    assert_false(second_ran);
    assert_int_equal(lb_handle_cancel(h2), 1);
    lb_handle_unref(h2);
    fixture_loop_free(loop);
}

/* Timers close together are waited for by polling, not by a sleep
 * before each: a sleep shorter than the kernel's timer slack (50 us) is
 * no more precise than the slack, GLib sleeps in whole milliseconds, and
 * on a virtual machine one wakeup in a few thousand comes milliseconds
 * late, making every timer due meanwhile late too (docs/performance.md,
 * W3). A sleep is a voluntary context switch of the loop's thread. */
enum { CLOSE_TIMERS = 200 };

typedef struct close_timers {
    int fired;
} close_timers;

static void close_timer_fired(lb_loop *loop, void *data) {
    close_timers *ct = data;
    if (++ct->fired == CLOSE_TIMERS)
        assert_int_equal(lb_loop_stop(loop), 0);
}

static void stop_loop(lb_loop *loop, void *data) {
    (void)data;
    assert_int_equal(lb_loop_stop(loop), 0);
}

static long voluntary_switches(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_nvcsw;
}

static void expect_timers_polled(int64_t spacing_ns) {
    if (fixture_under_valgrind())
        skip(); /* its one-thread-at-a-time lock switches threads itself */
    lb_loop *loop = fixture_loop_new();
    close_timers ct = {0};
    /* Far enough ahead that scheduling them all ends first. */
    int64_t start = lb_loop_time_ns(loop) + 20 * 1000 * 1000;
    for (int i = 0; i < CLOSE_TIMERS; i++)
        assert_int_equal(
            lb_loop_call_at_ns(loop, start + i * spacing_ns, close_timer_fired, &ct, NULL), 0);
    /* The sleep until just before the first timer comes before the count
     * starts: a timer 2 ms ahead of it stops the loop. */
    assert_int_equal(lb_loop_call_at_ns(loop, start - 2 * 1000 * 1000, stop_loop, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    long before = voluntary_switches();
    assert_int_equal(lb_loop_run_forever(loop), 0);
    long slept = voluntary_switches() - before;
    assert_int_equal(ct.fired, CLOSE_TIMERS);
    /* Generous: a busy machine preempts, and a host may sleep now and
     * then for its own reasons. */
    if (slept >= CLOSE_TIMERS / 4)
        fail_msg("the loop slept %ld times for %d timers %lld us apart", slept, CLOSE_TIMERS,
                 (long long)(spacing_ns / 1000));
    fixture_loop_free(loop);
}

static void test_timer_close_deadlines_are_polled(void **state) {
    (void)state;
    expect_timers_polled(30 * 1000);
}

/* GLib sleeps in whole milliseconds: its bridge polls for a deadline less
 * than one away rather than sleep past it. */
static void test_timer_sub_ms_deadlines_polled_on_glib(void **state) {
    (void)state;
    const char *driver = getenv("LB_DRIVER");
    if (!driver || strcmp(driver, "glib") != 0)
        skip();
    expect_timers_polled(300 * 1000);
}

int run_timer_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_call_later_order),
        cmocka_unit_test(test_timer_equal_deadlines_fifo),
        cmocka_unit_test(test_timer_call_at_loop_time),
        cmocka_unit_test(test_timer_cancel),
        cmocka_unit_test(test_timer_negative_delay_runs),
        cmocka_unit_test(test_timer_random_with_cancels),
        cmocka_unit_test(test_timer_cancel_while_due),
        cmocka_unit_test(test_timer_call_at_earliest_time),
        cmocka_unit_test(test_timer_double_unref_pending),
        cmocka_unit_test(test_timer_close_deadlines_are_polled),
        cmocka_unit_test(test_timer_sub_ms_deadlines_polled_on_glib),
    };
    return cmocka_run_group_tests_name("timers", tests, NULL, NULL);
}
