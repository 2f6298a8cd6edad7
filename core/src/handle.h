/* SPDX-License-Identifier: MIT */
#ifndef LB_HANDLE_H
#define LB_HANDLE_H

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
    int64_t when;    /* timers: deadline in ns; fd events: the watch token */
    uint32_t refs;   /* the loop's queue holds one while scheduled */
    uint32_t flags;
    void *aux2;      /* internal callbacks: a third argument */
};

#endif
