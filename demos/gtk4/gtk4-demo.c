/* SPDX-License-Identifier: MIT */
/* The seed chapter's Tkinter scenario done right, in GTK4: async tasks
 * update widgets while the window stays live. A "Start" button sets
 * "Loading...", runs a 2-second task with a spinner, then "Done!"; a clock
 * ticks every 100 ms throughout; three concurrent tasks show progress and
 * can be cancelled; an executor job reports progress through a coalescing
 * post (lb_coalesce) and stops when cancelled (lb_job_cancelled); a file is loaded through GIO in a task;
 * "Fetch" downloads a megabyte from a server the demo runs itself on a
 * loopback port, the progress bar moving as the bytes arrive.
 *
 * Options (for tests and screenshots):
 *   --autostart           press Start (and the other jobs) at once
 *   --cancel-one          cancel the first progress task after 0.5 s
 *   --screenshot FILE     save a PNG of the window 1 s after start
 *   --quit-after SECONDS  quit, printing the clock's tick statistics
 * Events are printed on stdout ("label: Loading...", "ticks: ..."). */
#include <loopbridge/gtk.h>

#include "download-server.h"

#include <gtk/gtk.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_TASKS 3

typedef struct png_job {
    GdkTexture *texture;
    const char *path;
} png_job;

typedef struct app {
    GtkApplication *gtk;
    lb_loop *loop;
    GtkWidget *window;
    GtkWidget *status, *spinner, *start;
    GtkWidget *clock;
    GtkWidget *bars[PROGRESS_TASKS], *cancels[PROGRESS_TASKS], *bar_labels[PROGRESS_TASKS];
    lb_task *progress[PROGRESS_TASKS];
    lb_group *jobs; /* the progress tasks: the window's close waits for them */
    GtkWidget *worker_bar, *worker_label;
    lb_future *worker;            /* the worker job, once started */
    lb_coalesce *worker_progress; /* its progress, to the UI thread */
    GtkWidget *file_label;
    GtkWidget *fetch, *fetch_bar, *fetch_label;
    lb_server *server; /* the local download server */
    bool fetching;
    /* Clock statistics while the Start task runs: ticks, the largest gap
     * between two, and how late the worst one was against its schedule. */
    double last_tick, next_tick, task_started, task_ended;
    long ticks, ticks_during_task;
    double max_gap_during_task, max_late_during_task;
    gboolean closing; /* the window is going: tasks leave widgets alone */
    /* Options. */
    gboolean autostart, cancel_one;
    char *screenshot;
    png_job png; /* the screenshot being saved */
    double quit_after;
    int running_starts;
} app;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_status(app *a, const char *text) {
    gtk_label_set_text(GTK_LABEL(a->status), text);
    printf("label: %s\n", text);
    fflush(stdout);
}

/* ---------------- the clock: a loopbridge timer every 100 ms ------------- */

static void clock_tick(lb_loop *loop, void *data) {
    app *a = data;
    if (a->closing)
        return;
    double t = now_s();
    if (a->last_tick > 0 && a->task_started > 0 && a->task_ended == 0) {
        double gap = t - a->last_tick;
        double late = lb_loop_time(loop) - a->next_tick;
        if (gap > a->max_gap_during_task)
            a->max_gap_during_task = gap;
        if (late > a->max_late_during_task)
            a->max_late_during_task = late;
        a->ticks_during_task++;
    }
    a->last_tick = t;
    a->ticks++;
    char text[64];
    time_t wall = time(NULL);
    struct tm tm;
    localtime_r(&wall, &tm);
    snprintf(text, sizeof text, "%02d:%02d:%02d.%d   tick %ld", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(fmod(t, 1.0) * 10), a->ticks);
    gtk_label_set_text(GTK_LABEL(a->clock), text);
    /* Fixed rate: each tick is due 100 ms after the previous one was. */
    a->next_tick = (a->next_tick > 0 ? a->next_tick : lb_loop_time(loop)) + 0.1;
    lb_loop_call_at(loop, a->next_tick, clock_tick, a, NULL);
}

/* ---------------- Start: the seed's 2-second task ---------------- */

static int load_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    a->running_starts++;
    set_status(a, "Loading...");
    gtk_spinner_start(GTK_SPINNER(a->spinner));
    if (a->task_started == 0)
        a->task_started = now_s();
    int r = lb_sleep(2.0); /* the window stays live meanwhile */
    if (r < 0 || a->closing)
        return r;
    if (--a->running_starts == 0)
        gtk_spinner_stop(GTK_SPINNER(a->spinner));
    if (a->task_ended == 0)
        a->task_ended = now_s();
    set_status(a, "Done!");
    return 0;
}

static void on_start(GtkButton *button, gpointer data) {
    app *a = data;
    (void)button;
    /* A task, not run_until_complete: the handler returns at once. */
    lb_task_options o = {.name = "start"};
    if (lb_task_spawn(a->loop, load_task, a, &o, NULL) < 0)
        set_status(a, lb_error_detail());
}

/* ---------------- concurrent tasks with progress and cancel ------------- */

typedef struct progress_arg {
    app *a;
    int index;
} progress_arg;

static int progress_task(lb_task *task, void *data) {
    progress_arg *p = data;
    app *a = p->a;
    (void)task;
    double speed = 0.01 + 0.01 * p->index; /* 1, 2 and 3 s in all */
    for (int step = 1; step <= 100; step++) {
        if (lb_sleep(speed) < 0) {
            /* Cancelled by its button or by the window's close: the
             * window waits for this task, so its widgets still exist. */
            gtk_label_set_text(GTK_LABEL(a->bar_labels[p->index]), "cancelled");
            printf("progress %d: cancelled at %d%%\n", p->index, step - 1);
            fflush(stdout);
            return -ECANCELED;
        }
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(a->bars[p->index]), step / 100.0);
    }
    gtk_label_set_text(GTK_LABEL(a->bar_labels[p->index]), "finished");
    printf("progress %d: finished\n", p->index);
    fflush(stdout);
    return 0;
}

static progress_arg progress_args[PROGRESS_TASKS];

static void start_progress(app *a) {
    for (int i = 0; i < PROGRESS_TASKS; i++) {
        if (a->progress[i] && !lb_task_is_done(a->progress[i]))
            continue;
        a->progress[i] = lb_task_unref(a->progress[i]);
        progress_args[i] = (progress_arg){a, i};
        char name[32];
        snprintf(name, sizeof name, "progress-%d", i);
        lb_task_options o = {.name = name};
        if (lb_group_spawn(a->jobs, progress_task, &progress_args[i], &o, &a->progress[i]) < 0)
            return; /* the window is closing */
        gtk_label_set_text(GTK_LABEL(a->bar_labels[i]), "running");
    }
}

static void on_progress_start(GtkButton *b, gpointer data) {
    (void)b;
    start_progress(data);
}

static void on_cancel(GtkButton *b, gpointer data) {
    app *a = g_object_get_data(G_OBJECT(b), "app");
    int i = GPOINTER_TO_INT(data);
    if (a->progress[i])
        lb_task_cancel(a->progress[i]);
}

static void cancel_first(lb_loop *loop, void *data) {
    app *a = data;
    (void)loop;
    if (a->progress[0])
        lb_task_cancel(a->progress[0]);
}

/* ---------------- a worker thread reporting back ---------------- */

/* The worker is an executor job: it posts its progress through a
 * coalescer, so however fast it goes, the UI thread gets at most one
 * update per iteration, with the latest percentage (carried in the
 * pointer: nothing to free). It checks lb_job_cancelled() on each step,
 * so that closing the window (lb_loop_close cancels its future) ends it
 * at once rather than after its remaining steps. */
static void show_worker_progress(lb_loop *loop, void *value, void *data) {
    app *a = data;
    int percent = (int)(intptr_t)value;
    (void)loop;
    if (a->closing)
        return;
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(a->worker_bar), percent / 100.0);
    if (percent == 100) {
        gtk_label_set_text(GTK_LABEL(a->worker_label), "worker thread: done");
        printf("worker: done\n");
        fflush(stdout);
    }
}

static int worker_job(void *data, void **ret) {
    app *a = data;
    (void)ret;
    for (int p = 1; p <= 100; p++) {
        if (lb_job_cancelled())
            return -ECANCELED; /* the window is gone */
        /* Blocking work that must not run on the UI thread. */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        lb_coalesce_post(a->worker_progress, (void *)(intptr_t)p);
    }
    return 0;
}

static void on_worker(GtkButton *b, gpointer data) {
    (void)b;
    app *a = data;
    if (a->worker || lb_coalesce_new(a->loop, show_worker_progress, a, NULL,
                                     &a->worker_progress) < 0)
        return;
    lb_coalesce_set_interval(a->worker_progress, 1.0 / 60); /* one update a frame */
    if (lb_loop_run_in_executor(a->loop, NULL, worker_job, a, &a->worker) < 0) {
        a->worker_progress = lb_coalesce_free(a->worker_progress);
        return;
    }
    gtk_label_set_text(GTK_LABEL(a->worker_label), "worker thread: running");
}

/* ---------------- a file through GIO, awaited in a task ---------------- */

static int load_file_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    GFile *file = g_file_new_for_path("/etc/os-release");
    lb_gio_op *op;
    int r = lb_gio_op_new(a->loop, &op);
    if (r < 0) {
        g_object_unref(file);
        return r;
    }
    g_file_load_contents_async(file, lb_gio_op_cancellable(op), lb_gio_op_ready, op);
    GAsyncResult *res = NULL;
    r = lb_gio_op_await(op, &res);
    if (r == 0 && !a->closing) {
        char *contents = NULL;
        gsize len = 0;
        GError *err = NULL;
        if (g_file_load_contents_finish(file, res, &contents, &len, NULL, &err)) {
            char *nl = strchr(contents, '\n');
            if (nl)
                *nl = '\0';
            char text[256];
            snprintf(text, sizeof text, "GIO: %zu bytes of /etc/os-release: %.80s", (size_t)len,
                     contents);
            gtk_label_set_text(GTK_LABEL(a->file_label), text);
            printf("file: loaded %zu bytes\n", (size_t)len);
            fflush(stdout);
            g_free(contents);
        } else {
            if (!a->closing)
                gtk_label_set_text(GTK_LABEL(a->file_label), err->message);
            g_error_free(err);
        }
    }
    lb_gio_op_unref(op);
    g_object_unref(file);
    return r;
}

static void on_load_file(GtkButton *b, gpointer data) {
    (void)b;
    lb_task_spawn(((app *)data)->loop, load_file_task, data, NULL, NULL);
}

/* ---------------- Fetch: a download over TCP, awaited in a task -------- */

static int fetch_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    lb_stream *s = NULL;
    int r = lb_open_connection("127.0.0.1", (uint16_t)lb_server_port(a->server), NULL, 5.0, &s);
    if (r < 0)
        goto out;
    long ticks_before = a->ticks;
    double started = now_s();
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(a->fetch_bar), 0);
    r = lb_stream_write(s, "GET\n", 4);
    char line[64];
    ssize_t n = r < 0 ? r : lb_stream_readline(s, line, sizeof line - 1);
    long size = 0;
    if (n > 0) {
        line[n] = '\0';
        sscanf(line, "SIZE %ld", &size);
    }
    if (size <= 0) {
        r = n < 0 ? (int)n : -EPROTO;
        goto out;
    }
    /* Read as the bytes come, whatever the pieces; the window stays live
     * between two reads. */
    static char buf[64 * 1024];
    long got = 0;
    int reads = 0;
    while (got < size && (n = lb_stream_read(s, buf, sizeof buf)) > 0) {
        got += n;
        reads++;
        if (a->closing)
            break;
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(a->fetch_bar), (double)got / size);
        char text[64];
        snprintf(text, sizeof text, "%ld of %ld KiB", got / 1024, size / 1024);
        gtk_label_set_text(GTK_LABEL(a->fetch_label), text);
    }
    if (n < 0)
        r = (int)n;
    if (!a->closing) {
        printf("fetch: received %ld of %ld bytes in %d reads in %.2f s, clock ticked %ld times "
               "meanwhile\n",
               got, size, reads, now_s() - started, a->ticks - ticks_before);
        fflush(stdout);
    }
out:
    if (r < 0 && !a->closing) {
        gtk_label_set_text(GTK_LABEL(a->fetch_label), lb_strerror(r));
        printf("fetch: failed: %s\n", lb_error_detail());
        fflush(stdout);
    }
    lb_stream_unref(s);
    a->fetching = false;
    return r;
}

static void on_fetch(GtkButton *b, gpointer data) {
    app *a = data;
    (void)b;
    if (a->fetching || !a->server)
        return;
    a->fetching = true;
    gtk_label_set_text(GTK_LABEL(a->fetch_label), "connecting...");
    lb_task_options o = {.name = "fetch"};
    if (lb_task_spawn(a->loop, fetch_task, a, &o, NULL) < 0)
        a->fetching = false;
}

/* ---------------- screenshot and quit ---------------- */

/* The window as GTK painted it, rendered to a texture on the UI thread
 * (GTK objects live there); the PNG encoding, the slow part, runs on a
 * worker thread with lb_to_thread so the clock does not skip a beat. */
static GdkTexture *render_window(app *a) {
    GdkPaintable *paintable = gtk_widget_paintable_new(a->window);
    int w = gtk_widget_get_width(a->window), h = gtk_widget_get_height(a->window);
    GtkSnapshot *snap = gtk_snapshot_new();
    gdk_paintable_snapshot(paintable, snap, w, h);
    GskRenderNode *node = gtk_snapshot_free_to_node(snap);
    GskRenderer *renderer = gtk_native_get_renderer(GTK_NATIVE(a->window));
    GdkTexture *tex = NULL;
    if (node && renderer)
        tex = gsk_renderer_render_texture(renderer, node, NULL);
    if (node)
        gsk_render_node_unref(node);
    g_object_unref(paintable);
    return tex;
}

static int save_png(void *data, void **ret) {
    png_job *job = data;
    (void)ret;
    return gdk_texture_save_to_png(job->texture, job->path) ? 0 : -EIO;
}

static int screenshot_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    GdkTexture *tex = NULL;
    /* Nothing painted yet on a slow display: try again shortly. */
    for (int attempt = 0; !tex && attempt < 50; attempt++) {
        if (a->closing)
            return -ECANCELED;
        if (!(tex = render_window(a)) && lb_sleep(0.05) < 0)
            return -ECANCELED;
    }
    if (!tex)
        return -EAGAIN;
    /* The job's data lives in the app, not on this task's stack: a
     * cancelled task returns at once while a started job runs to its end
     * (lb_loop_close waits for it; main frees the texture after that). */
    a->png = (png_job){tex, a->screenshot};
    int r = lb_to_thread(save_png, &a->png, NULL);
    if (r == 0) {
        printf("screenshot: %s (%dx%d)\n", a->screenshot, gdk_texture_get_width(tex),
               gdk_texture_get_height(tex));
        fflush(stdout);
    }
    return r;
}

static void take_screenshot(lb_loop *loop, void *data) {
    lb_task_options o = {.name = "screenshot"};
    lb_task_spawn(loop, screenshot_task, data, &o, NULL);
}

static void quit_app(lb_loop *loop, void *data) {
    app *a = data;
    (void)loop;
    /* The clock is due every 100 ms: a gap of 100 ms is on time, the
     * stall is what a gap has beyond that. */
    printf("ticks: total %ld, during task %ld, max gap during task %.1f ms (stall %.1f ms), "
           "max lateness %.1f ms\n",
           a->ticks, a->ticks_during_task, a->max_gap_during_task * 1000,
           a->max_gap_during_task > 0.1 ? (a->max_gap_during_task - 0.1) * 1000 : 0.0,
           a->max_late_during_task * 1000);
    printf("bars at quit:");
    for (int i = 0; i < PROGRESS_TASKS; i++)
        printf(" %d%%",
               (int)lround(100 * gtk_progress_bar_get_fraction(GTK_PROGRESS_BAR(a->bars[i]))));
    printf("\n");
    fflush(stdout);
    /* As the window manager's close: the progress tasks unwind first. */
    gtk_window_close(GTK_WINDOW(a->window));
}

static void on_destroy(GtkWidget *w, gpointer data) {
    (void)w;
    ((app *)data)->closing = TRUE;
}

/* ---------------- the window ---------------- */

static GtkWidget *row(GtkWidget *box) {
    GtkWidget *r = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 8);
    gtk_box_append(GTK_BOX(box), r);
    return r;
}

static void activate(GtkApplication *gtk, gpointer data) {
    app *a = data;
    /* The loop runs inside GTK's own main context: g_application_run
     * drives it, nothing else is needed. */
    if (lb_glib_loop_new(&a->loop, NULL) < 0) {
        fprintf(stderr, "lb_glib_loop_new: %s\n", lb_error_detail());
        return;
    }
    lb_group_new(a->loop, &a->jobs);
    a->window = gtk_application_window_new(gtk);
    gtk_window_set_title(GTK_WINDOW(a->window), "loopbridge: async tasks in GTK4");
    gtk_window_set_default_size(GTK_WINDOW(a->window), 560, 400);
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 10);
    gtk_widget_set_margin_start(box, 16);
    gtk_widget_set_margin_end(box, 16);
    gtk_widget_set_margin_top(box, 16);
    gtk_widget_set_margin_bottom(box, 16);
    gtk_window_set_child(GTK_WINDOW(a->window), box);

    GtkWidget *r = row(box);
    a->start = gtk_button_new_with_label("Start");
    g_signal_connect(a->start, "clicked", G_CALLBACK(on_start), a);
    gtk_box_append(GTK_BOX(r), a->start);
    a->spinner = gtk_spinner_new();
    gtk_box_append(GTK_BOX(r), a->spinner);
    a->status = gtk_label_new("Press Start");
    gtk_box_append(GTK_BOX(r), a->status);

    a->clock = gtk_label_new("clock");
    gtk_widget_set_halign(a->clock, GTK_ALIGN_START);
    gtk_box_append(GTK_BOX(box), a->clock);

    r = row(box);
    GtkWidget *pstart = gtk_button_new_with_label("Run 3 tasks");
    g_signal_connect(pstart, "clicked", G_CALLBACK(on_progress_start), a);
    gtk_box_append(GTK_BOX(r), pstart);
    for (int i = 0; i < PROGRESS_TASKS; i++) {
        r = row(box);
        a->bars[i] = gtk_progress_bar_new();
        gtk_widget_set_hexpand(a->bars[i], TRUE);
        gtk_widget_set_valign(a->bars[i], GTK_ALIGN_CENTER);
        gtk_box_append(GTK_BOX(r), a->bars[i]);
        a->bar_labels[i] = gtk_label_new("idle");
        gtk_box_append(GTK_BOX(r), a->bar_labels[i]);
        a->cancels[i] = gtk_button_new_with_label("Cancel");
        g_object_set_data(G_OBJECT(a->cancels[i]), "app", a);
        g_signal_connect(a->cancels[i], "clicked", G_CALLBACK(on_cancel), GINT_TO_POINTER(i));
        gtk_box_append(GTK_BOX(r), a->cancels[i]);
    }

    r = row(box);
    GtkWidget *wbtn = gtk_button_new_with_label("Worker thread");
    g_signal_connect(wbtn, "clicked", G_CALLBACK(on_worker), a);
    gtk_box_append(GTK_BOX(r), wbtn);
    a->worker_bar = gtk_progress_bar_new();
    gtk_widget_set_hexpand(a->worker_bar, TRUE);
    gtk_widget_set_valign(a->worker_bar, GTK_ALIGN_CENTER);
    gtk_box_append(GTK_BOX(r), a->worker_bar);
    a->worker_label = gtk_label_new("worker thread: idle");
    gtk_box_append(GTK_BOX(box), a->worker_label);

    r = row(box);
    GtkWidget *fbtn = gtk_button_new_with_label("Load a file (GIO)");
    g_signal_connect(fbtn, "clicked", G_CALLBACK(on_load_file), a);
    gtk_box_append(GTK_BOX(r), fbtn);
    a->file_label = gtk_label_new("");
    gtk_label_set_ellipsize(GTK_LABEL(a->file_label), PANGO_ELLIPSIZE_END);
    gtk_box_append(GTK_BOX(r), a->file_label);

    r = row(box);
    a->fetch = gtk_button_new_with_label("Fetch");
    g_signal_connect(a->fetch, "clicked", G_CALLBACK(on_fetch), a);
    gtk_box_append(GTK_BOX(r), a->fetch);
    a->fetch_bar = gtk_progress_bar_new();
    gtk_widget_set_hexpand(a->fetch_bar, TRUE);
    gtk_widget_set_valign(a->fetch_bar, GTK_ALIGN_CENTER);
    gtk_box_append(GTK_BOX(r), a->fetch_bar);
    a->fetch_label = gtk_label_new("1 MiB from a local server");
    gtk_box_append(GTK_BOX(r), a->fetch_label);
    /* The server runs in this process, on a port the kernel picks. */
    if (download_server_start(a->loop, &a->server) < 0) {
        gtk_label_set_text(GTK_LABEL(a->fetch_label), lb_error_detail());
        gtk_widget_set_sensitive(a->fetch, FALSE);
    }

    g_signal_connect(a->window, "destroy", G_CALLBACK(on_destroy), a);
    lb_glib_window_close_after(GTK_WINDOW(a->window), a->jobs);
    gtk_window_present(GTK_WINDOW(a->window));
    lb_loop_call_soon(a->loop, clock_tick, a, NULL);

    if (a->autostart) {
        g_signal_emit_by_name(a->start, "clicked");
        g_signal_emit_by_name(pstart, "clicked");
        g_signal_emit_by_name(wbtn, "clicked");
        g_signal_emit_by_name(fbtn, "clicked");
        g_signal_emit_by_name(a->fetch, "clicked");
    }
    if (a->cancel_one)
        lb_loop_call_later(a->loop, 0.5, cancel_first, a, NULL);
    if (a->screenshot)
        lb_loop_call_later(a->loop, 1.0, take_screenshot, a, NULL);
    if (a->quit_after > 0)
        lb_loop_call_later(a->loop, a->quit_after, quit_app, a, NULL);
}

int main(int argc, char **argv) {
    app a = {0};
    /* Our options first; GTK gets the rest. */
    int keep = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--autostart"))
            a.autostart = TRUE;
        else if (!strcmp(argv[i], "--cancel-one"))
            a.cancel_one = TRUE;
        else if (!strcmp(argv[i], "--screenshot") && i + 1 < argc)
            a.screenshot = argv[++i];
        else if (!strcmp(argv[i], "--quit-after") && i + 1 < argc)
            a.quit_after = atof(argv[++i]);
        else
            argv[keep++] = argv[i];
    }
    argc = keep;
    a.gtk = gtk_application_new("org.loopbridge.Gtk4Demo", G_APPLICATION_NON_UNIQUE);
    g_signal_connect(a.gtk, "activate", G_CALLBACK(activate), &a);
    int status = g_application_run(G_APPLICATION(a.gtk), argc, argv);
    /* The window is gone: close the loop (cancels what still runs, the
     * worker job included, which sees lb_job_cancelled() and returns;
     * close waits for it), then free what the worker used. */
    if (a.loop) {
        for (int i = 0; i < PROGRESS_TASKS; i++)
            lb_task_unref(a.progress[i]);
        lb_group_unref(a.jobs);
        /* The server stops listening; close cancels its connections. */
        lb_server_unref(a.server);
        lb_loop_close(a.loop);
        lb_future_unref(a.worker);
        lb_coalesce_free(a.worker_progress);
        lb_loop_unref(a.loop);
    }
    if (a.png.texture)
        g_object_unref(a.png.texture);
    g_object_unref(a.gtk);
    return status;
}
