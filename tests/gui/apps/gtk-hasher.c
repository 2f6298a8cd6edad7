/* SPDX-License-Identifier: MIT */
/* A small GTK4 application written from docs/glib.md against the
 * installed library: it hashes every file of a directory, one executor job
 * per file, each with its progress bar.
 *
 *  - the jobs run in a pool of their own (lb_to_thread_full: the digest is
 *    a string that is freed if nobody takes it) and check
 *    lb_job_cancelled() every 256 KiB chunk;
 *  - each job reports its progress through a coalescer (lb_coalesce), so
 *    a fast job cannot flood the GTK thread;
 *  - the hashing tasks form a group; Cancel cancels it (lb_group_cancel),
 *    a spinner turns while they run;
 *  - a small file of the directory is read first with a GIO one-liner
 *    (lb_gio_file_load_contents);
 *  - when the hashing ended, the app awaits the "Hash again" button's
 *    "clicked" with a timeout (lb_glib_await_signal), then hashes again;
 *  - the main task runs in the app's group; closing the window
 *    (close-request, lb_glib_window_close_after) cancels that group: the
 *    main task, waiting in lb_group_wait(), passes the cancellation to the
 *    hashing tasks; the window goes once every task unwound, so no task
 *    ever touches a destroyed widget; lb_loop_close() then waits for the
 *    jobs, which return at their next chunk.
 *
 * Usage: gtk-hasher DIRECTORY (the directory a user would have chosen).
 * For its test it prints what it does, one line each:
 *   gio: small.txt N bytes
 *   widget NAME X Y        a button's centre, in X window coordinates
 *   hashing: N files       the jobs were started
 *   job I: cancel observed after MS ms    (in the job's thread)
 *   hash: NAME DIGEST | hash: NAME cancelled
 *   hashing: done (STATUS)
 *   await: ready | await: clicked | await: timed out
 *   exit: MS ms after close-request */
#define _GNU_SOURCE /* O_CLOEXEC, clock_gettime under -std=c11 */
#include <loopbridge/glib.h>
#include <loopbridge/gtk.h>

#include "app-common.h"

#include <errno.h>
#include <fcntl.h>
#include <gtk/gtk.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 8
#define CHUNK (256 * 1024)

/* A job's state: a job cancelled while queued never runs, one that runs
 * sees lb_job_cancelled(); either way the app must know when no job can
 * post progress any more before it frees the coalescers. */
enum { JOB_QUEUED, JOB_RUNNING, JOB_OVER };

struct app;

typedef struct hash_job {
    struct app *a;
    int index;
    char *name, *path;
    int64_t size;
    lb_coalesce *progress; /* job -> GTK thread: per mille done */
    GtkWidget *bar;
    lb_task *task;
    atomic_int state; /* JOB_*: whether the job may still touch this */
} hash_job;

typedef struct app {
    GtkApplication *gtk;
    lb_loop *loop;
    lb_executor *pool;
    const char *dir;
    GtkWidget *window, *spinner, *status, *cancel, *again, *gio_label, *bars_box;
    hash_job jobs[MAX_FILES];
    int njobs;
    lb_group *tasks;  /* the app's: closing the window cancels it */
    lb_group *hashes; /* the hashing tasks running, for Cancel */
    _Atomic int64_t cancel_ns; /* when Cancel (or close) asked the jobs to stop */
    bool closing;              /* close-request came: tasks unwind, then the window goes */
    bool window_gone;
    int64_t close_ns;
} app;

/* ---------------- the job: runs on a pool thread ---------------- */

static int hash_file_job(void *data, void **ret) {
    hash_job *j = data;
    int expected = JOB_QUEUED;
    if (!atomic_compare_exchange_strong(&j->state, &expected, JOB_RUNNING))
        return -ECANCELED; /* its task gave up on it already */
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    unsigned char *buf = fd < 0 ? NULL : malloc(CHUNK);
    if (!buf) {
        int r = fd < 0 ? -errno : -ENOMEM;
        if (fd >= 0)
            close(fd);
        atomic_store(&j->state, JOB_OVER);
        return r;
    }
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a, 64 bits */
    int64_t done = 0;
    int r = 0;
    for (;;) {
        if (lb_job_cancelled()) {
            say_cancel_observed(j->index, atomic_load(&j->a->cancel_ns));
            r = -ECANCELED;
            break;
        }
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 0x100000001b3u;
        done += n;
        lb_coalesce_post(j->progress, (void *)(intptr_t)(j->size ? done * 1000 / j->size : 1000));
    }
    free(buf);
    close(fd);
    char *digest = r < 0 ? NULL : malloc(17);
    if (digest)
        snprintf(digest, 17, "%016llx", (unsigned long long)h);
    /* Last: after this the job touches nothing of j's. */
    atomic_store(&j->state, JOB_OVER);
    if (!digest)
        return r < 0 ? r : -ENOMEM;
    *ret = digest;
    return 0;
}

/* ---------------- tasks: run on the GTK thread ---------------- */

static void show_progress(lb_loop *loop, void *value, void *data) {
    hash_job *j = data;
    (void)loop;
    if (!j->a->window_gone)
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(j->bar), (intptr_t)value / 1000.0);
}

static int hash_task(lb_task *task, void *data) {
    hash_job *j = data;
    (void)task;
    char *digest = NULL;
    /* The job's data is the app's, not this task's: a cancelled task
     * returns at once while its job runs to its next check. */
    int r = lb_to_thread_full(hash_file_job, j, free, (void **)&digest);
    int expected = JOB_QUEUED; /* cancelled before it started: it never will */
    atomic_compare_exchange_strong(&j->state, &expected, JOB_OVER);
    if (r == 0) {
        gtk_progress_bar_set_text(GTK_PROGRESS_BAR(j->bar), digest);
        say("hash: %s %s", j->name, digest);
        free(digest);
    } else {
        gtk_progress_bar_set_text(GTK_PROGRESS_BAR(j->bar), lb_strerror(r));
        say("hash: %s %s", j->name, r == -ECANCELED ? "cancelled" : lb_strerror(r));
    }
    return r;
}

static int compare_names(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void free_jobs(app *a) {
    for (int i = 0; i < a->njobs; i++) {
        hash_job *j = &a->jobs[i];
        lb_coalesce_free(j->progress);
        lb_task_unref(j->task);
        g_free(j->name);
        g_free(j->path);
    }
    a->njobs = 0;
}

/* Lists the directory and makes a progress bar per file. */
static int list_files(app *a) {
    GDir *dir = g_dir_open(a->dir, 0, NULL);
    if (!dir)
        return -ENOENT;
    char *names[MAX_FILES];
    int n = 0;
    const char *name;
    while (n < MAX_FILES && (name = g_dir_read_name(dir)))
        names[n++] = g_strdup(name);
    g_dir_close(dir);
    qsort(names, n, sizeof *names, compare_names);
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child(a->bars_box)))
        gtk_box_remove(GTK_BOX(a->bars_box), child);
    for (int i = 0; i < n; i++) {
        hash_job *j = &a->jobs[a->njobs];
        *j = (hash_job){.a = a, .index = a->njobs, .name = names[i]};
        j->path = g_build_filename(a->dir, names[i], NULL);
        struct stat st;
        if (stat(j->path, &st) < 0 || !S_ISREG(st.st_mode)) {
            g_free(j->name);
            g_free(j->path);
            continue;
        }
        j->size = st.st_size;
        j->bar = gtk_progress_bar_new();
        gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(j->bar), TRUE);
        gtk_progress_bar_set_text(GTK_PROGRESS_BAR(j->bar), j->name);
        gtk_box_append(GTK_BOX(a->bars_box), j->bar);
        a->njobs++;
    }
    return 0;
}

static int hash_all(app *a) {
    int r = list_files(a);
    lb_group *group = NULL;
    if (r == 0)
        r = lb_group_new(a->loop, &group);
    for (int i = 0; r == 0 && i < a->njobs; i++) {
        hash_job *j = &a->jobs[i];
        r = lb_coalesce_new(a->loop, show_progress, j, NULL, &j->progress);
        if (r == 0)
            r = lb_coalesce_set_interval(j->progress, 1.0 / 60); /* a frame */
        lb_task_options o = {.name = j->name};
        atomic_store(&j->state, JOB_QUEUED);
        if (r == 0)
            r = lb_group_spawn(group, hash_task, j, &o, &j->task);
    }
    if (r < 0) {
        say("hashing: cannot start: %s", lb_error_detail());
        lb_group_unref(group);
        return r;
    }
    gtk_spinner_start(GTK_SPINNER(a->spinner));
    gtk_widget_set_sensitive(a->cancel, TRUE);
    gtk_label_set_text(GTK_LABEL(a->status), "Hashing...");
    atomic_store(&a->cancel_ns, 0);
    say("hashing: %d files", a->njobs);
    a->hashes = group;
    /* Cancelled from outside (the window is closing), lb_group_wait()
     * cancels the children and returns once they all ended. */
    r = lb_group_wait(group);
    a->hashes = NULL;
    lb_group_unref(group);
    gtk_spinner_stop(GTK_SPINNER(a->spinner));
    gtk_widget_set_sensitive(a->cancel, FALSE);
    gtk_label_set_text(GTK_LABEL(a->status), r == 0 ? "Done" : lb_strerror(r));
    say("hashing: done (%s)", r == 0 ? "ok" : lb_strerror(r));
    return r;
}

/* Prints where a button is, for the test's clicks: GTK 4 draws the
 * window's widgets in its surface, shifted by the surface transform. */
static void show_position(app *a, const char *name, GtkWidget *w) {
    graphene_point_t p;
    double sx = 0, sy = 0;
    gtk_native_get_surface_transform(GTK_NATIVE(a->window), &sx, &sy);
    if (gtk_widget_compute_point(w, a->window,
                                 &GRAPHENE_POINT_INIT(gtk_widget_get_width(w) / 2.0f,
                                                      gtk_widget_get_height(w) / 2.0f),
                                 &p))
        say("widget %s %d %d", name, (int)(p.x + sx), (int)(p.y + sy));
}

static int run(app *a) {
    /* A small file, read with one line. */
    GFile *small = g_file_new_build_filename(a->dir, "small.txt", NULL);
    char *text = NULL;
    gsize len = 0;
    int r = lb_gio_file_load_contents(small, &text, &len, NULL);
    g_object_unref(small);
    if (r < 0) {
        say("gio: %s", lb_error_detail());
        return r;
    }
    char line[128];
    snprintf(line, sizeof line, "small.txt: %.*s", (int)strcspn(text, "\n"), text);
    gtk_label_set_text(GTK_LABEL(a->gio_label), line);
    say("gio: small.txt %zu bytes", (size_t)len);
    g_free(text);

    /* Wait for the first layout before telling where the buttons are. */
    while (gtk_widget_get_width(a->cancel) == 0)
        if ((r = lb_sleep(0.02)) < 0)
            return r;
    show_position(a, "cancel", a->cancel);
    show_position(a, "again", a->again);

    for (;;) {
        r = hash_all(a);
        if (a->closing)
            return r;
        /* A cancelled task ends at once, its job at its next chunk: the
         * coalescers are freed once no job can post any more. */
        for (int i = 0; i < a->njobs; i++)
            while (atomic_load(&a->jobs[i].state) == JOB_RUNNING)
                if ((r = lb_sleep(0.005)) < 0)
                    return r;
        free_jobs(a);
        gtk_widget_set_sensitive(a->again, TRUE);
        say("await: ready");
        r = lb_glib_await_signal(a->again, "clicked", 60.0);
        say("await: %s", r == 0 ? "clicked" : r == -ETIMEDOUT ? "timed out" : lb_strerror(r));
        if (r < 0)
            return r;
        gtk_widget_set_sensitive(a->again, FALSE);
    }
}

static int main_task(lb_task *task, void *data) {
    app *a = data;
    (void)task;
    int r = run(a);
    return r == -ECANCELED && a->closing ? 0 : r;
}

/* ---------------- signal handlers ---------------- */

static void on_cancel(GtkButton *button, gpointer data) {
    app *a = data;
    (void)button;
    atomic_store(&a->cancel_ns, now_ns());
    say("cancel: clicked");
    if (a->hashes)
        lb_group_cancel(a->hashes);
}

/* Connected before lb_glib_window_close_after()'s handler, which then
 * cancels the app's group and holds the window until it unwound: this one
 * notes the time for the jobs' reports and lets the close go on. */
static gboolean on_close_request(GtkWindow *window, gpointer data) {
    app *a = data;
    (void)window;
    if (!a->closing) {
        a->closing = true;
        a->close_ns = now_ns();
        atomic_store(&a->cancel_ns, a->close_ns);
        say("close: cancelling");
    }
    return FALSE;
}

static void on_destroy(GtkWidget *w, gpointer data) {
    (void)w;
    ((app *)data)->window_gone = true;
}

static void activate(GtkApplication *gtk, gpointer data) {
    app *a = data;
    if (lb_glib_loop_new(&a->loop, NULL) < 0) {
        fprintf(stderr, "lb_glib_loop_new: %s\n", lb_error_detail());
        return;
    }
    /* CPU-bound jobs: a pool of their own, of a fixed size. */
    if (lb_executor_new(&a->pool, 4) < 0 || lb_loop_set_default_executor(a->loop, a->pool) < 0) {
        fprintf(stderr, "executor: %s\n", lb_error_detail());
        return;
    }
    a->window = gtk_application_window_new(gtk);
    gtk_window_set_title(GTK_WINDOW(a->window), "lb-apps-gtk-hasher");
    gtk_window_set_default_size(GTK_WINDOW(a->window), 480, 320);
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 8);
    gtk_widget_set_margin_start(box, 12);
    gtk_widget_set_margin_end(box, 12);
    gtk_widget_set_margin_top(box, 12);
    gtk_widget_set_margin_bottom(box, 12);
    gtk_window_set_child(GTK_WINDOW(a->window), box);
    GtkWidget *top = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 8);
    gtk_box_append(GTK_BOX(box), top);
    a->spinner = gtk_spinner_new();
    gtk_box_append(GTK_BOX(top), a->spinner);
    a->status = gtk_label_new("Starting");
    gtk_box_append(GTK_BOX(top), a->status);
    a->cancel = gtk_button_new_with_label("Cancel");
    gtk_widget_set_sensitive(a->cancel, FALSE);
    g_signal_connect(a->cancel, "clicked", G_CALLBACK(on_cancel), a);
    gtk_box_append(GTK_BOX(top), a->cancel);
    a->again = gtk_button_new_with_label("Hash again");
    gtk_widget_set_sensitive(a->again, FALSE);
    gtk_box_append(GTK_BOX(top), a->again);
    a->gio_label = gtk_label_new("");
    gtk_box_append(GTK_BOX(box), a->gio_label);
    a->bars_box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 4);
    gtk_box_append(GTK_BOX(box), a->bars_box);
    g_signal_connect(a->window, "close-request", G_CALLBACK(on_close_request), a);
    g_signal_connect(a->window, "destroy", G_CALLBACK(on_destroy), a);
    gtk_window_present(GTK_WINDOW(a->window));
    lb_task_options o = {.name = "main"};
    if (lb_group_new(a->loop, &a->tasks) < 0 ||
        lb_glib_window_close_after(GTK_WINDOW(a->window), a->tasks) < 0 ||
        lb_group_spawn(a->tasks, main_task, a, &o, NULL) < 0)
        fprintf(stderr, "tasks: %s\n", lb_error_detail());
}

int main(int argc, char **argv) {
    app a = {.dir = argc > 1 ? argv[1] : "."};
    a.gtk = gtk_application_new("org.loopbridge.AppsHasher", G_APPLICATION_NON_UNIQUE);
    g_signal_connect(a.gtk, "activate", G_CALLBACK(activate), &a);
    int status = g_application_run(G_APPLICATION(a.gtk), 1, argv);
    if (a.loop) {
        lb_group_unref(a.tasks);
        /* Waits for the jobs still running: they see lb_job_cancelled(). */
        lb_loop_close(a.loop);
        free_jobs(&a);
        lb_executor_unref(a.pool);
        lb_loop_unref(a.loop);
    }
    g_object_unref(a.gtk);
    if (a.close_ns)
        say("exit: %.1f ms after close-request", (now_ns() - a.close_ns) / 1e6);
    return status;
}
