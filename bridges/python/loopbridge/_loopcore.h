/* SPDX-License-Identifier: MIT */
/* LoopCore, the C base of loopbridge's asyncio loops, and what its files
 * share: _loopcore.c (the type, call_soon, the running of ready handles),
 * _looptimers.c (call_at, call_later, the timer heap) and _handles.c
 * (asyncio.Handle objects made and run from C). */
#ifndef LOOPBRIDGE_PY_LOOPCORE_H
#define LOOPBRIDGE_PY_LOOPCORE_H

#include "_loopbridge.h"

typedef struct {
    PyObject_HEAD
    PyObject *bridge;        /* the Bridge: wake() asks its host for a pass */
    PyObject *ready;         /* asyncio's _ready deque */
    PyObject *ready_append;  /* its bound append and popleft */
    PyObject *ready_popleft;
    PyObject *closed;        /* asyncio's _closed */
    PyObject *debug;         /* asyncio's _debug */
    PyObject *deadline;      /* _lb_deadline: the when the host's timer is armed for */
    unsigned long owner;     /* _lb_owner: the thread the loop belongs to */
    long long passes;        /* _lb_passes: passes begun, nested ones too */
    long long timer_woke;    /* _lb_timer_woke: the pass in which call_at() woke the host */
    long pass_depth;         /* _lb_pass_depth: passes running on the stack */
    char woken;              /* _lb_woken: a wakeup byte is on its way */
    /* Every timer in _scheduled was pushed by call_at() below with a
     * number for its when: the heap compares whens in C. Cleared for
     * good once asyncio's own call_at() (debug mode) pushed one. */
    char heap_numeric;
} LoopCore;

/* -- asyncio's handles (_handles.c) -------------------------------------- */

/* The module function use_handles(Handle, TimerHandle, report). */
PyObject *lb_py_use_handles(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char lb_py_use_handles_doc[];

/* A new asyncio.Handle for callback(*args) in context (NULL: a copy of the
 * current one), as Handle(callback, args, loop, context) makes it outside
 * debug mode. */
PyObject *lb_py_handle_new(PyObject *callback, PyObject *args, PyObject *loop, PyObject *context);

/* The same for asyncio.TimerHandle(when, ...), not yet in the heap. */
PyObject *lb_py_timer_new(PyObject *when, PyObject *callback, PyObject *args, PyObject *loop,
                          PyObject *context);

/* Runs handle as Handle._run does. 0; or -1 with SystemExit or
 * KeyboardInterrupt (or a failing exception handler) raised. */
int lb_py_handle_run(PyObject *handle);

/* handle._cancelled: 1, 0, or -1 with an exception. */
int lb_py_handle_cancelled(PyObject *handle);

/* when as the double it equals exactly: 0, or -1 when it is no float or
 * int, or an int a double cannot hold (beyond 2**53). */
int lb_py_exact_double(PyObject *when, double *ret);

/* timer._when as lb_py_exact_double() gives it: 0, or -1 (timer no
 * asyncio.TimerHandle, or its when no such number). */
int lb_py_timer_when(PyObject *timer, double *ret);

/* timer._scheduled = flag (asyncio: "the timer is in the heap"). */
int lb_py_timer_set_scheduled(PyObject *timer, int flag);

/* -- shared by LoopCore's methods (_loopcore.c) ------------------------- */

/* -1 with RuntimeError('Event loop is closed') when closed, else 0. */
int lb_py_core_check_open(LoopCore *self);

/* asyncio's _debug: 1, 0, or -1 with an exception. */
int lb_py_core_debug(LoopCore *self);

/* True when kwnames (of a vectorcall) holds no keyword but context. */
int lb_py_only_context_keyword(PyObject *kwnames);

/* Appends handle to _ready. 0, or -1 with an exception. */
int lb_py_core_ready_push(LoopCore *self, PyObject *handle);

/* Splits a vectorcall (callback, *args, context=None): *context is NULL
 * for None, *rest a new tuple. 0, or -1 with TypeError naming name. */
int lb_py_parse_callback(const char *name, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames, PyObject **context, PyObject **rest);

/* self.<name>(*args, **kw) from a vectorcall: asyncio's Python paths
 * (debug mode, keyword arguments). */
PyObject *lb_py_core_call_python(LoopCore *self, PyObject *name, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames);

/* CLOCK_MONOTONIC in seconds: time.monotonic(), asyncio's loop.time(). */
double lb_py_monotonic(void);

/* -- timers (_looptimers.c) ---------------------------------------------- */

PyObject *lb_py_core_call_at(LoopCore *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames);
PyObject *lb_py_core_call_later(LoopCore *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames);
PyObject *lb_py_core_collect_due(LoopCore *self, PyObject *end_time);
extern const char lb_py_call_at_doc[], lb_py_call_later_doc[], lb_py_collect_due_doc[];

/* Interned names, made by lb_py_loopcore_add(). */
extern PyObject *lb_py_str_run, *lb_py_str_call_at_py, *lb_py_str_call_later_py,
    *lb_py_str_rearm,
    *lb_py_str_scheduled, *lb_py_str_timer_cancelled_count;

#endif
