/* SPDX-License-Identifier: MIT */
/* The seed chapter's AsyncTkApp in C, with a real Tk window: a label
 * "Press the button", a button "Run async task". The seed's button
 * handler calls run_until_complete(), which freezes the window for the
 * whole 2 s; here the handler spawns a task and returns at once, the
 * task's sleep leaves Tk free to redraw and take clicks, and a counter
 * driven by loopbridge ticks every 100 ms throughout. Click again while
 * a task runs and a second one starts; both finish.
 *
 * "Fetch" downloads a megabyte from a server the demo runs itself on a
 * loopback port, in a task that awaits each read while a progress bar
 * moves: the window stays live during network I/O too.
 *
 * The loop is a Tcl event source (lb_tk_loop_new): Tk_MainLoop() runs
 * it, nothing else is needed. What the window shows is also printed on
 * stdout, one line per change with the seconds since start, for tests. */
#include <loopbridge/loopbridge.h>
#include <loopbridge/tk.h>

#include "download-server.h"

#include <errno.h>
#include <signal.h>
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
    "  --screenshot FILE     press the button (and Fetch 0.5 s later), then\n"
    "                        save the window as FILE 1 s later, mid-task\n"
    "                        (ImageMagick's import)\n"
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
    "frame .net\n"
    "button .net.fetch -text Fetch -command on_fetch\n"
    "ttk::progressbar .net.bar -variable fetch_percent -length 160\n"
    "label .net.status -textvariable fetch_status -width 20\n"
    "pack .net.fetch .net.bar .net.status -side left -padx 4\n"
    "pack .label .run .counter .net -padx 24 -pady 8\n";

typedef struct app {
    Tcl_Interp *interp;
    lb_loop *loop;
    lb_group *jobs; /* the button's tasks: the window's close waits for them */
    double start;
    /* The screenshot being taken: its job lives here, not on the task's
     * stack, as a job that started runs on after its task was cancelled,
     * until it notices (lb_job_cancelled). */
    char window_id[32];
    const char *screenshot;
    long ticks;        /* of the counter */
    lb_server *server; /* the local download server */
    bool fetching;
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
    if (r < 0) {
        /* Cancelled by the window's close, which waits for this task:
         * the label still exists. */
        show(a, "status", "Cancelled");
        return r;
    }
    show(a, "status", "Done!");
    return 0;
}

/* The button's command: starts the task and returns at once. */
static int on_button_click(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)objc;
    (void)objv;
    if (lb_group_spawn(a->jobs, async_task, a, NULL, NULL) < 0) {
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
        a->ticks = n;
        show(a, "counter", "tick %ld", n);
    }
}

/* ---------------- Fetch: a download over TCP, awaited in a task -------- */

static int fetch_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    lb_stream *s = NULL;
    long got = 0, size = 0, ticks_before = a->ticks;
    double started = now_s();
    int reads = 0;
    int r = lb_open_connection("127.0.0.1", (uint16_t)lb_server_port(a->server), NULL, 5.0, &s);
    if (r == 0)
        r = lb_stream_write(s, "GET\n", 4);
    char line[64];
    ssize_t n = r < 0 ? r : lb_stream_readline(s, line, sizeof line - 1);
    if (n > 0) {
        line[n] = '\0';
        sscanf(line, "SIZE %ld", &size);
    }
    if (n < 0)
        r = (int)n;
    else if (size <= 0)
        r = -EPROTO;
    /* Read as the bytes come, whatever the pieces; Tk redraws and takes
     * clicks between two reads. */
    static char buf[64 * 1024];
    while (r == 0 && got < size && (n = lb_stream_read(s, buf, sizeof buf)) > 0) {
        got += n;
        reads++;
        Tcl_SetVar2Ex(a->interp, "fetch_percent", NULL, Tcl_NewDoubleObj(100.0 * got / size),
                      TCL_GLOBAL_ONLY);
        show(a, "fetch_status", "%ld of %ld KiB", got / 1024, size / 1024);
    }
    if (r == 0 && n < 0)
        r = (int)n;
    if (r == 0)
        printf("fetch: received %ld of %ld bytes in %d reads in %.2f s, counter ticked %ld "
               "times meanwhile\n",
               got, size, reads, now_s() - started, a->ticks - ticks_before);
    else if (r != -ECANCELED)
        show(a, "fetch_status", "failed: %s", lb_strerror(r));
    lb_stream_unref(s);
    a->fetching = false;
    return r;
}

/* The Fetch button's command: one download at a time. */
static int on_fetch(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)objc;
    (void)objv;
    if (a->fetching || !a->server)
        return TCL_OK;
    show(a, "fetch_status", "connecting...");
    lb_task_options o = {.name = "fetch"};
    if (lb_task_spawn(a->loop, fetch_task, a, &o, NULL) < 0) {
        Tcl_SetObjResult(interp, Tcl_ObjPrintf("cannot start the fetch: %s", lb_error_detail()));
        return TCL_ERROR;
    }
    a->fetching = true;
    return TCL_OK;
}

/* ---------------- options: screenshot and quit ---------------- */

/* On a worker thread (lb_to_thread): ImageMagick's import reads the
 * window from the X server and writes the file, while the counter goes
 * on ticking. It watches lb_job_cancelled() while import runs: when the
 * task is cancelled or the window closes (lb_loop_close waits for running
 * jobs), import is stopped at once instead of being waited for. */
static int run_import(void *data, void **ret) {
    app *a = data;
    (void)ret;
    char *argv[] = {"import", "-window", a->window_id, (char *)a->screenshot, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "import", NULL, NULL, argv, environ);
    if (err)
        return -err;
    int status;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (done < 0)
            return -errno;
        if (lb_job_cancelled()) {
            kill(pid, SIGTERM);
            waitpid(pid, &status, 0);
            return -ECANCELED;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int screenshot_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    Tcl_Eval(a->interp, ".run invoke");
    if (lb_sleep(0.5) < 0)
        return -ECANCELED;
    Tcl_Eval(a->interp, ".net.fetch invoke");
    if (lb_sleep(0.5) < 0) /* mid-task, mid-download */
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
    /* As the window manager's close: the button's tasks unwind first. */
    Tcl_Eval(a->interp, "app::close");
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
    lb_group_new(a.loop, &a.jobs);
    Tcl_CreateObjCommand(a.interp, "on_button_click", on_button_click, &a, NULL);
    Tcl_CreateObjCommand(a.interp, "on_fetch", on_fetch, &a, NULL);
    if (Tcl_Eval(a.interp, window_script) != TCL_OK) {
        fprintf(stderr, "tk-demo: %s\n", Tcl_GetStringResult(a.interp));
        return 1;
    }
    lb_tk_close_after(a.interp, ".", a.jobs, "app::close");
    show(&a, "status", "Press the button");
    /* The server runs in this process, in the same loop. */
    if (download_server_start(a.loop, &a.server) < 0) {
        show(&a, "fetch_status", "no server: %s", lb_error_detail());
        Tcl_Eval(a.interp, ".net.fetch configure -state disabled");
    } else {
        show(&a, "fetch_status", "1 MiB from a local server");
    }
    lb_task_spawn(a.loop, counter_task, &a, NULL, NULL);

    if (a.screenshot)
        lb_task_spawn(a.loop, screenshot_task, &a, NULL, NULL);
    if (quit_after > 0)
        lb_loop_call_later(a.loop, quit_after, quit, &a, NULL);
    if (script && Tcl_Eval(a.interp, script) != TCL_OK)
        fprintf(stderr, "tk-demo: --eval: %s\n", Tcl_GetStringResult(a.interp));

    Tk_MainLoop(); /* until the window is closed */

    /* The server stops listening; close cancels the tasks still running
     * (the counter, a download, the server's connections) and waits for
     * them to unwind. */
    lb_server_unref(a.server);
    lb_group_unref(a.jobs);
    lb_loop_close(a.loop);
    lb_loop_unref(a.loop);
    Tcl_DeleteInterp(a.interp);
    return 0;
}
