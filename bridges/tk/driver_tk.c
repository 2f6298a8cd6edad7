/* SPDX-License-Identifier: MIT */
/* The Tk driver: a Tcl event source on the loop's thread.
 *
 * The core's backend fd (its epoll instance: watched fds, signals) goes
 * to the notifier through one Tcl_CreateFileHandler while the core
 * watches something there (watch_backend()), the core's next
 * deadline through Tcl_SetMaxBlockTime, rounded up to whole milliseconds
 * (Tcl 9's epoll notifier truncates to them, and waking before the
 * deadline would find nothing due and spin). Every timer stays in the
 * core's heap: Tcl keeps its own in a list sorted by linear insertion.
 *
 * Ready work runs from one queued "drain" event, never by asking Tcl for
 * a zero block time: on Tcl 8.6 that is a round trip through the
 * notifier thread, several times the cost of a queued event. A drain
 * runs iterations of the core until nothing is ready or its budget is
 * spent; with work left it steps aside until an idle callback, queued
 * after the redraws Tk has pending, so the window keeps painting.
 *
 * `update` (Tcl_DoOneEvent with TCL_DONT_WAIT until a pass services
 * nothing) runs one iteration of the loop per pass and does not count it
 * as an event while work is left, so it returns however busy the loop
 * is; Tcl_DoOneEvent without TCL_DONT_WAIT (vwait, Tk_MainLoop) runs
 * the loop as before.
 *
 * Another thread's post wakes the loop's thread with Tcl_ThreadAlert
 * alone (the driver owns the wakeup, LB_DRIVER_CAP_WAKEUP): the core's
 * eventfd is not written, so Tcl 8.6's notifier thread, which selects on
 * the backend fd, is not woken for nothing. */
#include <loopbridge/tk.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One budget, plus a pass through Tcl's notifier, is the most a Tk
 * redraw or a Tcl `after` waits for the loop while it is flooded: half
 * the GLib driver's, since Tcl's own ticks come late already
 * (docs/performance.md, "Figures behind the code"). */
#define DEFAULT_BUDGET_NS (500 * 1000)
/* Tcl 8.6's select notifier writes fd_sets of FD_SETSIZE bits. */
#define TCL_FD_LIMIT 1024

typedef struct tk_state {
    lb_loop *loop;
    Tcl_Interp *interp; /* errors go to its bgerror; may be NULL */
    Tcl_ThreadId thread;
    int fd;       /* what the file handler watches */
    bool fd_watched; /* the file handler is in place */
    int owned_fd; /* a dup of the backend fd below TCL_FD_LIMIT, or -1 */
    Tcl_WideInt budget_ns;
    bool drain_queued;  /* a drain event waits in Tcl's queue */
    bool stepped_aside; /* until resume_after_idle runs */
    /* The loop has work for the event service that follows: a check
     * found work ready, or the backend fd was readable. What lets one
     * pass of `update` run one iteration, and only one. */
    bool work_found;
    /* Drains that follow each other closely (less than a budget apart)
     * form a streak: Tcl serviced an event in every pass, so its idle
     * callbacks did not run in between. 0: no streak. */
    Tcl_WideInt streak_start_ns;
    Tcl_WideInt last_drain_end_ns;
} tk_state;

typedef struct drain_event {
    Tcl_Event header;
    tk_state *state;
} drain_event;

static Tcl_WideInt clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (Tcl_WideInt)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int drain_proc(Tcl_Event *ev, int flags);
static void file_proc(void *data, int mask);

/* The file handler is in place only while the core watches an fd (its
 * backend fd can become readable only then: the driver owns the wakeup)
 * and the driver has not stepped aside. Tcl 8.6's threaded notifier hands
 * each wait of a thread that has a file handler to its notifier thread,
 * through two writes to that thread's pipe and two wakeups of it; without
 * one, the wait is a timed wait on a condition variable, which an alert
 * from another thread ends at once. Called before each of Tcl's waits
 * (setup_proc), since callbacks add and remove watches. */
static void watch_backend(tk_state *st) {
    bool want = !st->stepped_aside && lb_driver_backend_needed(st->loop);
    if (want == st->fd_watched)
        return;
    st->fd_watched = want;
    if (want)
        Tcl_CreateFileHandler(st->fd, TCL_READABLE, file_proc, st);
    else
        Tcl_DeleteFileHandler(st->fd);
}

static void queue_drain(tk_state *st) {
    if (st->drain_queued || st->stepped_aside)
        return;
    drain_event *ev = (drain_event *)ckalloc(sizeof *ev);
    ev->header.proc = drain_proc;
    ev->state = st;
    st->drain_queued = true;
    Tcl_QueueEvent(&ev->header, TCL_QUEUE_TAIL);
}

/* Tcl runs idle callbacks only once no event is pending, and while the
 * backend fd is readable (a watched fd with data the loop has not read
 * yet) the notifier would queue a file event on every pass: the file
 * handler goes while the driver steps aside, or idle callbacks would
 * never run and neither would the loop (a livelock). */
static void resume_after_idle(void *data) {
    tk_state *st = data;
    st->stepped_aside = false;
    st->streak_start_ns = 0; /* Tcl's idle callbacks just ran */
    watch_backend(st);
    queue_drain(st);
}

static int is_ours(Tcl_Event *ev, void *data) {
    return ev->proc == drain_proc && ((drain_event *)ev)->state == data;
}

static void step_aside(tk_state *st) {
    st->stepped_aside = true;
    /* A drain that a pass of `update` left queued would run before the
     * idle callbacks the driver steps aside for. */
    Tcl_DeleteEvents(is_ours, st);
    st->drain_queued = false;
    watch_backend(st);
    Tcl_DoWhenIdle(resume_after_idle, st);
    /* With an idle callback pending, Tcl's next wait has a zero block
     * time, which Tcl 8.6 turns into a round trip through its notifier
     * thread: a wakeup of that thread and one back, which on a busy
     * machine held the loop's thread asleep for up to 8 ms. An alert
     * makes that wait return at once. */
    Tcl_ThreadAlert(st->thread);
}

/* Iterations of the core until nothing is ready or the budget is spent,
 * so that a chain of callbacks (each scheduling the next) does not cost a
 * trip through Tcl's event loop per link. The driver steps aside when
 * work is left, and also when drains have followed each other for a
 * budget's time: a stream of short drains (posts from a busy thread, a
 * socket that is always readable) services an event in every pass of
 * Tcl's loop, and would starve its idle callbacks as surely as one long
 * drain. A callback may run a nested event loop (update, vwait,
 * tk_messageBox) that drains recursively; the state this reads is the
 * loop's, valid at any depth. */
static void drain(tk_state *st) {
    Tcl_WideInt start = clock_ns();
    if (st->streak_start_ns == 0 || start - st->last_drain_end_ns > st->budget_ns)
        st->streak_start_ns = start;
    Tcl_WideInt budget = st->budget_ns;
    int r;
    for (;;) {
        r = lb_driver_dispatch(st->loop, 0, budget);
        if (r <= 0 || lb_driver_stop_requested(st->loop))
            break;
        budget = start + st->budget_ns - clock_ns();
        if (budget <= 0)
            break;
    }
    Tcl_WideInt end = clock_ns();
    st->last_drain_end_ns = end;
    bool busy = r > 0 || end - st->streak_start_ns >= st->budget_ns;
    /* Not when a stop is pending: the run entry must see it at once. */
    if (busy && !st->stepped_aside && !lb_driver_stop_requested(st->loop))
        step_aside(st);
}

static bool serves_loop(int flags) {
    return flags & (TCL_FILE_EVENTS | TCL_TIMER_EVENTS);
}

/* A pass of `update`, or of any loop of Tcl_DoOneEvent(TCL_DONT_WAIT)
 * that stops at the first call returning 0: one iteration of the loop,
 * what was ready when it began (within the budget), once per pass, in
 * the service that follows the check that found the work. While work is
 * left (what the iteration scheduled, a task that yields for ever), the
 * event is reported as not serviced and stays queued: a pass in which
 * nothing else happens then returns 0 and `update` ends, instead of
 * running the loop for as long as it has work. The next pass, or the
 * next `update`, runs the next iteration; a blocking Tcl_DoOneEvent
 * (vwait, Tk_MainLoop) services the queued event at once, with a full
 * drain. Tk's `update` takes two passes (it syncs the displays between
 * them), and runs two iterations. */
static int update_pass(tk_state *st) {
    if (!st->work_found || st->stepped_aside)
        return 0;
    st->work_found = false;
    /* An event loop nested in a callback (a vwait) may queue its own. */
    st->drain_queued = false;
    int r = lb_driver_dispatch(st->loop, 0, st->budget_ns);
    /* Nothing left, a nested loop queued a newer event, or one stepped
     * aside: this event is done with, and counts as serviced. */
    if (r <= 0 || st->drain_queued || st->stepped_aside)
        return 1;
    st->drain_queued = true;
    return 0;
}

static int drain_proc(Tcl_Event *ev, int flags) {
    tk_state *st = ((drain_event *)ev)->state;
    /* `update idletasks` services only idle work: keep the event. */
    if (!serves_loop(flags))
        return 0;
    if (flags & TCL_DONT_WAIT)
        return update_pass(st);
    st->drain_queued = false;
    st->work_found = false;
    drain(st);
    return 1;
}

static void file_proc(void *data, int mask) {
    tk_state *st = data;
    (void)mask;
    st->work_found = true;
    queue_drain(st);
}

static void setup_proc(void *data, int flags) {
    tk_state *st = data;
    /* Whatever the flags: Tcl's wait watches every file handler. */
    watch_backend(st);
    if (!serves_loop(flags) || st->drain_queued || st->stepped_aside)
        return;
    Tcl_WideInt ns = lb_driver_prepare(st->loop);
    if (ns < 0)
        return;
    if (ns <= LB_DRIVER_POLL_BELOW_NS) {
        /* Work scheduled from outside a drain (a Tk command, a Tcl
         * timer, another event source) is ready, or a deadline is too
         * near to sleep for (driver.h): the notifier must not block. An
         * alert to this thread returns from the wait at once, without the
         * notifier-thread round trip of a zero block time, and check_proc
         * queues the drain once work is due; until then Tcl's idle work
         * still runs. */
        if (!(flags & TCL_DONT_WAIT))
            Tcl_ThreadAlert(st->thread);
        return;
    }
    /* Microseconds, rounded up: waking before the deadline would find
     * nothing due. */
    Tcl_WideInt us = (ns + 999) / 1000;
    Tcl_Time t = {(long)(us / 1000000), (long)(us % 1000000)};
    Tcl_SetMaxBlockTime(&t);
}

static void check_proc(void *data, int flags) {
    tk_state *st = data;
    if (!serves_loop(flags) || st->stepped_aside)
        return;
    /* A pass of `update` may find the drain it left queued: it runs again
     * in this pass if work is ready now. */
    if (st->drain_queued && !(flags & TCL_DONT_WAIT))
        return;
    if (lb_driver_prepare(st->loop) == 0) {
        st->work_found = true;
        queue_drain(st);
    }
}

/* Errors the loop reports (a task's error nobody retrieved, ...) go to
 * Tcl's background error handler (bgerror, or `interp bgerror`), which
 * Tcl calls from an idle callback. The interp may be running a script
 * (a callback inside vwait): its result is kept.
 *
 * The handler stays installed after close (a closed loop refuses a new
 * one), and errors still come then: the last reference of a failed task
 * nobody awaited may go after close. The state is freed by then, and the
 * loop no longer names it: only the pointers are compared. */
static void to_background_error(lb_loop *loop, const lb_exception_context *ctx, void *data) {
    tk_state *st = data;
    if (lb_driver_state(loop) != st || Tcl_InterpDeleted(st->interp)) {
        lb_loop_default_exception_handler(loop, ctx);
        return;
    }
    Tcl_InterpState saved = Tcl_SaveInterpState(st->interp, TCL_OK);
    Tcl_SetObjResult(st->interp,
                     Tcl_ObjPrintf("loopbridge: %s", ctx->message ? ctx->message : "error"));
    /* The error code names the errno, as Tcl's own POSIX errors do. */
    if (ctx->error) {
        char code[16];
        snprintf(code, sizeof code, "%d", -ctx->error);
        Tcl_SetErrorCode(st->interp, "LOOPBRIDGE", code, lb_strerror(ctx->error), (char *)NULL);
    }
    Tcl_BackgroundException(st->interp, TCL_ERROR);
    Tcl_RestoreInterpState(st->interp, saved);
}

/* A thread whose notifier this driver brought up has Tcl's thread data
 * finalized when it exits: Tcl keeps a list of notifiers by thread id,
 * and a dead thread's entry would swallow the alerts meant for a new
 * thread that got the same id, and the thread's data would leak.
 *
 * The key is made when the library is loaded, before Tcl makes its own
 * thread-data key: at thread exit the C library runs key destructors in
 * the order the keys were made and clears each value first, so ours must
 * run while Tcl can still find the thread's data. */
static pthread_key_t finalize_key;
static bool have_finalize_key;

static void finalize_tcl_thread(void *unused) {
    (void)unused;
    Tcl_FinalizeThread();
}

__attribute__((constructor)) static void make_finalize_key(void) {
    have_finalize_key = pthread_key_create(&finalize_key, finalize_tcl_thread) == 0;
}

static void init_thread_notifier(int have_interp) {
    static _Thread_local int ready;
    if (ready)
        return;
    ready = 1;
    /* An interpreter means Tcl and the thread's notifier are up; calling
     * Tcl_FindExecutable again would also set the system encoding anew,
     * over what the application chose. */
    if (have_interp)
        return;
    Tcl_FindExecutable(NULL);
    /* Making an interpreter initialises the thread's notifier and makes
     * it known to Tcl_ThreadAlert. */
    Tcl_Interp *probe = Tcl_CreateInterp();
    Tcl_DeleteInterp(probe);
    if (have_finalize_key)
        pthread_setspecific(finalize_key, &finalize_key);
}

/* Tcl 8.6's threaded notifier starts its thread at the first wait of
 * the process, which costs about a millisecond (a thread, a pipe, six
 * fcntl calls, a hand-shake), and that wait comes when the program first
 * runs the loop: after its setup, with timers already due. Tcl's service
 * mode hook starts it without a wait (a wait would queue the events of
 * the program's ready file handlers, with the readiness of that moment);
 * it does nothing on a notifier without a thread, or once it runs. */
static void start_notifier_thread(void) {
    Tcl_ServiceModeHook(TCL_SERVICE_ALL);
}

static int tk_attach(lb_loop *loop, void *arg, void **state) {
    int fd = lb_driver_backend_fd(loop);
    if (fd < 0)
        return fd;
    init_thread_notifier(arg != NULL);
    tk_state *st = (tk_state *)ckalloc(sizeof *st);
    memset(st, 0, sizeof *st);
    st->loop = loop;
    st->interp = arg;
    st->budget_ns = DEFAULT_BUDGET_NS;
    st->owned_fd = -1;
    st->fd = fd;
    st->thread = Tcl_GetCurrentThread();
    if (fd >= TCL_FD_LIMIT) {
        int low = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (low < 0 || low >= TCL_FD_LIMIT) {
            if (low >= 0)
                close(low);
            ckfree((char *)st);
            return lb_driver_fail(-EMFILE,
                                  "the tk driver needs a descriptor below %d for Tcl 8.6's select "
                                  "notifier, and none is free",
                                  TCL_FD_LIMIT);
        }
        st->owned_fd = st->fd = low;
    }
    Tcl_CreateEventSource(setup_proc, check_proc, st);
    watch_backend(st);
    start_notifier_thread();
    if (st->interp) {
        Tcl_Preserve(st->interp);
        lb_loop_set_exception_handler(loop, to_background_error, st);
    }
    *state = st;
    return 0;
}

static void tk_detach(lb_loop *loop, void *state) {
    tk_state *st = state;
    (void)loop;
    if (st->fd_watched)
        Tcl_DeleteFileHandler(st->fd);
    Tcl_DeleteEventSource(setup_proc, check_proc, st);
    Tcl_DeleteEvents(is_ours, st);
    Tcl_CancelIdleCall(resume_after_idle, st);
    if (st->owned_fd >= 0)
        close(st->owned_fd);
    if (st->interp)
        Tcl_Release(st->interp);
    ckfree((char *)st);
}

/* Another thread posted work to a loop whose thread may be asleep in the
 * notifier: the alert returns it from Tcl_WaitForEvent, and check_proc
 * finds the posts and queues a drain. */
static void tk_wakeup(lb_loop *loop, void *state) {
    tk_state *st = state;
    (void)loop;
    Tcl_ThreadAlert(st->thread);
}

static int tk_run(lb_loop *loop, void *state) {
    (void)state;
    /* One iteration at least: a stop requested before the run still
     * lets what is ready run, as asyncio does. */
    do
        Tcl_DoOneEvent(TCL_ALL_EVENTS);
    while (!lb_driver_stop_requested(loop));
    return 0;
}

static const lb_driver tk_driver = {
    .abi_version = LB_DRIVER_ABI_VERSION,
    .name = "tk",
    .caps = LB_DRIVER_CAP_HOSTED | LB_DRIVER_CAP_NESTED | LB_DRIVER_CAP_WAKEUP,
    .attach = tk_attach,
    .detach = tk_detach,
    .run = tk_run,
    .wakeup = tk_wakeup,
};

const lb_driver *lb_driver_tk(void) {
    return &tk_driver;
}

__attribute__((constructor)) static void register_tk_driver(void) {
    lb_driver_register(&tk_driver);
}

int lb_tk_loop_new(lb_loop **ret, Tcl_Interp *interp) {
    if (!ret)
        return lb_driver_fail(-EINVAL, "lb_tk_loop_new: ret is NULL");
    return lb_loop_new_full(ret, &tk_driver, interp);
}

int lb_tk_loop_set_budget(lb_loop *loop, double seconds) {
    static const char func[] = "lb_tk_loop_set_budget";
    int r = lb_driver_check_loop(loop, func);
    if (r < 0)
        return r;
    if (lb_loop_driver(loop) != &tk_driver)
        return lb_driver_fail(-EINVAL, "%s: the loop runs on the %s driver, not tk", func,
                              lb_loop_driver_name(loop));
    if (isnan(seconds) || seconds <= 0)
        return lb_driver_fail(-EINVAL, "%s: the budget must be positive", func);
    tk_state *st = lb_driver_state(loop);
    st->budget_ns = seconds >= 86400.0 ? INT64_MAX / 2 : (Tcl_WideInt)ceil(seconds * 1e9);
    return 0;
}
