/* SPDX-License-Identifier: MIT */
#ifndef LB_TIMER_HEAP_H
#define LB_TIMER_HEAP_H

#include "slab.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The timers, ordered by (deadline, sequence number), so timers with
 * equal deadlines fire in the order they were scheduled. Entries carry
 * their key, so ordering never dereferences the payload. Cancellation is
 * lazy (the payload is flagged and skipped when it reaches the top):
 * cancel is O(1), and the timers are compacted when more than half of
 * them are dead.
 *
 * Three tiers, so that a loop with hundreds of thousands of timers pops
 * from a heap that fits in the cache (docs/performance.md, "W3: the
 * timers in three tiers"):
 * - near: a 4-ary min-heap of every entry whose slot (its deadline in
 *   units of LB__WHEEL_SLOT_NS) lies before `horizon`;
 * - the wheel: one list of entries per slot, for the LB__WHEEL_SLOTS
 *   slots from `base` on (base >= horizon but after a push that moved
 *   the horizon back), appended to in O(1) without ordering;
 * - far: a 4-ary min-heap of the entries outside the wheel when pushed.
 * Every entry of near is due before every other entry. When near runs
 * empty, the earliest slot of the wheel or of far moves into it. Near
 * is empty only when all three are. A push earlier than near's later
 * entries sends them back to the wheel, while that is cheap. */
typedef struct lb__timer_entry {
    int64_t when;
    uint64_t seq;
    void *item;
} lb__timer_entry;

typedef struct lb__entry_heap {
    lb__timer_entry *v;
    size_t n;
    size_t cap;
} lb__entry_heap;

#define LB__WHEEL_SLOT_SHIFT 20 /* a slot spans 2^20 ns, about 1 ms */
#define LB__WHEEL_SLOTS 1024    /* about 1.07 s ahead of the horizon */

typedef struct lb__timer_chunk lb__timer_chunk;

typedef struct lb__timer_slot {
    lb__timer_chunk *head, *tail;
} lb__timer_slot;

typedef struct lb__timer_heap {
    lb__entry_heap near;
    lb__entry_heap far;
    lb__timer_slot *slots; /* LB__WHEEL_SLOTS, made when first needed */
    uint64_t occupied[LB__WHEEL_SLOTS / 64];
    lb__slab chunks;
    int64_t horizon;    /* a slot number: near holds the entries of earlier slots */
    int64_t base;       /* the wheel's first slot */
    int64_t wheel_last; /* no entry in the wheel is of a later slot */
    size_t in_wheel;    /* entries in the wheel's slots */
    size_t near_pushed; /* pushes into near since a refill or a rewind */
    size_t n;           /* entries in all three tiers */
    size_t dead;        /* entries whose item was cancelled */
    uint64_t next_seq;
} lb__timer_heap;

void lb__timer_heap_init(lb__timer_heap *heap);
void lb__timer_heap_destroy(lb__timer_heap *heap);

/* Adds item with deadline when. Returns 0 or -ENOMEM. */
int lb__timer_heap_push(lb__timer_heap *heap, int64_t when, void *item);

/* The earliest entry, or NULL when empty. */
static inline const lb__timer_entry *lb__timer_heap_top(const lb__timer_heap *heap) {
    return heap->near.n ? &heap->near.v[0] : NULL;
}

/* Removes the earliest entry and returns its item (NULL when empty).
 * Never allocates: a push reserves the room its entry may need. */
void *lb__timer_heap_pop(lb__timer_heap *heap);

/* Drops every entry for which is_dead(item) is true, calling release on
 * it, and restores the order. O(n). release must not push. */
void lb__timer_heap_compact(lb__timer_heap *heap, bool (*is_dead)(void *item),
                            void (*release)(void *item));

#endif
