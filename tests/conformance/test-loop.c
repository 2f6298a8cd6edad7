/* SPDX-License-Identifier: MIT */
/* Loop lifecycle: run, stop, close, re-entry, closed-loop errors. */
#include "fixture.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_loop_new_close(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    assert_false(lb_loop_is_running(loop));
    assert_false(lb_loop_is_closed(loop));
    assert_non_null(lb_loop_driver_name(loop));
    fixture_loop_free(loop);
}

static void test_loop_unref_closes(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_call_soon(loop, (lb_callback)abort, NULL, NULL), 0);
    assert_null(lb_loop_unref(loop));
}

static void stop_cb(lb_loop *loop, void *data) {
    int *count = data;
    (*count)++;
    assert_true(lb_loop_is_running(loop));
    assert_ptr_equal(lb_loop_get_running(), loop);
    assert_int_equal(lb_loop_stop(loop), 0);
}

static void test_loop_stop_from_callback(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int count = 0;
    assert_null(lb_loop_get_running());
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, &count, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(count, 1);
    assert_false(lb_loop_is_running(loop));
    assert_null(lb_loop_get_running());
    /* The loop can run again after a stop. */
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, &count, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(count, 2);
    fixture_loop_free(loop);
}

static void count_cb(lb_loop *loop, void *data) {
    (void)loop;
    (*(int *)data)++;
}

/* asyncio: stop() before run_forever() runs one iteration, then stops. */
static void test_loop_stop_before_run(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int count = 0;
    assert_int_equal(lb_loop_call_soon(loop, count_cb, &count, NULL), 0);
    assert_int_equal(lb_loop_stop(loop), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(count, 1);
    fixture_loop_free(loop);
}

/* A stop asked while nothing runs the loop waits for the next run: a
 * host that dispatches the loop meanwhile (a toolkit's own main loop) is
 * not told to hurry, or it would spin. */
static void test_loop_stop_waits_for_a_run(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int count = 0;
    assert_int_equal(lb_loop_stop(loop), 0);
    assert_false(lb_driver_stop_requested(loop));
    assert_int_equal(lb_driver_prepare(loop), -1); /* nothing to do: sleep */
    assert_int_equal(lb_loop_call_later(loop, 30, count_cb, &count, NULL), 0);
    assert_true(lb_driver_prepare(loop) > 0);
    /* The next run still stops after one iteration. */
    assert_int_equal(lb_loop_call_soon(loop, count_cb, &count, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(count, 1);
    fixture_loop_free(loop);
}

typedef struct reentry {
    int run_forever;
    int run_until;
    int close;
    lb_future *future;
} reentry;

static void reentry_cb(lb_loop *loop, void *data) {
    reentry *r = data;
    r->run_forever = lb_loop_run_forever(loop);
    r->run_until = lb_loop_run_until_complete(loop, r->future);
    r->close = lb_loop_close(loop);
    lb_loop_stop(loop);
}

static void test_loop_reentry_is_busy(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    reentry r = {0};
    assert_int_equal(lb_future_new(loop, &r.future), 0);
    assert_int_equal(lb_loop_call_soon(loop, reentry_cb, &r, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(r.run_forever, -EBUSY);
    assert_int_equal(r.run_until, -EBUSY);
    assert_int_equal(r.close, -EBUSY);
    assert_non_null(strstr(lb_error_detail(), "running"));
    lb_future_unref(r.future);
    fixture_loop_free(loop);
}

static void test_loop_closed_is_ebadf(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_loop_close(loop), 0);
    assert_true(lb_loop_is_closed(loop));
    assert_int_equal(lb_loop_close(loop), -EBADF);
    assert_int_equal(lb_loop_run_forever(loop), -EBADF);
    assert_int_equal(lb_loop_stop(loop), -EBADF);
    assert_int_equal(lb_loop_call_soon(loop, count_cb, NULL, NULL), -EBADF);
    assert_int_equal(lb_loop_call_later(loop, 1.0, count_cb, NULL, NULL), -EBADF);
    assert_int_equal(lb_loop_call_at(loop, 1.0, count_cb, NULL, NULL), -EBADF);
    assert_int_equal(lb_loop_call_soon_threadsafe(loop, count_cb, NULL), -EBADF);
    assert_int_equal(lb_loop_add_reader(loop, 0, count_cb, NULL), -EBADF);
    assert_int_equal(lb_loop_remove_reader(loop, 0), -EBADF);
    assert_int_equal(lb_future_new(loop, &f), -EBADF);
    assert_null(f);
    assert_int_equal(lb_loop_set_debug(loop, true), -EBADF);
    assert_int_equal(lb_loop_wakeup(loop), -EBADF);
    lb_loop_unref(loop);
}

static void test_loop_null_arguments(void **state) {
    (void)state;
    assert_int_equal(lb_loop_new(NULL, NULL), -EINVAL);
    assert_int_equal(lb_loop_run_forever(NULL), -EINVAL);
    assert_int_equal(lb_loop_run_until_complete(NULL, NULL), -EINVAL);
    assert_int_equal(lb_loop_stop(NULL), -EINVAL);
    assert_int_equal(lb_loop_close(NULL), -EINVAL);
    assert_int_equal(lb_loop_call_soon(NULL, count_cb, NULL, NULL), -EINVAL);
    assert_int_equal(lb_loop_call_soon_threadsafe(NULL, count_cb, NULL), -EINVAL);
    assert_false(lb_loop_is_running(NULL));
    assert_false(lb_loop_is_closed(NULL));
    assert_null(lb_loop_unref(NULL));
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_call_soon(loop, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(lb_loop_call_later(loop, 0.0 / 0.0, count_cb, NULL, NULL), -EINVAL);
    fixture_loop_free(loop);
}

static void test_loop_unknown_driver(void **state) {
    (void)state;
    char *saved = getenv("LB_DRIVER") ? strdup(getenv("LB_DRIVER")) : NULL;
    setenv("LB_DRIVER", "no-such-driver", 1);
    lb_loop *loop = NULL;
    assert_int_equal(lb_loop_new(&loop, NULL), -ENOENT);
    assert_null(loop);
    assert_non_null(strstr(lb_error_detail(), "no-such-driver"));
    assert_non_null(strstr(lb_error_detail(), "native"));
    if (saved) {
        setenv("LB_DRIVER", saved, 1);
        free(saved);
    } else {
        unsetenv("LB_DRIVER");
    }
}

static void test_loop_bad_driver_table(void **state) {
    (void)state;
    lb_driver bad = *lb_driver_native();
    bad.abi_version = 999;
    lb_loop *loop = NULL;
    assert_int_equal(lb_loop_new(&loop, &bad), -EINVAL);
    bad = *lb_driver_native();
    bad.run = NULL;
    assert_int_equal(lb_loop_new(&loop, &bad), -EINVAL);
    /* Owning the wakeup needs a wakeup entry. */
    bad = *lb_driver_native();
    bad.caps |= LB_DRIVER_CAP_WAKEUP;
    assert_int_equal(lb_loop_new(&loop, &bad), -EINVAL);
    assert_non_null(strstr(lb_error_detail(), "wakeup"));
    assert_null(loop);
}

static void test_loop_time_advances(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    double t0 = lb_loop_time(loop);
    int64_t n0 = lb_loop_time_ns(loop);
    assert_true(t0 > 0);
    bool done = true;
    fixture_run_until(loop, &done, 10.0); /* one pass is enough */
    assert_true(lb_loop_time_ns(loop) >= n0);
    fixture_loop_free(loop);
}

typedef struct until_done {
    lb_future *future;
    int value;
} until_done;

static void resolve_cb(lb_loop *loop, void *data) {
    until_done *u = data;
    (void)loop;
    assert_int_equal(lb_future_set_result(u->future, &u->value, NULL), 0);
}

static void test_loop_run_until_complete(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    until_done u = {.value = 42};
    assert_int_equal(lb_future_new(loop, &u.future), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, resolve_cb, &u, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, u.future), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(u.future, &v), 0);
    assert_ptr_equal(v, &u.value);
    /* Done already: returns at once. */
    assert_int_equal(lb_loop_run_until_complete(loop, u.future), 0);
    lb_future_unref(u.future);
    fixture_loop_free(loop);
}

static void test_loop_run_until_complete_stopped(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    int count = 0;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, &count, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, f), -EINTR);
    lb_future_unref(f);
    fixture_loop_free(loop);
}

static void test_loop_run_until_complete_other_loop(void **state) {
    (void)state;
    lb_loop *a = fixture_loop_new();
    lb_loop *b = fixture_loop_new();
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(b, &f), 0);
    assert_int_equal(lb_loop_run_until_complete(a, f), -EXDEV);
    lb_future_unref(f);
    fixture_loop_free(a);
    fixture_loop_free(b);
}

typedef struct wrong_thread {
    lb_loop *loop;
    int call_soon;
    int stop;
    int add_reader;
    int threadsafe;
    volatile bool done;
} wrong_thread;

static void *wrong_thread_main(void *data) {
    wrong_thread *w = data;
    w->call_soon = lb_loop_call_soon(w->loop, count_cb, NULL, NULL);
    w->stop = lb_loop_stop(w->loop);
    w->add_reader = lb_loop_add_reader(w->loop, 0, count_cb, NULL);
    w->threadsafe = lb_loop_call_soon_threadsafe(w->loop, count_cb, NULL);
    return NULL;
}

static void start_wrong_thread(lb_loop *loop, void *data) {
    wrong_thread *w = data;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wrong_thread_main, w), 0);
    pthread_join(th, NULL);
    w->done = true;
    (void)loop;
}

static void test_loop_wrong_thread_is_eperm(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    wrong_thread w = {.loop = loop};
    assert_int_equal(lb_loop_call_soon(loop, start_wrong_thread, &w, NULL), 0);
    fixture_run_until(loop, &w.done, 30);
    assert_int_equal(w.call_soon, -EPERM);
    assert_int_equal(w.stop, -EPERM);
    assert_int_equal(w.add_reader, -EPERM);
    assert_int_equal(w.threadsafe, 0);
    fixture_loop_free(loop);
}

static void test_loop_close_cancels_pending(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_handle *soon = NULL, *later = NULL;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(lb_loop_call_soon(loop, (lb_callback)abort, NULL, NULL), 0);
        assert_int_equal(lb_loop_call_later(loop, 3600, (lb_callback)abort, NULL, NULL), 0);
        assert_int_equal(lb_loop_call_soon_threadsafe(loop, (lb_callback)abort, NULL), 0);
    }
    assert_int_equal(lb_loop_call_soon(loop, (lb_callback)abort, NULL, &soon), 0);
    assert_int_equal(lb_loop_call_later(loop, 1, (lb_callback)abort, NULL, &later), 0);
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    fixture_loop_free(loop);
    /* What the caller still holds stays valid and reports the outcome. */
    assert_true(lb_future_is_cancelled(f));
    assert_int_equal(lb_future_result(f, NULL), -ECANCELED);
    assert_int_equal(lb_handle_cancel(soon), 0);
    assert_int_equal(lb_handle_cancel(later), 0);
    lb_handle_unref(soon);
    lb_handle_unref(later);
    lb_future_unref(f);
}

/* A loop belongs to its home thread between runs too: another thread
 * gets -EPERM, its handle unrefs are refused, and a future it releases
 * last is freed by the home thread (it was freed on the calling thread,
 * racing the home thread). */
static void nop_cb(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static char loop_log[512];
static void capture_loop_log(lb_log_level level, const char *message, void *data) {
    (void)level;
    (void)data;
    snprintf(loop_log, sizeof loop_log, "%s", message);
}

static pthread_t destroyed_on;
static atomic_int destroyed;
static void note_destroy_thread(void *value) {
    (void)value;
    destroyed_on = pthread_self();
    atomic_fetch_add(&destroyed, 1);
}

typedef struct idle_visitor {
    lb_loop *loop;
    lb_handle *handle;
    lb_future *future;
    int call_soon;
    int close;
} idle_visitor;

static void *idle_visitor_main(void *data) {
    idle_visitor *v = data;
    v->call_soon = lb_loop_call_soon(v->loop, nop_cb, NULL, NULL);
    lb_handle_unref(v->handle);
    lb_future_unref(v->future);
    return NULL;
}

static void test_loop_idle_keeps_its_thread(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    idle_visitor v = {.loop = loop};
    assert_int_equal(lb_loop_call_later(loop, 3600, nop_cb, NULL, &v.handle), 0);
    assert_int_equal(lb_future_new(loop, &v.future), 0);
    assert_int_equal(lb_future_set_result(v.future, NULL, note_destroy_thread), 0);
    atomic_store(&destroyed, 0);
    loop_log[0] = '\0';
    lb_set_log_handler(capture_loop_log, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, idle_visitor_main, &v), 0);
    pthread_join(th, NULL);
    lb_set_log_handler(NULL, NULL);
    assert_int_equal(v.call_soon, -EPERM);
    assert_non_null(strstr(loop_log, "does not run loop"));
    /* The future is freed by the home thread, the next time it runs. */
    int ran = 0;
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_cb, &ran, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(atomic_load(&destroyed), 1);
    assert_true(pthread_equal(destroyed_on, pthread_self()));
    assert_int_equal(lb_handle_cancel(v.handle), 1);
    lb_handle_unref(v.handle);
    fixture_loop_free(loop);
}

/* A native loop nobody runs is adopted by the thread that runs it next,
 * and closed by any thread once nobody runs it. */
typedef struct adopter {
    lb_loop *loop;
    int run;
    int call_soon_after;
} adopter;

static void *adopter_main(void *data) {
    adopter *a = data;
    a->run = lb_loop_run_forever(a->loop);
    a->call_soon_after = lb_loop_call_soon(a->loop, nop_cb, NULL, NULL);
    return NULL;
}

static void test_loop_adopted_by_its_runner(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    if (lb_loop_driver(loop)->caps & LB_DRIVER_CAP_HOSTED) {
        fixture_loop_free(loop); /* a hosted loop stays on its host's thread */
        return;
    }
    int ran = 0;
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, &ran, NULL), 0);
    adopter a = {.loop = loop};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, adopter_main, &a), 0);
    pthread_join(th, NULL);
    assert_int_equal(a.run, 0);
    assert_int_equal(ran, 1);
    assert_int_equal(a.call_soon_after, 0);
    assert_int_equal(lb_loop_call_soon(loop, nop_cb, NULL, NULL), -EPERM);
    fixture_loop_free(loop); /* close adopts it back */
}

/* Futures released on another thread while the loop thread closes its
 * loop are freed by the loop thread or after the close, never during it
 * (a TSan or ASan build sees the race). */
static int return_now(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return 0;
}

static void stop_loop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static void test_loop_futures_released_while_closing(void **state) {
    (void)state;
    for (int i = 0; i < 50; i++) {
        lb_loop_thread *lt = NULL;
        assert_int_equal(lb_loop_thread_start(&lt, NULL), 0);
        lb_future *f[8];
        for (int k = 0; k < 8; k++) {
            assert_int_equal(lb_loop_thread_submit(lt, return_now, NULL, NULL, &f[k]), 0);
            assert_int_equal(lb_future_wait(f[k], 30, NULL), 0);
        }
        assert_int_equal(lb_loop_thread_call(lt, stop_loop_cb, NULL), 0);
        for (int k = 0; k < 8; k++) {
            if (k == 4)
                sched_yield();
            lb_future_unref(f[k]);
        }
        assert_int_equal(lb_loop_thread_stop(lt), 0);
    }
}

static void test_loop_strerror_any_int(void **state) {
    (void)state;
    assert_non_null(lb_strerror(INT_MIN));
    assert_non_null(lb_strerror(INT_MAX));
    assert_string_equal(lb_strerror(INT_MIN), "not an error code");
}

/* Two threads race to run one idle loop, again and again: at most one
 * runs it at a time (the other gets -EPERM, the thread rule), never both. */
typedef struct run_race {
    lb_loop *loop;
    atomic_int inside, overlaps, refused, other_errors;
} run_race;

static void race_noop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static void race_stop(lb_loop *loop, void *data) {
    run_race *race = data;
    if (atomic_fetch_add(&race->inside, 1) != 0)
        atomic_fetch_add(&race->overlaps, 1);
    sched_yield();
    atomic_fetch_sub(&race->inside, 1);
    lb_loop_stop(loop);
}

static void *race_runner(void *data) {
    run_race *race = data;
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(lb_loop_call_soon_threadsafe(race->loop, race_noop, NULL), 0);
        assert_int_equal(lb_loop_call_soon_threadsafe(race->loop, race_stop, race), 0);
        int r = lb_loop_run_forever(race->loop);
        if (r == -EPERM)
            atomic_fetch_add(&race->refused, 1);
        else if (r != 0)
            atomic_fetch_add(&race->other_errors, 1);
    }
    return NULL;
}

static void test_loop_two_threads_run_race(void **state) {
    (void)state;
    run_race race = {.loop = fixture_loop_new()};
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, race_runner, &race), 0);
    assert_int_equal(pthread_create(&b, NULL, race_runner, &race), 0);
    assert_int_equal(pthread_join(a, NULL), 0);
    assert_int_equal(pthread_join(b, NULL), 0);
    assert_int_equal(atomic_load(&race.overlaps), 0);
    assert_int_equal(atomic_load(&race.other_errors), 0);
    fixture_loop_free(race.loop);
}

int run_loop_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_new_close),
        cmocka_unit_test(test_loop_unref_closes),
        cmocka_unit_test(test_loop_stop_from_callback),
        cmocka_unit_test(test_loop_stop_before_run),
        cmocka_unit_test(test_loop_stop_waits_for_a_run),
        cmocka_unit_test(test_loop_reentry_is_busy),
        cmocka_unit_test(test_loop_closed_is_ebadf),
        cmocka_unit_test(test_loop_null_arguments),
        cmocka_unit_test(test_loop_unknown_driver),
        cmocka_unit_test(test_loop_bad_driver_table),
        cmocka_unit_test(test_loop_time_advances),
        cmocka_unit_test(test_loop_run_until_complete),
        cmocka_unit_test(test_loop_run_until_complete_stopped),
        cmocka_unit_test(test_loop_run_until_complete_other_loop),
        cmocka_unit_test(test_loop_wrong_thread_is_eperm),
        cmocka_unit_test(test_loop_close_cancels_pending),
        cmocka_unit_test(test_loop_idle_keeps_its_thread),
        cmocka_unit_test(test_loop_adopted_by_its_runner),
        cmocka_unit_test(test_loop_futures_released_while_closing),
        cmocka_unit_test(test_loop_strerror_any_int),
        cmocka_unit_test(test_loop_two_threads_run_race),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
