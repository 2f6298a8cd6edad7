/* SPDX-License-Identifier: MIT */
/* The README's first example: a task that sleeps without blocking the
 * loop, hands blocking work to the thread pool and awaits its result, run
 * by lb_run() (asyncio.run for C). */
#include <loopbridge/loopbridge.h>

#include <stdint.h>
#include <stdio.h>

/* Blocking work: it runs on the loop's thread pool, never on the loop. */
static int slow_square(void *data, void **ret) {
    intptr_t n = (intptr_t)data;
    *ret = (void *)(n * n);
    return 0;
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    printf("Sleeping 0.1 s; the loop goes on meanwhile\n");
    int r = lb_sleep(0.1);
    if (r < 0)
        return r;
    void *value = NULL;
    r = lb_to_thread(slow_square, (void *)12, &value); /* awaits a worker thread */
    if (r < 0)
        return r;
    printf("12 squared on a worker thread: %ld\n", (long)(intptr_t)value);
    return 0;
}

int main(void) {
    int r = lb_run(main_task, NULL, NULL); /* a loop, the task, cleanup, close */
    if (r < 0)
        fprintf(stderr, "failed: %s (%s)\n", lb_strerror(r), lb_error_detail());
    return r < 0;
}
