/* SPDX-License-Identifier: MIT */
/* The seed chapter's AsyncTkApp in C, with a real Tk window: a label
 * "Press the button", a button "Run async task". The seed's button
 * handler calls run_until_complete(), which freezes the window for the
 * whole 2 s; here the handler spawns a task and returns at once, the
 * task's sleep leaves Tk free to redraw and take clicks, and a counter
 * driven by loopbridge ticks every 100 ms throughout. Click again while
 * a task runs and a second one starts; both finish.
 *
 * The loop is a Tcl event source (lb_tk_loop_new): Tk_MainLoop() runs
 * it, nothing else is needed. What the window shows is also printed on
 * stdout, one line per change with the seconds since start, for tests. */
#include <loopbridge/loopbridge.h>
#include <loopbridge/tk.h>

#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <tk.h>

extern char **environ;

static const char *usage =
    "usage: tk-demo [--screenshot FILE] [--quit-after SECONDS] [--eval SCRIPT]\n"
    "  --screenshot FILE     press the button, then save the window as FILE\n"
    "                        1 s later, mid-task (ImageMagick's import)\n"
    "  --quit-after SECONDS  close the window after SECONDS\n"
    "  --eval SCRIPT         evaluate a Tcl script once the window is built\n"
    "                        (tests press the button with `.run invoke` or\n"
    "                        `event generate`)\n";

/* The window, in Tk's own words. The labels show Tcl variables. */
static const char *window_script =
    "wm title . {Async Tk}\n"
    "label .label -textvariable status -width 24 -font {Helvetica 16}\n"
    "button .run -text {Run async task} -command on_button_click\n"
    "label .counter -textvariable counter -font {Courier 14}\n"
    "pack .label .run .counter -padx 24 -pady 8\n";

typedef struct app {
    Tcl_Interp *interp;
    lb_loop *loop;
    double start;
    /* The screenshot being taken: its job lives here, not on the task's
     * stack, as a job that started runs to its end even if the task is
     * cancelled. */
    char window_id[32];
    const char *screenshot;
} app;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sets a Tcl variable (a label shows it) and prints the change. */
static void show(app *a, const char *var, const char *fmt, ...) {
    char text[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Tcl_SetVar(a->interp, var, text, TCL_GLOBAL_ONLY);
    printf("%.3f %s: %s\n", now_s() - a->start, var, text);
}

/* ---------------- the seed's async task ---------------- */

static int async_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    show(a, "status", "Loading...");
    int r = lb_sleep(2.0); /* loading; the window stays live meanwhile */
    if (r < 0)
        return r; /* cancelled: the window was closed */
    show(a, "status", "Done!");
    return 0;
}

/* The button's command: starts the task and returns at once. */
static int on_button_click(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)objc;
    (void)objv;
    if (lb_task_spawn(a->loop, async_task, a, NULL, NULL) < 0) {
        Tcl_SetObjResult(interp, Tcl_ObjPrintf("cannot start the task: %s", lb_error_detail()));
        return TCL_ERROR;
    }
    return TCL_OK;
}

/* ---------------- the counter: a task ticking every 100 ms ---------------- */

static int counter_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    /* A fixed schedule: each tick is due 100 ms after the previous one
     * was due, so one late tick does not delay the others. */
    double due = lb_loop_time(a->loop);
    for (long n = 1;; n++) {
        due += 0.1;
        if (lb_sleep(due - lb_loop_time(a->loop)) < 0)
            return -ECANCELED;
        show(a, "counter", "tick %ld", n);
    }
}

/* ---------------- options: screenshot and quit ---------------- */

/* On a worker thread (lb_to_thread): ImageMagick's import reads the
 * window from the X server and writes the file, while the counter goes
 * on ticking. */
static int run_import(void *data, void **ret) {
    app *a = data;
    (void)ret;
    char *argv[] = {"import", "-window", a->window_id, (char *)a->screenshot, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "import", NULL, NULL, argv, environ);
    if (err)
        return -err;
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int screenshot_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    Tcl_Eval(a->interp, ".run invoke");
    if (lb_sleep(1.0) < 0) /* mid-task */
        return -ECANCELED;
    Tcl_Eval(a->interp, "winfo id .");
    snprintf(a->window_id, sizeof a->window_id, "%s", Tcl_GetStringResult(a->interp));
    int r = lb_to_thread(run_import, a, NULL);
    if (r < 0)
        fprintf(stderr, "screenshot: import failed: %s\n", lb_strerror(r));
    else
        printf("%.3f screenshot: %s\n", now_s() - a->start, a->screenshot);
    return r;
}

static void quit(lb_loop *loop, void *data) {
    app *a = data;
    (void)loop;
    Tcl_Eval(a->interp, "destroy .");
}

int main(int argc, char **argv) {
    app a = {.start = now_s()};
    double quit_after = 0;
    const char *script = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--screenshot") && i + 1 < argc)
            a.screenshot = argv[++i];
        else if (!strcmp(argv[i], "--quit-after") && i + 1 < argc)
            quit_after = atof(argv[++i]);
        else if (!strcmp(argv[i], "--eval") && i + 1 < argc)
            script = argv[++i];
        else {
            fputs(usage, strcmp(argv[i], "--help") ? stderr : stdout);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    Tcl_FindExecutable(argv[0]);
    a.interp = Tcl_CreateInterp();
    if (Tcl_Init(a.interp) != TCL_OK || Tk_Init(a.interp) != TCL_OK) {
        fprintf(stderr, "tk-demo: %s\n", Tcl_GetStringResult(a.interp));
        return 1;
    }
    /* The loop lives in Tcl's event loop; its errors go to bgerror. */
    if (lb_tk_loop_new(&a.loop, a.interp) < 0) {
        fprintf(stderr, "tk-demo: %s\n", lb_error_detail());
        return 1;
    }
    Tcl_CreateObjCommand(a.interp, "on_button_click", on_button_click, &a, NULL);
    if (Tcl_Eval(a.interp, window_script) != TCL_OK) {
        fprintf(stderr, "tk-demo: %s\n", Tcl_GetStringResult(a.interp));
        return 1;
    }
    show(&a, "status", "Press the button");
    lb_task_spawn(a.loop, counter_task, &a, NULL, NULL);

    if (a.screenshot)
        lb_task_spawn(a.loop, screenshot_task, &a, NULL, NULL);
    if (quit_after > 0)
        lb_loop_call_later(a.loop, quit_after, quit, &a, NULL);
    if (script && Tcl_Eval(a.interp, script) != TCL_OK)
        fprintf(stderr, "tk-demo: --eval: %s\n", Tcl_GetStringResult(a.interp));

    Tk_MainLoop(); /* until the window is closed */

    /* Close cancels the tasks still running (the counter) and waits for
     * them to unwind. */
    lb_loop_close(a.loop);
    lb_loop_unref(a.loop);
    Tcl_DeleteInterp(a.interp);
    return 0;
}
