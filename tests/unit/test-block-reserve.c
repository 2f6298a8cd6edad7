/* SPDX-License-Identifier: MIT */
/* The reserve of committed large blocks: once a loop takes a large block,
 * the next ones come with their pages present (so the loop thread takes no
 * fault on them); the helper thread ends and gives the blocks back with
 * the last loop, gives them back after an idle spell, leaves the test
 * hooks' failure plans as they were (a planned failure takes no block);
 * a forked child starts with no helper, no blocks and no holder, and its
 * own last loop ends the helper it started; the helper's blocks are not
 * poisoned memory to ASan. */
#include "alloc.h"
#include "asan.h"
#include "block_reserve.h"

#include <loopbridge/loopbridge.h>

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
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
    size_t ready;
    lb__reserve_test_state(&ready);
    assert_int_equal(ready, LB__RESERVE_BLOCKS); /* the failure took none */
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
        size_t ready;
        int ok = !lb__reserve_test_state(&ready) && ready == 0;
        lb_loop *child;
        ok = ok && lb_loop_new(&child, NULL) == 0;
        for (int i = 0; ok && i < 2 * LB__RESERVE_BLOCKS + 2; i++) {
            char *block = lb__map_large(LB__LARGE_BLOCK);
            ok = block != NULL;
            if (ok) {
                block[LB__LARGE_BLOCK - 1] = 1;
                lb__unmap_large(block, LB__LARGE_BLOCK);
            }
        }
        ok = ok && wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000);
        /* The child's own last loop ends the helper it started, though
         * its copy of the parent's loop is never freed. */
        ok = ok && lb_loop_close(child) == 0;
        lb_loop_unref(child);
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

/* The last loop's free joins the helper. Beside threads that keep its
 * CPU busy, the helper must still get a share and notice the stop at its
 * next page: at idle priority it waited 0.35-0.8 s here. */
static atomic_bool spinning;

static void *spin(void *arg) {
    (void)arg;
    while (atomic_load_explicit(&spinning, memory_order_relaxed))
        ;
    return NULL;
}

static void test_last_loop_frees_promptly_beside_busy_threads(void **state) {
    (void)state;
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload"))
        skip(); /* valgrind runs one thread at a time: the spinners own it */
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    lb_loop *loop;
    assert_int_equal(lb_loop_new(&loop, NULL), 0);
    atomic_store(&spinning, true);
    pthread_t spinners[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&spinners[i], NULL, spin, NULL), 0);
    /* Blocks taken one after the other keep the helper writing. */
    for (int i = 0; i < 20; i++) {
        lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
        usleep(1000);
    }
    assert_int_equal(lb_loop_close(loop), 0);
    int64_t start = now_ns();
    lb_loop_unref(loop);
    int64_t took = now_ns() - start;
    atomic_store(&spinning, false);
    for (int i = 0; i < 2; i++)
        pthread_join(spinners[i], NULL);
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    print_message("# the last loop's free took %.1f ms beside 2 busy threads\n", took / 1e6);
    assert_false(lb__reserve_test_state(NULL));
    assert_true(took < 50LL * 1000 * 1000); /* generous: a page and a few slices */
}

#ifdef LB__ASAN
/* Memory left poisoned and unmapped keeps its shadow: the helper, which
 * may get the same addresses, must not trip over it. */
static void test_helper_blocks_are_not_poisoned(void **state) {
    (void)state;
    for (int i = 0; i < 8; i++) {
        char *p = mmap(NULL, 4 * LB__LARGE_BLOCK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(p != MAP_FAILED);
        LB__ASAN_POISON(p, 4 * LB__LARGE_BLOCK);
        munmap(p, 4 * LB__LARGE_BLOCK);
    }
    lb_loop *loop;
    assert_int_equal(lb_loop_new(&loop, NULL), 0);
    lb__unmap_large(lb__map_large(LB__LARGE_BLOCK), LB__LARGE_BLOCK);
    assert_true(wait_reserve(LB__RESERVE_BLOCKS, 20LL * 1000 * 1000 * 1000));
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_loop_no_helper),
        cmocka_unit_test(test_blocks_after_the_first_are_committed),
        cmocka_unit_test(test_helper_ends_with_the_last_loop),
        cmocka_unit_test(test_idle_reserve_is_given_back),
        cmocka_unit_test(test_failure_plan_holds_for_reserved_blocks),
        cmocka_unit_test(test_forked_child_has_a_working_reserve),
        cmocka_unit_test(test_last_loop_frees_promptly_beside_busy_threads),
#ifdef LB__ASAN
        cmocka_unit_test(test_helper_blocks_are_not_poisoned),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
