/* SPDX-License-Identifier: MIT */
#ifndef LB_LOOP_INTERNAL_H
#define LB_LOOP_INTERNAL_H

/* The loop's private state, shared by the files of the core. */

#include <loopbridge/driver.h>
#include <loopbridge/future.h>
#include <loopbridge/loop.h>

#include "block_reserve.h"
#include "clock.h"
#include "inbox.h"
#include "ready_queue.h"
#include "slab.h"
#include "timer_heap.h"

#include <pthread.h>
#include <stdatomic.h>

/* While callbacks keep coming, the loop polls its fds without blocking
 * after this many callbacks (a syscall costs as much as hundreds of
 * callbacks: docs/performance.md, "Figures behind the code"), or after
 * this much time by the coarse clock, so I/O is never starved by a busy
 * queue. */
#define LB__POLL_EVERY_CALLBACKS 1024
#define LB__POLL_INTERVAL_NS (1000 * 1000)

/* Hosted dispatch reads the clock once per this many callbacks to check
 * its budget. */
#define LB__BUDGET_CHECK_EVERY 16

/* Who may be asleep when another thread posts (lb_loop.wakeup_armed). */
enum {
    LB__ARMED_NO = 0,   /* nobody: the loop is awake and sees the post */
    LB__ARMED_HOST = 1, /* the host loop (lb_driver_prepare was called) */
    LB__ARMED_CORE = 2, /* the core itself, in epoll_wait on its backend fd */
};

/* Where the loop is in its life (lb_loop.state): one value, checked at
 * each entry point, that only moves forward. */
typedef enum lb__loop_state {
    LB__LOOP_OPEN = 0,
    /* lb_loop_close began: live tasks unwind and pending futures are
     * cancelled, with the loop still iterating for them; new tasks,
     * executor jobs and runs are refused. */
    LB__LOOP_CLOSING = 1,
    /* Closed to every call (-EBADF); close releases what is left. */
    LB__LOOP_RELEASING = 2,
    /* lb_loop_close returned. */
    LB__LOOP_CLOSED = 3,
} lb__loop_state;

typedef struct lb__watch lb__watch;
typedef struct lb__signals lb__signals;

/* The epoll token of the loop's wakeup eventfd (watches use
 * fd | gen << 32; the loop's other descriptors are ordinary watches). */
#define LB__TOKEN_WAKE UINT64_MAX
typedef struct lb__task_hooks lb__task_hooks;

/* Hooks the task layer installs so that the loop core does not depend on
 * it (no loop-layer file includes task_internal.h: tools/check-layers.sh):
 * the stats count live tasks, and close cancels them and lets them unwind
 * through these. */
struct lb__task_hooks {
    /* Live tasks (lb_loop_task_count). */
    size_t (*count)(const lb_loop *loop);
    /* Cancels every live task; returns how many are still alive. */
    size_t (*cancel_all)(lb_loop *loop);
    /* Frees what the task layer holds for the loop (stacks, pools). */
    void (*destroy)(lb_loop *loop);
    /* Gives back a bounded batch of the memory ended tasks left (their
     * stacks' pages); true while more is left. */
    bool (*give_back)(lb_loop *loop);
};

struct lb_loop {
    atomic_uint refs;
    const lb_driver *driver;
    void *driver_state;

    int epoll_fd;
    int wake_fd;

    /* The loop's home thread: the one thread that may touch its state and
     * the counts of its objects (one rule, "may this thread touch this
     * loop", checked against it). The thread that made the loop, until a
     * native loop nobody drives is adopted by the thread that runs or
     * closes it next (lb__loop_adopt); a hosted loop stays on its host's
     * thread. NULL once the loop is closed and its close returned: its
     * objects may then be released anywhere. Read by other threads. */
    _Atomic(const void *) thread;
    bool thread_pinned; /* hosted: never adopted */
    atomic_bool active; /* a thread runs, dispatches or closes the loop */

    uint32_t run_depth;      /* lb_loop_run_* frames active */
    uint32_t dispatch_depth; /* lb_driver_dispatch frames active */
    bool stopping;
    bool ready_first;        /* hosted: the ready queue goes before posts */
    bool giving_back;        /* a burst's memory is still to go back (dispatch.c) */
    atomic_int state; /* lb__loop_state; read by posting threads */
    bool settling; /* close: futures run their done callbacks as they complete */
    bool debug;

    int64_t now;        /* the precise clock when the loop last read it */
    int64_t last_poll;  /* when the backend fd was last polled */
    uint64_t callbacks_at_poll; /* callbacks_run then */
    int64_t coarse_lag; /* lb__clock_coarse_lag_ns() */
    /* Written by posting threads on every post: a cache line of their
     * own, so that a worker's post does not take the fields the loop's
     * thread uses on every callback away from its cache
     * (docs/performance.md, "W9: false sharing"). */
    char posters_line_before[64];
    atomic_int wakeup_armed; /* LB__ARMED_* */
    atomic_uint wakers; /* threads inside lb__loop_wake / lb_loop_wakeup */
    char posters_line_after[64];

    /* Executor jobs submitted while the loop runs a callback, handed to
     * their pools together when it returns (executor.c). */
    struct lb__job_list {
        struct lb__job *head, *tail;
    } jobs_to_submit;
    /* callbacks_run + 1 when a callback last sent a job to its pool at
     * once: a callback's first job is not held (it may wait for it). */
    uint64_t job_sent_at;
    lb_loop *next_holding; /* the thread's loops that hold jobs */

    lb__ready_queue ready;
    lb__timer_heap timers;
    lb__inbox inbox;
    lb__slab handle_slab;
    lb__reserve_hold_t reserve_hold; /* block_reserve.h */
    lb__slab future_slab;

    /* fd watches, indexed by fd. */
    lb__watch **watches;
    size_t watches_cap;
    size_t watches_live;
    uint32_t watch_gen;

    lb__signals *signals;

    /* What the loop owns and closes, newest first (resource.c). */
    lb_resource *resources;

    /* Futures not freed yet, so that close can cancel the pending ones. */
    lb_future *futures;

    lb_exception_handler exception_handler;
    void *exception_data;

    struct lb_executor *default_executor;

    const lb__task_hooks *task_hooks;
    void *task_state;

    /* Drops the reference a handle's aux holds (LB__HANDLE_AUX_REF): the
     * future layer's unref, registered by lb__futures_init, so that
     * handles need not know futures. */
    void (*release_aux)(void *aux);

    lb_handle *current; /* the handle whose callback runs */
    size_t holds;       /* see lb__loop_hold() */
    /* Serialises the releases of the loop's objects once its close
     * returned (lb__loop_release_serialised); never taken before. */
    pthread_mutex_t release_lock;

    uint64_t iterations;
    uint64_t callbacks_run;
    int64_t slow_callback_ns;
    int64_t slowest_ns;
    const void *slowest_fn;
    /* Debug mode: the task the running callback resumed last, copied (it
     * may end and be freed before the callback returns), so that a slow
     * task step is named after the task rather than the step. */
    const void *resumed_fn;
    char resumed_name[32];
    int64_t lag_ns, max_lag_ns;
};

/* A cheap per-thread identity: the address of a thread-local byte. */
extern _Thread_local char lb__thread_token;
static inline const void *lb__thread_self(void) {
    return &lb__thread_token;
}

/* ------------------------------------------------------------------ */
/* The thread rule                                                     */
/* ------------------------------------------------------------------ */

/* Every loop has a home thread (loop->thread): the one thread that may
 * touch its state and the counts of its objects, whether it runs, idles
 * or closes the loop. It is the thread that made the loop; the driving
 * entry points (run, close, lb_driver_dispatch) hand a native loop nobody
 * drives over to the calling thread (lb__loop_adopt), and a hosted loop
 * follows its host's dispatching thread. Once the loop's close returned
 * it has no home, and its objects may be released on any thread.
 *
 * Every check of the rule goes through lb__loop_check_thread (calls that
 * return an error code) or lb__loop_release_call (the ref and unref
 * calls, which have none). docs/design.md ("One thread rule") and the
 * wrong-thread rows of docs/errors.md say the same for users. */

/* The rule itself, with no report: true if the calling thread is the
 * loop's home thread, or the loop's close returned (lb__loop_released,
 * true with what the close did visible to the caller). One load in the
 * common case. */
static inline bool lb__loop_released(const lb_loop *loop) {
    return atomic_load_explicit(&loop->thread, memory_order_acquire) == NULL;
}

static inline bool lb__loop_may_touch(const lb_loop *loop) {
    const void *t = atomic_load_explicit(&loop->thread, memory_order_relaxed);
    if (__builtin_expect(t == lb__thread_self(), 1))
        return true;
    return lb__loop_released(loop);
}

int lb__loop_fail_thread(const lb_loop *loop, const char *func) __attribute__((cold));
bool lb__loop_log_thread(const lb_loop *loop, const char *func) __attribute__((cold));

/* 0 if the calling thread may touch loop (lb__loop_may_touch), else
 * -EPERM with a message naming func, the public function called. */
static inline int lb__loop_check_thread(const lb_loop *loop, const char *func) {
    if (__builtin_expect(lb__loop_may_touch(loop), 1))
        return 0;
    return lb__loop_fail_thread(loop, func);
}


static inline const void *lb__loop_thread(const lb_loop *loop) {
    return atomic_load_explicit(&loop->thread, memory_order_relaxed);
}

/* The driving entry points (run, close, lb_driver_dispatch) first make
 * the calling thread the loop's home when it may take it over: a native
 * loop that no thread runs, dispatches or closes (the hand-over of a loop
 * made on one thread to the thread that runs it), or, with host set, a
 * hosted loop its host dispatches on this thread. The thread rule then
 * decides as for every other call. */
void lb__loop_adopt(lb_loop *loop, bool host);

/* The loop's state, one value checked at each entry (sd-event's
 * assert_return(e->state == ...)). */
static inline lb__loop_state lb__loop_get_state(const lb_loop *loop) {
    return (lb__loop_state)atomic_load_explicit(&loop->state, memory_order_relaxed);
}

/* Moves the loop on (its home thread, in lb_loop_close). */
static inline void lb__loop_set_state(lb_loop *loop, lb__loop_state state) {
    atomic_store(&loop->state, (int)state);
}

/* Closed to every call: the last steps of the close, and after. */
static inline bool lb__loop_closed(const lb_loop *loop) {
    return lb__loop_get_state(loop) >= LB__LOOP_RELEASING;
}

/* Inside lb_loop_close (what it cancels may ask). */
static inline bool lb__loop_closing(const lb_loop *loop) {
    lb__loop_state s = lb__loop_get_state(loop);
    return s == LB__LOOP_CLOSING || s == LB__LOOP_RELEASING;
}

/* The common preamble of the loop-thread entry points: 0, or -EINVAL
 * (NULL), -EBADF (closed), -EPERM (the thread rule) with a message. */
int lb__loop_check(const lb_loop *loop, const char *func);

/* The same, with the common case (a valid loop used from its home
 * thread) decided inline. */
static inline int lb__loop_check_fast(const lb_loop *loop, const char *func) {
    if (__builtin_expect(loop != NULL && !lb__loop_closed(loop), 1)) {
        if (__builtin_expect(lb__loop_thread(loop) == lb__thread_self(), 1))
            return 0;
    }
    return lb__loop_check(loop, func);
}

#define LB__CHECK_LOOP(loop)                                                                   \
    do {                                                                                       \
        int check_r_ = lb__loop_check_fast((loop), __func__);                                  \
        if (check_r_ < 0)                                                                      \
            return check_r_;                                                                   \
    } while (0)

/* Objects carved from the loop's memory (futures, tasks, handles the
 * caller holds) keep the loop alive. They are made and freed on the
 * loop's thread, so they are counted in a plain counter, and only the
 * first and the last of them take and drop a reference of the loop (an
 * atomic operation costs as much as a few callbacks). */
static inline void lb__loop_hold(lb_loop *loop) {
    if (loop->holds++ == 0)
        lb_loop_ref(loop);
}

static inline void lb__loop_unhold(lb_loop *loop) {
    if (--loop->holds == 0)
        lb_loop_unref(loop);
}

/* Once the loop's close returned its objects may be released on any
 * thread, several at once: such a release (which touches the slabs, the
 * live lists and the holds, plain fields of the loop) runs release(obj)
 * under loop->release_lock, which a release that releases another object
 * takes again (it is recursive). The loop's own reference taken around
 * it is dropped outside the lock, so the loop's free (the last hold's,
 * or this one) happens once and never under its own lock. The home
 * thread of an open loop never comes here. */
void lb__loop_release_serialised(lb_loop *loop, void (*release)(void *), void *obj);

/* A ref or unref call on one of loop's objects, whose counts are plain
 * integers (these calls have no error code to return): runs op(obj) at
 * once on the loop's home thread, under the release lock once the loop's
 * close returned (several threads may release its objects then), and
 * not at all on another thread of a loop not closed, with an error
 * logged naming func: that leaks a reference instead of racing the home
 * thread. Returns whether op ran. */
static inline bool lb__loop_release_call(lb_loop *loop, const char *func, void (*op)(void *),
                                         void *obj) {
    if (__builtin_expect(lb__loop_thread(loop) == lb__thread_self(), 1)) {
        op(obj);
        return true;
    }
    if (lb__loop_released(loop)) {
        lb__loop_release_serialised(loop, op, obj);
        return true;
    }
    lb__loop_log_thread(loop, func);
    return false;
}

/* Schedules an internal callback through a floating handle and returns
 * it, so the caller can fill aux/aux2 (read back with lb__current()), or
 * NULL when out of memory. */
lb_handle *lb__call_soon_internal(lb_loop *loop, lb_callback cb, void *data);

/* The handle whose callback is running (internal callbacks read their
 * aux pointers from it). */
static inline lb_handle *lb__current(const lb_loop *loop) {
    return loop->current;
}

/* Posts an internal callback from any thread; drop runs instead if the
 * loop closes first. Returns 0, -EBADF, -ENOMEM. */
int lb__post_internal(lb_loop *loop, lb_callback cb, void *data, lb_callback drop);

/* Handles. */
lb_handle *lb__handle_new(lb_loop *loop, lb_callback cb, void *data);
void lb__handle_release(lb_handle *h);

/* Drops the loop's reference of a scheduled handle (it ran, or was
 * dropped or cancelled and left the heap or queue). */
static inline void lb__handle_unqueue(lb_handle *h) {
    h->flags &= ~(uint32_t)(LB__HANDLE_QUEUED | LB__HANDLE_IN_HEAP);
    lb__handle_release(h);
}

/* fd watches (fd.c). */
void lb__watch_event(lb_loop *loop, uint64_t token, uint32_t events);
void lb__watches_close(lb_loop *loop);

/* A reader for one of the loop's own descriptors, without the checks of
 * lb_loop_add_reader (the caller made them): 0 or a negative errno with a
 * message naming func. */
int lb__watch_add_reader(lb_loop *loop, int fd, lb_callback cb, void *data, const char *func);
void lb__watch_remove_reader(lb_loop *loop, int fd);

/* Signals (signal.c). */
void lb__signals_close(lb_loop *loop);

/* Resources (resource.c): closes every registered resource, newest
 * first, until none is left. */
void lb__resources_close(lb_loop *loop);

/* Futures (future.c). */
void lb__futures_init(lb_loop *loop); /* the slab, the handles' release_aux */
void lb__futures_cancel_all(lb_loop *loop);

/* Drivers (driver.c): the checks of a driver table when a loop is made,
 * and the driver LB_DRIVER names (the native one by default). */
int lb__driver_validate(const lb_driver *driver);
int lb__driver_from_env(const lb_driver **ret);

/* The loop's thread-local "current" bookkeeping while running/dispatching. */
typedef struct lb__enter_state {
    lb_loop *prev_running;
    bool prev_active;
    lb_task *prev_task;
} lb__enter_state;

/* The task running on the calling thread (NULL while a plain callback
 * runs, even one that a task's nested main loop dispatches). */
extern _Thread_local lb_task *lb__current_task;
void lb__loop_enter(lb_loop *loop, lb__enter_state *st);
void lb__loop_leave(lb_loop *loop, const lb__enter_state *st);

/* Runs cb timing it (debug mode): slow callbacks are logged with their
 * function's name, and the slowest is kept for the stats. A handle's
 * runner (lb__run_handle) is not timed: the handle times the callback it
 * carries, so the report names the function the user scheduled. */
void lb__debug_call(lb_loop *loop, lb_callback cb, void *data);

/* Hands the executor jobs the loop holds back to their pools
 * (executor.c). */
void lb__executor_submit_held(lb_loop *loop);

/* Runs a callback: the one path every callback the loop runs takes
 * (ready entries, posts, handles), timed in debug mode; then the jobs it
 * submitted after its first go to their pools. */
static inline void lb__run_callback(lb_loop *loop, lb_callback cb, void *data) {
    if (__builtin_expect(loop->debug, 0))
        lb__debug_call(loop, cb, data);
    else
        cb(loop, data);
    if (__builtin_expect(loop->jobs_to_submit.head != NULL, 0))
        lb__executor_submit_held(loop);
}

/* Debug mode: notes that the running callback resumes the task whose
 * function is fn and name is name. */
void lb__debug_note_task(lb_loop *loop, const void *fn, const char *name);

/* Reports the error of future (task's, when task is not NULL, named
 * task_name, running task_fn) that nobody retrieved (debug.c). */
void lb__report_unretrieved(lb_loop *loop, lb_future *future, lb_task *task,
                            const char *task_name, const void *task_fn);

/* The name of the function at fn, written to buf (debug.c). */
const char *lb__symbol_name(const void *fn, char *buf, size_t size);

/* Reports an error through the exception handler. */
void lb__report(lb_loop *loop, int error, lb_future *future, lb_task *task, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Runs iterations until the loop is asked to stop (the native driver). */
int lb__dispatch_until_stopped(lb_loop *loop);

/* Wakes the loop if it may be asleep (any thread). */
void lb__loop_wake(lb_loop *loop);

#endif
