/* SPDX-License-Identifier: MIT */
/* Seed section "call_soon()": two callbacks run in the order scheduled,
 * in the loop's next iteration, after the code that scheduled them. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>

static void callback(lb_loop *loop, void *data) {
    (void)loop;
    printf("Callback: %s\n", (const char *)data);
}

static void finish(lb_loop *loop, void *data) {
    (void)data;
    printf("Done\n");
    lb_loop_stop(loop);
}

static void main_step(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_call_soon(loop, callback, "first", NULL);
    lb_loop_call_soon(loop, callback, "second", NULL);
    printf("Callbacks scheduled\n");
    /* asyncio's `await asyncio.sleep(0)`: continue after one iteration. */
    lb_loop_call_soon(loop, finish, NULL, NULL);
}

int main(void) {
    lb_loop *loop = NULL;
    if (lb_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    lb_loop_call_soon(loop, main_step, NULL, NULL);
    lb_loop_run_forever(loop);
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return 0;
}
