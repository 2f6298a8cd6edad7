/* SPDX-License-Identifier: MIT */
/* The loop's list of live futures, walked by close while cancel hooks run
 * code that frees and completes other futures. Run it under ASan: a freed
 * future is poisoned there. */
#include "future_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct victims {
    lb_future *self;  /* the future whose hook runs */
    lb_future *next;  /* the one after it in the list */
    lb_future *other; /* further on, completed by the hook */
    int hook_runs;
} victims;

static int unref_and_complete(lb_future *f, void *data) {
    victims *v = data;
    v->hook_runs++;
    int r = lb__future_cancel_plain(f);
    lb_future_unref(v->next); /* frees it: the list's next entry */
    v->next = NULL;
    assert_int_equal(lb_future_set_result(v->other, NULL, NULL), 0);
    lb_future_unref(v->self); /* frees the future being cancelled */
    v->self = NULL;
    return r;
}

static const lb__future_hooks hooks = {.cancel = unref_and_complete};

static void test_future_cancel_hook_frees_others(void **state) {
    (void)state;
    lb_loop *loop = NULL;
    assert_int_equal(lb_loop_new(&loop, lb_driver_native()), 0);
    victims v = {0};
    /* The list is newest first: self, next, other. */
    assert_int_equal(lb_future_new(loop, &v.other), 0);
    assert_int_equal(lb_future_new(loop, &v.next), 0);
    assert_int_equal(lb_future_new(loop, &v.self), 0);
    v.self->hooks = &hooks;
    v.self->hooks_data = &v;
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(v.hook_runs, 1);
    assert_null(v.self);
    assert_null(v.next);
    assert_int_equal(lb_future_result(v.other, NULL), 0);
    lb_future_unref(v.other);
    assert_null(lb_loop_unref(loop));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_future_cancel_hook_frees_others),
    };
    return cmocka_run_group_tests_name("future", tests, NULL, NULL);
}
