/* SPDX-License-Identifier: MIT */
#ifndef LB_TIMER_HEAP_H
#define LB_TIMER_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The timers: a 4-ary min-heap ordered by (deadline, sequence number),
 * so timers with equal deadlines fire in the order they were scheduled.
 * Entries carry their key, so sifting never dereferences the payload.
 * Cancellation is lazy (the payload is flagged and skipped when it
 * reaches the top): cancel is O(1), and the heap is compacted when more
 * than half of it is dead. */
typedef struct lb__timer_entry {
    int64_t when;
    uint64_t seq;
    void *item;
} lb__timer_entry;

typedef struct lb__timer_heap {
    lb__timer_entry *v;
    size_t n;
    size_t cap;
    uint64_t next_seq;
    size_t dead; /* entries whose item was cancelled */
} lb__timer_heap;

void lb__timer_heap_init(lb__timer_heap *heap);
void lb__timer_heap_destroy(lb__timer_heap *heap);

/* Adds item with deadline when. Returns 0 or -ENOMEM. */
int lb__timer_heap_push(lb__timer_heap *heap, int64_t when, void *item);

/* The earliest entry, or NULL when empty. */
static inline const lb__timer_entry *lb__timer_heap_top(const lb__timer_heap *heap) {
    return heap->n ? &heap->v[0] : NULL;
}

/* Removes the earliest entry and returns its item (NULL when empty). */
void *lb__timer_heap_pop(lb__timer_heap *heap);

/* Drops every entry for which is_dead(item) is true, calling release on
 * it, and restores the heap order. O(n). */
void lb__timer_heap_compact(lb__timer_heap *heap, bool (*is_dead)(void *item),
                            void (*release)(void *item));

#endif
