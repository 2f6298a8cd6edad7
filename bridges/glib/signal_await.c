/* SPDX-License-Identifier: MIT */
/* Awaiting the next emission of a GObject signal (<loopbridge/gio.h>).
 *
 * A waiter is a future plus a closure connected to the signal and a weak
 * reference to the object. The first of emission and destruction
 * completes the future (from whichever thread it happens on); the waiting
 * task then takes the handler and the weak reference off again, unless
 * the object's dispose already did. The closure holds a reference to the
 * waiter, so an emission running on another thread while the task
 * disconnects never touches freed memory. */
#include "glib_internal.h"

#include <gobject/gvaluecollector.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>

typedef struct waiter {
    gint refs;          /* the waiting call's and the closure's */
    lb_future *future;  /* one reference */
    GThread *home;      /* the loop's thread */
    gint fired;         /* set once by the first emission or destruction */
    GMutex lock;        /* guards alive against a dispose on another thread */
    gboolean alive;     /* handler and weak reference still in place */
    guint n_values;     /* the signal's parameters, copied at emission */
    GValue *values;
} waiter;

static void waiter_unref(waiter *w) {
    if (!g_atomic_int_dec_and_test(&w->refs))
        return;
    for (guint i = 0; i < w->n_values; i++)
        if (G_IS_VALUE(&w->values[i]))
            g_value_unset(&w->values[i]);
    g_free(w->values);
    g_mutex_clear(&w->lock);
    lb_future_unref(w->future);
    g_free(w);
}

/* Completes the future: at once on the loop's thread, through the loop's
 * inbox from any other. A future already cancelled (timeout, the task
 * cancelled) just stays so. */
static void complete(waiter *w, int error) {
    gboolean home = g_thread_self() == w->home;
    if (error == 0) {
        if (home)
            lb_future_set_result(w->future, NULL, NULL);
        else
            lb_future_set_result_threadsafe(w->future, NULL, NULL);
    } else if (home) {
        if (!lb_future_is_done(w->future))
            lb_future_set_error(w->future, error);
    } else {
        lb_future_set_error_threadsafe(w->future, error);
    }
}

static void on_emission(GClosure *closure, GValue *return_value, guint n_param_values,
                        const GValue *param_values, gpointer hint, gpointer marshal_data) {
    waiter *w = closure->data;
    (void)return_value; /* left as the emission set it up: the zero value */
    (void)hint;
    (void)marshal_data;
    if (!g_atomic_int_compare_and_exchange(&w->fired, 0, 1))
        return;
    /* param_values[0] is the instance. */
    for (guint i = 0; i < w->n_values && i + 1 < n_param_values; i++) {
        g_value_init(&w->values[i], G_VALUE_TYPE(&param_values[i + 1]));
        g_value_copy(&param_values[i + 1], &w->values[i]);
    }
    complete(w, 0);
}

static void on_closure_gone(gpointer data, GClosure *closure) {
    (void)closure;
    waiter_unref(data);
}

/* The object's dispose: it destroyed the handler before notifying. */
static void on_instance_gone(gpointer data, GObject *where) {
    waiter *w = data;
    (void)where;
    g_mutex_lock(&w->lock);
    w->alive = FALSE;
    g_mutex_unlock(&w->lock);
    if (g_atomic_int_compare_and_exchange(&w->fired, 0, 1))
        complete(w, -EIDRM);
}

/* Connects, waits, disconnects. On success the emission's parameters are
 * in w's values; the caller drops its reference to *waiter_out. */
static int await_emission(gpointer instance, const char *signal, double timeout, guint n_values,
                          GSignalQuery *query, waiter **waiter_out, const char *func) {
    if (!lb_task_current())
        return lb_driver_fail(-EPERM, "%s: called outside a task", func);
    if (!G_IS_OBJECT(instance))
        return lb_driver_fail(-EINVAL, "%s: instance is not a GObject", func);
    if (!signal)
        return lb_driver_fail(-EINVAL, "%s: signal is NULL", func);
    if (isnan(timeout))
        return lb_driver_fail(-EINVAL, "%s: the timeout is NaN", func);
    guint id = 0;
    GQuark detail = 0;
    if (!g_signal_parse_name(signal, G_OBJECT_TYPE(instance), &id, &detail, TRUE))
        return lb_driver_fail(-EINVAL, "%s: %s has no signal \"%s\"", func,
                              G_OBJECT_TYPE_NAME(instance), signal);
    g_signal_query(id, query);
    if (n_values > query->n_params)
        return lb_driver_fail(-EINVAL, "%s: %s::%s has %u parameters, not %u", func,
                              G_OBJECT_TYPE_NAME(instance), query->signal_name,
                              query->n_params, n_values);
    lb_future *future = NULL;
    int r = lb_future_new(lb_loop_get_running(), &future);
    if (r < 0)
        return r;

    waiter *w = g_new0(waiter, 1);
    w->refs = 2;
    w->future = future;
    w->home = g_thread_self();
    g_mutex_init(&w->lock);
    w->alive = TRUE;
    w->n_values = n_values;
    w->values = g_new0(GValue, n_values ? n_values : 1);
    GClosure *closure = g_closure_new_simple(sizeof(GClosure), w);
    g_closure_set_marshal(closure, on_emission);
    g_closure_add_finalize_notifier(closure, w, on_closure_gone);
    gulong handler = g_signal_connect_closure_by_id(instance, id, detail, closure, FALSE);
    g_object_weak_ref(instance, on_instance_gone, w);

    r = lb_wait_for(future, timeout, NULL);

    g_mutex_lock(&w->lock);
    if (w->alive) {
        w->alive = FALSE;
        g_object_weak_unref(instance, on_instance_gone, w);
        g_signal_handler_disconnect(instance, handler);
    }
    g_mutex_unlock(&w->lock);
    if (r == -EIDRM)
        lb_driver_fail(r, "%s: the %s was disposed while waiting for \"%s\"", func,
                       g_type_name(query->itype), signal);
    else if (r == -ETIMEDOUT)
        lb_driver_fail(r, "%s: no \"%s\" within %g s", func, signal, timeout);
    if (r < 0) {
        waiter_unref(w);
        return r;
    }
    *waiter_out = w;
    return 0;
}

int lb_glib_await_signal_values(gpointer instance, const char *signal, double timeout,
                                GValue *values, guint n_values) {
    if (n_values && !values)
        return lb_driver_fail(-EINVAL, "%s: values is NULL", __func__);
    GSignalQuery query;
    waiter *w = NULL;
    int r = await_emission(instance, signal, timeout, n_values, &query, &w, __func__);
    if (r < 0)
        return r;
    /* Moved, not copied: the waiter's are freed with it. */
    for (guint i = 0; i < n_values; i++) {
        values[i] = w->values[i];
        w->values[i] = (GValue)G_VALUE_INIT;
    }
    waiter_unref(w);
    return 0;
}

enum { MAX_PARAMS = 32 };

int lb_glib_await_signal(gpointer instance, const char *signal, double timeout, ...) {
    /* The pointers are read before waiting, as many as the signal has
     * parameters (each type's lcopy_format says how many: one pointer per
     * character for every type GLib knows). */
    guint id = 0;
    GQuark detail = 0;
    if (!G_IS_OBJECT(instance) || !signal ||
        !g_signal_parse_name(signal, G_OBJECT_TYPE(instance), &id, &detail, TRUE))
        return lb_driver_fail(-EINVAL, "%s: instance is not a GObject or has no signal \"%s\"",
                              __func__, signal ? signal : "(null)");
    GSignalQuery query;
    g_signal_query(id, &query);
    if (query.n_params > MAX_PARAMS)
        return lb_driver_fail(-EINVAL, "%s: \"%s\" has more than %d parameters", __func__,
                              signal, MAX_PARAMS);
    GTypeCValue where[MAX_PARAMS][G_VALUE_COLLECT_FORMAT_MAX_LENGTH];
    guint n_where[MAX_PARAMS];
    va_list ap;
    va_start(ap, timeout);
    for (guint i = 0; i < query.n_params; i++) {
        GType type = query.param_types[i] & ~G_SIGNAL_TYPE_STATIC_SCOPE;
        GTypeValueTable *table = g_type_value_table_peek(type);
        const char *format = table ? table->lcopy_format : "";
        n_where[i] = 0;
        for (; *format && n_where[i] < G_VALUE_COLLECT_FORMAT_MAX_LENGTH; format++) {
            if (*format != G_VALUE_COLLECT_POINTER) {
                va_end(ap);
                return lb_driver_fail(-EINVAL, "%s: parameter %u of \"%s\" (%s) cannot be "
                                               "stored through a pointer", __func__, i + 1,
                                      signal, g_type_name(type));
            }
            where[i][n_where[i]++].v_pointer = va_arg(ap, gpointer);
        }
    }
    va_end(ap);

    waiter *w = NULL;
    int r = await_emission(instance, signal, timeout, query.n_params, &query, &w, __func__);
    if (r < 0)
        return r;
    for (guint i = 0; i < query.n_params; i++) {
        if (n_where[i] == 0 || !where[i][0].v_pointer || !G_IS_VALUE(&w->values[i]))
            continue; /* skipped by the caller */
        GTypeValueTable *table = g_type_value_table_peek(G_VALUE_TYPE(&w->values[i]));
        char *error = table->lcopy_value(&w->values[i], n_where[i], where[i], 0);
        if (error) {
            /* A type whose lcopy refuses its own value: not seen in GLib. */
            lb_driver_fail(-EINVAL, "%s: %s", __func__, error);
            g_free(error);
            r = -EINVAL;
        }
    }
    waiter_unref(w);
    return r;
}
