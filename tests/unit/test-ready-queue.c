/* SPDX-License-Identifier: MIT */
#include "ready_queue.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_ready_queue_fifo(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    lb_handle h[100];
    assert_null(lb__ready_pop(&q));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++)
            lb__ready_push(&q, &h[i]);
        assert_int_equal(q.count, 100);
        for (int i = 0; i < 100; i++)
            assert_ptr_equal(lb__ready_pop(&q), &h[i]);
        assert_int_equal(q.count, 0);
        assert_null(q.head);
        assert_null(q.tail);
        assert_null(lb__ready_pop(&q));
    }
}

static void test_ready_queue_interleaved(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    lb_handle h[10];
    int next_in = 0, next_out = 0;
    for (int step = 0; step < 1000; step++) {
        if ((step % 3) != 2 && next_in - next_out < 10) {
            lb__ready_push(&q, &h[next_in % 10]);
            next_in++;
        } else if (next_out < next_in) {
            assert_ptr_equal(lb__ready_pop(&q), &h[next_out % 10]);
            next_out++;
        }
        assert_int_equal(q.count, (size_t)(next_in - next_out));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_queue_fifo),
        cmocka_unit_test(test_ready_queue_interleaved),
    };
    return cmocka_run_group_tests_name("ready_queue", tests, NULL, NULL);
}
