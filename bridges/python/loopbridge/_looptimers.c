/* SPDX-License-Identifier: MIT */
/* call_at(), call_later() and the timer heap of loopbridge's asyncio
 * loops.
 *
 * asyncio keeps its timers in a heapq list, _scheduled, ordered by
 * TimerHandle.__lt__, a Python method: a push costs a few Python calls and
 * a pop twice the heap's depth (34 for 100,000 timers). Here the heap is
 * the same list, in the same order, but while every timer in it was
 * pushed by call_at() below with a float or an int for its when (the
 * LoopCore's heap_numeric), the sifting compares the whens in C. Anything
 * else in the heap (asyncio's own call_at() in debug mode, a when of
 * another type) makes the loop use heapq's functions from then on. */
#include "_loopcore.h"

#include <math.h>

static PyObject *heapq_push, *heapq_pop;

static int heapq_functions(void)
{
    if (heapq_push)
        return 0;
    PyObject *heapq = PyImport_ImportModule("heapq");
    if (!heapq)
        return -1;
    heapq_push = PyObject_GetAttrString(heapq, "heappush");
    heapq_pop = heapq_push ? PyObject_GetAttrString(heapq, "heappop") : NULL;
    Py_DECREF(heapq);
    if (!heapq_pop) {
        Py_CLEAR(heapq_push);
        return -1;
    }
    return 0;
}

/* A when the numeric heap can hold: one a double equals exactly. */
static int is_number(PyObject *when)
{
    double unused;
    return lb_py_exact_double(when, &unused) == 0;
}

/* A timer's when for the numeric heap; one changed behind the loop's back
 * to something else sorts last rather than breaking the heap. */
static double when_of(PyObject *timer)
{
    double when;
    return lb_py_timer_when(timer, &when) == 0 ? when : INFINITY;
}

/* heapq's _siftdown: the item at pos moves up towards start. */
static void sift_down(PyObject **items, Py_ssize_t start, Py_ssize_t pos)
{
    PyObject *item = items[pos];
    double when = when_of(item);
    while (pos > start) {
        Py_ssize_t parent = (pos - 1) >> 1;
        if (!(when < when_of(items[parent])))
            break;
        items[pos] = items[parent];
        pos = parent;
    }
    items[pos] = item;
}

/* heapq's _siftup: the smaller child moves up until a leaf is reached,
 * then the item sifts down from there (fewer comparisons on average). */
static void sift_up(PyObject **items, Py_ssize_t n, Py_ssize_t pos)
{
    Py_ssize_t start = pos;
    PyObject *item = items[pos];
    Py_ssize_t child = 2 * pos + 1;
    while (child < n) {
        Py_ssize_t right = child + 1;
        if (right < n && !(when_of(items[child]) < when_of(items[right])))
            child = right;
        items[pos] = items[child];
        pos = child;
        child = 2 * pos + 1;
    }
    items[pos] = item;
    sift_down(items, start, pos);
}

/* No Python code runs while the items move: the list cannot change under
 * the sift. */
static int heap_push(PyObject *heap, PyObject *timer)
{
    if (PyList_Append(heap, timer) < 0)
        return -1;
    sift_down(((PyListObject *)heap)->ob_item, 0, PyList_GET_SIZE(heap) - 1);
    return 0;
}

static PyObject *heap_pop(PyObject *heap)
{
    Py_ssize_t n = PyList_GET_SIZE(heap);
    if (n == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from an empty heap");
        return NULL;
    }
    PyObject *last = Py_NewRef(PyList_GET_ITEM(heap, n - 1));
    if (PyList_SetSlice(heap, n - 1, n, NULL) < 0) {
        Py_DECREF(last);
        return NULL;
    }
    if (n == 1)
        return last;
    PyObject **items = ((PyListObject *)heap)->ob_item;
    PyObject *first = items[0]; /* the list's reference becomes ours */
    items[0] = last;
    sift_up(items, n - 1, 0);
    return first;
}

static PyObject *scheduled_list(LoopCore *self)
{
    PyObject *heap = PyObject_GetAttr((PyObject *)self, lb_py_str_scheduled);
    if (heap && !PyList_Check(heap)) {
        PyErr_SetString(PyExc_TypeError, "the loop's _scheduled is not a list");
        Py_CLEAR(heap);
    }
    return heap;
}

enum { TELL_NOTHING, TELL_WAKE, TELL_REARM };

/* What a new deadline when must tell the host (TELL_*), or -1 with an
 * exception; decided before the timer enters the heap, so that a failure
 * leaves nothing behind. In a pass, the pass waiting in the host arms the
 * deadline when it runs (a nested loop too) and this pass arms it when it
 * ends, so one wake per pass is enough; outside a pass, the deadline is
 * armed now if it comes before the armed one. A NaN when is due at once,
 * as in asyncio, where it is never >= the time. */
static int host_needs(LoopCore *self, PyObject *when)
{
    if (PyThread_get_thread_ident() != self->owner || !self->bridge)
        return TELL_NOTHING;
    if (self->pass_depth > 0 && self->timer_woke == self->passes)
        return TELL_NOTHING;
    if (self->pass_depth <= 0 && lb_py_bridge_closed(self->bridge))
        return TELL_NOTHING;
    int earlier = 1;
    if (self->deadline != Py_None && lb_py_bridge_timer_armed(self->bridge)) {
        double a, b;
        if (lb_py_exact_double(when, &a) == 0 && lb_py_exact_double(self->deadline, &b) == 0) {
            earlier = !(a >= b);
        } else {
            int later = PyObject_RichCompareBool(when, self->deadline, Py_GE);
            if (later < 0)
                return -1;
            earlier = !later;
        }
    }
    if (!earlier)
        return TELL_NOTHING;
    return self->pass_depth > 0 ? TELL_WAKE : TELL_REARM;
}

static int tell_host(LoopCore *self, int what)
{
    if (what == TELL_WAKE) {
        self->timer_woke = self->passes;
        return lb_py_bridge_wake(self->bridge);
    }
    if (what == TELL_REARM) {
        PyObject *res = PyObject_CallMethodNoArgs((PyObject *)self, lb_py_str_rearm);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    return 0;
}

/* asyncio's call_at() outside debug mode, after its checks. */
static PyObject *schedule_timer(LoopCore *self, const char *name, PyObject *when,
                                PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *context, *rest;
    if (lb_py_parse_callback(name, args, nargs, kwnames, &context, &rest) < 0)
        return NULL;
    PyObject *timer = lb_py_timer_new(when, args[0], rest, (PyObject *)self, context);
    Py_DECREF(rest);
    if (!timer)
        return NULL;
    int tell = host_needs(self, when);
    PyObject *heap = tell < 0 ? NULL : scheduled_list(self);
    if (!heap) {
        Py_DECREF(timer);
        return NULL;
    }
    if (PyList_GET_SIZE(heap) == 0)
        self->heap_numeric = 1;
    if (!is_number(when))
        self->heap_numeric = 0;
    int rc;
    if (self->heap_numeric) {
        rc = heap_push(heap, timer);
    } else {
        PyObject *res = heapq_functions() < 0 ? NULL
                                              : PyObject_CallFunctionObjArgs(heapq_push, heap, timer, NULL);
        Py_XDECREF(res);
        rc = res ? 0 : -1;
    }
    Py_DECREF(heap);
    if (rc == 0 && lb_py_timer_set_scheduled(timer, 1) == 0 && tell_host(self, tell) == 0)
        return timer;
    if (rc == 0) {
        /* in the heap, but the caller gets no handle: it must never run */
        PyObject *exc = lb_py_take_exception();
        PyObject *res = PyObject_CallMethod(timer, "cancel", NULL);
        if (res) {
            Py_DECREF(res);
            lb_py_raise_again(exc);
        }
        Py_DECREF(exc);
    }
    Py_DECREF(timer);
    return NULL;
}

/* asyncio's own call_at() (debug mode, keyword arguments): it pushes
 * with heapq. */
static PyObject *call_at_python(LoopCore *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    self->heap_numeric = 0;
    return lb_py_core_call_python(self, lb_py_str_call_at_py, args, nargsf, kwnames);
}

const char lb_py_call_at_doc[] = "call_at(when, callback, *args, context=None)\n\n"
"asyncio's call_at(): runs callback(*args) at when (loop.time()); asks the\n"
"host for a pass then.";

PyObject *lb_py_core_call_at(LoopCore *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (!lb_py_only_context_keyword(kwnames))
        return call_at_python(self, args, nargsf, kwnames);
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "call_at() needs when and callback");
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    if (lb_py_core_check_open(self) < 0)
        return NULL;
    int debug = lb_py_core_debug(self);
    if (debug)
        return debug < 0 ? NULL : call_at_python(self, args, nargsf, kwnames);
    return schedule_timer(self, "call_at", args[0], args + 1, nargs - 1, kwnames);
}

/* asyncio's call_later() is self.call_at(self.time() + delay, ...). The
 * clock is read here, and the timer scheduled here, only while both are
 * the loop's own: asyncio's BaseEventLoop.time() (time.monotonic(), the
 * clock lb_py_monotonic() reads) and LoopCore's call_at(), replaced
 * neither on the instance nor by a subclass (a loop with a virtual clock,
 * a test's mock). Returns 1 if they are, 0 if not, -1 with an exception. */
static PyObject *base_time, *str_time, *str_call_at;

static int own_time_and_call_at(LoopCore *self)
{
    if (!base_time) {
        PyObject *mod = PyImport_ImportModule("asyncio.base_events");
        PyObject *cls = mod ? PyObject_GetAttrString(mod, "BaseEventLoop") : NULL;
        Py_XDECREF(mod);
        base_time = cls ? PyObject_GetAttrString(cls, "time") : NULL;
        Py_XDECREF(cls);
        if (!base_time)
            return -1;
        str_time = PyUnicode_InternFromString("time");
        str_call_at = PyUnicode_InternFromString("call_at");
        if (!str_time || !str_call_at) {
            Py_CLEAR(base_time);
            return -1;
        }
    }
    PyObject *time = PyObject_GetAttr((PyObject *)self, str_time);
    if (!time)
        return -1;
    int own = PyMethod_Check(time) && PyMethod_GET_FUNCTION(time) == base_time &&
              PyMethod_GET_SELF(time) == (PyObject *)self;
    Py_DECREF(time);
    if (!own)
        return 0;
    PyObject *call_at = PyObject_GetAttr((PyObject *)self, str_call_at);
    if (!call_at)
        return -1;
    own = PyCFunction_Check(call_at) &&
          PyCFunction_GET_FUNCTION(call_at) == (PyCFunction)(void (*)(void))lb_py_core_call_at &&
          PyCFunction_GET_SELF(call_at) == (PyObject *)self;
    Py_DECREF(call_at);
    return own;
}

const char lb_py_call_later_doc[] = "call_later(delay, callback, *args, context=None)\n\n"
"asyncio's call_later(): call_at(loop.time() + delay, ...).";

PyObject *lb_py_core_call_later(LoopCore *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (!lb_py_only_context_keyword(kwnames))
        return lb_py_core_call_python(self, lb_py_str_call_later_py, args, nargsf, kwnames);
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "call_later() needs delay and callback");
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return NULL;
    }
    int debug = lb_py_core_debug(self);
    int own = debug ? 0 : own_time_and_call_at(self);
    if (debug < 0 || own < 0)
        return NULL;
    if (!own) /* debug mode, or a time() or call_at() of another */
        return lb_py_core_call_python(self, lb_py_str_call_later_py, args, nargsf, kwnames);
    PyObject *now = PyFloat_FromDouble(lb_py_monotonic());
    PyObject *when = now ? PyNumber_Add(now, args[0]) : NULL;
    Py_XDECREF(now);
    if (!when)
        return NULL;
    PyObject *timer = lb_py_core_check_open(self) < 0
        ? NULL : schedule_timer(self, "call_later", when, args + 1, nargs - 1, kwnames);
    Py_DECREF(when);
    return timer;
}

/* The due timers' way to _ready, generic: heapq's functions and the
 * handles' attributes. */
static int timer_due(PyObject *timer, PyObject *end_time, double end)
{
    double when;
    if (lb_py_timer_when(timer, &when) == 0)
        return !(when >= end); /* asyncio's test: NaN is due */
    PyObject *value = PyObject_GetAttrString(timer, "_when");
    int later = value ? PyObject_RichCompareBool(value, end_time, Py_GE) : -1;
    Py_XDECREF(value);
    return later < 0 ? -1 : !later;
}

static PyObject *pop_first(LoopCore *self, PyObject *heap)
{
    if (self->heap_numeric)
        return heap_pop(heap);
    if (heapq_functions() < 0)
        return NULL;
    return PyObject_CallOneArg(heapq_pop, heap);
}

const char lb_py_collect_due_doc[] = "_lb_collect_due(end_time)\n\n"
"The timer phase of an iteration: drops the cancelled timers at the head\n"
"of _scheduled, then moves every timer due before end_time to _ready.";

PyObject *lb_py_core_collect_due(LoopCore *self, PyObject *end_time)
{
    double end = PyFloat_AsDouble(end_time);
    if (end == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *heap = scheduled_list(self);
    if (!heap)
        return NULL;
    long dropped = 0;
    int rc = 0;
    /* The checks may run Python code (a when's __ge__, a handle's
     * _cancelled property) that changes the heap: a timer is popped only
     * while it is still the head that was checked. */
    int phase = 0; /* 0: dropping cancelled timers, 1: moving due ones */
    while (rc == 0 && PyList_GET_SIZE(heap) > 0) {
        PyObject *head = Py_NewRef(PyList_GET_ITEM(heap, 0));
        int take = phase == 0 ? lb_py_handle_cancelled(head) : timer_due(head, end_time, end);
        if (take <= 0) {
            Py_DECREF(head);
            if (take < 0 || phase == 1) {
                rc = take;
                break;
            }
            phase = 1;
            continue;
        }
        int still_head = PyList_GET_SIZE(heap) > 0 && PyList_GET_ITEM(heap, 0) == head;
        Py_DECREF(head);
        if (!still_head)
            continue;
        PyObject *timer = pop_first(self, heap);
        rc = timer ? lb_py_timer_set_scheduled(timer, 0) : -1;
        if (rc == 0 && phase == 0)
            dropped++;
        else if (rc == 0)
            rc = lb_py_core_ready_push(self, timer);
        Py_XDECREF(timer);
    }
    Py_DECREF(heap);
    if (dropped) {
        /* asyncio's count of cancelled timers still in the heap */
        PyObject *count = PyObject_GetAttr((PyObject *)self, lb_py_str_timer_cancelled_count);
        PyObject *by = count ? PyLong_FromLong(dropped) : NULL;
        PyObject *less = by ? PyNumber_Subtract(count, by) : NULL;
        Py_XDECREF(count);
        Py_XDECREF(by);
        if (!less || PyObject_SetAttr((PyObject *)self, lb_py_str_timer_cancelled_count, less) < 0)
            rc = -1;
        Py_XDECREF(less);
    }
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}
