/* SPDX-License-Identifier: MIT */
/* Tk's modal waits keep loopbridge running (under Xvfb): a tk_messageBox
 * opened from a callback and from a task, `tkwait window` on a dialog,
 * `tkwait variable`, and `update` in a long callback. Each test has a
 * task tick every 10 ms and a timer every 10 ms, counts their ticks
 * while the modal wait lasts, and ends the wait from loopbridge code
 * (pressing the message box's OK button, destroying the dialog, setting
 * the variable) once they ticked: the wait ends only if they ran. */
#include "tk-fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tk.h>

typedef struct modal {
    Tcl_Interp *interp;
    lb_loop *loop;
    tk_ticks ticks;
    const char *open;  /* the script that waits */
    const char *close; /* the script that ends the wait */
    bool closed;
    bool task_went_on;
} modal;

static Tcl_Interp *tk_app_new(void) {
    Tcl_Interp *interp = tk_interp_new();
    if (Tcl_Init(interp) != TCL_OK || Tk_Init(interp) != TCL_OK)
        fail_msg("Tk: %s (no display?)", Tcl_GetStringResult(interp));
    tk_eval(interp, "label .l -text {modal waits}; pack .l; update");
    return interp;
}

static void free_app(lb_loop *loop, Tcl_Interp *interp) {
    tk_eval(interp, "destroy .");
    tk_loop_free(loop, interp);
}

/* Ends the modal wait once both tickers ticked inside it. */
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
    /* The task goes on, and awaits again, after the modal wait. */
    if (lb_sleep(0.01) < 0)
        return -ECANCELED;
    m->task_went_on = true;
    lb_loop_stop(lb_loop_get_running());
    return 0;
}

static void give_up(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("the modal wait never ended: loopbridge did not run inside it");
}

/* Runs one modal wait, from a callback or from a task. */
static void run_modal(const char *open, const char *close, bool from_task, const char *where) {
    Tcl_Interp *interp = tk_app_new();
    lb_loop *loop = tk_loop_new(interp);
    modal m = {.interp = interp, .loop = loop, .open = open, .close = close};
    tk_ticks_start(loop, &m.ticks);
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
        assert_true(m.task_went_on);
    tk_ticks_check(&m.ticks, where);
    lb_handle_cancel(bound);
    lb_handle_unref(bound);
    lb_task_unref(opener);
    free_app(loop, interp);
}

/* tk_messageBox on X11 is Tk's own dialog, .__tk__messagebox, with one
 * button per answer; the closer presses OK. */
#define MESSAGEBOX "set ::answer [tk_messageBox -message {Still running?} -type ok]"
#define PRESS_OK ".__tk__messagebox.ok invoke"

static void test_tk_modal_messagebox_from_callback(void **state) {
    (void)state;
    run_modal(MESSAGEBOX, PRESS_OK, false, "tk_messageBox from a callback");
}

static void test_tk_modal_messagebox_from_task(void **state) {
    (void)state;
    run_modal(MESSAGEBOX, PRESS_OK, true, "tk_messageBox from a task");
}

static void test_tk_modal_tkwait_window(void **state) {
    (void)state;
    run_modal("toplevel .dialog; label .dialog.l -text {A dialog}; pack .dialog.l;"
              "grab .dialog; tkwait window .dialog",
              "destroy .dialog", false, "tkwait window");
}

static void test_tk_modal_tkwait_variable(void **state) {
    (void)state;
    run_modal("tkwait variable ::answer", "set ::answer yes", true, "tkwait variable");
}

/* A long callback that calls `update` now and then, as Tk code that
 * keeps its window alive does; a loopbridge task changes a label that
 * Tk redraws inside the updates. */
typedef struct busy {
    Tcl_Interp *interp;
    tk_ticks ticks;
    int relabels;
} busy;

static int relabel(lb_task *task, void *data) {
    busy *b = data;
    (void)task;
    for (;;) {
        if (lb_sleep(0.02) < 0)
            return -ECANCELED;
        b->relabels++;
        tk_eval(b->interp, ".l configure -text \"relabelled [incr ::relabels]\"");
    }
}

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

static void test_tk_modal_update_in_callback(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_app_new();
    lb_loop *loop = tk_loop_new(interp);
    busy b = {.interp = interp};
    tk_ticks_start(loop, &b.ticks);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, relabel, &b, NULL, &t), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.02, busy_with_update, &b, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    tk_ticks_check(&b.ticks, "update in a callback");
    printf("# the label changed %d times\n", b.relabels);
    assert_true(b.relabels >= 5);
    lb_task_cancel(t);
    lb_task_unref(t);
    free_app(loop, interp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tk_modal_messagebox_from_callback),
        cmocka_unit_test(test_tk_modal_messagebox_from_task),
        cmocka_unit_test(test_tk_modal_tkwait_window),
        cmocka_unit_test(test_tk_modal_tkwait_variable),
        cmocka_unit_test(test_tk_modal_update_in_callback),
    };
    return cmocka_run_group_tests_name("tk_modal", tests, NULL, NULL);
}
