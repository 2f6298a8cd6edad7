/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_GIO_H
#define LOOPBRIDGE_GIO_H

/* One-line awaitables for GIO and GObject signals, for tasks on a GLib
 * loop (included by <loopbridge/glib.h>):
 *
 *     char *text;
 *     gsize len;
 *     int r = lb_gio_file_load_contents(file, &text, &len, NULL);
 *     if (r < 0)                       // -ENOENT, -EACCES, -ECANCELED...
 *         g_warning("%s", lb_error_detail());   // GIO's own message
 *
 *     int response;
 *     r = lb_glib_await_signal(dialog, "response", 60.0, &response);
 *
 * What every call here has in common:
 *
 * - It runs inside a task on a GLib loop, on the loop's thread (-EPERM
 *   outside a task; -EINVAL on a loop of another driver for the GIO calls).
 * - It returns 0 (or a count where said) or a negative errno. A GError is
 *   turned into an errno by lb_gio_error_to_errno(); its message becomes
 *   lb_error_detail(), prefixed with the call's name, and the GError itself
 *   stays readable with lb_gio_last_error().
 * - Cancelling the task cancels the GCancellable handed to GIO, and the
 *   call returns -ECANCELED once GIO called back (GIO calls back promptly
 *   once cancelled; an operation that ignores its GCancellable holds the
 *   task until it ends, or until the task is cancelled again). When the
 *   loop is closed while a call waits, the call returns at once.
 * - The buffers given to the calls here are copied: GIO works on buffers
 *   of its own, so the caller's may be freed or reused as soon as the call
 *   returned, whatever the outcome, and may be locals of a task on the
 *   shared stack (LB_TASK_SHARED_STACK).
 * - Out parameters are written only on success. Objects and strings they
 *   receive belong to the caller (g_object_unref(), g_free()).
 *
 * A timeout: the calls whose work has a natural limit take one (seconds,
 * negative or INFINITY: none; they return -ETIMEDOUT and cancel the work
 * when it passes). For the others, LB_GIO_AWAIT_TIMEOUT() or lb_wait_for()
 * on a task that makes the call. */

#include <loopbridge/glib.h>

G_BEGIN_DECLS

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* The negative errno that stands for error: G_IO_ERROR's codes by
 * meaning (G_IO_ERROR_NOT_FOUND is -ENOENT, G_IO_ERROR_CANCELLED
 * -ECANCELED, G_IO_ERROR_TIMED_OUT -ETIMEDOUT, G_IO_ERROR_CONNECTION_REFUSED
 * -ECONNREFUSED...), G_FILE_ERROR's and G_SPAWN_ERROR's likewise, a remote
 * D-Bus error -EREMOTEIO, anything else -EIO. -EINVAL if error is NULL.
 * Any thread. */
LB_EXPORT int lb_gio_error_to_errno(const GError *error);

/* The GError of the calling thread's last call here that failed
 * with one (borrowed: valid until the next such failure on the thread), or
 * NULL if none did. Calls that fail without a GError (-EPERM, -EINVAL,
 * -ECANCELED, -ETIMEDOUT) leave it as it was. Any thread. */
LB_EXPORT const GError *lb_gio_last_error(void);

/* ------------------------------------------------------------------ */
/* Any *_async / *_finish pair in one line                            */
/* ------------------------------------------------------------------ */

/* Awaits any GIO operation in one expression:
 *
 *     GError *error = NULL;   // or pass NULL: lb_error_detail() has it
 *     GFileIOStream *io;
 *     int r = LB_GIO_AWAIT(&error,
 *         g_file_create_readwrite_async(file, 0, G_PRIORITY_DEFAULT, LB_GIO_ASYNC),
 *         io = g_file_create_readwrite_finish(file, LB_GIO_RESULT, LB_GIO_ERROR));
 *
 * start:  the *_async call, with LB_GIO_ASYNC in place of its three last
 *         arguments (cancellable, callback, user_data: GIO's order).
 *         Evaluated once, unless no operation could be made. It must
 *         start exactly one operation with LB_GIO_ASYNC (an expression
 *         that never evaluates LB_GIO_ASYNC gives -EINVAL; one that
 *         evaluates it without starting the operation waits for ever).
 * finish: the *_finish call, with LB_GIO_RESULT for its GAsyncResult and
 *         LB_GIO_ERROR for its GError **. Evaluated once, only if GIO
 *         called back in time (not after a cancellation or a timeout).
 * error:  a GError ** that receives the GError when finish set one (the
 *         caller frees it), or NULL.
 *
 * The expression is an int: 0 when finish set no GError; the errno of its
 * GError (lb_gio_error_to_errno()); -ECANCELED if the task was cancelled;
 * -EPERM outside a task; -EINVAL on a loop of another driver; -ENOMEM.
 * start and finish must not themselves contain LB_GIO_AWAIT (-EBUSY).
 * Memory the start lends GIO (a buffer to read into) is GIO's until the
 * expression's value is known, unless the task was cancelled twice (the
 * loop's close does that): then GIO may still use it, so lend memory that
 * GIO holds itself (GBytes) where that matters. A task on the shared stack
 * lends heap or static memory, not its locals (GIO's threads use it while
 * the task's frames are moved away).
 * Loop thread, inside a task on a GLib loop. */
#define LB_GIO_AWAIT(error, start, finish) LB_GIO_AWAIT_TIMEOUT(-1.0, error, start, finish)

/* LB_GIO_AWAIT() with a limit: when timeout seconds (negative or INFINITY:
 * none; NaN: -EINVAL) pass before GIO called back, the operation is
 * cancelled, GIO's callback awaited (as after a cancellation), and the
 * expression is -ETIMEDOUT. */
#define LB_GIO_AWAIT_TIMEOUT(timeout, error, start, finish)                                      \
    (lb_gio_call_begin(timeout) < 0                                                              \
         ? lb_gio_call_end(error, __func__)                                                      \
         : ((void)(start), lb_gio_call_wait() == 0 ? (void)(finish) : (void)0,                   \
            lb_gio_call_end(error, __func__)))

/* The arguments that stand for cancellable, callback and user_data in the
 * start expression of LB_GIO_AWAIT(). */
#define LB_GIO_ASYNC lb_gio_call_cancellable(), lb_gio_op_ready, lb_gio_call_op()

/* The GAsyncResult to hand to the finish expression of LB_GIO_AWAIT(). */
#define LB_GIO_RESULT lb_gio_call_result()

/* The GError ** to hand to the finish expression of LB_GIO_AWAIT(). */
#define LB_GIO_ERROR lb_gio_call_error()

/* The steps LB_GIO_AWAIT() expands to; use the macro rather than these.
 * The call being made lives in a slot of the calling thread from
 * lb_gio_call_begin() to lb_gio_call_wait(), and again from the moment the
 * task resumes to lb_gio_call_end(): neither stretch suspends the task, so
 * other tasks of the thread never see it.
 *
 * lb_gio_call_begin(): makes an lb_gio_op on the running loop for the
 * call (timeout as in LB_GIO_AWAIT_TIMEOUT()). Returns 0, or the error
 * lb_gio_call_end() then returns: -EPERM outside a task, -EBUSY while
 * another call of the thread is between its steps, -EINVAL (NaN timeout,
 * not a GLib loop), -ENOMEM. Loop thread, inside a task. */
LB_EXPORT int lb_gio_call_begin(double timeout);

/* The GCancellable of the call begun (NULL if none is). Loop thread. */
LB_EXPORT GCancellable *lb_gio_call_cancellable(void);

/* The op of the call begun, as user_data for lb_gio_op_ready (NULL if none
 * is). Loop thread. */
LB_EXPORT gpointer lb_gio_call_op(void);

/* Suspends the task until GIO called back, cancelling the operation (and
 * still awaiting GIO's callback) if the task is cancelled or the timeout
 * passes. Returns 0 when the finish expression is to be evaluated, else
 * the error lb_gio_call_end() then returns. Loop thread, inside a task. */
LB_EXPORT int lb_gio_call_wait(void);

/* The GAsyncResult of the call, for its *_finish function (NULL if none is
 * awaited). Loop thread. */
LB_EXPORT GAsyncResult *lb_gio_call_result(void);

/* The GError ** for the call's *_finish function. Loop thread. */
LB_EXPORT GError **lb_gio_call_error(void);

/* Ends the call: releases the op and returns its outcome as described for
 * LB_GIO_AWAIT(). A GError set by the finish expression goes to *error
 * (error not NULL) and in any case becomes lb_error_detail(), prefixed with
 * what, and lb_gio_last_error(). Loop thread. */
LB_EXPORT int lb_gio_call_end(GError **error, const char *what);

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

/* Loads the whole of file (g_file_load_contents_async()).
 *
 * file:     the file.
 * contents: receives the bytes, NUL-terminated (g_free()).
 * length:   receives their number (without the NUL); may be NULL.
 * etag:     receives the file's entity tag (g_free()); may be NULL.
 *
 * Returns 0; the errno of GIO's error (-ENOENT, -EACCES, -EISDIR...);
 * -ECANCELED; -EINVAL (file or contents NULL); -EPERM outside a task.
 * Loop thread, inside a task. */
LB_EXPORT int lb_gio_file_load_contents(GFile *file, char **contents, gsize *length, char **etag);

/* Replaces the contents of file (g_file_replace_contents_async()): written
 * to a temporary file, then renamed over file unless flags say otherwise.
 *
 * file:        the file.
 * contents:    the bytes (copied); may be NULL when length is 0.
 * length:      their number.
 * etag:        the entity tag the file must still have (else -ESTALE), or
 *              NULL.
 * make_backup: keep the old contents as "file~".
 * flags:       G_FILE_CREATE_*.
 * new_etag:    receives the new entity tag (g_free()); may be NULL.
 *
 * Returns 0, GIO's errno, -ECANCELED, -EINVAL, -EPERM as above. Loop
 * thread, inside a task. */
LB_EXPORT int lb_gio_file_replace_contents(GFile *file, const void *contents, gsize length,
                                           const char *etag, gboolean make_backup,
                                           GFileCreateFlags flags, char **new_etag);

/* Queries information on file (g_file_query_info_async()).
 *
 * file:       the file.
 * attributes: e.g. "standard::size,time::modified", or "*".
 * flags:      G_FILE_QUERY_INFO_*.
 * ret:        receives the GFileInfo (g_object_unref()).
 *
 * Returns 0, GIO's errno (-ENOENT...), -ECANCELED, -EINVAL, -EPERM as
 * above. Loop thread, inside a task. */
LB_EXPORT int lb_gio_file_query_info(GFile *file, const char *attributes,
                                     GFileQueryInfoFlags flags, GFileInfo **ret);

/* Opens directory for listing (g_file_enumerate_children_async()); read
 * it with lb_gio_enumerator_next_files().
 *
 * directory:  the directory.
 * attributes: the attributes each GFileInfo gets, e.g. "standard::name".
 * flags:      G_FILE_QUERY_INFO_*.
 * ret:        receives the enumerator (g_object_unref() closes it).
 *
 * Returns 0, GIO's errno (-ENOENT, -ENOTDIR...), -ECANCELED, -EINVAL,
 * -EPERM as above. Loop thread, inside a task. */
LB_EXPORT int lb_gio_file_enumerate_children(GFile *directory, const char *attributes,
                                             GFileQueryInfoFlags flags, GFileEnumerator **ret);

/* Reads up to num_files entries of a listing
 * (g_file_enumerator_next_files_async()):
 *
 *     GList *infos;
 *     while ((n = lb_gio_enumerator_next_files(e, 64, &infos)) > 0) {
 *         ...
 *         g_list_free_full(infos, g_object_unref);
 *     }
 *
 * enumerator: the listing.
 * num_files:  at most this many, > 0.
 * ret:        receives the GFileInfos (g_list_free_full(list,
 *             g_object_unref)); NULL when the listing is at its end.
 *
 * Returns how many entries ret received (0: the end), GIO's errno,
 * -ECANCELED, -EINVAL (NULL, num_files <= 0), -EPERM as above. Loop
 * thread, inside a task. */
LB_EXPORT int lb_gio_enumerator_next_files(GFileEnumerator *enumerator, int num_files,
                                           GList **ret);

/* ------------------------------------------------------------------ */
/* Streams                                                             */
/* ------------------------------------------------------------------ */

/* Reads up to count bytes from stream (g_input_stream_read_async()).
 *
 * stream: the stream.
 * buffer: where the bytes go (GIO reads into a buffer of its own, copied
 *         into this one on success).
 * count:  its size, at most G_MAXSSIZE; 0 reads nothing (and returns 0
 *         at once).
 * nread:  receives how many were read (0: end of stream); may be NULL.
 *
 * Returns 0, GIO's errno (-EBUSY: another operation is pending on the
 * stream; -EBADF: closed), -ECANCELED, -EINVAL, -EPERM as above. Loop
 * thread, inside a task. */
LB_EXPORT int lb_gio_input_stream_read(GInputStream *stream, void *buffer, gsize count,
                                       gsize *nread);

/* Writes up to count bytes to stream (g_output_stream_write_async()): a
 * partial write is a success.
 *
 * stream:   the stream.
 * buffer:   the bytes (copied).
 * count:    their number, at most G_MAXSSIZE.
 * nwritten: receives how many were written; may be NULL.
 *
 * Returns 0, GIO's errno (-EPIPE: nobody reads any more), -ECANCELED,
 * -EINVAL, -EPERM as above. Loop thread, inside a task. */
LB_EXPORT int lb_gio_output_stream_write(GOutputStream *stream, const void *buffer, gsize count,
                                         gsize *nwritten);

/* Writes all count bytes to stream (g_output_stream_write_all_async()).
 * Arguments and returns as lb_gio_output_stream_write(); on success
 * *nwritten is count. Loop thread, inside a task. */
LB_EXPORT int lb_gio_output_stream_write_all(GOutputStream *stream, const void *buffer,
                                             gsize count, gsize *nwritten);

/* ------------------------------------------------------------------ */
/* Processes, sockets, D-Bus                                           */
/* ------------------------------------------------------------------ */

/* Waits for process to end (g_subprocess_wait_async()).
 *
 * process:   the process.
 * timeout:   seconds to wait at most (negative or INFINITY: no limit).
 *            When it passes the process goes on running: end it with
 *            g_subprocess_force_exit() if it should not.
 * exit_code: receives its exit status when it exited, 128 + the signal's
 *            number when a signal ended it (a shell's $?); may be NULL.
 *
 * Returns 0 whatever the exit status, -ETIMEDOUT, -ECANCELED, -EINVAL
 * (NULL process, NaN timeout), -EPERM as above. Loop thread, inside a
 * task. */
LB_EXPORT int lb_gio_subprocess_wait(GSubprocess *process, double timeout, int *exit_code);

/* Connects to a host (g_socket_client_connect_to_host_async()).
 *
 * client:        the client (its timeout, proxy and TLS settings apply).
 * host_and_port: "host", "host:port", "[::1]:port"...
 * default_port:  the port when host_and_port names none.
 * ret:           receives the connection (g_object_unref()).
 *
 * Returns 0, GIO's errno (-ECONNREFUSED, -EHOSTUNREACH, -ENOENT: no such
 * host...), -ECANCELED, -EINVAL, -EPERM as above. Loop thread, inside a
 * task. */
LB_EXPORT int lb_gio_socket_client_connect_to_host(GSocketClient *client,
                                                   const char *host_and_port,
                                                   guint16 default_port, GSocketConnection **ret);

/* Calls a D-Bus method (g_dbus_connection_call()).
 *
 * connection:  the connection.
 * bus_name:    the peer's bus name, or NULL on a peer-to-peer connection.
 * object_path, interface_name, method_name: the method.
 * parameters:  a tuple GVariant, or NULL for none (a floating reference is
 *              consumed, as by GIO).
 * reply_type:  the expected reply type, or NULL for any.
 * flags:       G_DBUS_CALL_FLAGS_*.
 * timeout:     seconds to wait for the reply (negative: GIO's default of
 *              25 s; INFINITY: none); past it, -ETIMEDOUT.
 * ret:         receives the reply tuple (g_variant_unref()); may be NULL.
 *
 * Returns 0, -EREMOTEIO (the peer replied with an error:
 * lb_gio_last_error() has its name, g_dbus_error_get_remote_error()),
 * GIO's errno, -ETIMEDOUT, -ECANCELED, -EINVAL, -EPERM as above. Loop
 * thread, inside a task. */
LB_EXPORT int lb_gio_dbus_connection_call(GDBusConnection *connection, const char *bus_name,
                                          const char *object_path, const char *interface_name,
                                          const char *method_name, GVariant *parameters,
                                          const GVariantType *reply_type, GDBusCallFlags flags,
                                          double timeout, GVariant **ret);

/* ------------------------------------------------------------------ */
/* GObject signals                                                     */
/* ------------------------------------------------------------------ */

/* Awaits the next emission of a signal: a dialog's answer, a click.
 *
 *     int response;
 *     r = lb_glib_await_signal(dialog, "response", 60.0, &response);
 *     r = lb_glib_await_signal(button, "clicked", -1);  // no parameter
 *
 * instance: a GObject.
 * signal:   the signal, "name" or "name::detail" (as g_signal_connect()).
 * timeout:  seconds to wait at most (negative or INFINITY: no limit).
 * ...:      one pointer per parameter of the signal (the instance itself
 *           excluded), in order, each receiving that parameter the way
 *           g_object_get() fills its pointers (an int for a gint, a copy
 *           of a string to g_free(), a reference to an object to
 *           g_object_unref()); NULL skips a parameter. Written only on
 *           success.
 *
 * A handler is connected for the wait and disconnected whatever the
 * outcome; it returns the zero value (FALSE for a gboolean signal, so
 * "close-request" or "delete-event" go on to the other handlers). The
 * object is not kept alive: if it is disposed or finalized meanwhile, the
 * call returns -EIDRM.
 *
 * Returns 0; -ETIMEDOUT; -ECANCELED (the task was cancelled); -EIDRM; -EINVAL
 * (instance not a GObject, no such signal, NaN timeout); -EPERM outside a
 * task. The emission may come from any thread; the object's last
 * reference is dropped on the loop's thread (as GTK's always are). Loop
 * thread, inside a task (any driver). */
LB_EXPORT int lb_glib_await_signal(gpointer instance, const char *signal, double timeout, ...);

/* lb_glib_await_signal() with the parameters as GValues.
 *
 * values:   n_values GValues, zero-filled (G_VALUE_INIT); on success the
 *           first n_values parameters of the emission are copied in
 *           (g_value_unset() each). May be NULL when n_values is 0.
 * n_values: how many to copy, at most the signal's number of parameters
 *           (else -EINVAL).
 *
 * Returns as lb_glib_await_signal(). Loop thread, inside a task. */
LB_EXPORT int lb_glib_await_signal_values(gpointer instance, const char *signal, double timeout,
                                          GValue *values, guint n_values);

G_END_DECLS

#endif
