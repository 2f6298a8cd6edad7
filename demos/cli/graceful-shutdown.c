/* SPDX-License-Identifier: MIT */
/* Seed pattern "Graceful shutdown": background workers run until SIGTERM
 * (or SIGINT) stops the loop; then a shutdown task cancels them, each
 * worker cleans up, and the shutdown waits for all of them before the
 * loop is closed. To end on its own the program sends itself SIGTERM
 * after --delay SECONDS (default 3; a worker's tick is a third of it). */
#include <loopbridge/loopbridge.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_WORKERS 3

typedef struct application {
    lb_loop *loop;
    lb_task *tasks[N_WORKERS];
    double tick;
} application;

static int worker(lb_task *task, void *data) {
    const application *app = data;
    const char *name = lb_task_name(task);
    for (;;) {
        printf("Worker %s: working\n", name);
        int r = lb_sleep(app->tick);
        if (r == -ECANCELED) {
            printf("Worker %s: cleaning up\n", name);
            return r;
        }
        if (r < 0)
            return r;
    }
}

static int start_background_tasks(application *app) {
    for (int i = 0; i < N_WORKERS; i++) {
        char name[8];
        snprintf(name, sizeof name, "W%d", i);
        lb_task_options opts = {.name = name};
        int r = lb_task_spawn(app->loop, worker, app, &opts, &app->tasks[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static int application_shutdown(lb_task *task, void *data) {
    (void)task;
    application *app = data;
    printf("Shutting down...\n");
    lb_future *futures[N_WORKERS];
    size_t n = 0;
    for (int i = 0; i < N_WORKERS; i++) {
        if (!app->tasks[i])
            continue;
        lb_task_cancel(app->tasks[i]);
        futures[n++] = lb_task_future(app->tasks[i]);
    }
    /* Wait for every worker, collecting outcomes instead of failing on
     * the first (asyncio's return_exceptions=True). */
    lb_future *all = NULL;
    int r = lb_gather(futures, n, LB_GATHER_RETURN_ERRORS, &all);
    if (r < 0)
        return r;
    void *value = NULL;
    r = lb_await(all, &value);
    if (r == 0) {
        const lb_gather_result *res = value;
        size_t cancelled = 0;
        for (size_t i = 0; i < res->n; i++)
            cancelled += res->items[i].status == -ECANCELED;
        printf("All tasks finished (%zu of %zu cancelled)\n", cancelled, res->n);
    }
    lb_future_unref(all);
    return r;
}

static void on_signal(lb_loop *loop, void *data) {
    printf("Got %s\n", (const char *)data);
    lb_loop_stop(loop);
}

static void send_sigterm(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    kill(getpid(), SIGTERM);
}

static int application_run(application *app, double delay) {
    int r = lb_loop_new(&app->loop, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return r;
    }
    if ((r = lb_loop_add_signal_handler(app->loop, SIGTERM, on_signal, "SIGTERM")) < 0 ||
        (r = lb_loop_add_signal_handler(app->loop, SIGINT, on_signal, "SIGINT")) < 0 ||
        (r = start_background_tasks(app)) < 0 ||
        (r = lb_loop_call_later(app->loop, delay, send_sigterm, NULL, NULL)) < 0 ||
        (r = lb_loop_run_forever(app->loop)) < 0)
        fprintf(stderr, "run: %s\n", lb_error_detail());

    /* finally: shut down even when something above failed. */
    lb_task *shut = NULL;
    int s = lb_task_spawn(app->loop, application_shutdown, app, NULL, &shut);
    if (s == 0)
        s = lb_loop_run_until_complete(app->loop, lb_task_future(shut));
    if (s == 0)
        s = lb_future_result(lb_task_future(shut), NULL);
    if (s < 0)
        fprintf(stderr, "shutdown: %s (%s)\n", lb_strerror(s), lb_error_detail());
    lb_task_unref(shut);
    for (int i = 0; i < N_WORKERS; i++)
        app->tasks[i] = lb_task_unref(app->tasks[i]);
    lb_loop_close(app->loop);
    printf("Loop closed\n");
    app->loop = lb_loop_unref(app->loop);
    return r < 0 ? r : s;
}

int main(int argc, char **argv) {
    double delay = 3.0;
    if (argc == 3 && strcmp(argv[1], "--delay") == 0)
        delay = atof(argv[2]);
    application app = {.tick = delay / 3};
    return application_run(&app, delay) < 0;
}
