/* SPDX-License-Identifier: MIT */
#ifndef LB_ALLOC_H
#define LB_ALLOC_H

/* Every allocation of the library goes through these four functions, so
 * that tests can make the Nth allocation fail and check that each public
 * call then reports -ENOMEM, leaks nothing and leaves the loop usable. */

#include <stddef.h>

struct iovec;

void *lb__malloc(size_t size);
void *lb__calloc(size_t count, size_t size);
void *lb__realloc(void *ptr, size_t size);
void lb__free(void *ptr);

/* Whole pages straight from the system, for a large block whose memory
 * must go back to it: the C library keeps a freed block that lies below
 * one still in use. size: a multiple of the page size. Counted and
 * failed by the test hooks below like the others. */
void *lb__map_pages(size_t size);
void lb__unmap_pages(void *ptr, size_t size);

/* Large blocks (a slab's chunk, a big timer heap): whole 2 MiB-aligned
 * regions from the system, with transparent huge pages asked for, so one
 * page fault commits 2 MiB where it would otherwise take 512 faults (each
 * costs tens of microseconds on a virtual machine: a loop that grows to
 * 200,000 timers would spend most of its setup faulting). The pages are
 * only committed when touched. size is rounded up to LB__LARGE_BLOCK.
 * lb__grow_large moves the pages of a block made by lb__map_large into a
 * larger one without copying them (old may be NULL). Failed by the test
 * hooks like the others. Blocks of LB__LARGE_FROM bytes and more are
 * worth one: below, a huge page would commit memory a small loop never
 * uses. */
#define LB__LARGE_BLOCK ((size_t)2 << 20)
#define LB__LARGE_FROM ((size_t)256 << 10)
void *lb__map_large(size_t size);
/* A block as lb__map_large maps one, neither counted nor failed by the
 * test hooks: for the reserve of committed blocks (block_reserve.h),
 * whose blocks are counted when a loop takes one. size: a multiple of
 * LB__LARGE_BLOCK. */
void *lb__map_large_unplanned(size_t size);
void *lb__grow_large(void *old, size_t old_size, size_t new_size);
void lb__unmap_large(void *ptr, size_t size);

/* Gives the pages of n page-aligned ranges back to the system (they read
 * as zeros after), in one system call where the kernel allows
 * (process_madvise, Linux 5.10+), else one madvise per range: on a
 * virtual machine each call costs far more than its pages. */
void lb__release_pages(const struct iovec *ranges, size_t n);

/* Test hooks. Like every lb__ function they stay inside the library (the
 * shared library does not export them): the tests that use them link the
 * core's objects (lb_core_internal_dep, lb_core_whole_dep).
 *
 * After `after` more successful allocations, every allocation fails until
 * reset with -1 (the default). Process-wide, thread-safe. */
void lb__test_alloc_fail_after(long after);

/* Test hook: after `after` more successful allocations, exactly one
 * allocation fails and the later ones succeed again: the recovery paths
 * that a lasting shortage never reaches (a failure in the middle of work
 * that goes on). -1 resets. Process-wide, thread-safe. */
void lb__test_alloc_fail_once(long after);

/* Test hook: how many allocations succeeded since the process started. */
long lb__test_alloc_count(void);

#endif
