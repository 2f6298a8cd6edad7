/* SPDX-License-Identifier: MIT */
/* Seed section "call_later()": A is due in 2 s, B in 1 s, so B runs
 * first; the program ends at 3 s. --scale S multiplies the delays (the
 * tests run it faster). */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double started;

static void delayed_callback(lb_loop *loop, void *data) {
    printf("(after %.0f s) Callback %s ran\n", lb_loop_time(loop) - started, (const char *)data);
}

static void finish(lb_loop *loop, void *data) {
    (void)data;
    printf("Done\n");
    lb_loop_stop(loop);
}

int main(int argc, char **argv) {
    double scale = 1.0;
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        scale = atof(argv[2]);

    lb_loop *loop = NULL;
    if (lb_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    started = lb_loop_time(loop);
    lb_loop_call_later(loop, 2 * scale, delayed_callback, "A", NULL);
    lb_loop_call_later(loop, 1 * scale, delayed_callback, "B", NULL);
    printf("Callbacks scheduled\n");
    lb_loop_call_later(loop, 3 * scale, finish, NULL, NULL);

    lb_loop_run_forever(loop);
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return 0;
}
