/* SPDX-License-Identifier: MIT */
/* GIO's *_async / *_finish pairs awaited in tasks (lb_gio_op): a file
 * loaded with g_file_load_contents_async; cancelling the task, a
 * lb_wait_for timeout or closing the loop cancels the GCancellable handed
 * to GIO; a loop on a context of its own gets GIO's callbacks there. */
#include <loopbridge/glib.h>

#include <gio/gunixinputstream.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static lb_loop *new_loop(GMainContext *ctx) {
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, ctx), 0);
    return loop;
}

static void free_loop(lb_loop *loop) {
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

/* ------------------------------------------------------------------ */

typedef struct load {
    GFile *file;
    char *contents;
    gsize len;
    int status;
    gboolean done;
} load;

static int load_task(lb_task *task, void *data) {
    load *l = data;
    (void)task;
    lb_gio_op *op = NULL;
    int r = lb_gio_op_new(lb_loop_get_running(), &op);
    if (r < 0)
        return r;
    g_file_load_contents_async(l->file, lb_gio_op_cancellable(op), lb_gio_op_ready, op);
    GAsyncResult *res = NULL;
    r = lb_gio_op_await(op, &res);
    if (r == 0) {
        GError *error = NULL;
        if (!g_file_load_contents_finish(l->file, res, &l->contents, &l->len, NULL, &error)) {
            r = -EIO;
            g_error_free(error);
        }
    }
    lb_gio_op_unref(op);
    l->status = r;
    l->done = TRUE;
    return r;
}

static void run_load(GMainContext *ctx) {
    char path[] = "/tmp/lb-gio-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "hello from GIO\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);

    lb_loop *loop = new_loop(ctx);
    load l = {.file = g_file_new_for_path(path)};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, load_task, &l, NULL, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_true(l.done);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.len, sizeof text - 1);
    assert_memory_equal(l.contents, text, l.len);
    g_free(l.contents);
    g_object_unref(l.file);
    lb_task_unref(t);
    free_loop(loop);
    unlink(path);
}

/* On the global default context. */
static void test_gio_load_contents_in_task(void **state) {
    (void)state;
    run_load(NULL);
}

/* On a context nobody made thread-default: GIO calls back to the
 * thread-default context of the thread that started the operation, which
 * the loop's dispatch makes its own context. */
static void test_gio_load_on_private_context(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    run_load(ctx);
    g_main_context_unref(ctx);
}

/* ------------------------------------------------------------------ */
/* Cancellation: a read from a pipe nobody writes to, which only          */
/* cancellation ends.                                                  */
/* ------------------------------------------------------------------ */

typedef struct reader {
    GInputStream *stream;
    char buf[16];
    lb_gio_op *op;      /* kept by the test to look at it afterwards */
    double wait_for;    /* > 0: lb_wait_for with this timeout */
    int status;
    gboolean finished;
} reader;

static int read_task(lb_task *task, void *data) {
    reader *rd = data;
    (void)task;
    int r = lb_gio_op_new(lb_loop_get_running(), &rd->op);
    if (r < 0)
        return r;
    g_input_stream_read_async(rd->stream, rd->buf, sizeof rd->buf, G_PRIORITY_DEFAULT,
                              lb_gio_op_cancellable(rd->op), lb_gio_op_ready, rd->op);
    if (rd->wait_for > 0)
        r = lb_wait_for(lb_gio_op_future(rd->op), rd->wait_for, NULL);
    else
        r = lb_gio_op_await(rd->op, NULL);
    rd->status = r;
    rd->finished = TRUE;
    /* The test reads the status; the task itself ends well. */
    return r == -ECANCELED ? r : 0;
}

static void cancel_task(lb_loop *loop, void *data) {
    (void)loop;
    lb_task_cancel(data);
}

static gboolean not_pending(GInputStream *s) {
    return !g_input_stream_has_pending(s);
}

static void run_reader(reader *rd, int fds[2]) {
    assert_int_equal(pipe(fds), 0);
    rd->stream = g_unix_input_stream_new(fds[0], TRUE);
}

static void end_reader(reader *rd, int fds[2], GMainContext *ctx) {
    /* GIO called back (with G_IO_ERROR_CANCELLED): the stream is free
     * again and GIO dropped its reference to the op. */
    gint64 end = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
    while (!not_pending(rd->stream) && g_get_monotonic_time() < end)
        g_main_context_iteration(ctx, TRUE);
    assert_true(not_pending(rd->stream));
    g_object_unref(rd->stream);
    close(fds[1]);
}

static void test_gio_cancel_task_cancels_operation(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    int fds[2];
    reader rd = {0};
    run_reader(&rd, fds);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, read_task, &rd, NULL, &t), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, cancel_task, t, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_true(rd.finished);
    assert_int_equal(rd.status, -ECANCELED);
    assert_true(g_cancellable_is_cancelled(lb_gio_op_cancellable(rd.op)));
    end_reader(&rd, fds, ctx);
    lb_gio_op_unref(rd.op);
    lb_task_unref(t);
    free_loop(loop);
    g_main_context_unref(ctx);
}

/* lb_wait_for's timeout cancels the op's future, and so GIO's work: the
 * op's done callback cancels the GCancellable. */
static void test_gio_wait_for_timeout_cancels_operation(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    int fds[2];
    reader rd = {.wait_for = 0.05};
    run_reader(&rd, fds);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, read_task, &rd, NULL, &t), 0);
    lb_loop_run_until_complete(loop, lb_task_future(t));
    assert_true(rd.finished);
    assert_int_equal(rd.status, -ETIMEDOUT);
    assert_true(lb_future_is_cancelled(lb_gio_op_future(rd.op)));
    /* The done callback runs in the next iteration at the latest. */
    gboolean cancelled = FALSE;
    for (int i = 0; i < 10 && !cancelled; i++) {
        g_main_context_iteration(ctx, FALSE);
        cancelled = g_cancellable_is_cancelled(lb_gio_op_cancellable(rd.op));
    }
    assert_true(cancelled);
    end_reader(&rd, fds, ctx);
    lb_gio_op_unref(rd.op);
    lb_task_unref(t);
    free_loop(loop);
    g_main_context_unref(ctx);
}

/* Closing the loop while GIO works for a pending op (which the caller
 * already dropped) cancels it and leaks nothing (ASan/valgrind check). */
static int start_and_drop(lb_task *task, void *data) {
    reader *rd = data;
    (void)task;
    lb_gio_op *op = NULL;
    int r = lb_gio_op_new(lb_loop_get_running(), &op);
    if (r < 0)
        return r;
    g_input_stream_read_async(rd->stream, rd->buf, sizeof rd->buf, G_PRIORITY_DEFAULT,
                              lb_gio_op_cancellable(op), lb_gio_op_ready, op);
    rd->op = lb_gio_op_ref(op);
    lb_gio_op_unref(op);
    rd->finished = TRUE;
    return 0;
}

static void test_gio_close_cancels_pending_operation(void **state) {
    (void)state;
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = new_loop(ctx);
    int fds[2];
    reader rd = {0};
    run_reader(&rd, fds);
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, start_and_drop, &rd, NULL, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_true(rd.finished);
    lb_task_unref(t);
    free_loop(loop);
    assert_true(lb_future_is_cancelled(lb_gio_op_future(rd.op)));
    assert_true(g_cancellable_is_cancelled(lb_gio_op_cancellable(rd.op)));
    end_reader(&rd, fds, ctx);
    lb_gio_op_unref(rd.op);
    g_main_context_unref(ctx);
}

/* Outside a task: lb_future_cancel() on the op's future cancels GIO's
 * work too, and GIO's late callback is dropped. */
static void ready_and_flag(GObject *source, GAsyncResult *result, gpointer data) {
    gboolean *called = g_object_get_data(source, "called");
    *called = TRUE;
    lb_gio_op_ready(source, result, data);
}

static void test_gio_cancel_future_outside_task(void **state) {
    (void)state;
    lb_loop *loop = new_loop(NULL);
    lb_gio_op *op = NULL;
    assert_int_equal(lb_gio_op_await(NULL, NULL), -EINVAL);
    assert_int_equal(lb_gio_op_new(loop, &op), 0);
    /* Outside a task there is nothing to suspend. */
    assert_int_equal(lb_gio_op_await(op, NULL), -EPERM);
    GFile *file = g_file_new_for_path("/etc/hostname");
    gboolean called = FALSE;
    g_object_set_data(G_OBJECT(file), "called", &called);
    g_file_load_contents_async(file, lb_gio_op_cancellable(op), ready_and_flag, op);
    assert_int_equal(lb_future_cancel(lb_gio_op_future(op)), 1);
    gboolean cancelled = FALSE;
    for (int i = 0; i < 10 && !cancelled; i++) {
        g_main_context_iteration(NULL, FALSE);
        cancelled = g_cancellable_is_cancelled(lb_gio_op_cancellable(op));
    }
    assert_true(cancelled);
    lb_gio_op_unref(op);
    gint64 end = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
    while (!called && g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, TRUE);
    assert_true(called);
    g_object_unref(file);
    free_loop(loop);

    /* Ops need a GLib loop. */
    lb_loop *native = NULL;
    assert_int_equal(lb_loop_new(&native, lb_driver_native()), 0);
    op = NULL;
    assert_int_equal(lb_gio_op_new(native, &op), -EINVAL);
    assert_null(op);
    free_loop(native);
}

/* The loop closes after the op's future completed but before its done
 * callback ran: the callback is dropped with the queue and the op's
 * close lets go of its reference (ASan/valgrind: no leak). */
static void test_gio_close_with_done_callback_queued(void **state) {
    (void)state;
    lb_loop *loop = new_loop(NULL);
    lb_gio_op *op = NULL;
    assert_int_equal(lb_gio_op_new(loop, &op), 0);
    assert_int_equal(lb_future_set_result(lb_gio_op_future(op), NULL, NULL), 0);
    free_loop(loop);
    lb_gio_op_ready(NULL, NULL, op); /* GIO's late callback: done already, nothing to do */
    lb_gio_op_unref(op);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gio_load_contents_in_task),
        cmocka_unit_test(test_gio_load_on_private_context),
        cmocka_unit_test(test_gio_cancel_task_cancels_operation),
        cmocka_unit_test(test_gio_wait_for_timeout_cancels_operation),
        cmocka_unit_test(test_gio_close_cancels_pending_operation),
        cmocka_unit_test(test_gio_cancel_future_outside_task),
        cmocka_unit_test(test_gio_close_with_done_callback_queued),
    };
    return cmocka_run_group_tests_name("glib_gio", tests, NULL, NULL);
}
