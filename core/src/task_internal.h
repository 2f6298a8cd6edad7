/* SPDX-License-Identifier: MIT */
#ifndef LB_TASK_INTERNAL_H
#define LB_TASK_INTERNAL_H

#include <loopbridge/task.h>

#include "fiber/fiber.h"
#include "fiber/stack.h"
#include "future_internal.h"

typedef enum lb__task_state {
    LB__TASK_CREATED,   /* spawned, first step queued */
    LB__TASK_RUNNING,   /* on its own stack now */
    LB__TASK_SUSPENDED, /* waiting in lb_await / lb_sleep / lb_yield */
    LB__TASK_DONE,
} lb__task_state;

/* Why a suspended task waits, so that cancellation knows what to undo. */
typedef enum lb__task_wait {
    LB__WAIT_NONE,
    LB__WAIT_FUTURE, /* awaiting, the future's done callback resumes it */
    LB__WAIT_TIMER,  /* lb_sleep: a timer handle resumes it */
    LB__WAIT_STEP,   /* lb_yield or first run: a queued step resumes it */
} lb__task_wait;

struct lb_task {
    lb_loop *loop;
    unsigned refs; /* the loop holds one until the task ends */
    lb__task_state state;
    lb__task_wait wait;
    lb_task_fn fn;
    void *data;
    lb_future *future;      /* the task's outcome */
    lb_future *awaiting;    /* LB__WAIT_FUTURE */
    lb_handle *timer;       /* LB__WAIT_TIMER */
    unsigned cancel_requests;
    bool must_cancel;       /* deliver -ECANCELED at the next (or current) wait */
    bool close_cancelled;   /* close already asked it to unwind */
    void *result;
    lb_destroy_fn result_destroy;
    int status;             /* what fn returned */
    lb__stack *stack;
    lb__fiber fiber;        /* the task's own context */
    lb__fiber caller;       /* where to go when it suspends or ends */
    lb_task *prev, *next;   /* the loop's live tasks */
    char name[32];
};

/* The loop's task state (loop->task_state). */
typedef struct lb__tasks {
    lb__stack_pool *stacks;
    lb_task *live;
    size_t count;
    uint64_t next_id;
} lb__tasks;

/* Suspends the running task until something resumes it. Returns when it
 * was resumed. */
void lb__task_suspend(lb_task *t, lb__task_wait why);

/* Queues a step that resumes t in the next iteration. Returns 0 or
 * -ENOMEM. */
int lb__task_schedule_step(lb_task *t);

#endif
