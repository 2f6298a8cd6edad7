/* SPDX-License-Identifier: MIT */
/* Seed section "Creating a new event loop": make a loop, run one
 * operation on it to completion, and close it whatever happened (the
 * seed's try/finally is the cleanup label). There is no set_event_loop:
 * a loop is the thread's current loop exactly while it runs. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>

static int my_coro(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_task_return("result", NULL);
}

int main(void) {
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    printf("New loop on the %s driver; current loop before running: %s\n",
           lb_loop_driver_name(loop), lb_loop_get_running() ? "set" : "NULL");

    lb_task *task = NULL;
    r = lb_task_spawn(loop, my_coro, NULL, NULL, &task);
    if (r < 0) {
        fprintf(stderr, "lb_task_spawn: %s\n", lb_error_detail());
        goto finally;
    }
    r = lb_loop_run_until_complete(loop, lb_task_future(task));
    if (r < 0) {
        fprintf(stderr, "lb_loop_run_until_complete: %s\n", lb_error_detail());
        goto finally;
    }
    void *result = NULL;
    r = lb_future_result(lb_task_future(task), &result);
    if (r < 0) {
        fprintf(stderr, "my_coro failed: %s\n", lb_strerror(r));
        goto finally;
    }
    printf("%s\n", (const char *)result);

finally:
    lb_task_unref(task);
    if (lb_loop_close(loop) < 0)
        fprintf(stderr, "lb_loop_close: %s\n", lb_error_detail());
    printf("Loop closed: %s\n", lb_loop_is_closed(loop) ? "yes" : "no");
    lb_loop_unref(loop);
    return r < 0;
}
