/* SPDX-License-Identifier: MIT */
/* Seed section "Custom event loop": asyncio swaps in uvloop through an
 * event loop policy; loopbridge swaps drivers. --driver NAME asks for a
 * driver by name and falls back to the default when this program does not
 * have it (the seed's `except ImportError`); without --driver the loop
 * takes the driver named by LB_DRIVER, or the native one. The seed's
 * custom policy, which turns debug mode on in every new loop, is a
 * function that makes loops. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <string.h>

/* The "policy": every loop this program makes goes through here. */
static int new_event_loop(lb_loop **ret, const lb_driver *driver) {
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, driver);
    if (r < 0)
        return r;
    r = lb_loop_set_debug(loop, true);
    if (r < 0) {
        lb_loop_unref(loop);
        return r;
    }
    *ret = loop;
    return 0;
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    lb_loop *loop = lb_loop_get_running();
    printf("Loop driver: %s\n", lb_loop_driver_name(loop));
    printf("Debug mode: %s\n", lb_loop_get_debug(loop) ? "true" : "false");
    return 0;
}

int main(int argc, char **argv) {
    const lb_driver *driver = NULL; /* NULL: LB_DRIVER, else native */
    if (argc == 3 && strcmp(argv[1], "--driver") == 0) {
        if (lb_driver_find(argv[2], &driver) == 0)
            printf("Using the %s driver\n", argv[2]);
        else
            printf("Driver not available, using the default: %s\n", lb_error_detail());
    }

    lb_loop *loop = NULL;
    int r = new_event_loop(&loop, driver);
    if (r < 0) {
        fprintf(stderr, "new_event_loop: %s\n", lb_error_detail());
        return 1;
    }
    lb_task *task = NULL;
    r = lb_task_spawn(loop, main_task, NULL, NULL, &task);
    if (r == 0)
        r = lb_loop_run_until_complete(loop, lb_task_future(task));
    if (r == 0)
        r = lb_future_result(lb_task_future(task), NULL);
    if (r < 0)
        fprintf(stderr, "failed: %s (%s)\n", lb_strerror(r), lb_error_detail());
    lb_task_unref(task);
    lb_loop_close(loop);
    lb_loop_unref(loop);
    return r < 0;
}
