/* SPDX-License-Identifier: MIT */
/* The loop's lifecycle and its scheduling entry points. The iteration
 * itself lives in dispatch.c. */
#include "alloc.h"
#include "error.h"
#include "executor_internal.h"
#include "loop_internal.h"

#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define HANDLES_PER_CHUNK 256

_Thread_local char lb__thread_token;
static _Thread_local lb_loop *running_loop;
_Thread_local lb_task *lb__current_task;

/* The thread rule's two reports (loop_internal.h). */
int lb__loop_fail_thread(const lb_loop *loop, const char *func) {
    return lb__fail(loop, -EPERM,
                    "%s: loop %p is used from a thread that does not run it; post with "
                    "lb_loop_call_soon_threadsafe()",
                    func, (const void *)loop);
}

bool lb__loop_log_thread(const lb_loop *loop, const char *func) {
    lb__log(LB_LOG_ERROR,
            "%s: called on a thread that does not run loop %p; refused (a reference is "
            "leaked rather than raced)",
            func, (const void *)loop);
    return true;
}

void lb__loop_adopt(lb_loop *loop, bool host) {
    const void *self = lb__thread_self();
    const void *home = lb__loop_thread(loop);
    if (home == self)
        return;
    if (loop->thread_pinned) {
        if (host)
            atomic_store_explicit(&loop->thread, self, memory_order_relaxed);
        return;
    }
    if (!atomic_load(&loop->active))
        atomic_compare_exchange_strong(&loop->thread, &home, self);
}

int lb__loop_check(const lb_loop *loop, const char *func) {
    if (!loop)
        return lb__fail(NULL, -EINVAL, "%s: loop is NULL", func);
    if (lb__loop_closed(loop))
        return lb__fail(loop, -EBADF, "%s: loop %p is closed", func, (const void *)loop);
    return lb__loop_check_thread(loop, func);
}

/* The checks of the entry points that drive the loop: adoption, then
 * those of every entry point. */
static int check_driving(lb_loop *loop, const char *func) {
    if (loop && !lb__loop_closed(loop))
        lb__loop_adopt(loop, false);
    return lb__loop_check(loop, func);
}

static int64_t seconds_to_ns(double s);

static bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

int lb_loop_new(lb_loop **ret, const lb_driver *driver) {
    return lb_loop_new_full(ret, driver, NULL);
}

int lb_loop_new_full(lb_loop **ret, const lb_driver *driver, void *driver_arg) {
    lb_assert_return(ret, -EINVAL);
    int r;
    if (!driver) {
        r = lb__driver_from_env(&driver);
        if (r < 0)
            return r;
    } else {
        r = lb__driver_validate(driver);
        if (r < 0)
            return r;
    }

    lb_loop *loop = lb__calloc(1, sizeof *loop);
    if (!loop)
        return lb__fail(NULL, -ENOMEM, "lb_loop_new: out of memory");
    atomic_init(&loop->refs, 1);
    loop->driver = driver;
    loop->epoll_fd = -1;
    loop->wake_fd = -1;
    loop->debug = env_flag("LB_DEBUG");
    loop->slow_callback_ns = 100 * 1000 * 1000;
    lb__slab_init(&loop->handle_slab, sizeof(lb_handle), HANDLES_PER_CHUNK);
    lb__timer_heap_init(&loop->timers);
    r = lb__inbox_init(&loop->inbox);
    if (r < 0) {
        lb__free(loop);
        return lb__fail(NULL, r, "lb_loop_new: cannot initialise the inbox lock");
    }
    lb__futures_init(loop);
    /* Recursive: releasing a task releases its future, under the same
     * lock. Cannot fail on Linux. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&loop->release_lock, &attr);
    pthread_mutexattr_destroy(&attr);

    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epoll_fd < 0) {
        r = lb__fail(NULL, -errno, "lb_loop_new: epoll_create1: %s", strerror(errno));
        goto fail;
    }
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->wake_fd < 0) {
        r = lb__fail(NULL, -errno, "lb_loop_new: eventfd: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LB__TOKEN_WAKE};
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0) {
        r = lb__fail(NULL, -errno, "lb_loop_new: epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    loop->now = lb__clock_ns();
    loop->last_poll = loop->now;
    loop->coarse_lag = lb__clock_coarse_lag_ns();

    /* The thread that makes the loop is its home. A hosted loop lives on
     * its host's thread for good; a native one may be handed over. */
    atomic_init(&loop->thread, lb__thread_self());
    loop->thread_pinned = (driver->caps & LB_DRIVER_CAP_HOSTED) != 0;
    r = driver->attach(loop, driver_arg, &loop->driver_state);
    if (r < 0) {
        if (!strstr(lb_error_detail(), driver->name))
            lb__fail(NULL, r, "lb_loop_new: the %s driver refused the loop: %s", driver->name,
                     lb_strerror(r));
        goto fail;
    }
    loop->reserve_hold = lb__reserve_hold();
    *ret = loop;
    return 0;

fail:
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    lb__inbox_destroy(&loop->inbox, loop);
    lb__slab_destroy(&loop->handle_slab);
    lb__slab_destroy(&loop->future_slab);
    lb__free(loop);
    return r;
}

lb_loop *lb_loop_ref(lb_loop *loop) {
    if (loop)
        atomic_fetch_add_explicit(&loop->refs, 1, memory_order_relaxed);
    return loop;
}

void lb__loop_release_serialised(lb_loop *loop, void (*release)(void *), void *obj) {
    lb_loop_ref(loop);
    pthread_mutex_lock(&loop->release_lock);
    release(obj);
    pthread_mutex_unlock(&loop->release_lock);
    lb_loop_unref(loop);
}

static void loop_free(lb_loop *loop) {
    pthread_mutex_destroy(&loop->release_lock);
    lb__ready_destroy(&loop->ready);
    lb__slab_destroy(&loop->handle_slab);
    lb__slab_destroy(&loop->future_slab);
    lb__inbox_destroy(&loop->inbox, loop);
    lb__reserve_hold_t hold = loop->reserve_hold;
    lb__free(loop);
    lb__reserve_release(hold);
}

lb_loop *lb_loop_unref(lb_loop *loop) {
    if (!loop)
        return NULL;
    if (atomic_fetch_sub_explicit(&loop->refs, 1, memory_order_acq_rel) != 1)
        return NULL;
    if (loop->run_depth > 0 || loop->dispatch_depth > 0) {
        lb__log(LB_LOG_ERROR, "lb_loop_unref: the last reference of running loop %p was "
                              "dropped; the loop is leaked", (void *)loop);
        return NULL;
    }
    if (!lb__loop_closed(loop)) {
        /* Closing takes and drops references of its own (futures and
         * handles it releases); keep one so it does not recurse here. */
        atomic_store(&loop->refs, 1);
        if (lb_loop_close(loop) < 0) {
            /* Another thread runs it, or its host dispatches it: freeing
             * it would leave that thread with freed memory. */
            lb__log(LB_LOG_ERROR,
                    "lb_loop_unref: the last reference of open loop %p was dropped on a "
                    "thread that cannot close it (%s); the loop is leaked",
                    (void *)loop, lb_error_detail());
            return NULL;
        }
        if (atomic_fetch_sub_explicit(&loop->refs, 1, memory_order_acq_rel) != 1)
            return NULL;
    }
    loop_free(loop);
    return NULL;
}

/* The caller is the loop's home thread (it adopted the loop if need be). */
void lb__loop_enter(lb_loop *loop, lb__enter_state *st) {
    st->prev_running = running_loop;
    st->prev_active = atomic_load_explicit(&loop->active, memory_order_relaxed);
    st->prev_task = lb__current_task;
    lb__current_task = NULL; /* callbacks run outside any task */
    running_loop = loop;
    atomic_store_explicit(&loop->active, true, memory_order_relaxed);
}

/* The loop keeps its home thread: it stays the thread that ran it. */
void lb__loop_leave(lb_loop *loop, const lb__enter_state *st) {
    running_loop = st->prev_running;
    lb__current_task = st->prev_task;
    atomic_store_explicit(&loop->active, st->prev_active, memory_order_relaxed);
}

lb_loop *lb_loop_get_running(void) {
    return running_loop;
}

/* The checks of a run once the calling thread may drive the loop. */
static int run_state_checks(lb_loop *loop, const char *func) {
    if (loop->run_depth > 0)
        return lb__fail(loop, -EBUSY, "%s: this event loop is already running", func);
    /* A hosted loop that its host dispatches (Tk_MainLoop, a GTK app)
     * has no run frame, but a callback or task of it must not run it
     * again either: that would nest the host's loop inside itself. */
    if (loop->dispatch_depth > 0)
        return lb__fail(loop, -EBUSY,
                        "%s: this event loop is already running (called from one of its "
                        "callbacks or tasks; spawn a task or await the future instead)",
                        func);
    if (running_loop && running_loop != loop)
        return lb__fail(loop, -EBUSY,
                        "%s: cannot run the loop while another loop is running on this thread",
                        func);
    if (lb__loop_get_state(loop) != LB__LOOP_OPEN)
        return lb__fail(loop, -EBADF, "%s: loop is closing", func);
    return 0;
}

/* A run claims the loop (active, false to true) before it checks or
 * changes its home thread, so that two threads never both pass the
 * checks: the home thread no less than one adopting an idle loop. The
 * claim is released by release_run(), or here if a check fails. A loop
 * already driven is refused: from its own callbacks with -EBUSY, from
 * another thread with -EPERM (the thread rule). */
static int claim_run(lb_loop *loop, const char *func) {
    bool idle = false;
    if (!loop || lb__loop_closed(loop) ||
        !atomic_compare_exchange_strong(&loop->active, &idle, true)) {
        int r = lb__loop_check(loop, func);
        if (r < 0)
            return r;
        /* The driving frames are this thread's to read only if it drives
         * the loop (a run from one of its callbacks). */
        if (running_loop == loop) {
            r = run_state_checks(loop, func);
            return r < 0 ? r
                         : lb__fail(loop, -EBUSY, "%s: this event loop is already running", func);
        }
        if (lb__loop_get_state(loop) != LB__LOOP_OPEN)
            return lb__fail(loop, -EBADF, "%s: loop is closing", func);
        /* Another thread claimed it and is taking it over. */
        return lb__loop_fail_thread(loop, func);
    }
    if (!loop->thread_pinned)
        atomic_store_explicit(&loop->thread, lb__thread_self(), memory_order_relaxed);
    int r = lb__loop_check(loop, func);
    if (r == 0)
        r = run_state_checks(loop, func);
    if (r < 0)
        atomic_store(&loop->active, false);
    return r;
}

static void release_run(lb_loop *loop) {
    atomic_store(&loop->active, false);
}

/* Runs a loop claim_run() claimed, and releases it. */
static int run_claimed(lb_loop *loop) {
    lb__enter_state st;
    lb__loop_enter(loop, &st);
    loop->run_depth++;
    lb_loop_ref(loop);
    int r = loop->driver->run(loop, loop->driver_state);
    loop->stopping = false;
    loop->run_depth--;
    lb__loop_leave(loop, &st);
    /* Before the unref, which may free the loop. */
    release_run(loop);
    lb_loop_unref(loop);
    return r;
}

int lb_loop_run_forever(lb_loop *loop) {
    int r = claim_run(loop, __func__);
    if (r < 0)
        return r;
    return run_claimed(loop);
}

static void stop_on_done(lb_future *f, void *data) {
    lb_loop *loop = data;
    (void)f;
    loop->stopping = true;
}

int lb_loop_run_until_complete(lb_loop *loop, lb_future *future) {
    lb_assert_return(future, -EINVAL);
    int r = claim_run(loop, __func__);
    if (r < 0)
        return r;
    if (lb_future_get_loop(future) != loop)
        r = lb__fail(loop, -EXDEV, "%s: the future belongs to another loop", __func__);
    else if (!lb_future_is_done(future))
        r = lb_future_add_done_callback(future, stop_on_done, loop);
    if (r < 0 || lb_future_is_done(future)) {
        release_run(loop);
        return r;
    }
    lb_future_ref(future);
    r = run_claimed(loop);
    lb_future_remove_done_callback(future, stop_on_done, loop);
    bool done = lb_future_is_done(future);
    lb_future_unref(future);
    if (r < 0)
        return r;
    if (!done)
        return lb__fail(loop, -EINTR, "%s: the loop stopped before the future completed",
                        __func__);
    return 0;
}

int lb_loop_stop(lb_loop *loop) {
    LB__CHECK_LOOP(loop);
    loop->stopping = true;
    return 0;
}

bool lb_loop_is_running(const lb_loop *loop) {
    return loop && (loop->run_depth > 0 || loop->dispatch_depth > 0);
}

bool lb_loop_is_closed(const lb_loop *loop) {
    return loop && lb__loop_closed(loop);
}

double lb_loop_time(const lb_loop *loop) {
    return loop ? (double)lb__clock_ns() / 1e9 : 0.0;
}

int64_t lb_loop_time_ns(const lb_loop *loop) {
    return loop ? lb__clock_ns() : 0;
}

const char *lb_loop_driver_name(const lb_loop *loop) {
    return loop ? loop->driver->name : NULL;
}

int lb_loop_set_debug(lb_loop *loop, bool enabled) {
    LB__CHECK_LOOP(loop);
    loop->debug = enabled;
    return 0;
}

bool lb_loop_get_debug(const lb_loop *loop) {
    return loop && loop->debug;
}

int lb_loop_set_slow_callback_duration(lb_loop *loop, double seconds) {
    lb_assert_return(!isnan(seconds) && seconds >= 0, -EINVAL);
    LB__CHECK_LOOP(loop);
    loop->slow_callback_ns = seconds_to_ns(seconds);
    return 0;
}

int lb_loop_get_stats(const lb_loop *loop, lb_loop_stats *ret) {
    lb_assert_return(loop, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    if (lb__loop_closed(loop))
        return lb__fail(loop, -EBADF, "lb_loop_get_stats: loop is closed");
    static _Thread_local char name[128];
    *ret = (lb_loop_stats){
        .iterations = loop->iterations,
        .callbacks_run = loop->callbacks_run,
        .timers_alive = loop->timers.n - loop->timers.dead,
        .tasks_alive = loop->task_hooks ? loop->task_hooks->count(loop) : 0,
        .ready = loop->ready.count,
        .slowest_callback = (double)loop->slowest_ns / 1e9,
        .slowest_callback_name =
            loop->slowest_fn ? lb__symbol_name(loop->slowest_fn, name, sizeof name) : NULL,
        .loop_lag = (double)loop->lag_ns / 1e9,
        .max_loop_lag = (double)loop->max_lag_ns / 1e9,
    };
    return 0;
}

/* ------------------------------------------------------------------ */
/* Close                                                               */
/* ------------------------------------------------------------------ */

static bool handle_is_dead(void *item) {
    (void)item;
    return true;
}

static void drop_handle(void *item) {
    lb_handle *h = item;
    h->flags |= LB__HANDLE_DONE;
    lb__handle_unqueue(h);
}

/* How long close lets cancelled tasks unwind (they may await cleanup)
 * before it reports and reclaims the ones that did not finish. */
#define CLOSE_UNWIND_NS (5 * (int64_t)1000000000)

/* Drops what is ready without running it: entries own nothing but the
 * handles some of them carry. */
static void drop_ready(lb_loop *loop) {
    lb__ready_entry e;
    while (lb__ready_pop(&loop->ready, &e)) {
        if (e.cb == lb__run_handle) {
            lb_handle *h = e.data;
            h->flags |= LB__HANDLE_DONE;
            lb__handle_unqueue(h);
        }
    }
}

/* Cancels the live tasks and runs iterations until they have unwound
 * (their cleanup may await, and may still use their streams and
 * processes, which are open until the next step), at most
 * CLOSE_UNWIND_NS; the tasks that did not end are then reported and
 * reclaimed. */
static void unwind_tasks(lb_loop *loop) {
    if (!loop->task_hooks)
        return;
    int64_t give_up = lb__clock_ns() + CLOSE_UNWIND_NS;
    while (loop->task_hooks->cancel_all(loop) > 0) {
        int64_t left = give_up - lb__clock_ns();
        if (left <= 0)
            break;
        int64_t wait = lb_driver_prepare(loop);
        lb_driver_dispatch(loop, wait < 0 || wait > left ? left : wait, INT64_MAX);
    }
    loop->task_hooks->destroy(loop);
}

/* Drops every queue without running what it holds: the callbacks posted
 * from other threads (threads that posted just before may still be
 * waking the loop: they finish first), the ready queue and the timers.
 * From here on the loop is closed: nothing can be queued any more. */
static void drop_queues(lb_loop *loop) {
    lb__loop_set_state(loop, LB__LOOP_RELEASING);
    while (atomic_load(&loop->wakers) > 0)
        sched_yield();
    lb__inbox_close(&loop->inbox, loop);
    drop_ready(loop);
    lb__timer_heap_compact(&loop->timers, handle_is_dead, drop_handle);
}

/* Releases the loop's own machinery; the lb_loop itself lives until its
 * last reference goes. */
static void release_loop_state(lb_loop *loop) {
    lb__loop_executor_close(loop);
    lb__timer_heap_destroy(&loop->timers);
    lb__ready_destroy(&loop->ready);
    lb__watches_close(loop);
    lb__signals_close(loop);
    loop->driver->detach(loop, loop->driver_state);
    loop->driver_state = NULL;
    close(loop->wake_fd);
    close(loop->epoll_fd);
    loop->wake_fd = loop->epoll_fd = -1;
}

int lb_loop_close(lb_loop *loop) {
    int r = check_driving(loop, __func__);
    if (r < 0)
        return r;
    if (loop->run_depth > 0 || loop->dispatch_depth > 0)
        return lb__fail(loop, -EBUSY, "lb_loop_close: cannot close a running event loop");
    if (lb__loop_get_state(loop) != LB__LOOP_OPEN)
        return lb__fail(loop, -EBUSY, "lb_loop_close: the loop is already closing");
    lb__loop_set_state(loop, LB__LOOP_CLOSING);
    atomic_store(&loop->active, true);
    lb_loop_ref(loop);

    /* 1. Tasks are cancelled and let unwind. */
    unwind_tasks(loop);
    /* 2. What the loop owns (streams, servers, processes, executor jobs,
     *    GIO operations, fd and signal watches) is closed, newest first. */
    loop->settling = true; /* no queue runs from here: done callbacks run at once */
    lb__resources_close(loop);
    /* 3. The futures still pending are cancelled, so that every thread
     *    blocked in lb_future_wait returns. */
    lb__futures_cancel_all(loop);
    loop->settling = false;
    /* 4. The queues are dropped: what was still queued never runs. */
    drop_queues(loop);
    /* 5. The rest is freed. */
    release_loop_state(loop);

    lb__loop_set_state(loop, LB__LOOP_CLOSED);
    /* Closed: the loop has no home any more, and its objects may be
     * released on any thread, after everything done above. */
    atomic_store_explicit(&loop->thread, NULL, memory_order_release);
    lb_loop_unref(loop);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Scheduling                                                          */
/* ------------------------------------------------------------------ */

static int schedule_failed(lb_loop *loop, const char *func) {
    return lb__fail(loop, -ENOMEM, "%s: out of memory", func);
}

static void hand_out(lb_loop *loop, lb_handle *h, lb_handle **ret) {
    if (ret) {
        h->refs++;
        h->flags |= LB__HANDLE_HELD;
        lb__loop_hold(loop);
        *ret = h;
    }
}

static int call_soon(lb_loop *loop, lb_callback cb, void *data, lb_destroy_fn destroy,
                     lb_handle **ret) {
    int r = lb__loop_check_fast(loop, "lb_loop_call_soon");
    if (r < 0)
        return r;
    lb_assert_return(cb, -EINVAL);
    if (!ret && !destroy) {
        /* Floating: a queue entry, no handle. */
        if (!lb__ready_push(&loop->ready, cb, data))
            return schedule_failed(loop, "lb_loop_call_soon");
        return 0;
    }
    /* A handle, which a destroy notify needs too: the queue's entries
     * stay two words. */
    lb_handle *h = lb__handle_new(loop, cb, data);
    if (!h)
        return schedule_failed(loop, "lb_loop_call_soon");
    lb__handle_set_destroy(h, destroy);
    lb__ready_push_handle(&loop->ready, h);
    hand_out(loop, h, ret);
    return 0;
}

/* Keeps the arguments of lb_loop_call_soon() as they are, so its fast
 * path hands over to it without moving a register. */
static __attribute__((noinline)) int call_soon_slow(lb_loop *loop, lb_callback cb, void *data,
                                                    lb_handle **ret) {
    return call_soon(loop, cb, data, NULL, ret);
}

/* The common case, a floating call with room in the queue, decided inline
 * with no register to save; everything else (checks that fail, handles,
 * a new chunk) goes the slow way. */
int lb_loop_call_soon(lb_loop *loop, lb_callback cb, void *data, lb_handle **ret) {
    if (__builtin_expect(!ret && cb && loop && !lb__loop_closed(loop), 1)) {
        if (lb__loop_may_touch(loop) && lb__ready_try_push(&loop->ready, cb, data))
            return 0;
    }
    return call_soon_slow(loop, cb, data, ret);
}

int lb_loop_call_soon_full(lb_loop *loop, lb_callback cb, void *data, lb_destroy_fn destroy,
                           lb_handle **ret) {
    return lb__destroy_if_refused(call_soon(loop, cb, data, destroy, ret), destroy, data);
}

lb_handle *lb__call_soon_internal(lb_loop *loop, lb_callback cb, void *data) {
    lb_handle *h = lb__handle_new(loop, cb, data);
    if (h)
        lb__ready_push_handle(&loop->ready, h);
    return h;
}

/* The earliest deadline a timer keeps: anything before it is as past as
 * it, and the loop's distances to deadlines (deadline - now) cannot
 * overflow. seconds_to_ns() saturates to the same bound. */
#define EARLIEST_DEADLINE_NS (-(INT64_MAX / 2))

/* Inlined into each entry point, where destroy and func are constants:
 * the plain calls cost what they did before destroy notifies. */
static inline __attribute__((always_inline)) int
call_at_ns(lb_loop *loop, int64_t when_ns, lb_callback cb, void *data, lb_destroy_fn destroy,
           lb_handle **ret, const char *func) {
    int r = lb__loop_check_fast(loop, func);
    if (r < 0)
        return r;
    lb_assert_return(cb, -EINVAL);
    if (__builtin_expect(when_ns < EARLIEST_DEADLINE_NS, 0))
        when_ns = EARLIEST_DEADLINE_NS;
    lb_handle *h = lb__handle_new(loop, cb, data);
    if (!h)
        return schedule_failed(loop, func);
    h->when = when_ns;
    h->flags |= LB__HANDLE_TIMER | LB__HANDLE_IN_HEAP;
    if (lb__timer_heap_push(&loop->timers, when_ns, h) < 0) {
        lb__slab_free(&loop->handle_slab, h);
        return schedule_failed(loop, func);
    }
    /* Set once nothing can fail: a refusal releases data in the caller. */
    lb__handle_set_destroy(h, destroy);
    hand_out(loop, h, ret);
    return 0;
}

int lb_loop_call_at_ns(lb_loop *loop, int64_t when_ns, lb_callback cb, void *data,
                       lb_handle **ret) {
    return call_at_ns(loop, when_ns, cb, data, NULL, ret, __func__);
}

/* Seconds to nanoseconds, saturating so that absurd delays mean "never"
 * rather than overflowing. */
static int64_t seconds_to_ns(double s) {
    if (s >= 9.2e9)
        return INT64_MAX / 2;
    if (s <= -9.2e9)
        return EARLIEST_DEADLINE_NS;
    return (int64_t)ceil(s * 1e9);
}

static inline __attribute__((always_inline)) int
call_later(lb_loop *loop, double delay, lb_callback cb, void *data, lb_destroy_fn destroy,
           lb_handle **ret, const char *func) {
    lb_assert_return(!isnan(delay), -EINVAL);
    int r = lb__loop_check_fast(loop, func);
    if (r < 0)
        return r;
    if (delay < 0)
        delay = 0;
    /* From the current time, not the iteration's cached one: a callback
     * that ran long must not make its timers fire early. */
    int64_t now = lb__clock_ns();
    return call_at_ns(loop, now + seconds_to_ns(delay), cb, data, destroy, ret, func);
}

int lb_loop_call_later(lb_loop *loop, double delay, lb_callback cb, void *data,
                       lb_handle **ret) {
    return call_later(loop, delay, cb, data, NULL, ret, __func__);
}

int lb_loop_call_later_full(lb_loop *loop, double delay, lb_callback cb, void *data,
                            lb_destroy_fn destroy, lb_handle **ret) {
    return lb__destroy_if_refused(call_later(loop, delay, cb, data, destroy, ret, __func__),
                                  destroy, data);
}

static inline __attribute__((always_inline)) int
call_at(lb_loop *loop, double when, lb_callback cb, void *data, lb_destroy_fn destroy,
        lb_handle **ret, const char *func) {
    lb_assert_return(!isnan(when), -EINVAL);
    return call_at_ns(loop, seconds_to_ns(when), cb, data, destroy, ret, func);
}

int lb_loop_call_at(lb_loop *loop, double when, lb_callback cb, void *data, lb_handle **ret) {
    return call_at(loop, when, cb, data, NULL, ret, __func__);
}

int lb_loop_call_at_full(lb_loop *loop, double when, lb_callback cb, void *data,
                         lb_destroy_fn destroy, lb_handle **ret) {
    return lb__destroy_if_refused(call_at(loop, when, cb, data, destroy, ret, __func__), destroy,
                                  data);
}

/* Wakes the loop from any thread. The count of wakers in flight lets
 * close wait until none can still touch the eventfd or the driver's
 * state it is about to release. A driver that owns the wakeup
 * (LB_DRIVER_CAP_WAKEUP) is woken through its entry alone, unless the
 * core is what sleeps (in its own epoll_wait) or the caller asked for
 * every way (lb_loop_wakeup). */
static void wake_now(lb_loop *loop, bool write_eventfd) {
    if (write_eventfd || !(loop->driver->caps & LB_DRIVER_CAP_WAKEUP)) {
        uint64_t one = 1;
        /* EAGAIN means the counter is saturated: the loop is awake anyway. */
        ssize_t n = write(loop->wake_fd, &one, sizeof one);
        (void)n;
    }
    if (loop->driver->wakeup)
        loop->driver->wakeup(loop, loop->driver_state);
}

/* Called after every post, whose publication is a sequentially
 * consistent read-modify-write: the flag is read after it, so either the
 * loop, arming the flag before it sleeps, sees the post, or the post sees
 * the flag. An awake loop costs the poster this one load. */
void lb__loop_wake(lb_loop *loop) {
    if (atomic_load(&loop->wakeup_armed) == LB__ARMED_NO)
        return;
    atomic_fetch_add(&loop->wakers, 1);
    if (!lb__loop_closed(loop)) {
        int armed = atomic_exchange(&loop->wakeup_armed, LB__ARMED_NO);
        if (armed != LB__ARMED_NO)
            wake_now(loop, armed == LB__ARMED_CORE);
    }
    atomic_fetch_sub(&loop->wakers, 1);
}

int lb_loop_wakeup(lb_loop *loop) {
    lb_assert_return(loop, -EINVAL);
    atomic_fetch_add(&loop->wakers, 1);
    int r = 0;
    if (lb__loop_closed(loop))
        r = lb__fail(loop, -EBADF, "lb_loop_wakeup: loop is closed");
    else
        wake_now(loop, true);
    atomic_fetch_sub(&loop->wakers, 1);
    return r;
}

static int post_refused(lb_loop *loop, int r, const char *func) {
    return lb__fail(loop, r, r == -EBADF ? "%s: loop is closed" : "%s: out of memory", func);
}

int lb_loop_call_soon_threadsafe(lb_loop *loop, lb_callback cb, void *data) {
    lb_assert_return(loop, -EINVAL);
    lb_assert_return(cb, -EINVAL);
    int r = lb__inbox_post(&loop->inbox, cb, data, NULL);
    if (r < 0)
        return post_refused(loop, r, __func__);
    lb__loop_wake(loop);
    return 0;
}

/* A threadsafe post with a destroy notify. The inbox's entries stay three
 * words (a plain post carries no destroy), so this one is posted as a
 * record of its own, freed on the loop's thread. */
typedef struct full_post {
    lb_callback cb;
    void *data;
    lb_destroy_fn destroy;
} full_post;

static void run_full_post(lb_loop *loop, void *record) {
    full_post p = *(full_post *)record;
    lb__free(record);
    p.cb(loop, p.data);
    p.destroy(p.data);
}

/* Dropped at close, on the closing thread. */
static void drop_full_post(lb_loop *loop, void *record) {
    (void)loop;
    full_post p = *(full_post *)record;
    lb__free(record);
    p.destroy(p.data);
}

static int post_full(lb_loop *loop, lb_callback cb, void *data, lb_destroy_fn destroy) {
    lb_assert_return(loop, -EINVAL);
    lb_assert_return(cb, -EINVAL);
    if (!destroy)
        return lb_loop_call_soon_threadsafe(loop, cb, data);
    full_post *p = lb__malloc(sizeof *p);
    if (!p)
        return post_refused(loop, -ENOMEM, "lb_loop_call_soon_threadsafe_full");
    *p = (full_post){cb, data, destroy};
    int r = lb__inbox_post(&loop->inbox, run_full_post, p, drop_full_post);
    if (r < 0) {
        /* Never accepted (withdrawn if it raced the close): the caller's
         * to release, below. */
        lb__free(p);
        return post_refused(loop, r, "lb_loop_call_soon_threadsafe_full");
    }
    lb__loop_wake(loop);
    return 0;
}

int lb_loop_call_soon_threadsafe_full(lb_loop *loop, lb_callback cb, void *data,
                                      lb_destroy_fn destroy) {
    return lb__destroy_if_refused(post_full(loop, cb, data, destroy), destroy, data);
}

int lb__post_internal(lb_loop *loop, lb_callback cb, void *data, lb_callback drop) {
    /* What the post carries may be what keeps the loop alive (an executor
     * job holds it until its completion ran): once published, the loop
     * may run it, close and be freed while this thread still reads the
     * inbox's and the loop's flags. Counted among the wakers from before
     * the post, so that close waits for this thread to be done. */
    atomic_fetch_add(&loop->wakers, 1);
    int r = lb__inbox_post(&loop->inbox, cb, data, drop);
    if (r == 0)
        lb__loop_wake(loop);
    atomic_fetch_sub(&loop->wakers, 1);
    return r;
}

/* ------------------------------------------------------------------ */
/* Exceptions                                                          */
/* ------------------------------------------------------------------ */

int lb_loop_set_exception_handler(lb_loop *loop, lb_exception_handler handler, void *data) {
    LB__CHECK_LOOP(loop);
    loop->exception_handler = handler;
    loop->exception_data = data;
    return 0;
}

void lb_loop_default_exception_handler(lb_loop *loop, const lb_exception_context *context) {
    if (!context)
        return;
    char extra[160] = "";
    int off = 0;
    if (context->error)
        off += snprintf(extra + off, sizeof extra - off, " (error: %s)",
                        lb_strerror(context->error));
    if (context->future && off < (int)sizeof extra)
        off += snprintf(extra + off, sizeof extra - off, " future=%p", (void *)context->future);
    if (context->task && off < (int)sizeof extra)
        off += snprintf(extra + off, sizeof extra - off, " task=%p", (void *)context->task);
    if (context->handle && off < (int)sizeof extra)
        snprintf(extra + off, sizeof extra - off, " handle=%p", (void *)context->handle);
    lb__log(LB_LOG_ERROR, "%s%s", context->message ? context->message : "(no message)", extra);
    (void)loop;
}

int lb_loop_call_exception_handler(lb_loop *loop, const lb_exception_context *context) {
    lb_assert_return(loop, -EINVAL);
    lb_assert_return(context, -EINVAL);
    if (loop->exception_handler)
        loop->exception_handler(loop, context, loop->exception_data);
    else
        lb_loop_default_exception_handler(loop, context);
    return 0;
}

void lb__report(lb_loop *loop, int error, lb_future *future, lb_task *task, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lb_exception_context ctx = {.message = msg, .error = error, .future = future, .task = task};
    lb_loop_call_exception_handler(loop, &ctx);
}
