/* SPDX-License-Identifier: MIT */
/* Task groups as a GUI uses them: cancelled from a callback (a Cancel
 * button, a window's close) with the children unwinding before the
 * caller hears of it, and groups that collect each child's error instead
 * of cancelling the siblings. */
#include "fixture.h"

#include <math.h>
#include <string.h>

/* What the children of a test saw. */
typedef struct kids {
    int started, unwound, ended;
    bool done_ran, destroyed;
    int done_calls, unwound_at_done;
    lb_group *group;
} kids;

/* Sleeps for an hour; when cancelled, unwinds across one more await (a
 * cleanup that needs the loop, as closing a file does) and counts it. */
static int long_child(lb_task *task, void *data) {
    (void)task;
    kids *k = data;
    k->started++;
    int r = lb_sleep(3600);
    if (r == -ECANCELED) {
        lb_task_uncancel(lb_task_current());
        assert_int_equal(lb_sleep(0), 0);
        assert_int_equal(lb_yield(), 0);
        k->unwound++;
    }
    k->ended++;
    return r;
}

static void record_done(lb_loop *loop, void *data) {
    kids *k = data;
    k->done_calls++;
    k->unwound_at_done = k->unwound;
    k->done_ran = true;
    assert_false(k->destroyed);
    lb_loop_stop(loop);
}

static void set_true(lb_loop *loop, void *data) {
    (void)loop;
    *(bool *)data = true;
}

static void record_destroy(void *data) {
    kids *k = data;
    k->destroyed = true;
}

static void cancel_from_callback(lb_loop *loop, void *data) {
    (void)loop;
    kids *k = data;
    assert_int_equal(k->started, 3);
    assert_int_equal(lb_group_cancel_then(k->group, record_done, k, record_destroy), 0);
    /* Nothing ran inside the call: the children unwind later. */
    assert_false(k->done_ran);
    assert_int_equal(k->unwound, 0);
}

static void start_cancel_soon(lb_loop *loop, void *data) {
    /* One more iteration, so that the children are asleep. */
    assert_int_equal(lb_loop_call_soon(loop, cancel_from_callback, data, NULL), 0);
}

/* Cancelled from a loop callback (where running the loop again is
 * refused with -EBUSY), done runs once, after every child unwound. */
static void test_group_cancel_then_from_callback(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    kids k = {0};
    assert_int_equal(lb_group_new(loop, &k.group), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lb_group_spawn(k.group, long_child, &k, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_soon(loop, start_cancel_soon, &k, NULL), 0);
    fixture_run_until(loop, &k.done_ran, 30);
    assert_int_equal(k.done_calls, 1);
    assert_int_equal(k.unwound_at_done, 3);
    assert_true(k.destroyed);
    assert_int_equal(lb_group_spawn(k.group, long_child, &k, NULL, NULL), -ECANCELED);
    lb_gather_item items[4];
    assert_int_equal(lb_group_results(k.group, items, 4), 3);
    /* They caught the cancellation and returned it. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(items[i].status, -ECANCELED);
    lb_group_unref(k.group);
    fixture_loop_free(loop);
}

/* With no child running, done still comes from the loop, not from
 * inside the call; and the group may be dropped meanwhile. */
static void test_group_cancel_then_empty(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    kids k = {0};
    assert_int_equal(lb_group_new(loop, &k.group), 0);
    assert_int_equal(lb_group_cancel_then(k.group, record_done, &k, record_destroy), 0);
    assert_false(k.done_ran);
    k.group = lb_group_unref(k.group);
    fixture_run_until(loop, &k.done_ran, 30);
    assert_int_equal(k.done_calls, 1);
    assert_true(k.destroyed);
    fixture_loop_free(loop);
}

/* The loop closed while the children still sleep: its close unwinds
 * them, the group counts them, and done runs once; the group and the
 * loop are freed (the children's own done callbacks are dropped with the
 * loop's queue). Also for a group nobody waits on. */
static void test_group_cancel_then_loop_closed(void **state) {
    (void)state;
    for (int waited = 0; waited < 2; waited++) {
        lb_loop *loop = fixture_loop_new();
        kids k = {0};
        assert_int_equal(lb_group_new(loop, &k.group), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(lb_group_spawn(k.group, long_child, &k, NULL, NULL), 0);
        assert_int_equal(lb_loop_call_soon(loop, set_true, &k.done_ran, NULL), 0);
        fixture_run_until(loop, &k.done_ran, 30);
        k.done_ran = false;
        if (waited)
            assert_int_equal(lb_group_cancel_then(k.group, record_done, &k, record_destroy), 0);
        k.group = lb_group_unref(k.group);
        fixture_loop_free(loop);
        assert_int_equal(k.ended, 2);
        assert_int_equal(k.done_calls, waited);
        assert_int_equal(k.destroyed, waited);
    }
}

static int fails_with(lb_task *task, void *data) {
    (void)task;
    intptr_t v = (intptr_t)data;
    assert_int_equal(lb_sleep(0), 0);
    if (v < 0)
        return (int)v;
    lb_task_return((void *)v, NULL);
    return 0;
}

static int collect_body(lb_task *task, void *data) {
    kids *k = data;
    lb_group *g = NULL;
    assert_int_equal(lb_group_new_full(lb_future_get_loop(lb_task_future(task)),
                                       LB_GROUP_COLLECT_ERRORS, &g), 0);
    assert_int_equal(lb_group_spawn(g, fails_with, (void *)(intptr_t)-EIO, NULL, NULL), 0);
    assert_int_equal(lb_group_spawn(g, fails_with, (void *)(intptr_t)7, NULL, NULL), 0);
    assert_int_equal(lb_group_spawn(g, fails_with, (void *)(intptr_t)-ENOENT, NULL, NULL), 0);
    /* A sibling that outlives the failures is not cancelled. */
    lb_task *slow = NULL;
    assert_int_equal(lb_group_spawn(g, fails_with, (void *)(intptr_t)9, NULL, &slow), 0);
    assert_int_equal(lb_sleep(0.02), 0); /* the body is not cancelled either */
    /* Spawning after a failure is fine in this mode. */
    assert_int_equal(lb_group_spawn(g, fails_with, (void *)(intptr_t)11, NULL, NULL), 0);
    assert_int_equal(lb_group_wait(g), -EIO);
    lb_gather_item items[8];
    memset(items, 0, sizeof items);
    assert_int_equal(lb_group_results(g, items, 2), 5); /* cap respected */
    assert_int_equal(lb_group_results(g, items, 8), 5);
    assert_int_equal(items[0].status, -EIO);
    assert_int_equal(items[1].status, 0);
    assert_ptr_equal(items[1].value, (void *)7);
    assert_int_equal(items[2].status, -ENOENT);
    assert_int_equal(items[3].status, 0);
    assert_ptr_equal(items[3].value, (void *)9);
    assert_int_equal(items[4].status, 0);
    assert_false(lb_task_cancelling(slow));
    assert_false(lb_task_cancelling(task));
    assert_int_equal(lb_group_results(g, NULL, 0), 5);
    lb_task_unref(slow);
    lb_group_unref(g);
    k->done_ran = true;
    return 0;
}

static void test_group_collect_errors(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    kids k = {0};
    lb_task *t = fixture_spawn(loop, collect_body, &k);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_true(k.done_ran);
    lb_group *g = NULL;
    assert_int_equal(lb_group_new_full(loop, 0x80, &g), -EINVAL);
    assert_null(g);
    fixture_loop_free(loop);
}

/* A task cancels its own group (a Cancel button's handler running as a
 * task): lb_group_wait says -ECANCELED once the children unwound, and the
 * body itself is not cancelled. */
static int cancel_body(lb_task *task, void *data) {
    kids *k = data;
    lb_group *g = NULL;
    assert_int_equal(lb_group_new(lb_future_get_loop(lb_task_future(task)), &g), 0);
    lb_task *done_kid = NULL;
    assert_int_equal(lb_group_spawn(g, fails_with, (void *)(intptr_t)1, NULL, &done_kid), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(lb_group_spawn(g, long_child, k, NULL, NULL), 0);
    while (k->started < 2 || !lb_task_is_done(done_kid))
        assert_int_equal(lb_sleep(0), 0);
    assert_int_equal(lb_group_cancel(g), 2);
    assert_int_equal(lb_group_cancel(g), 0); /* once is enough */
    assert_int_equal(lb_group_wait(g), -ECANCELED);
    assert_int_equal(k->unwound, 2);
    assert_false(lb_task_cancelling(task));
    assert_int_equal(lb_sleep(0), 0);
    lb_gather_item items[3];
    assert_int_equal(lb_group_results(g, items, 3), 3);
    assert_int_equal(items[0].status, 0);
    assert_int_equal(items[1].status, -ECANCELED);
    lb_task_unref(done_kid);
    lb_group_unref(g);
    return 0;
}

static void test_group_cancel_in_task(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    kids k = {0};
    lb_task *t = fixture_spawn(loop, cancel_body, &k);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    fixture_loop_free(loop);
}

/* Results of children not ended yet say so. */
static void test_group_results_in_progress(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    kids k = {0};
    assert_int_equal(lb_group_new(loop, &k.group), 0);
    assert_int_equal(lb_group_spawn(k.group, long_child, &k, NULL, NULL), 0);
    lb_gather_item item;
    assert_int_equal(lb_group_results(k.group, &item, 1), 1);
    assert_int_equal(item.status, -EINPROGRESS);
    assert_int_equal(lb_group_results(k.group, NULL, 1), -EINVAL);
    assert_int_equal(lb_group_cancel(NULL), -EINVAL);
    assert_int_equal(lb_group_cancel_then(k.group, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(lb_group_cancel_then(k.group, record_done, &k, NULL), 0);
    fixture_run_until(loop, &k.done_ran, 30);
    /* Cancelled before it first ran: it never ran at all. */
    assert_int_equal(k.done_calls, 1);
    assert_int_equal(k.started, 0);
    lb_group_unref(k.group);
    fixture_loop_free(loop);
}

/* Stops at the first cancellation, then sleeps again until cancelled
 * once more (the loop's close does it). */
static int stubborn_child(lb_task *task, void *data) {
    (void)task;
    kids *k = data;
    k->started++;
    assert_int_equal(lb_sleep(3600), -ECANCELED);
    lb_task_uncancel(lb_task_current());
    int r = lb_sleep(3600);
    k->ended++;
    return r;
}

static void drain_in_callback(lb_loop *loop, void *data) {
    (void)loop;
    kids *k = data;
    k->done_calls = lb_group_cancel_and_drain(k->group, 5);
    k->done_ran = true;
}

static int drain_in_task(lb_task *task, void *data) {
    (void)task;
    return lb_group_cancel_and_drain(data, 5);
}

/* The synchronous drain: outside the loop it runs the loop until the
 * children unwound; a child that will not end makes it time out; inside
 * a callback or a task it is refused with -EBUSY. */
static void test_group_cancel_and_drain(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    kids k = {0};
    assert_int_equal(lb_group_new(loop, &k.group), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lb_group_spawn(k.group, long_child, &k, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_soon(loop, set_true, &k.done_ran, NULL), 0);
    fixture_run_until(loop, &k.done_ran, 30);
    assert_int_equal(k.started, 3);
    assert_int_equal(lb_group_cancel_and_drain(k.group, -1), 0);
    assert_int_equal(k.unwound, 3);
    assert_int_equal(lb_group_cancel_and_drain(k.group, 0), 0); /* nothing left */
    assert_int_equal(lb_group_cancel_and_drain(k.group, NAN), -EINVAL);
    lb_group_unref(k.group);

    kids s = {0};
    assert_int_equal(lb_group_new(loop, &s.group), 0);
    lb_task *stubborn = NULL;
    assert_int_equal(lb_group_spawn(s.group, stubborn_child, &s, NULL, &stubborn), 0);
    assert_int_equal(lb_loop_call_soon(loop, set_true, &s.done_ran, NULL), 0);
    fixture_run_until(loop, &s.done_ran, 30);
    assert_int_equal(lb_group_cancel_and_drain(s.group, 0.05), -ETIMEDOUT);
    assert_int_equal(s.ended, 0);

    kids c = {.group = s.group};
    assert_int_equal(lb_loop_call_soon(loop, drain_in_callback, &c, NULL), 0);
    fixture_run_until(loop, &c.done_ran, 30);
    assert_int_equal(c.done_calls, -EBUSY);
    lb_task *t = fixture_spawn(loop, drain_in_task, s.group);
    assert_int_equal(fixture_finish(loop, t, 30), -EBUSY);
    /* Cancelled once more, it ends, and the drain sees it. */
    assert_int_equal(lb_task_cancel(stubborn), 1);
    assert_int_equal(lb_group_cancel_and_drain(s.group, -1), 0);
    assert_int_equal(s.ended, 1);
    lb_task_unref(stubborn);
    lb_group_unref(s.group);
    fixture_loop_free(loop);
}

int run_taskgroup_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_cancel_then_from_callback),
        cmocka_unit_test(test_group_cancel_then_empty),
        cmocka_unit_test(test_group_cancel_then_loop_closed),
        cmocka_unit_test(test_group_collect_errors),
        cmocka_unit_test(test_group_cancel_in_task),
        cmocka_unit_test(test_group_results_in_progress),
        cmocka_unit_test(test_group_cancel_and_drain),
    };
    return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}
