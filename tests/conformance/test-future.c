/* SPDX-License-Identifier: MIT */
/* lb_future: outcomes, done callbacks, cross-thread completion and
 * waiting. */
#include "fixture.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void stop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static void run_once(lb_loop *loop) {
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
}

static int destroyed;
static void count_destroy(void *v) {
    (void)v;
    destroyed++;
}

static void test_future_result(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_ptr_equal(lb_future_get_loop(f), loop);
    assert_false(lb_future_is_done(f));
    assert_int_equal(lb_future_result(f, NULL), -EAGAIN);
    destroyed = 0;
    int value = 5;
    assert_int_equal(lb_future_set_result(f, &value, count_destroy), 0);
    assert_true(lb_future_is_done(f));
    assert_false(lb_future_is_cancelled(f));
    void *v = NULL;
    assert_int_equal(lb_future_result(f, &v), 0);
    assert_ptr_equal(v, &value);
    /* Completing twice is refused, and the refused value is destroyed. */
    assert_int_equal(lb_future_set_result(f, &value, count_destroy), -EALREADY);
    assert_int_equal(destroyed, 1);
    assert_int_equal(lb_future_set_error(f, -EIO), -EALREADY);
    assert_int_equal(lb_future_cancel(f), 0);
    lb_future_unref(f);
    assert_int_equal(destroyed, 2);
    fixture_loop_free(loop);
}

static void test_future_error_and_cancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL, *g = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_future_set_error(f, 0), -EINVAL);
    assert_int_equal(lb_future_set_error(f, 5), -EINVAL);
    assert_int_equal(lb_future_set_error(f, -ECANCELED), -EINVAL);
    assert_int_equal(lb_future_set_error(f, -EIO), 0);
    assert_int_equal(lb_future_result(f, NULL), -EIO);
    assert_int_equal(lb_future_new(loop, &g), 0);
    assert_int_equal(lb_future_cancel(g), 1);
    assert_int_equal(lb_future_cancel(g), 0);
    assert_true(lb_future_is_cancelled(g));
    assert_int_equal(lb_future_result(g, NULL), -ECANCELED);
    lb_future_unref(f);
    lb_future_unref(g);
    fixture_loop_free(loop);
}

typedef struct cb_log {
    int order[8];
    int n;
    lb_future *expected;
} cb_log;

static void done_a(lb_future *f, void *data) {
    cb_log *l = data;
    assert_ptr_equal(f, l->expected);
    l->order[l->n++] = 1;
}

static void done_b(lb_future *f, void *data) {
    cb_log *l = data;
    (void)f;
    l->order[l->n++] = 2;
}

static void done_c(lb_future *f, void *data) {
    cb_log *l = data;
    (void)f;
    l->order[l->n++] = 3;
}

static void test_future_callbacks_in_order(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    cb_log log = {0};
    assert_int_equal(lb_future_new(loop, &f), 0);
    log.expected = f;
    assert_int_equal(lb_future_add_done_callback(f, done_a, &log), 0);
    assert_int_equal(lb_future_add_done_callback(f, done_b, &log), 0);
    assert_int_equal(lb_future_add_done_callback(f, done_c, &log), 0);
    assert_int_equal(lb_future_add_done_callback(f, done_b, &log), 0);
    assert_int_equal(lb_future_remove_done_callback(f, done_b, &log), 2);
    assert_int_equal(lb_future_add_done_callback(f, done_b, &log), 0);
    assert_int_equal(lb_future_set_result(f, NULL, NULL), 0);
    /* Scheduled with call_soon: nothing ran yet. */
    assert_int_equal(log.n, 0);
    run_once(loop);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.order[0], 1);
    assert_int_equal(log.order[1], 3);
    assert_int_equal(log.order[2], 2);
    /* Added after completion: runs in the next iteration. */
    assert_int_equal(lb_future_add_done_callback(f, done_a, &log), 0);
    assert_int_equal(log.n, 3);
    run_once(loop);
    assert_int_equal(log.n, 4);
    lb_future_unref(f);
    fixture_loop_free(loop);
}

/* A callback keeps its future alive even if the caller dropped it. */
static void test_future_callback_holds_reference(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    cb_log log = {0};
    assert_int_equal(lb_future_new(loop, &f), 0);
    log.expected = f;
    assert_int_equal(lb_future_add_done_callback(f, done_a, &log), 0);
    assert_int_equal(lb_future_set_result(f, NULL, NULL), 0);
    lb_future_unref(f);
    run_once(loop);
    assert_int_equal(log.n, 1);
    fixture_loop_free(loop);
}

static void test_future_unread_error_reported(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fixture_reports rep = {0};
    fixture_capture_reports(loop, &rep);
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_future_set_error(f, -EPIPE), 0);
    lb_future_unref(f);
    assert_int_equal(rep.count, 1);
    assert_int_equal(rep.error, -EPIPE);
    assert_non_null(strstr(rep.message, "never retrieved"));
    /* A read error is not reported. */
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_future_set_error(f, -EPIPE), 0);
    assert_int_equal(lb_future_result(f, NULL), -EPIPE);
    lb_future_unref(f);
    assert_int_equal(rep.count, 1);
    fixture_loop_free(loop);
}

typedef struct waiter {
    lb_future *future;
    double timeout;
    int result;
    void *value;
} waiter;

static void *wait_main(void *data) {
    waiter *w = data;
    w->result = lb_future_wait(w->future, w->timeout, &w->value);
    return NULL;
}

static void test_future_wait_timeout(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    waiter w = {.future = f, .timeout = 0.05};
    pthread_t th;
    double t0 = fixture_now();
    assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.result, -ETIMEDOUT);
    assert_true(fixture_now() - t0 >= 0.05);
    lb_future_unref(f);
    fixture_loop_free(loop);
}

static void resolve_later(lb_loop *loop, void *data) {
    waiter *w = data;
    static int answer = 42;
    assert_int_equal(lb_future_set_result(w->future, &answer, NULL), 0);
    (void)loop;
}

static void stop_when_done(lb_future *f, void *data) {
    (void)f;
    lb_loop_stop(data);
}

/* Another thread waits with timeout while the loop resolves the future
 * after delay seconds. */
static void check_wait_from_thread(double timeout, double delay) {
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    waiter w = {.future = f, .timeout = timeout, .result = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
    assert_int_equal(lb_loop_call_later(loop, delay, resolve_later, &w, NULL), 0);
    assert_int_equal(lb_future_add_done_callback(f, stop_when_done, loop), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.result, 0);
    assert_int_equal(*(int *)w.value, 42);
    lb_future_unref(f);
    fixture_loop_free(loop);
}

static void test_future_wait_from_thread(void **state) {
    (void)state;
    check_wait_from_thread(30, 0.02);
}

/* An infinite timeout waits as long as it takes (it timed out at once). */
static void test_future_wait_infinite(void **state) {
    (void)state;
    check_wait_from_thread(INFINITY, 0.2);
}

typedef struct deadlock {
    lb_future *future;
    int result;
} deadlock;

static void wait_on_loop_thread(lb_loop *loop, void *data) {
    deadlock *d = data;
    d->result = lb_future_wait(d->future, 1.0, NULL);
    lb_loop_stop(loop);
}

static void test_future_wait_on_loop_thread_refused(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    deadlock d = {0};
    assert_int_equal(lb_future_new(loop, &d.future), 0);
    assert_int_equal(lb_loop_call_soon(loop, wait_on_loop_thread, &d, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(d.result, -EDEADLK);
    lb_future_unref(d.future);
    fixture_loop_free(loop);
}

static atomic_int thread_failures;

static void *resolve_threadsafe(void *data) {
    lb_future *f = data;
    char *text = strdup("from a thread");
    if (lb_future_set_result_threadsafe(f, text, free) != 0)
        atomic_fetch_add(&thread_failures, 1);
    return NULL;
}

static void test_future_set_result_threadsafe(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, resolve_threadsafe, f), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, f), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&thread_failures), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(f, &v), 0);
    assert_string_equal(v, "from a thread");
    lb_future_unref(f);
    fixture_loop_free(loop);
}

/* Many futures chained through done callbacks: each resolves the next. */
typedef struct link_chain {
    lb_future **f;
    int n;
    int at;
} link_chain;

static void resolve_next(lb_future *f, void *data) {
    link_chain *c = data;
    (void)f;
    c->at++;
    if (c->at < c->n)
        assert_int_equal(lb_future_set_result(c->f[c->at], NULL, NULL), 0);
}

static void test_future_chain(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    enum { N = 10000 };
    link_chain c = {.f = calloc(N, sizeof(lb_future *)), .n = N};
    for (int i = 0; i < N; i++) {
        assert_int_equal(lb_future_new(loop, &c.f[i]), 0);
        assert_int_equal(lb_future_add_done_callback(c.f[i], resolve_next, &c), 0);
    }
    assert_int_equal(lb_future_set_result(c.f[0], NULL, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, c.f[N - 1]), 0);
    for (int i = 0; i < N; i++)
        lb_future_unref(c.f[i]);
    free(c.f);
    fixture_loop_free(loop);
}

static void test_future_null_arguments(void **state) {
    (void)state;
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(NULL, &f), -EINVAL);
    assert_int_equal(lb_future_set_result(NULL, NULL, NULL), -EINVAL);
    assert_int_equal(lb_future_set_error(NULL, -EIO), -EINVAL);
    assert_int_equal(lb_future_cancel(NULL), -EINVAL);
    assert_int_equal(lb_future_result(NULL, NULL), -EINVAL);
    assert_int_equal(lb_future_wait(NULL, 0, NULL), -EINVAL);
    assert_int_equal(lb_future_add_done_callback(NULL, done_a, NULL), -EINVAL);
    assert_null(lb_future_unref(NULL));
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_future_new(loop, NULL), -EINVAL);
    fixture_loop_free(loop);
}

/* The last reference of a future with a pending done callback goes on
 * another thread, then the loop closes: the close must not complete the
 * future whose free is already on its way (the callback's reference
 * would outlive that free). The callback is dropped: its destroy runs
 * once, the callback never. */
static int orphan_ran, orphan_destroyed;

static void orphan_cb(lb_future *f, void *data) {
    (void)f;
    (void)data;
    orphan_ran++;
}

static void orphan_destroy(void *data) {
    (void)data;
    orphan_destroyed++;
}

static void *unref_main(void *f) {
    lb_future_unref(f);
    return NULL;
}

static void test_future_last_unref_elsewhere_then_close(void **state) {
    (void)state;
    orphan_ran = orphan_destroyed = 0;
    lb_loop *loop = fixture_loop_new();
    lb_future *f;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_future_add_done_callback_full(f, orphan_cb, NULL, orphan_destroy), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unref_main, f), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    fixture_loop_free(loop);
    assert_int_equal(orphan_ran, 0);
    assert_int_equal(orphan_destroyed, 1);
}

/* Destroy notifies that run while done callbacks are removed or dropped
 * may add or remove callbacks of the same future. */
static lb_future *reentrant_future;
static int replaced_ran, replaced_destroyed;
static bool replaced_ran_flag;

static void noop_cb(lb_future *f, void *data) {
    (void)f;
    (void)data;
}

static void replaced_cb(lb_future *f, void *data) {
    (void)f;
    (void)data;
    replaced_ran++;
    replaced_ran_flag = true;
}

static void replaced_destroy(void *data) {
    (void)data;
    replaced_destroyed++;
}

static void readd_destroy(void *data) {
    (void)data;
    assert_int_equal(lb_future_add_done_callback_full(reentrant_future, replaced_cb, NULL,
                                                      replaced_destroy),
                     0);
}

static void remove_first_destroy(void *data) {
    (void)data;
    lb_future_remove_done_callback(reentrant_future, noop_cb, NULL);
}

static void test_future_remove_destroy_reenters(void **state) {
    (void)state;
    replaced_ran = replaced_destroyed = 0;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_future_new(loop, &reentrant_future), 0);
    /* A destroy that adds a callback while its own is removed. */
    assert_int_equal(
        lb_future_add_done_callback_full(reentrant_future, noop_cb, &replaced_ran, readd_destroy),
        0);
    assert_int_equal(lb_future_remove_done_callback(reentrant_future, noop_cb, &replaced_ran), 1);
    /* A destroy that removes the callback before it. */
    assert_int_equal(lb_future_add_done_callback(reentrant_future, noop_cb, NULL), 0);
    assert_int_equal(lb_future_add_done_callback_full(reentrant_future, noop_cb, (void *)1,
                                                      remove_first_destroy),
                     0);
    assert_int_equal(lb_future_remove_done_callback(reentrant_future, noop_cb, (void *)1), 1);
    assert_int_equal(lb_future_set_result(reentrant_future, NULL, NULL), 0);
    replaced_ran_flag = false;
    fixture_run_until(loop, &replaced_ran_flag, 5);
    assert_int_equal(replaced_ran, 1);
    assert_int_equal(replaced_destroyed, 1);
    lb_future_unref(reentrant_future);
    fixture_loop_free(loop);
}

/* A destroy notify that adds a callback to the future being freed: the
 * added callback is dropped at once (its destroy runs, it never does).
 * Once from a dropped callback's destroy, once from the value's. */
static void test_future_free_destroy_adds(void **state) {
    (void)state;
    replaced_ran = replaced_destroyed = 0;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_future_new(loop, &reentrant_future), 0);
    assert_int_equal(
        lb_future_add_done_callback_full(reentrant_future, noop_cb, NULL, readd_destroy), 0);
    lb_future_unref(reentrant_future);
    assert_int_equal(replaced_destroyed, 1);
    assert_int_equal(lb_future_new(loop, &reentrant_future), 0);
    assert_int_equal(lb_future_set_result(reentrant_future, NULL, readd_destroy), 0);
    lb_future_unref(reentrant_future);
    assert_int_equal(replaced_destroyed, 2);
    fixture_loop_free(loop);
    assert_int_equal(replaced_ran, 0);
}

/* After the loop's close returned, its futures may be released on any
 * thread, on two at once too: the releases must not race each other,
 * and the loop (kept by the futures) is freed once, by the last. */
typedef struct release_race {
    pthread_barrier_t *start;
    lb_future *future;
} release_race;

static void *release_race_main(void *data) {
    release_race *race = data;
    pthread_barrier_wait(race->start);
    lb_future_unref(race->future);
    return NULL;
}

static void test_future_released_on_two_threads_after_close(void **state) {
    (void)state;
    for (int i = 0; i < 50; i++) {
        lb_loop *loop = fixture_loop_new();
        release_race race[2];
        pthread_barrier_t start;
        assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(lb_future_new(loop, &race[k].future), 0);
            assert_int_equal(lb_future_add_done_callback_full(race[k].future, noop_cb, NULL,
                                                              replaced_destroy),
                             0);
        }
        fixture_loop_free(loop); /* the futures keep it */
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            race[k].start = &start;
            assert_int_equal(pthread_create(&th[k], NULL, release_race_main, &race[k]), 0);
        }
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_join(th[k], NULL), 0);
        pthread_barrier_destroy(&start);
    }
}

int run_future_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_future_result),
        cmocka_unit_test(test_future_error_and_cancel),
        cmocka_unit_test(test_future_callbacks_in_order),
        cmocka_unit_test(test_future_callback_holds_reference),
        cmocka_unit_test(test_future_unread_error_reported),
        cmocka_unit_test(test_future_wait_timeout),
        cmocka_unit_test(test_future_wait_from_thread),
        cmocka_unit_test(test_future_wait_infinite),
        cmocka_unit_test(test_future_wait_on_loop_thread_refused),
        cmocka_unit_test(test_future_set_result_threadsafe),
        cmocka_unit_test(test_future_chain),
        cmocka_unit_test(test_future_null_arguments),
        cmocka_unit_test(test_future_last_unref_elsewhere_then_close),
        cmocka_unit_test(test_future_remove_destroy_reenters),
        cmocka_unit_test(test_future_free_destroy_adds),
        cmocka_unit_test(test_future_released_on_two_threads_after_close),
    };
    return cmocka_run_group_tests_name("future", tests, NULL, NULL);
}
