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
 * The helper runs as SCHED_BATCH: a CPU-bound thread that does not
 * preempt others when it wakes, with a normal share of the CPU (at
 * SCHED_IDLE it could starve for seconds behind busy threads while a
 * closing loop waited to join it, or held the lock a loop needed).
 *
 * The helper writes its blocks page by page rather than with
 * MADV_POPULATE_WRITE: that call holds the process's mmap lock for the
 * whole block, and every mmap() of the loop thread (a ready-queue chunk,
 * a task's stack) would wait behind it.
 *
 * Lifetime: the helper starts at the first demand, gives its blocks back
 * when none was taken for LB__RESERVE_IDLE_NS, and ends, unmapping them,
 * when the last loop is freed. A program whose loops never grow past a
 * few hundred kilobytes never starts it. Blocks in the reserve are not
 * inherited by fork() (MADV_DONTFORK, cleared when one is handed out): a
 * child starts with an empty reserve and no helper, and the parent's
 * blocks are not shared copy-on-write. Thread-safe. */
#define LB__RESERVE_BLOCKS 2
#define LB__RESERVE_IDLE_NS (2 * 1000 * 1000 * 1000LL)

/* A 2 MiB-aligned block of LB__LARGE_BLOCK bytes with its pages present,
 * or NULL when none is ready (map one then). Asks for the reserve to be
 * refilled either way, unless no loop holds it. Never waits for the
 * helper's work. */
void *lb__reserve_take_block(void);

/* Loops hold the reserve: when the count drops to zero the helper ends
 * (it leaves the block it is writing at the next page) and the blocks go
 * back to the system. A hold names the process that made it: a forked
 * child starts with no holder, and releasing a hold its parent made (the
 * child's copy of a loop) is a no-op. */
typedef unsigned lb__reserve_hold_t;
lb__reserve_hold_t lb__reserve_hold(void);
void lb__reserve_release(lb__reserve_hold_t hold);

/* Test hook: whether the helper runs, and how many blocks are ready. */
bool lb__reserve_test_state(size_t *ready);

#endif
