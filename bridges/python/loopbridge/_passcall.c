/* SPDX-License-Identifier: MIT */
/* PassCall: what the host calls to run one pass of a loop (the Tcl
 * command's function on Tk, the Bridge's callable on GLib).
 *
 * A signal's Python handler runs at the first point Python checks for
 * it, and after a wakeup by the signal that is the entry of the pass. A
 * KeyboardInterrupt raised there, before the pass's own try blocks, used
 * to leave through the Tcl command as a background error: lost, and the
 * pass that would have re-armed the loop's timer never ran, so the loop
 * hung. Here pending signals are handled in C before the pass is
 * entered, and a KeyboardInterrupt or SystemExit that escapes goes to
 * loop._lb_interrupted(), which hands it to the waiting run_*() call and
 * asks for the pass again. */
#include "_loopbridge.h"

typedef struct {
    PyObject_HEAD
    PyObject *loop_ref; /* the loop, weakly: the host holds this object */
} PassCall;

static PyObject *str_host_pass, *str_interrupted;

static PyObject *PassCall_call(PassCall *self, PyObject *args, PyObject *kwargs)
{
    PyObject *loop = PyWeakref_GetObject(self->loop_ref);
    if (!loop)
        return NULL;
    if (loop == Py_None)
        Py_RETURN_NONE;
    Py_INCREF(loop);
    PyObject *res = NULL;
    if (PyErr_CheckSignals() == 0)
        res = PyObject_CallMethodNoArgs(loop, str_host_pass);
    if (!res && (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
                 PyErr_ExceptionMatches(PyExc_SystemExit))) {
        PyObject *exc = lb_py_take_exception();
        PyObject *taken = PyObject_CallMethodOneArg(loop, str_interrupted, exc);
        if (taken && PyObject_IsTrue(taken) != 1)
            lb_py_raise_again(exc); /* nobody waits: it propagates */
        else if (taken)
            res = Py_NewRef(Py_None);
        Py_XDECREF(taken);
        Py_DECREF(exc);
    }
    Py_DECREF(loop);
    return res;
}

static void PassCall_dealloc(PassCall *self)
{
    Py_XDECREF(self->loop_ref);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(PassCall_doc, "PassCall(loop)\n\n"
"Runs loop._lb_host_pass() when called (with any arguments), holding the\n"
"loop weakly; signals pending at the call are handled first.");

static PyTypeObject PassCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loopbridge._loopbridge.PassCall",
    .tp_basicsize = sizeof(PassCall),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PassCall_doc,
    .tp_call = (ternaryfunc)PassCall_call,
    .tp_dealloc = (destructor)PassCall_dealloc,
};

static PyObject *PassCall_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *loop;
    if (!PyArg_ParseTuple(args, "O:PassCall", &loop))
        return NULL;
    PyObject *ref = PyWeakref_NewRef(loop, NULL);
    if (!ref)
        return NULL;
    PassCall *self = (PassCall *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(ref);
        return NULL;
    }
    self->loop_ref = ref;
    return (PyObject *)self;
}

int lb_py_passcall_add(PyObject *module)
{
    str_host_pass = PyUnicode_InternFromString("_lb_host_pass");
    str_interrupted = PyUnicode_InternFromString("_lb_interrupted");
    if (!str_host_pass || !str_interrupted)
        return -1;
    PassCallType.tp_new = PassCall_new;
    return PyModule_AddType(module, &PassCallType);
}
