/* SPDX-License-Identifier: MIT */
/* One iteration of the loop, as a list of phases, and the entry points
 * the drivers use to embed it (prepare, dispatch). */
#include "error.h"
#include "loop_internal.h"

#include <limits.h>
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

bool lb_driver_backend_needed(const lb_loop *loop) {
    if (!loop || loop->epoll_fd < 0)
        return false;
    return loop->watches_live > 0 || !(loop->driver->caps & LB_DRIVER_CAP_WAKEUP);
}

/* A stop asked while no run entry runs the loop (a host drives it, or
 * nothing does) waits for the next run: it is neither a reason to stop
 * dispatching nor work to be ready for, or a host-driven loop would
 * spin. */
static inline bool stop_pending(const lb_loop *loop) {
    return loop->stopping && loop->run_depth > 0;
}

bool lb_driver_stop_requested(const lb_loop *loop) {
    return !loop || stop_pending(loop);
}

int lb_driver_check_loop(const lb_loop *loop, const char *func) {
    return lb__loop_check(loop, func ? func : "lb_driver_check_loop");
}

void *lb_driver_state(const lb_loop *loop) {
    return loop ? loop->driver_state : NULL;
}

const lb_driver *lb_loop_driver(const lb_loop *loop) {
    return loop ? loop->driver : NULL;
}

/* Ready to run: callbacks, posts, a stop, or memory still to give back
 * (which a loop does before it sleeps, a batch an iteration). */
static bool work_ready(const lb_loop *loop) {
    return loop->ready.count > 0 || lb__inbox_has_work(&loop->inbox) || stop_pending(loop) ||
           loop->giving_back || loop->jobs_to_submit.head;
}

/* Drops cancelled timers sitting at the top of the heap, and compacts the
 * heap when most of it is cancelled, so a dead timer neither keeps the
 * loop awake nor costs memory for long. */
static bool timer_is_cancelled(void *item) {
    return ((lb_handle *)item)->flags & LB__HANDLE_CANCELLED;
}

static void timer_release(void *item) {
    lb__handle_unqueue(item);
}

/* What a compaction costs per entry, generously (it touches every entry
 * and the handle of each): a heap is compacted only when the next timer
 * is due later than twice that, so a compaction never makes one late. */
#define COMPACT_NS_PER_ENTRY 20

static void prune_timers(lb_loop *loop, int64_t now) {
    lb__timer_heap *heap = &loop->timers;
    const lb__timer_entry *top;
    while ((top = lb__timer_heap_top(heap)) && timer_is_cancelled(top->item)) {
        lb_handle *h = lb__timer_heap_pop(heap);
        heap->dead--;
        lb__handle_unqueue(h);
    }
    if (top && heap->dead > 64 && heap->dead * 2 > heap->n &&
        top->when - now > 2 * COMPACT_NS_PER_ENTRY * (int64_t)heap->n)
        lb__timer_heap_compact(heap, timer_is_cancelled, timer_release);
}

/* How long the loop may sleep from now: 0, a positive number of ns, or -1. */
static int64_t sleep_budget(lb_loop *loop) {
    if (work_ready(loop))
        return 0;
    int64_t now = lb__clock_ns();
    prune_timers(loop, now);
    const lb__timer_entry *top = lb__timer_heap_top(&loop->timers);
    if (!top)
        return -1;
    int64_t d = top->when - now;
    return d > 0 ? d : 0;
}

int64_t lb_driver_prepare(lb_loop *loop) {
    if (!loop || lb__loop_closed(loop))
        return 0;
    int64_t t = sleep_budget(loop);
    if (t != 0) {
        atomic_store(&loop->wakeup_armed, LB__ARMED_HOST);
        if (lb__inbox_has_work(&loop->inbox))
            t = 0;
    }
    return t;
}

/* Phase: poll the backend epoll fd and queue the fd events. A deadline
 * within LB_DRIVER_POLL_BELOW_NS is polled for, not slept for: a loop
 * whose timers are microseconds apart would otherwise sleep thousands of
 * times a second and, on a virtual machine, now and then wake
 * milliseconds late, every timer due meanwhile late with it (the halted
 * vCPU waits for the host; docs/performance.md, W3). */
static void poll_backend(lb_loop *loop, int64_t timeout_ns) {
    struct epoll_event events[MAX_EVENTS];
    int n;
    if (timeout_ns > 0 && timeout_ns <= LB_DRIVER_POLL_BELOW_NS)
        timeout_ns = 0;
    if (timeout_ns == 0) {
        n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, 0);
    } else {
        atomic_store(&loop->wakeup_armed, LB__ARMED_CORE);
        if (lb__inbox_has_work(&loop->inbox)) {
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
                int64_t ms64 = (timeout_ns + 999999) / 1000000;
                /* Beyond INT_MAX ms (24.8 days) the conversion would wrap,
                 * to a negative timeout that never wakes for the timer. */
                int ms = ms64 > INT_MAX ? INT_MAX : (int)ms64;
                n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, ms);
            }
        }
        atomic_store_explicit(&loop->wakeup_armed, LB__ARMED_NO, memory_order_relaxed);
    }
    loop->last_poll = lb__clock_ns();
    loop->callbacks_at_poll = loop->callbacks_run;
    for (int i = 0; i < n; i++) {
        uint64_t token = events[i].data.u64;
        if (token == LB__TOKEN_WAKE) {
            uint64_t v;
            ssize_t rd = read(loop->wake_fd, &v, sizeof v);
            (void)rd;
            continue;
        }
        lb__watch_event(loop, token, events[i].events);
    }
}

/* Phase: move due timers to the ready queue. The precise clock is read
 * only when the earliest timer may be due by the coarse clock; otherwise
 * nothing is due and the iteration costs no clock read for timers. */
static void collect_timers(lb_loop *loop, int64_t coarse, bool now_fresh) {
    lb__timer_heap *heap = &loop->timers;
    const lb__timer_entry *top = lb__timer_heap_top(heap);
    if (!top)
        return;
    if (!now_fresh) {
        if (top->when > coarse + loop->coarse_lag)
            return;
        loop->now = lb__clock_ns();
    }
    if (top->when <= loop->now) {
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
            lb__handle_unqueue(h);
            continue;
        }
        h->flags &= ~(uint32_t)LB__HANDLE_IN_HEAP;
        lb__ready_push_handle(&loop->ready, h);
    }
}

/* Runs one ready entry or post, counted. */
static inline void run_entry(lb_loop *loop, lb_callback cb, void *data) {
    loop->callbacks_run++;
    lb__run_callback(loop, cb, data);
}

/* A hosted dispatch's time budget. The clock is read once per
 * LB__BUDGET_CHECK_EVERY callbacks, and the deadline is set at the first
 * read unless the iteration knows the time already, so a short iteration
 * (a chain of callbacks run one per iteration) reads no clock at all. */
typedef struct budget {
    int64_t ns;       /* INT64_MAX: none */
    int64_t deadline; /* 0: not set yet */
    size_t since_check;
} budget;

static inline bool over_budget(budget *b) {
    if (b->ns == INT64_MAX || ++b->since_check < LB__BUDGET_CHECK_EVERY)
        return false;
    b->since_check = 0;
    int64_t now = lb__clock_ns();
    if (b->deadline == 0) {
        b->deadline = now + b->ns;
        return false;
    }
    return now >= b->deadline;
}

/* While callbacks keep coming, is it time for a non-blocking poll of the
 * fds? After LB__POLL_EVERY_CALLBACKS callbacks, or once the coarse clock
 * says LB__POLL_INTERVAL_NS passed: fast callbacks amortise the syscall,
 * slow ones cannot starve I/O for longer than the interval (plus the
 * coarse clock's lag). */
static inline bool poll_due(const lb_loop *loop, int64_t coarse) {
    return loop->callbacks_run - loop->callbacks_at_poll >= LB__POLL_EVERY_CALLBACKS ||
           coarse - loop->last_poll >= LB__POLL_INTERVAL_NS;
}

/* Phase 3: the posts the lanes had published when it began, in each
 * thread's order. Out of line: a loop nobody posts to never comes here.
 * Returns false if the budget ran out. */
static __attribute__((noinline)) bool run_posts(lb_loop *loop, budget *b) {
    lb__inbox *inbox = &loop->inbox;
    lb__post p;
    lb__inbox_begin(inbox);
    while (lb__inbox_next(inbox, &p)) {
        run_entry(loop, p.cb, p.data);
        if (over_budget(b))
            return false;
    }
    return true;
}

/* Phase 4 under a budget. Returns false if the budget ran out. */
static bool run_ready(lb_loop *loop, budget *b) {
    size_t ntodo = loop->ready.count;
    lb__ready_entry e;
    while (ntodo-- > 0 && lb__ready_pop(&loop->ready, &e)) {
        run_entry(loop, e.cb, e.data);
        if (over_budget(b))
            return false;
    }
    return true;
}

/* Phases 3 and 4 of a hosted dispatch, within its budget. A phase that
 * spends the whole budget must not starve the other (a flood of posts
 * would hold back every timer and callback): the phase that did not get
 * its turn goes first in the next iteration. */
static __attribute__((noinline)) void run_hosted_phases(lb_loop *loop, int64_t budget_ns,
                                                        bool now_fresh) {
    budget b = {.ns = budget_ns, .deadline = now_fresh ? loop->now + budget_ns : 0};
    bool lanes = lb__inbox_has_lanes(&loop->inbox);
    if (loop->ready_first) {
        loop->ready_first = false;
        if (run_ready(loop, &b) && lanes)
            run_posts(loop, &b);
    } else if (!lanes || run_posts(loop, &b)) {
        run_ready(loop, &b);
    } else {
        loop->ready_first = true;
    }
}

/* What an iteration knows of the time: the coarse clock read at its
 * start (only if something waits on time or I/O), and whether loop->now
 * was read fresh by the poll. */
typedef struct tick {
    int64_t coarse;
    bool now_fresh;
} tick;

/* Phase 1: poll. A blocking poll only when nothing is ready; while
 * callbacks keep coming, a non-blocking one when poll_due() says. The
 * clock matters only to what waits on time or I/O (timers, fds, the
 * signal pipe, which is an fd watch): a chain of callbacks on a loop
 * without them reads none, and polls by the count alone (posts are taken
 * without a poll). */
static inline tick poll_phase(lb_loop *loop, int64_t timeout_ns) {
    bool timed = loop->timers.n || loop->watches_live;
    tick t = {.coarse = timed ? lb__clock_coarse_ns() : loop->last_poll};
    if (timeout_ns != 0 && work_ready(loop))
        timeout_ns = 0;
    if (timeout_ns != 0 || loop->ready.count == 0 || poll_due(loop, t.coarse)) {
        poll_backend(loop, timeout_ns);
        loop->now = loop->last_poll;
        t.now_fresh = true;
    }
    return t;
}

/* Phase 2: timers due at the start of the iteration join the queue. */
static inline void timers_phase(lb_loop *loop, tick t) {
    if (loop->timers.n)
        collect_timers(loop, t.coarse, t.now_fresh);
}

/* Phase 3: posts from other threads, in each thread's order. */
static inline void posts_phase(lb_loop *loop) {
    if (lb__inbox_has_lanes(&loop->inbox))
        run_posts(loop, &(budget){.ns = INT64_MAX});
}

/* Phase 4: the callbacks that were ready when the iteration started
 * (what they schedule runs in the next one). */
static inline void ready_phase(lb_loop *loop) {
    size_t ntodo = loop->ready.count;
    lb__ready_entry e;
    while (ntodo-- > 0 && lb__ready_pop(&loop->ready, &e))
        run_entry(loop, e.cb, e.data);
}

/* Phase 5, in an iteration that leaves nothing ready: one batch of the
 * memory a burst left (retired ready-queue chunks, then ended tasks'
 * stacks) goes back to the system. Never while work is ready: giving
 * pages back flushes the TLB, which can stall the loop for tens of
 * milliseconds (docs/performance.md, "What G1's pause on glib is"). The
 * loop comes back for the next batch before it sleeps. */
static __attribute__((noinline)) void give_back_phase(lb_loop *loop) {
    bool more = lb__ready_give_back(&loop->ready);
    if (!more && loop->task_hooks)
        more = loop->task_hooks->give_back(loop);
    loop->giving_back = more;
}

/* One iteration: the phases in order, as uv_run reads. A hosted dispatch
 * runs phases 3 and 4 within its budget instead. Returns 1 if work is
 * still ready. */
static inline int iterate(lb_loop *loop, int64_t poll_timeout_ns, int64_t budget_ns) {
    loop->iterations++;
    /* Jobs submitted outside a callback of this loop while it runs (a
     * host's handler in a nested main loop) go to their pools now. */
    if (__builtin_expect(loop->jobs_to_submit.head != NULL, 0))
        lb__executor_submit_held(loop);
    tick t = poll_phase(loop, poll_timeout_ns);
    timers_phase(loop, t);
    if (budget_ns == INT64_MAX) {
        posts_phase(loop);
        ready_phase(loop);
    } else {
        run_hosted_phases(loop, budget_ns, t.now_fresh);
    }
    if (loop->ready.count == 0 && !lb__inbox_has_work(&loop->inbox))
        give_back_phase(loop);
    return work_ready(loop) ? 1 : 0;
}

int lb_driver_dispatch(lb_loop *loop, int64_t poll_timeout_ns, int64_t budget_ns) {
    lb_assert_return(loop, -EINVAL);
    if (lb__loop_closed(loop))
        return lb__fail(loop, -EBADF, "lb_driver_dispatch: loop is closed");
    if (__builtin_expect(lb__loop_thread(loop) != lb__thread_self(), 0)) {
        /* A hosted loop belongs to the thread its host dispatches it on; a
         * native one is adopted if nobody drives it. */
        lb__loop_adopt(loop, true);
        int r = lb__loop_check_thread(loop, __func__);
        if (r < 0)
            return r;
    }
    loop->dispatch_depth++;
    lb__enter_state st;
    lb__loop_enter(loop, &st);
    int r = iterate(loop, poll_timeout_ns, budget_ns);
    lb__loop_leave(loop, &st);
    loop->dispatch_depth--;
    return r;
}

/* The native driver's run: iterations back to back, each sleeping in the
 * poll for as long as lb_driver_prepare() allows, with the bookkeeping of
 * lb_driver_dispatch() done once for the whole run. At least one
 * iteration: a stop requested before the run still lets what is ready
 * run, as asyncio does. */
int lb__dispatch_until_stopped(lb_loop *loop) {
    loop->dispatch_depth++;
    lb__enter_state st;
    lb__loop_enter(loop, &st);
    /* What an iteration returns is what work_ready() would say before
     * the next one: nothing runs in between. */
    int ready = work_ready(loop);
    do
        ready = iterate(loop, ready ? 0 : lb_driver_prepare(loop), INT64_MAX);
    while (!loop->stopping);
    lb__loop_leave(loop, &st);
    loop->dispatch_depth--;
    return 0;
}
