/* SPDX-License-Identifier: MIT */
/* call_soon: FIFO order, iteration boundaries, handles and cancellation. */
#include "fixture.h"

#include <stdlib.h>

#define LOG_MAX 64

typedef struct order_log {
    int seen[LOG_MAX];
    int n;
    uint64_t iteration_mark; /* bumped by a marker callback */
} order_log;

typedef struct entry {
    order_log *log;
    int id;
} entry;

static void log_cb(lb_loop *loop, void *data) {
    entry *e = data;
    (void)loop;
    assert_true(e->log->n < LOG_MAX);
    e->log->seen[e->log->n++] = e->id;
}

static void stop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static void test_schedule_fifo(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    order_log log = {0};
    entry e[10];
    for (int i = 0; i < 10; i++) {
        e[i] = (entry){&log, i};
        assert_int_equal(lb_loop_call_soon(loop, log_cb, &e[i], NULL), 0);
    }
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(log.n, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(log.seen[i], i);
    fixture_loop_free(loop);
}

typedef struct chain {
    lb_loop *loop;
    uint64_t iterations_seen[3];
    int step;
    entry late;
    order_log log;
} chain;

/* asyncio: what a callback schedules runs in the next iteration, after
 * everything that was ready when the current one started. */
static void sched_a(lb_loop *loop, void *data) {
    chain *c = data;
    c->log.seen[c->log.n++] = 1;
    assert_int_equal(lb_loop_call_soon(loop, log_cb, &c->late, NULL), 0);
}

static void sched_b(lb_loop *loop, void *data) {
    chain *c = data;
    (void)loop;
    c->log.seen[c->log.n++] = 2;
}

static void stop_after_two(lb_loop *loop, void *data) {
    chain *c = data;
    c->log.seen[c->log.n++] = 3;
    lb_loop_stop(loop);
}

static void test_schedule_next_iteration(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    chain c = {.loop = loop};
    c.late = (entry){&c.log, 9};
    assert_int_equal(lb_loop_call_soon(loop, sched_a, &c, NULL), 0);
    assert_int_equal(lb_loop_call_soon(loop, sched_b, &c, NULL), 0);
    /* stop is honoured after the iteration: 9 still runs if it shares
     * the iteration, which it must not. */
    assert_int_equal(lb_loop_call_soon(loop, stop_after_two, &c, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.log.n, 3);
    assert_int_equal(c.log.seen[0], 1);
    assert_int_equal(c.log.seen[1], 2);
    assert_int_equal(c.log.seen[2], 3);
    /* The late callback runs in the following run. */
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.log.n, 4);
    assert_int_equal(c.log.seen[3], 9);
    fixture_loop_free(loop);
}

static void test_schedule_cancel_before_run(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_handle *h = NULL;
    assert_int_equal(lb_loop_call_soon(loop, (lb_callback)abort, NULL, &h), 0);
    assert_false(lb_handle_is_cancelled(h));
    assert_int_equal(lb_handle_cancel(h), 1);
    assert_true(lb_handle_is_cancelled(h));
    assert_int_equal(lb_handle_cancel(h), 0);
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_null(lb_handle_unref(h));
    fixture_loop_free(loop);
}

static void test_schedule_cancel_after_run(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    order_log log = {0};
    entry e = {&log, 7};
    lb_handle *h = NULL;
    assert_int_equal(lb_loop_call_soon(loop, log_cb, &e, &h), 0);
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(lb_handle_cancel(h), 0);
    assert_false(lb_handle_is_cancelled(h));
    assert_ptr_equal(lb_handle_ref(h), h);
    lb_handle_unref(h);
    lb_handle_unref(h);
    assert_int_equal(lb_handle_cancel(NULL), -EINVAL);
    fixture_loop_free(loop);
}

typedef struct canceller {
    lb_handle *victim;
} canceller;

static void cancel_victim(lb_loop *loop, void *data) {
    canceller *c = data;
    (void)loop;
    assert_int_equal(lb_handle_cancel(c->victim), 1);
}

/* Cancelling a callback that is already in this iteration's batch still
 * prevents it from running. */
static void test_schedule_cancel_same_iteration(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    canceller c = {0};
    assert_int_equal(lb_loop_call_soon(loop, cancel_victim, &c, NULL), 0);
    assert_int_equal(lb_loop_call_soon(loop, (lb_callback)abort, NULL, &c.victim), 0);
    assert_int_equal(lb_loop_call_soon(loop, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    lb_handle_unref(c.victim);
    fixture_loop_free(loop);
}

typedef struct counter {
    long n;
    long target;
} counter;

static void count_and_stop(lb_loop *loop, void *data) {
    counter *c = data;
    if (++c->n == c->target)
        lb_loop_stop(loop);
}

static void test_schedule_many(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    counter c = {.target = 200000};
    for (long i = 0; i < c.target; i++)
        assert_int_equal(lb_loop_call_soon(loop, count_and_stop, &c, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.n, c.target);
    fixture_loop_free(loop);
}

static void hop(lb_loop *loop, void *data) {
    counter *c = data;
    if (++c->n == c->target)
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_soon(loop, hop, c, NULL), 0);
}

static void test_schedule_chain(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    counter c = {.target = 100000};
    assert_int_equal(lb_loop_call_soon(loop, hop, &c, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.n, c.target);
    fixture_loop_free(loop);
}

int run_schedule_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_fifo),
        cmocka_unit_test(test_schedule_next_iteration),
        cmocka_unit_test(test_schedule_cancel_before_run),
        cmocka_unit_test(test_schedule_cancel_after_run),
        cmocka_unit_test(test_schedule_cancel_same_iteration),
        cmocka_unit_test(test_schedule_many),
        cmocka_unit_test(test_schedule_chain),
    };
    return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
