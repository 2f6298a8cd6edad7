/* SPDX-License-Identifier: MIT */
/* Awaiting GIO's *_async / *_finish pairs from tasks. */
#include <loopbridge/glib.h>

#include <errno.h>

struct lb_gio_op {
    gint refs; /* the caller's, and GIO's until it calls back */
    lb_future *future;
    GCancellable *cancellable;
};

static void op_unref(lb_gio_op *op) {
    if (!g_atomic_int_dec_and_test(&op->refs))
        return;
    lb_future_unref(op->future);
    g_object_unref(op->cancellable);
    g_free(op);
}

int lb_gio_op_new(lb_loop *loop, lb_gio_op **ret) {
    if (!ret)
        return -EINVAL;
    lb_gio_op *op = g_new0(lb_gio_op, 1);
    int r = lb_future_new(loop, &op->future);
    if (r < 0) {
        g_free(op);
        return r;
    }
    op->refs = 2;
    op->cancellable = g_cancellable_new();
    *ret = op;
    return 0;
}

GCancellable *lb_gio_op_cancellable(lb_gio_op *op) {
    return op ? op->cancellable : NULL;
}

lb_future *lb_gio_op_future(lb_gio_op *op) {
    return op ? op->future : NULL;
}

void lb_gio_op_ready(GObject *source, GAsyncResult *result, gpointer data) {
    lb_gio_op *op = data;
    (void)source;
    if (!lb_future_is_done(op->future)) {
        int r = lb_future_set_result(op->future, g_object_ref(result), g_object_unref);
        if (r == -EPERM) /* called back on another thread's context */
            lb_future_set_result_threadsafe(op->future, g_object_ref(result), g_object_unref);
    }
    op_unref(op);
}

int lb_gio_op_await(lb_gio_op *op, GAsyncResult **result) {
    if (!op)
        return -EINVAL;
    void *v = NULL;
    int r = lb_await(op->future, &v);
    if (r == -ECANCELED)
        g_cancellable_cancel(op->cancellable);
    else if (r == 0 && result)
        *result = v;
    return r;
}

lb_gio_op *lb_gio_op_unref(lb_gio_op *op) {
    if (op)
        op_unref(op);
    return NULL;
}
