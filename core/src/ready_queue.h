/* SPDX-License-Identifier: MIT */
#ifndef LB_READY_QUEUE_H
#define LB_READY_QUEUE_H

#include "handle.h"

#include <stdbool.h>
#include <stddef.h>

/* The FIFO of calls ready to run: (callback, data) pairs stored in a
 * chain of fixed-size chunks. A floating lb_loop_call_soon() is one
 * 16-byte entry and no allocation once a chunk is there; a call that needs
 * a handle (a timer that came due, a call whose handle the caller holds,
 * an internal callback with extra arguments) is queued as the pair
 * (lb__run_handle, handle).
 *
 * Why chunks and not one growing array: growth never copies, and memory
 * freshly touched is the dominant cost of a burst (a page fault costs
 * about as much as a hundred callbacks on the machines we measure), so a
 * burst of a million calls should touch 16 MB once, not 64 MB of handles
 * or a doubling array's copies.
 *
 * Emptied chunks are kept whole for reuse, up to LB__READY_SPARE_CHUNKS,
 * so a steady flow never allocates. Beyond that a burst gives its memory
 * back, but only once the loop has nothing ready: chunks are whole pages
 * of their own (never the C library's heap, which keeps a freed block
 * that lies below one in use), and giving pages back flushes the TLB,
 * which on a virtual machine with shadow page tables stalled a loop in
 * the middle of a flood for 40-70 ms (docs/performance.md, "What G1's
 * pause on glib is"). So the chunks the head passes are retired, their
 * pages kept, while work is ready; an iteration that ends with nothing
 * ready gives back LB__READY_RELEASE_BATCH of them in one system call
 * (lb__ready_give_back), and the loop comes back for the rest before it
 * sleeps. Batches, not a call per chunk, because each call flushes the
 * TLB (docs/performance.md, "Figures behind the code"). The chunks stay
 * mapped, their pages zero, and a later burst takes the retired ones,
 * then these, before mapping new ones; they are unmapped with the queue.
 *
 * Queuing a handle never fails, so nothing the loop already accepted (a
 * due timer, a future's done callback, a task step) can be lost to a
 * failed allocation: when no chunk can be had, handles wait in an
 * overflow list linked through the handles themselves, and plain entries
 * are refused (the caller reports -ENOMEM) until it has drained, which
 * keeps the order first in, first out. */

#define LB__READY_CHUNK_ENTRIES 4095 /* 64 KiB per chunk with its link */
#define LB__READY_SPARE_CHUNKS 4
#define LB__READY_RELEASE_BATCH 64 /* chunks given back a call: 4 MiB */

typedef struct lb__ready_entry {
    lb_callback cb;
    void *data;
} lb__ready_entry;

typedef struct lb__ready_chunk {
    struct lb__ready_chunk *next;
    void *pad; /* keeps the entries 16-byte aligned */
    lb__ready_entry e[LB__READY_CHUNK_ENTRIES];
} lb__ready_chunk;

typedef struct lb__ready_queue {
    lb__ready_entry *head, *head_end; /* next entry to run; end of its chunk */
    lb__ready_entry *tail, *tail_end; /* next free slot; end of its chunk */
    lb__ready_chunk *head_chunk, *tail_chunk;
    size_t count;              /* entries in all, the overflow included */
    lb_handle *over_head, *over_tail; /* the overflow, after every entry */
    size_t over_count;
    lb__ready_chunk *spare; /* emptied chunks kept whole */
    size_t nspare;
    lb__ready_chunk *retired; /* emptied, pages not given back yet; linked */
    size_t nretired;
    lb__ready_chunk **cold; /* pages given back, still mapped */
    size_t ncold, cold_cap;
    size_t nchunks; /* mapped, the cold ones included */
} lb__ready_queue;

/* Runs a handle queued by lb__ready_push_handle (handle.c). */
void lb__run_handle(lb_loop *loop, void *handle);

/* Slow paths (ready_queue.c). lb__ready_grow makes room for one entry:
 * false while the overflow is not empty, or when out of memory. */
bool lb__ready_grow(lb__ready_queue *q);
void lb__ready_next_chunk(lb__ready_queue *q);

/* Gives the pages of up to LB__READY_RELEASE_BATCH retired chunks back
 * to the system, in one call. Returns true while more are retired. */
bool lb__ready_give_back(lb__ready_queue *q);

/* Unmaps every chunk; the queue must be empty. */
void lb__ready_destroy(lb__ready_queue *q);

void lb__ready_push_overflow(lb__ready_queue *q, lb_handle *h);
bool lb__ready_pop_overflow(lb__ready_queue *q, lb__ready_entry *e);

/* Appends (cb, data) if the tail chunk has room (and no overflow waits).
 * The fast half of lb__ready_push(). */
static inline bool lb__ready_try_push(lb__ready_queue *q, lb_callback cb, void *data) {
    if (__builtin_expect(q->tail == q->tail_end || q->over_head != NULL, 0))
        return false;
    q->tail->cb = cb;
    q->tail->data = data;
    q->tail++;
    q->count++;
    return true;
}

/* Appends (cb, data). Returns false when out of memory. */
static inline bool lb__ready_push(lb__ready_queue *q, lb_callback cb, void *data) {
    return lb__ready_try_push(q, cb, data) ||
           (lb__ready_grow(q) && lb__ready_try_push(q, cb, data));
}

/* Appends a handle; its callback runs through lb__run_handle. Never
 * fails (see the overflow above). */
static inline void lb__ready_push_handle(lb__ready_queue *q, lb_handle *h) {
    if (!lb__ready_push(q, lb__run_handle, h))
        lb__ready_push_overflow(q, h);
}

/* Removes the oldest entry into *e. Returns false when empty. */
static inline bool lb__ready_pop(lb__ready_queue *q, lb__ready_entry *e) {
    if (__builtin_expect(q->count == q->over_count, 0))
        return lb__ready_pop_overflow(q, e);
    if (__builtin_expect(q->head == q->head_end, 0))
        lb__ready_next_chunk(q);
    *e = *q->head++;
    if (--q->count == 0) {
        /* Empty: start over at the top of the chunk, so a steady flow of
         * one or two calls keeps reusing the same cache lines. */
        q->head = q->tail = q->tail_chunk->e;
    }
    return true;
}

#endif
