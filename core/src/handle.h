/* SPDX-License-Identifier: MIT */
#ifndef LB_HANDLE_H
#define LB_HANDLE_H

#include <loopbridge/future.h>
#include <loopbridge/loop.h>

enum {
    LB__HANDLE_CANCELLED = 1u << 0,
    LB__HANDLE_TIMER = 1u << 1,
    LB__HANDLE_DONE = 1u << 2,  /* ran, or was dropped at close */
    LB__HANDLE_HELD = 1u << 3,  /* a reference was handed to the user */
    /* aux holds a reference, dropped with the handle by the loop's
     * release_aux hook: a future's done callback keeps its future alive
     * until it ran or was dropped. */
    LB__HANDLE_AUX_REF = 1u << 4,
    /* The loop holds its reference: the handle waits in the timer heap,
     * the ready queue or a future's done callbacks. Cleared when the loop
     * lets go (lb__handle_unqueue), so an unref once too often from the
     * user is told apart from the loop's. */
    LB__HANDLE_QUEUED = 1u << 5,
    /* A timer still in the heap (not yet moved to the ready queue): a
     * cancel counts it among the heap's dead entries. */
    LB__HANDLE_IN_HEAP = 1u << 6,
    /* destroy holds the destroy notify of a _full call, not yet run.
     * Cleared when it runs: at cancel, or once the loop let go of the
     * handle (after its callback ran, or when it was dropped). */
    LB__HANDLE_DESTROY = 1u << 7,
};

/* A scheduled call that needs more than a ready-queue entry: a timer, a
 * call whose handle the caller holds, a future's done callback, an
 * internal callback with extra arguments. 64 bytes, carved from the
 * loop's slab, so scheduling never calls malloc in steady state. */
struct lb_handle {
    lb_handle *next; /* a future's done callbacks; the ready queue's overflow */
    lb_callback cb;
    void *data;
    lb_loop *loop;
    void *aux;       /* internal callbacks: a second argument */
    union {
        int64_t when;    /* timers: deadline in ns; fd events: the watch token */
        lb_future_callback done_cb; /* a future's done callback: the user's */
    };
    uint32_t refs;   /* the loop's queue holds one while scheduled */
    uint32_t flags;
    /* Internal callbacks never have a destroy notify, and calls made
     * through the public API never use aux2: they share the word, so the
     * handle stays one cache line. */
    union {
        void *aux2;            /* internal callbacks: a third argument */
        lb_destroy_fn destroy; /* with LB__HANDLE_DESTROY */
    };
};

_Static_assert(sizeof(struct lb_handle) <= 64, "a handle is one cache line");

/* Gives a handle a destroy notify (NULL: none). */
static inline void lb__handle_set_destroy(lb_handle *h, lb_destroy_fn destroy) {
    if (destroy) {
        h->destroy = destroy;
        h->flags |= LB__HANDLE_DESTROY;
    }
}

/* Runs the handle's destroy notify if it has one not run yet (handle.c). */
void lb__handle_run_destroy(lb_handle *h);

/* What a refused _full call does before it returns r: releases data, which
 * it owns whatever it returns. */
static inline int lb__destroy_if_refused(int r, lb_destroy_fn destroy, void *data) {
    if (r < 0 && destroy)
        destroy(data);
    return r;
}

#endif
