/* SPDX-License-Identifier: MIT */
/* Seed section "run_forever()": a periodic task runs until the user
 * presses Ctrl+C. C has no KeyboardInterrupt: without a handler SIGINT
 * kills the process, so the program watches SIGINT on the loop and stops
 * the loop from the handler, which runs as an ordinary callback. To end
 * on its own, the program sends itself SIGINT after a short delay
 * (--delay SECONDS, default 3; each tick takes a third of it). */
#include <loopbridge/loopbridge.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double period = 1.0;

static int periodic_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    for (;;) {
        printf("Working...\n");
        fflush(stdout);
        int r = lb_sleep(period);
        if (r == -ECANCELED) {
            printf("Periodic task cancelled\n");
            return r;
        }
        if (r < 0)
            return r;
    }
}

static void on_sigint(lb_loop *loop, void *data) {
    (void)data;
    printf("Interrupted by the user\n");
    lb_loop_stop(loop);
}

static void press_ctrl_c(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    kill(getpid(), SIGINT);
}

int main(int argc, char **argv) {
    double delay = 3.0;
    if (argc == 3 && strcmp(argv[1], "--delay") == 0)
        delay = atof(argv[2]);
    period = delay / 3;

    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    if ((r = lb_task_spawn(loop, periodic_task, NULL, NULL, NULL)) < 0 ||
        (r = lb_loop_add_signal_handler(loop, SIGINT, on_sigint, NULL)) < 0 ||
        (r = lb_loop_call_later(loop, delay, press_ctrl_c, NULL, NULL)) < 0) {
        fprintf(stderr, "setup failed: %s\n", lb_error_detail());
        goto finally;
    }

    r = lb_loop_run_forever(loop);
    if (r < 0)
        fprintf(stderr, "lb_loop_run_forever: %s\n", lb_error_detail());

finally:
    /* Close cancels the periodic task, which unwinds before close returns. */
    lb_loop_close(loop);
    printf("Loop closed\n");
    lb_loop_unref(loop);
    return r < 0;
}
