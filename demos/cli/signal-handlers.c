/* SPDX-License-Identifier: MIT */
/* Seed section "Signal handlers": handlers run as loop callbacks, so they
 * may do anything a callback may (the process-wide signal handler only
 * wakes the loop). SIGUSR1 is acknowledged; SIGINT and SIGTERM cancel
 * every task, and the main task catches its cancellation and ends
 * cleanly. To end on its own the program sends itself SIGUSR1 and then
 * SIGTERM, as `kill -USR1 PID` and `kill PID` from a shell would.
 * --scale S multiplies the 1 s tick. */
#include <loopbridge/loopbridge.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double tick = 1.0;

static void handle_sigusr1(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    printf("Got SIGUSR1, carrying on\n");
}

static void handle_shutdown(lb_loop *loop, void *data) {
    lb_task *tasks[16];
    int n = lb_loop_all_tasks(loop, tasks, 16);
    printf("Got %s, cancelling %d task(s)\n", (const char *)data, n);
    for (int i = 0; i < n && i < 16; i++)
        lb_task_cancel(tasks[i]);
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    lb_loop *loop = lb_loop_get_running();
    int r;
    if ((r = lb_loop_add_signal_handler(loop, SIGUSR1, handle_sigusr1, NULL)) < 0 ||
        (r = lb_loop_add_signal_handler(loop, SIGINT, handle_shutdown, "SIGINT")) < 0 ||
        (r = lb_loop_add_signal_handler(loop, SIGTERM, handle_shutdown, "SIGTERM")) < 0) {
        fprintf(stderr, "lb_loop_add_signal_handler: %s\n", lb_error_detail());
        return r;
    }

    printf("Working... (Ctrl+C to quit)\n");
    for (int n = 1;; n++) {
        r = lb_sleep(tick);
        if (r == -ECANCELED) {
            printf("Task cancelled\n");
            return 0;
        }
        if (r < 0)
            return r;
        printf("Tick\n");
        fflush(stdout);
        if (n == 1)
            kill(getpid(), SIGUSR1);
        else if (n == 2)
            kill(getpid(), SIGTERM);
    }
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        tick *= atof(argv[2]);
    int r = lb_run(main_task, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return 1;
    }
    return 0;
}
