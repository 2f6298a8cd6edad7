/* SPDX-License-Identifier: MIT */
/* _loopbridge: the C half of the Python package. A Bridge owns one
 * loopbridge loop hosted by Tcl's notifier or by a GMainContext and offers
 * the Python event loop (loopbridge/_base.py) what it needs from the host:
 * fd readiness, one deadline timer and "run a pass soon". It never runs
 * Python from inside loopbridge's callbacks directly on the Tk side:
 * _tkinter keeps its own per-thread state while Tcl runs without the GIL,
 * and only a command made by tkinter (createcommand) may enter Python from
 * there. So the Tk bridge evaluates that command, and _tkinter's wrapper
 * takes the GIL and restores its state. The GLib bridge takes the GIL with
 * PyGILState_Ensure, as PyGObject's own callbacks do.
 *
 * Everything runs on the thread that made the bridge: the Python methods
 * are called with the GIL, the loopbridge callbacks from the host's main
 * loop on that same thread, so the pending state needs no lock. */
#include "_loopbridge.h"
#include "_signal_pipe.h"

#include <loopbridge/loopbridge.h>
#ifdef LB_PY_HAVE_TK
#include <loopbridge/tk.h>
#endif
#ifdef LB_PY_HAVE_GLIB
#include <loopbridge/glib.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum { WATCH_READ = 1, WATCH_WRITE = 2 };

typedef struct Bridge Bridge;

/* One fd's state; loopbridge's fd callbacks get it as their data, so it
 * stays at one address for the bridge's life. */
struct fd_watch {
    Bridge *bridge;
    int fd;
    unsigned char watched; /* WATCH_* registered with loopbridge */
    unsigned char ready;   /* WATCH_* seen since the last take_events */
    unsigned char listed;  /* fd is in the bridge's ready_list */
};

struct Bridge {
    PyObject_HEAD
    lb_loop *loop;
    int is_tk;
#ifdef LB_PY_HAVE_TK
    Tcl_Interp *interp;
    Tcl_Obj *command; /* the tkinter-made Tcl command that runs a pass */
#endif
    PyObject *callback;  /* GLib: the Python callable that runs a pass */
    struct fd_watch **fds;  /* by fd, made on first watch, freed at close */
    int nfds;               /* size of fds */
    int *ready_list;        /* fds with a nonzero ready mask, in order */
    int nready;
    lb_handle *pass;   /* the scheduled pass, or NULL */
    int pass_delayed;  /* it waits for a timer (schedule(delay > 0)) */
    lb_handle *timer;  /* the deadline, or NULL */
    int in_notify;
    lb_py_signal_pipe *signal_pipe; /* signal_fd()'s, made on first use */
    int signal_pass_queued; /* Tk: a signal_pass_event waits in Tcl's queue */
    struct signal_pass_token *signal_pass; /* Tk: what such events name */
#ifdef LB_PY_HAVE_TK
    Tcl_ThreadId tcl_thread; /* where the interp's events are queued */
#endif
};

static PyObject *raise_lb(int rc, const char *what)
{
    const char *detail = lb_error_detail();
    PyObject *msg = PyUnicode_FromFormat("%s: %s%s%s", what, lb_strerror(rc),
                                         detail && *detail ? ": " : "", detail ? detail : "");
    if (msg) {
        PyObject *args = Py_BuildValue("(iN)", -rc, msg);
        if (args) {
            PyErr_SetObject(PyExc_OSError, args);
            Py_DECREF(args);
        }
    }
    return NULL;
}

PyObject *lb_py_take_exception(void)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
}

void lb_py_raise_again(PyObject *exc)
{
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
}

static int check_open(Bridge *self)
{
    if (!self->loop) {
        PyErr_SetString(PyExc_RuntimeError, "the bridge is closed");
        return -1;
    }
    return 0;
}

/* Runs one Python pass through the host: the Tcl command on Tk, the
 * callable with the GIL on GLib. */
static void notify(Bridge *self)
{
    self->in_notify++;
#ifdef LB_PY_HAVE_TK
    if (self->is_tk) {
        Tcl_Interp *interp = self->interp;
        Tcl_Preserve(interp);
        Tcl_Obj *cmd = self->command;
        Tcl_IncrRefCount(cmd);
        if (Tcl_EvalObjv(interp, 1, &cmd, TCL_EVAL_GLOBAL) != TCL_OK)
            Tcl_BackgroundException(interp, TCL_ERROR);
        Tcl_ResetResult(interp);
        Tcl_DecrRefCount(cmd);
        Tcl_Release(interp);
        self->in_notify--;
        return;
    }
#endif
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_INCREF(self);
    PyObject *callback = self->callback;
    if (callback) {
        Py_INCREF(callback);
        PyObject *res = PyObject_CallNoArgs(callback);
        if (!res)
            PyErr_WriteUnraisable(callback);
        Py_XDECREF(res);
        Py_DECREF(callback);
    }
    self->in_notify--;
    Py_DECREF(self);
    PyGILState_Release(gil);
}

static void drop_pass(Bridge *self)
{
    if (self->pass) {
        lb_handle_cancel(self->pass);
        lb_handle_unref(self->pass);
        self->pass = NULL;
    }
}

static void on_pass(lb_loop *loop, void *data)
{
    Bridge *self = data;
    if (self->pass) {
        lb_handle_unref(self->pass);
        self->pass = NULL;
    }
    if (self->loop)
        notify(self);
}

/* Schedules a pass now (delay 0) or after delay; a pass already waiting
 * stays, except that a delayed request replaces an immediate one. */
static int request_pass_in(Bridge *self, double delay)
{
    if (!self->loop)
        return -EBADF;
    if (self->pass && (self->pass_delayed || delay <= 0))
        return 0;
    drop_pass(self);
    int rc = delay > 0 ? lb_loop_call_later(self->loop, delay, on_pass, self, &self->pass)
                       : lb_loop_call_soon(self->loop, on_pass, self, &self->pass);
    if (rc < 0) {
        self->pass = NULL;
        return rc;
    }
    self->pass_delayed = delay > 0;
    return 0;
}

static void request_pass(Bridge *self)
{
    request_pass_in(self, 0);
}

static void on_timer(lb_loop *loop, void *data)
{
    Bridge *self = data;
    if (self->timer) {
        lb_handle_unref(self->timer);
        self->timer = NULL;
    }
    if (self->loop)
        notify(self);
}

/* Records that w is ready for what (the watched part of it). */
static void add_ready(struct fd_watch *w, int what)
{
    Bridge *self = w->bridge;
    what &= w->watched;
    if (!what)
        return;
    if (!w->listed) {
        self->ready_list[self->nready++] = w->fd;
        w->listed = 1;
    }
    w->ready |= (unsigned char)what;
}

static void mark_ready(struct fd_watch *w, int what)
{
    add_ready(w, what);
    if (w->ready)
        request_pass(w->bridge);
}

static void on_readable(lb_loop *loop, void *data)
{
    mark_ready(data, WATCH_READ);
}

static void on_writable(lb_loop *loop, void *data)
{
    mark_ready(data, WATCH_WRITE);
}

/* Makes room for fd in fds and ready_list. */
static struct fd_watch *watch_for(Bridge *self, int fd)
{
    if (fd >= self->nfds) {
        int n = self->nfds ? self->nfds : 64;
        while (n <= fd)
            n *= 2;
        struct fd_watch **fds = PyMem_Realloc(self->fds, (size_t)n * sizeof *fds);
        if (!fds)
            return NULL;
        memset(fds + self->nfds, 0, (size_t)(n - self->nfds) * sizeof *fds);
        self->fds = fds;
        int *list = PyMem_Realloc(self->ready_list, (size_t)n * sizeof *list);
        if (!list)
            return NULL;
        self->ready_list = list;
        self->nfds = n;
    }
    if (!self->fds[fd]) {
        struct fd_watch *w = PyMem_Calloc(1, sizeof *w);
        if (!w)
            return NULL;
        w->bridge = self;
        w->fd = fd;
        self->fds[fd] = w;
    }
    return self->fds[fd];
}

PyDoc_STRVAR(watch_doc, "watch(fd, mask)\n\n"
"Watches fd for reading (mask bit 1) and writing (bit 2); mask 0 stops\n"
"watching. Readiness is level-triggered and collected by take_events().\n"
"Raises OSError with the errno loopbridge gave (EPERM for a regular file).");

static PyObject *Bridge_watch(Bridge *self, PyObject *args)
{
    int fd, mask;
    if (!PyArg_ParseTuple(args, "ii:watch", &fd, &mask) || check_open(self))
        return NULL;
    if (fd < 0 || (mask & ~(WATCH_READ | WATCH_WRITE))) {
        PyErr_Format(PyExc_ValueError, "bad fd %d or mask %d", fd, mask);
        return NULL;
    }
    struct fd_watch *w = watch_for(self, fd);
    if (!w)
        return PyErr_NoMemory();
    int rc = 0;
    if ((mask & WATCH_READ) && !(w->watched & WATCH_READ)) {
        rc = lb_loop_add_reader(self->loop, fd, on_readable, w);
        if (rc < 0)
            return raise_lb(rc, "add_reader");
        w->watched |= WATCH_READ;
    } else if (!(mask & WATCH_READ) && (w->watched & WATCH_READ)) {
        lb_loop_remove_reader(self->loop, fd);
        w->watched &= (unsigned char)~WATCH_READ;
    }
    if ((mask & WATCH_WRITE) && !(w->watched & WATCH_WRITE)) {
        rc = lb_loop_add_writer(self->loop, fd, on_writable, w);
        if (rc < 0)
            return raise_lb(rc, "add_writer");
        w->watched |= WATCH_WRITE;
    } else if (!(mask & WATCH_WRITE) && (w->watched & WATCH_WRITE)) {
        lb_loop_remove_writer(self->loop, fd);
        w->watched &= (unsigned char)~WATCH_WRITE;
    }
    /* readiness seen for a direction no longer watched is stale */
    w->ready &= w->watched;
    Py_RETURN_NONE;
}

/* Adds what a zero-timeout poll() of the watched fds sees, so that a pass
 * sees every fd ready at its start, as a selector loop's iteration does,
 * even if the host has not polled since. */
static int poll_watched(Bridge *self)
{
    int n = 0;
    for (int fd = 0; fd < self->nfds; fd++)
        if (self->fds[fd] && self->fds[fd]->watched)
            n++;
    if (n == 0)
        return 0;
    struct pollfd *pfds = PyMem_Malloc((size_t)n * sizeof *pfds);
    if (!pfds)
        return -1;
    int i = 0;
    for (int fd = 0; fd < self->nfds; fd++) {
        struct fd_watch *w = self->fds[fd];
        if (!w || !w->watched)
            continue;
        pfds[i].fd = fd;
        pfds[i].events = (short)(((w->watched & WATCH_READ) ? POLLIN : 0) |
                                 ((w->watched & WATCH_WRITE) ? POLLOUT : 0));
        pfds[i].revents = 0;
        i++;
    }
    int rc = poll(pfds, (nfds_t)n, 0);
    for (i = 0; rc > 0 && i < n; i++) {
        short re = pfds[i].revents;
        if (!re || (re & POLLNVAL))
            continue;
        int what = 0;
        if (re & (POLLIN | POLLHUP | POLLERR))
            what |= WATCH_READ;
        if (re & (POLLOUT | POLLHUP | POLLERR))
            what |= WATCH_WRITE;
        add_ready(self->fds[pfds[i].fd], what);
    }
    PyMem_Free(pfds);
    return 0;
}

PyDoc_STRVAR(take_events_doc, "take_events(poll=True) -> list of (fd, mask)\n\n"
"Returns the fds that became ready since the last call, or that a poll\n"
"with no timeout finds ready now (poll=False: only what the host\n"
"reported, no system call), and forgets them.");

static PyObject *Bridge_take_events(Bridge *self, PyObject *args)
{
    int poll_now = 1;
    if (!PyArg_ParseTuple(args, "|p:take_events", &poll_now))
        return NULL;
    if (self->loop && poll_now && poll_watched(self) < 0)
        return PyErr_NoMemory();
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    for (int i = 0; i < self->nready; i++) {
        int fd = self->ready_list[i];
        struct fd_watch *w = fd < self->nfds ? self->fds[fd] : NULL;
        if (!w)
            continue;
        w->listed = 0;
        if (!w->ready)
            continue;
        PyObject *item = Py_BuildValue("(ii)", fd, (int)w->ready);
        w->ready = 0;
        if (!item || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    self->nready = 0;
    return list;
}

PyDoc_STRVAR(schedule_doc, "schedule(delay=0)\n\n"
"Asks for one pass (the Tcl command or the callable) as soon as the host\n"
"loop turns, or delay seconds from now; asking again before it ran\n"
"changes nothing. Between passes loopbridge lets the toolkit run once\n"
"its budget is spent.");

static PyObject *Bridge_schedule(Bridge *self, PyObject *const *args, Py_ssize_t nargs)
{
    double delay = 0;
    /* the loop asks before every callback it runs: a pass already
     * waiting makes that a no-op, so answer it first */
    if (nargs == 0 && self->pass && self->loop)
        Py_RETURN_NONE;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "schedule() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 1) {
        delay = PyFloat_AsDouble(args[0]);
        if (delay == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (check_open(self))
        return NULL;
    if (delay != delay) {
        PyErr_SetString(PyExc_ValueError, "delay is NaN");
        return NULL;
    }
    int rc = request_pass_in(self, delay);
    if (rc < 0)
        return raise_lb(rc, "schedule");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(wake_doc, "wake()\n\n"
"schedule() for the hot path: asks for a pass as soon as the host loop\n"
"turns; does nothing when one is waiting already or the bridge is closed.");

static PyObject *Bridge_wake(Bridge *self, PyObject *unused)
{
    if (lb_py_bridge_wake((PyObject *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(wake_threadsafe_doc, "wake_threadsafe()\n\n"
"From any thread: runs a pass on the bridge's thread as soon as its host\n"
"loop wakes (loopbridge's own cross-thread wakeup). Does nothing once the\n"
"bridge is closed.");

static PyObject *Bridge_wake_threadsafe(Bridge *self, PyObject *unused)
{
    if (lb_py_bridge_wake_threadsafe((PyObject *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

#ifdef LB_PY_HAVE_TK
/* Tk: the pass that a signal asks for, as an event of its own in Tcl's
 * queue, serviced by a later Tcl_DoOneEvent than the drain that ran
 * on_signal_byte. The drain's own returns first, to whoever called it:
 * tkinter's mainloop() checks for signals after each event, dooneevent()
 * and update() return to Python, run_*() to its wait, and the handler's
 * KeyboardInterrupt comes out there. Only when Tcl itself waits (vwait,
 * wait_variable, a message box) does this pass run first, so that the
 * handler runs in it rather than in the next callback of the program
 * (an `after` that would then never finish its work); its
 * KeyboardInterrupt is then a Tcl background error, as any exception of
 * a Tcl callback. A pass of `update` (TCL_DONT_WAIT), which returns to
 * its caller once nothing is left, leaves the event queued. */
/* What a queued event names instead of its Bridge: the bridge may be
 * closed on another thread, whose Tcl_DeleteEvents() cannot reach this
 * thread's queue, and freed before the event is serviced. Close clears
 * the pointer; the bridge and each queued event hold a reference. */
typedef struct signal_pass_token {
    atomic_int refs;
    Bridge *_Atomic bridge; /* NULL once the bridge closed */
} signal_pass_token;

typedef struct signal_pass_event {
    Tcl_Event header;
    signal_pass_token *token;
} signal_pass_event;

static void token_unref(signal_pass_token *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1)
        PyMem_RawFree(t);
}

static int signal_pass_proc(Tcl_Event *ev, int flags)
{
    if (!(flags & (TCL_FILE_EVENTS | TCL_TIMER_EVENTS)) || (flags & TCL_DONT_WAIT))
        return 0;
    signal_pass_token *t = ((signal_pass_event *)ev)->token;
    Bridge *self = atomic_load(&t->bridge);
    token_unref(t); /* the bridge holds one while it is open */
    if (self) {
        self->signal_pass_queued = 0;
        if (self->loop)
            notify(self);
    }
    return 1;
}

typedef struct token_events {
    signal_pass_token *token;
    int deleted;
} token_events;

static int is_signal_pass_of(Tcl_Event *ev, ClientData data)
{
    token_events *te = data;
    if (ev->proc != signal_pass_proc || ((signal_pass_event *)ev)->token != te->token)
        return 0;
    te->deleted++;
    return 1;
}

static void queue_signal_pass(Bridge *self)
{
    if (self->signal_pass_queued)
        return;
    if (!self->signal_pass) {
        signal_pass_token *t = PyMem_RawMalloc(sizeof *t);
        if (!t)
            return; /* the handler runs when Python runs next */
        atomic_init(&t->refs, 1);
        atomic_init(&t->bridge, self);
        self->signal_pass = t;
    }
    signal_pass_event *ev = (signal_pass_event *)ckalloc(sizeof *ev);
    ev->header.proc = signal_pass_proc;
    ev->token = self->signal_pass;
    atomic_fetch_add(&ev->token->refs, 1);
    self->signal_pass_queued = 1;
    Tcl_QueueEvent(&ev->header, TCL_QUEUE_TAIL);
}

/* Close: events still queued find no bridge. On the interp's thread they
 * go from the queue (their references with them); elsewhere they stay
 * until that thread services them. */
static void drop_signal_passes(Bridge *self)
{
    signal_pass_token *t = self->signal_pass;
    if (!t)
        return;
    self->signal_pass = NULL;
    self->signal_pass_queued = 0;
    atomic_store(&t->bridge, NULL);
    if (Tcl_GetCurrentThread() == self->tcl_thread) {
        token_events te = {t, 0};
        Tcl_DeleteEvents(is_signal_pass_of, &te);
        while (te.deleted-- > 0)
            token_unref(t);
    }
    token_unref(t);
}
#endif

/* A signal's byte came (the pipe's thread posted this): a pass runs the
 * signal's Python handler first (PassCall). On GLib at once: its main
 * loop may run in C (Gtk.Application.run()). */
static void on_signal_byte(lb_loop *loop, void *data)
{
    Bridge *self = data;
    (void)loop;
    if (!self->loop)
        return;
#ifdef LB_PY_HAVE_TK
    if (self->is_tk) {
        queue_signal_pass(self);
        return;
    }
#endif
    notify(self);
}

PyDoc_STRVAR(signal_fd_doc, "signal_fd() -> int\n\n"
"A non-blocking fd for signal.set_wakeup_fd(): a signal then runs a pass\n"
"at once, which runs the signal's Python handler. Made on first use,\n"
"closed with the bridge.");

/* Where signal.set_wakeup_fd() has from, puts to (-1: none); any other
 * wakeup fd stays. Returns 1 if it could look, 0 if not (only the main
 * thread may; the wakeup fd is then left as it is). Keeps the exception
 * being raised, if any: a dealloc may run with one set. */
static int replace_wakeup_fd(int from, int to)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int looked = 0;
    PyObject *signal = PyImport_ImportModule("signal");
    PyObject *current = signal ? PyObject_CallMethod(signal, "set_wakeup_fd", "i", -1) : NULL;
    if (current) {
        long was = PyLong_AsLong(current);
        long put = was == from ? to : was;
        looked = 1;
        if (put != -1) {
            PyObject *back = PyObject_CallMethod(signal, "set_wakeup_fd", "l", put);
            Py_XDECREF(back);
        }
    }
    Py_XDECREF(current);
    Py_XDECREF(signal);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return looked;
}

static PyObject *Bridge_signal_fd(Bridge *self, PyObject *unused)
{
    if (check_open(self))
        return NULL;
    int inherited[2] = {-1, -1};
    int rc = self->signal_pipe
        ? lb_py_signal_pipe_renew(self->signal_pipe, inherited) /* after a fork */
        : lb_py_signal_pipe_open(&self->signal_pipe, self->loop, on_signal_byte, self);
    if (rc < 0) {
        errno = -rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int fd = lb_py_signal_pipe_fd(self->signal_pipe);
    if (inherited[1] >= 0) /* a fork during a run of the parent's */
        replace_wakeup_fd(inherited[1], fd);
    for (int i = 0; i < 2; i++)
        if (inherited[i] >= 0)
            close(inherited[i]);
    return PyLong_FromLong(fd);
}

PyDoc_STRVAR(set_timer_doc, "set_timer(when)\n\n"
"Runs a pass at when, on CLOCK_MONOTONIC (time.monotonic(), asyncio's\n"
"loop.time() on Linux), replacing the previous deadline; None removes it.\n"
"An absolute deadline, so that the pass never comes before it.");

static PyObject *Bridge_set_timer(Bridge *self, PyObject *arg)
{
    if (check_open(self))
        return NULL;
    double when = 0;
    if (arg != Py_None) {
        when = PyFloat_AsDouble(arg);
        if (when == -1.0 && PyErr_Occurred())
            return NULL;
        if (when != when) {
            PyErr_SetString(PyExc_ValueError, "when is NaN");
            return NULL;
        }
    }
    if (self->timer) {
        lb_handle_cancel(self->timer);
        lb_handle_unref(self->timer);
        self->timer = NULL;
    }
    if (arg != Py_None) {
        int rc = lb_loop_call_at(self->loop, when, on_timer, self, &self->timer);
        if (rc < 0) {
            self->timer = NULL;
            return raise_lb(rc, "call_at");
        }
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_budget_doc, "set_budget(seconds)\n\n"
"How long the loop may keep the host busy before the toolkit gets a turn.");

static PyObject *Bridge_set_budget(Bridge *self, PyObject *arg)
{
    if (check_open(self))
        return NULL;
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    int rc = -EINVAL;
#ifdef LB_PY_HAVE_TK
    if (self->is_tk)
        rc = lb_tk_loop_set_budget(self->loop, seconds);
#endif
#ifdef LB_PY_HAVE_GLIB
    if (!self->is_tk)
        rc = lb_glib_loop_set_budget(self->loop, seconds);
#endif
    if (rc < 0)
        return raise_lb(rc, "set_budget");
    Py_RETURN_NONE;
}

/* Whether fd is not, or no longer, signal.set_wakeup_fd()'s fd: taken
 * back if it is still there, someone else's left in place. The loop's
 * waits and close() give the bridge's fd back with it, and the bridge's
 * close too (a hosted loop dropped without close() leaves it there, and
 * a signal must not write into whatever reuses the number). Only the
 * main thread may look; elsewhere the answer is no, and the bridge keeps
 * its pipe open (two fds kept, nothing overwritten). */
static int wakeup_fd_released(int fd)
{
    return replace_wakeup_fd(fd, -1);
}

static void bridge_close(Bridge *self)
{
    if (self->loop) {
        drop_pass(self);
        if (self->timer) {
            lb_handle_cancel(self->timer);
            lb_handle_unref(self->timer);
            self->timer = NULL;
        }
        for (int fd = 0; fd < self->nfds; fd++) {
            struct fd_watch *w = self->fds[fd];
            if (w && (w->watched & WATCH_READ))
                lb_loop_remove_reader(self->loop, fd);
            if (w && (w->watched & WATCH_WRITE))
                lb_loop_remove_writer(self->loop, fd);
        }
        lb_py_signal_pipe_stop(self->signal_pipe); /* it posts to the loop */
#ifdef LB_PY_HAVE_TK
        drop_signal_passes(self);
#endif
        lb_loop *loop = self->loop;
        self->loop = NULL; /* a pass still queued sees the bridge closed */
        lb_loop_close(loop);
        lb_loop_unref(loop);
    }
    if (self->signal_pipe && wakeup_fd_released(lb_py_signal_pipe_fd(self->signal_pipe))) {
        lb_py_signal_pipe_close(self->signal_pipe);
        self->signal_pipe = NULL;
    }
    for (int fd = 0; fd < self->nfds; fd++)
        PyMem_Free(self->fds[fd]);
    PyMem_Free(self->fds);
    PyMem_Free(self->ready_list);
    self->fds = NULL;
    self->ready_list = NULL;
    self->nfds = self->nready = 0;
#ifdef LB_PY_HAVE_TK
    if (self->command) {
        Tcl_DecrRefCount(self->command);
        self->command = NULL;
    }
#endif
    Py_CLEAR(self->callback);
}

PyDoc_STRVAR(close_doc, "close()\n\nCloses the loopbridge loop; idempotent.");

static PyObject *Bridge_close(Bridge *self, PyObject *unused)
{
    if (self->in_notify) {
        PyErr_SetString(PyExc_RuntimeError, "cannot close the bridge during its own pass");
        return NULL;
    }
    bridge_close(self);
    Py_RETURN_NONE;
}

static PyObject *Bridge_closed(Bridge *self, void *unused)
{
    return PyBool_FromLong(self->loop == NULL);
}

static int Bridge_init(Bridge *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind", "address", "target", NULL};
    const char *kind;
    unsigned long long address;
    PyObject *target;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sKO:Bridge", kwlist, &kind, &address, &target))
        return -1;
    if (self->loop) {
        PyErr_SetString(PyExc_RuntimeError, "Bridge already initialised");
        return -1;
    }
    int rc;
    if (strcmp(kind, "tk") == 0) {
#ifdef LB_PY_HAVE_TK
        const char *name = PyUnicode_Check(target) ? PyUnicode_AsUTF8(target) : NULL;
        if (!name || !address) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "tk bridge: interp address and command name needed");
            return -1;
        }
        self->is_tk = 1;
        self->interp = (Tcl_Interp *)(uintptr_t)address;
        self->tcl_thread = Tcl_GetCurrentThread();
        rc = lb_tk_loop_new(&self->loop, self->interp);
        if (rc < 0) {
            raise_lb(rc, "lb_tk_loop_new");
            return -1;
        }
        self->command = Tcl_NewStringObj(name, -1);
        Tcl_IncrRefCount(self->command);
        return 0;
#else
        PyErr_SetString(PyExc_RuntimeError, "loopbridge was built without Tcl/Tk");
        return -1;
#endif
    }
    if (strcmp(kind, "glib") == 0) {
#ifdef LB_PY_HAVE_GLIB
        if (!PyCallable_Check(target)) {
            PyErr_SetString(PyExc_TypeError, "glib bridge: a callable is needed");
            return -1;
        }
        GMainContext *context = (GMainContext *)(uintptr_t)address;
        rc = lb_glib_loop_new(&self->loop, context ? context : g_main_context_default());
        if (rc < 0) {
            raise_lb(rc, "lb_glib_loop_new");
            return -1;
        }
        Py_INCREF(target);
        self->callback = target;
        return 0;
#else
        PyErr_SetString(PyExc_RuntimeError, "loopbridge was built without GLib");
        return -1;
#endif
    }
    PyErr_Format(PyExc_ValueError, "unknown bridge kind %s", kind);
    return -1;
}

static void Bridge_dealloc(Bridge *self)
{
    bridge_close(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Bridge_methods[] = {
    {"watch", (PyCFunction)Bridge_watch, METH_VARARGS, watch_doc},
    {"take_events", (PyCFunction)Bridge_take_events, METH_VARARGS, take_events_doc},
    {"schedule", (PyCFunction)(void (*)(void))Bridge_schedule, METH_FASTCALL, schedule_doc},
    {"wake", (PyCFunction)Bridge_wake, METH_NOARGS, wake_doc},
    {"wake_threadsafe", (PyCFunction)Bridge_wake_threadsafe, METH_NOARGS, wake_threadsafe_doc},
    {"signal_fd", (PyCFunction)Bridge_signal_fd, METH_NOARGS, signal_fd_doc},
    {"set_timer", (PyCFunction)Bridge_set_timer, METH_O, set_timer_doc},
    {"set_budget", (PyCFunction)Bridge_set_budget, METH_O, set_budget_doc},
    {"close", (PyCFunction)Bridge_close, METH_NOARGS, close_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *Bridge_timer_armed(Bridge *self, void *unused)
{
    return PyBool_FromLong(self->timer != NULL);
}

static PyGetSetDef Bridge_getset[] = {
    {"timer_armed", (getter)Bridge_timer_armed, NULL, "True while set_timer's deadline is pending", NULL},
    {"closed", (getter)Bridge_closed, NULL, "True once close() ran", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Bridge_doc, "Bridge(kind, address, target)\n\n"
"A loopbridge loop in a host main loop. kind 'tk': address is\n"
"tkapp.interpaddr(), target the name of a Tcl command made with\n"
"tkapp.createcommand() that runs one pass. kind 'glib': address is the\n"
"GMainContext's address (0: the default context), target a callable\n"
"that runs one pass. Use it only on the thread that made it.");

static PyTypeObject BridgeType;

int lb_py_is_bridge(PyObject *obj)
{
    return PyObject_TypeCheck(obj, &BridgeType);
}

/* A wakeup from another thread: the pass runs right away, in place of
 * one waiting. The loop runs this only while open (close drops queued
 * posts), and the Bridge is not freed before it closes its loop. */
static void on_thread_wake(lb_loop *loop, void *data)
{
    Bridge *self = data;
    if (self->loop) {
        drop_pass(self);
        notify(self);
    }
}

int lb_py_bridge_wake_threadsafe(PyObject *bridge)
{
    Bridge *self = (Bridge *)bridge;
    /* the GIL is held: the loop's thread cannot be closing it meanwhile */
    if (!self->loop)
        return 0;
    int rc = lb_loop_call_soon_threadsafe(self->loop, on_thread_wake, self);
    if (rc < 0 && rc != -EBADF) {
        raise_lb(rc, "wake_threadsafe");
        return -1;
    }
    return 0;
}

int lb_py_bridge_closed(PyObject *bridge)
{
    return ((Bridge *)bridge)->loop == NULL;
}

int lb_py_bridge_timer_armed(PyObject *bridge)
{
    return ((Bridge *)bridge)->timer != NULL;
}

int lb_py_bridge_wake(PyObject *bridge)
{
    Bridge *self = (Bridge *)bridge;
    if (self->loop && !self->pass) {
        int rc = request_pass_in(self, 0);
        if (rc < 0) {
            raise_lb(rc, "wake");
            return -1;
        }
    }
    return 0;
}

static PyTypeObject BridgeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loopbridge._loopbridge.Bridge",
    .tp_basicsize = sizeof(Bridge),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Bridge_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Bridge_init,
    .tp_dealloc = (destructor)Bridge_dealloc,
    .tp_methods = Bridge_methods,
    .tp_getset = Bridge_getset,
};

PyDoc_STRVAR(release_wakeup_fd_doc, "release_wakeup_fd(fd) -> bool\n\n"
"Takes fd back from signal.set_wakeup_fd() if it is still there; a wakeup\n"
"fd set since by someone else stays. False off the main thread, where\n"
"the wakeup fd cannot be looked at.");

static PyObject *release_wakeup_fd(PyObject *module, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "release_wakeup_fd: not an fd");
        return NULL;
    }
    return PyBool_FromLong(wakeup_fd_released((int)fd));
}

static PyMethodDef module_methods[] = {
    {"release_wakeup_fd", release_wakeup_fd, METH_O, release_wakeup_fd_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = module_methods,
    .m_name = "loopbridge._loopbridge",
    .m_doc = "loopbridge loops hosted by Tcl/Tk or GLib, for loopbridge's asyncio loops.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__loopbridge(void);

PyMODINIT_FUNC PyInit__loopbridge(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddType(m, &BridgeType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (lb_py_loopcore_add(m) < 0 || lb_py_passcall_add(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef LB_PY_HAVE_TK
    PyModule_AddIntConstant(m, "HAVE_TK", 1);
#else
    PyModule_AddIntConstant(m, "HAVE_TK", 0);
#endif
#ifdef LB_PY_HAVE_GLIB
    PyModule_AddIntConstant(m, "HAVE_GLIB", 1);
#else
    PyModule_AddIntConstant(m, "HAVE_GLIB", 0);
#endif
    return m;
}
