/* SPDX-License-Identifier: MIT */
/* Seed section "is_running() and is_closed()": the two states before,
 * during and after a run, and after close. Also what the states mean for
 * callers: a running loop refuses to be run again, a closed one refuses
 * everything. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>

static void report(const char *when, const lb_loop *loop) {
    printf("%s: running: %s, closed: %s\n", when, lb_loop_is_running(loop) ? "yes" : "no",
           lb_loop_is_closed(loop) ? "yes" : "no");
}

static void check_loop_state(lb_loop *loop, void *data) {
    (void)data;
    report("Inside a callback", loop);
    int r = lb_loop_run_forever(loop);
    printf("Running it again: %s\n", lb_strerror(r));
    lb_loop_stop(loop);
}

int main(void) {
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    report("Before run", loop);
    r = lb_loop_call_soon(loop, check_loop_state, NULL, NULL);
    if (r == 0)
        r = lb_loop_run_forever(loop);
    if (r < 0) {
        fprintf(stderr, "failed: %s\n", lb_error_detail());
        lb_loop_unref(loop);
        return 1;
    }
    report("After run", loop);

    r = lb_loop_close(loop);
    if (r < 0) {
        fprintf(stderr, "lb_loop_close: %s\n", lb_error_detail());
        lb_loop_unref(loop);
        return 1;
    }
    report("After close", loop);
    r = lb_loop_call_soon(loop, check_loop_state, NULL, NULL);
    printf("Scheduling on it: %s\n", lb_strerror(r));

    lb_loop_unref(loop);
    return 0;
}
