/* SPDX-License-Identifier: MIT */
/* lb_tk_close_after(): a toplevel's close waits until its tasks unwound,
 * so their cleanup still finds its widgets (`winfo exists`), whether the
 * close comes from the window manager (its WM_DELETE_WINDOW handler run
 * from a Tcl `after`), from a loopbridge callback (where draining the
 * tasks by running the loop is refused with -EBUSY) or from a task; a
 * toplevel destroyed by other means still cancels the tasks. Under Xvfb. */
#include "tk-fixture.h"

#include <errno.h>
#include <stdio.h>
#include <tk.h>

typedef struct app {
    Tcl_Interp *interp;
    lb_loop *loop;
    lb_group *group;
    int started, unwound, saw_label;
    bool gone;
    int busy;
} app;

/* Sleeps until cancelled, unwinds across one more await, then writes its
 * last words into the label, if it still exists. */
static int job(lb_task *task, void *data) {
    (void)task;
    app *a = data;
    a->started++;
    int r = lb_sleep(3600);
    assert_int_equal(r, -ECANCELED);
    lb_task_uncancel(lb_task_current());
    assert_int_equal(lb_sleep(0.001), 0);
    if (tk_get_long(a->interp, "::gone") == 0) {
        tk_eval(a->interp, "set ::exists [winfo exists .top.l]");
        if (tk_get_long(a->interp, "::exists")) {
            tk_eval(a->interp, ".top.l configure -text Cancelled");
            a->saw_label++;
        }
    }
    a->unwound++;
    return -ECANCELED;
}

static int on_gone(ClientData data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    (void)interp;
    (void)objc;
    (void)objv;
    app *a = data;
    a->gone = true;
    return TCL_OK;
}

static void app_open(app *a, int jobs) {
    a->interp = tk_interp_new();
    if (Tcl_Init(a->interp) != TCL_OK || Tk_Init(a->interp) != TCL_OK)
        fail_msg("Tk: %s (no display?)", Tcl_GetStringResult(a->interp));
    a->loop = tk_loop_new(a->interp);
    Tcl_CreateObjCommand(a->interp, "gone", on_gone, a, NULL);
    tk_eval(a->interp, "wm withdraw .; toplevel .top; label .top.l -text Working; pack .top.l\n"
                       "set ::gone 0\n"
                       "bind .top <Destroy> {if {\"%W\" eq \".top\"} {set ::gone 1; gone}}\n"
                       "update");
    assert_int_equal(lb_group_new(a->loop, &a->group), 0);
    for (int i = 0; i < jobs; i++)
        assert_int_equal(lb_group_spawn(a->group, job, a, NULL, NULL), 0);
    assert_int_equal(lb_tk_close_after(a->interp, ".top", a->group, "app::close"), 0);
    tk_eval(a->interp, "set ::proto [wm protocol .top WM_DELETE_WINDOW]");
    assert_string_equal(Tcl_GetVar(a->interp, "::proto", TCL_GLOBAL_ONLY), "app::close");
    int64_t give_up = tk_now_ns() + 30 * (int64_t)1000000000;
    while (a->started < jobs && tk_now_ns() < give_up)
        Tcl_DoOneEvent(TCL_ALL_EVENTS | TCL_DONT_WAIT);
    assert_int_equal(a->started, jobs);
}

static void app_close(app *a) {
    tk_run_until(&a->gone, 30);
    /* The command went with the toplevel. */
    tk_eval(a->interp, "set ::cmds [llength [info commands app::close]]");
    assert_int_equal(tk_get_long(a->interp, "::cmds"), 0);
    a->group = lb_group_unref(a->group);
    tk_eval(a->interp, "destroy .");
    tk_loop_free(a->loop, a->interp);
}

static void test_tk_close_from_window_manager(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 3);
    /* What the window manager's close button does; asked twice. */
    tk_eval(a.interp, "after 0 {eval [wm protocol .top WM_DELETE_WINDOW]; "
                      "set ::kept [winfo exists .top]; "
                      "eval [wm protocol .top WM_DELETE_WINDOW]}");
    tk_run_until(&a.gone, 30);
    assert_int_equal(tk_get_long(a.interp, "::kept"), 1);
    assert_int_equal(a.unwound, 3);
    assert_int_equal(a.saw_label, 3);
    app_close(&a);
}

static void close_in_callback(lb_loop *loop, void *data) {
    app *a = data;
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    a->busy = lb_loop_run_until_complete(loop, f);
    lb_future_unref(f);
    tk_eval(a->interp, "app::close");
    assert_false(a->gone);
}

static void test_tk_close_from_loop_callback(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 2);
    assert_int_equal(lb_loop_call_soon(a.loop, close_in_callback, &a, NULL), 0);
    tk_run_until(&a.gone, 30);
    assert_int_equal(a.busy, -EBUSY);
    assert_int_equal(a.saw_label, 2);
    app_close(&a);
}

/* A job closes its own window (a Quit job): it is cancelled with the
 * others and they all unwind before the toplevel goes. */
static int closer(lb_task *task, void *data) {
    (void)task;
    app *a = data;
    tk_eval(a->interp, "app::close");
    int r = lb_sleep(3600);
    assert_int_equal(r, -ECANCELED);
    assert_false(a->gone);
    a->unwound++;
    return r;
}

static void test_tk_close_from_task(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 2);
    assert_int_equal(lb_group_spawn(a.group, closer, &a, NULL, NULL), 0);
    tk_run_until(&a.gone, 30);
    assert_int_equal(a.unwound, 3);
    assert_int_equal(a.saw_label, 2);
    app_close(&a);
}

static void set_flag(lb_loop *loop, void *data) {
    (void)loop;
    *(bool *)data = true;
}

/* `destroy .top` from a script: nothing can keep the widgets, but the
 * jobs are cancelled (and find the label gone), and the command goes. */
static void test_tk_close_destroyed_by_script(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 2);
    tk_eval(a.interp, "destroy .top");
    assert_true(a.gone);
    int64_t give_up = tk_now_ns() + 30 * (int64_t)1000000000;
    while (a.unwound < 2 && tk_now_ns() < give_up)
        Tcl_DoOneEvent(TCL_ALL_EVENTS | TCL_DONT_WAIT);
    assert_int_equal(a.unwound, 2);
    assert_int_equal(a.saw_label, 0);
    bool after = false;
    assert_int_equal(lb_loop_call_soon(a.loop, set_flag, &after, NULL), 0);
    tk_run_until(&after, 30);
    app_close(&a);
}

static void test_tk_close_bad_arguments(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 0);
    assert_int_equal(lb_tk_close_after(NULL, ".top", a.group, "x"), -EINVAL);
    assert_int_equal(lb_tk_close_after(a.interp, "top", a.group, "x"), -EINVAL);
    assert_int_equal(lb_tk_close_after(a.interp, ".top", NULL, "x"), -EINVAL);
    assert_int_equal(lb_tk_close_after(a.interp, ".top", a.group, ""), -EINVAL);
    /* Tcl refuses a window that does not exist: no command is left. */
    assert_int_equal(lb_tk_close_after(a.interp, ".nowhere", a.group, "nowhere::close"), -EINVAL);
    tk_eval(a.interp, "set ::cmds [llength [info commands nowhere::close]]");
    assert_int_equal(tk_get_long(a.interp, "::cmds"), 0);
    /* An empty group: the toplevel goes after one more iteration. */
    tk_eval(a.interp, "app::close");
    assert_false(a.gone);
    app_close(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tk_close_from_window_manager),
        cmocka_unit_test(test_tk_close_from_loop_callback),
        cmocka_unit_test(test_tk_close_from_task),
        cmocka_unit_test(test_tk_close_destroyed_by_script),
        cmocka_unit_test(test_tk_close_bad_arguments),
    };
    return cmocka_run_group_tests_name("tk-close", tests, NULL, NULL);
}
