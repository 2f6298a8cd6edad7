/* SPDX-License-Identifier: MIT */
/* The ready queue's slow paths: a new chunk at the tail, the next chunk
 * at the head, and the memory a burst gives back. The fast paths are
 * inline in ready_queue.h. */
#include "ready_queue.h"

#include "alloc.h"

#include <assert.h>
#include <sys/uio.h>

/* Chunks are whole pages from the system (lb__map_pages), so that the
 * pages of an emptied chunk can be given back. */
_Static_assert(sizeof(lb__ready_chunk) % 4096 == 0, "a chunk is whole pages");

/* The most recently retired chunk, off the list. */
static lb__ready_chunk *retired_pop(lb__ready_queue *q) {
    lb__ready_chunk *c = q->retired;
    q->retired = c->next;
    q->nretired--;
    return c;
}

static lb__ready_chunk *chunk_take(lb__ready_queue *q) {
    lb__ready_chunk *c;
    if (q->spare) {
        c = q->spare;
        q->spare = c->next;
        q->nspare--;
    } else if (q->retired) {
        c = retired_pop(q); /* its pages still in memory */
    } else if (q->ncold > 0) {
        c = q->cold[--q->ncold]; /* its pages come back zero, on first touch */
    } else {
        c = lb__map_pages(sizeof *c);
        if (!c)
            return NULL;
        q->nchunks++;
    }
    c->next = NULL;
    return c;
}

static void chunk_give(lb__ready_queue *q, lb__ready_chunk *c) {
    if (q->nspare < LB__READY_SPARE_CHUNKS) {
        c->next = q->spare;
        q->spare = c;
        q->nspare++;
        return;
    }
    c->next = q->retired;
    q->retired = c;
    q->nretired++;
}

/* The chunks keep their mappings, noted as cold; without room to note
 * them, they are unmapped instead. */
bool lb__ready_give_back(lb__ready_queue *q) {
    size_t n = q->nretired < LB__READY_RELEASE_BATCH ? q->nretired : LB__READY_RELEASE_BATCH;
    if (n == 0)
        return false;
    if (q->ncold + n > q->cold_cap) {
        size_t cap = q->cold_cap ? 2 * q->cold_cap : 64;
        while (cap < q->ncold + n)
            cap *= 2;
        lb__ready_chunk **cold = lb__realloc(q->cold, cap * sizeof *cold);
        if (!cold) {
            for (size_t i = 0; i < n; i++) {
                lb__unmap_pages(retired_pop(q), sizeof(lb__ready_chunk));
                q->nchunks--;
            }
            return q->nretired > 0;
        }
        q->cold = cold;
        q->cold_cap = cap;
    }
    struct iovec v[LB__READY_RELEASE_BATCH];
    for (size_t i = 0; i < n; i++) {
        lb__ready_chunk *c = retired_pop(q);
        v[i] = (struct iovec){c, sizeof *c};
        q->cold[q->ncold++] = c;
    }
    lb__release_pages(v, n);
    return q->nretired > 0;
}

bool lb__ready_grow(lb__ready_queue *q) {
    if (q->over_head)
        return false;
    if (q->tail != q->tail_end)
        return true;
    lb__ready_chunk *c = chunk_take(q);
    if (!c)
        return false;
    if (q->tail_chunk) {
        q->tail_chunk->next = c;
    } else {
        q->head_chunk = c;
        q->head = c->e;
        q->head_end = c->e + LB__READY_CHUNK_ENTRIES;
    }
    q->tail_chunk = c;
    q->tail = c->e;
    q->tail_end = c->e + LB__READY_CHUNK_ENTRIES;
    return true;
}

void lb__ready_next_chunk(lb__ready_queue *q) {
    lb__ready_chunk *old = q->head_chunk;
    assert(old->next);
    q->head_chunk = old->next;
    q->head = q->head_chunk->e;
    q->head_end = q->head_chunk->e + LB__READY_CHUNK_ENTRIES;
    chunk_give(q, old);
}

void lb__ready_push_overflow(lb__ready_queue *q, lb_handle *h) {
    h->next = NULL;
    if (q->over_tail)
        q->over_tail->next = h;
    else
        q->over_head = h;
    q->over_tail = h;
    q->over_count++;
    q->count++;
}

/* Called when every chunk entry ran: the overflow's turn. */
bool lb__ready_pop_overflow(lb__ready_queue *q, lb__ready_entry *e) {
    lb_handle *h = q->over_head;
    if (!h)
        return false;
    q->over_head = h->next;
    if (!q->over_head)
        q->over_tail = NULL;
    q->over_count--;
    q->count--;
    if (q->count == 0 && q->tail_chunk)
        q->head = q->tail = q->tail_chunk->e;
    *e = (lb__ready_entry){lb__run_handle, h};
    return true;
}

static void unmap_chain(lb__ready_chunk *c) {
    while (c) {
        lb__ready_chunk *next = c->next;
        lb__unmap_pages(c, sizeof *c);
        c = next;
    }
}

void lb__ready_destroy(lb__ready_queue *q) {
    assert(q->count == 0);
    unmap_chain(q->head_chunk);
    unmap_chain(q->spare);
    unmap_chain(q->retired);
    for (size_t i = 0; i < q->ncold; i++)
        lb__unmap_pages(q->cold[i], sizeof(lb__ready_chunk));
    lb__free(q->cold);
    *q = (lb__ready_queue){0};
}
