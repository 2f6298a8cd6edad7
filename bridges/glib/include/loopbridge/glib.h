/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_GLIB_H
#define LOOPBRIDGE_GLIB_H

/* The GLib bridge: a loopbridge loop running as one GSource inside a
 * GMainContext, so a GTK application keeps calling g_application_run()
 * and loopbridge callbacks, timers, fds and tasks run between frames and
 * input events. Link with libloopbridge-glib (pkg-config
 * loopbridge-glib); loading it also makes LB_DRIVER=glib available.
 * Everything here runs on the thread that owns the context, except where
 * noted. */

#include <loopbridge/loopbridge.h>

#include <gio/gio.h>
#include <glib.h>

G_BEGIN_DECLS

/* The GLib driver, for lb_loop_new_full(&loop, lb_driver_glib(), context)
 * (context NULL: the thread-default context, else the global default). */
LB_EXPORT const lb_driver *lb_driver_glib(void);

/* Creates a loop on context (NULL: the thread-default context, else the
 * global default one), attaches its GSource, and routes loopbridge's log
 * messages to g_log (domain "loopbridge"). The loop then runs whenever
 * the context is iterated (g_application_run, gtk_main-style loops,
 * nested g_main_loop_run); lb_loop_run_forever() iterates the context
 * itself. Returns 0 or a negative errno (see lb_loop_new). */
LB_EXPORT int lb_glib_loop_new(lb_loop **ret, GMainContext *context);

/* The context a GLib loop is attached to (no reference taken), or NULL
 * if loop is not a GLib loop. */
LB_EXPORT GMainContext *lb_glib_loop_get_context(const lb_loop *loop);

/* The GSource priority of the loop (default G_PRIORITY_DEFAULT). Lower
 * runs first; GTK redraws at G_PRIORITY_HIGH_IDLE + 20. Returns 0,
 * -EINVAL (not a GLib loop), -EBADF. */
LB_EXPORT int lb_glib_loop_set_priority(lb_loop *loop, int priority);

/* How long one dispatch may run callbacks before the loop steps aside
 * until the toolkit had its turn (painting, input); default 1 ms. A
 * smaller budget keeps frames more regular, a larger one gives loopbridge
 * work more throughput under a flood. Returns 0, -EINVAL, -EBADF. */
LB_EXPORT int lb_glib_loop_set_budget(lb_loop *loop, double seconds);

/* Routes loopbridge's log messages to g_log (domain "loopbridge").
 * Process-wide. */
LB_EXPORT void lb_glib_install_log_handler(void);

/* ------------------------------------------------------------------ */
/* GIO interop                                                         */
/* ------------------------------------------------------------------ */

/* One GIO asynchronous operation awaited by a task:
 *
 *     lb_gio_op *op;
 *     lb_gio_op_new(loop, &op);
 *     g_file_load_contents_async(file, lb_gio_op_cancellable(op),
 *                                lb_gio_op_ready, op);
 *     GAsyncResult *res;
 *     int r = lb_gio_op_await(op, &res);  // the window stays live
 *     if (r == 0)
 *         g_file_load_contents_finish(file, res, &data, &len, NULL, &err);
 *     lb_gio_op_unref(op);
 *
 * Cancelling the task cancels the op's GCancellable, so GIO stops the
 * work; the op stays alive until GIO has called back. */
typedef struct lb_gio_op lb_gio_op;

/* Makes an op on loop. Returns 0, -EINVAL, -EBADF, -ENOMEM. */
LB_EXPORT int lb_gio_op_new(lb_loop *loop, lb_gio_op **ret);

/* The GCancellable to hand to the *_async call (owned by the op). */
LB_EXPORT GCancellable *lb_gio_op_cancellable(lb_gio_op *op);

/* The GAsyncReadyCallback to hand to the *_async call, with the op as
 * its user_data. */
LB_EXPORT void lb_gio_op_ready(GObject *source, GAsyncResult *result, gpointer op);

/* The op's future: completes with the GAsyncResult (borrowed, valid
 * while the op lives) when GIO calls back. */
LB_EXPORT lb_future *lb_gio_op_future(lb_gio_op *op);

/* Inside a task: waits until GIO called back and stores the
 * GAsyncResult (borrowed, valid while the op lives) in *result, to hand
 * to the matching *_finish function. Returns 0; -ECANCELED if the task
 * was cancelled (the GCancellable is then cancelled too); -EPERM outside
 * a task. */
LB_EXPORT int lb_gio_op_await(lb_gio_op *op, GAsyncResult **result);

/* Drops the caller's reference; returns NULL. */
LB_EXPORT lb_gio_op *lb_gio_op_unref(lb_gio_op *op);

G_END_DECLS

#endif
