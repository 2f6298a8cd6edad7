/* SPDX-License-Identifier: MIT */
#include "alloc.h"
#include "slab.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static void test_slab_reuses_objects(void **state) {
    (void)state;
    lb__slab s;
    lb__slab_init(&s, 40, 8);
    assert_int_equal(s.object_size, 48);
    void *p[20];
    for (int i = 0; i < 20; i++) {
        p[i] = lb__slab_alloc(&s);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], 0xab, 40);
    }
    assert_int_equal(s.live, 20);
    for (int i = 0; i < 20; i++)
        for (int j = i + 1; j < 20; j++)
            assert_ptr_not_equal(p[i], p[j]);
    long before = lb__test_alloc_count();
    for (int i = 0; i < 20; i++)
        lb__slab_free(&s, p[i]);
    for (int i = 0; i < 20; i++)
        assert_non_null(lb__slab_alloc(&s));
    /* Steady state: no allocation. */
    assert_int_equal(lb__test_alloc_count(), before);
    lb__slab_destroy(&s);
}

static void test_slab_out_of_memory(void **state) {
    (void)state;
    lb__slab s;
    lb__slab_init(&s, 64, 4);
    lb__test_alloc_fail_after(0);
    assert_null(lb__slab_alloc(&s));
    lb__test_alloc_fail_after(-1);
    assert_non_null(lb__slab_alloc(&s));
    assert_int_equal(s.live, 1);
    lb__slab_destroy(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slab_reuses_objects),
        cmocka_unit_test(test_slab_out_of_memory),
    };
    return cmocka_run_group_tests_name("slab", tests, NULL, NULL);
}
