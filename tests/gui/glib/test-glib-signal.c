/* SPDX-License-Identifier: MIT */
/* lb_glib_await_signal(): a task awaits one emission of a GObject signal
 * (a dialog's "response" stands in as a plain GObject's signal, so no
 * display is needed). Whatever the outcome (emission, timeout, the task
 * cancelled, the object disposed while waiting), the handler and the weak
 * reference are gone when the call returns. */
#include <loopbridge/glib.h>

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* A GObject with a dialog's kind of signals. */
typedef struct TestDialog {
    GObject parent;
} TestDialog;
typedef struct TestDialogClass {
    GObjectClass parent_class;
} TestDialogClass;

static GType test_dialog_get_type(void);
G_DEFINE_TYPE(TestDialog, test_dialog, G_TYPE_OBJECT)

enum { SIG_RESPONSE, SIG_CLICKED, SIG_CHOSEN, SIG_CLOSE_REQUEST, N_SIGNALS };
static guint signals[N_SIGNALS];

static void test_dialog_class_init(TestDialogClass *klass) {
    GType type = G_TYPE_FROM_CLASS(klass);
    signals[SIG_RESPONSE] = g_signal_new("response", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                         NULL, G_TYPE_NONE, 1, G_TYPE_INT);
    signals[SIG_CLICKED] = g_signal_new("clicked", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                        G_TYPE_NONE, 0);
    signals[SIG_CHOSEN] = g_signal_new("chosen", type, G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED, 0,
                                       NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING,
                                       G_TYPE_OBJECT, G_TYPE_DOUBLE);
    signals[SIG_CLOSE_REQUEST] = g_signal_new("close-request", type, G_SIGNAL_RUN_LAST, 0,
                                              g_signal_accumulator_true_handled, NULL, NULL,
                                              G_TYPE_BOOLEAN, 0);
}

static void test_dialog_init(TestDialog *self) {
    (void)self;
}

static GObject *new_dialog(void) {
    return g_object_new(test_dialog_get_type(), NULL);
}

static gboolean no_handler_left(GObject *obj) {
    for (int i = 0; i < N_SIGNALS; i++)
        if (g_signal_has_handler_pending(obj, signals[i], 0, FALSE))
            return FALSE;
    return TRUE;
}

/* ------------------------------------------------------------------ */

typedef struct waiting {
    GObject *dialog;
    const char *signal;
    double timeout;
    int status;
    int response;
    char *text;
    GObject *object;
    double number;
    GValue values[3];
    gboolean use_values;
    gboolean shared;
    lb_task *task;
} waiting;

static int wait_task(lb_task *task, void *data) {
    waiting *w = data;
    w->task = task;
    if (w->use_values)
        w->status = lb_glib_await_signal_values(w->dialog, w->signal, w->timeout, w->values, 3);
    else if (strncmp(w->signal, "chosen", 6) == 0)
        w->status = lb_glib_await_signal(w->dialog, w->signal, w->timeout, &w->text, NULL,
                                         &w->number);
    else if (strcmp(w->signal, "response") == 0)
        w->status = lb_glib_await_signal(w->dialog, w->signal, w->timeout, &w->response);
    else
        w->status = lb_glib_await_signal(w->dialog, w->signal, w->timeout);
    return 0;
}

typedef void (*action_fn)(waiting *w);

static void run_action(lb_loop *loop, void *data) {
    (void)loop;
    void **pair = data;
    ((action_fn)pair[0])(pair[1]);
}

/* Runs wait_task with action(w) 0.05 s later, on a private context; the
 * task on the shared stack when w->shared. */
static void run_wait(waiting *w, action_fn action) {
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, ctx), 0);
    lb_task *t = NULL;
    lb_task_options opts = {.flags = w->shared ? LB_TASK_SHARED_STACK : 0};
    assert_int_equal(lb_task_spawn(loop, wait_task, w, &opts, &t), 0);
    void *pair[2] = {(void *)action, w};
    if (action)
        assert_int_equal(lb_loop_call_later(loop, 0.05, run_action, pair, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    lb_task_unref(t);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
    g_main_context_unref(ctx);
}

static void emit_response(waiting *w) {
    g_signal_emit(w->dialog, signals[SIG_RESPONSE], 0, 42);
    g_signal_emit(w->dialog, signals[SIG_RESPONSE], 0, 7); /* only the first counts */
}

static void test_signal_response(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = 30, .response = -1};
    run_wait(&w, emit_response);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.response, 42);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static void emit_chosen(waiting *w);

/* A task on the shared stack: nothing the emission writes points into
 * its frames while it waits (its out pointers are written after). */
static void test_signal_shared_stack_task(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "chosen", .timeout = 30, .shared = TRUE};
    run_wait(&w, emit_chosen);
    assert_int_equal(w.status, 0);
    assert_string_equal(w.text, "no");
    assert_true(w.number == 1.0);
    g_free(w.text);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static void emit_clicked(waiting *w) {
    g_signal_emit(w->dialog, signals[SIG_CLICKED], 0);
}

static void test_signal_no_parameter(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "clicked", .timeout = -1};
    run_wait(&w, emit_clicked);
    assert_int_equal(w.status, 0);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

/* The handler returns FALSE: the other handlers still run. */
static gboolean handled(GObject *obj, gpointer data) {
    (void)obj;
    (*(int *)data)++;
    return TRUE;
}

static int close_seen;

static void emit_close_request(waiting *w) {
    gboolean stop = FALSE;
    g_signal_emit(w->dialog, signals[SIG_CLOSE_REQUEST], 0, &stop);
    assert_true(stop);
}

static void test_signal_boolean_return(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "close-request", .timeout = 30};
    close_seen = 0;
    gulong id = g_signal_connect_after(w.dialog, "close-request", G_CALLBACK(handled),
                                       &close_seen);
    run_wait(&w, emit_close_request);
    assert_int_equal(w.status, 0);
    assert_int_equal(close_seen, 1);
    g_signal_handler_disconnect(w.dialog, id);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static void emit_chosen(waiting *w) {
    GObject *other = new_dialog();
    /* Another detail first: not the one awaited. */
    g_signal_emit(w->dialog, signals[SIG_CHOSEN], g_quark_from_string("other"), "no", other, 1.0);
    g_signal_emit(w->dialog, signals[SIG_CHOSEN], g_quark_from_string("file"), "yes", other,
                  2.5);
    g_object_unref(other);
}

/* Parameters copied out: a string to free, an object skipped (NULL), a
 * double; the detail filters. */
static void test_signal_parameters_and_detail(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "chosen::file", .timeout = 30};
    run_wait(&w, emit_chosen);
    assert_int_equal(w.status, 0);
    assert_string_equal(w.text, "yes");
    assert_true(w.number == 2.5);
    g_free(w.text);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static void test_signal_values(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "chosen", .timeout = 30, .use_values = TRUE};
    run_wait(&w, emit_chosen);
    assert_int_equal(w.status, 0);
    assert_string_equal(g_value_get_string(&w.values[0]), "no");
    assert_true(G_IS_OBJECT(g_value_get_object(&w.values[1])));
    assert_true(g_value_get_double(&w.values[2]) == 1.0);
    for (int i = 0; i < 3; i++)
        g_value_unset(&w.values[i]);
    g_object_unref(w.dialog);
}

static void test_signal_timeout(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = 0.05, .response = -1};
    run_wait(&w, NULL);
    assert_int_equal(w.status, -ETIMEDOUT);
    assert_int_equal(w.response, -1);
    assert_non_null(strstr(lb_error_detail(), "response"));
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog); /* no weak reference left to call into */
}

static void cancel_it(waiting *w) {
    lb_task_cancel(w->task);
}

static void test_signal_cancel(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = -1, .response = -1};
    run_wait(&w, cancel_it);
    assert_int_equal(w.status, -ECANCELED);
    assert_int_equal(w.response, -1);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static void finalize_it(waiting *w) {
    g_object_unref(w->dialog);
}

static void test_signal_object_finalized(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = 30, .response = -1};
    run_wait(&w, finalize_it);
    assert_int_equal(w.status, -EIDRM);
    assert_int_equal(w.response, -1);
}

static void dispose_it(waiting *w) {
    g_object_run_dispose(w->dialog);
}

static void test_signal_object_disposed(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = 30};
    run_wait(&w, dispose_it);
    assert_int_equal(w.status, -EIDRM);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static void stop_soon(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

/* The loop closed while a task waits: the task unwinds with -ECANCELED
 * and takes its handler along. */
static void test_signal_loop_closed_while_waiting(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = -1, .response = -1};
    GMainContext *ctx = g_main_context_new();
    lb_loop *loop = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, ctx), 0);
    assert_int_equal(lb_task_spawn(loop, wait_task, &w, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, stop_soon, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_false(no_handler_left(w.dialog));
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(w.status, -ECANCELED);
    assert_true(no_handler_left(w.dialog));
    lb_loop_unref(loop);
    g_main_context_unref(ctx);
    /* A late emission reaches nobody. */
    g_signal_emit(w.dialog, signals[SIG_RESPONSE], 0, 1);
    assert_int_equal(w.response, -1);
    g_object_unref(w.dialog);
}

/* The emission on another thread. */
static gpointer emit_thread(gpointer data) {
    waiting *w = data;
    g_signal_emit(w->dialog, signals[SIG_RESPONSE], 0, 5);
    return NULL;
}

static void emit_elsewhere(waiting *w) {
    g_thread_join(g_thread_new("emitter", emit_thread, w));
}

static void test_signal_from_another_thread(void **state) {
    (void)state;
    waiting w = {.dialog = new_dialog(), .signal = "response", .timeout = 30, .response = -1};
    run_wait(&w, emit_elsewhere);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.response, 5);
    assert_true(no_handler_left(w.dialog));
    g_object_unref(w.dialog);
}

static int misuse_task(lb_task *task, void *data) {
    GObject *d = data;
    (void)task;
    int x = 0;
    GValue v[2] = {G_VALUE_INIT, G_VALUE_INIT};
    assert_int_equal(lb_glib_await_signal(d, "no-such-signal", 1), -EINVAL);
    assert_int_equal(lb_glib_await_signal(NULL, "response", 1, &x), -EINVAL);
    assert_int_equal(lb_glib_await_signal(d, NULL, 1), -EINVAL);
    assert_int_equal(lb_glib_await_signal(d, "response", NAN, &x), -EINVAL);
    assert_int_equal(lb_glib_await_signal_values(d, "response", 1, v, 2), -EINVAL);
    assert_int_equal(lb_glib_await_signal_values(d, "response", 1, NULL, 1), -EINVAL);
    assert_true(no_handler_left(d));
    return 0;
}

static void test_signal_misuse(void **state) {
    (void)state;
    GObject *d = new_dialog();
    int x = 0;
    assert_int_equal(lb_glib_await_signal(d, "response", 1, &x), -EPERM);
    assert_int_equal(lb_run(misuse_task, d, NULL), 0);
    g_object_unref(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_response),
        cmocka_unit_test(test_signal_shared_stack_task),
        cmocka_unit_test(test_signal_no_parameter),
        cmocka_unit_test(test_signal_boolean_return),
        cmocka_unit_test(test_signal_parameters_and_detail),
        cmocka_unit_test(test_signal_values),
        cmocka_unit_test(test_signal_timeout),
        cmocka_unit_test(test_signal_cancel),
        cmocka_unit_test(test_signal_object_finalized),
        cmocka_unit_test(test_signal_object_disposed),
        cmocka_unit_test(test_signal_loop_closed_while_waiting),
        cmocka_unit_test(test_signal_from_another_thread),
        cmocka_unit_test(test_signal_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
