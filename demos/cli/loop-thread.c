/* SPDX-License-Identifier: MIT */
/* Seed pattern "Event loop in a separate thread": a loop runs on a thread
 * of its own (the seed's AsyncWorker), and other threads hand it tasks
 * and block on the results with a timeout (run_coroutine_threadsafe and
 * future.result(timeout)). Here the main thread and two more threads
 * submit work; a last submission is too slow for its timeout, and
 * stopping the loop thread cancels it. --scale S multiplies the 1 s
 * sleep of each task. */
#include <loopbridge/loopbridge.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0;

static int async_task(lb_task *task, void *data) {
    (void)task;
    intptr_t x = (intptr_t)data;
    int r = lb_sleep(1.0 * scale);
    if (r < 0)
        return r;
    return lb_task_return((void *)(x * 2), NULL);
}

static int driver_name(lb_task *task, void *data) {
    (void)task;
    (void)data;
    /* A static string; the caller only reads it. */
    return lb_task_return((void *)lb_loop_driver_name(lb_loop_get_running()), NULL);
}

static int too_slow(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(3600);
    printf("Slow task: %s\n", lb_strerror(r));
    return r;
}

/* Submits async_task(x) and waits up to 5 s for its result. */
static int submit_and_wait(lb_loop_thread *worker, intptr_t x, intptr_t *ret) {
    lb_future *future = NULL;
    int r = lb_loop_thread_submit(worker, async_task, (void *)x, NULL, &future);
    if (r < 0)
        return r;
    void *value = NULL;
    r = lb_future_wait(future, 5.0, &value);
    lb_future_unref(future);
    if (r == 0)
        *ret = (intptr_t)value;
    return r;
}

typedef struct client {
    lb_loop_thread *worker;
    intptr_t x, result;
    int status;
} client;

static void *client_thread(void *data) {
    client *c = data;
    c->status = submit_and_wait(c->worker, c->x, &c->result);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        scale = atof(argv[2]);

    lb_loop_thread *worker = NULL;
    int r = lb_loop_thread_start(&worker, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_loop_thread_start: %s\n", lb_error_detail());
        return 1;
    }
    /* Even a question about the loop is asked on the loop's thread. */
    lb_future *name = NULL;
    void *value = NULL;
    r = lb_loop_thread_submit(worker, driver_name, NULL, NULL, &name);
    if (r == 0)
        r = lb_future_wait(name, 5.0, &value);
    name = lb_future_unref(name);
    if (r < 0) {
        fprintf(stderr, "driver_name: %s (%s)\n", lb_strerror(r), lb_error_detail());
        lb_loop_thread_stop(worker);
        return 1;
    }
    printf("Loop thread started (%s driver)\n", (const char *)value);

    client clients[2] = {{.worker = worker, .x = 5}, {.worker = worker, .x = 100}};
    pthread_t threads[2];
    int started = 0;
    for (; started < 2; started++)
        if (pthread_create(&threads[started], NULL, client_thread, &clients[started]) != 0)
            break;

    intptr_t result = 0;
    r = submit_and_wait(worker, 21, &result);
    if (r < 0)
        fprintf(stderr, "main thread: %s (%s)\n", lb_strerror(r), lb_error_detail());
    else
        printf("Result: %ld\n", (long)result);

    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        if (clients[i].status < 0) {
            fprintf(stderr, "client %d: %s\n", i, lb_strerror(clients[i].status));
            r = clients[i].status;
        } else {
            printf("Client %d: %ld * 2 = %ld\n", i, (long)clients[i].x, (long)clients[i].result);
        }
    }
    if (started < 2) {
        fprintf(stderr, "pthread_create failed\n");
        r = -EAGAIN;
    }

    lb_future *slow = NULL;
    int s = lb_loop_thread_submit(worker, too_slow, NULL, NULL, &slow);
    if (s == 0) {
        s = lb_future_wait(slow, 0.05, NULL);
        printf("Waiting 0.05 s for the slow task: %s\n", lb_strerror(s));
        slow = lb_future_unref(slow);
    } else {
        fprintf(stderr, "lb_loop_thread_submit: %s\n", lb_error_detail());
        r = s;
    }

    /* Stop cancels what still runs and joins the thread (the seed's
     * call_soon_threadsafe(loop.stop) + join). */
    s = lb_loop_thread_stop(worker);
    if (s < 0) {
        fprintf(stderr, "lb_loop_thread_stop: %s\n", lb_error_detail());
        r = s;
    }
    printf("Loop thread stopped\n");
    return r < 0;
}
