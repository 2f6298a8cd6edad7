/* SPDX-License-Identifier: MIT */
/* The loop under a fuzzer. An input is a sequence of operations on one
 * native loop whose clock is a variable (the core is compiled with
 * LB_TEST_CLOCK): schedule call_soon / call_later, cancel a handle,
 * advance the clock, run one iteration, make, resolve, fail or cancel a
 * future, spawn a task that awaits a future or sleeps, cancel a task,
 * close. A model checks every step: call_soon callbacks run in the order
 * they were scheduled, timers by deadline then scheduling order and never
 * before their deadline, one iteration runs everything that was ready
 * when it started, cancelled callbacks never run, futures and tasks end
 * as the operations say, and by the end everything ran or was cancelled
 * by close. A broken rule aborts, which the fuzzer reports as a crash. */
#include "fuzz.h"

#include <loopbridge/loopbridge.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The clock of the core built for this harness (core/src/clock.h). */
int64_t lb__test_clock_now_ns;

#define START_NS ((int64_t)1000 * 1000 * 1000 * 1000) /* 1000 s, far from 0 */

#define MAX_CALLBACKS 512
#define MAX_FUTURES 64
#define MAX_TASKS 64

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz-loop: %s:%d: broken: %s (%s)\n", __FILE__, __LINE__, #cond,  \
                    lb_error_detail());                                                        \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

enum { CB_SOON, CB_TIMER };

typedef struct cb_rec {
    int kind;
    uint64_t seq;     /* scheduling order */
    int64_t deadline; /* timers */
    lb_handle *handle;
    bool cancelled;
    bool ran;
} cb_rec;

enum { F_PENDING, F_RESULT, F_ERROR, F_CANCELLED };

typedef struct fut_rec {
    lb_future *future;
    int state; /* the model's */
    int error;
    uintptr_t value;
} fut_rec;

enum { T_AWAIT, T_SLEEP };

typedef struct task_rec {
    lb_task *task;
    int kind;
    size_t future;   /* T_AWAIT: index of the awaited future */
    double seconds;  /* T_SLEEP */
    bool started;
    bool ended;
    bool cancel_requested;
    int status;
} task_rec;

static struct world {
    lb_loop *loop;
    bool closed;
    bool closing; /* inside lb_loop_close */
    uint64_t next_seq;
    cb_rec cbs[MAX_CALLBACKS];
    size_t n_cbs;
    uint64_t last_soon_seq;
    int64_t last_timer_deadline;
    uint64_t last_timer_seq;
    bool timer_ran;
    fut_rec futs[MAX_FUTURES];
    size_t n_futs;
    task_rec tasks[MAX_TASKS];
    size_t n_tasks;
} w;

/* Delays are multiples of 1/1024 s, exact in binary, so the deadline the
 * model computes is the loop's to the nanosecond. */
static double delay_of(uint8_t units) {
    return (double)units / 1024.0;
}

static int64_t delay_ns(double seconds) {
    return (int64_t)ceil(seconds * 1e9);
}

/* ------------------------------------------------------------------ */
/* Callbacks                                                           */
/* ------------------------------------------------------------------ */

static void on_callback(lb_loop *loop, void *data) {
    cb_rec *c = &w.cbs[(uintptr_t)data];
    CHECK(!c->ran);
    CHECK(!c->cancelled);
    CHECK(!w.closed);
    c->ran = true;
    if (c->kind == CB_SOON) {
        /* FIFO among call_soon callbacks. */
        CHECK(c->seq > w.last_soon_seq);
        w.last_soon_seq = c->seq;
    } else {
        /* Never early, and by deadline, then scheduling order. */
        CHECK(c->deadline <= lb__test_clock_now_ns);
        CHECK(c->deadline <= lb_loop_time_ns(loop));
        CHECK(!w.timer_ran || c->deadline > w.last_timer_deadline ||
              (c->deadline == w.last_timer_deadline && c->seq > w.last_timer_seq));
        w.timer_ran = true;
        w.last_timer_deadline = c->deadline;
        w.last_timer_seq = c->seq;
    }
}

static void schedule(int kind, uint8_t arg) {
    if (w.n_cbs == MAX_CALLBACKS)
        return;
    cb_rec *c = &w.cbs[w.n_cbs];
    *c = (cb_rec){.kind = kind, .seq = ++w.next_seq};
    void *data = (void *)(uintptr_t)w.n_cbs;
    int r;
    if (kind == CB_SOON) {
        r = lb_loop_call_soon(w.loop, on_callback, data, &c->handle);
    } else {
        double s = delay_of(arg);
        c->deadline = lb__test_clock_now_ns + delay_ns(s);
        r = lb_loop_call_later(w.loop, s, on_callback, data, &c->handle);
    }
    if (w.closed) {
        CHECK(r == -EBADF);
        return;
    }
    CHECK(r == 0);
    w.n_cbs++;
}

static void cancel_callback(uint8_t arg) {
    if (w.n_cbs == 0)
        return;
    cb_rec *c = &w.cbs[arg % w.n_cbs];
    int r = lb_handle_cancel(c->handle);
    /* After close every handle is done: ran, cancelled or dropped. */
    CHECK(r == (!w.closed && !c->ran && !c->cancelled ? 1 : 0));
    if (r == 1)
        c->cancelled = true;
}

/* ------------------------------------------------------------------ */
/* Futures                                                             */
/* ------------------------------------------------------------------ */

static int model_result(const fut_rec *f) {
    switch (f->state) {
    case F_PENDING:
        return -EAGAIN;
    case F_RESULT:
        return 0;
    case F_ERROR:
        return f->error;
    default:
        return -ECANCELED;
    }
}

static void check_futures(void) {
    for (size_t i = 0; i < w.n_futs; i++) {
        fut_rec *f = &w.futs[i];
        void *v = NULL;
        int r = lb_future_result(f->future, &v);
        CHECK(r == model_result(f));
        CHECK(r != 0 || (uintptr_t)v == f->value);
    }
}

static void new_future(void) {
    if (w.n_futs == MAX_FUTURES)
        return;
    fut_rec *f = &w.futs[w.n_futs];
    *f = (fut_rec){.state = F_PENDING};
    int r = lb_future_new(w.loop, &f->future);
    if (w.closed) {
        CHECK(r == -EBADF);
        return;
    }
    CHECK(r == 0);
    w.n_futs++;
}

static void complete_future(int how, uint8_t arg) {
    if (w.n_futs == 0)
        return;
    size_t i = arg % w.n_futs;
    fut_rec *f = &w.futs[i];
    int r;
    if (how == F_RESULT)
        r = lb_future_set_result(f->future, (void *)(uintptr_t)(i + 1), NULL);
    else if (how == F_ERROR)
        r = lb_future_set_error(f->future, -(int)(1 + arg % 100));
    else
        r = lb_future_cancel(f->future);
    if (w.closed) {
        CHECK(r == -EBADF);
        return;
    }
    if (f->state != F_PENDING) {
        CHECK(r == (how == F_CANCELLED ? 0 : -EALREADY));
        return;
    }
    CHECK(r == (how == F_CANCELLED ? 1 : 0));
    f->state = how;
    f->value = how == F_RESULT ? i + 1 : 0;
    f->error = how == F_ERROR ? -(int)(1 + arg % 100) : 0;
}

/* ------------------------------------------------------------------ */
/* Tasks                                                               */
/* ------------------------------------------------------------------ */

static int task_main(lb_task *task, void *data) {
    task_rec *t = &w.tasks[(uintptr_t)data];
    CHECK(lb_task_current() == task);
    CHECK(!t->started);
    t->started = true;
    int r;
    if (t->kind == T_AWAIT) {
        lb_future *f = w.futs[t->future].future;
        void *v = NULL;
        r = lb_await(f, &v);
        /* Cancelled by the harness, or by lb_loop_close unwinding it. */
        if (t->cancel_requested || w.closing) {
            CHECK(r == -ECANCELED);
        } else {
            /* The awaited outcome, as the future holds it. */
            void *v2 = NULL;
            CHECK(r == lb_future_result(f, &v2));
            CHECK(r != 0 || v == v2);
        }
    } else {
        int64_t deadline = lb__test_clock_now_ns + delay_ns(t->seconds);
        r = lb_sleep(t->seconds);
        if (t->cancel_requested || w.closing) {
            CHECK(r == -ECANCELED);
        } else {
            CHECK(r == 0);
            CHECK(lb__test_clock_now_ns >= deadline);
            CHECK(lb_loop_time_ns(w.loop) >= deadline);
        }
    }
    t->ended = true;
    t->status = r;
    return r;
}

static void spawn(int kind, uint8_t arg) {
    if (w.n_tasks == MAX_TASKS)
        return;
    task_rec *t = &w.tasks[w.n_tasks];
    *t = (task_rec){.kind = kind};
    if (kind == T_AWAIT) {
        if (w.n_futs == 0)
            return;
        t->future = arg % w.n_futs;
    } else {
        t->seconds = delay_of(arg);
    }
    int r = lb_task_spawn(w.loop, task_main, (void *)(uintptr_t)w.n_tasks, NULL, &t->task);
    if (w.closed) {
        CHECK(r == -EBADF);
        return;
    }
    CHECK(r == 0);
    w.n_tasks++;
}

static void cancel_task(uint8_t arg) {
    if (w.n_tasks == 0)
        return;
    task_rec *t = &w.tasks[arg % w.n_tasks];
    bool done = lb_task_is_done(t->task);
    CHECK(!t->ended || done);
    int r = lb_task_cancel(t->task);
    CHECK(r == (done ? 0 : 1));
    if (r != 1)
        return;
    t->cancel_requested = true;
    /* A task suspended in lb_await cancels the future it waits for. */
    if (t->kind == T_AWAIT && t->started && w.futs[t->future].state == F_PENDING)
        w.futs[t->future].state = F_CANCELLED;
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */
/* ------------------------------------------------------------------ */

static bool soon_pending(void) {
    for (size_t i = 0; i < w.n_cbs; i++)
        if (w.cbs[i].kind == CB_SOON && !w.cbs[i].ran && !w.cbs[i].cancelled)
            return true;
    return false;
}

/* One iteration, as a hosted driver runs it: prepare, then dispatch
 * without blocking. */
static void iterate(void) {
    int64_t wait = lb_driver_prepare(w.loop);
    if (w.closed) {
        CHECK(lb_driver_dispatch(w.loop, 0, INT64_MAX) == -EBADF);
        return;
    }
    /* The sleep prepare allows never skips a pending callback. */
    if (soon_pending())
        CHECK(wait == 0);
    for (size_t i = 0; wait != 0 && i < w.n_cbs; i++) {
        const cb_rec *c = &w.cbs[i];
        if (c->kind == CB_TIMER && !c->ran && !c->cancelled)
            CHECK(wait > 0 && wait <= c->deadline - lb__test_clock_now_ns);
    }
    uint64_t seq_before = w.next_seq;
    CHECK(lb_driver_dispatch(w.loop, 0, INT64_MAX) >= 0);
    /* Everything ready when the iteration started has run. */
    for (size_t i = 0; i < w.n_cbs; i++) {
        const cb_rec *c = &w.cbs[i];
        if (c->cancelled || c->seq > seq_before)
            continue;
        if (c->kind == CB_SOON || c->deadline <= lb__test_clock_now_ns)
            CHECK(c->ran);
    }
}

static void advance(const uint8_t *arg) {
    lb__test_clock_now_ns += (int64_t)(arg[0] | arg[1] << 8) * 1000 + arg[2];
}

static void close_loop(void) {
    w.closing = true;
    int r = lb_loop_close(w.loop);
    w.closing = false;
    if (w.closed) {
        CHECK(r == -EBADF);
        return;
    }
    CHECK(r == 0);
    w.closed = true;
    /* Close cancels what is pending: futures, tasks (which unwind). */
    for (size_t i = 0; i < w.n_futs; i++)
        if (w.futs[i].state == F_PENDING)
            w.futs[i].state = F_CANCELLED;
    for (size_t i = 0; i < w.n_tasks; i++) {
        task_rec *t = &w.tasks[i];
        CHECK(lb_task_is_done(t->task));
        CHECK(t->ended || !t->started);
    }
}

/* Runs until nothing is left to do, moving the clock past every
 * deadline: what was scheduled and not cancelled must then have run. */
static void drain(void) {
    for (int i = 0; i < 100000; i++) {
        int64_t wait = lb_driver_prepare(w.loop);
        if (wait < 0)
            break;
        /* A timer due within 50 us gives no wait (the loop polls for
         * it): the clock moves on by that much, or it would never come. */
        lb__test_clock_now_ns += wait > 0 ? wait : 50 * 1000;
        CHECK(lb_driver_dispatch(w.loop, 0, INT64_MAX) >= 0);
    }
    CHECK(lb_driver_prepare(w.loop) < 0);
    for (size_t i = 0; i < w.n_cbs; i++)
        CHECK(w.cbs[i].ran || w.cbs[i].cancelled);
    for (size_t i = 0; i < w.n_tasks; i++) {
        const task_rec *t = &w.tasks[i];
        /* Only a task awaiting a future nobody completes is left; one
         * cancelled before it first ran ended without running. */
        if (t->ended)
            continue;
        if (t->cancel_requested)
            CHECK(!t->started && lb_task_is_done(t->task));
        else
            CHECK(t->kind == T_AWAIT && w.futs[t->future].state == F_PENDING);
    }
}

static void check_tasks(void) {
    for (size_t i = 0; i < w.n_tasks; i++) {
        const task_rec *t = &w.tasks[i];
        CHECK(lb_task_is_done(t->task));
        int r = lb_future_result(lb_task_future(t->task), NULL);
        if (t->ended)
            CHECK(r == t->status);
        else
            CHECK(r == -ECANCELED); /* cancelled before it first ran */
    }
}

/* Every error is read before the futures go, and every task ends when
 * cancelled: nothing may be reported. */
static void no_reports(lb_loop *loop, const lb_exception_context *context, void *data) {
    (void)loop;
    (void)data;
    fprintf(stderr, "fuzz-loop: unexpected report: %s\n", context->message);
    abort();
}

static void teardown(void) {
    for (size_t i = 0; i < w.n_cbs; i++)
        lb_handle_unref(w.cbs[i].handle);
    for (size_t i = 0; i < w.n_tasks; i++)
        lb_task_unref(w.tasks[i].task);
    for (size_t i = 0; i < w.n_futs; i++) {
        (void)lb_future_result(w.futs[i].future, NULL); /* errors retrieved */
        lb_future_unref(w.futs[i].future);
    }
    lb_loop_unref(w.loop);
}

enum {
    OP_CALL_SOON,
    OP_CALL_LATER,
    OP_CANCEL_HANDLE,
    OP_ADVANCE,
    OP_ITERATE,
    OP_NEW_FUTURE,
    OP_RESOLVE,
    OP_FAIL,
    OP_CANCEL_FUTURE,
    OP_SPAWN_AWAIT,
    OP_SPAWN_SLEEP,
    OP_CANCEL_TASK,
    OP_CLOSE,
    OP_COUNT
};

/* Bytes of argument each operation reads after its own byte. */
static const uint8_t arg_bytes[OP_COUNT] = {
    [OP_CALL_SOON] = 0,    [OP_CALL_LATER] = 1,   [OP_CANCEL_HANDLE] = 1, [OP_ADVANCE] = 3,
    [OP_ITERATE] = 0,      [OP_NEW_FUTURE] = 0,   [OP_RESOLVE] = 1,       [OP_FAIL] = 1,
    [OP_CANCEL_FUTURE] = 1, [OP_SPAWN_AWAIT] = 1, [OP_SPAWN_SLEEP] = 1,   [OP_CANCEL_TASK] = 1,
    [OP_CLOSE] = 0,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    memset(&w, 0, sizeof w);
    lb__test_clock_now_ns = START_NS;
    CHECK(lb_loop_new(&w.loop, lb_driver_native()) == 0);
    CHECK(lb_loop_set_exception_handler(w.loop, no_reports, NULL) == 0);

    size_t pos = 0;
    while (pos < size) {
        int op = data[pos++] % OP_COUNT;
        if (size - pos < arg_bytes[op])
            break;
        const uint8_t *arg = data + pos;
        pos += arg_bytes[op];
        switch (op) {
        case OP_CALL_SOON:
            schedule(CB_SOON, 0);
            break;
        case OP_CALL_LATER:
            schedule(CB_TIMER, arg[0]);
            break;
        case OP_CANCEL_HANDLE:
            cancel_callback(arg[0]);
            break;
        case OP_ADVANCE:
            advance(arg);
            break;
        case OP_ITERATE:
            iterate();
            break;
        case OP_NEW_FUTURE:
            new_future();
            break;
        case OP_RESOLVE:
            complete_future(F_RESULT, arg[0]);
            break;
        case OP_FAIL:
            complete_future(F_ERROR, arg[0]);
            break;
        case OP_CANCEL_FUTURE:
            complete_future(F_CANCELLED, arg[0]);
            break;
        case OP_SPAWN_AWAIT:
            spawn(T_AWAIT, arg[0]);
            break;
        case OP_SPAWN_SLEEP:
            spawn(T_SLEEP, arg[0]);
            break;
        case OP_CANCEL_TASK:
            cancel_task(arg[0]);
            break;
        case OP_CLOSE:
            close_loop();
            break;
        }
        check_futures();
    }
    if (!w.closed)
        drain();
    check_futures();
    close_loop();
    check_futures();
    check_tasks();
    teardown();
    return 0;
}
