/* SPDX-License-Identifier: MIT */
/* Awaiting GIO's *_async / *_finish pairs from tasks.
 *
 * An op is a future plus a GCancellable. GIO's callback completes the
 * future with the GAsyncResult; a done callback on the future cancels the
 * GCancellable when the future was cancelled, whoever cancelled it (a
 * cancelled task's lb_await, lb_wait_for's timeout, lb_future_cancel, the
 * loop closing), so GIO stops the work.
 *
 * An op is a resource of its loop (lb_resource) while its done callback
 * has not run: if the loop closes first, the op's close cancels the work
 * and drops the callback's reference. */
#include "glib_internal.h"

#include <errno.h>

struct lb_gio_op {
    /* The caller's, the *_async call's (dropped by lb_gio_op_ready) and,
     * while it is pending, the done callback's. */
    gint refs;
    lb_future *future;
    GCancellable *cancellable;
    GMainContext *context; /* the loop's: its owner is the loop's thread */
    /* On the loop while the done callback is pending. */
    lb_resource resource;
};

static void op_unref(lb_gio_op *op) {
    if (!g_atomic_int_dec_and_test(&op->refs))
        return;
    lb_future_unref(op->future);
    g_object_unref(op->cancellable);
    g_main_context_unref(op->context);
    g_free(op);
}

static void op_done(lb_future *future, void *data) {
    lb_gio_op *op = data;
    if (lb_future_is_cancelled(future))
        g_cancellable_cancel(op->cancellable);
    lb_driver_resource_remove(&op->resource);
    op_unref(op);
}

/* The loop closes before the done callback ran: it never will (it is
 * taken back, or dropped with the loop's queue if it was due already),
 * and whatever GIO still does for the op is of no use now. */
static void op_close(lb_resource *resource) {
    lb_gio_op *op = (lb_gio_op *)((char *)resource - G_STRUCT_OFFSET(lb_gio_op, resource));
    g_cancellable_cancel(op->cancellable);
    lb_future_remove_done_callback(op->future, op_done, op);
    op_unref(op);
}

static const lb_resource_ops op_resource_ops = {.name = "GIO operation", .close = op_close};

int lb_gio_op_new(lb_loop *loop, lb_gio_op **ret) {
    if (!ret)
        return lb_driver_fail(-EINVAL, "%s: ret is NULL", __func__);
    int r = 0;
    lb__glib_state *st = lb__glib_loop(loop, __func__, &r);
    if (!st)
        return r;
    lb_future *future = NULL;
    r = lb_future_new(loop, &future);
    if (r < 0)
        return r;
    lb_gio_op *op = g_new0(lb_gio_op, 1);
    r = lb_future_add_done_callback(future, op_done, op);
    if (r < 0) {
        lb_future_unref(future);
        g_free(op);
        return r;
    }
    op->refs = 3;
    op->future = future;
    op->cancellable = g_cancellable_new();
    op->context = g_main_context_ref(st->context);
    lb_driver_resource_add(loop, &op->resource, &op_resource_ops); /* cannot fail here */
    *ret = op;
    return 0;
}

lb_gio_op *lb_gio_op_ref(lb_gio_op *op) {
    if (op)
        g_atomic_int_inc(&op->refs);
    return op;
}

lb_gio_op *lb_gio_op_unref(lb_gio_op *op) {
    if (op)
        op_unref(op);
    return NULL;
}

GCancellable *lb_gio_op_cancellable(const lb_gio_op *op) {
    return op ? op->cancellable : NULL;
}

lb_future *lb_gio_op_future(const lb_gio_op *op) {
    return op ? op->future : NULL;
}

void lb_gio_op_ready(GObject *source, GAsyncResult *result, gpointer data) {
    lb_gio_op *op = data;
    (void)source;
    if (!lb_future_is_done(op->future)) {
        /* GIO calls back on the thread-default context of the thread that
         * started the operation: normally the loop's own context (its
         * dispatch makes it the thread-default one), iterated by the loop's
         * thread. From anywhere else, the result goes through the inbox. */
        if (g_main_context_is_owner(op->context))
            lb_future_set_result(op->future, g_object_ref(result), g_object_unref);
        else
            lb_future_set_result_threadsafe(op->future, g_object_ref(result), g_object_unref);
    }
    op_unref(op);
}

int lb_gio_op_await(lb_gio_op *op, GAsyncResult **result) {
    if (!op)
        return lb_driver_fail(-EINVAL, "%s: op is NULL", __func__);
    void *value = NULL;
    int r = lb_await(op->future, &value);
    /* At once rather than one iteration later in the done callback. */
    if (r == -ECANCELED)
        g_cancellable_cancel(op->cancellable);
    if (r == 0 && result)
        *result = value;
    return r;
}
