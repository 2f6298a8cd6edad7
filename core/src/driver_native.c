/* SPDX-License-Identifier: MIT */
/* The native driver: the loop owns its thread and blocks in epoll_wait
 * on its backend fd, for as long as the next deadline allows. */
#include "loop_internal.h"

static int native_attach(lb_loop *loop, void *arg, void **state) {
    (void)loop;
    (void)arg;
    *state = NULL;
    return 0;
}

static void native_detach(lb_loop *loop, void *state) {
    (void)loop;
    (void)state;
}

static int native_run(lb_loop *loop, void *state) {
    (void)state;
    /* At least one iteration: a stop requested before the run polls once
     * and runs what is ready, as asyncio does. */
    do {
        int r = lb_driver_dispatch(loop, lb_driver_prepare(loop), INT64_MAX);
        if (r < 0)
            return r;
    } while (!lb_driver_stop_requested(loop));
    return 0;
}

static const lb_driver native_driver = {
    .abi_version = LB_DRIVER_ABI_VERSION,
    .name = "native",
    .caps = 0,
    .attach = native_attach,
    .detach = native_detach,
    .run = native_run,
    .wakeup = NULL,
};

const lb_driver *lb_driver_native(void) {
    return &native_driver;
}
