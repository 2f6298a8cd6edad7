/* SPDX-License-Identifier: MIT */
#ifndef LB_BLOCK_RESERVE_H
#define LB_BLOCK_RESERVE_H

#include <stdbool.h>
#include <stddef.h>

/* Large blocks whose pages are committed ahead of need, on a helper
 * thread.
 *
 * A fresh block's pages are committed by the faults of the thread that
 * first writes them, and on a virtual machine the kernel zeroes and backs
 * them at 0.3-2 GB/s: 9-50 ms for the 17 MiB a loop takes for 200,000
 * timers, all of it on the loop thread, where every due timer and every
 * frame waits. Once a loop has taken a large block, a helper thread keeps
 * LB__RESERVE_BLOCKS blocks mapped and written, so the next blocks cost
 * the loop a lock and a pointer, and the faults run on another CPU.
 *
 * The helper runs at SCHED_IDLE: it uses a CPU nothing else wants, and
 * never pushes another thread onto the loop's CPU.
 *
 * The helper writes its blocks page by page rather than with
 * MADV_POPULATE_WRITE: that call holds the process's mmap lock for the
 * whole block, and every mmap() of the loop thread (a ready-queue chunk,
 * a task's stack) would wait behind it.
 *
 * Lifetime: the helper starts at the first demand, gives its blocks back
 * when none was taken for LB__RESERVE_IDLE_NS, and ends, unmapping them,
 * when the last loop is freed. A program whose loops never grow past a
 * few hundred kilobytes never starts it. It survives fork() as an empty
 * reserve in the child. Thread-safe. */
#define LB__RESERVE_BLOCKS 2
#define LB__RESERVE_IDLE_NS (2 * 1000 * 1000 * 1000LL)

/* A 2 MiB-aligned block of LB__LARGE_BLOCK bytes with its pages present,
 * or NULL when none is ready (map one then). Asks for the reserve to be
 * refilled either way, unless no loop holds it. Never waits for the
 * helper's work. */
void *lb__reserve_take_block(void);

/* Loops hold the reserve: when the count drops to zero the helper ends
 * (its current block finished, a few milliseconds at most) and the
 * blocks go back to the system. */
void lb__reserve_hold(void);
void lb__reserve_release(void);

/* Test hook: whether the helper runs, and how many blocks are ready. */
bool lb__reserve_test_state(size_t *ready);

#endif
