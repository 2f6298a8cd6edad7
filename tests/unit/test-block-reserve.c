/* SPDX-License-Identifier: MIT */
/* The reserve of committed large blocks: once a loop takes a large block,
 * the next ones come with their pages present (so the loop thread takes no
 * fault on them); the helper thread ends and gives the blocks back with
 * the last loop, gives them back after an idle spell, leaves the test
 * hooks' failure plans as they were, and a forked child starts with no
 * helper and still works. */
#include "alloc.h"
#include "block_reserve.h"

#include <loopbridge/loopbridge.h>

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Waits, up to a generous bound, until the reserve holds `want` blocks
 * (or, with want < 0, until the helper has ended). */
static bool wait_reserve(long want, int64_t bound_ns) {
    int64_t until = now_ns() + bound_ns;
    for (;;) {
        size_t ready;
        bool running = lb__reserve_test_state(&ready);
        if (want < 0 ? !running : ready == (size_t)want)
            return true;
        if (now_ns() > until)
            return false;
        usleep(1000);
    }
}

static size_t resident_pages(void *block) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = LB__LARGE_BLOCK / page, present = 0;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore(block, LB__LARGE_BLOCK, vec), 0);
    for (size_t i = 0; i < n; i++)
        present += vec[i] & 1;
    free(vec);
    return present;
}

static void test_blocks_after_the_first_are_committed(void **state) {
    (void)state;
    lb_loop *loop;
    assert_int_equal(lb_loop_new(&loop, NULL), 0);
    void *first = lb__map_large(LB__LARGE_BLOCK);
    assert_non_null(first);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    void *next = lb__map_large(LB__LARGE_BLOCK);
    assert_non_null(next);
    assert_int_equal((uintptr_t)next % LB__LARGE_BLOCK, 0);
    /* Every page present, before this thread wrote any. */
    assert_int_equal(resident_pages(next), LB__LARGE_BLOCK / (size_t)sysconf(_SC_PAGESIZE));
    memset(next, 0xab, LB__LARGE_BLOCK); /* and writable */
    lb__unmap_large(next, LB__LARGE_BLOCK);
    lb__unmap_large(first, LB__LARGE_BLOCK);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

static void test_helper_ends_with_the_last_loop(void **state) {
    (void)state;
    lb_loop *a, *b;
    assert_int_equal(lb_loop_new(&a, NULL), 0);
    assert_int_equal(lb_loop_new(&b, NULL), 0);
    lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    assert_int_equal(lb_loop_close(a), 0);
    lb_loop_unref(a);
    size_t ready;
    assert_true(lb__reserve_test_state(&ready)); /* b still holds it */
    assert_int_equal(lb_loop_close(b), 0);
    lb_loop_unref(b);
    assert_false(lb__reserve_test_state(&ready)); /* joined */
    assert_int_equal(ready, 0);
}

static void test_no_loop_no_helper(void **state) {
    (void)state;
    void *block = lb__map_large(LB__LARGE_BLOCK);
    assert_non_null(block);
    lb__unmap_large(block, LB__LARGE_BLOCK);
    size_t ready;
    assert_false(lb__reserve_test_state(&ready));
    assert_int_equal(ready, 0);
}

static void test_idle_reserve_is_given_back(void **state) {
    (void)state;
    lb_loop *loop;
    assert_int_equal(lb_loop_new(&loop, NULL), 0);
    lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    /* Nothing taken for the idle time: the blocks go, the helper stays. */
    assert_true(wait_reserve(0, LB__RESERVE_IDLE_NS + 20LL * 1000 * 1000 * 1000));
    assert_true(lb__reserve_test_state(NULL));
    /* A new demand fills it again. */
    lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

static void test_failure_plan_holds_for_reserved_blocks(void **state) {
    (void)state;
    lb_loop *loop;
    assert_int_equal(lb_loop_new(&loop, NULL), 0);
    lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    long before = lb__test_alloc_count();
    lb__test_alloc_fail_once(0);
    assert_null(lb__map_large(LB__LARGE_BLOCK));
    void *block = lb__map_large(LB__LARGE_BLOCK);
    assert_non_null(block);
    assert_int_equal(lb__test_alloc_count(), before + 1); /* counted as a mapping */
    lb__test_alloc_fail_after(-1);
    lb__unmap_large(block, LB__LARGE_BLOCK);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

/* The child of a fork has no helper thread: its loops must still take
 * blocks, close, and not wait for a thread that is not there. */
static void test_forked_child_has_a_working_reserve(void **state) {
    (void)state;
#ifdef UNDER_TSAN
    skip(); /* ThreadSanitizer refuses threads in the child of a threaded fork */
#endif
    lb_loop *loop;
    assert_int_equal(lb_loop_new(&loop, NULL), 0);
    lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60); /* a hang fails the test rather than stalling it */
        lb_loop *child;
        int ok = lb_loop_new(&child, NULL) == 0;
        for (int i = 0; ok && i < 2 * LB__RESERVE_BLOCKS + 2; i++) {
            char *block = lb__map_large(LB__LARGE_BLOCK);
            ok = block != NULL;
            if (ok) {
                block[LB__LARGE_BLOCK - 1] = 1;
                lb__unmap_large(block, LB__LARGE_BLOCK);
            }
        }
        ok = ok && lb_loop_close(child) == 0;
        lb_loop_unref(child);
        ok = ok && lb_loop_close(loop) == 0;
        lb_loop_unref(loop);
        size_t ready;
        ok = ok && !lb__reserve_test_state(&ready) && ready == 0;
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_loop_no_helper),
        cmocka_unit_test(test_blocks_after_the_first_are_committed),
        cmocka_unit_test(test_helper_ends_with_the_last_loop),
        cmocka_unit_test(test_idle_reserve_is_given_back),
        cmocka_unit_test(test_failure_plan_holds_for_reserved_blocks),
        cmocka_unit_test(test_forked_child_has_a_working_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
