/* SPDX-License-Identifier: MIT */
#ifndef LB_INBOX_H
#define LB_INBOX_H

#include <loopbridge/loop.h>

#include <pthread.h>
#include <stdatomic.h>

/* Callbacks posted from other threads. Producers append to one vector
 * under a mutex (one uncontended lock per post, no allocation once the
 * vector has grown); the loop swaps it with a second vector once per
 * iteration and runs the batch without holding the lock. The `pending`
 * flag lets the loop see "nothing posted" with one relaxed load. */
typedef struct lb__post {
    lb_callback cb;
    void *data;
    /* Called instead of cb when the loop closes before running it (NULL:
     * nothing to release). */
    lb_callback drop;
} lb__post;

typedef struct lb__inbox {
    pthread_mutex_t lock;
    lb__post *in;
    size_t in_n, in_cap;
    bool closed;
    atomic_bool pending;

    /* The batch the loop is running; owned by the loop thread. */
    lb__post *out;
    size_t out_n, out_pos, out_cap;
} lb__inbox;

int lb__inbox_init(lb__inbox *inbox);

/* Appends a post. Returns 1 if the inbox was empty (the caller may need
 * to wake the loop), 0 if not, -EBADF if closed, -ENOMEM. Any thread. */
int lb__inbox_post(lb__inbox *inbox, lb_callback cb, void *data, lb_callback drop);

/* True if the loop has posts to run (in its batch or newly posted). */
static inline bool lb__inbox_has_work(const lb__inbox *inbox) {
    return inbox->out_pos < inbox->out_n ||
           atomic_load_explicit(&inbox->pending, memory_order_relaxed);
}

/* The same question asked right after arming the wakeup: a full fence
 * orders it against the posters' check of the armed flag. */
static inline bool lb__inbox_has_work_fenced(const lb__inbox *inbox) {
    return inbox->out_pos < inbox->out_n || atomic_load(&inbox->pending);
}

void lb__inbox_swap(lb__inbox *inbox);

/* Moves newly posted callbacks into the loop's batch when the batch is
 * exhausted. Loop thread. */
static inline void lb__inbox_take(lb__inbox *inbox) {
    if (inbox->out_pos < inbox->out_n ||
        !atomic_load_explicit(&inbox->pending, memory_order_relaxed))
        return;
    lb__inbox_swap(inbox);
}

/* Marks the inbox closed (later posts get -EBADF) and drops every post
 * not run yet, calling its drop function. Loop thread. */
void lb__inbox_close(lb__inbox *inbox, lb_loop *loop);

void lb__inbox_destroy(lb__inbox *inbox);

#endif
