/* SPDX-License-Identifier: MIT */
/* The stack pool: sizes, reuse, and 100,000 live stacks within the
 * kernel's map count. */
#include "fiber/stack.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

static long count_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Resident memory of the process, in KiB. */
static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Page tables of the process, in KiB: a guard costs entries, not pages. */
static long page_tables_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmPTE: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void test_stack_sizes(void **state) {
    (void)state;
    lb__stack_pool *pool;
    lb__stack *st;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    assert_int_equal(lb__stack_acquire(pool, 1024, &st), -EINVAL);
    assert_int_equal(lb__stack_acquire(pool, 65 * 1024 * 1024, &st), -EINVAL);
    assert_int_equal(lb__stack_acquire(pool, 0, &st), 0);
    assert_int_equal(st->size, LB__STACK_DEFAULT_SIZE);
    /* The whole stack is usable. */
    memset(st->lo, 0xa5, st->size);
    lb__stack_release(pool, st);
    assert_int_equal(lb__stack_acquire(pool, 20000, &st), 0);
    assert_true(st->size >= 20000 && st->size % 4096 == 0);
    memset(st->lo, 0x5a, st->size);
    lb__stack_release(pool, st);
    assert_int_equal(lb__stack_pool_count(pool), 0);
    lb__stack_pool_free(pool);
}

/* Dies of a fault if the byte at p cannot be written. */
static bool write_faults(volatile char *p) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        *p = 1;
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

/* Below every stack, of every size, a guard as large as the stack and at
 * least LB__STACK_GUARD_MIN: its lowest and highest bytes fault. */
static void test_stack_guard_sizes(void **state) {
    (void)state;
    static const size_t sizes[] = {16 * 1024, 0, 1024 * 1024, 64 * 1024 * 1024};
    lb__stack_pool *pool;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        lb__stack *st;
        assert_int_equal(lb__stack_acquire(pool, sizes[i], &st), 0);
        size_t guard = st->slab->guard;
        printf("# %zu KiB stack: %zu KiB guard\n", st->size / 1024, guard / 1024);
        assert_true(guard >= LB__STACK_GUARD_MIN && guard >= st->size);
        assert_null(st->canary); /* guarded: no canary */
        assert_true(write_faults((char *)st->lo - 1));
        assert_true(write_faults((char *)st->lo - guard));
        ((volatile char *)st->lo)[0] = 1; /* the stack itself is all usable */
        ((volatile char *)st->lo)[st->size - 1] = 1;
        lb__stack_release(pool, st);
    }
    lb__stack_pool_free(pool);
}

/* Where no guard could be installed, a canary below each stack holds its
 * value whenever the stack is handed out, also after its pages (the
 * canary's among them) went back to the system. */
static void test_stack_canaries_without_guards(void **state) {
    (void)state;
    enum { N = 400 }; /* enough released stacks to trim some */
    lb__stack_force_guard_mode(LB__GUARD_NONE);
    lb__stack_pool *pool;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    lb__stack *st[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            assert_int_equal(lb__stack_acquire(pool, 0, &st[i]), 0);
            assert_ptr_equal(st[i]->canary, (uint64_t *)st[i]->lo - 1);
            assert_true(*st[i]->canary == lb__stack_canary_value(st[i]->canary));
            *st[i]->canary = 0; /* an overflow: rewritten at the next acquire */
        }
        for (int i = 0; i < N; i++)
            lb__stack_release(pool, st[i]);
        while (lb__stack_pool_give_back(pool)) /* the pages, canaries' included */
            ;
    }
    lb__stack *odd;
    assert_int_equal(lb__stack_acquire(pool, 20000, &odd), 0);
    assert_true(*odd->canary == lb__stack_canary_value(odd->canary));
    lb__stack_release(pool, odd);
    lb__stack_pool_free(pool);
    lb__stack_force_guard_mode(LB__GUARD_MADVISE);
}

static void test_stack_reuse_is_lifo(void **state) {
    (void)state;
    lb__stack_pool *pool;
    lb__stack *a, *b, *c;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    assert_int_equal(lb__stack_acquire(pool, 0, &a), 0);
    assert_int_equal(lb__stack_acquire(pool, 0, &b), 0);
    assert_ptr_not_equal(a, b);
    assert_int_equal(lb__stack_pool_count(pool), 2);
    lb__stack_release(pool, a);
    assert_int_equal(lb__stack_acquire(pool, 0, &c), 0);
    assert_ptr_equal(c, a); /* the warm one */
    lb__stack_release(pool, b);
    lb__stack_release(pool, c);
    lb__stack_pool_free(pool);
}

static void test_stack_hundred_thousand(void **state) {
    (void)state;
    enum { N = 100000 };
    lb__stack_pool *pool;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    lb__stack **st = calloc(N, sizeof *st);
    long before = count_maps();
    long pte_before = page_tables_kb();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(lb__stack_acquire(pool, 0, &st[i]), 0);
        /* Touch the top, as a fiber's first frame does. */
        ((char *)st[i]->lo)[st[i]->size - 1] = 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long during = count_maps();
    long rss_during = rss_kb();
    printf("# %.2f us per stack acquired and touched\n",
           ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / N);
    printf("# %ld mappings for %d stacks, %ld KiB of page tables\n", during - before, N,
           page_tables_kb() - pte_before);
    assert_true(during < 60000);
    assert_int_equal(lb__stack_pool_count(pool), N);
    for (int i = 0; i < N; i++)
        lb__stack_release(pool, st[i]);
    assert_int_equal(lb__stack_pool_count(pool), 0);
    /* Released, they keep their pages (the loop is still busy)... */
    long rss_released = rss_kb();
    assert_true(rss_during - rss_released < (long)N * 4 / 10);
    /* ...which go back when the loop asks, 64 stacks a call, but for the
     * 64 kept warm for reuse. */
    long calls = 1;
    while (lb__stack_pool_give_back(pool))
        calls++;
    assert_false(lb__stack_pool_give_back(pool));
    long rss_after = rss_kb();
    printf("# resident: %ld KiB with the stacks in use, %ld KiB released, %ld KiB after %ld "
           "calls to give back\n",
           rss_during, rss_released, rss_after, calls);
    assert_int_equal(calls, (N - 64 + 63) / 64);
    assert_true(rss_during - rss_after > (long)N * 4 * 9 / 10);
    /* The warm ones first, then the cold: reuse still works. */
    for (int i = 0; i < 200; i++)
        assert_int_equal(lb__stack_acquire(pool, 0, &st[i]), 0);
    for (int i = 0; i < 200; i++)
        lb__stack_release(pool, st[i]);
    free(st);
    lb__stack_pool_free(pool);
    assert_true(count_maps() <= before + 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_sizes),
        cmocka_unit_test(test_stack_guard_sizes),
        cmocka_unit_test(test_stack_canaries_without_guards),
        cmocka_unit_test(test_stack_reuse_is_lifo),
        cmocka_unit_test(test_stack_hundred_thousand),
    };
    return cmocka_run_group_tests_name("stack", tests, NULL, NULL);
}
