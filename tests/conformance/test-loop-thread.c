/* SPDX-License-Identifier: MIT */
/* A loop on its own thread: submit from 4 threads, wait with timeouts,
 * stop cleanly. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>

static int double_it(lb_task *task, void *data) {
    (void)task;
    if (lb_sleep(0.005) < 0)
        return -ECANCELED;
    return lb_task_return((void *)((intptr_t)data * 2), NULL);
}

static int forever(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(3600);
}

enum { SUBMITTERS = 4, PER_SUBMITTER = 50 };

typedef struct submitter {
    lb_loop_thread *lt;
    int base;
    atomic_int *errors;
} submitter;

static void *submit_main(void *arg) {
    submitter *s = arg;
    for (int i = 0; i < PER_SUBMITTER; i++) {
        lb_future *f = NULL;
        intptr_t x = s->base + i;
        if (lb_loop_thread_submit(s->lt, double_it, (void *)x, NULL, &f) != 0) {
            atomic_fetch_add(s->errors, 1);
            continue;
        }
        void *v = NULL;
        if (lb_future_wait(f, 30, &v) != 0 || (intptr_t)v != 2 * x)
            atomic_fetch_add(s->errors, 1);
        lb_future_unref(f);
    }
    return NULL;
}

static void test_loop_thread_submit_from_threads(void **state) {
    (void)state;
    lb_loop_thread *lt = NULL;
    assert_int_equal(lb_loop_thread_start(&lt, NULL), 0);
    assert_non_null(lb_loop_thread_loop(lt));
    atomic_int errors = 0;
    pthread_t th[SUBMITTERS];
    submitter s[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        s[i] = (submitter){lt, i * 1000, &errors};
        assert_int_equal(pthread_create(&th[i], NULL, submit_main, &s[i]), 0);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    assert_int_equal(lb_loop_thread_stop(lt), 0);
}

static void test_loop_thread_wait_timeout_and_stop(void **state) {
    (void)state;
    lb_loop_thread *lt = NULL;
    assert_int_equal(lb_loop_thread_start(&lt, NULL), 0);
    lb_future *f = NULL;
    assert_int_equal(lb_loop_thread_submit(lt, forever, NULL, NULL, &f), 0);
    assert_int_equal(lb_future_wait(f, 0.02, NULL), -ETIMEDOUT);
    /* Stopping cancels the task that still runs; its future ends. */
    assert_int_equal(lb_loop_thread_stop(lt), 0);
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);
}

int run_loop_thread_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_thread_submit_from_threads),
        cmocka_unit_test(test_loop_thread_wait_timeout_and_stop),
    };
    return cmocka_run_group_tests_name("loop_thread", tests, NULL, NULL);
}
