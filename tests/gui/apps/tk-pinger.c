/* SPDX-License-Identifier: MIT */
/* A small Tk application written from docs/tk.md against the installed
 * library:
 *
 *  - two tasks measure TCP round trips to an echo server the app runs
 *    itself on a loopback port, and show them in labels;
 *  - four executor jobs hash (FNV-1a over generated data, 64 KiB chunks,
 *    lb_job_cancelled() checked every chunk), each with a progress bar
 *    fed through a coalescer (lb_coalesce) paced to one update a frame
 *    (lb_coalesce_set_interval);
 *  - as docs/tk.md advises for CPU-bound work, their pool leaves a core
 *    to the Tk thread (one thread less than the CPUs, at least one), and
 *    the jobs take turns on it: each hashes a slice of a few milliseconds
 *    per lb_to_thread(), its task submitting the next slice, so that the
 *    four progress together; the jobs lower their threads' priority
 *    (nice 10);
 *  - a Tcl `after` tick every 16 ms records the gaps between its runs
 *    while the four jobs hash, apart from the gap across the building of
 *    the message box (Tk's own code, during which no event loop runs);
 *  - a modal tk_messageBox opens 0.5 s in (from `after`): tasks and the
 *    tick keep running in its nested event loop;
 *  - the hashing tasks form a group, which Cancel cancels
 *    (lb_group_cancel); Hash starts them again;
 *  - the pingers and the task that waits for the hashing group run in the
 *    app's group; closing the window (WM_DELETE_WINDOW, handled by
 *    lb_tk_close_after) cancels it and destroys the window once every
 *    task unwound, so that none outlives the widgets it updates;
 *    lb_loop_close() waits for the jobs, which return at their next
 *    chunk.
 *
 * It prints what it does, one line each, for its test:
 *   widget NAME X Y      a button's centre, in root window coordinates
 *   hashing: 4 jobs on T threads      the jobs were started
 *   modal: open | modal: closed after MS ms, N pings meanwhile
 *   ticks: N while 4 jobs hashed, max gap MS ms, across the message
 *     box's building MS ms                        (printed at Cancel)
 *   late tick: MS ms, ending MS ms after the message box opened
 *                        a gap over 20 ms, when it ended (-1: not opened)
 *   job I: cancel observed after MS ms            (in the job's thread)
 *   cancel: clicked | close: cancelling
 *   pings: N, max round trip MS ms                (at exit)
 *   exit: MS ms after WM_DELETE_WINDOW */
#define _GNU_SOURCE /* gettid, clock_gettime under -std=c11 */
#include <loopbridge/loopbridge.h>
#include <loopbridge/tk.h>

#include "app-common.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <tk.h>
#include <unistd.h>

#define JOBS 4
#define PINGERS 2
#define CHUNK (64 * 1024)
#define DATA_SIZE (1 << 20)
#define HASH_BYTES (16LL << 30) /* per job: far longer than the test */
#define SLICE (4LL << 20)       /* a job's turn on a pool thread: a few ms */

enum { JOB_QUEUED, JOB_RUNNING, JOB_OVER };

struct app;

typedef struct hash_job {
    struct app *a;
    int index;
    lb_coalesce *progress; /* job -> Tk thread: per mille done */
    lb_task *task;
    atomic_int state; /* JOB_*: whether a slice may still touch this */
    /* Carried from one slice to the next (a slice's completion orders
     * its writes before the next submission). */
    long long done;
    uint64_t hash;
} hash_job;

/* The jobs of one click on Hash. Each click makes a new batch and keeps
 * the old ones until exit: a pool thread may have taken a slice of the
 * previous batch off the queue just before Cancel reached its task, and
 * that slice must find its own job over (and leave it), not the next
 * batch's job at the same address. */
typedef struct hash_batch {
    struct hash_batch *older;
    hash_job jobs[JOBS];
} hash_batch;

typedef struct pinger {
    struct app *a;
    int index;
    lb_task *task;
} pinger;

typedef struct app {
    Tcl_Interp *interp;
    lb_loop *loop;
    lb_executor *pool;
    size_t pool_threads;
    lb_server *server;
    unsigned char *data; /* what the jobs hash, read-only */
    hash_batch *batch; /* the latest Hash's, NULL before the first */
    pinger pingers[PINGERS];
    lb_group *tasks;  /* the app's: closing the window cancels it */
    lb_group *hashes; /* the hashing tasks running, for Cancel */
    _Atomic int64_t cancel_ns;
    /* The tick's gaps while the jobs hash. */
    int64_t last_tick_ns;
    bool hashing;
    long ticks_hashing;
    double max_gap_ms;
    double building_gap_ms; /* the gap across the message box's building */
    bool modal_building;    /* opened, and the tick has not run since */
    int late_ticks_told;
    /* Round trips. */
    long pings, pings_at_modal;
    double max_rtt_ms;
    int64_t modal_ns;
    bool closing;
    int64_t close_ns;
} app;

/* ---------------- the echo server and the round trips ---------------- */

/* A pinger that goes mid-exchange (cancelled at close) resets its
 * connection: the end of it, not an error. */
static int echo(lb_stream *s, void *data) {
    (void)data;
    char line[64];
    ssize_t n;
    int r = 0;
    while (r == 0 && (n = lb_stream_readline(s, line, sizeof line)) > 0)
        r = lb_stream_write(s, line, (size_t)n);
    if (r == 0 && n < 0)
        r = (int)n;
    return r == -ECONNRESET || r == -EPIPE ? 0 : r;
}

static int ping_task(lb_task *task, void *data) {
    pinger *p = data;
    app *a = p->a;
    (void)task;
    lb_stream *s = NULL;
    int r = lb_open_connection("127.0.0.1", (uint16_t)lb_server_port(a->server), NULL, 5.0, &s);
    for (long n = 0; r == 0; n++) {
        char line[64], reply[64];
        int len = snprintf(line, sizeof line, "ping %ld\n", n);
        int64_t sent = now_ns();
        ssize_t got = 0;
        if ((r = lb_stream_write(s, line, (size_t)len)) == 0 &&
            (got = lb_stream_readline(s, reply, sizeof reply)) != len)
            r = got < 0 ? (int)got : -EPROTO;
        if (r < 0)
            break;
        double rtt = (now_ns() - sent) / 1e6;
        if (rtt > a->max_rtt_ms)
            a->max_rtt_ms = rtt;
        a->pings++;
        char text[32];
        snprintf(text, sizeof text, "%.2f ms", rtt);
        Tcl_SetVar2(a->interp, "rtt", p->index ? "1" : "0", text, TCL_GLOBAL_ONLY);
        r = lb_sleep(0.005);
    }
    lb_stream_unref(s);
    if (r < 0 && r != -ECANCELED)
        say("ping-%d: failed: %s (%s)", p->index, lb_strerror(r), lb_error_detail());
    return r;
}

/* ---------------- the jobs: run on the pool's threads ---------------- */

/* One slice of a job: SLICE bytes more, or up to the end. */
static int hash_slice_fn(void *data, void **ret) {
    hash_job *j = data;
    (void)ret;
    int expected = JOB_QUEUED;
    if (!atomic_compare_exchange_strong(&j->state, &expected, JOB_RUNNING))
        return -ECANCELED; /* its task gave up on it already */
    /* Background work: the Tk thread comes first. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
    const unsigned char *data_bytes = j->a->data;
    uint64_t h = j->hash;
    long long done = j->done, end = done + SLICE < HASH_BYTES ? done + SLICE : HASH_BYTES;
    int r = 0;
    for (; done < end; done += CHUNK) {
        if (lb_job_cancelled()) {
            say_cancel_observed(j->index, atomic_load(&j->a->cancel_ns));
            r = -ECANCELED;
            break;
        }
        const unsigned char *p = data_bytes + done % DATA_SIZE;
        for (int i = 0; i < CHUNK; i++)
            h = (h ^ p[i]) * 0x100000001b3u;
        lb_coalesce_post(j->progress, (void *)(intptr_t)((done + CHUNK) * 1000 / HASH_BYTES));
    }
    j->hash = h;
    j->done = done;
    /* Last: the slice touches j no more. */
    atomic_store(&j->state, r == 0 && done < HASH_BYTES ? JOB_QUEUED : JOB_OVER);
    return r;
}

/* ---------------- tasks and commands: on the Tk thread ---------------- */

static void show_progress(lb_loop *loop, void *value, void *data) {
    hash_job *j = data;
    (void)loop;
    char index[8];
    snprintf(index, sizeof index, "%d", j->index);
    Tcl_SetVar2Ex(j->a->interp, "progress", index, Tcl_NewDoubleObj((intptr_t)value / 10.0),
                  TCL_GLOBAL_ONLY);
}

/* A job's slices one after the other: each goes to the back of the
 * pool's queue, behind the other jobs' slices. */
static int hash_task(lb_task *task, void *data) {
    hash_job *j = data;
    (void)task;
    j->done = 0;
    j->hash = 0xcbf29ce484222325u;
    int r = 0;
    while (r == 0 && j->done < HASH_BYTES)
        r = lb_to_thread(hash_slice_fn, j, NULL);
    int expected = JOB_QUEUED; /* cancelled between slices: none runs again */
    atomic_compare_exchange_strong(&j->state, &expected, JOB_OVER);
    if (r < 0 && r != -ECANCELED)
        say("hash-%d: failed: %s (%s)", j->index, lb_strerror(r), lb_error_detail());
    return r;
}

static bool jobs_over(app *a) {
    for (int i = 0; i < JOBS; i++)
        if (a->batch && atomic_load(&a->batch->jobs[i].state) == JOB_RUNNING)
            return false;
    return true;
}

/* What the latest batch's jobs hold, once they are over. */
static void free_jobs(app *a) {
    for (int i = 0; a->batch && i < JOBS; i++) {
        hash_job *j = &a->batch->jobs[i];
        j->progress = lb_coalesce_free(j->progress);
        j->task = lb_task_unref(j->task);
    }
}

/* Spawns the four hashing tasks in a group of their own and waits for
 * them; cancelled (the window closes), lb_group_wait() cancels them and
 * returns once they ended. */
static int hash_batch_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    lb_group *group;
    int r = lb_group_new(a->loop, &group);
    for (int i = 0; r == 0 && i < JOBS; i++) {
        hash_job *j = &a->batch->jobs[i];
        char name[16];
        snprintf(name, sizeof name, "hash-%d", i);
        lb_task_options o = {.name = name};
        if ((r = lb_coalesce_new(a->loop, show_progress, j, NULL, &j->progress)) == 0 &&
            (r = lb_coalesce_set_interval(j->progress, 1.0 / 60)) == 0) /* a frame */
            r = lb_group_spawn(group, hash_task, j, &o, &j->task);
    }
    if (r < 0) {
        say("hashing: cannot start: %s", lb_error_detail());
        lb_group_unref(group);
        return r;
    }
    a->hashes = group;
    say("hashing: %d jobs on %zu threads", JOBS, a->pool_threads);
    r = lb_group_wait(group);
    a->hashes = NULL;
    lb_group_unref(group);
    return r;
}

/* Hash: starts the four jobs (once the previous ones are over). */
static int hash_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)objc;
    (void)objv;
    if (a->hashes)
        return TCL_OK; /* still hashing */
    if (!jobs_over(a)) {
        Tcl_SetObjResult(interp, Tcl_NewStringObj("the cancelled jobs are still stopping", -1));
        return TCL_ERROR;
    }
    free_jobs(a);
    hash_batch *b = calloc(1, sizeof *b);
    if (!b) {
        Tcl_SetObjResult(interp, Tcl_NewStringObj("out of memory", -1));
        return TCL_ERROR;
    }
    b->older = a->batch;
    a->batch = b;
    for (int i = 0; i < JOBS; i++) {
        b->jobs[i].a = a;
        b->jobs[i].index = i;
        atomic_init(&b->jobs[i].state, JOB_QUEUED);
    }
    lb_task_options o = {.name = "hashing"};
    if (lb_group_spawn(a->tasks, hash_batch_task, a, &o, NULL) < 0) {
        Tcl_SetObjResult(interp, Tcl_NewStringObj(lb_error_detail(), -1));
        return TCL_ERROR;
    }
    a->hashing = true;
    a->ticks_hashing = 0;
    a->max_gap_ms = 0;
    a->building_gap_ms = 0;
    a->late_ticks_told = 0;
    a->last_tick_ns = 0;
    atomic_store(&a->cancel_ns, 0);
    return TCL_OK;
}

/* Prints the tick's figures and notes when the jobs were asked to stop. */
static void stopping_jobs(app *a) {
    if (a->hashing)
        say("ticks: %ld while %d jobs hashed, max gap %.1f ms, across the message box's "
            "building %.1f ms",
            a->ticks_hashing, JOBS, a->max_gap_ms, a->building_gap_ms);
    a->hashing = false;
    atomic_store(&a->cancel_ns, now_ns());
}

static int cancel_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    (void)interp;
    (void)objc;
    (void)objv;
    app *a = data;
    stopping_jobs(a);
    if (a->hashes)
        lb_group_cancel(a->hashes);
    say("cancel: clicked");
    return TCL_OK;
}

/* The 16 ms tick's body: the gap since the previous run. */
static int tick_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)interp;
    (void)objc;
    (void)objv;
    int64_t t = now_ns();
    if (a->hashing && a->last_tick_ns) {
        double gap = (t - a->last_tick_ns) / 1e6;
        if (a->modal_building) /* Tk built the dialog meanwhile */
            a->building_gap_ms = gap;
        else if (gap > a->max_gap_ms)
            a->max_gap_ms = gap;
        /* Over the goal: when, for the test's log (the first few a batch). */
        if (gap > 20 && !a->modal_building && a->late_ticks_told++ < 10)
            say("late tick: %.1f ms, ending %.0f ms after the message box opened", gap,
                a->modal_ns ? (t - a->modal_ns) / 1e6 : -1.0);
        a->ticks_hashing++;
    }
    a->modal_building = false;
    a->last_tick_ns = t;
    return TCL_OK;
}

static int modal_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)interp;
    if (objc == 2 && !strcmp(Tcl_GetString(objv[1]), "open")) {
        a->modal_ns = now_ns();
        a->modal_building = true;
        a->pings_at_modal = a->pings;
        say("modal: open");
    } else {
        say("modal: closed after %.0f ms, %ld pings meanwhile", (now_ns() - a->modal_ns) / 1e6,
            a->pings - a->pings_at_modal);
    }
    return TCL_OK;
}

/* WM_DELETE_WINDOW, before lb_tk_close_after()'s command (which cancels
 * the app's group and destroys the window once it unwound): notes the
 * time for the jobs' reports. */
static int close_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    app *a = data;
    (void)interp;
    (void)objc;
    (void)objv;
    if (!a->close_ns)
        a->close_ns = now_ns();
    if (!a->closing) {
        a->closing = true;
        say("close: cancelling");
        stopping_jobs(a);
    }
    return TCL_OK;
}

static const char *window_script =
    "wm title . lb-apps-tk-pinger\n"
    /* An error in a script or an unread task error: printed for the
     * test, not shown in a dialog (which would take the grab). */
    "proc bgerror {message} { puts \"error: $message\"; flush stdout }\n"
    "frame .top\n"
    "button .top.cancel -text Cancel -command lb_cancel\n"
    "button .top.hash -text Hash -command lb_hash\n"
    "label .top.rtt0 -textvariable rtt(0) -width 10\n"
    "label .top.rtt1 -textvariable rtt(1) -width 10\n"
    "pack .top.cancel .top.hash .top.rtt0 .top.rtt1 -side left -padx 4\n"
    "pack .top -pady 6\n"
    "foreach i {0 1 2 3} {\n"
    "    ttk::progressbar .bar$i -variable progress($i) -length 240\n"
    "    pack .bar$i -padx 8 -pady 2\n"
    "}\n"
    "proc tick {} { lb_tick; after 16 tick }\n"
    "proc show_modal {} {\n"
    "    lb_modal open\n"
    "    tk_messageBox -title lb-apps-modal -message {The jobs keep running.} -type ok\n"
    "    lb_modal closed\n"
    "}\n"
    "wm protocol . WM_DELETE_WINDOW {lb_close; close_after_tasks}\n"
    "proc show_position {name w} {\n"
    "    puts \"widget $name [expr {[winfo rootx $w] + [winfo width $w] / 2}]"
    " [expr {[winfo rooty $w] + [winfo height $w] / 2}]\"\n"
    "    flush stdout\n"
    "}\n"
    "update\n"
    "show_position cancel .top.cancel\n"
    "show_position hash .top.hash\n"
    "tick\n"
    "lb_hash\n"
    "after 500 show_modal\n";

int main(int argc, char **argv) {
    app a = {0};
    (void)argc;
    Tcl_FindExecutable(argv[0]);
    a.interp = Tcl_CreateInterp();
    if (Tcl_Init(a.interp) != TCL_OK || Tk_Init(a.interp) != TCL_OK) {
        fprintf(stderr, "tk-pinger: %s\n", Tcl_GetStringResult(a.interp));
        return 1;
    }
    /* A core left to the Tk thread, of those this process may run on
     * (the test starts as many busy processes beside plain wish). */
    cpu_set_t cpus;
    int ncpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    a.pool_threads = ncpus > 2 ? (size_t)ncpus - 1 : 1;
    if (lb_tk_loop_new(&a.loop, a.interp) < 0 || lb_executor_new(&a.pool, a.pool_threads) < 0 ||
        lb_loop_set_default_executor(a.loop, a.pool) < 0 ||
        lb_start_server(a.loop, "127.0.0.1", 0, echo, NULL, NULL, &a.server) < 0) {
        fprintf(stderr, "tk-pinger: %s\n", lb_error_detail());
        return 1;
    }
    a.data = malloc(DATA_SIZE);
    if (!a.data)
        return 1;
    uint32_t x = 2463534242u;
    for (int i = 0; i < DATA_SIZE; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        a.data[i] = (unsigned char)x;
    }
    Tcl_CreateObjCommand(a.interp, "lb_hash", hash_cmd, &a, NULL);
    Tcl_CreateObjCommand(a.interp, "lb_cancel", cancel_cmd, &a, NULL);
    Tcl_CreateObjCommand(a.interp, "lb_tick", tick_cmd, &a, NULL);
    Tcl_CreateObjCommand(a.interp, "lb_modal", modal_cmd, &a, NULL);
    Tcl_CreateObjCommand(a.interp, "lb_close", close_cmd, &a, NULL);
    if (lb_group_new(a.loop, &a.tasks) < 0 ||
        lb_tk_close_after(a.interp, ".", a.tasks, "close_after_tasks") < 0) {
        fprintf(stderr, "tk-pinger: %s\n", lb_error_detail());
        return 1;
    }
    for (int i = 0; i < PINGERS; i++) {
        lb_task_options o = {.name = i ? "ping-1" : "ping-0"};
        a.pingers[i] = (pinger){&a, i, NULL};
        lb_group_spawn(a.tasks, ping_task, &a.pingers[i], &o, &a.pingers[i].task);
    }
    if (Tcl_Eval(a.interp, window_script) != TCL_OK) {
        fprintf(stderr, "tk-pinger: %s\n", Tcl_GetStringResult(a.interp));
        return 1;
    }

    Tk_MainLoop(); /* until the window is destroyed */

    say("pings: %ld, max round trip %.2f ms", a.pings, a.max_rtt_ms);
    for (int i = 0; i < PINGERS; i++)
        lb_task_unref(a.pingers[i].task);
    lb_server_unref(a.server);
    lb_group_unref(a.tasks);
    /* Waits for the jobs still running: they see lb_job_cancelled(). */
    lb_loop_close(a.loop);
    free_jobs(&a);
    while (a.batch) {
        hash_batch *older = a.batch->older;
        free(a.batch);
        a.batch = older;
    }
    lb_executor_unref(a.pool);
    lb_loop_unref(a.loop);
    Tcl_DeleteInterp(a.interp);
    free(a.data);
    if (a.close_ns)
        say("exit: %.1f ms after WM_DELETE_WINDOW", (now_ns() - a.close_ns) / 1e6);
    return 0;
}
