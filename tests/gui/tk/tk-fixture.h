/* SPDX-License-Identifier: MIT */
#ifndef LB_TK_FIXTURE_H
#define LB_TK_FIXTURE_H

/* What the Tk bridge's tests share: an interpreter and a loop in it,
 * Tcl scripts that must succeed, the measures of an idle notifier (CPU,
 * wakeups, dispatches) and of latencies, and when timing is asserted. */

#include <loopbridge/tk.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Timing bounds are loose and meant for a normal or sanitizer build;
 * under valgrind (20-50x slower) figures are printed, not asserted. */
bool tk_timing_checked(void);

/* True in a sanitizer build, where throughput-bound figures are about
 * ten times worse and latency percentiles are not asserted. */
bool tk_instrumented(void);

/* A new interpreter (Tcl only: no Tk, no display) and a loop in it whose
 * errors go to its bgerror. */
Tcl_Interp *tk_interp_new(void);
lb_loop *tk_loop_new(Tcl_Interp *interp);

/* Closes and unrefs the loop (asserting both succeed), then deletes the
 * interpreter. */
void tk_loop_free(lb_loop *loop, Tcl_Interp *interp);

/* Evaluates a script at global level; fails the test with Tcl's message
 * if it does not return TCL_OK. */
void tk_eval(Tcl_Interp *interp, const char *script);

/* Evaluates `update` at global level under a watchdog thread that
 * cancels it (Tcl_CancelEval, which `update` checks between passes)
 * after 20 s; fails the test if it did not return TCL_OK. */
void tk_eval_update(Tcl_Interp *interp);

/* Reads a global variable as an integer (0 when unset). */
long tk_get_long(Tcl_Interp *interp, const char *name);

/* Runs Tcl_DoOneEvent(TCL_ALL_EVENTS) until *flag becomes true; fails
 * the test after timeout_s seconds (a generous bound). */
void tk_run_until(const volatile bool *flag, double timeout_s);

/* Monotonic time. */
int64_t tk_now_ns(void);

/* The p-th percentile (0..100, nearest rank) of n samples; sorts them. */
int64_t tk_percentile(int64_t *v, size_t n, double p);

/* What an idle stretch of the notifier cost. */
typedef struct tk_idle_cost {
    double cpu_s;    /* user + system CPU of the process */
    long wakeups;    /* returns from Tcl_WaitForEvent */
    long dispatches; /* the loop's iterations */
} tk_idle_cost;

/* Runs the notifier (Tcl_DoOneEvent) for `seconds` of wall time, ended
 * by a Tcl `after` timer, and measures it. */
tk_idle_cost tk_measure_idle(lb_loop *loop, double seconds);

/* Runs a modal wait that loopbridge must keep running in: a task and a
 * timer tick every 10 ms; `open` (a Tcl script that waits: vwait,
 * tkwait, tk_messageBox) runs from a loop callback, or from a task when
 * from_task; once both tickers ticked 10 times inside the wait, a task
 * evaluates `close` (a script that ends it), so the wait ends only if the
 * loop ran inside it. A task that opened the wait must go on, and await
 * again, after it. Runs the loop (lb_loop_run_forever) until then, and
 * fails the test if the wait has not ended after 20 s. */
void tk_run_modal(Tcl_Interp *interp, lb_loop *loop, const char *open, const char *close,
                  bool from_task, const char *where);

/* A loop callback works for 0.3 s and evaluates `update` every 2 ms, as
 * Tk code that keeps its window alive does; a task and a timer ticking
 * every 10 ms must tick at least 5 times each inside it. */
void tk_run_busy_with_update(Tcl_Interp *interp, lb_loop *loop, const char *where);

#endif
