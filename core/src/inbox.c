/* SPDX-License-Identifier: MIT */
/* The inbox: one single-producer lane per posting thread (see inbox.h). */
#include "inbox.h"

#include "alloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Lanes                                                               */
/* ------------------------------------------------------------------ */

static lb__lane *lane_new(int refs) {
    lb__lane *lane = lb__calloc(1, sizeof *lane);
    if (!lane)
        return NULL;
    lb__lane_segment *seg = lb__malloc(sizeof *seg);
    if (!seg) {
        lb__free(lane);
        return NULL;
    }
    atomic_init(&seg->next, NULL);
    lane->tail = lane->head = seg;
    atomic_init(&lane->refs, refs);
    return lane;
}

/* The spares: a single-producer, single-consumer ring, the loop giving
 * and the posting thread taking. */
static void give_spare(lb__lane *lane, lb__lane_segment *seg) {
    unsigned given = atomic_load_explicit(&lane->spares_given, memory_order_relaxed);
    unsigned taken = atomic_load_explicit(&lane->spares_taken, memory_order_acquire);
    if (given - taken == LB__LANE_SPARES) {
        lb__free(seg);
        return;
    }
    lane->spares[given % LB__LANE_SPARES] = seg;
    atomic_store_explicit(&lane->spares_given, given + 1, memory_order_release);
}

static lb__lane_segment *take_spare(lb__lane *lane) {
    unsigned taken = atomic_load_explicit(&lane->spares_taken, memory_order_relaxed);
    if (taken == atomic_load_explicit(&lane->spares_given, memory_order_acquire))
        return NULL;
    lb__lane_segment *seg = lane->spares[taken % LB__LANE_SPARES];
    atomic_store_explicit(&lane->spares_taken, taken + 1, memory_order_release);
    return seg;
}

/* Frees a lane and its segments; nobody posts to it or reads it any more. */
static void lane_free(lb__lane *lane) {
    lb__lane_segment *seg = lane->head;
    while (seg) {
        lb__lane_segment *next = atomic_load_explicit(&seg->next, memory_order_relaxed);
        lb__free(seg);
        seg = next;
    }
    while ((seg = take_spare(lane)))
        lb__free(seg);
    lb__free(lane);
}

/* Drops one of the lane's two references; the last frees it. */
static void lane_unref(lb__lane *lane) {
    if (atomic_fetch_sub_explicit(&lane->refs, 1, memory_order_acq_rel) == 1)
        lane_free(lane);
}

void lb__lane_next_segment(lb__lane *lane) {
    /* The producer linked the next segment before it published the first
     * post in it. */
    lb__lane_segment *done = lane->head;
    lane->head = atomic_load_explicit(&done->next, memory_order_acquire);
    lane->head_pos = 0;
    give_spare(lane, done);
}

static inline lb__post lane_pop(lb__lane *lane) {
    return lb__lane_pop(lane);
}

static inline bool lane_pending(const lb__lane *lane) {
    return atomic_load(&lane->published) != lane->consumed;
}

static void lane_drop_all(lb__lane *lane, lb_loop *loop) {
    uint64_t end = atomic_load_explicit(&lane->published, memory_order_acquire);
    while (lane->consumed < end) {
        lb__post p = lane_pop(lane);
        if (p.drop)
            p.drop(loop, p.data);
    }
}

/* ------------------------------------------------------------------ */
/* The posting thread's lanes                                          */
/* ------------------------------------------------------------------ */

typedef struct lane_ref {
    const lb__inbox *inbox;
    uint64_t id; /* the inbox's id: an inbox at a reused address differs */
    lb__lane *lane;
} lane_ref;

/* The lanes of the calling thread, one per inbox it posted to. Entries of
 * inboxes that were destroyed meanwhile (their lane's other reference is
 * gone) are swept when the thread meets an inbox it has no lane for. */
static _Thread_local lane_ref *lanes_of_thread;
static _Thread_local size_t nlanes_of_thread, lanes_of_thread_cap;
static _Thread_local bool thread_registered;
/* The thread let go of its lanes (it is exiting): a post made later, by
 * another thread-exit destructor, gets a lane of its own that the thread
 * never holds. */
static _Thread_local bool thread_released;

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static bool have_exit_key;

/* A thread that posted lets go of its lanes when it exits. */
static void release_thread_lanes(void *unused) {
    (void)unused;
    for (size_t i = 0; i < nlanes_of_thread; i++)
        lane_unref(lanes_of_thread[i].lane);
    lb__free(lanes_of_thread);
    lanes_of_thread = NULL;
    nlanes_of_thread = lanes_of_thread_cap = 0;
    thread_released = true;
}

static void make_exit_key(void) {
    have_exit_key = pthread_key_create(&exit_key, release_thread_lanes) == 0;
}

static void sweep_dead_lanes(void) {
    size_t kept = 0;
    for (size_t i = 0; i < nlanes_of_thread; i++) {
        lb__lane *lane = lanes_of_thread[i].lane;
        /* acquire: the inbox's last use of the lane came before. */
        if (atomic_load_explicit(&lane->refs, memory_order_acquire) == 1)
            lane_free(lane);
        else
            lanes_of_thread[kept++] = lanes_of_thread[i];
    }
    nlanes_of_thread = kept;
}

static atomic_uint_fast64_t next_inbox_id = 1;

int lb__inbox_init(lb__inbox *inbox) {
    memset(inbox, 0, sizeof *inbox);
    int r = pthread_mutex_init(&inbox->lock, NULL);
    if (r)
        return -r;
    inbox->id = atomic_fetch_add(&next_inbox_id, 1);
    return 0;
}

/* Makes a lane with two references, the inbox list's and the caller's,
 * and appends it to the inbox's list. Returns NULL with *error set when
 * the inbox is closed or memory short. */
static lb__lane *lane_register(lb__inbox *inbox, int *error) {
    lb__lane *lane = lane_new(2);
    if (!lane) {
        *error = -ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&inbox->lock);
    if (atomic_load(&inbox->closed)) {
        pthread_mutex_unlock(&inbox->lock);
        lane_free(lane);
        *error = -EBADF;
        return NULL;
    }
    /* Appended: the loop reads the list without the lock. */
    if (inbox->lanes_tail)
        atomic_store_explicit(&inbox->lanes_tail->next, lane, memory_order_release);
    else
        atomic_store_explicit(&inbox->lanes, lane, memory_order_release);
    inbox->lanes_tail = lane;
    pthread_mutex_unlock(&inbox->lock);
    return lane;
}

/* What lane_of() says when the thread let go of its lanes already. */
#define LANE_AFTER_EXIT 1

/* The calling thread's lane of inbox, made and registered on first use.
 * Returns NULL with *error set when the inbox is closed or memory short,
 * or to LANE_AFTER_EXIT. */
static lb__lane *lane_of(lb__inbox *inbox, int *error) {
    for (size_t i = 0; i < nlanes_of_thread; i++)
        if (lanes_of_thread[i].inbox == inbox && lanes_of_thread[i].id == inbox->id)
            return lanes_of_thread[i].lane;
    if (__builtin_expect(thread_released, 0)) {
        *error = LANE_AFTER_EXIT;
        return NULL;
    }

    if (!thread_registered) {
        pthread_once(&exit_key_once, make_exit_key);
        if (have_exit_key && pthread_setspecific(exit_key, &thread_registered) == 0)
            thread_registered = true;
    }
    sweep_dead_lanes();
    if (nlanes_of_thread == lanes_of_thread_cap) {
        size_t cap = lanes_of_thread_cap ? 2 * lanes_of_thread_cap : 4;
        lane_ref *v = lb__realloc(lanes_of_thread, cap * sizeof *v);
        if (!v) {
            *error = -ENOMEM;
            return NULL;
        }
        lanes_of_thread = v;
        lanes_of_thread_cap = cap;
    }
    lb__lane *lane = lane_register(inbox, error);
    if (!lane)
        return NULL;
    lanes_of_thread[nlanes_of_thread++] = (lane_ref){inbox, inbox->id, lane};
    return lane;
}

/* The inbox closed while this post was being published. The close
 * drains every lane under the lock after it marks the inbox closed, and a
 * post that read "not closed" after its publication is certain to be seen
 * by it. This one read "closed", so the close may or may not have seen
 * it: under the lock, whatever of the lane is still unseen is the post
 * just made (the earlier ones were seen), and it is withdrawn. Returns 0
 * if the close dropped it already (through its drop function), -EBADF if
 * it was withdrawn and never accepted. */
static int withdraw_if_unseen(lb__inbox *inbox, lb__lane *lane) {
    int r = 0;
    pthread_mutex_lock(&inbox->lock);
    uint64_t end = atomic_load_explicit(&lane->published, memory_order_relaxed);
    if (lane->consumed < end) {
        lane_pop(lane);
        r = -EBADF;
    }
    pthread_mutex_unlock(&inbox->lock);
    return r;
}

/* Publishes a post on lane, the calling thread's. */
static inline int publish(lb__inbox *inbox, lb__lane *lane, lb_callback cb, void *data,
                          lb_callback drop) {
    if (__builtin_expect(lane->tail_pos == LB__LANE_SEGMENT_POSTS, 0)) {
        lb__lane_segment *seg = take_spare(lane);
        if (!seg && !(seg = lb__malloc(sizeof *seg)))
            return -ENOMEM;
        atomic_init(&seg->next, NULL);
        atomic_store_explicit(&lane->tail->next, seg, memory_order_release);
        lane->tail = seg;
        lane->tail_pos = 0;
    }
    lane->tail->posts[lane->tail_pos++] = (lb__post){cb, data, drop};
    /* One atomic add publishes the post and orders it before the reads
     * that follow: "closed" here, the loop's wakeup flag in the caller. */
    atomic_fetch_add(&lane->published, 1);
    if (__builtin_expect(atomic_load(&inbox->closed), 0))
        return withdraw_if_unseen(inbox, lane);
    return 0;
}

/* A post made after the thread let go of its lanes (by a thread-exit
 * destructor that runs after the inbox's): a lane of its own, which the
 * poster lets go of once the post is published, so the loop frees it
 * when drained instead of waiting for a thread that will never release
 * it. Rare, so a lane per post. */
static __attribute__((noinline)) int post_after_exit(lb__inbox *inbox, lb_callback cb,
                                                     void *data, lb_callback drop) {
    int error = 0;
    lb__lane *lane = lane_register(inbox, &error);
    if (!lane)
        return error;
    int r = publish(inbox, lane, cb, data, drop);
    lane_unref(lane);
    return r;
}

int lb__inbox_post(lb__inbox *inbox, lb_callback cb, void *data, lb_callback drop) {
    if (atomic_load_explicit(&inbox->closed, memory_order_relaxed))
        return -EBADF;
    int error = 0;
    lb__lane *lane = lane_of(inbox, &error);
    if (__builtin_expect(!lane, 0))
        return error == LANE_AFTER_EXIT ? post_after_exit(inbox, cb, data, drop) : error;
    return publish(inbox, lane, cb, data, drop);
}

/* ------------------------------------------------------------------ */
/* The loop's side                                                     */
/* ------------------------------------------------------------------ */

static inline lb__lane *first_lane(const lb__inbox *inbox) {
    return atomic_load_explicit(&inbox->lanes, memory_order_acquire);
}

static inline lb__lane *next_lane(const lb__lane *lane) {
    return lb__lane_after(lane);
}

bool lb__inbox_lanes_pending(const lb__inbox *inbox) {
    for (const lb__lane *lane = first_lane(inbox); lane; lane = next_lane(lane))
        if (lane_pending(lane))
            return true;
    return false;
}

/* Frees the lanes whose thread let go of them (refs 1: the list's) once
 * they are drained. */
static void reap(lb__inbox *inbox) {
    pthread_mutex_lock(&inbox->lock);
    lb__lane *prev = NULL, *lane = first_lane(inbox);
    while (lane) {
        lb__lane *next = next_lane(lane);
        /* acquire: the thread's last post happened before it let go. */
        if (atomic_load_explicit(&lane->refs, memory_order_acquire) == 1 && !lane_pending(lane)) {
            if (prev)
                atomic_store_explicit(&prev->next, next, memory_order_relaxed);
            else
                atomic_store_explicit(&inbox->lanes, next, memory_order_relaxed);
            if (inbox->lanes_tail == lane)
                inbox->lanes_tail = prev;
            lane_free(lane);
        } else {
            prev = lane;
        }
        lane = next;
    }
    pthread_mutex_unlock(&inbox->lock);
}

void lb__inbox_begin(lb__inbox *inbox) {
    lb__lane *lane = first_lane(inbox);
    if (lane && ++inbox->passes % 64 == 0) {
        reap(inbox);
        lane = first_lane(inbox);
    }
    inbox->cursor = lane;
    for (; lane; lane = next_lane(lane))
        lane->batch_end = atomic_load_explicit(&lane->published, memory_order_acquire);
}

void lb__inbox_close(lb__inbox *inbox, lb_loop *loop) {
    pthread_mutex_lock(&inbox->lock);
    atomic_store(&inbox->closed, true);
    for (lb__lane *lane = first_lane(inbox); lane; lane = next_lane(lane))
        lane_drop_all(lane, loop);
    pthread_mutex_unlock(&inbox->lock);
}

void lb__inbox_destroy(lb__inbox *inbox, lb_loop *loop) {
    lb__lane *lane = first_lane(inbox);
    while (lane) {
        lb__lane *next = next_lane(lane);
        lane_drop_all(lane, loop);
        lane_unref(lane);
        lane = next;
    }
    atomic_store(&inbox->lanes, NULL);
    inbox->lanes_tail = NULL;
    pthread_mutex_destroy(&inbox->lock);
}
