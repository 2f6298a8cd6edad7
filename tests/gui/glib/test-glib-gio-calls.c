/* SPDX-License-Identifier: MIT */
/* The one-line GIO awaitables (<loopbridge/gio.h>) against the real
 * thing: files in a temporary directory, pipes, processes, a loopback
 * socket service and a peer-to-peer D-Bus connection over a socketpair.
 * Cancelling the task or a timeout must end the call with GIO done with
 * what it was lent (the stream no longer pending when the call returns). */
#include <loopbridge/glib.h>

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib/gstdio.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

/* Runs fn(data) as a task on a GLib loop on a private context; returns
 * what the task returned. */
static int run_task(lb_task_fn fn, void *data) {
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, ctx), 0);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, fn, data, NULL, &t), 0);
    int r = lb_loop_run_until_complete(loop, lb_task_future(t));
    lb_task_unref(t);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
    /* Whatever GIO still sends (a cancelled operation's callback, GDBus's
     * last messages) is dispatched, then the context goes. */
    while (g_main_context_iteration(ctx, FALSE))
        ;
    g_main_context_unref(ctx);
    return r;
}


static char *tmp_dir(void) {
    char *dir = g_dir_make_tmp("lb-gio-calls-XXXXXX", NULL);
    assert_non_null(dir);
    return dir;
}

static void remove_dir(char *dir) {
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        char *path = g_build_filename(dir, name, NULL);
        g_unlink(path);
        g_free(path);
    }
    if (d)
        g_dir_close(d);
    g_rmdir(dir);
    g_free(dir);
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

typedef struct files {
    char *dir;
} files;

static int files_task(lb_task *task, void *data) {
    files *f = data;
    (void)task;
    char *path = g_build_filename(f->dir, "a.txt", NULL);
    GFile *file = g_file_new_for_path(path);
    g_free(path);

    /* Missing: GIO's error as an errno, its message kept. */
    char *contents = (char *)"untouched";
    assert_int_equal(lb_gio_file_load_contents(file, &contents, NULL, NULL), -ENOENT);
    assert_string_equal(contents, "untouched");
    assert_non_null(strstr(lb_error_detail(), "lb_gio_file_load_contents: "));
    assert_non_null(strstr(lb_error_detail(), "a.txt"));
    assert_non_null(lb_gio_last_error());
    assert_true(g_error_matches(lb_gio_last_error(), G_IO_ERROR, G_IO_ERROR_NOT_FOUND));

    /* Written, read back, etag checked. A local, even on the shared stack:
     * the call copies it. */
    const char text[] = "hello, one line\n";
    char *etag = NULL;
    assert_int_equal(lb_gio_file_replace_contents(file, text, sizeof text - 1, NULL, FALSE,
                                                  G_FILE_CREATE_NONE, &etag), 0);
    assert_non_null(etag);
    gsize len = 0;
    char *etag2 = NULL;
    assert_int_equal(lb_gio_file_load_contents(file, &contents, &len, &etag2), 0);
    assert_int_equal(len, sizeof text - 1);
    assert_string_equal(contents, text);
    assert_string_equal(etag, etag2);
    g_free(contents);
    g_free(etag2);
    assert_int_equal(lb_gio_file_replace_contents(file, "x", 1, "not-the-etag", FALSE,
                                                  G_FILE_CREATE_NONE, NULL), -ESTALE);
    g_free(etag);

    GFileInfo *info = NULL;
    assert_int_equal(lb_gio_file_query_info(file, G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                            G_FILE_QUERY_INFO_NONE, &info), 0);
    assert_int_equal(g_file_info_get_size(info), sizeof text - 1);
    g_object_unref(info);

    /* A listing of three files, read two at a time. */
    GFile *dir = g_file_new_for_path(f->dir);
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "b%d", i);
        GFile *child = g_file_get_child(dir, name);
        assert_int_equal(lb_gio_file_replace_contents(child, NULL, 0, NULL, FALSE,
                                                      G_FILE_CREATE_NONE, NULL), 0);
        g_object_unref(child);
    }
    GFileEnumerator *e = NULL;
    assert_int_equal(lb_gio_file_enumerate_children(dir, G_FILE_ATTRIBUTE_STANDARD_NAME,
                                                    G_FILE_QUERY_INFO_NONE, &e), 0);
    int total = 0, n;
    GList *infos = NULL;
    while ((n = lb_gio_enumerator_next_files(e, 2, &infos)) > 0) {
        assert_int_equal(g_list_length(infos), n);
        total += n;
        g_list_free_full(infos, g_object_unref);
    }
    assert_int_equal(n, 0);
    assert_null(infos);
    assert_int_equal(total, 3);
    g_object_unref(e);
    assert_int_equal(lb_gio_file_enumerate_children(file, "*", 0, &e), -ENOTDIR);
    g_object_unref(dir);
    g_object_unref(file);
    return 0;
}

static void test_gio_calls_files(void **state) {
    (void)state;
    files f = {.dir = tmp_dir()};
    assert_int_equal(run_task(files_task, &f), 0);
    remove_dir(f.dir);
}


/* ------------------------------------------------------------------ */
/* Misuse                                                              */
/* ------------------------------------------------------------------ */

static int misuse_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    GFile *file = g_file_new_for_path("/nonexistent");
    char *contents = NULL;
    gsize n = 0;
    assert_int_equal(lb_gio_file_load_contents(NULL, &contents, NULL, NULL), -EINVAL);
    assert_int_equal(lb_gio_file_load_contents(file, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(lb_gio_input_stream_read(NULL, &n, 1, &n), -EINVAL);
    assert_int_equal(lb_gio_enumerator_next_files(NULL, 1, NULL), -EINVAL);
    assert_int_equal(lb_gio_subprocess_wait(NULL, -1, NULL), -EINVAL);
    /* A floating parameters is consumed even when refused (valgrind). */
    assert_int_equal(lb_gio_dbus_connection_call(NULL, NULL, "/", "a.b", "c",
                                                 g_variant_new("(i)", 1), NULL, 0, -1, NULL),
                     -EINVAL);
    /* A GIO call nested in another's start expression. */
    int inner = 1;
    GFileInfo *info = NULL;
    int r = LB_GIO_AWAIT(NULL,
                         (inner = LB_GIO_AWAIT(NULL, g_file_query_info_async(file, "*", 0, 0,
                                                                              LB_GIO_ASYNC),
                                               (void)LB_GIO_RESULT),
                          g_file_query_info_async(file, "*", 0, 0, LB_GIO_ASYNC)),
                         info = g_file_query_info_finish(file, LB_GIO_RESULT, LB_GIO_ERROR));
    assert_int_equal(inner, -EBUSY);
    assert_int_equal(r, -ENOENT);
    assert_null(info);
    assert_int_equal(LB_GIO_AWAIT_TIMEOUT(NAN, NULL, abort(), abort()), -EINVAL);
    /* A start expression that starts nothing: refused, not a hang. */
    assert_int_equal(LB_GIO_AWAIT(NULL, (void)0, abort()), -EINVAL);
    assert_non_null(strstr(lb_error_detail(), "LB_GIO_ASYNC"));
    g_object_unref(file);
    return 0;
}

static void test_gio_calls_misuse(void **state) {
    (void)state;
    assert_int_equal(run_task(misuse_task, NULL), 0);
    /* Outside a task. */
    GFile *file = g_file_new_for_path("/nonexistent");
    char *contents = NULL;
    assert_int_equal(lb_gio_file_load_contents(file, &contents, NULL, NULL), -EPERM);
    assert_int_equal(LB_GIO_AWAIT(NULL, abort(), abort()), -EPERM);
    g_object_unref(file);
}

/* On a loop of another driver, GIO's callbacks would never come. */
static int other_driver_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    GFile *file = g_file_new_for_path("/nonexistent");
    GFileInfo *info = NULL;
    int r = lb_gio_file_query_info(file, "*", 0, &info);
    g_object_unref(file);
    return r;
}

static void test_gio_calls_refuse_other_driver(void **state) {
    (void)state;
    const char *driver = g_getenv("LB_DRIVER");
    if (driver && strcmp(driver, "native") != 0)
        skip();
    assert_int_equal(lb_run(other_driver_task, NULL, NULL), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Streams: pipes                                                      */
/* ------------------------------------------------------------------ */

typedef struct pipe_test {
    GInputStream *in;
    GOutputStream *out;
    double timeout;       /* > 0: LB_GIO_AWAIT_TIMEOUT instead */
    int status;
    gboolean pending;     /* the stream, when the call returned */
    char *buf;            /* heap: freed at once after the call */
} pipe_test;

static void open_pipe(pipe_test *p) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    p->in = g_unix_input_stream_new(fds[0], TRUE);
    p->out = g_unix_output_stream_new(fds[1], TRUE);
}

static void close_pipe(pipe_test *p) {
    g_object_unref(p->in);
    g_object_unref(p->out);
}

static int pipe_echo_task(lb_task *task, void *data) {
    pipe_test *p = data;
    (void)task;
    const char text[] = "through the pipe";
    gsize n = 0;
    assert_int_equal(lb_gio_output_stream_write_all(p->out, text, sizeof text, &n), 0);
    assert_int_equal(n, sizeof text);
    assert_int_equal(lb_gio_output_stream_write(p->out, "!", 1, &n), 0);
    assert_int_equal(n, 1);
    /* Nothing to move: no bytes, and a NULL buffer is fine. */
    assert_int_equal(lb_gio_output_stream_write(p->out, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(lb_gio_output_stream_write_all(p->out, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(lb_gio_input_stream_read(p->in, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    char buf[64];
    gsize got = 0;
    while (got < sizeof text + 1) {
        assert_int_equal(lb_gio_input_stream_read(p->in, buf + got, sizeof buf - got, &n), 0);
        assert_true(n > 0);
        got += n;
    }
    assert_string_equal(buf, text);
    assert_int_equal(buf[sizeof text], '!');
    /* The writing end closed: end of stream. */
    assert_true(g_output_stream_close(p->out, NULL, NULL));
    assert_int_equal(lb_gio_input_stream_read(p->in, buf, sizeof buf, &n), 0);
    assert_int_equal(n, 0);
    /* A closed stream. */
    assert_int_equal(lb_gio_output_stream_write(p->out, "x", 1, &n), -EBADF);
    return 0;
}

static void test_gio_calls_pipe_read_write(void **state) {
    (void)state;
    pipe_test p = {0};
    open_pipe(&p);
    assert_int_equal(run_task(pipe_echo_task, &p), 0);
    close_pipe(&p);
}

/* Reads a pipe nobody writes to: only cancellation or the timeout end
 * it. The buffer is freed as soon as the call returns: GIO must be done
 * with it by then. */
static int pipe_block_task(lb_task *task, void *data) {
    pipe_test *p = data;
    (void)task;
    p->buf = g_malloc(32);
    gsize n = 0;
    if (p->timeout > 0) {
        gssize got = -1;
        p->status = LB_GIO_AWAIT_TIMEOUT(
            p->timeout, NULL,
            g_input_stream_read_async(p->in, p->buf, 32, G_PRIORITY_DEFAULT, LB_GIO_ASYNC),
            got = g_input_stream_read_finish(p->in, LB_GIO_RESULT, LB_GIO_ERROR));
        assert_int_equal(got, -1); /* the finish never ran */
    } else {
        p->status = lb_gio_input_stream_read(p->in, p->buf, 32, &n);
    }
    p->pending = g_input_stream_has_pending(p->in);
    g_free(p->buf);
    return 0;
}

static void cancel_soon(lb_loop *loop, void *data) {
    (void)loop;
    lb_task_cancel(data);
}

/* A loop on a context of its own, with pipe_block_task spawned on it. */
static lb_loop *start_blocked_reader(pipe_test *p, GMainContext **ctx, lb_task **t) {
    open_pipe(p);
    *ctx = g_main_context_new();
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, *ctx), 0);
    assert_int_equal(lb_task_spawn(loop, pipe_block_task, p, NULL, t), 0);
    return loop;
}

static void test_gio_calls_cancel_read(void **state) {
    (void)state;
    pipe_test p = {0};
    GMainContext *ctx = NULL;
    lb_task *t = NULL;
    lb_loop *loop = start_blocked_reader(&p, &ctx, &t);
    assert_int_equal(lb_loop_call_later(loop, 0.05, cancel_soon, t, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_int_equal(p.status, -ECANCELED);
    assert_false(p.pending);
    lb_task_unref(t);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
    g_main_context_unref(ctx);
    close_pipe(&p);
}

static void test_gio_calls_await_timeout(void **state) {
    (void)state;
    pipe_test p = {.timeout = 0.05};
    open_pipe(&p);
    assert_int_equal(run_task(pipe_block_task, &p), 0);
    assert_int_equal(p.status, -ETIMEDOUT);
    assert_false(p.pending);
    close_pipe(&p);
}

static void cancel_future(lb_loop *loop, void *data) {
    (void)loop;
    lb_future_cancel(data);
}

/* The loop closed while a call waits: the task unwinds with -ECANCELED,
 * GIO's operation is cancelled, nothing leaks. */
static void test_gio_calls_loop_closed_while_waiting(void **state) {
    (void)state;
    pipe_test p = {0};
    GMainContext *ctx = NULL;
    lb_task *t = NULL;
    lb_loop *loop = start_blocked_reader(&p, &ctx, &t);
    lb_future *later = NULL;
    assert_int_equal(lb_future_new(loop, &later), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, cancel_future, later, NULL), 0);
    lb_loop_run_until_complete(loop, later);
    lb_future_unref(later);
    assert_false(lb_task_is_done(t));
    /* Close does not iterate the context: GIO's callback cannot come, so
     * the call must not wait for it (close would wait its grace period of
     * 5 s, then give up on the task and report it). */
    gint64 t0 = g_get_monotonic_time();
    assert_int_equal(lb_loop_close(loop), 0);
    assert_true(g_get_monotonic_time() - t0 < 4 * G_TIME_SPAN_SECOND);
    assert_true(lb_task_is_done(t));
    assert_int_equal(p.status, -ECANCELED);
    lb_task_unref(t);
    lb_loop_unref(loop);
    /* The closed loop could not wait for GIO; the task freed its buffer
     * at once, GIO reads into one of its own and calls back later. */
    gint64 end = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
    while (g_input_stream_has_pending(p.in) && g_get_monotonic_time() < end)
        g_main_context_iteration(ctx, TRUE);
    assert_false(g_input_stream_has_pending(p.in));
    g_main_context_unref(ctx);
    close_pipe(&p);
}

/* Tasks on the shared stack making calls at the same time, with their
 * buffers on that stack: each call's state moves off the thread's slot
 * while its task waits, and GIO never touches the moved frames. */
static int shared_pair_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    lb_task_options opts = {.flags = LB_TASK_SHARED_STACK};
    files mine[2] = {{.dir = tmp_dir()}, {.dir = tmp_dir()}};
    pipe_test pipes[2] = {{0}};
    lb_task *t[4];
    for (int i = 0; i < 2; i++) {
        open_pipe(&pipes[i]);
        assert_int_equal(lb_task_spawn(lb_loop_get_running(), files_task, &mine[i], &opts,
                                       &t[i]), 0);
        assert_int_equal(lb_task_spawn(lb_loop_get_running(), pipe_echo_task, &pipes[i], &opts,
                                       &t[2 + i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lb_await(lb_task_future(t[i]), NULL), 0);
        lb_task_unref(t[i]);
    }
    for (int i = 0; i < 2; i++) {
        remove_dir(mine[i].dir);
        close_pipe(&pipes[i]);
    }
    return 0;
}

static void test_gio_calls_shared_stack_tasks(void **state) {
    (void)state;
    /* The parent has a stack of its own: the children point into it. */
    assert_int_equal(run_task(shared_pair_task, NULL), 0);
}

/* An operation that ignores its GCancellable: it ends when the test says
 * so. The first cancellation waits for it; a second one ends the wait. */
static GTask *stubborn_op;

static void stubborn_async(GCancellable *cancellable, GAsyncReadyCallback cb, gpointer data) {
    stubborn_op = g_task_new(NULL, cancellable, cb, data);
    g_task_set_check_cancellable(stubborn_op, FALSE);
}

typedef struct stubborn {
    int status;
    gboolean finished;
    gboolean finish_ran;
} stubborn;

static int stubborn_task(lb_task *task, void *data) {
    stubborn *st = data;
    (void)task;
    st->status = LB_GIO_AWAIT(NULL, stubborn_async(LB_GIO_ASYNC),
                              st->finish_ran = g_task_propagate_boolean(G_TASK(LB_GIO_RESULT),
                                                                        LB_GIO_ERROR));
    st->finished = TRUE;
    return 0;
}

static void test_gio_calls_second_cancel_ends_wait(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, ctx), 0);
    stubborn st = {0};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, stubborn_task, &st, NULL, &t), 0);
    for (int i = 0; i < 5; i++)
        g_main_context_iteration(ctx, FALSE);
    assert_non_null(stubborn_op);
    assert_int_equal(lb_task_cancel(t), 1);
    for (int i = 0; i < 20; i++)
        g_main_context_iteration(ctx, FALSE);
    assert_true(g_cancellable_is_cancelled(g_task_get_cancellable(stubborn_op)));
    assert_false(st.finished); /* still waiting for GIO's callback */
    assert_int_equal(lb_task_cancel(t), 1);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_true(st.finished);
    assert_int_equal(st.status, -ECANCELED);
    assert_false(st.finish_ran);
    /* The late callback finds the op still alive, then lets it go. */
    g_task_return_boolean(stubborn_op, TRUE);
    g_clear_object(&stubborn_op);
    while (g_main_context_iteration(ctx, FALSE))
        ;
    lb_task_unref(t);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
    g_main_context_unref(ctx);
}

/* The generic form hands the GError over when asked. */
static int generic_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    GFile *file = g_file_new_for_path("/nonexistent/lb");
    GError *error = NULL;
    GFileInputStream *in = NULL;
    int r = LB_GIO_AWAIT(&error, g_file_read_async(file, G_PRIORITY_DEFAULT, LB_GIO_ASYNC),
                         in = g_file_read_finish(file, LB_GIO_RESULT, LB_GIO_ERROR));
    assert_int_equal(r, -ENOENT);
    assert_null(in);
    assert_true(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND));
    assert_non_null(strstr(lb_error_detail(), "generic_task: "));
    g_error_free(error);
    g_object_unref(file);
    return 0;
}

static void test_gio_calls_generic_error(void **state) {
    (void)state;
    assert_int_equal(run_task(generic_task, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

static GSubprocess *spawn(const char *script) {
    GError *error = NULL;
    GSubprocess *p = g_subprocess_new(G_SUBPROCESS_FLAGS_NONE, &error, "/bin/sh", "-c", script,
                                      NULL);
    assert_non_null(p);
    return p;
}

static int process_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    GError *error = NULL;
    GSubprocess *p = g_subprocess_new(G_SUBPROCESS_FLAGS_NONE, &error, "/bin/true", NULL);
    assert_non_null(p);
    int code = -1;
    assert_int_equal(lb_gio_subprocess_wait(p, -1, &code), 0);
    assert_int_equal(code, 0);
    g_object_unref(p);

    p = spawn("exit 3");
    assert_int_equal(lb_gio_subprocess_wait(p, INFINITY, &code), 0);
    assert_int_equal(code, 3);
    g_object_unref(p);

    p = spawn("kill -TERM $$");
    assert_int_equal(lb_gio_subprocess_wait(p, 30, &code), 0);
    assert_int_equal(code, 128 + 15);
    g_object_unref(p);

    /* The timeout leaves the process running; then it is ended. */
    p = spawn("exec sleep 60");
    code = -1;
    assert_int_equal(lb_gio_subprocess_wait(p, 0.05, &code), -ETIMEDOUT);
    assert_int_equal(code, -1);
    assert_non_null(strstr(lb_error_detail(), "timed out"));
    g_subprocess_force_exit(p);
    assert_int_equal(lb_gio_subprocess_wait(p, 30, &code), 0);
    assert_int_equal(code, 128 + 9);
    g_object_unref(p);
    assert_int_equal(lb_gio_subprocess_wait(p = spawn("exit 0"), NAN, NULL), -EINVAL);
    g_subprocess_wait(p, NULL, NULL);
    g_object_unref(p);
    return 0;
}

static void test_gio_calls_subprocess(void **state) {
    (void)state;
    assert_int_equal(run_task(process_task, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Sockets                                                             */
/* ------------------------------------------------------------------ */

typedef struct sockets {
    GSocketService *service;
    guint16 port;
    GSocketConnection *accepted;
} sockets;

static gboolean on_incoming(GSocketService *service, GSocketConnection *conn, GObject *source,
                            gpointer data) {
    sockets *s = data;
    (void)service;
    (void)source;
    if (!s->accepted)
        s->accepted = g_object_ref(conn);
    return TRUE;
}

static guint16 closed_port(void) {
    /* A port bound then released: nobody listens there now. */
    GSocket *sock = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL);
    GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    GSocketAddress *addr = g_inet_socket_address_new(lo, 0);
    assert_true(g_socket_bind(sock, addr, FALSE, NULL));
    GSocketAddress *bound = g_socket_get_local_address(sock, NULL);
    guint16 port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    g_object_unref(bound);
    g_object_unref(addr);
    g_object_unref(lo);
    g_object_unref(sock);
    return port;
}

static int sockets_task(lb_task *task, void *data) {
    sockets *s = data;
    (void)task;
    s->service = g_socket_service_new();
    GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    GSocketAddress *addr = g_inet_socket_address_new(lo, 0);
    GSocketAddress *effective = NULL;
    assert_true(g_socket_listener_add_address(G_SOCKET_LISTENER(s->service), addr,
                                              G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
                                              &effective, NULL));
    s->port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(effective));
    g_object_unref(effective);
    g_object_unref(addr);
    g_object_unref(lo);
    g_signal_connect(s->service, "incoming", G_CALLBACK(on_incoming), s);
    g_socket_service_start(s->service);

    GSocketClient *client = g_socket_client_new();
    GSocketConnection *conn = NULL;
    char where[32];
    snprintf(where, sizeof where, "127.0.0.1:%u", s->port);
    assert_int_equal(lb_gio_socket_client_connect_to_host(client, where, 0, &conn), 0);
    /* A byte across, read on the service's side. */
    gsize n = 0;
    assert_int_equal(lb_gio_output_stream_write_all(
                         g_io_stream_get_output_stream(G_IO_STREAM(conn)), "z", 1, &n), 0);
    while (!s->accepted)
        assert_int_equal(lb_sleep(0.01), 0);
    char c = 0;
    assert_int_equal(lb_gio_input_stream_read(
                         g_io_stream_get_input_stream(G_IO_STREAM(s->accepted)), &c, 1, &n), 0);
    assert_int_equal(c, 'z');
    g_object_unref(conn);

    assert_int_equal(lb_gio_socket_client_connect_to_host(client, "127.0.0.1", closed_port(),
                                                          &conn), -ECONNREFUSED);
    g_object_unref(client);
    g_socket_service_stop(s->service);
    g_socket_listener_close(G_SOCKET_LISTENER(s->service));
    g_object_unref(s->service);
    g_object_unref(s->accepted);
    return 0;
}

static void test_gio_calls_socket_connect(void **state) {
    (void)state;
    sockets s = {0};
    assert_int_equal(run_task(sockets_task, &s), 0);
}

/* ------------------------------------------------------------------ */
/* D-Bus, peer to peer over a socketpair                               */
/* ------------------------------------------------------------------ */

static const char introspection[] =
    "<node><interface name='org.loopbridge.Test'>"
    "<method name='Add'><arg type='i' direction='in'/><arg type='i' direction='in'/>"
    "<arg type='i' direction='out'/></method>"
    "<method name='Fail'/>"
    "<method name='Never'/>"
    "</interface></node>";

typedef struct bus {
    GDBusConnection *server, *client;
    GDBusMethodInvocation *never; /* answered at the end */
    lb_task *caller;
} bus;

static void on_method(GDBusConnection *conn, const char *sender, const char *path,
                      const char *iface, const char *method, GVariant *params,
                      GDBusMethodInvocation *inv, gpointer data) {
    bus *b = data;
    (void)conn;
    (void)sender;
    (void)path;
    (void)iface;
    if (strcmp(method, "Add") == 0) {
        gint32 x, y;
        g_variant_get(params, "(ii)", &x, &y);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(i)", x + y));
    } else if (strcmp(method, "Fail") == 0) {
        g_dbus_method_invocation_return_dbus_error(inv, "org.loopbridge.Test.Error.Nope",
                                                   "no, never");
    } else {
        g_clear_object(&b->never);
        b->never = inv; /* kept: no reply until the end */
    }
}

static const GDBusInterfaceVTable vtable = {.method_call = on_method};

typedef struct handshake {
    GSocketConnection *stream;
    GDBusConnectionFlags flags;
    const char *guid;
    GDBusConnection **ret;
} handshake;

static int handshake_task(lb_task *task, void *data) {
    handshake *h = data;
    (void)task;
    return LB_GIO_AWAIT(NULL,
                        g_dbus_connection_new(G_IO_STREAM(h->stream), h->guid, h->flags, NULL,
                                              LB_GIO_ASYNC),
                        *h->ret = g_dbus_connection_new_finish(LB_GIO_RESULT, LB_GIO_ERROR));
}

static void cancel_caller(lb_loop *loop, void *data) {
    bus *b = data;
    (void)loop;
    lb_task_cancel(b->caller);
}

static int dbus_task(lb_task *task, void *data) {
    bus *b = data;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    GSocketConnection *streams[2];
    for (int i = 0; i < 2; i++) {
        GSocket *sock = g_socket_new_from_fd(fds[i], NULL);
        assert_non_null(sock);
        streams[i] = g_socket_connection_factory_create_connection(sock);
        g_object_unref(sock);
    }
    char *guid = g_dbus_generate_guid();
    handshake hs[2] = {
        {streams[0], G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER, guid, &b->server},
        {streams[1], G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL, &b->client},
    };
    lb_group *group = NULL;
    assert_int_equal(lb_group_new(lb_loop_get_running(), &group), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(lb_group_spawn(group, handshake_task, &hs[i], NULL, NULL), 0);
    assert_int_equal(lb_group_wait(group), 0);
    lb_group_unref(group);
    g_free(guid);
    g_object_unref(streams[0]);
    g_object_unref(streams[1]);

    GDBusNodeInfo *node = g_dbus_node_info_new_for_xml(introspection, NULL);
    guint reg = g_dbus_connection_register_object(b->server, "/t", node->interfaces[0], &vtable,
                                                  b, NULL, NULL);
    assert_true(reg > 0);

    GVariant *reply = NULL;
    assert_int_equal(lb_gio_dbus_connection_call(b->client, NULL, "/t", "org.loopbridge.Test",
                                                 "Add", g_variant_new("(ii)", 40, 2),
                                                 G_VARIANT_TYPE("(i)"), 0, -1, &reply), 0);
    gint32 sum = 0;
    g_variant_get(reply, "(i)", &sum);
    assert_int_equal(sum, 42);
    g_variant_unref(reply);

    reply = NULL;
    assert_int_equal(lb_gio_dbus_connection_call(b->client, NULL, "/t", "org.loopbridge.Test",
                                                 "Fail", NULL, NULL, 0, -1, &reply),
                     -EREMOTEIO);
    assert_null(reply);
    char *remote = g_dbus_error_get_remote_error(lb_gio_last_error());
    assert_string_equal(remote, "org.loopbridge.Test.Error.Nope");
    g_free(remote);
    assert_non_null(strstr(lb_error_detail(), "no, never"));

    /* No reply in time. */
    assert_int_equal(lb_gio_dbus_connection_call(b->client, NULL, "/t", "org.loopbridge.Test",
                                                 "Never", NULL, NULL, 0, 0.1, &reply),
                     -ETIMEDOUT);
    /* No reply, and the task cancelled while waiting. */
    b->caller = task;
    assert_int_equal(lb_loop_call_later(lb_loop_get_running(), 0.05, cancel_caller, b, NULL), 0);
    assert_int_equal(lb_gio_dbus_connection_call(b->client, NULL, "/t", "org.loopbridge.Test",
                                                 "Never", NULL, NULL, 0, INFINITY, &reply),
                     -ECANCELED);
    assert_true(lb_task_uncancel(task) >= 0);
    assert_null(reply);
    g_dbus_method_invocation_return_value(b->never, NULL);
    b->never = NULL;

    g_dbus_connection_unregister_object(b->server, reg);
    g_dbus_node_info_unref(node);
    assert_int_equal(LB_GIO_AWAIT(NULL, g_dbus_connection_close(b->client, LB_GIO_ASYNC),
                                  g_dbus_connection_close_finish(b->client, LB_GIO_RESULT,
                                                                 LB_GIO_ERROR)),
                     0);
    g_object_unref(b->client);
    g_object_unref(b->server);
    return 0;
}

static void test_gio_calls_dbus_peer(void **state) {
    (void)state;
    bus b = {0};
    assert_int_equal(run_task(dbus_task, &b), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gio_calls_files),
        cmocka_unit_test(test_gio_calls_shared_stack_tasks),
        cmocka_unit_test(test_gio_calls_misuse),
        cmocka_unit_test(test_gio_calls_refuse_other_driver),
        cmocka_unit_test(test_gio_calls_pipe_read_write),
        cmocka_unit_test(test_gio_calls_cancel_read),
        cmocka_unit_test(test_gio_calls_await_timeout),
        cmocka_unit_test(test_gio_calls_loop_closed_while_waiting),
        cmocka_unit_test(test_gio_calls_second_cancel_ends_wait),
        cmocka_unit_test(test_gio_calls_generic_error),
        cmocka_unit_test(test_gio_calls_subprocess),
        cmocka_unit_test(test_gio_calls_socket_connect),
        cmocka_unit_test(test_gio_calls_dbus_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
