/* SPDX-License-Identifier: MIT */
/* Seed section "stop()": run_forever until something stops the loop
 * after a delay (3 s in the seed; --delay SECONDS changes it). */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void stop_after_delay(lb_loop *loop, void *data) {
    (void)data;
    printf("Stopping the loop...\n");
    lb_loop_stop(loop);
}

int main(int argc, char **argv) {
    double delay = 3.0;
    if (argc == 3 && strcmp(argv[1], "--delay") == 0)
        delay = atof(argv[2]);

    lb_loop *loop = NULL;
    if (lb_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    lb_loop_call_later(loop, delay, stop_after_delay, NULL, NULL);

    printf("Starting the loop...\n");
    fflush(stdout);
    lb_loop_run_forever(loop);
    printf("Loop stopped\n");

    lb_loop_close(loop);
    lb_loop_unref(loop);
    return 0;
}
