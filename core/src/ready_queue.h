/* SPDX-License-Identifier: MIT */
#ifndef LB_READY_QUEUE_H
#define LB_READY_QUEUE_H

#include "handle.h"

#include <stddef.h>

/* The FIFO of handles ready to run: an intrusive singly linked list, so
 * push and pop touch only the handle and the queue head. */
typedef struct lb__ready_queue {
    lb_handle *head;
    lb_handle *tail;
    size_t count;
} lb__ready_queue;

static inline void lb__ready_push(lb__ready_queue *q, lb_handle *h) {
    h->next = NULL;
    if (q->tail)
        q->tail->next = h;
    else
        q->head = h;
    q->tail = h;
    q->count++;
}

static inline lb_handle *lb__ready_pop(lb__ready_queue *q) {
    lb_handle *h = q->head;
    if (h) {
        q->head = h->next;
        if (!q->head)
            q->tail = NULL;
        q->count--;
    }
    return h;
}

#endif
