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

void lb__timer_heap_init(lb__timer_heap *heap) {
    *heap = (lb__timer_heap){0};
}

/* Heaps of LB__LARGE_FROM bytes and more live in large blocks: a loop
 * with hundreds of thousands of timers would otherwise fault its heap in
 * page by page. Whether a heap is large follows from its capacity. */
static bool is_large(size_t cap) {
    return cap * sizeof(lb__timer_entry) >= LB__LARGE_FROM;
}

void lb__timer_heap_destroy(lb__timer_heap *heap) {
    if (is_large(heap->cap))
        lb__unmap_large(heap->v, heap->cap * sizeof *heap->v);
    else
        lb__free(heap->v);
    *heap = (lb__timer_heap){0};
}

static int grow(lb__timer_heap *heap) {
    size_t cap = heap->cap ? heap->cap * 2 : 64;
    if (cap > SIZE_MAX / 2 / sizeof(lb__timer_entry))
        return -ENOMEM;
    size_t old_bytes = heap->cap * sizeof *heap->v, bytes = cap * sizeof *heap->v;
    lb__timer_entry *v;
    if (!is_large(cap)) {
        v = lb__realloc(heap->v, bytes);
    } else if (is_large(heap->cap)) {
        v = lb__grow_large(heap->v, old_bytes, bytes);
    } else {
        v = lb__map_large(bytes);
        if (v) {
            if (heap->n)
                memcpy(v, heap->v, heap->n * sizeof *v);
            lb__free(heap->v);
        }
    }
    if (!v)
        return -ENOMEM;
    heap->v = v;
    heap->cap = cap;
    return 0;
}

int lb__timer_heap_push(lb__timer_heap *heap, int64_t when, void *item) {
    if (heap->n == heap->cap && grow(heap) < 0)
        return -ENOMEM;
    heap->v[heap->n] = (lb__timer_entry){.when = when, .seq = heap->next_seq++, .item = item};
    sift_up(heap->v, heap->n);
    heap->n++;
    return 0;
}

void *lb__timer_heap_pop(lb__timer_heap *heap) {
    if (heap->n == 0)
        return NULL;
    void *item = heap->v[0].item;
    heap->n--;
    if (heap->n > 0) {
        heap->v[0] = heap->v[heap->n];
        sift_down(heap->v, heap->n, 0);
    }
    return item;
}

void lb__timer_heap_compact(lb__timer_heap *heap, bool (*is_dead)(void *item),
                            void (*release)(void *item)) {
    size_t kept = 0;
    for (size_t i = 0; i < heap->n; i++) {
        if (is_dead(heap->v[i].item))
            release(heap->v[i].item);
        else
            heap->v[kept++] = heap->v[i];
    }
    heap->n = kept;
    heap->dead = 0;
    /* Floyd's heapify: O(n), from the last node that has children. */
    for (size_t i = kept / ARITY + 1; i-- > 0;)
        if (i < kept)
            sift_down(heap->v, kept, i);
}
