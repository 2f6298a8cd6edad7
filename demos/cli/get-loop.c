/* SPDX-License-Identifier: MIT */
/* Seed section "Getting the event loop": inside running code,
 * lb_loop_get_running() returns the loop that runs it (asyncio's
 * get_running_loop). Outside a running loop it returns NULL: unlike the
 * old asyncio.get_event_loop(), loopbridge never makes a loop behind the
 * caller's back. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>

static void callback(lb_loop *loop, void *data) {
    (void)data;
    printf("In a callback, lb_loop_get_running() is the same loop: %s\n",
           lb_loop_get_running() == loop ? "yes" : "NO");
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    lb_loop *loop = lb_loop_get_running();
    if (!loop) {
        fprintf(stderr, "no running loop inside the main task\n");
        return -EINVAL;
    }
    printf("Current loop: %s driver, running: %s\n", lb_loop_driver_name(loop),
           lb_loop_is_running(loop) ? "yes" : "no");

    int r = lb_loop_call_soon(loop, callback, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_call_soon: %s\n", lb_error_detail());
        return r;
    }
    return lb_sleep(0); /* one iteration: the callback runs */
}

int main(void) {
    printf("Before lb_run: running loop is %s\n", lb_loop_get_running() ? "set" : "NULL");
    int r = lb_run(main_task, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return 1;
    }
    printf("After lb_run: running loop is %s\n", lb_loop_get_running() ? "set" : "NULL");
    return 0;
}
