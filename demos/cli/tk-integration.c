/* SPDX-License-Identifier: MIT */
/* Seed section "Integration with GUI (Tkinter)", without a window: the
 * loop runs inside the Tcl event loop, the one Tk_MainLoop() drives, so
 * this needs Tcl only. The seed's button handler calls
 * run_until_complete(), which freezes the window for the whole 2 s; here
 * the handler spawns a task and returns at once, and the task's sleep
 * leaves Tcl free to handle its own events (a "redraw" timer counts
 * them). The label is a Tcl variable, as a Tk label's -textvariable
 * would be. --scale S multiplies the 2 s load. */
#include <loopbridge/loopbridge.h>
#include <loopbridge/tk.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct app {
    Tcl_Interp *interp;
    lb_loop *loop;
    double load_time;
} app;

static void set_label(app *a, const char *text) {
    Tcl_SetVar(a->interp, "label", text, TCL_GLOBAL_ONLY);
    printf("Label: %s\n", text);
}

static int async_task(lb_task *task, void *data) {
    (void)task;
    app *a = data;
    int r = lb_sleep(a->load_time); /* Tcl keeps handling events meanwhile */
    if (r < 0)
        return r;
    set_label(a, "Done!");
    Tcl_SetVar(a->interp, "finished", "1", TCL_GLOBAL_ONLY);
    return 0;
}

/* The button's command: starts the work and returns at once. */
static int on_button_click(ClientData data, Tcl_Interp *interp, int objc,
                           Tcl_Obj *const objv[]) {
    (void)objc;
    (void)objv;
    app *a = data;
    set_label(a, "Loading...");
    int r = lb_task_spawn(a->loop, async_task, a, NULL, NULL);
    if (r < 0) {
        Tcl_SetObjResult(interp, Tcl_ObjPrintf("lb_task_spawn: %s", lb_error_detail()));
        return TCL_ERROR;
    }
    return TCL_OK;
}

/* What the Tk application's main loop would do: the click arrives as an
 * event, a redraw timer ticks every 10 ms, and vwait runs the Tcl event
 * loop (loopbridge included) until the task sets `finished`. */
static const char *script =
    "set frames 0\n"
    "proc redraw {} { incr ::frames; after 10 redraw }\n"
    "after 0 on_button_click\n"
    "after 0 redraw\n"
    "vwait finished\n";

int main(int argc, char **argv) {
    app a = {.load_time = 2.0};
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        a.load_time *= atof(argv[2]);

    Tcl_FindExecutable(argv[0]);
    a.interp = Tcl_CreateInterp();
    int r = lb_tk_loop_new(&a.loop, a.interp);
    if (r < 0) {
        fprintf(stderr, "lb_tk_loop_new: %s\n", lb_error_detail());
        Tcl_DeleteInterp(a.interp);
        return 1;
    }
    Tcl_CreateObjCommand(a.interp, "on_button_click", on_button_click, &a, NULL);
    set_label(&a, "Press the button");

    int ok = Tcl_Eval(a.interp, script) == TCL_OK;
    if (ok)
        printf("Tcl handled %s redraws while loading\n",
               Tcl_GetVar(a.interp, "frames", TCL_GLOBAL_ONLY));
    else
        fprintf(stderr, "Tcl: %s\n", Tcl_GetStringResult(a.interp));

    lb_loop_close(a.loop);
    lb_loop_unref(a.loop);
    Tcl_DeleteInterp(a.interp);
    Tcl_Finalize(); /* Tcl's notifier thread and memory caches */
    return !ok;
}
