/* SPDX-License-Identifier: MIT */
/* Seed section "run_in_executor()": blocking work runs on a thread pool
 * while the loop goes on; the task awaits its future. First on the loop's
 * default pool, then on a pool of our own, then with lb_to_thread (the
 * shorter form, asyncio.to_thread). There is no process pool: CPU-bound
 * work goes to threads too, which in C run in parallel. --scale S
 * multiplies the 1 s blocking call. */
#include <loopbridge/loopbridge.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double nap = 1.0;

/* A blocking I/O operation. */
static int blocking_io(void *data, void **ret) {
    (void)data;
    struct timespec ts = {(time_t)nap, (long)((nap - (double)(time_t)nap) * 1e9)};
    nanosleep(&ts, NULL);
    *ret = "I/O done";
    return 0;
}

typedef struct sum_of_squares {
    uint64_t n;
    uint64_t result;
} sum_of_squares;

/* A CPU-bound operation; its result goes into its argument. */
static int cpu_intensive(void *data, void **ret) {
    sum_of_squares *job = data;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < job->n; i++)
        sum += i * i;
    job->result = sum;
    *ret = job;
    return 0;
}

/* Runs fn on executor (NULL: the loop's default) and awaits the result. */
static int run_in(lb_executor *executor, lb_work_fn fn, void *data, void **value) {
    lb_future *f = NULL;
    int r = lb_loop_run_in_executor(lb_loop_get_running(), executor, fn, data, &f);
    if (r < 0)
        return r;
    r = lb_await(f, value);
    lb_future_unref(f);
    return r;
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    void *value = NULL;

    int r = run_in(NULL, blocking_io, NULL, &value);
    if (r < 0)
        return r;
    printf("Thread result: %s\n", (const char *)value);

    lb_executor *executor = NULL;
    r = lb_executor_new(&executor, 4);
    if (r < 0)
        return r;
    r = run_in(executor, blocking_io, NULL, &value);
    lb_executor_shutdown(executor, true, false);
    lb_executor_unref(executor);
    if (r < 0)
        return r;
    printf("Custom thread result: %s\n", (const char *)value);

    sum_of_squares job = {.n = 1000000};
    r = lb_to_thread(cpu_intensive, &job, NULL);
    if (r < 0)
        return r;
    printf("to_thread result: %" PRIu64 "\n", job.result);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        nap *= atof(argv[2]);
    int r = lb_run(main_task, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return 1;
    }
    return 0;
}
