/* SPDX-License-Identifier: MIT */
/* The ready queue's slow paths: a new chunk at the tail, the next chunk
 * at the head. The fast paths are inline in ready_queue.h. */
#include "ready_queue.h"

#include "alloc.h"

#include <assert.h>

static lb__ready_chunk *chunk_take(lb__ready_queue *q) {
    lb__ready_chunk *c = q->spare;
    if (c) {
        q->spare = c->next;
        q->nspare--;
    } else {
        c = lb__malloc(sizeof *c);
        if (!c)
            return NULL;
    }
    c->next = NULL;
    return c;
}

static void chunk_give(lb__ready_queue *q, lb__ready_chunk *c) {
    if (q->nspare < LB__READY_SPARE_CHUNKS) {
        c->next = q->spare;
        q->spare = c;
        q->nspare++;
    } else {
        lb__free(c);
    }
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

void lb__ready_destroy(lb__ready_queue *q) {
    assert(q->count == 0);
    lb__ready_chunk *c = q->head_chunk;
    while (c) {
        lb__ready_chunk *next = c->next;
        lb__free(c);
        c = next;
    }
    c = q->spare;
    while (c) {
        lb__ready_chunk *next = c->next;
        lb__free(c);
        c = next;
    }
    *q = (lb__ready_queue){0};
}
