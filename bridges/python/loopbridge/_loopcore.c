/* SPDX-License-Identifier: MIT */
/* LoopCore: the hot paths of loopbridge's asyncio loop (_base.py) in C.
 *
 * Every callback, task step and future callback goes through call_soon()
 * and then through the loop of the pass that runs the ready handles. In
 * Python those cost more than the work of a small callback: a frame for
 * call_soon, another for Handle.__init__, another for Handle._run. Here
 * call_soon makes the asyncio.Handle itself (_handles.c) and the pass runs
 * each handle in its context without a Python frame; the timers are in
 * _looptimers.c. The objects stay asyncio's own: a Handle is an
 * asyncio.Handle, _ready the loop's deque, _scheduled its heapq list, so
 * the rest of asyncio sees nothing new.
 *
 * LoopCore is the first base of BridgeEventLoop. It keeps the attributes
 * these paths read on every call (_ready, _closed, _debug, _bridge and the
 * pass counters) in C fields behind descriptors, where asyncio's Python
 * code reads and writes them as before.
 *
 * Debug mode (loop.set_debug(True)) takes asyncio's Python paths, with
 * their checks, source tracebacks and slow-callback warnings. */
#include "_loopcore.h"

#include <structmember.h>
#include <time.h>

PyObject *lb_py_str_run, *lb_py_str_call_at_py, *lb_py_str_call_later_py, *lb_py_str_rearm,
    *lb_py_str_scheduled, *lb_py_str_timer_cancelled_count;
static PyObject *str_call_soon_py, *str_call_soon_threadsafe_py, *str_append, *str_popleft, *str_context;

int lb_py_core_check_open(LoopCore *self)
{
    if (self->closed == Py_False)
        return 0;
    int closed = self->closed == Py_True ? 1 : PyObject_IsTrue(self->closed);
    if (closed > 0)
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return closed ? -1 : 0;
}

int lb_py_core_debug(LoopCore *self)
{
    if (self->debug == Py_False)
        return 0;
    return self->debug == Py_True ? 1 : PyObject_IsTrue(self->debug);
}

int lb_py_core_ready_push(LoopCore *self, PyObject *handle)
{
    if (!self->ready_append) {
        PyErr_SetString(PyExc_RuntimeError, "the loop has no _ready queue");
        return -1;
    }
    PyObject *res = PyObject_CallOneArg(self->ready_append, handle);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

int lb_py_only_context_keyword(PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++)
        if (PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, i), str_context) != 0)
            return 0;
    return 1;
}

int lb_py_parse_callback(const char *name, PyObject *const *args, Py_ssize_t nargs,
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

PyObject *lb_py_core_call_python(LoopCore *self, PyObject *name, PyObject *const *args,
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
 * handle; or NULL with an exception; or, in debug mode or with keywords
 * other than context, NULL with no exception: the caller takes asyncio's
 * Python path. */
static PyObject *core_schedule(LoopCore *self, const char *name, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    if (!lb_py_only_context_keyword(kwnames))
        return NULL; /* callback=...: asyncio's own path parses it */
    if (lb_py_core_check_open(self) < 0)
        return NULL;
    int debug = lb_py_core_debug(self);
    if (debug)
        return NULL;
    PyObject *context, *rest;
    if (lb_py_parse_callback(name, args, nargs, kwnames, &context, &rest) < 0)
        return NULL;
    PyObject *handle = lb_py_handle_new(args[0], rest, (PyObject *)self, context);
    Py_DECREF(rest);
    if (handle && lb_py_core_ready_push(self, handle) < 0)
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
        return PyErr_Occurred() ? NULL : lb_py_core_call_python(self, str_call_soon_py, args, nargsf, kwnames);
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
                                : lb_py_core_call_python(self, str_call_soon_threadsafe_py, args, nargsf, kwnames);
    PyObject *res = Py_None;
    if (PyThread_get_thread_ident() == self->owner) {
        if (self->bridge && lb_py_bridge_wake(self->bridge) < 0)
            res = NULL;
    } else if (!self->woken && self->bridge) {
        /* one wakeup per pass (see _write_to_self in _base.py) */
        self->woken = 1;
        if (lb_py_bridge_wake_threadsafe(self->bridge) < 0)
            res = NULL;
    }
    if (!res) {
        Py_DECREF(handle);
        return NULL;
    }
    return handle;
}

double lb_py_monotonic(void)
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
    long long passes_seen = 0;
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
        int cancelled = lb_py_handle_cancelled(handle);
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
        int rc = lb_py_handle_run(handle);
        Py_DECREF(handle);
        if (rc < 0)
            goto fail;
        if ((ntodo & 3) == 0 && ntodo > 0 && lb_py_monotonic() >= stop_deadline)
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

static PyObject *get_deadline(LoopCore *self, void *unused)
{
    return Py_NewRef(self->deadline);
}

static int set_deadline(LoopCore *self, PyObject *value, void *unused)
{
    return set_flag(&self->deadline, value, "_lb_deadline");
}

static PyGetSetDef core_getset[] = {
    {"_lb_deadline", (getter)get_deadline, (setter)set_deadline,
     "the when the host's timer is armed for, or None", NULL},
    {"_ready", (getter)get_ready, (setter)set_ready, "asyncio's queue of ready handles", NULL},
    {"_bridge", (getter)get_bridge, (setter)set_bridge, "the Bridge to the host loop", NULL},
    {"_closed", (getter)get_closed, (setter)set_closed, "asyncio's closed flag", NULL},
    {"_debug", (getter)get_debug, (setter)set_debug, "asyncio's debug flag", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef core_members[] = {
    {"_lb_owner", T_ULONG, offsetof(LoopCore, owner), 0, "the thread the loop belongs to"},
    {"_lb_passes", T_LONGLONG, offsetof(LoopCore, passes), 0, "passes begun, nested ones too"},
    {"_lb_timer_woke", T_LONGLONG, offsetof(LoopCore, timer_woke), 0,
     "the pass in which call_at() last woke the host"},
    {"_lb_pass_depth", T_LONG, offsetof(LoopCore, pass_depth), 0, "passes running on the stack"},
    {"_lb_woken", T_BOOL, offsetof(LoopCore, woken), 0, "a wakeup byte is on its way"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef core_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))core_call_soon, METH_FASTCALL | METH_KEYWORDS,
     call_soon_doc},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))core_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, call_soon_threadsafe_doc},
    {"call_at", (PyCFunction)(void (*)(void))lb_py_core_call_at, METH_FASTCALL | METH_KEYWORDS,
     lb_py_call_at_doc},
    {"call_later", (PyCFunction)(void (*)(void))lb_py_core_call_later, METH_FASTCALL | METH_KEYWORDS,
     lb_py_call_later_doc},
    {"_lb_collect_due", (PyCFunction)lb_py_core_collect_due, METH_O, lb_py_collect_due_doc},
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
    self->deadline = Py_NewRef(Py_None);
    self->timer_woke = -1;
    self->heap_numeric = 1;
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
    Py_VISIT(self->deadline);
    return 0;
}

static int core_clear(LoopCore *self)
{
    Py_CLEAR(self->bridge);
    Py_CLEAR(self->ready);
    Py_CLEAR(self->ready_append);
    Py_CLEAR(self->ready_popleft);
    /* never NULL: the paths read them unchecked */
    Py_SETREF(self->closed, Py_NewRef(Py_True));
    Py_SETREF(self->debug, Py_NewRef(Py_False));
    Py_SETREF(self->deadline, Py_NewRef(Py_None));
    return 0;
}

static void core_dealloc(LoopCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_CLEAR(self->closed);
    Py_CLEAR(self->debug);
    Py_CLEAR(self->deadline);
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
    {"use_handles", (PyCFunction)(void (*)(void))lb_py_use_handles, METH_FASTCALL, lb_py_use_handles_doc},
    {NULL, NULL, 0, NULL},
};

static int intern(PyObject **str, const char *text)
{
    *str = PyUnicode_InternFromString(text);
    return *str ? 0 : -1;
}

int lb_py_loopcore_add(PyObject *module)
{
    if (intern(&lb_py_str_run, "_run") < 0 || intern(&lb_py_str_rearm, "_lb_rearm") < 0 ||
        intern(&lb_py_str_call_at_py, "_lb_call_at_py") < 0 ||
        intern(&lb_py_str_call_later_py, "_lb_call_later_py") < 0 ||
        intern(&lb_py_str_scheduled, "_scheduled") < 0 ||
        intern(&lb_py_str_timer_cancelled_count, "_timer_cancelled_count") < 0 ||
        intern(&str_call_soon_py, "_lb_call_soon_py") < 0 ||
        intern(&str_call_soon_threadsafe_py, "_lb_call_soon_threadsafe_py") < 0 ||
        intern(&str_append, "append") < 0 ||
        intern(&str_popleft, "popleft") < 0 || intern(&str_context, "context") < 0)
        return -1;
    if (PyModule_AddFunctions(module, module_functions) < 0)
        return -1;
    return PyModule_AddType(module, &LoopCoreType);
}
