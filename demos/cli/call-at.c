/* SPDX-License-Identifier: MIT */
/* Seed section "call_at()": schedule at an absolute loop time (now +
 * 1.5 s) and print when it was due and when it ran. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>

static double scheduled;

static void timed_callback(lb_loop *loop, void *data) {
    (void)data;
    double actual = lb_loop_time(loop);
    printf("Scheduled: %.2f, ran: %.2f, on time: %s\n", scheduled, actual,
           actual >= scheduled ? "yes" : "NO (early)");
}

static void finish(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

int main(void) {
    lb_loop *loop = NULL;
    if (lb_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    double now = lb_loop_time(loop);
    scheduled = now + 1.5;
    lb_loop_call_at(loop, scheduled, timed_callback, NULL, NULL);
    lb_loop_call_later(loop, 2.0, finish, NULL, NULL);

    lb_loop_run_forever(loop);
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return 0;
}
