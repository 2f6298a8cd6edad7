/* SPDX-License-Identifier: MIT */
/* One iteration of the loop, as a list of phases, and the entry points
 * the drivers use to embed it (prepare, dispatch). */
#include "error.h"
#include "loop_internal.h"

#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 256

/* epoll_pwait2 sleeps to the nanosecond; cleared the first time the
 * kernel says it does not have it. */
static atomic_bool have_pwait2 = true;

int lb_driver_backend_fd(const lb_loop *loop) {
    lb_assert_return(loop, -EINVAL);
    if (loop->epoll_fd < 0)
        return lb__fail(loop, -EBADF, "lb_driver_backend_fd: loop is closed");
    return loop->epoll_fd;
}

bool lb_driver_stop_requested(const lb_loop *loop) {
    return !loop || loop->stopping;
}

void *lb_driver_state(const lb_loop *loop) {
    return loop ? loop->driver_state : NULL;
}

static bool work_ready(const lb_loop *loop) {
    return loop->ready.count > 0 || lb__inbox_has_work(&loop->inbox) || loop->stopping;
}

/* Drops cancelled timers sitting at the top of the heap, and compacts the
 * heap when most of it is cancelled, so a dead timer neither keeps the
 * loop awake nor costs memory for long. */
static bool timer_is_cancelled(void *item) {
    return ((lb_handle *)item)->flags & LB__HANDLE_CANCELLED;
}

static void timer_release(void *item) {
    lb_handle *h = item;
    lb_loop *loop = h->loop;
    (void)loop;
    lb__handle_release(h);
}

static void prune_timers(lb_loop *loop) {
    lb__timer_heap *heap = &loop->timers;
    if (heap->dead > 64 && heap->dead * 2 > heap->n) {
        lb__timer_heap_compact(heap, timer_is_cancelled, timer_release);
        return;
    }
    const lb__timer_entry *top;
    while ((top = lb__timer_heap_top(heap)) && timer_is_cancelled(top->item)) {
        lb_handle *h = lb__timer_heap_pop(heap);
        heap->dead--;
        lb__handle_release(h);
    }
}

/* How long the loop may sleep from now: 0, a positive number of ns, or -1. */
static int64_t sleep_budget(lb_loop *loop) {
    if (work_ready(loop))
        return 0;
    prune_timers(loop);
    const lb__timer_entry *top = lb__timer_heap_top(&loop->timers);
    if (!top)
        return -1;
    int64_t d = top->when - lb__clock_ns();
    return d > 0 ? d : 0;
}

int64_t lb_driver_prepare(lb_loop *loop) {
    if (!loop || lb__loop_closed(loop))
        return 0;
    int64_t t = sleep_budget(loop);
    if (t != 0) {
        atomic_store(&loop->wakeup_armed, LB__ARMED_HOST);
        if (lb__inbox_has_work_fenced(&loop->inbox))
            t = 0;
    }
    return t;
}

/* Phase: poll the backend epoll fd and queue the fd events. */
static void poll_backend(lb_loop *loop, int64_t timeout_ns) {
    struct epoll_event events[MAX_EVENTS];
    int n;
    if (timeout_ns == 0) {
        n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, 0);
    } else {
        atomic_store(&loop->wakeup_armed, LB__ARMED_CORE);
        if (lb__inbox_has_work_fenced(&loop->inbox)) {
            timeout_ns = 0;
        }
        if (timeout_ns < 0) {
            n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, -1);
        } else {
            n = -1;
            errno = ENOSYS;
            if (atomic_load_explicit(&have_pwait2, memory_order_relaxed)) {
                struct timespec ts = {.tv_sec = timeout_ns / 1000000000,
                                      .tv_nsec = timeout_ns % 1000000000};
                n = epoll_pwait2(loop->epoll_fd, events, MAX_EVENTS, &ts, NULL);
            }
            if (n < 0 && errno == ENOSYS) {
                /* Kernels before 5.11 (and valgrind): whole ms, rounded
                 * up, never down, or the loop would wake early and spin. */
                atomic_store_explicit(&have_pwait2, false, memory_order_relaxed);
                int ms = (int)((timeout_ns + 999999) / 1000000);
                n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, ms);
            }
        }
        atomic_store_explicit(&loop->wakeup_armed, LB__ARMED_NO, memory_order_relaxed);
    }
    loop->last_poll = lb__clock_ns();
    for (int i = 0; i < n; i++) {
        uint64_t token = events[i].data.u64;
        if (token == LB__TOKEN_WAKE) {
            uint64_t v;
            ssize_t rd = read(loop->wake_fd, &v, sizeof v);
            (void)rd;
            continue;
        }
        if (token == LB__TOKEN_SIGNALS) {
            lb__signals_readable(loop);
            continue;
        }
        lb__watch_event(loop, token, events[i].events);
    }
}

/* Phase: move due timers to the ready queue. */
static void collect_timers(lb_loop *loop) {
    lb__timer_heap *heap = &loop->timers;
    const lb__timer_entry *top = lb__timer_heap_top(heap);
    if (top && top->when <= loop->now) {
        /* How late the loop is running its timers: the monitoring
         * figure of the seed's EventLoopMonitor. */
        loop->lag_ns = loop->now - top->when;
        if (loop->lag_ns > loop->max_lag_ns)
            loop->max_lag_ns = loop->lag_ns;
    }
    while ((top = lb__timer_heap_top(heap)) && top->when <= loop->now) {
        lb_handle *h = lb__timer_heap_pop(heap);
        if (h->flags & LB__HANDLE_CANCELLED) {
            heap->dead--;
            lb__handle_release(h);
            continue;
        }
        lb__ready_push(&loop->ready, h);
    }
}

static inline void run_handle(lb_loop *loop, lb_handle *h) {
    if (!(h->flags & LB__HANDLE_CANCELLED)) {
        /* DONE before the call, so that cancelling itself is a no-op. */
        h->flags |= LB__HANDLE_DONE;
        loop->callbacks_run++;
        lb_handle *outer = loop->current; /* nested dispatch */
        loop->current = h;
        if (__builtin_expect(loop->debug, 0))
            lb__debug_call(loop, h->cb, h->data);
        else
            h->cb(loop, h->data);
        loop->current = outer;
    }
    lb__handle_release(h);
}

static inline bool over_budget(int64_t deadline, size_t *since_check) {
    if (++*since_check < LB__BUDGET_CHECK_EVERY)
        return false;
    *since_check = 0;
    return lb__clock_ns() >= deadline;
}

int lb_driver_dispatch(lb_loop *loop, int64_t poll_timeout_ns, int64_t budget_ns) {
    lb_assert_return(loop, -EINVAL);
    if (lb__loop_closed(loop))
        return lb__fail(loop, -EBADF, "lb_driver_dispatch: loop is closed");

    loop->dispatch_depth++;
    lb__enter_state st;
    lb__loop_enter(loop, &st);
    loop->iterations++;

    /* Phase 1: poll. A blocking poll only when nothing is ready; while
     * callbacks keep coming, a non-blocking poll at most every
     * LB__POLL_INTERVAL_NS. */
    int64_t now = lb__clock_ns();
    if (poll_timeout_ns != 0 && work_ready(loop))
        poll_timeout_ns = 0;
    if (poll_timeout_ns != 0 || loop->ready.count == 0 ||
        now - loop->last_poll >= LB__POLL_INTERVAL_NS) {
        poll_backend(loop, poll_timeout_ns);
        now = loop->last_poll;
    }
    loop->now = now;

    /* Phase 2: timers due at the start of the iteration join the queue. */
    collect_timers(loop);

    /* Phase 3: posts from other threads, in posting order. */
    int64_t deadline = budget_ns == INT64_MAX ? INT64_MAX : now + budget_ns;
    size_t since_check = 0;
    bool budget_hit = false;
    lb__inbox *inbox = &loop->inbox;
    lb__inbox_take(inbox);
    while (inbox->out_pos < inbox->out_n) {
        lb__post p = inbox->out[inbox->out_pos++];
        loop->callbacks_run++;
        if (__builtin_expect(loop->debug, 0))
            lb__debug_call(loop, p.cb, p.data);
        else
            p.cb(loop, p.data);
        if (deadline != INT64_MAX && over_budget(deadline, &since_check)) {
            budget_hit = true;
            break;
        }
    }

    /* Phase 4: the callbacks that were ready when the iteration started;
     * what they schedule runs in the next one. */
    size_t ntodo = budget_hit ? 0 : loop->ready.count;
    if (deadline == INT64_MAX) {
        while (ntodo-- > 0) {
            lb_handle *h = lb__ready_pop(&loop->ready);
            if (!h)
                break;
            run_handle(loop, h);
        }
    } else {
        while (ntodo-- > 0) {
            lb_handle *h = lb__ready_pop(&loop->ready);
            if (!h)
                break;
            run_handle(loop, h);
            if (over_budget(deadline, &since_check))
                break;
        }
    }

    lb__loop_leave(loop, &st);
    loop->dispatch_depth--;
    return work_ready(loop) ? 1 : 0;
}
