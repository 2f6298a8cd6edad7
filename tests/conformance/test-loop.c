/* SPDX-License-Identifier: MIT */
/* Loop lifecycle: run, stop, close, re-entry, closed-loop errors. */
#include "fixture.h"

#include <pthread.h>
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
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
