/* SPDX-License-Identifier: MIT */
/* lb_run: a loop for the duration of one main task. */
#include "error.h"
#include "future_internal.h"

#include <loopbridge/task.h>

int lb_run(lb_task_fn main_fn, void *data, void **result) {
    lb_assert_return(main_fn, -EINVAL);
    if (lb_loop_get_running())
        return lb__fail(NULL, -EBUSY, "lb_run: cannot be called while a loop runs on this thread");
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, NULL);
    if (r < 0)
        return r;
    lb_task *main_task = NULL;
    lb_task_options opts = {.name = "main"};
    r = lb_task_spawn(loop, main_fn, data, &opts, &main_task);
    if (r == 0) {
        lb_future *f = lb_task_future(main_task);
        r = lb_loop_run_until_complete(loop, f);
        if (r == 0) {
            /* Ownership of the value passes to the caller. */
            r = result ? lb__future_take_result(f, result) : lb_future_result(f, NULL);
        }
        lb_task_unref(main_task);
    }
    /* Close cancels the tasks still alive, lets them unwind, and shuts
     * the default executor down. */
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return r;
}
