/* SPDX-License-Identifier: MIT */
/* Seed section "call_soon_threadsafe()": a worker thread hands a callback
 * to the loop. Every other scheduling call belongs to the loop's thread
 * and refuses a foreign caller with -EPERM; the worker shows that first.
 * The main task waits for the callback itself rather than a fixed 2 s
 * (--scale S multiplies the worker's 1 s nap). */
#include <loopbridge/loopbridge.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct worker {
    lb_loop *loop;
    lb_future *done; /* resolved by the callback, on the loop's thread */
    double nap;
} worker;

static void from_thread(lb_loop *loop, void *data) {
    worker *w = data;
    (void)loop;
    printf("Callback from the thread!\n");
    lb_future_set_result(w->done, NULL, NULL);
}

static void *thread_worker(void *data) {
    worker *w = data;
    struct timespec ts = {(time_t)w->nap, (long)((w->nap - (double)(time_t)w->nap) * 1e9)};
    nanosleep(&ts, NULL);

    int r = lb_loop_call_soon(w->loop, from_thread, w, NULL);
    printf("Thread: lb_loop_call_soon refused: %s\n", lb_strerror(r));
    printf("Thread: scheduling the callback\n");
    fflush(stdout);
    r = lb_loop_call_soon_threadsafe(w->loop, from_thread, w);
    if (r < 0)
        fprintf(stderr, "lb_loop_call_soon_threadsafe: %s\n", lb_error_detail());
    return NULL;
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    worker w = {.loop = lb_loop_get_running(), .nap = *(double *)data};
    int r = lb_future_new(w.loop, &w.done);
    if (r < 0) {
        fprintf(stderr, "lb_future_new: %s\n", lb_error_detail());
        return r;
    }
    pthread_t thread;
    int e = pthread_create(&thread, NULL, thread_worker, &w);
    if (e != 0) {
        fprintf(stderr, "pthread_create: %s\n", strerror(e));
        lb_future_unref(w.done);
        return -e;
    }
    r = lb_await(w.done, NULL);
    pthread_join(thread, NULL);
    lb_future_unref(w.done);
    if (r == 0)
        printf("Worker joined\n");
    return r;
}

int main(int argc, char **argv) {
    double nap = 1.0;
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        nap *= atof(argv[2]);
    int r = lb_run(main_task, &nap, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return 1;
    }
    return 0;
}
