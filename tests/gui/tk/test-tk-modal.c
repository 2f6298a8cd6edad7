/* SPDX-License-Identifier: MIT */
/* Tk's modal waits keep loopbridge running (under Xvfb): a tk_messageBox
 * opened from a callback and from a task, `tkwait window` on a grabbed
 * dialog, `tkwait variable`, and `update` in a long callback while a task
 * relabels a widget; Tk's `update` returning while a task yields for
 * ever. In each modal wait, a task and a timer tick every 10 ms, and
 * loopbridge code ends the wait (pressing the message box's OK button,
 * destroying the dialog, setting the variable) only once they ticked
 * inside it: a frozen loop never ends it. */
#include "tk-fixture.h"

#include <errno.h>
#include <stdio.h>
#include <tk.h>

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

static void run_modal(const char *open, const char *close, bool from_task, const char *where) {
    Tcl_Interp *interp = tk_app_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_run_modal(interp, loop, open, close, from_task, where);
    free_app(loop, interp);
}

/* tk_messageBox on X11 is Tk's own dialog, .__tk__messagebox, with one
 * button per answer. */
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

/* While a callback calls `update` now and then, a task relabels a widget
 * every 20 ms: Tk redraws it inside the updates. */
static int relabel(lb_task *task, void *data) {
    Tcl_Interp *interp = data;
    (void)task;
    for (;;) {
        if (lb_sleep(0.02) < 0)
            return -ECANCELED;
        tk_eval(interp, ".l configure -text \"relabelled [incr ::relabels]\"");
    }
}

static void test_tk_modal_update_in_callback(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_app_new();
    lb_loop *loop = tk_loop_new(interp);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, relabel, interp, NULL, &t), 0);
    tk_run_busy_with_update(interp, loop, "update in a callback");
    printf("# the label changed %ld times\n", tk_get_long(interp, "relabels"));
    assert_true(tk_get_long(interp, "relabels") >= 5);
    lb_task_cancel(t);
    lb_task_unref(t);
    free_app(loop, interp);
}

/* Tk's own `update` (it syncs the displays, then tries one more pass)
 * while a task yields for ever and a timer relabels a widget every
 * 10 ms: 200 updates in a row each return, the label is redrawn inside
 * them, and the task goes on between them. */
static long spins;

static int spin(lb_task *task, void *data) {
    (void)task;
    (void)data;
    for (;;) {
        if (lb_yield() < 0)
            return -ECANCELED;
        spins++;
    }
}

static lb_handle *next_relabel;

static void relabel_every_10ms(lb_loop *loop, void *data) {
    Tcl_Interp *interp = data;
    tk_eval(interp, ".l configure -text \"relabelled [incr ::relabels]\"");
    next_relabel = lb_handle_unref(next_relabel);
    assert_int_equal(lb_loop_call_later(loop, 0.01, relabel_every_10ms, interp, &next_relabel), 0);
}

static void test_tk_modal_update_returns_on_a_busy_loop(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_app_new();
    lb_loop *loop = tk_loop_new(interp);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, spin, NULL, NULL, &t), 0);
    assert_int_equal(lb_loop_call_soon(loop, relabel_every_10ms, interp, NULL), 0);
    int64_t end = tk_now_ns() + 500 * 1000 * 1000;
    long updates = 0;
    while (updates < 200 || tk_now_ns() < end) {
        long before = spins;
        tk_eval_update(interp);
        assert_true(spins > before);
        updates++;
    }
    printf("# %ld updates, %ld task steps, the label changed %ld times\n", updates, spins,
           tk_get_long(interp, "relabels"));
    assert_true(tk_get_long(interp, "relabels") >= 5);
    lb_task_cancel(t);
    lb_task_unref(t);
    /* Closing the loop runs what is due while the task unwinds: the
     * label is gone by then. */
    lb_handle_cancel(next_relabel);
    next_relabel = lb_handle_unref(next_relabel);
    free_app(loop, interp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tk_modal_messagebox_from_callback),
        cmocka_unit_test(test_tk_modal_messagebox_from_task),
        cmocka_unit_test(test_tk_modal_tkwait_window),
        cmocka_unit_test(test_tk_modal_tkwait_variable),
        cmocka_unit_test(test_tk_modal_update_in_callback),
        cmocka_unit_test(test_tk_modal_update_returns_on_a_busy_loop),
    };
    return cmocka_run_group_tests_name("tk_modal", tests, NULL, NULL);
}
