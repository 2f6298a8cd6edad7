/* SPDX-License-Identifier: MIT */
/* The ready queue: first in, first out across chunk boundaries, memory
 * kept for reuse, and handles that never fail to queue. */
#include "alloc.h"
#include "ready_queue.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <cmocka.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

static void cb_a(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

/* Pushes count entries numbered from first, as data. */
static void push_numbers(lb__ready_queue *q, uintptr_t first, size_t count) {
    for (size_t i = 0; i < count; i++)
        assert_true(lb__ready_push(q, cb_a, (void *)(first + i)));
}

static void pop_numbers(lb__ready_queue *q, uintptr_t first, size_t count) {
    lb__ready_entry e;
    for (size_t i = 0; i < count; i++) {
        assert_true(lb__ready_pop(q, &e));
        assert_ptr_equal(e.cb, cb_a);
        assert_int_equal((uintptr_t)e.data, first + i);
    }
}

static void test_ready_queue_fifo_across_chunks(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    lb__ready_entry e;
    assert_false(lb__ready_pop(&q, &e));
    const size_t n = 3 * LB__READY_CHUNK_ENTRIES + 17;
    for (int round = 0; round < 3; round++) {
        push_numbers(&q, 1, n);
        assert_int_equal(q.count, n);
        pop_numbers(&q, 1, n);
        assert_int_equal(q.count, 0);
        assert_false(lb__ready_pop(&q, &e));
        /* Emptied chunks are kept for the next burst, a few at most. */
        assert_true(q.nspare <= LB__READY_SPARE_CHUNKS);
    }
    lb__ready_destroy(&q);
}

static void test_ready_queue_interleaved(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    uintptr_t next_in = 0, next_out = 0;
    /* A window that slides over several chunk boundaries. */
    for (int step = 0; step < 5 * LB__READY_CHUNK_ENTRIES; step++) {
        if ((step % 3) != 2 && next_in - next_out < 1000) {
            push_numbers(&q, next_in, 1);
            next_in++;
        } else if (next_out < next_in) {
            pop_numbers(&q, next_out, 1);
            next_out++;
        }
        assert_int_equal(q.count, next_in - next_out);
    }
    pop_numbers(&q, next_out, next_in - next_out);
    lb__ready_destroy(&q);
}

static void test_ready_queue_steady_flow_allocates_once(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    /* One entry always queued, so the window slides across chunk ends:
     * two chunks are made, then they take turns. */
    push_numbers(&q, 0, 1);
    long allocations = 0;
    for (uintptr_t i = 1; i < 100000; i++) {
        if (i == 2 * LB__READY_CHUNK_ENTRIES)
            allocations = lb__test_alloc_count();
        push_numbers(&q, i, 1);
        pop_numbers(&q, i - 1, 1);
    }
    assert_int_equal(lb__test_alloc_count(), allocations);
    pop_numbers(&q, 99999, 1);
    lb__ready_destroy(&q);
}

/* The process's resident memory, in bytes. */
static size_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    unsigned long size, resident;
    assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Chunks whose pages are in memory: mapped ones but the cold. */
static size_t resident_chunks(const lb__ready_queue *q) {
    return q->nchunks - q->ncold;
}

/* A burst gives its memory back to the system once it has drained, when
 * the loop asks (lb__ready_give_back, at an iteration that leaves nothing
 * ready), a batch of chunks a call, and never while draining: giving pages
 * back flushes the TLB, which can stall the loop in the middle of a flood.
 * Nor never, as chunks freed to the C library's heap below a chunk still
 * in use would be. The next burst reuses the chunks. */
static void test_ready_queue_burst_gives_memory_back(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    const size_t n = 400 * LB__READY_CHUNK_ENTRIES; /* 25 MiB of entries */
    const size_t kept_chunks = 1 + LB__READY_SPARE_CHUNKS;
    size_t before = resident_bytes();
    for (int burst = 0; burst < 2; burst++) {
        long allocations = lb__test_alloc_count();
        push_numbers(&q, 0, n);
        assert_true(resident_bytes() >= before + n * sizeof(lb__ready_entry) / 2);
        assert_int_equal(q.nchunks, 400);
        if (burst == 1) /* the first burst's chunks, not new ones */
            assert_int_equal(lb__test_alloc_count(), allocations);
        /* Draining: nothing goes back yet. */
        pop_numbers(&q, 0, n / 2);
        assert_int_equal(resident_chunks(&q), 400);
        pop_numbers(&q, n / 2, n - n / 2);
        assert_int_equal(resident_chunks(&q), 400);
        /* Drained: a batch a call, until only the spares are left. */
        size_t calls = 0, last = resident_chunks(&q);
        bool more;
        do {
            more = lb__ready_give_back(&q);
            calls++;
            assert_in_range(last - resident_chunks(&q), 1, LB__READY_RELEASE_BATCH);
            last = resident_chunks(&q);
        } while (more);
        assert_false(lb__ready_give_back(&q));
        assert_int_equal(calls, (400 - kept_chunks + LB__READY_RELEASE_BATCH - 1) /
                                    LB__READY_RELEASE_BATCH);
        assert_in_range(resident_chunks(&q), 1, kept_chunks);
        /* The chunks kept, and some slack for the runtime (valgrind
         * keeps its own record of the pages given back; AddressSanitizer
         * takes about 3.5 MiB of its own here). */
        size_t after = resident_bytes();
        size_t kept = after > before ? after - before : 0;
        if (!RUNNING_ON_VALGRIND)
            assert_in_range(kept, 0, kept_chunks * sizeof(lb__ready_chunk) + 4 * 1024 * 1024);
    }
    lb__ready_destroy(&q);
    assert_int_equal(q.nchunks, 0);
}

/* Out of memory: plain entries are refused, handles wait in the overflow
 * list, and the order of everything accepted is kept. */
static void test_ready_queue_handles_never_fail(void **state) {
    (void)state;
    lb__ready_queue q = {0};
    lb_handle h[3];
    push_numbers(&q, 1, LB__READY_CHUNK_ENTRIES); /* the chunk is full */
    lb__test_alloc_fail_after(0);
    assert_false(lb__ready_push(&q, cb_a, (void *)1));
    lb__ready_push_handle(&q, &h[0]);
    lb__ready_push_handle(&q, &h[1]);
    lb__test_alloc_fail_after(-1);
    /* Memory is back, but the overflow must drain first. */
    assert_false(lb__ready_push(&q, cb_a, (void *)1));
    lb__ready_push_handle(&q, &h[2]);
    assert_int_equal(q.count, LB__READY_CHUNK_ENTRIES + 3);

    pop_numbers(&q, 1, LB__READY_CHUNK_ENTRIES);
    lb__ready_entry e;
    for (int i = 0; i < 3; i++) {
        assert_true(lb__ready_pop(&q, &e));
        assert_ptr_equal(e.cb, lb__run_handle);
        assert_ptr_equal(e.data, &h[i]);
    }
    assert_false(lb__ready_pop(&q, &e));
    /* Drained: plain entries are accepted again. */
    push_numbers(&q, 7, 2);
    pop_numbers(&q, 7, 2);
    lb__ready_destroy(&q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_queue_fifo_across_chunks),
        cmocka_unit_test(test_ready_queue_interleaved),
        cmocka_unit_test(test_ready_queue_steady_flow_allocates_once),
        cmocka_unit_test(test_ready_queue_handles_never_fail),
        cmocka_unit_test(test_ready_queue_burst_gives_memory_back),
    };
    return cmocka_run_group_tests_name("ready_queue", tests, NULL, NULL);
}
