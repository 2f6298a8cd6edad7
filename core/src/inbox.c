/* SPDX-License-Identifier: MIT */
#include "inbox.h"

#include "alloc.h"

#include <stdlib.h>

int lb__inbox_init(lb__inbox *inbox) {
    *inbox = (lb__inbox){0};
    int r = pthread_mutex_init(&inbox->lock, NULL);
    return r ? -r : 0;
}

int lb__inbox_post(lb__inbox *inbox, lb_callback cb, void *data, lb_callback drop) {
    pthread_mutex_lock(&inbox->lock);
    if (inbox->closed) {
        pthread_mutex_unlock(&inbox->lock);
        return -EBADF;
    }
    if (inbox->in_n == inbox->in_cap) {
        size_t cap = inbox->in_cap ? inbox->in_cap * 2 : 256;
        lb__post *v = lb__realloc(inbox->in, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&inbox->lock);
            return -ENOMEM;
        }
        inbox->in = v;
        inbox->in_cap = cap;
    }
    inbox->in[inbox->in_n++] = (lb__post){cb, data, drop};
    bool was_empty = inbox->in_n == 1;
    /* seq_cst pairs with the loop arming its wakeup before it sleeps:
     * either the loop sees this flag, or the poster sees the loop armed. */
    if (was_empty)
        atomic_store(&inbox->pending, true);
    pthread_mutex_unlock(&inbox->lock);
    return was_empty;
}

/* The slow half of lb__inbox_take(): the batch is spent and something
 * was posted. */
void lb__inbox_swap(lb__inbox *inbox) {
    pthread_mutex_lock(&inbox->lock);
    lb__post *batch = inbox->in;
    size_t n = inbox->in_n, cap = inbox->in_cap;
    inbox->in = inbox->out;
    inbox->in_cap = inbox->out_cap;
    inbox->in_n = 0;
    atomic_store_explicit(&inbox->pending, false, memory_order_relaxed);
    pthread_mutex_unlock(&inbox->lock);
    inbox->out = batch;
    inbox->out_cap = cap;
    inbox->out_n = n;
    inbox->out_pos = 0;
}

static void drop_all(lb__post *v, size_t from, size_t to, lb_loop *loop) {
    for (size_t i = from; i < to; i++)
        if (v[i].drop)
            v[i].drop(loop, v[i].data);
}

void lb__inbox_close(lb__inbox *inbox, lb_loop *loop) {
    pthread_mutex_lock(&inbox->lock);
    inbox->closed = true;
    lb__post *in = inbox->in;
    size_t n = inbox->in_n;
    inbox->in = NULL;
    inbox->in_n = inbox->in_cap = 0;
    atomic_store_explicit(&inbox->pending, false, memory_order_relaxed);
    pthread_mutex_unlock(&inbox->lock);

    drop_all(inbox->out, inbox->out_pos, inbox->out_n, loop);
    drop_all(in, 0, n, loop);
    lb__free(in);
    lb__free(inbox->out);
    inbox->out = NULL;
    inbox->out_n = inbox->out_pos = inbox->out_cap = 0;
}

void lb__inbox_destroy(lb__inbox *inbox) {
    lb__free(inbox->in);
    lb__free(inbox->out);
    pthread_mutex_destroy(&inbox->lock);
}
