/* SPDX-License-Identifier: MIT */
/* LoopCore: the hot paths of loopbridge's asyncio loop (_base.py) in C.
 *
 * Every callback, task step and future callback goes through call_soon()
 * and then through the loop of the pass that runs the ready handles. In
 * Python those cost more than the work of a small callback: a frame for
 * call_soon, another for Handle.__init__, another for Handle._run. Here
 * call_soon makes the asyncio.Handle itself (writing its slots, as its
 * __init__ would) and the pass runs each handle in its context without a
 * Python frame. The objects stay asyncio's own: a Handle is an
 * asyncio.Handle, _ready the loop's deque, so the rest of asyncio sees
 * nothing new.
 *
 * LoopCore is the first base of BridgeEventLoop. It keeps the attributes
 * these paths read on every call (_ready, _closed, _debug, _bridge and the
 * pass counters) in C fields behind descriptors, where asyncio's Python
 * code reads and writes them as before.
 *
 * Debug mode (loop.set_debug(True)) takes asyncio's Python paths, with
 * their checks, source tracebacks and slow-callback warnings. */
#include "_loopbridge.h"

#include <structmember.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *bridge;        /* the Bridge: wake() asks its host for a pass */
    PyObject *ready;         /* asyncio's _ready deque */
    PyObject *ready_append;  /* its bound append and popleft */
    PyObject *ready_popleft;
    PyObject *closed;        /* asyncio's _closed */
    PyObject *debug;         /* asyncio's _debug */
    unsigned long owner;     /* _lb_owner: the thread the loop belongs to */
    unsigned long passes;    /* _lb_passes: passes begun, nested ones too */
    char woken;              /* _lb_woken: a wakeup byte is on its way */
} LoopCore;

/* Where asyncio.Handle keeps its slots, found once by use_handles(). The
 * offsets are those of the slots' member descriptors, the very fields
 * that handle._callback and the others read and write. */
static struct {
    PyTypeObject *type;        /* asyncio.Handle */
    PyTypeObject *timer_type;  /* asyncio.TimerHandle: runs the same way */
    PyObject *report;          /* report(handle, exc): a callback failed */
    Py_ssize_t callback, args, cancelled, loop, source_traceback, repr, context;
} handles;

static PyObject *str_run, *str_call_soon_debug, *str_call_soon_threadsafe_debug,
    *str_write_to_self, *str_append, *str_popleft, *str_context;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static void slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject *old = SLOT(obj, offset);
    Py_INCREF(value);
    SLOT(obj, offset) = value;
    Py_XDECREF(old);
}

/* The offset of type's slot name, or -1 when it is not a plain object
 * slot (another Python's asyncio: the generic paths are taken then). */
static Py_ssize_t slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (!descr) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY))
            offset = member->offset;
    }
    Py_DECREF(descr);
    return offset;
}

PyDoc_STRVAR(use_handles_doc, "use_handles(Handle, TimerHandle, report) -> bool\n\n"
"Tells the C paths asyncio's handle classes and report(handle, exc), which\n"
"reports a callback's exception as Handle._run would. Returns whether the\n"
"handles' slots are the ones known (False: the generic, slower paths).");

static PyObject *use_handles(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], (PyTypeObject *)args[0]) ||
        !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "use_handles(Handle, TimerHandle, report)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    Py_XSETREF(handles.type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(handles.timer_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(handles.report, Py_NewRef(args[2]));
    handles.callback = slot_offset(type, "_callback");
    handles.args = slot_offset(type, "_args");
    handles.cancelled = slot_offset(type, "_cancelled");
    handles.loop = slot_offset(type, "_loop");
    handles.source_traceback = slot_offset(type, "_source_traceback");
    handles.repr = slot_offset(type, "_repr");
    handles.context = slot_offset(type, "_context");
    int known = handles.callback >= 0 && handles.args >= 0 && handles.cancelled >= 0 &&
                handles.loop >= 0 && handles.source_traceback >= 0 && handles.repr >= 0 &&
                handles.context >= 0;
    if (!known)
        handles.callback = -1; /* the flag the paths test */
    return PyBool_FromLong(known);
}

static int fast_handles(void)
{
    return handles.callback >= 0 && handles.type;
}

/* A new asyncio.Handle for callback(*args) in context (NULL: a copy of
 * the current one), as Handle(callback, args, loop, context) makes it
 * outside debug mode. */
static PyObject *handle_new(PyObject *callback, PyObject *args, PyObject *loop, PyObject *context)
{
    if (!fast_handles()) {
        if (!handles.type) {
            PyErr_SetString(PyExc_RuntimeError, "loopbridge: use_handles() was not called");
            return NULL;
        }
        PyObject *argv[] = {callback, args, loop, context ? context : Py_None};
        return PyObject_Vectorcall((PyObject *)handles.type, argv, 4, NULL);
    }
    PyObject *copy = NULL;
    if (!context) {
        context = copy = PyContext_CopyCurrent();
        if (!context)
            return NULL;
    }
    PyTypeObject *type = handles.type;
    PyObject *handle = type->tp_alloc(type, 0);
    if (!handle) {
        Py_XDECREF(copy);
        return NULL;
    }
    slot_set(handle, handles.context, context);
    slot_set(handle, handles.loop, loop);
    slot_set(handle, handles.callback, callback);
    slot_set(handle, handles.args, args);
    slot_set(handle, handles.cancelled, Py_False);
    slot_set(handle, handles.repr, Py_None);
    slot_set(handle, handles.source_traceback, Py_None);
    Py_XDECREF(copy);
    return handle;
}

/* Runs handle as Handle._run does: the callback in the handle's context;
 * an exception goes to report(), except SystemExit and KeyboardInterrupt,
 * which propagate (-1). */
static int handle_run(PyObject *handle)
{
    PyTypeObject *type = Py_TYPE(handle);
    if (!fast_handles() || (type != handles.type && type != handles.timer_type)) {
        PyObject *res = PyObject_CallMethodNoArgs(handle, str_run);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    PyObject *context = SLOT(handle, handles.context);
    PyObject *callback = SLOT(handle, handles.callback);
    PyObject *args = SLOT(handle, handles.args);
    if (!context || !callback || !args || !PyTuple_Check(args)) {
        PyObject *res = PyObject_CallMethodNoArgs(handle, str_run);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
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
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    PyObject *exc_type, *exc, *tb;
    PyErr_Fetch(&exc_type, &exc, &tb);
    PyErr_NormalizeException(&exc_type, &exc, &tb);
    if (tb)
        PyException_SetTraceback(exc, tb);
    PyObject *argv[] = {handle, exc};
    PyObject *reported = PyObject_Vectorcall(handles.report, argv, 2, NULL);
    Py_XDECREF(exc_type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
    Py_XDECREF(reported);
    return reported ? 0 : -1;
}

/* handle._cancelled: 1, 0, or -1 with an exception */
static int handle_cancelled(PyObject *handle)
{
    if (fast_handles() && (Py_IS_TYPE(handle, handles.type) || Py_IS_TYPE(handle, handles.timer_type))) {
        PyObject *flag = SLOT(handle, handles.cancelled);
        if (flag == Py_True || flag == Py_False)
            return flag == Py_True;
    }
    PyObject *flag = PyObject_GetAttrString(handle, "_cancelled");
    int cancelled = flag ? PyObject_IsTrue(flag) : -1;
    Py_XDECREF(flag);
    return cancelled;
}

static int core_closed(LoopCore *self)
{
    if (self->closed == Py_False)
        return 0;
    int closed = self->closed == Py_True ? 1 : PyObject_IsTrue(self->closed);
    if (closed > 0)
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return closed ? -1 : 0;
}

static int core_debug(LoopCore *self)
{
    if (self->debug == Py_False)
        return 0;
    return self->debug == Py_True ? 1 : PyObject_IsTrue(self->debug);
}

static int core_ready_push(LoopCore *self, PyObject *handle)
{
    if (!self->ready_append) {
        PyErr_SetString(PyExc_RuntimeError, "the loop has no _ready queue");
        return -1;
    }
    PyObject *res = PyObject_CallOneArg(self->ready_append, handle);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* callback, *args and context=None, from a vectorcall. */
static int parse_callback(const char *name, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, PyObject **context, PyObject **rest)
{
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: 'callback'", name);
        return -1;
    }
    *context = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_Compare(key, str_context) != 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", name, key);
            return -1;
        }
        *context = args[nargs + i] == Py_None ? NULL : args[nargs + i];
    }
    *rest = PyTuple_New(nargs - 1);
    if (!*rest)
        return -1;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(*rest, i - 1, Py_NewRef(args[i]));
    return 0;
}

/* The Python method name(*args, context=...) of self: the debug paths. */
static PyObject *call_python(LoopCore *self, PyObject *name, PyObject *const *args,
                             size_t nargsf, PyObject *kwnames)
{
    PyObject *method = PyObject_GetAttr((PyObject *)self, name);
    if (!method)
        return NULL;
    PyObject *res = PyObject_Vectorcall(method, args, nargsf, kwnames);
    Py_DECREF(method);
    return res;
}

/* What call_soon() and call_soon_threadsafe() share: asyncio's checks,
 * then a Handle for callback(*args) at the end of _ready. Returns the new
 * handle; or NULL with an exception; or, in debug mode, NULL with no
 * exception: the caller takes asyncio's Python path. */
static PyObject *core_schedule(LoopCore *self, const char *name, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    if (core_closed(self) < 0)
        return NULL;
    int debug = core_debug(self);
    if (debug)
        return NULL;
    PyObject *context, *rest;
    if (parse_callback(name, args, nargs, kwnames, &context, &rest) < 0)
        return NULL;
    PyObject *handle = handle_new(args[0], rest, (PyObject *)self, context);
    Py_DECREF(rest);
    if (handle && core_ready_push(self, handle) < 0)
        Py_CLEAR(handle);
    return handle;
}

PyDoc_STRVAR(call_soon_doc, "call_soon(callback, *args, context=None)\n\n"
"asyncio's call_soon(): runs callback(*args) in the next pass and asks\n"
"the host for that pass.");

static PyObject *core_call_soon(LoopCore *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    PyObject *handle = core_schedule(self, "call_soon", args, PyVectorcall_NARGS(nargsf), kwnames);
    if (!handle)
        return PyErr_Occurred() ? NULL : call_python(self, str_call_soon_debug, args, nargsf, kwnames);
    if (PyThread_get_thread_ident() == self->owner && self->bridge &&
        lb_py_bridge_wake(self->bridge) < 0) {
        Py_DECREF(handle);
        return NULL;
    }
    return handle;
}

PyDoc_STRVAR(call_soon_threadsafe_doc, "call_soon_threadsafe(callback, *args, context=None)\n\n"
"asyncio's call_soon_threadsafe(), from any thread; wakes the host once\n"
"per pass, not once per post.");

static PyObject *core_call_soon_threadsafe(LoopCore *self, PyObject *const *args, size_t nargsf,
                                           PyObject *kwnames)
{
    PyObject *handle = core_schedule(self, "call_soon_threadsafe", args,
                                     PyVectorcall_NARGS(nargsf), kwnames);
    if (!handle)
        return PyErr_Occurred() ? NULL
                                : call_python(self, str_call_soon_threadsafe_debug, args, nargsf, kwnames);
    PyObject *res = Py_None;
    if (PyThread_get_thread_ident() == self->owner) {
        if (self->bridge && lb_py_bridge_wake(self->bridge) < 0)
            res = NULL;
    } else if (!self->woken) {
        /* _write_to_self() sets woken: one byte per pass (see _base.py) */
        res = PyObject_CallMethodNoArgs((PyObject *)self, str_write_to_self);
        Py_XDECREF(res);
    }
    if (!res) {
        Py_DECREF(handle);
        return NULL;
    }
    return handle;
}

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock */
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

PyDoc_STRVAR(run_handles_doc, "_lb_run_handles(ntodo, stop_deadline) -> int\n\n"
"Runs up to ntodo handles off _ready, the body of one iteration outside\n"
"debug mode; stops early once time.monotonic() reaches stop_deadline\n"
"(checked every 4 handles) or _ready runs dry. While handles remain, a\n"
"pass is kept asked for, once per pass begun, so that a nested main loop\n"
"a callback opens runs them. Returns how many of the ntodo were left.");

static PyObject *core_run_handles(LoopCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_lb_run_handles(ntodo, stop_deadline)");
        return NULL;
    }
    Py_ssize_t ntodo = PyLong_AsSsize_t(args[0]);
    if (ntodo == -1 && PyErr_Occurred())
        return NULL;
    double stop_deadline = PyFloat_AsDouble(args[1]);
    if (stop_deadline == -1.0 && PyErr_Occurred())
        return NULL;
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "the loop has no _ready queue");
        return NULL;
    }
    PyObject *ready = Py_NewRef(self->ready);
    PyObject *popleft = Py_NewRef(self->ready_popleft);
    int asked = 0; /* a pass was asked for since passes_seen */
    unsigned long passes_seen = 0;
    while (ntodo > 0) {
        Py_ssize_t len = PyObject_Length(ready);
        if (len <= 0) {
            if (len < 0)
                goto fail;
            break;
        }
        PyObject *handle = PyObject_CallNoArgs(popleft);
        if (!handle)
            goto fail;
        ntodo--;
        int cancelled = handle_cancelled(handle);
        if (cancelled) {
            Py_DECREF(handle);
            if (cancelled < 0)
                goto fail;
            continue;
        }
        if (len > 1 && (!asked || self->passes != passes_seen)) {
            asked = 1;
            passes_seen = self->passes;
            if (self->bridge && lb_py_bridge_wake(self->bridge) < 0) {
                Py_DECREF(handle);
                goto fail;
            }
        }
        int rc = handle_run(handle);
        Py_DECREF(handle);
        if (rc < 0)
            goto fail;
        if ((ntodo & 3) == 0 && ntodo > 0 && monotonic_now() >= stop_deadline)
            break;
    }
    Py_DECREF(ready);
    Py_DECREF(popleft);
    return PyLong_FromSsize_t(ntodo);
fail:
    Py_DECREF(ready);
    Py_DECREF(popleft);
    return NULL;
}

/* -- the attributes kept in C -------------------------------------------- */

static PyObject *get_ready(LoopCore *self, void *unused)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_AttributeError, "_ready");
        return NULL;
    }
    return Py_NewRef(self->ready);
}

static int set_ready(LoopCore *self, PyObject *value, void *unused)
{
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _ready");
        return -1;
    }
    PyObject *append = PyObject_GetAttr(value, str_append);
    PyObject *popleft = append ? PyObject_GetAttr(value, str_popleft) : NULL;
    if (!popleft) {
        Py_XDECREF(append);
        return -1;
    }
    Py_XSETREF(self->ready, Py_NewRef(value));
    Py_XSETREF(self->ready_append, append);
    Py_XSETREF(self->ready_popleft, popleft);
    return 0;
}

static PyObject *get_bridge(LoopCore *self, void *unused)
{
    return Py_NewRef(self->bridge ? self->bridge : Py_None);
}

static int set_bridge(LoopCore *self, PyObject *value, void *unused)
{
    if (!value || !lb_py_is_bridge(value)) {
        PyErr_SetString(PyExc_TypeError, "_bridge must be a Bridge");
        return -1;
    }
    Py_XSETREF(self->bridge, Py_NewRef(value));
    return 0;
}

static int set_flag(PyObject **field, PyObject *value, const char *name)
{
    if (!value) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    Py_XSETREF(*field, Py_NewRef(value));
    return 0;
}

static PyObject *get_closed(LoopCore *self, void *unused)
{
    return Py_NewRef(self->closed);
}

static int set_closed(LoopCore *self, PyObject *value, void *unused)
{
    return set_flag(&self->closed, value, "_closed");
}

static PyObject *get_debug(LoopCore *self, void *unused)
{
    return Py_NewRef(self->debug);
}

static int set_debug(LoopCore *self, PyObject *value, void *unused)
{
    return set_flag(&self->debug, value, "_debug");
}

static PyGetSetDef core_getset[] = {
    {"_ready", (getter)get_ready, (setter)set_ready, "asyncio's queue of ready handles", NULL},
    {"_bridge", (getter)get_bridge, (setter)set_bridge, "the Bridge to the host loop", NULL},
    {"_closed", (getter)get_closed, (setter)set_closed, "asyncio's closed flag", NULL},
    {"_debug", (getter)get_debug, (setter)set_debug, "asyncio's debug flag", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef core_members[] = {
    {"_lb_owner", T_ULONG, offsetof(LoopCore, owner), 0, "the thread the loop belongs to"},
    {"_lb_passes", T_ULONG, offsetof(LoopCore, passes), 0, "passes begun, nested ones too"},
    {"_lb_woken", T_BOOL, offsetof(LoopCore, woken), 0, "a wakeup byte is on its way"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef core_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))core_call_soon, METH_FASTCALL | METH_KEYWORDS,
     call_soon_doc},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))core_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, call_soon_threadsafe_doc},
    {"_lb_run_handles", (PyCFunction)(void (*)(void))core_run_handles, METH_FASTCALL,
     run_handles_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    LoopCore *self = (LoopCore *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    /* closed until BaseEventLoop.__init__ ran: __del__ must not fail */
    self->closed = Py_NewRef(Py_True);
    self->debug = Py_NewRef(Py_False);
    self->owner = PyThread_get_thread_ident();
    return (PyObject *)self;
}

static int core_traverse(LoopCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->bridge);
    Py_VISIT(self->ready);
    Py_VISIT(self->ready_append);
    Py_VISIT(self->ready_popleft);
    Py_VISIT(self->closed);
    Py_VISIT(self->debug);
    return 0;
}

static int core_clear(LoopCore *self)
{
    Py_CLEAR(self->bridge);
    Py_CLEAR(self->ready);
    Py_CLEAR(self->ready_append);
    Py_CLEAR(self->ready_popleft);
    return 0;
}

static void core_dealloc(LoopCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_CLEAR(self->closed);
    Py_CLEAR(self->debug);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(core_doc, "LoopCore\n\n"
"The C base of loopbridge's asyncio loops: call_soon(),\n"
"call_soon_threadsafe() and the running of ready handles.");

static PyTypeObject LoopCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loopbridge._loopbridge.LoopCore",
    .tp_basicsize = sizeof(LoopCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = core_doc,
    .tp_new = core_new,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_getset = core_getset,
};

static PyMethodDef module_functions[] = {
    {"use_handles", (PyCFunction)(void (*)(void))use_handles, METH_FASTCALL, use_handles_doc},
    {NULL, NULL, 0, NULL},
};

static int intern(PyObject **str, const char *text)
{
    *str = PyUnicode_InternFromString(text);
    return *str ? 0 : -1;
}

int lb_py_loopcore_add(PyObject *module)
{
    handles.callback = -1;
    if (intern(&str_run, "_run") < 0 || intern(&str_call_soon_debug, "_lb_call_soon_debug") < 0 ||
        intern(&str_call_soon_threadsafe_debug, "_lb_call_soon_threadsafe_debug") < 0 ||
        intern(&str_write_to_self, "_write_to_self") < 0 || intern(&str_append, "append") < 0 ||
        intern(&str_popleft, "popleft") < 0 || intern(&str_context, "context") < 0)
        return -1;
    if (PyType_Ready(&LoopCoreType) < 0)
        return -1;
    if (PyModule_AddFunctions(module, module_functions) < 0)
        return -1;
    Py_INCREF(&LoopCoreType);
    if (PyModule_AddObject(module, "LoopCore", (PyObject *)&LoopCoreType) < 0) {
        Py_DECREF(&LoopCoreType);
        return -1;
    }
    return 0;
}
