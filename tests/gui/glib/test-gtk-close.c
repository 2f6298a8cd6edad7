/* SPDX-License-Identifier: MIT */
/* lb_glib_window_close_after(): a GtkWindow's close waits until its
 * tasks unwound, so their cleanup still updates live widgets, whether the
 * close comes from the window manager (gtk_window_close() from a GLib
 * callback stands in for it) or from a loopbridge callback or task (where
 * running the loop to drain the tasks is refused with -EBUSY). Runs under
 * Xvfb with GSK_RENDERER=cairo. */
#include <loopbridge/gtk.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct app {
    lb_loop *loop;
    GtkWindow *window;  /* weak pointer: NULL once finalized */
    GtkLabel *label;    /* weak pointer */
    lb_group *group;
    int started, unwound, touched_live_label;
    bool destroyed;
    int busy; /* what draining from a loopbridge callback returned */
} app;

/* A job: sleeps until cancelled, then unwinds across one more await (as
 * closing a stream does) and writes its last words into the label. */
static int job(lb_task *task, void *data) {
    (void)task;
    app *a = data;
    a->started++;
    int r = lb_sleep(3600);
    assert_int_equal(r, -ECANCELED);
    lb_task_uncancel(lb_task_current());
    assert_int_equal(lb_sleep(0.001), 0);
    if (a->label && a->window && gtk_widget_get_root(GTK_WIDGET(a->label)) ==
                                     GTK_ROOT(a->window)) {
        gtk_label_set_text(a->label, "Cancelled");
        a->touched_live_label++;
    }
    a->unwound++;
    return -ECANCELED;
}

static void on_destroy(GtkWidget *w, gpointer data) {
    (void)w;
    app *a = data;
    /* Every job ended before the window went. */
    assert_int_equal(a->unwound, a->started);
    a->destroyed = true;
}

static void app_open(app *a, int jobs) {
    assert_int_equal(lb_glib_loop_new(&a->loop, NULL), 0);
    a->window = GTK_WINDOW(gtk_window_new());
    g_object_add_weak_pointer(G_OBJECT(a->window), (gpointer *)&a->window);
    a->label = GTK_LABEL(gtk_label_new("Working"));
    g_object_add_weak_pointer(G_OBJECT(a->label), (gpointer *)&a->label);
    gtk_window_set_child(a->window, GTK_WIDGET(a->label));
    g_signal_connect(a->window, "destroy", G_CALLBACK(on_destroy), a);
    assert_int_equal(lb_group_new(a->loop, &a->group), 0);
    for (int i = 0; i < jobs; i++)
        assert_int_equal(lb_group_spawn(a->group, job, a, NULL, NULL), 0);
    assert_int_equal(lb_glib_window_close_after(a->window, a->group), 0);
    gtk_window_present(a->window);
    /* The jobs start and go to sleep. */
    gint64 give_up = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while (a->started < jobs && g_get_monotonic_time() < give_up)
        g_main_context_iteration(NULL, TRUE);
    assert_int_equal(a->started, jobs);
}

static void app_run_until_destroyed(app *a) {
    gint64 give_up = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while (!a->destroyed && g_get_monotonic_time() < give_up)
        g_main_context_iteration(NULL, TRUE);
    assert_true(a->destroyed);
    /* GTK drops its last references in its next iterations. */
    while (a->window && g_get_monotonic_time() < give_up)
        g_main_context_iteration(NULL, FALSE);
    assert_null(a->window);
    assert_null(a->label);
}

static void app_close(app *a) {
    a->group = lb_group_unref(a->group);
    assert_int_equal(lb_loop_close(a->loop), 0);
    a->loop = lb_loop_unref(a->loop);
}

/* The window manager's close: GTK's handler, no loopbridge callback. */
static gboolean wm_close(gpointer data) {
    app *a = data;
    gtk_window_close(a->window);
    /* Kept while the jobs unwind; asked again, still kept. */
    assert_non_null(a->window);
    assert_int_equal(a->unwound, 0);
    gtk_window_close(a->window);
    assert_non_null(a->window);
    return G_SOURCE_REMOVE;
}

static void test_gtk_close_from_window_manager(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 3);
    g_idle_add(wm_close, &a);
    app_run_until_destroyed(&a);
    assert_int_equal(a.unwound, 3);
    assert_int_equal(a.touched_live_label, 3);
    app_close(&a);
}

static void set_flag(lb_loop *loop, void *data) {
    (void)loop;
    *(bool *)data = true;
}

/* A close from a loopbridge callback (a button's handler run by the
 * loop): draining there is refused, the helper needs no nested run. */
static void close_in_callback(lb_loop *loop, void *data) {
    app *a = data;
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    a->busy = lb_loop_run_until_complete(loop, f);
    lb_future_unref(f);
    gtk_window_close(a->window);
    assert_non_null(a->window);
    assert_int_equal(a->unwound, 0);
}

static void test_gtk_close_from_loop_callback(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 2);
    assert_int_equal(lb_loop_call_soon(a.loop, close_in_callback, &a, NULL), 0);
    app_run_until_destroyed(&a);
    assert_int_equal(a.busy, -EBUSY);
    assert_int_equal(a.touched_live_label, 2);
    app_close(&a);
}

/* A task of the group closes its own window (a "Quit" job): it is
 * cancelled too, and unwinds with the others before the window goes. */
static int closer(lb_task *task, void *data) {
    (void)task;
    app *a = data;
    a->started++;
    gtk_window_close(a->window);
    int r = lb_sleep(3600);
    assert_int_equal(r, -ECANCELED);
    assert_non_null(a->label);
    a->unwound++;
    return r;
}

static void test_gtk_close_from_task(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 2);
    assert_int_equal(lb_group_spawn(a.group, closer, &a, NULL, NULL), 0);
    app_run_until_destroyed(&a);
    assert_int_equal(a.unwound, 3);
    assert_int_equal(a.touched_live_label, 2);
    app_close(&a);
}

/* Nothing running: the window goes after one more iteration. */
static void test_gtk_close_empty_group(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 0);
    gtk_window_close(a.window);
    app_run_until_destroyed(&a);
    app_close(&a);
}

/* The window destroyed by other means while the jobs unwind: the
 * callback finds it gone and does nothing. */
static gboolean close_then_destroy(gpointer data) {
    app *a = data;
    gtk_window_close(a->window);
    assert_non_null(a->window);
    gtk_window_destroy(a->window);
    return G_SOURCE_REMOVE;
}

static void test_gtk_close_window_destroyed_meanwhile(void **state) {
    (void)state;
    app a = {0};
    app_open(&a, 1);
    g_signal_handlers_disconnect_by_func(a.window, on_destroy, &a);
    g_idle_add(close_then_destroy, &a);
    gint64 give_up = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while ((a.window || a.unwound < 1) && g_get_monotonic_time() < give_up)
        g_main_context_iteration(NULL, TRUE);
    assert_null(a.window);
    assert_int_equal(a.unwound, 1);
    /* The group's callback (queued when the job ended) runs first. */
    bool after = false;
    assert_int_equal(lb_loop_call_soon(a.loop, set_flag, &after, NULL), 0);
    while (!after && g_get_monotonic_time() < give_up)
        g_main_context_iteration(NULL, TRUE);
    assert_true(after);
    app_close(&a);
}

static void test_gtk_close_bad_arguments(void **state) {
    (void)state;
    lb_loop *loop = NULL;
    lb_group *g = NULL;
    assert_int_equal(lb_glib_loop_new(&loop, NULL), 0);
    assert_int_equal(lb_group_new(loop, &g), 0);
    GtkWidget *label = g_object_ref_sink(gtk_label_new("x"));
    GObject *plain = g_object_new(G_TYPE_OBJECT, NULL);
    assert_int_equal(lb_glib_close_after(NULL, "close-request", g, lb__gtk_window_close), -EINVAL);
    assert_int_equal(lb_glib_close_after(plain, "close-request", g, lb__gtk_window_close), -EINVAL);
    /* A signal of another shape. */
    assert_int_equal(lb_glib_close_after(label, "destroy", g, lb__gtk_window_close), -EINVAL);
    assert_int_equal(lb_glib_close_after(label, "notify", g, lb__gtk_window_close), -EINVAL);
    assert_int_equal(lb_glib_window_close_after(NULL, g), -EINVAL);
    g_object_unref(plain);
    g_object_unref(label);
    lb_group_unref(g);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

int main(void) {
    gtk_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gtk_close_from_window_manager),
        cmocka_unit_test(test_gtk_close_from_loop_callback),
        cmocka_unit_test(test_gtk_close_from_task),
        cmocka_unit_test(test_gtk_close_empty_group),
        cmocka_unit_test(test_gtk_close_window_destroyed_meanwhile),
        cmocka_unit_test(test_gtk_close_bad_arguments),
    };
    return cmocka_run_group_tests_name("gtk-close", tests, NULL, NULL);
}
