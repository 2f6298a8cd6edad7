/* SPDX-License-Identifier: MIT */
/* Seed section "Best practices": prefer lb_run (rule 1); when the loop is
 * managed by hand, make it where it is needed, not at file scope (rule
 * 2), and always clean up: cancel the tasks still pending, wait for them,
 * close (rule 3). Blocking work goes to the executor (rule 4, see
 * run-in-executor.c); other threads post with call_soon_threadsafe (rule
 * 5, see call-soon-threadsafe.c). main leaves a forgotten task behind so
 * that the cleanup has something to do. --scale S multiplies the 1 s
 * sleep. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PENDING 64

static double scale = 1.0;

static int forgotten(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(3600);
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_task_spawn(lb_loop_get_running(), forgotten, NULL, NULL, NULL);
    if (r == 0)
        r = lb_sleep(1.0 * scale); /* your async code */
    if (r < 0)
        return r;
    return lb_task_return("done", NULL);
}

/* Cancels every task of loop and runs the loop until they all ended. */
static int cancel_pending(lb_loop *loop) {
    lb_task *pending[MAX_PENDING];
    int n = lb_loop_all_tasks(loop, pending, MAX_PENDING);
    if (n <= 0)
        return n;
    if (n > MAX_PENDING)
        n = MAX_PENDING; /* lb_loop_close() cancels the rest */
    lb_future *futures[MAX_PENDING];
    for (int i = 0; i < n; i++) {
        lb_task_cancel(pending[i]);
        futures[i] = lb_task_future(pending[i]);
    }
    lb_future *all = NULL;
    int r = lb_gather(futures, (size_t)n, LB_GATHER_RETURN_ERRORS, &all);
    if (r == 0)
        r = lb_loop_run_until_complete(loop, all);
    lb_future_unref(all);
    return r < 0 ? r : n;
}

static const char *best_practice_example(void) {
    lb_loop *loop = NULL;
    if (lb_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return NULL;
    }
    const char *result = NULL;
    lb_task *task = NULL;
    int r = lb_task_spawn(loop, main_task, NULL, NULL, &task);
    if (r == 0)
        r = lb_loop_run_until_complete(loop, lb_task_future(task));
    void *value = NULL;
    if (r == 0)
        r = lb_future_result(lb_task_future(task), &value);
    if (r == 0)
        result = value; /* a string literal: it outlives the task */
    if (r < 0)
        fprintf(stderr, "main_task: %s (%s)\n", lb_strerror(r), lb_error_detail());
    task = lb_task_unref(task);

    /* finally: the cleanup runs whatever happened above. */
    r = cancel_pending(loop);
    if (r < 0)
        fprintf(stderr, "cancel_pending: %s\n", lb_error_detail());
    else
        printf("Cleanup: cancelled %d pending task(s)\n", r);
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return result;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        scale = atof(argv[2]);

    const char *result = best_practice_example();
    printf("By hand: %s\n", result ? result : "(failed)");

    /* Rule 1: the same in one call; lb_run does the cleanup itself. */
    void *value = NULL;
    int r = lb_run(main_task, NULL, &value);
    if (r < 0)
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
    else
        printf("With lb_run: %s\n", (const char *)value);
    return !result || r < 0;
}
