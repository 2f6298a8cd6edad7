/* SPDX-License-Identifier: MIT */
/* Seed section "run_until_complete()": run the loop until an operation
 * finishes, then read its result. The operation here is a future that a
 * timer resolves after 1 s of loop time (asyncio.sleep(1) then return
 * "data"). */
#include <loopbridge/loopbridge.h>

#include <stdio.h>

static void fetch_data_done(lb_loop *loop, void *data) {
    (void)loop;
    lb_future_set_result(data, "data", NULL);
}

int main(void) {
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_new: %s\n", lb_error_detail());
        return 1;
    }
    lb_future *fetch = NULL;
    lb_future_new(loop, &fetch);
    lb_loop_call_later(loop, 1.0, fetch_data_done, fetch, NULL);

    r = lb_loop_run_until_complete(loop, fetch);
    void *result = NULL;
    if (r == 0 && lb_future_result(fetch, &result) == 0)
        printf("Result: %s\n", (const char *)result);
    else
        fprintf(stderr, "failed: %s\n", lb_error_detail());

    lb_future_unref(fetch);
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return r < 0;
}
