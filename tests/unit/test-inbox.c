/* SPDX-License-Identifier: MIT */
/* The inbox alone: batches, order, the "was empty" signal that drives
 * wakeups, close dropping what was not run. */
#include "inbox.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static int dropped;
static void drop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    dropped++;
}

static void test_inbox_batches_in_order(void **state) {
    (void)state;
    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    assert_false(lb__inbox_has_work(&in));
    assert_int_equal(lb__inbox_post(&in, nop, (void *)1, NULL), 1);
    assert_int_equal(lb__inbox_post(&in, nop, (void *)2, NULL), 0);
    assert_true(lb__inbox_has_work(&in));
    lb__inbox_take(&in);
    /* Posts after the take go to the next batch, and signal again. */
    assert_int_equal(lb__inbox_post(&in, nop, (void *)3, NULL), 1);
    assert_int_equal(in.out_n, 2);
    assert_ptr_equal(in.out[0].data, (void *)1);
    assert_ptr_equal(in.out[1].data, (void *)2);
    in.out_pos = in.out_n;
    lb__inbox_take(&in);
    assert_int_equal(in.out_n, 1);
    assert_ptr_equal(in.out[0].data, (void *)3);
    in.out_pos = in.out_n;
    assert_false(lb__inbox_has_work(&in));
    lb__inbox_close(&in, NULL);
    lb__inbox_destroy(&in);
}

static void test_inbox_close_drops(void **state) {
    (void)state;
    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    for (int i = 0; i < 10; i++)
        assert_true(lb__inbox_post(&in, nop, NULL, drop) >= 0);
    lb__inbox_take(&in);
    in.out_pos = 4; /* four ran */
    for (int i = 0; i < 5; i++)
        assert_true(lb__inbox_post(&in, nop, NULL, drop) >= 0);
    dropped = 0;
    lb__inbox_close(&in, NULL);
    assert_int_equal(dropped, 6 + 5);
    assert_int_equal(lb__inbox_post(&in, nop, NULL, drop), -EBADF);
    lb__inbox_destroy(&in);
}

typedef struct producer {
    lb__inbox *in;
    int id;
} producer;

enum { PRODUCERS = 4, PER = 100000 };

static void *produce(void *data) {
    producer *p = data;
    for (uintptr_t i = 0; i < PER; i++)
        while (lb__inbox_post(p->in, nop, (void *)(i * PRODUCERS + (uintptr_t)p->id), NULL) < 0)
            ;
    return NULL;
}

static void test_inbox_concurrent_exactly_once(void **state) {
    (void)state;
    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    pthread_t th[PRODUCERS];
    producer p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (producer){&in, i};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    uint8_t *seen = calloc((size_t)PRODUCERS * PER, 1);
    long last[PRODUCERS] = {-1, -1, -1, -1};
    long total = 0;
    while (total < (long)PRODUCERS * PER) {
        lb__inbox_take(&in);
        while (in.out_pos < in.out_n) {
            uintptr_t v = (uintptr_t)in.out[in.out_pos++].data;
            assert_int_equal(seen[v]++, 0);
            long seq = (long)(v / PRODUCERS);
            assert_true(seq > last[v % PRODUCERS]);
            last[v % PRODUCERS] = seq;
            total++;
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    free(seen);
    lb__inbox_close(&in, NULL);
    lb__inbox_destroy(&in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbox_batches_in_order),
        cmocka_unit_test(test_inbox_close_drops),
        cmocka_unit_test(test_inbox_concurrent_exactly_once),
    };
    return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
