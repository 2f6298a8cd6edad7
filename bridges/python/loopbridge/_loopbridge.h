/* SPDX-License-Identifier: MIT */
/* What the two halves of the _loopbridge extension share: the Bridge
 * (_loopbridge.c) and the loop's hot paths in C (_loopcore.c). */
#ifndef LOOPBRIDGE_PY_LOOPBRIDGE_H
#define LOOPBRIDGE_PY_LOOPBRIDGE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* True when obj is a Bridge. */
int lb_py_is_bridge(PyObject *obj);

/* Bridge.wake() without the method call: asks the host for a pass unless
 * one waits already or the bridge is closed. 0, or -1 with an exception. */
int lb_py_bridge_wake(PyObject *bridge);

/* Bridge.wake_threadsafe() without the method call; any thread holding
 * the GIL. 0, or -1 with an exception. */
int lb_py_bridge_wake_threadsafe(PyObject *bridge);

/* Bridge.closed and Bridge.timer_armed, as ints. */
int lb_py_bridge_closed(PyObject *bridge);
int lb_py_bridge_timer_armed(PyObject *bridge);

/* The exception being raised, taken off the thread as one normalized
 * object with its traceback attached (a new reference); one must be set. */
PyObject *lb_py_take_exception(void);

/* Raises exc (from lb_py_take_exception()) again; borrows it. */
void lb_py_raise_again(PyObject *exc);

/* Add the LoopCore and PassCall types to the module; 0, or -1 with an
 * exception. */
int lb_py_loopcore_add(PyObject *module);
int lb_py_passcall_add(PyObject *module);

#endif
