/* SPDX-License-Identifier: MIT */
#include "alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* The failure plan of a test. The normal path reads one relaxed flag;
 * armed, every allocation consults the plan under a lock, so that a
 * reset can never be undone by a thread that was counting meanwhile (a
 * lock-free counter that failing threads reset to zero could be set back
 * to zero after the reset, and allocation then failed for good). */
static atomic_bool armed;
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;
static long countdown; /* allocations that still succeed */
static bool once;      /* then one fails, rather than all */
static atomic_long alloc_count;

static int should_fail(void) {
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return 0;
    int fail = 0;
    pthread_mutex_lock(&plan_lock);
    if (atomic_load_explicit(&armed, memory_order_relaxed)) {
        if (countdown > 0) {
            countdown--;
        } else {
            fail = 1;
            if (once)
                atomic_store_explicit(&armed, false, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&plan_lock);
    return fail;
}

static void set_plan(long after, bool fail_once) {
    pthread_mutex_lock(&plan_lock);
    countdown = after;
    once = fail_once;
    atomic_store_explicit(&armed, after >= 0, memory_order_relaxed);
    pthread_mutex_unlock(&plan_lock);
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
    set_plan(after, false);
}

void lb__test_alloc_fail_once(long after) {
    set_plan(after, true);
}

long lb__test_alloc_count(void) {
    return atomic_load(&alloc_count);
}
