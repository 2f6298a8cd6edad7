/* SPDX-License-Identifier: MIT */
/* asyncio's Handle and TimerHandle, made and run from C.
 *
 * Handle.__init__ and Handle._run are Python frames on the path of every
 * callback. Here a handle is allocated and its slots written directly, as
 * __init__ writes them outside debug mode, and it is run in its context
 * as _run runs it. The slots are found by name once (use_handles()), from
 * their member descriptors: a Python whose handles differ is detected and
 * gets the generic paths (calling the class, calling _run). */
#include "_loopcore.h"

#include <structmember.h>

/* The offsets are those of the slots' member descriptors, the very fields
 * that handle._callback and the others read and write. */
static struct {
    PyTypeObject *type;        /* asyncio.Handle */
    PyTypeObject *timer_type;  /* asyncio.TimerHandle: runs the same way */
    PyObject *report;          /* report(handle, exc): a callback failed */
    int known;                 /* every offset below was found */
    Py_ssize_t callback, args, cancelled, loop, source_traceback, repr, context;
    Py_ssize_t when, scheduled; /* TimerHandle's own */
} handles;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static void slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject *old = SLOT(obj, offset);
    SLOT(obj, offset) = Py_NewRef(value);
    Py_XDECREF(old);
}

/* The offset of type's slot name, or -1 when it is not a plain object
 * slot. */
static Py_ssize_t slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (!descr) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t offset = -1;
    /* the slot of type or of one of its bases, not one copied over */
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type) && PyType_IsSubtype(type, PyDescr_TYPE(descr))) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY))
            offset = member->offset;
    }
    Py_DECREF(descr);
    return offset;
}

const char lb_py_use_handles_doc[] = "use_handles(Handle, TimerHandle, report) -> bool\n\n"
"Tells the C paths asyncio's handle classes and report(handle, exc), which\n"
"reports a callback's exception as Handle._run would. Returns whether the\n"
"handles' slots are the ones known (False: the generic, slower paths).";

PyObject *lb_py_use_handles(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], (PyTypeObject *)args[0]) ||
        !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "use_handles(Handle, TimerHandle, report)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0], *timer_type = (PyTypeObject *)args[1];
    Py_XSETREF(handles.type, (PyTypeObject *)Py_NewRef(type));
    Py_XSETREF(handles.timer_type, (PyTypeObject *)Py_NewRef(timer_type));
    Py_XSETREF(handles.report, Py_NewRef(args[2]));
    handles.callback = slot_offset(type, "_callback");
    handles.args = slot_offset(type, "_args");
    handles.cancelled = slot_offset(type, "_cancelled");
    handles.loop = slot_offset(type, "_loop");
    handles.source_traceback = slot_offset(type, "_source_traceback");
    handles.repr = slot_offset(type, "_repr");
    handles.context = slot_offset(type, "_context");
    handles.when = slot_offset(timer_type, "_when");
    handles.scheduled = slot_offset(timer_type, "_scheduled");
    handles.known = handles.callback >= 0 && handles.args >= 0 && handles.cancelled >= 0 &&
                    handles.loop >= 0 && handles.source_traceback >= 0 && handles.repr >= 0 &&
                    handles.context >= 0 && handles.when >= 0 && handles.scheduled >= 0;
    return PyBool_FromLong(handles.known);
}

static int is_known(PyObject *handle)
{
    return handles.known &&
           (Py_IS_TYPE(handle, handles.type) || Py_IS_TYPE(handle, handles.timer_type));
}

/* Allocates an instance of type with the Handle slots written. */
static PyObject *alloc_handle(PyTypeObject *type, PyObject *callback, PyObject *args,
                              PyObject *loop, PyObject *context)
{
    PyObject *copy = NULL;
    if (!context) {
        context = copy = PyContext_CopyCurrent();
        if (!context)
            return NULL;
    }
    PyObject *handle = type->tp_alloc(type, 0);
    if (handle) {
        slot_set(handle, handles.context, context);
        slot_set(handle, handles.loop, loop);
        slot_set(handle, handles.callback, callback);
        slot_set(handle, handles.args, args);
        slot_set(handle, handles.cancelled, Py_False);
        slot_set(handle, handles.repr, Py_None);
        slot_set(handle, handles.source_traceback, Py_None);
    }
    Py_XDECREF(copy);
    return handle;
}

static int check_used(void)
{
    if (handles.type)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "loopbridge: use_handles() was not called");
    return -1;
}

PyObject *lb_py_handle_new(PyObject *callback, PyObject *args, PyObject *loop, PyObject *context)
{
    if (check_used() < 0)
        return NULL;
    if (!handles.known) {
        PyObject *argv[] = {callback, args, loop, context ? context : Py_None};
        return PyObject_Vectorcall((PyObject *)handles.type, argv, 4, NULL);
    }
    return alloc_handle(handles.type, callback, args, loop, context);
}

PyObject *lb_py_timer_new(PyObject *when, PyObject *callback, PyObject *args, PyObject *loop,
                          PyObject *context)
{
    if (check_used() < 0)
        return NULL;
    if (!handles.known) {
        PyObject *argv[] = {when, callback, args, loop, context ? context : Py_None};
        return PyObject_Vectorcall((PyObject *)handles.timer_type, argv, 5, NULL);
    }
    PyObject *timer = alloc_handle(handles.timer_type, callback, args, loop, context);
    if (timer) {
        slot_set(timer, handles.when, when);
        slot_set(timer, handles.scheduled, Py_False);
    }
    return timer;
}

static int run_generic(PyObject *handle)
{
    PyObject *res = PyObject_CallMethodNoArgs(handle, lb_py_str_run);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* The exception raised by a callback, to report(handle, exc). */
static int report_error(PyObject *handle)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    PyObject *exc = lb_py_take_exception();
    /* the handler runs inside the except clause of Handle._run: its
     * sys.exc_info() (logger.exception(), a bare raise) is this one */
    PyObject *saved_type, *saved_exc, *saved_tb;
    PyErr_GetExcInfo(&saved_type, &saved_exc, &saved_tb);
    PyErr_SetExcInfo(Py_NewRef(Py_TYPE(exc)), Py_NewRef(exc), PyException_GetTraceback(exc));
    PyObject *argv[] = {handle, exc};
    PyObject *reported = PyObject_Vectorcall(handles.report, argv, 2, NULL);
    PyErr_SetExcInfo(saved_type, saved_exc, saved_tb);
    Py_DECREF(exc);
    Py_XDECREF(reported);
    return reported ? 0 : -1;
}

int lb_py_handle_run(PyObject *handle)
{
    if (!is_known(handle))
        return run_generic(handle);
    PyObject *context = SLOT(handle, handles.context);
    PyObject *callback = SLOT(handle, handles.callback);
    PyObject *args = SLOT(handle, handles.args);
    if (!context || !callback || !args || !PyTuple_Check(args) || !PyContext_CheckExact(context))
        return run_generic(handle);
    /* the callback may cancel its own handle, which drops these */
    Py_INCREF(context);
    Py_INCREF(callback);
    Py_INCREF(args);
    PyObject *res = NULL;
    if (PyContext_Enter(context) == 0) {
        res = PyObject_Call(callback, args, NULL);
        if (PyContext_Exit(context) < 0)
            Py_CLEAR(res);
    }
    Py_DECREF(context);
    Py_DECREF(callback);
    Py_DECREF(args);
    if (res) {
        Py_DECREF(res);
        return 0;
    }
    return report_error(handle);
}

int lb_py_handle_cancelled(PyObject *handle)
{
    if (is_known(handle)) {
        PyObject *flag = SLOT(handle, handles.cancelled);
        if (flag == Py_True || flag == Py_False)
            return flag == Py_True;
    }
    PyObject *flag = PyObject_GetAttrString(handle, "_cancelled");
    int cancelled = flag ? PyObject_IsTrue(flag) : -1;
    Py_XDECREF(flag);
    return cancelled;
}

int lb_py_exact_double(PyObject *when, double *ret)
{
    if (PyFloat_CheckExact(when)) {
        *ret = PyFloat_AS_DOUBLE(when);
        return 0;
    }
    if (PyLong_CheckExact(when)) {
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(when, &overflow);
        if (overflow || (value == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return -1;
        }
        const long long limit = 1LL << 53; /* every int up to it is a double */
        if (value > limit || value < -limit)
            return -1;
        *ret = (double)value;
        return 0;
    }
    return -1;
}

int lb_py_timer_when(PyObject *timer, double *ret)
{
    if (!handles.known || !Py_IS_TYPE(timer, handles.timer_type))
        return -1;
    PyObject *when = SLOT(timer, handles.when);
    return when ? lb_py_exact_double(when, ret) : -1;
}

int lb_py_timer_set_scheduled(PyObject *timer, int flag)
{
    if (is_known(timer) && Py_IS_TYPE(timer, handles.timer_type)) {
        slot_set(timer, handles.scheduled, flag ? Py_True : Py_False);
        return 0;
    }
    return PyObject_SetAttr(timer, lb_py_str_scheduled, flag ? Py_True : Py_False);
}
