/* SPDX-License-Identifier: MIT */
#include "alloc.h"
#include "handle.h"
#include "loop_internal.h"
#include "slab.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_TEST_ASAN 1
#endif
#endif
#ifdef SLAB_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

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

/* A slab that grows past LB__LARGE_FROM gets its chunks as aligned large
 * blocks; every object is distinct, aligned and usable, and a chunk's
 * memory is only touched when its objects are handed out (page faults
 * are counted, not timed). */
static void test_slab_grows_into_large_blocks(void **state) {
    (void)state;
    enum { N = 100000 };
    lb__slab s;
    lb__slab_init(&s, 64, 256);
    char **p = malloc(N * sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        p[i] = lb__slab_alloc(&s);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], i & 0xff, 64);
    }
    size_t large = 0, small = 0;
    for (void **c = s.chunks; c; c = *c) {
        size_t bytes = ((size_t *)c)[1];
        if (bytes >= LB__LARGE_FROM) {
            assert_int_equal(bytes, LB__LARGE_BLOCK);
            assert_int_equal((uintptr_t)c % LB__LARGE_BLOCK, 0);
            large++;
        } else {
            small++;
        }
    }
    assert_true(small <= 3);                                   /* 16, 64 KiB, then large */
    assert_true(large >= (size_t)N * 64 / LB__LARGE_BLOCK);
    for (int i = 0; i < N; i++)
        assert_int_equal((unsigned char)p[i][63], i & 0xff); /* no two objects overlap */
    for (int i = 0; i < N; i++)
        lb__slab_free(&s, p[i]);
    assert_int_equal(s.live, 0);
    long before = lb__test_alloc_count();
    for (int i = 0; i < N; i++)
        assert_non_null(lb__slab_alloc(&s));
    assert_int_equal(lb__test_alloc_count(), before); /* freed objects are reused */
    lb__slab_destroy(&s);
    free(p);
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

/* Under ASan a freed object is poisoned, so a use after free of a
 * handle or a future (slab objects) is reported like one of malloc. */
static void test_slab_poisons_freed_objects(void **state) {
    (void)state;
#ifndef SLAB_TEST_ASAN
    skip();
#else
    lb__slab s;
    lb__slab_init(&s, 64, 4);
    char *p = lb__slab_alloc(&s);
    char *q = lb__slab_alloc(&s);
    assert_false(__asan_region_is_poisoned(p, 64));
    /* The rest of the fresh chunk is not handed out yet. */
    assert_true(__asan_address_is_poisoned(q + 64 + 8));
    lb__slab_free(&s, p);
    assert_true(__asan_address_is_poisoned(p + 8));
    assert_ptr_equal(lb__slab_alloc(&s), p);
    assert_false(__asan_region_is_poisoned(p, 64));
    lb__slab_free(&s, p);
    lb__slab_free(&s, q);
    lb__slab_destroy(&s);
#endif
}

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

/* A handle carved from a slot that held another one starts with every
 * field set, none left over from the previous handle. */
static void test_slab_handle_fields_start_clean(void **state) {
    (void)state;
    lb_loop *loop = NULL;
    assert_int_equal(lb_loop_new(&loop, lb_driver_native()), 0);
    lb_handle *h = lb__handle_new(loop, nop, NULL);
    assert_non_null(h);
    memset(h, 0xab, sizeof *h);
    lb__slab_free(&loop->handle_slab, h);
    lb_handle *again = lb__handle_new(loop, nop, NULL);
    assert_ptr_equal(again, h);
    lb_handle clean = {.cb = nop, .loop = loop, .refs = 1};
    clean.flags = again->flags; /* internal bookkeeping bits */
    assert_memory_equal(again, &clean, sizeof clean);
    lb__slab_free(&loop->handle_slab, again);
    assert_null(lb_loop_unref(loop));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slab_reuses_objects),
        cmocka_unit_test(test_slab_grows_into_large_blocks),
        cmocka_unit_test(test_slab_out_of_memory),
        cmocka_unit_test(test_slab_poisons_freed_objects),
        cmocka_unit_test(test_slab_handle_fields_start_clean),
    };
    return cmocka_run_group_tests_name("slab", tests, NULL, NULL);
}
