/* SPDX-License-Identifier: MIT */
#ifndef LB_INBOX_H
#define LB_INBOX_H

#include <loopbridge/loop.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Callbacks posted from other threads (lb_loop_call_soon_threadsafe).
 *
 * Every posting thread gets a lane of its own: a single-producer queue of
 * segments that only that thread writes and only the loop reads. A post
 * writes one entry and publishes it with one atomic add, which is also the
 * full barrier the wakeup check needs (see lb__loop_wake): no lock, no
 * line shared with other producers, and the loop reads a whole batch per
 * cache line. Each thread finds its lane in a thread-local list keyed by
 * the inbox's unique id, so a loop freed and another made at the same
 * address are never confused.
 *
 * A lane is owned jointly by the loop and by its thread (a reference
 * each): when the thread exits, the loop frees the lane once it is
 * drained; when the loop is freed first, the thread frees it the next
 * time it looks for a lane it has not got, or when it exits.
 *
 * Close: the inbox is marked closed and every post published so far is
 * dropped through its drop function, under the inbox's lock. A post racing
 * the close either is seen and dropped by it (and its poster gets 0), or
 * is withdrawn by its poster (which gets -EBADF): see withdraw_if_unseen()
 * in inbox.c. Nothing accepted outlives the close. */

typedef struct lb__post {
    lb_callback cb;
    void *data;
    /* Called instead of cb when the loop closes before running it (NULL:
     * nothing to release). */
    lb_callback drop;
} lb__post;

#define LB__LANE_SEGMENT_POSTS 512

typedef struct lb__lane_segment {
    _Atomic(struct lb__lane_segment *) next;
    lb__post posts[LB__LANE_SEGMENT_POSTS];
} lb__lane_segment;

/* The three groups of fields are 64 bytes apart, so the producer's and
 * the loop's writes never share a cache line. */
/* Drained segments the loop hands back to the producer, so a flood
 * recycles a few segments instead of touching fresh memory (the loop's
 * free() would return them to its own thread's arena, never to the
 * producer's malloc()). */
#define LB__LANE_SPARES 8

typedef struct lb__lane {
    /* The producer's side. */
    atomic_uint_fast64_t published; /* posts published, in all */
    lb__lane_segment *tail;
    unsigned tail_pos;
    atomic_uint spares_taken;       /* spares the producer took, in all */
    char pad0[64];
    /* The loop's side. */
    uint64_t consumed;  /* posts taken, in all */
    uint64_t batch_end; /* what this pass of the loop takes, at most */
    lb__lane_segment *head;
    unsigned head_pos;
    atomic_uint spares_given;       /* spares the loop gave, in all */
    lb__lane_segment *spares[LB__LANE_SPARES];
    char pad1[64];
    /* Shared, rarely written. */
    atomic_int refs;               /* the loop's and the thread's */
    _Atomic(struct lb__lane *) next; /* the inbox's list, oldest first */
} lb__lane;

typedef struct lb__inbox {
    _Atomic(lb__lane *) lanes;   /* oldest first; appended under lock */
    lb__lane *lanes_tail;        /* under lock */
    pthread_mutex_t lock;        /* lane registration, reaping, close */
    atomic_bool closed;
    uint64_t id;                 /* unique for the life of the process */
    unsigned passes;             /* loop thread: passes since the last reap */
    lb__lane *cursor;            /* loop thread: the lane the pass is at */
} lb__inbox;

int lb__inbox_init(lb__inbox *inbox);

/* Publishes a post on the calling thread's lane. The publication is a
 * sequentially consistent read-modify-write: anything the caller reads
 * after it (the loop's "armed" flag) is ordered after it.
 * Returns 0, -EBADF if closed, -ENOMEM. Any thread. */
int lb__inbox_post(lb__inbox *inbox, lb_callback cb, void *data, lb_callback drop);

/* True once some thread posted (a lane exists; it may be drained). */
static inline bool lb__inbox_has_lanes(const lb__inbox *inbox) {
    return atomic_load_explicit(&inbox->lanes, memory_order_acquire) != NULL;
}

bool lb__inbox_lanes_pending(const lb__inbox *inbox);

/* True if a lane has posts the loop has not taken. The loop reads each
 * lane's published count: call it right after arming the wakeup and the
 * sequentially consistent loads pair with the posters' publications. */
static inline bool lb__inbox_has_work(const lb__inbox *inbox) {
    return lb__inbox_has_lanes(inbox) && lb__inbox_lanes_pending(inbox);
}

/* Starts a pass: what each lane has published now is what the pass
 * takes, so posts that keep coming wait for the next iteration instead of
 * holding this one. Every 64 passes, frees the lanes whose thread let go
 * of them once drained. Loop thread. */
void lb__inbox_begin(lb__inbox *inbox);

static inline lb__lane *lb__lane_after(const lb__lane *lane) {
    return atomic_load_explicit(&lane->next, memory_order_acquire);
}

void lb__lane_next_segment(lb__lane *lane);

/* Takes the next published post of a lane; the caller checked there is
 * one. */
static inline lb__post lb__lane_pop(lb__lane *lane) {
    if (__builtin_expect(lane->head_pos == LB__LANE_SEGMENT_POSTS, 0))
        lb__lane_next_segment(lane);
    lane->consumed++;
    return lane->head->posts[lane->head_pos++];
}

/* Takes the pass's next post: lanes oldest first (a thread whose lane was
 * replaced keeps its order), each lane in its order. Returns false when
 * the pass is done. Loop thread. */
static inline bool lb__inbox_next(lb__inbox *inbox, lb__post *post) {
    for (lb__lane *lane = inbox->cursor; lane; lane = inbox->cursor = lb__lane_after(lane)) {
        if (lane->consumed < lane->batch_end) {
            *post = lb__lane_pop(lane);
            return true;
        }
    }
    return false;
}

/* Marks the inbox closed (later posts get -EBADF) and drops every post not
 * run yet, calling its drop function. Loop thread. */
void lb__inbox_close(lb__inbox *inbox, lb_loop *loop);

/* Releases the lanes (and, defensively, drops what they still hold).
 * When the loop is freed. */
void lb__inbox_destroy(lb__inbox *inbox, lb_loop *loop);

#endif
