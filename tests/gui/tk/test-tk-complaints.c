/* SPDX-License-Identifier: MIT */
/* What users of other asyncio-in-Tk bridges complain about, one test
 * each, on the Tk driver with Tcl only:
 *  - the bridge polls the Tk loop every 10 ms (100 Hz) even when idle:
 *    here an idle loop wakes Tcl's notifier not once; and what an event
 *    handler hands the loop waits up to a poll's 10 ms there: here it
 *    runs in the same pass of Tcl's loop;
 *  - "event loop already running" when code running in the loop starts
 *    it again: here that fails with -EBUSY and a clear message, never
 *    re-enters, and the loop goes on; starting it from plain Tcl code (a
 *    Tk command, as the seed's button handler does) works;
 *  - "Task was destroyed but it is pending!" at shutdown: here closing
 *    the loop cancels live tasks, lets them clean up, and logs nothing.
 * The fourth, tasks frozen while a message box is open, needs a display:
 * test-tk-modal.c. */
#include "tk-fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Polling at 100 Hz                                                   */
/* ------------------------------------------------------------------ */

static int wait_forever(lb_task *task, void *data) {
    (void)task;
    return lb_await(data, NULL);
}

static void never(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("a timer a minute away fired");
}

/* An application waiting for a click: a task awaits a future nothing
 * completes yet, a timer is due in a minute. A second of Tcl's loop: no
 * wakeup but the one of the `after` that ends it, no dispatch. */
static void test_complaint_polling_at_100hz(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    lb_future *click = NULL;
    assert_int_equal(lb_future_new(loop, &click), 0);
    lb_task *waiter = NULL;
    assert_int_equal(lb_task_spawn(loop, wait_forever, click, NULL, &waiter), 0);
    assert_int_equal(lb_loop_call_later(loop, 60, never, NULL, NULL), 0);
    tk_idle_cost c = tk_measure_idle(loop, 1.0);
    printf("# idle second: %ld wakeups, %ld dispatches, %.2f ms CPU\n", c.wakeups, c.dispatches,
           c.cpu_s * 1000);
    assert_true(c.wakeups <= 1);
    assert_int_equal(c.dispatches, 0);
    lb_task_cancel(waiter);
    lb_task_unref(waiter);
    lb_future_unref(click);
    tk_loop_free(loop, interp);
}

/* What a Tcl event handler (the stand-in for a click's binding) hands
 * the loop: the lag until the loop's callback runs. */
enum { LAG_SAMPLES = 200 };

typedef struct lag_probe {
    lb_loop *loop;
    int64_t sent_ns;
    int64_t lag_ns[LAG_SAMPLES];
    int n;
    volatile bool done;
} lag_probe;

static void lag_arrived(lb_loop *loop, void *data) {
    lag_probe *p = data;
    (void)loop;
    p->lag_ns[p->n++] = tk_now_ns() - p->sent_ns;
    p->done = p->n == LAG_SAMPLES;
}

/* Tcl command `lag_probe`: what a binding does to start async work. */
static int lag_probe_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    lag_probe *p = data;
    (void)interp;
    (void)objc;
    (void)objv;
    p->sent_ns = tk_now_ns();
    return lb_loop_call_soon(p->loop, lag_arrived, p, NULL) == 0 ? TCL_OK : TCL_ERROR;
}

/* Handlers fire from Tcl timers 2 ms apart (an event of the notifier, as
 * a click is); each schedules a loop callback, which must run before
 * Tcl's loop waits again: well under the 5 ms a 100 Hz poll averages. */
static void test_complaint_input_lag(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lag_probe p = {.loop = tk_loop_new(interp)};
    Tcl_CreateObjCommand(interp, "lag_probe", lag_probe_cmd, &p, NULL);
    tk_eval(interp, "proc probe_next {left} {"
                    "  lag_probe;"
                    "  if {$left > 1} { after 2 [list probe_next [expr {$left - 1}]] }"
                    "}");
    char script[64];
    snprintf(script, sizeof script, "after 2 {probe_next %d}", LAG_SAMPLES);
    tk_eval(interp, script);
    tk_run_until(&p.done, 30.0);
    int64_t median = tk_percentile(p.lag_ns, LAG_SAMPLES, 50);
    int64_t p99 = tk_percentile(p.lag_ns, LAG_SAMPLES, 99);
    printf("# handler to loop callback: median %.1f us, p99 %.1f us over %d events\n",
           (double)median / 1e3, (double)p99 / 1e3, LAG_SAMPLES);
    if (tk_timing_checked()) {
        assert_true(median < 1000 * 1000);
        assert_true(p99 < 5 * 1000 * 1000);
    }
    tk_loop_free(p.loop, interp);
}

/* ------------------------------------------------------------------ */
/* "Event loop already running"                                        */
/* ------------------------------------------------------------------ */

typedef struct rerun {
    lb_loop *loop;
    int from_callback_forever, from_callback_until, from_task;
    char message[256];
    bool after_ran;
    volatile bool done;
} rerun;

static void after_rerun(lb_loop *loop, void *data) {
    rerun *r = data;
    (void)loop;
    r->after_ran = true;
    r->done = true;
}

static int rerun_task(lb_task *task, void *data) {
    rerun *r = data;
    r->from_task = lb_loop_run_until_complete(r->loop, lb_task_future(task));
    return 0;
}

static void rerun_callback(lb_loop *loop, void *data) {
    rerun *r = data;
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    r->from_callback_forever = lb_loop_run_forever(loop);
    snprintf(r->message, sizeof r->message, "%s", lb_error_detail());
    r->from_callback_until = lb_loop_run_until_complete(loop, f);
    lb_future_cancel(f);
    lb_future_unref(f);
    assert_int_equal(lb_task_spawn(loop, rerun_task, r, NULL, NULL), 0);
    /* The loop goes on: what is scheduled next still runs. */
    assert_int_equal(lb_loop_call_later(loop, 0.01, after_rerun, r, NULL), 0);
}

/* Tcl drives the loop (as Tk_MainLoop does), and a callback and a task
 * try to run it. */
static void test_complaint_event_loop_already_running(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    rerun r = {.loop = loop};
    assert_int_equal(lb_loop_call_soon(loop, rerun_callback, &r, NULL), 0);
    tk_run_until(&r.done, 10);
    printf("# %s\n", r.message);
    assert_int_equal(r.from_callback_forever, -EBUSY);
    assert_int_equal(r.from_callback_until, -EBUSY);
    assert_int_equal(r.from_task, -EBUSY);
    assert_non_null(strstr(r.message, "already running"));
    assert_true(r.after_ran);
    tk_loop_free(loop, interp);
}

/* The seed's button handler runs the loop until its task is done. From
 * a Tcl command (not from the loop's own code) that is allowed: it is a
 * nested event loop, as vwait is, and Tcl events keep coming meanwhile. */
static int sleepy(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(0.2);
}

static int run_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    lb_loop *loop = data;
    (void)objc;
    (void)objv;
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, sleepy, NULL, NULL, &t), 0);
    int r = lb_loop_run_until_complete(loop, lb_task_future(t));
    Tcl_SetObjResult(interp, Tcl_NewIntObj(r == 0 && lb_future_result(lb_task_future(t), NULL) == 0));
    lb_task_unref(t);
    return TCL_OK;
}

static void test_complaint_run_from_tcl_command_works(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    Tcl_CreateObjCommand(interp, "run_task", run_cmd, loop, NULL);
    tk_eval(interp, "set ticks 0; proc tick {} { incr ::ticks; after 10 tick }; tick\n"
                    "set ok [run_task]; after cancel tick");
    printf("# Tcl ticks while the command ran the loop: %ld\n", tk_get_long(interp, "ticks"));
    assert_int_equal(tk_get_long(interp, "ok"), 1);
    assert_true(tk_get_long(interp, "ticks") >= 5);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* "Task was destroyed but it is pending!"                             */
/* ------------------------------------------------------------------ */

typedef struct shutdown_state {
    int cleaned_up;
    int logged;
    char first_log[256];
} shutdown_state;

static void capture_log(lb_log_level level, const char *message, void *data) {
    shutdown_state *s = data;
    (void)level;
    if (s->logged++ == 0)
        snprintf(s->first_log, sizeof s->first_log, "%s", message);
}

static int long_job(lb_task *task, void *data) {
    shutdown_state *s = data;
    (void)task;
    int r = lb_sleep(60);
    /* Cancelled by close: the task cleans up, and may even await. */
    if (r == -ECANCELED && lb_sleep(0.01) == 0)
        s->cleaned_up++;
    return r;
}

static void test_complaint_task_destroyed_but_pending(void **state) {
    (void)state;
    shutdown_state s = {0};
    lb_set_log_handler(capture_log, &s);
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_eval(interp, "proc bgerror {msg} { lappend ::errors $msg }");
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_task_spawn(loop, long_job, &s, NULL, NULL), 0);
    /* The application's window closes while the tasks run. */
    tk_eval(interp, "after 100 {set ::closed 1}; vwait ::closed");
    assert_int_equal(lb_loop_task_count(loop), 10);
    assert_int_equal(lb_loop_close(loop), 0);
    tk_eval(interp, "update");
    lb_set_log_handler(NULL, NULL);
    printf("# close: %d tasks cleaned up, %d log messages%s%s\n", s.cleaned_up, s.logged,
           s.logged ? ": " : "", s.first_log);
    assert_int_equal(s.cleaned_up, 10);
    assert_int_equal(s.logged, 0);
    assert_null(Tcl_GetVar(interp, "errors", TCL_GLOBAL_ONLY));
    lb_loop_unref(loop);
    Tcl_DeleteInterp(interp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complaint_polling_at_100hz),
        cmocka_unit_test(test_complaint_input_lag),
        cmocka_unit_test(test_complaint_event_loop_already_running),
        cmocka_unit_test(test_complaint_run_from_tcl_command_works),
        cmocka_unit_test(test_complaint_task_destroyed_but_pending),
    };
    int failed = cmocka_run_group_tests_name("tk_complaints", tests, NULL, NULL);
    Tcl_Finalize();
    return failed;
}
