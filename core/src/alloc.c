/* SPDX-License-Identifier: MIT */
#include "alloc.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* -1 means "never fail". The counter is only consulted when a test armed
 * it, so the normal path costs one relaxed load. */
static atomic_long fail_after = -1;
static atomic_bool fail_once;
static atomic_long alloc_count;

static int should_fail(void) {
    if (atomic_load_explicit(&fail_after, memory_order_relaxed) < 0)
        return 0;
    long left = atomic_fetch_sub_explicit(&fail_after, 1, memory_order_relaxed);
    if (left > 0)
        return 0;
    if (atomic_load_explicit(&fail_once, memory_order_relaxed)) {
        /* The one that takes the counter to -1 fails; every later one
         * finds it negative, or takes it further down. */
        return left == 0;
    }
    /* Keep failing: undo the decrement so the counter sticks at zero. */
    atomic_store_explicit(&fail_after, 0, memory_order_relaxed);
    return 1;
}

void *lb__malloc(size_t size) {
    if (should_fail())
        return NULL;
    void *p = malloc(size);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void *lb__calloc(size_t count, size_t size) {
    if (should_fail())
        return NULL;
    void *p = calloc(count, size);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void *lb__realloc(void *ptr, size_t size) {
    if (should_fail())
        return NULL;
    void *p = realloc(ptr, size);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void lb__free(void *ptr) {
    free(ptr);
}

void lb__test_alloc_fail_after(long after) {
    atomic_store(&fail_once, false);
    atomic_store(&fail_after, after < 0 ? -1 : after);
}

void lb__test_alloc_fail_once(long after) {
    atomic_store(&fail_once, after >= 0);
    atomic_store(&fail_after, after < 0 ? -1 : after);
}

long lb__test_alloc_count(void) {
    return atomic_load(&alloc_count);
}
