/* SPDX-License-Identifier: MIT */
#include "alloc.h"
#include "asan.h"
#include "block_reserve.h"


#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

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

/* Pages from the system, not counted or failed by the plan. */
static void *map_pages_unplanned(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* The address may have held a task's stack, unmapped with its frames'
     * redzones still marked: fresh pages are fresh to ASan too. */
    LB__ASAN_UNPOISON(p, size);
    return p;
}

void *lb__map_pages(size_t size) {
    if (should_fail())
        return NULL;
    void *p = map_pages_unplanned(size);
    if (p)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void lb__unmap_pages(void *ptr, size_t size) {
    if (ptr)
        munmap(ptr, size);
}

static size_t large_size(size_t size) {
    return (size + LB__LARGE_BLOCK - 1) & ~(LB__LARGE_BLOCK - 1);
}

/* size bytes at a 2 MiB boundary: mapped with room to spare, then
 * trimmed to the aligned part (huge pages need the alignment). */
void *lb__map_large_unplanned(size_t size) {
    char *raw = map_pages_unplanned(size + LB__LARGE_BLOCK);
    if (!raw)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + LB__LARGE_BLOCK - 1) & ~(uintptr_t)(LB__LARGE_BLOCK - 1);
    size_t head = start - (uintptr_t)raw;
    if (head)
        munmap(raw, head);
    if (LB__LARGE_BLOCK - head)
        munmap((char *)start + size, LB__LARGE_BLOCK - head);
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)start, size, MADV_HUGEPAGE); /* a hint: refused is fine */
#endif
    return (void *)start;
}

void *lb__map_large(size_t size) {
    size = large_size(size);
    if (size == 0 || size > SIZE_MAX - LB__LARGE_BLOCK || should_fail())
        return NULL;
    /* A block committed ahead by the reserve's helper, when there is one. */
    void *block = size == LB__LARGE_BLOCK ? lb__reserve_take_block() : NULL;
    if (block)
        LB__ASAN_UNPOISON(block, size);
    else
        block = lb__map_large_unplanned(size);
    if (block)
        atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return block;
}

void *lb__grow_large(void *old, size_t old_size, size_t new_size) {
    char *p = lb__map_large(new_size);
    if (!p || !old)
        return p;
    old_size = large_size(old_size);
    /* The old pages move to the start of the new block: page tables are
     * moved, the memory is not copied, huge pages stay whole (both blocks
     * are aligned). */
    if (mremap(old, old_size, old_size, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
        memcpy(p, old, old_size);
        munmap(old, old_size);
    }
    return p;
}

void lb__unmap_large(void *ptr, size_t size) {
    if (ptr)
        munmap(ptr, large_size(size));
}

void lb__release_pages(const struct iovec *ranges, size_t n) {
    size_t done = 0;
#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
    static atomic_bool refused; /* by the kernel (or valgrind): madvise then */
    if (!atomic_load_explicit(&refused, memory_order_relaxed)) {
        /* Opened per call: a descriptor kept across fork() would name the
         * parent. Up to IOV_MAX ranges a call. */
        size_t count = n < 1024 ? n : 1024;
        long bytes = -1;
        int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        if (pidfd >= 0) {
            bytes = syscall(SYS_process_madvise, pidfd, ranges, count, MADV_DONTNEED, 0);
            close(pidfd);
        }
        if (bytes < 0)
            atomic_store_explicit(&refused, true, memory_order_relaxed);
        /* A short count advised whole ranges first; the rest is taken up
         * one by one below. */
        while (bytes > 0 && done < count && (size_t)bytes >= ranges[done].iov_len)
            bytes -= (long)ranges[done++].iov_len;
    }
#endif
    for (; done < n; done++)
        madvise(ranges[done].iov_base, ranges[done].iov_len, MADV_DONTNEED);
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
