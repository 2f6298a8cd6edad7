/* SPDX-License-Identifier: MIT */
/* One-line awaitables for GIO (<loopbridge/gio.h>).
 *
 * Every call goes through LB_GIO_AWAIT_TIMEOUT, which keeps the call being
 * made in a slot of the thread while it runs without suspending (from
 * begin to the *_async call, and from the task's resumption to the
 * *_finish call), so that one expression holds the whole call. While the
 * task waits, the slot's contents live in the waiting frame.
 *
 * The wait awaits a shield of the op's future: a cancellation or a
 * timeout cancels the shield, then the GCancellable, and the wait goes on
 * until GIO called back, so that GIO is done with what it was lent. The
 * one-liners lend GIO nothing of the caller's anyway (they copy through
 * GBytes), so they stay safe when the wait is cut short. */
#include "glib_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

typedef struct gio_call {
    bool active;         /* between begin and end (or parked in a wait) */
    bool handed;         /* the op went to the start expression */
    lb_gio_op *op;       /* one reference */
    double timeout;
    int status;          /* the outcome so far */
    GAsyncResult *result; /* borrowed from the op's future */
    GError *error;       /* set by the finish expression */
} gio_call;

static _Thread_local gio_call current;
/* What a failed begin returns through end, without touching current (a
 * nested call must not end the call it is nested in). */
static _Thread_local int begin_error;

static GPrivate last_error = G_PRIVATE_INIT((GDestroyNotify)g_error_free);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

static int io_error_errno(int code) {
    switch (code) {
    case G_IO_ERROR_NOT_FOUND: return -ENOENT;
    case G_IO_ERROR_EXISTS: return -EEXIST;
    case G_IO_ERROR_IS_DIRECTORY: return -EISDIR;
    case G_IO_ERROR_NOT_DIRECTORY: return -ENOTDIR;
    case G_IO_ERROR_NOT_EMPTY: return -ENOTEMPTY;
    case G_IO_ERROR_NOT_REGULAR_FILE:
    case G_IO_ERROR_NOT_SYMBOLIC_LINK:
    case G_IO_ERROR_NOT_MOUNTABLE_FILE:
    case G_IO_ERROR_INVALID_FILENAME:
    case G_IO_ERROR_INVALID_ARGUMENT: return -EINVAL;
    case G_IO_ERROR_FILENAME_TOO_LONG: return -ENAMETOOLONG;
    case G_IO_ERROR_TOO_MANY_LINKS: return -ELOOP;
    case G_IO_ERROR_NO_SPACE: return -ENOSPC;
    case G_IO_ERROR_PERMISSION_DENIED: return -EACCES;
    case G_IO_ERROR_NOT_SUPPORTED: return -ENOTSUP;
    case G_IO_ERROR_NOT_MOUNTED: return -ENODEV;
    case G_IO_ERROR_ALREADY_MOUNTED: return -EBUSY;
    case G_IO_ERROR_CLOSED: return -EBADF;
    case G_IO_ERROR_CANCELLED: return -ECANCELED;
    case G_IO_ERROR_PENDING:
    case G_IO_ERROR_BUSY: return -EBUSY;
    case G_IO_ERROR_READ_ONLY: return -EROFS;
    case G_IO_ERROR_WRONG_ETAG: return -ESTALE;
    case G_IO_ERROR_TIMED_OUT: return -ETIMEDOUT;
    case G_IO_ERROR_WOULD_BLOCK: return -EAGAIN;
    case G_IO_ERROR_HOST_NOT_FOUND: return -ENOENT;
    case G_IO_ERROR_TOO_MANY_OPEN_FILES: return -EMFILE;
    case G_IO_ERROR_ADDRESS_IN_USE: return -EADDRINUSE;
    case G_IO_ERROR_INVALID_DATA: return -EILSEQ;
    case G_IO_ERROR_DBUS_ERROR: return -EREMOTEIO;
    case G_IO_ERROR_HOST_UNREACHABLE: return -EHOSTUNREACH;
    case G_IO_ERROR_NETWORK_UNREACHABLE: return -ENETUNREACH;
    case G_IO_ERROR_CONNECTION_REFUSED: return -ECONNREFUSED;
    case G_IO_ERROR_BROKEN_PIPE: return -EPIPE;
    case G_IO_ERROR_NOT_CONNECTED: return -ENOTCONN;
    case G_IO_ERROR_MESSAGE_TOO_LARGE: return -EMSGSIZE;
    default: return -EIO;
    }
}

static int file_error_errno(int code) {
    switch (code) {
    case G_FILE_ERROR_EXIST: return -EEXIST;
    case G_FILE_ERROR_ISDIR: return -EISDIR;
    case G_FILE_ERROR_ACCES: return -EACCES;
    case G_FILE_ERROR_NAMETOOLONG: return -ENAMETOOLONG;
    case G_FILE_ERROR_NOENT: return -ENOENT;
    case G_FILE_ERROR_NOTDIR: return -ENOTDIR;
    case G_FILE_ERROR_NXIO: return -ENXIO;
    case G_FILE_ERROR_NODEV: return -ENODEV;
    case G_FILE_ERROR_ROFS: return -EROFS;
    case G_FILE_ERROR_TXTBSY: return -ETXTBSY;
    case G_FILE_ERROR_LOOP: return -ELOOP;
    case G_FILE_ERROR_NOSPC: return -ENOSPC;
    case G_FILE_ERROR_NOMEM: return -ENOMEM;
    case G_FILE_ERROR_MFILE: return -EMFILE;
    case G_FILE_ERROR_NFILE: return -ENFILE;
    case G_FILE_ERROR_BADF: return -EBADF;
    case G_FILE_ERROR_INVAL: return -EINVAL;
    case G_FILE_ERROR_PIPE: return -EPIPE;
    case G_FILE_ERROR_AGAIN: return -EAGAIN;
    case G_FILE_ERROR_INTR: return -EINTR;
    case G_FILE_ERROR_PERM: return -EPERM;
    case G_FILE_ERROR_NOSYS: return -ENOSYS;
    default: return -EIO;
    }
}

static int spawn_error_errno(int code) {
    switch (code) {
    case G_SPAWN_ERROR_FORK: return -EAGAIN;
    case G_SPAWN_ERROR_NOMEM: return -ENOMEM;
    case G_SPAWN_ERROR_CHDIR:
    case G_SPAWN_ERROR_NOENT: return -ENOENT;
    case G_SPAWN_ERROR_ACCES: return -EACCES;
    case G_SPAWN_ERROR_PERM: return -EPERM;
    case G_SPAWN_ERROR_TOO_BIG: return -E2BIG;
    case G_SPAWN_ERROR_NOEXEC: return -ENOEXEC;
    case G_SPAWN_ERROR_NAMETOOLONG: return -ENAMETOOLONG;
    case G_SPAWN_ERROR_NOTDIR: return -ENOTDIR;
    case G_SPAWN_ERROR_LOOP: return -ELOOP;
    case G_SPAWN_ERROR_TXTBUSY: return -ETXTBSY;
    case G_SPAWN_ERROR_NFILE: return -ENFILE;
    case G_SPAWN_ERROR_MFILE: return -EMFILE;
    case G_SPAWN_ERROR_INVAL: return -EINVAL;
    case G_SPAWN_ERROR_ISDIR: return -EISDIR;
    default: return -EIO;
    }
}

int lb_gio_error_to_errno(const GError *error) {
    if (!error)
        return lb_driver_fail(-EINVAL, "%s: error is NULL", __func__);
    if (error->domain == G_IO_ERROR)
        return io_error_errno(error->code);
    if (error->domain == G_FILE_ERROR)
        return file_error_errno(error->code);
    if (error->domain == G_SPAWN_ERROR)
        return spawn_error_errno(error->code);
    if (error->domain == G_DBUS_ERROR) {
        /* GDBus's own failures; every other name the peer sent. */
        switch (error->code) {
        case G_DBUS_ERROR_NO_REPLY:
        case G_DBUS_ERROR_TIMEOUT:
        case G_DBUS_ERROR_TIMED_OUT: return -ETIMEDOUT;
        case G_DBUS_ERROR_NO_MEMORY: return -ENOMEM;
        default: return -EREMOTEIO;
        }
    }
    return -EIO;
}

const GError *lb_gio_last_error(void) {
    return g_private_get(&last_error);
}

/* ------------------------------------------------------------------ */
/* The steps of LB_GIO_AWAIT                                          */
/* ------------------------------------------------------------------ */

static int fail_begin(int error) {
    begin_error = error;
    return error;
}

int lb_gio_call_begin(double timeout) {
    begin_error = 0;
    if (!lb_task_current())
        return fail_begin(lb_driver_fail(-EPERM, "LB_GIO_AWAIT: called outside a task"));
    if (current.active)
        return fail_begin(lb_driver_fail(
            -EBUSY, "LB_GIO_AWAIT: nested in the start or finish of another LB_GIO_AWAIT"));
    if (isnan(timeout))
        return fail_begin(lb_driver_fail(-EINVAL, "LB_GIO_AWAIT: the timeout is NaN"));
    lb_gio_op *op = NULL;
    int r = lb_gio_op_new(lb_loop_get_running(), &op);
    if (r < 0)
        return fail_begin(r);
    current = (gio_call){.active = true, .op = op, .timeout = timeout};
    return 0;
}

GCancellable *lb_gio_call_cancellable(void) {
    return lb_gio_op_cancellable(current.op);
}

gpointer lb_gio_call_op(void) {
    if (current.active)
        current.handed = true;
    return current.op;
}

GAsyncResult *lb_gio_call_result(void) {
    return current.result;
}

GError **lb_gio_call_error(void) {
    return &current.error;
}

/* True while the loop's context delivers GIO's callbacks, that is while
 * the task runs from the loop's GSource (g_application_run(),
 * lb_loop_run_*, any iteration of the context). A closing loop runs its
 * tasks from lb_loop_close() instead and nobody iterates the context. */
static bool context_delivers(void) {
    lb__glib_state *st = lb__glib_state_of(lb_loop_get_running());
    return st && g_main_current_source() == st->source;
}

/* Suspends until the op's future is done, awaiting it through a shield so
 * that the task's cancellation (or the timeout) does not end the wait at
 * once: it cancels the GCancellable, and the wait goes on until GIO called
 * back, so that GIO is done with what it was lent. A second cancellation
 * during that wait ends it, as a second cancel interrupts an asyncio
 * task's cleanup. So does the loop's close: its tasks then unwind from
 * lb_loop_close(), which does not iterate the context, so GIO's callback
 * could never come. Returns 0 and the GAsyncResult in *result, or why the
 * finish must not run. */
static int await_gio(lb_gio_op *op, double timeout, GAsyncResult **result) {
    lb_future *future = lb_gio_op_future(op);
    int status = 0;
    while (!lb_future_is_done(future)) {
        lb_future *shield = NULL;
        int r = lb_shield(future, &shield);
        if (r == 0) {
            r = status == 0 ? lb_wait_for(shield, timeout, NULL) : lb_await(shield, NULL);
            lb_future_unref(shield);
        }
        if (r == 0)
            continue; /* GIO called back */
        /* The op lives on until GIO called back (lb_gio_op_ready holds it). */
        g_cancellable_cancel(lb_gio_op_cancellable(op));
        if (status == 0 && (r == -ECANCELED || r == -ETIMEDOUT) && context_delivers())
            status = r; /* now wait for GIO's callback */
        else
            return status ? status : r;
    }
    if (status)
        return status;
    void *value = NULL;
    int r = lb_future_result(future, &value);
    if (r == 0)
        *result = value;
    return r;
}

int lb_gio_call_wait(void) {
    if (!current.active || current.status)
        return lb_driver_fail(-EINVAL, "lb_gio_call_wait: no call begun");
    if (!current.handed) {
        /* No *_async call got the op: no callback would ever come. Drop
         * the reference GIO's callback would have dropped, and cancel the
         * future so that the op's done callback lets go of it too. */
        lb_future_cancel(lb_gio_op_future(current.op));
        lb_gio_op_unref(current.op);
        current.status = lb_driver_fail(-EINVAL, "LB_GIO_AWAIT: the start expression did not "
                                                 "use LB_GIO_ASYNC");
        return current.status;
    }
    gio_call mine = current;
    current = (gio_call){0};
    int r = await_gio(mine.op, mine.timeout, &mine.result);
    /* The task resumed: from here to lb_gio_call_end nothing suspends, so
     * no other call of the thread can be in the slot. */
    g_assert(!current.active);
    mine.status = r;
    current = mine;
    return r;
}

int lb_gio_call_end(GError **error, const char *what) {
    if (begin_error) {
        int r = begin_error;
        begin_error = 0;
        return r;
    }
    if (!current.active)
        return lb_driver_fail(-EINVAL, "lb_gio_call_end: no call begun");
    gio_call done = current;
    current = (gio_call){0};
    lb_gio_op_unref(done.op);
    int r = done.status;
    if (done.error) {
        /* A GError only comes from the finish, which ran: status was 0. */
        r = lb_gio_error_to_errno(done.error);
        lb_driver_fail(r, "%s: %s", what ? what : "LB_GIO_AWAIT", done.error->message);
        g_private_replace(&last_error, g_error_copy(done.error));
        if (error)
            g_propagate_error(error, done.error);
        else
            g_error_free(done.error);
    } else if (r == -ETIMEDOUT) {
        lb_driver_fail(r, "%s: timed out", what ? what : "LB_GIO_AWAIT");
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* The one-liners                                                      */
/* ------------------------------------------------------------------ */

/* In the one-liners, LB_GIO_AWAIT's messages name the one-liner (its
 * __func__). */
#define AWAIT(timeout, start, finish) LB_GIO_AWAIT_TIMEOUT(timeout, NULL, start, finish)

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond))                                                                             \
            return lb_driver_fail(-EINVAL, "%s: %s is false", __func__, #cond);                  \
    } while (0)

int lb_gio_file_load_contents(GFile *file, char **contents, gsize *length, char **etag) {
    CHECK(G_IS_FILE(file));
    CHECK(contents);
    char *data = NULL, *tag = NULL;
    gsize len = 0;
    int r = AWAIT(-1.0, g_file_load_contents_async(file, LB_GIO_ASYNC),
                  g_file_load_contents_finish(file, LB_GIO_RESULT, &data, &len, &tag, LB_GIO_ERROR));
    if (r < 0)
        return r;
    *contents = data;
    if (length)
        *length = len;
    if (etag)
        *etag = tag;
    else
        g_free(tag);
    return 0;
}

/* A copy of count bytes for GIO to hold. An empty one still points
 * somewhere: GIO's writes refuse a NULL buffer even for no bytes. */
static GBytes *copy_bytes(const void *buffer, gsize count) {
    return count ? g_bytes_new(buffer, count) : g_bytes_new_static("", 0);
}

int lb_gio_file_replace_contents(GFile *file, const void *contents, gsize length,
                                 const char *etag, gboolean make_backup, GFileCreateFlags flags,
                                 char **new_etag) {
    CHECK(G_IS_FILE(file));
    CHECK(contents || length == 0);
    /* A copy GIO holds until it is done, whenever the call returns. */
    GBytes *bytes = copy_bytes(contents, length);
    char *tag = NULL;
    int r = AWAIT(-1.0,
                  g_file_replace_contents_bytes_async(file, bytes, etag, make_backup, flags,
                                                      LB_GIO_ASYNC),
                  g_file_replace_contents_finish(file, LB_GIO_RESULT, &tag, LB_GIO_ERROR));
    g_bytes_unref(bytes);
    if (r < 0)
        return r;
    if (new_etag)
        *new_etag = tag;
    else
        g_free(tag);
    return 0;
}

int lb_gio_file_query_info(GFile *file, const char *attributes, GFileQueryInfoFlags flags,
                           GFileInfo **ret) {
    CHECK(G_IS_FILE(file));
    CHECK(attributes);
    CHECK(ret);
    GFileInfo *info = NULL;
    int r = AWAIT(-1.0,
                  g_file_query_info_async(file, attributes, flags, G_PRIORITY_DEFAULT,
                                          LB_GIO_ASYNC),
                  info = g_file_query_info_finish(file, LB_GIO_RESULT, LB_GIO_ERROR));
    if (r < 0)
        return r;
    *ret = info;
    return 0;
}

int lb_gio_file_enumerate_children(GFile *directory, const char *attributes,
                                   GFileQueryInfoFlags flags, GFileEnumerator **ret) {
    CHECK(G_IS_FILE(directory));
    CHECK(attributes);
    CHECK(ret);
    GFileEnumerator *e = NULL;
    int r = AWAIT(-1.0,
                  g_file_enumerate_children_async(directory, attributes, flags,
                                                  G_PRIORITY_DEFAULT, LB_GIO_ASYNC),
                  e = g_file_enumerate_children_finish(directory, LB_GIO_RESULT, LB_GIO_ERROR));
    if (r < 0)
        return r;
    *ret = e;
    return 0;
}

int lb_gio_enumerator_next_files(GFileEnumerator *enumerator, int num_files, GList **ret) {
    CHECK(G_IS_FILE_ENUMERATOR(enumerator));
    CHECK(num_files > 0);
    CHECK(ret);
    GList *infos = NULL;
    int r = AWAIT(-1.0,
                  g_file_enumerator_next_files_async(enumerator, num_files, G_PRIORITY_DEFAULT,
                                                     LB_GIO_ASYNC),
                  infos = g_file_enumerator_next_files_finish(enumerator, LB_GIO_RESULT,
                                                              LB_GIO_ERROR));
    if (r < 0) {
        /* GIO returns NULL with its error; never a list, but be sure. */
        g_list_free_full(infos, g_object_unref);
        return r;
    }
    *ret = infos;
    return (int)g_list_length(infos);
}

/* The stream calls hand GIO buffers of its own (GBytes), copied from or
 * into the caller's: GIO may use them after the call returned (the loop
 * closed while it waited), the caller's buffer never. */

int lb_gio_input_stream_read(GInputStream *stream, void *buffer, gsize count, gsize *nread) {
    CHECK(G_IS_INPUT_STREAM(stream));
    CHECK(buffer || count == 0);
    CHECK(count <= G_MAXSSIZE);
    if (!lb_task_current())
        return lb_driver_fail(-EPERM, "%s: called outside a task", __func__);
    if (count == 0) {
        /* GIO refuses to read into no buffer; read(2) reads nothing. */
        if (nread)
            *nread = 0;
        return 0;
    }
    GBytes *bytes = NULL;
    int r = AWAIT(-1.0,
                  g_input_stream_read_bytes_async(stream, count, G_PRIORITY_DEFAULT,
                                                  LB_GIO_ASYNC),
                  bytes = g_input_stream_read_bytes_finish(stream, LB_GIO_RESULT, LB_GIO_ERROR));
    if (r < 0) {
        if (bytes)
            g_bytes_unref(bytes);
        return r;
    }
    gsize n = 0;
    const void *data = g_bytes_get_data(bytes, &n);
    if (n)
        memcpy(buffer, data, n);
    g_bytes_unref(bytes);
    if (nread)
        *nread = n;
    return 0;
}

/* Writes bytes once; *nwritten gets the count. */
static int write_bytes(GOutputStream *stream, GBytes *bytes, gsize *nwritten) {
    gssize n = -1;
    int r = AWAIT(-1.0,
                  g_output_stream_write_bytes_async(stream, bytes, G_PRIORITY_DEFAULT,
                                                    LB_GIO_ASYNC),
                  n = g_output_stream_write_bytes_finish(stream, LB_GIO_RESULT, LB_GIO_ERROR));
    if (r == 0)
        *nwritten = (gsize)n;
    return r;
}

int lb_gio_output_stream_write(GOutputStream *stream, const void *buffer, gsize count,
                               gsize *nwritten) {
    CHECK(G_IS_OUTPUT_STREAM(stream));
    CHECK(buffer || count == 0);
    CHECK(count <= G_MAXSSIZE);
    GBytes *bytes = copy_bytes(buffer, count);
    gsize n = 0;
    int r = write_bytes(stream, bytes, &n);
    g_bytes_unref(bytes);
    if (r == 0 && nwritten)
        *nwritten = n;
    return r;
}

int lb_gio_output_stream_write_all(GOutputStream *stream, const void *buffer, gsize count,
                                   gsize *nwritten) {
    CHECK(G_IS_OUTPUT_STREAM(stream));
    CHECK(buffer || count == 0);
    CHECK(count <= G_MAXSSIZE);
    /* One copy; each partial write goes on with a slice of it. */
    GBytes *all = copy_bytes(buffer, count);
    gsize done = 0;
    int r = 0;
    while (r == 0 && done < count) {
        GBytes *rest = g_bytes_new_from_bytes(all, done, count - done);
        gsize n = 0;
        r = write_bytes(stream, rest, &n);
        g_bytes_unref(rest);
        done += n;
    }
    g_bytes_unref(all);
    if (r == 0 && nwritten)
        *nwritten = count;
    return r;
}

int lb_gio_subprocess_wait(GSubprocess *process, double timeout, int *exit_code) {
    CHECK(G_IS_SUBPROCESS(process));
    int r = AWAIT(timeout, g_subprocess_wait_async(process, LB_GIO_ASYNC),
                  g_subprocess_wait_finish(process, LB_GIO_RESULT, LB_GIO_ERROR));
    if (r < 0)
        return r;
    if (exit_code) {
        if (g_subprocess_get_if_exited(process))
            *exit_code = g_subprocess_get_exit_status(process);
        else
            *exit_code = 128 + g_subprocess_get_term_sig(process);
    }
    return 0;
}

int lb_gio_socket_client_connect_to_host(GSocketClient *client, const char *host_and_port,
                                         guint16 default_port, GSocketConnection **ret) {
    CHECK(G_IS_SOCKET_CLIENT(client));
    CHECK(host_and_port);
    CHECK(ret);
    GSocketConnection *conn = NULL;
    int r = AWAIT(-1.0,
                  g_socket_client_connect_to_host_async(client, host_and_port, default_port,
                                                        LB_GIO_ASYNC),
                  conn = g_socket_client_connect_to_host_finish(client, LB_GIO_RESULT,
                                                                LB_GIO_ERROR));
    if (r < 0)
        return r;
    *ret = conn;
    return 0;
}

int lb_gio_dbus_connection_call(GDBusConnection *connection, const char *bus_name,
                                const char *object_path, const char *interface_name,
                                const char *method_name, GVariant *parameters,
                                const GVariantType *reply_type, GDBusCallFlags flags,
                                double timeout, GVariant **ret) {
    /* A floating parameters is GIO's to consume: sink it first, so that it
     * is freed on every path, including the refusals. */
    if (parameters)
        g_variant_ref_sink(parameters);
    int r = -EINVAL;
    if (!G_IS_DBUS_CONNECTION(connection) || !object_path || !interface_name || !method_name ||
        isnan(timeout)) {
        r = lb_driver_fail(-EINVAL, "%s: connection, object_path, interface_name or "
                                    "method_name is NULL, or timeout is NaN", __func__);
        goto out;
    }
    /* GIO's timeout is in milliseconds: -1 its default, G_MAXINT none. */
    int msec = timeout < 0 ? -1 : timeout * 1000.0 >= (double)G_MAXINT ? G_MAXINT
                                                                         : (int)(timeout * 1000.0);
    GVariant *reply = NULL;
    r = AWAIT(-1.0,
              g_dbus_connection_call(connection, bus_name, object_path, interface_name,
                                     method_name, parameters, reply_type, flags, msec,
                                     LB_GIO_ASYNC),
              reply = g_dbus_connection_call_finish(connection, LB_GIO_RESULT, LB_GIO_ERROR));
    if (r == 0) {
        if (ret)
            *ret = reply;
        else
            g_variant_unref(reply);
    }
out:
    if (parameters)
        g_variant_unref(parameters);
    return r;
}
