/* SPDX-License-Identifier: MIT */
/* Closing a window after its tasks unwound (lb_glib_close_after).
 *
 * The first close request cancels the group and keeps the window (the
 * handler returns TRUE); lb_group_cancel_then() calls back from the loop
 * once every task ended, and the window is closed again, this time let
 * through. No loop runs inside the handler, so it works whether the close
 * came from the window manager or from a loopbridge callback or task. */
#include "glib_internal.h"

#include <errno.h>

typedef enum close_state {
    CLOSE_IDLE,      /* no close requested yet (or a close was vetoed) */
    CLOSE_UNWINDING, /* the group is cancelled; its tasks unwind */
    CLOSE_CLOSING,   /* the tasks ended: the next request goes through */
} close_state;

typedef struct close_after {
    gint refs;            /* the signal handler's, and a pending callback's */
    GWeakRef instance;    /* the window; empty once it is finalized */
    lb_group *group;      /* one reference */
    void (*close)(gpointer instance);
    close_state state;
} close_after;

static void close_after_unref(gpointer data) {
    close_after *c = data;
    if (!g_atomic_int_dec_and_test(&c->refs))
        return;
    g_weak_ref_clear(&c->instance);
    lb_group_unref(c->group);
    g_free(c);
}

/* The group's tasks all ended: close the window for real. */
static void close_unwound(lb_loop *loop, void *data) {
    (void)loop;
    close_after *c = data;
    GObject *instance = g_weak_ref_get(&c->instance);
    if (!instance)
        return; /* destroyed meanwhile by other means */
    c->state = CLOSE_CLOSING;
    c->close(instance);
    /* Still here if another handler vetoed the close: a later request
     * starts over (the group, cancelled already, unwinds at once). */
    c->state = CLOSE_IDLE;
    g_object_unref(instance);
}

static gboolean close_requested(gpointer instance, gpointer data) {
    (void)instance;
    close_after *c = data;
    switch (c->state) {
    case CLOSE_CLOSING:
        return FALSE;
    case CLOSE_UNWINDING:
        return TRUE; /* asked again while unwinding: still waiting */
    case CLOSE_IDLE:
        break;
    }
    g_atomic_int_inc(&c->refs);
    int r = lb_group_cancel_then(c->group, close_unwound, c, close_after_unref);
    if (r < 0) {
        /* The loop is closed (or this is not its thread): nothing will
         * call back, so the window must not stay open waiting for it. */
        g_warning("lb_glib_close_after: %s (%s); closing at once", lb_strerror(r),
                  lb_error_detail());
        close_after_unref(c);
        return FALSE;
    }
    c->state = CLOSE_UNWINDING;
    return TRUE;
}

int lb_glib_close_after(gpointer instance, const char *signal, lb_group *group,
                        void (*close)(gpointer instance)) {
    static const char func[] = "lb_glib_close_after";
    if (!G_IS_OBJECT(instance))
        return lb_driver_fail(-EINVAL, "%s: instance is not a GObject", func);
    if (!signal || !group || !close)
        return lb_driver_fail(-EINVAL, "%s: signal, group and close must not be NULL", func);
    guint id = g_signal_lookup(signal, G_OBJECT_TYPE(instance));
    if (id == 0)
        return lb_driver_fail(-EINVAL, "%s: %s has no signal \"%s\"", func,
                              G_OBJECT_TYPE_NAME(instance), signal);
    GSignalQuery q;
    g_signal_query(id, &q);
    if (q.n_params != 0 || (q.return_type & ~G_SIGNAL_TYPE_STATIC_SCOPE) != G_TYPE_BOOLEAN)
        return lb_driver_fail(-EINVAL,
                              "%s: %s::%s must take no parameter and return a gboolean", func,
                              G_OBJECT_TYPE_NAME(instance), signal);
    lb_group *held = lb_group_ref(group);
    if (!held)
        return lb_driver_fail(-EPERM, "%s: called on a thread that does not run the group's loop",
                              func);
    close_after *c = g_new0(close_after, 1);
    c->refs = 1;
    g_weak_ref_init(&c->instance, instance);
    c->group = held;
    c->close = close;
    c->state = CLOSE_IDLE;
    /* The handler's reference goes when the handler is disconnected,
     * with the window's dispose at the latest. */
    g_signal_connect_data(instance, signal, G_CALLBACK(close_requested), c,
                          (GClosureNotify)(void (*)(void))close_after_unref, 0);
    return 0;
}
