/* SPDX-License-Identifier: MIT */
#include "tk-fixture.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

bool tk_timing_checked(void) {
    const char *p = getenv("LD_PRELOAD");
    return !(p && strstr(p, "vgpreload"));
}

bool tk_instrumented(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#else
    return false;
#endif
}

Tcl_Interp *tk_interp_new(void) {
    Tcl_FindExecutable(NULL);
    Tcl_Interp *interp = Tcl_CreateInterp();
    assert_non_null(interp);
    return interp;
}

lb_loop *tk_loop_new(Tcl_Interp *interp) {
    lb_loop *loop = NULL;
    int r = lb_tk_loop_new(&loop, interp);
    if (r < 0)
        fail_msg("lb_tk_loop_new: %s", lb_error_detail());
    assert_string_equal(lb_loop_driver_name(loop), "tk");
    return loop;
}

void tk_loop_free(lb_loop *loop, Tcl_Interp *interp) {
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
    if (interp)
        Tcl_DeleteInterp(interp);
}

void tk_eval(Tcl_Interp *interp, const char *script) {
    if (Tcl_EvalEx(interp, script, -1, TCL_EVAL_GLOBAL) != TCL_OK)
        fail_msg("Tcl: %s\nin: %s", Tcl_GetStringResult(interp), script);
}

typedef struct watchdog {
    Tcl_Interp *interp;
    sem_t done;
} watchdog;

static void *watch(void *data) {
    watchdog *w = data;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    while (sem_timedwait(&w->done, &until) < 0)
        if (errno == ETIMEDOUT) {
            Tcl_CancelEval(w->interp, NULL, NULL, 0);
            break;
        }
    return NULL;
}

void tk_eval_update(Tcl_Interp *interp) {
    watchdog w = {.interp = interp};
    assert_int_equal(sem_init(&w.done, 0, 0), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch, &w), 0);
    int r = Tcl_EvalEx(interp, "update", -1, TCL_EVAL_GLOBAL);
    sem_post(&w.done);
    pthread_join(th, NULL);
    sem_destroy(&w.done);
    if (r != TCL_OK)
        fail_msg("`update` did not return in 20 s: %s", Tcl_GetStringResult(interp));
}

long tk_get_long(Tcl_Interp *interp, const char *name) {
    Tcl_Obj *v = Tcl_GetVar2Ex(interp, name, NULL, TCL_GLOBAL_ONLY);
    long n = 0;
    if (v && Tcl_GetLongFromObj(NULL, v, &n) != TCL_OK)
        n = 0;
    return n;
}

int64_t tk_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wake_only(void *data) {
    (void)data;
}

void tk_run_until(const volatile bool *flag, double timeout_s) {
    int64_t give_up = tk_now_ns() + (int64_t)(timeout_s * 1e9);
    /* A Tcl timer bounds each wait, so a missed wakeup fails the test
     * instead of hanging it. */
    while (!*flag) {
        Tcl_TimerToken bound = Tcl_CreateTimerHandler(100, wake_only, NULL);
        Tcl_DoOneEvent(TCL_ALL_EVENTS);
        Tcl_DeleteTimerHandler(bound);
        if (tk_now_ns() > give_up)
            fail_msg("nothing happened for %.0f s", timeout_s);
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t tk_percentile(int64_t *v, size_t n, double p) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_i64);
    size_t i = (size_t)(p / 100.0 * (double)n + 0.999999);
    return v[i ? i - 1 : 0];
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void count_nothing(void *data, int flags) {
    (void)data;
    (void)flags;
}

static void count_wakeup(void *data, int flags) {
    (void)flags;
    (*(long *)data)++;
}

static void set_done(void *data) {
    *(bool *)data = true;
}

tk_idle_cost tk_measure_idle(lb_loop *loop, double seconds) {
    /* What was pending from the setup runs first. */
    while (Tcl_DoOneEvent(TCL_ALL_EVENTS | TCL_DONT_WAIT))
        ;
    lb_loop_stats s0, s1;
    assert_int_equal(lb_loop_get_stats(loop, &s0), 0);
    long wakeups = 0;
    volatile bool done = false;
    Tcl_CreateEventSource(count_nothing, count_wakeup, &wakeups);
    Tcl_TimerToken end = Tcl_CreateTimerHandler((int)(seconds * 1000), set_done, (void *)&done);
    /* The whole process (Tcl's notifier thread included), as the
     * benchmark's G2 measures it. */
    double c0 = cpu_s();
    while (!done)
        Tcl_DoOneEvent(TCL_ALL_EVENTS);
    double used = cpu_s() - c0;
    Tcl_DeleteTimerHandler(end);
    Tcl_DeleteEventSource(count_nothing, count_wakeup, &wakeups);
    assert_int_equal(lb_loop_get_stats(loop, &s1), 0);
    return (tk_idle_cost){
        .cpu_s = used,
        .wakeups = wakeups,
        .dispatches = (long)(s1.iterations - s0.iterations),
    };
}

/* A task and a timer ticking every 10 ms, counting their ticks while
 * `inside` is set (while a nested event loop runs). */
typedef struct ticks {
    bool inside;
    int task_ticks_inside;
    int timer_ticks_inside;
    lb_task *ticker;
    lb_handle *timer; /* the next tick, cancelled when the test is done */
} ticks;

static int ticking_task(lb_task *task, void *data) {
    ticks *t = data;
    (void)task;
    for (;;) {
        if (lb_sleep(0.01) < 0)
            return -ECANCELED;
        if (t->inside)
            t->task_ticks_inside++;
    }
}

static void ticking_timer(lb_loop *loop, void *data) {
    ticks *t = data;
    if (t->inside)
        t->timer_ticks_inside++;
    t->timer = lb_handle_unref(t->timer);
    lb_loop_call_later(loop, 0.01, ticking_timer, t, &t->timer);
}

static void ticks_start(lb_loop *loop, ticks *t) {
    assert_int_equal(lb_task_spawn(loop, ticking_task, t, NULL, &t->ticker), 0);
    assert_int_equal(lb_loop_call_soon(loop, ticking_timer, t, &t->timer), 0);
}

static void ticks_check(ticks *t, const char *where) {
    printf("# %s: %d task ticks, %d timer ticks inside\n", where, t->task_ticks_inside,
           t->timer_ticks_inside);
    assert_true(t->task_ticks_inside >= 5);
    assert_true(t->timer_ticks_inside >= 5);
    /* Both stop here: t lives on the caller's stack. */
    lb_task_cancel(t->ticker);
    t->ticker = lb_task_unref(t->ticker);
    lb_handle_cancel(t->timer);
    t->timer = lb_handle_unref(t->timer);
}

typedef struct modal {
    Tcl_Interp *interp;
    ticks ticks;
    const char *open;
    const char *close;
    bool closed;
    bool opener_went_on;
} modal;

static void wait_modal(modal *m) {
    m->ticks.inside = true;
    tk_eval(m->interp, m->open);
    m->ticks.inside = false;
}

static void open_from_callback(lb_loop *loop, void *data) {
    wait_modal(data);
    lb_loop_stop(loop);
}

static int open_from_task(lb_task *task, void *data) {
    modal *m = data;
    (void)task;
    if (lb_sleep(0.02) < 0)
        return -ECANCELED;
    wait_modal(m);
    if (lb_sleep(0.01) < 0)
        return -ECANCELED;
    m->opener_went_on = true;
    lb_loop_stop(lb_loop_get_running());
    return 0;
}

static int closer(lb_task *task, void *data) {
    modal *m = data;
    (void)task;
    while (m->ticks.task_ticks_inside < 10 || m->ticks.timer_ticks_inside < 10)
        if (lb_sleep(0.01) < 0)
            return -ECANCELED;
    tk_eval(m->interp, m->close);
    m->closed = true;
    return 0;
}

static void give_up(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("the modal wait never ended: loopbridge did not run inside it");
}

void tk_run_modal(Tcl_Interp *interp, lb_loop *loop, const char *open, const char *close,
                  bool from_task, const char *where) {
    modal m = {.interp = interp, .open = open, .close = close};
    ticks_start(loop, &m.ticks);
    assert_int_equal(lb_task_spawn(loop, closer, &m, NULL, NULL), 0);
    lb_handle *bound = NULL;
    assert_int_equal(lb_loop_call_later(loop, 20, give_up, NULL, &bound), 0);
    lb_task *opener = NULL;
    if (from_task)
        assert_int_equal(lb_task_spawn(loop, open_from_task, &m, NULL, &opener), 0);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.02, open_from_callback, &m, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_true(m.closed);
    if (from_task)
        assert_true(m.opener_went_on);
    ticks_check(&m.ticks, where);
    lb_handle_cancel(bound);
    lb_handle_unref(bound);
    lb_task_unref(opener);
}

typedef struct busy {
    Tcl_Interp *interp;
    ticks ticks;
} busy;

static void busy_with_update(lb_loop *loop, void *data) {
    busy *b = data;
    int64_t end = tk_now_ns() + 300 * 1000 * 1000;
    b->ticks.inside = true;
    while (tk_now_ns() < end) {
        int64_t slice = tk_now_ns() + 2 * 1000 * 1000;
        while (tk_now_ns() < slice)
            ; /* work */
        tk_eval(b->interp, "update");
    }
    b->ticks.inside = false;
    lb_loop_stop(loop);
}

void tk_run_busy_with_update(Tcl_Interp *interp, lb_loop *loop, const char *where) {
    busy b = {.interp = interp};
    ticks_start(loop, &b.ticks);
    assert_int_equal(lb_loop_call_later(loop, 0.02, busy_with_update, &b, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    ticks_check(&b.ticks, where);
}
