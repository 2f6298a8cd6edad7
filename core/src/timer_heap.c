/* SPDX-License-Identifier: MIT */
#include "timer_heap.h"

#include "alloc.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static inline bool entry_less(const lb__timer_entry *a, const lb__timer_entry *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

/* Four children per node: half the depth of a binary heap, and the
 * children of a node side by side in memory, so a large heap (where every
 * level is a cache miss) pops and pushes for less (docs/performance.md,
 * "Figures behind the code"). */
#define ARITY 4

static void sift_up(lb__timer_entry *v, size_t i) {
    lb__timer_entry e = v[i];
    while (i > 0) {
        size_t parent = (i - 1) / ARITY;
        if (!entry_less(&e, &v[parent]))
            break;
        v[i] = v[parent];
        i = parent;
    }
    v[i] = e;
}

static void sift_down(lb__timer_entry *v, size_t n, size_t i) {
    lb__timer_entry e = v[i];
    for (;;) {
        size_t first = ARITY * i + 1;
        if (first >= n)
            break;
        size_t end = first + ARITY < n ? first + ARITY : n;
        size_t child = first;
        for (size_t k = first + 1; k < end; k++)
            if (entry_less(&v[k], &v[child]))
                child = k;
        if (!entry_less(&v[child], &e))
            break;
        v[i] = v[child];
        i = child;
    }
    v[i] = e;
}

/* Heaps of LB__LARGE_FROM bytes and more live in large blocks: a loop
 * with hundreds of thousands of timers would otherwise fault its heap in
 * page by page. Whether a heap is large follows from its capacity. */
static bool is_large(size_t cap) {
    return cap * sizeof(lb__timer_entry) >= LB__LARGE_FROM;
}

static void entry_heap_destroy(lb__entry_heap *h) {
    if (is_large(h->cap))
        lb__unmap_large(h->v, h->cap * sizeof *h->v);
    else
        lb__free(h->v);
    *h = (lb__entry_heap){0};
}

/* Makes room for count entries. */
static int entry_heap_reserve(lb__entry_heap *h, size_t count) {
    if (count <= h->cap)
        return 0;
    if (count > SIZE_MAX / 4 / sizeof(lb__timer_entry))
        return -ENOMEM;
    size_t cap = h->cap ? h->cap : 64;
    while (cap < count)
        cap *= 2;
    size_t old_bytes = h->cap * sizeof *h->v, bytes = cap * sizeof *h->v;
    lb__timer_entry *v;
    if (!is_large(cap)) {
        v = lb__realloc(h->v, bytes);
    } else if (is_large(h->cap)) {
        v = lb__grow_large(h->v, old_bytes, bytes);
    } else {
        v = lb__map_large(bytes);
        if (v) {
            if (h->n)
                memcpy(v, h->v, h->n * sizeof *v);
            lb__free(h->v);
        }
    }
    if (!v)
        return -ENOMEM;
    h->v = v;
    h->cap = cap;
    return 0;
}

/* Adds e; the room was reserved. */
static void entry_heap_add(lb__entry_heap *h, lb__timer_entry e) {
    h->v[h->n] = e;
    sift_up(h->v, h->n);
    h->n++;
}

static lb__timer_entry entry_heap_pop(lb__entry_heap *h) {
    lb__timer_entry top = h->v[0];
    h->n--;
    if (h->n > 0) {
        h->v[0] = h->v[h->n];
        sift_down(h->v, h->n, 0);
    }
    return top;
}

/* Floyd's heapify: O(n), from the last node that has children. */
static void entry_heap_order(lb__entry_heap *h) {
    for (size_t i = h->n / ARITY + 1; i-- > 0;)
        if (i < h->n)
            sift_down(h->v, h->n, i);
}

/* Drops the dead entries, releasing each; the order is restored by the
 * caller. */
static void entry_heap_filter(lb__entry_heap *h, bool (*is_dead)(void *item),
                              void (*release)(void *item)) {
    size_t kept = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (is_dead(h->v[i].item))
            release(h->v[i].item);
        else
            h->v[kept++] = h->v[i];
    }
    h->n = kept;
}

/* A slot's entries, in the order they were pushed: 1 KiB chunks from a
 * slab, so a wheel holding 200,000 timers costs no more memory than a
 * heap of them, and appending touches one cache line. */
#define CHUNK_ENTRIES 42

struct lb__timer_chunk {
    lb__timer_chunk *next;
    size_t count;
    lb__timer_entry e[CHUNK_ENTRIES];
};

#define SLOT_MASK ((size_t)LB__WHEEL_SLOTS - 1)
#define WORDS (LB__WHEEL_SLOTS / 64)

_Static_assert((LB__WHEEL_SLOTS & (LB__WHEEL_SLOTS - 1)) == 0, "slots: a power of two");

static inline int64_t slot_of(int64_t when) {
    /* An arithmetic shift: slot numbers of earlier deadlines are smaller,
     * negative ones included. */
    return when >> LB__WHEEL_SLOT_SHIFT;
}

void lb__timer_heap_init(lb__timer_heap *heap) {
    *heap = (lb__timer_heap){0};
    lb__slab_init(&heap->chunks, sizeof(lb__timer_chunk), 16);
}

void lb__timer_heap_destroy(lb__timer_heap *heap) {
    entry_heap_destroy(&heap->near);
    entry_heap_destroy(&heap->far);
    lb__free(heap->slots);
    lb__slab_destroy(&heap->chunks);
    lb__timer_heap_init(heap);
}

static bool in_wheel_window(const lb__timer_heap *heap, int64_t slot) {
    return slot >= heap->base && (uint64_t)(slot - heap->base) < LB__WHEEL_SLOTS;
}

/* Appends e to its slot; the slot lies in the wheel's window. */
static int wheel_add(lb__timer_heap *heap, int64_t slot, lb__timer_entry e) {
    if (!heap->slots) {
        heap->slots = lb__calloc(LB__WHEEL_SLOTS, sizeof *heap->slots);
        if (!heap->slots)
            return -ENOMEM;
    }
    size_t pos = (size_t)slot & SLOT_MASK;
    lb__timer_slot *s = &heap->slots[pos];
    lb__timer_chunk *c = s->tail;
    if (!c || c->count == CHUNK_ENTRIES) {
        lb__timer_chunk *fresh = lb__slab_alloc(&heap->chunks);
        if (!fresh)
            return -ENOMEM;
        fresh->next = NULL;
        fresh->count = 0;
        if (c)
            c->next = fresh;
        else
            s->head = fresh;
        s->tail = c = fresh;
        heap->occupied[pos / 64] |= (uint64_t)1 << (pos % 64);
    }
    c->e[c->count++] = e;
    if (heap->in_wheel++ == 0 || slot > heap->wheel_last)
        heap->wheel_last = slot;
    return 0;
}

/* A push earlier than near's later entries: those go back to the wheel,
 * so that near keeps only the earliest slot. Without this, the first
 * timer of a loop, if due in a second, would keep every later one due
 * before it in near, one large heap again. The entries move one by one,
 * so only while that is cheap: near holds at most REWIND_MAX entries
 * (a loop that arms a short timer before a slot of them moves them at
 * each arming), or at most twice what pushes put into it since it was
 * last filled or rewound (those pushes paid for the move). A slot that
 * came large from the wheel stays in near until it is drained. An entry
 * the wheel cannot take (a slot before its base, or no memory for a
 * chunk) goes to far. Returns false, having moved nothing, if far has no
 * room for all of them. */
#define REWIND_MAX 64

static bool rewind_pays(const lb__timer_heap *heap) {
    return heap->near.n <= REWIND_MAX || heap->near.n / 2 <= heap->near_pushed;
}

static bool rewind_near(lb__timer_heap *heap, int64_t slot) {
    if (entry_heap_reserve(&heap->far, heap->far.n + heap->near.n) < 0)
        return false;
    heap->horizon = slot + 1;
    /* The wheel's window moves back with the horizon, as far as the
     * entries it holds allow. */
    int64_t lowest = heap->in_wheel ? heap->wheel_last - (LB__WHEEL_SLOTS - 1) : heap->horizon;
    heap->base = lowest > heap->horizon ? lowest : heap->horizon;
    lb__entry_heap *near = &heap->near;
    size_t kept = 0;
    for (size_t i = 0; i < near->n; i++) {
        lb__timer_entry e = near->v[i];
        int64_t s = slot_of(e.when);
        if (s <= slot)
            near->v[kept++] = e;
        else if (!in_wheel_window(heap, s) || wheel_add(heap, s, e) < 0)
            entry_heap_add(&heap->far, e);
    }
    near->n = kept;
    heap->near_pushed = 0;
    entry_heap_order(near);
    return true;
}

int lb__timer_heap_push(lb__timer_heap *heap, int64_t when, void *item) {
    /* Near has room for every entry, so the pop that moves a slot into
     * it never allocates. */
    if (entry_heap_reserve(&heap->near, heap->n + 1) < 0)
        return -ENOMEM;
    lb__timer_entry e = {.when = when, .seq = heap->next_seq, .item = item};
    int64_t slot = slot_of(when);
    if (heap->n == 0) {
        /* Empty: near begins with this entry's slot. */
        heap->horizon = heap->base = slot + 1;
        heap->near_pushed = 0;
    }
    if (slot < heap->horizon) {
        if (slot < heap->horizon - 1 && rewind_pays(heap))
            (void)rewind_near(heap, slot); /* refused: near just holds more */
        entry_heap_add(&heap->near, e);
        heap->near_pushed++;
    } else if (in_wheel_window(heap, slot)) {
        if (wheel_add(heap, slot, e) < 0)
            return -ENOMEM;
    } else {
        if (entry_heap_reserve(&heap->far, heap->far.n + 1) < 0)
            return -ENOMEM;
        entry_heap_add(&heap->far, e);
    }
    heap->next_seq++;
    heap->n++;
    return 0;
}

/* The first occupied position at or after start, going round: the
 * wheel's entries lie in the LB__WHEEL_SLOTS slots from its base on, so
 * the first found from the base is the earliest slot. The wheel is not
 * empty. */
static size_t first_occupied(const uint64_t *occupied, size_t start) {
    size_t w = start / 64;
    uint64_t bits = occupied[w] & (~(uint64_t)0 << (start % 64));
    for (size_t i = 0; i <= WORDS; i++) {
        if (bits)
            return w * 64 + (size_t)__builtin_ctzll(bits);
        w = (w + 1) % WORDS;
        bits = occupied[w];
    }
    return start; /* not reached while in_wheel > 0 */
}

/* Takes a slot's entries off the wheel into near (not yet ordered). */
static void take_slot(lb__timer_heap *heap, size_t pos) {
    lb__timer_slot *s = &heap->slots[pos];
    lb__timer_chunk *c = s->head;
    while (c) {
        lb__timer_chunk *next = c->next;
        memcpy(&heap->near.v[heap->near.n], c->e, c->count * sizeof c->e[0]);
        heap->near.n += c->count;
        /* The items are read as they pop (a timer's flags): asked for
         * now, their cache misses overlap instead of coming one a pop.
         * A backlog of due timers drained about 10% faster. */
        for (size_t i = 0; i < c->count; i++)
            __builtin_prefetch(c->e[i].item);
        heap->in_wheel -= c->count;
        lb__slab_free(&heap->chunks, c);
        c = next;
    }
    s->head = s->tail = NULL;
    heap->occupied[pos / 64] &= ~((uint64_t)1 << (pos % 64));
}

/* Near ran empty: the earliest slot of the wheel or of far moves into
 * it, and the horizon moves past that slot. */
static void refill(lb__timer_heap *heap) {
    int64_t next = INT64_MAX;
    bool from_wheel = false;
    if (heap->in_wheel) {
        size_t start = (size_t)heap->base & SLOT_MASK;
        size_t pos = first_occupied(heap->occupied, start);
        next = heap->base + (int64_t)((pos - start) & SLOT_MASK);
        from_wheel = true;
    }
    if (heap->far.n && slot_of(heap->far.v[0].when) < next) {
        next = slot_of(heap->far.v[0].when);
        from_wheel = false;
    }
    heap->horizon = next + 1;
    heap->near_pushed = 0;
    /* Every entry left in the wheel is due at the horizon or later. */
    if (heap->base < heap->horizon)
        heap->base = heap->horizon;
    if (from_wheel)
        take_slot(heap, (size_t)next & SLOT_MASK);
    while (heap->far.n && slot_of(heap->far.v[0].when) < heap->horizon)
        heap->near.v[heap->near.n++] = entry_heap_pop(&heap->far);
    entry_heap_order(&heap->near);
}

void *lb__timer_heap_pop(lb__timer_heap *heap) {
    if (heap->near.n == 0)
        return NULL;
    void *item = entry_heap_pop(&heap->near).item;
    heap->n--;
    if (heap->near.n == 0 && heap->n > 0)
        refill(heap);
    return item;
}

/* A slot's live entries, kept in order, packed towards its head (the
 * writing never overtakes the reading: every chunk but the last is
 * full); the chunks left empty go back. */
static void filter_slot(lb__timer_heap *heap, size_t pos, bool (*is_dead)(void *item),
                        void (*release)(void *item)) {
    lb__timer_slot *s = &heap->slots[pos];
    lb__timer_chunk *out = s->head;
    size_t written = 0;
    for (lb__timer_chunk *in = s->head; in; in = in->next) {
        size_t count = in->count;
        for (size_t i = 0; i < count; i++) {
            lb__timer_entry e = in->e[i];
            if (is_dead(e.item)) {
                release(e.item);
                heap->in_wheel--;
                continue;
            }
            if (written == CHUNK_ENTRIES) {
                out->count = CHUNK_ENTRIES;
                out = out->next;
                written = 0;
            }
            out->e[written++] = e;
        }
    }
    lb__timer_chunk *spare;
    if (written == 0) {
        spare = s->head; /* the whole chain, still linked */
        s->head = s->tail = NULL;
        heap->occupied[pos / 64] &= ~((uint64_t)1 << (pos % 64));
    } else {
        spare = out->next;
        out->count = written;
        out->next = NULL;
        s->tail = out;
    }
    while (spare) {
        lb__timer_chunk *next = spare->next;
        lb__slab_free(&heap->chunks, spare);
        spare = next;
    }
}

void lb__timer_heap_compact(lb__timer_heap *heap, bool (*is_dead)(void *item),
                            void (*release)(void *item)) {
    entry_heap_filter(&heap->near, is_dead, release);
    entry_heap_filter(&heap->far, is_dead, release);
    for (size_t w = 0; w < WORDS && heap->in_wheel; w++) {
        uint64_t bits = heap->occupied[w];
        while (bits) {
            size_t pos = w * 64 + (size_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            filter_slot(heap, pos, is_dead, release);
        }
    }
    entry_heap_order(&heap->near);
    entry_heap_order(&heap->far);
    heap->n = heap->near.n + heap->far.n + heap->in_wheel;
    heap->dead = 0;
    if (heap->near.n == 0 && heap->n > 0)
        refill(heap);
}
