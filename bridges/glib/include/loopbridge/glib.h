/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_GLIB_H
#define LOOPBRIDGE_GLIB_H

/* The GLib bridge: a loopbridge loop running as one GSource inside a
 * GMainContext, so a GTK application keeps calling g_application_run()
 * and loopbridge callbacks, timers, fds and tasks run between frames and
 * input events. Link with libloopbridge-glib (pkg-config loopbridge-glib);
 * loading the library also registers the driver, so LB_DRIVER=glib makes
 * lb_loop_new(&loop, NULL) use it.
 *
 * Which context a loop uses: the one given; else the calling thread's
 * thread-default context (g_main_context_push_thread_default); else, on
 * the process's main thread, the global default context (GTK's); else, on
 * any other thread, a new context of the loop's own, which
 * lb_loop_run_forever() iterates.
 *
 * A GLib loop belongs to the thread that iterates its context. Everything
 * here is for that thread only, except where noted. See docs/glib.md. */

#include <loopbridge/loopbridge.h>

#include <gio/gio.h>
#include <glib.h>

G_BEGIN_DECLS

/* The GLib driver, for lb_loop_new_full(&loop, lb_driver_glib(),
 * context) (context NULL: chosen as described above). The table is
 * static. Any thread. */
LB_EXPORT const lb_driver *lb_driver_glib(void);

/* Makes a loop that runs inside context (the GMainContext to run in, or
 * NULL: see above; the loop holds a reference to it until it is closed),
 * stores it in *ret with one reference (lb_loop_close() then
 * lb_loop_unref() when done; *ret is untouched on failure), and routes
 * loopbridge's log messages to g_log (lb_glib_install_log_handler()).
 * The loop then runs whenever the context is iterated:
 * g_application_run(), g_main_loop_run(), nested loops of modal dialogs,
 * g_main_context_iteration(). lb_loop_run_forever() and
 * lb_loop_run_until_complete() iterate the context themselves.
 * Returns 0, -EINVAL (ret is NULL), -ENOMEM, or what lb_loop_new_full()
 * returns. Call it on the thread that iterates the context. */
LB_EXPORT int lb_glib_loop_new(lb_loop **ret, GMainContext *context);

/* The context loop runs in (no reference is taken: valid while the loop
 * is open), or NULL if loop is NULL, closed or not a GLib loop. Loop
 * thread. */
LB_EXPORT GMainContext *lb_glib_loop_get_context(const lb_loop *loop);

/* Sets the GSource priority of loop, a GLib loop, to priority, any GLib
 * priority (default G_PRIORITY_DEFAULT, as GTK's input events). Lower
 * numbers run first; GTK redraws at G_PRIORITY_HIGH_IDLE + 20. Whatever
 * the priority, a loop that still has work after its budget waits until
 * GTK had its turn.
 * Returns 0, -EINVAL (NULL or not a GLib loop), -EBADF (closed).
 * Loop thread. */
LB_EXPORT int lb_glib_loop_set_priority(lb_loop *loop, int priority);

/* The GSource priority of loop, or -EINVAL / -EBADF as above (GLib
 * priorities are never that negative in practice). Loop thread. */
LB_EXPORT int lb_glib_loop_get_priority(const lb_loop *loop);

/* Sets how long (seconds, > 0; default 0.001) one dispatch of loop, a
 * GLib loop, may run callbacks before the loop steps aside until the
 * toolkit had its turn (input, painting). The budget is also the most any
 * other source of the context waits for the loop: a 60 Hz frame or
 * g_timeout is at most that late under a flood. A day or more (or
 * INFINITY) means no budget: the loop then never steps aside.
 * Returns 0, -EINVAL (NULL, not a GLib loop, seconds <= 0 or NaN),
 * -EBADF (closed). Loop thread. */
LB_EXPORT int lb_glib_loop_set_budget(lb_loop *loop, double seconds);

/* The budget of loop in seconds (INFINITY: none), or NaN if loop is
 * NULL, closed or not a GLib loop. Loop thread. */
LB_EXPORT double lb_glib_loop_get_budget(const lb_loop *loop);

/* Routes loopbridge's log messages (all loops, process-wide) to g_log,
 * domain "loopbridge": LB_LOG_ERROR as G_LOG_LEVEL_CRITICAL, then
 * WARNING, INFO and DEBUG as GLib's levels of the same names. Call it
 * before starting threads that use loopbridge; lb_glib_loop_new() does. */
LB_EXPORT void lb_glib_install_log_handler(void);

/* ------------------------------------------------------------------ */
/* GIO interop                                                         */
/* ------------------------------------------------------------------ */

/* One GIO asynchronous operation, awaited by a task:
 *
 *     lb_gio_op *op;
 *     int r = lb_gio_op_new(loop, &op);
 *     if (r < 0)
 *         return r;
 *     g_file_load_contents_async(file, lb_gio_op_cancellable(op),
 *                                lb_gio_op_ready, op);
 *     GAsyncResult *res;
 *     r = lb_gio_op_await(op, &res);   // the window stays live
 *     if (r == 0)
 *         ok = g_file_load_contents_finish(file, res, &data, &len, NULL, &err);
 *     lb_gio_op_unref(op);
 *
 * The op is a future completed with the GAsyncResult plus a GCancellable.
 * However its future is cancelled (the awaiting task was cancelled,
 * lb_wait_for() timed out, lb_future_cancel(), the loop closed), the
 * GCancellable is cancelled, so GIO stops the work and calls back with
 * G_IO_ERROR_CANCELLED. Hand each op to exactly one *_async call, with
 * lb_gio_op_ready as its callback and the op as its user_data: the op
 * lives until GIO called back, even after the caller dropped it. */
typedef struct lb_gio_op lb_gio_op;

/* Makes an op on loop, a GLib loop (GIO calls back through its context),
 * and stores it in *ret with one reference for the caller (drop it with
 * lb_gio_op_unref()); *ret is untouched on failure.
 * Returns 0, -EINVAL (NULL argument or not a GLib loop), -EBADF (closed),
 * -ENOMEM, -EPERM (not the loop's thread). Loop thread. */
LB_EXPORT int lb_gio_op_new(lb_loop *loop, lb_gio_op **ret);

/* Takes a reference to op and returns it (NULL is a no-op). Any thread. */
LB_EXPORT lb_gio_op *lb_gio_op_ref(lb_gio_op *op);

/* Drops a reference to op and returns NULL (NULL is a no-op). Safe while
 * GIO has not called back yet: the op then lives until it has. Any
 * thread. */
LB_EXPORT lb_gio_op *lb_gio_op_unref(lb_gio_op *op);

/* The GCancellable to hand to the *_async call (owned by the op, valid
 * while it lives), or NULL if op is NULL. Any thread. */
LB_EXPORT GCancellable *lb_gio_op_cancellable(const lb_gio_op *op);

/* The GAsyncReadyCallback to hand to the *_async call, with the op as its
 * user_data: completes the op's future with a reference to result (the
 * future releases it with g_object_unref()) unless the future is already
 * done, then drops the reference the *_async call held. Called by GIO on
 * the loop's thread, normally; from another thread the result is handed
 * over with lb_future_set_result_threadsafe(). */
LB_EXPORT void lb_gio_op_ready(GObject *source, GAsyncResult *result, gpointer op);

/* The op's future (borrowed: valid while the op lives; take a
 * reference to keep it longer), or NULL if op is NULL. It completes with
 * the GAsyncResult when GIO calls back; await it, gather it, or add done
 * callbacks like any future. Loop thread. */
LB_EXPORT lb_future *lb_gio_op_future(const lb_gio_op *op);

/* Inside a task: suspends until GIO called back, as lb_await() on the
 * op's future, then stores the GAsyncResult in *result (result may be
 * NULL; borrowed: valid while the op lives) to hand to the matching
 * *_finish function.
 * Returns 0; -ECANCELED if the task was cancelled (the GCancellable is
 * cancelled at once); -EPERM outside a task; -EINVAL if op is NULL. Loop
 * thread, inside a task. */
LB_EXPORT int lb_gio_op_await(lb_gio_op *op, GAsyncResult **result);

/* ------------------------------------------------------------------ */
/* Closing a window after its tasks                                    */
/* ------------------------------------------------------------------ */

/* Makes instance's close wait until group's tasks unwound, so that their
 * cleanup still finds the window's widgets alive (no `closing` flag in
 * every widget update). For a GtkWindow use lb_glib_window_close_after()
 * from <loopbridge/gtk.h>, which passes "close-request" and
 * gtk_window_close().
 *
 * The first emission of signal (a signal without parameters returning
 * gboolean, TRUE to stop the close, as GTK's "close-request") cancels
 * group and returns TRUE: the window stays. Once every task of the group
 * ended, close(instance) is called from the loop; it emits signal again
 * (gtk_window_close() does), which is let through this time, and the
 * window goes (a GtkApplication whose last window it was quits). Further
 * requests while the tasks unwind are held back too. It never runs the
 * loop inside the handler, so it works whether the close came from the
 * window manager or from a loopbridge callback or task. If the group
 * cannot be cancelled (its loop closed) the close goes through at once,
 * with a warning.
 *
 * instance: a GObject (a GtkWindow); the handler goes with it.
 * signal:   the close signal's name ("close-request").
 * group:    the tasks to unwind first; held as long as the handler.
 * close:    closes instance again (gtk_window_close()).
 *
 * Returns 0; -EINVAL (not a GObject, a NULL argument, no such signal, a
 * signal of another shape); -EPERM (not the group's loop's thread). Loop
 * thread (the thread that runs GTK). */
LB_EXPORT int lb_glib_close_after(gpointer instance, const char *signal, lb_group *group,
                                  void (*close)(gpointer instance));

G_END_DECLS

/* One-line awaitables for common GIO calls and GObject signals. */
#include <loopbridge/gio.h>

#endif
