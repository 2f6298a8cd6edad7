/* SPDX-License-Identifier: MIT */
/* The exception handler and the log hook. */
#include "fixture.h"

#include <string.h>

typedef struct seen {
    int count;
    char last[256];
    lb_log_level level;
} seen;

static void capture_log(lb_log_level level, const char *message, void *data) {
    seen *s = data;
    s->count++;
    s->level = level;
    strncpy(s->last, message, sizeof s->last - 1);
}

static void test_exception_default_logs(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    seen s = {0};
    lb_set_log_handler(capture_log, &s);
    lb_exception_context ctx = {.message = "something broke", .error = -EIO};
    assert_int_equal(lb_loop_call_exception_handler(loop, &ctx), 0);
    lb_set_log_handler(NULL, NULL);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.level, LB_LOG_ERROR);
    assert_non_null(strstr(s.last, "something broke"));
    assert_non_null(strstr(s.last, "Input/output error"));
    fixture_loop_free(loop);
}

static void custom(lb_loop *loop, const lb_exception_context *ctx, void *data) {
    seen *s = data;
    (void)loop;
    s->count++;
    strncpy(s->last, ctx->message, sizeof s->last - 1);
}

static void test_exception_custom_handler(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    seen s = {0};
    assert_int_equal(lb_loop_set_exception_handler(loop, custom, &s), 0);
    lb_exception_context ctx = {.message = "custom"};
    assert_int_equal(lb_loop_call_exception_handler(loop, &ctx), 0);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.last, "custom");
    assert_int_equal(lb_loop_set_exception_handler(loop, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_exception_handler(loop, NULL), -EINVAL);
    fixture_loop_free(loop);
}

static void test_exception_debug_logs_misuse(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    seen s = {0};
    assert_int_equal(lb_loop_set_debug(loop, true), 0);
    assert_true(lb_loop_get_debug(loop));
    lb_set_log_handler(capture_log, &s);
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_future_set_result(f, NULL, NULL), 0);
    assert_int_equal(lb_future_set_result(f, NULL, NULL), -EALREADY);
    lb_set_log_handler(NULL, NULL);
    assert_true(s.count >= 1);
    assert_non_null(strstr(s.last, "already done"));
    assert_non_null(strstr(lb_error_detail(), "already done"));
    assert_string_equal(lb_strerror(-EBUSY), "busy: already running, or in use");
    lb_future_unref(f);
    fixture_loop_free(loop);
}

int run_exception_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exception_default_logs),
        cmocka_unit_test(test_exception_custom_handler),
        cmocka_unit_test(test_exception_debug_logs_misuse),
    };
    return cmocka_run_group_tests_name("exception", tests, NULL, NULL);
}
