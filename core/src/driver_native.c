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
    return lb__dispatch_until_stopped(loop);
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
