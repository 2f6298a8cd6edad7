/* SPDX-License-Identifier: MIT */
/* A loop on a thread of its own. Start and submit hand requests over with
 * a mutex and a condition variable; everything else goes through the
 * loop's inbox. */
#include <loopbridge/loop_thread.h>

#include "alloc.h"
#include "error.h"
#include "loop_internal.h"

#include <pthread.h>
#include <stdio.h>

struct lb_loop_thread {
    pthread_t tid;
    const void *loop_thread_id;
    lb_loop *loop;
    const lb_driver *driver;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;
    int start_error;
};

static void *thread_main(void *arg) {
    lb_loop_thread *lt = arg;
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, lt->driver);
    pthread_mutex_lock(&lt->lock);
    lt->loop = loop;
    lt->start_error = r;
    lt->loop_thread_id = lb__thread_self();
    lt->started = true;
    pthread_cond_broadcast(&lt->cond);
    pthread_mutex_unlock(&lt->lock);
    if (r < 0)
        return NULL;
    lb_loop_run_forever(loop);
    /* The loop may have stopped itself (lb_loop_stop from one of its
     * callbacks): closed, it turns away later calls and submissions with
     * -EBADF; the reference goes only in lb_loop_thread_stop, so that
     * those calls never touch freed memory. */
    lb_loop_close(loop);
    return NULL;
}

int lb_loop_thread_start(lb_loop_thread **ret, const lb_driver *driver) {
    lb_assert_return(ret, -EINVAL);
    lb_loop_thread *lt = lb__calloc(1, sizeof *lt);
    if (!lt)
        return lb__fail(NULL, -ENOMEM, "lb_loop_thread_start: out of memory");
    lt->driver = driver;
    pthread_mutex_init(&lt->lock, NULL);
    pthread_cond_init(&lt->cond, NULL);
    int r = pthread_create(&lt->tid, NULL, thread_main, lt);
    if (r != 0) {
        pthread_cond_destroy(&lt->cond);
        pthread_mutex_destroy(&lt->lock);
        lb__free(lt);
        return lb__fail(NULL, -r, "lb_loop_thread_start: pthread_create: %s", lb_strerror(r));
    }
    pthread_mutex_lock(&lt->lock);
    while (!lt->started)
        pthread_cond_wait(&lt->cond, &lt->lock);
    pthread_mutex_unlock(&lt->lock);
    if (lt->start_error < 0) {
        r = lt->start_error;
        pthread_join(lt->tid, NULL);
        pthread_cond_destroy(&lt->cond);
        pthread_mutex_destroy(&lt->lock);
        lb__free(lt);
        return r;
    }
    *ret = lt;
    return 0;
}

lb_loop *lb_loop_thread_loop(const lb_loop_thread *thread) {
    return thread ? thread->loop : NULL;
}

int lb_loop_thread_call(lb_loop_thread *thread, lb_callback cb, void *data) {
    lb_assert_return(thread, -EINVAL);
    int r = lb_loop_call_soon_threadsafe(thread->loop, cb, data);
    if (r == -EBADF)
        return lb__fail(thread->loop, r, "lb_loop_thread_call: the loop thread is stopped");
    return r;
}

typedef struct submit_request {
    lb_task_fn fn;
    void *data;
    const lb_task_options *opts;
    lb_future *future;
    int status;
    char detail[256]; /* the loop thread's message when status < 0 */
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} submit_request;

static void finish_request(submit_request *rq, int status, const char *detail) {
    pthread_mutex_lock(&rq->lock);
    rq->status = status;
    if (status < 0)
        snprintf(rq->detail, sizeof rq->detail, "%s", detail);
    rq->done = true;
    pthread_cond_signal(&rq->cond);
    pthread_mutex_unlock(&rq->lock);
}

static void spawn_requested(lb_loop *loop, void *data) {
    submit_request *rq = data;
    lb_task *t = NULL;
    int r = lb_task_spawn(loop, rq->fn, rq->data, rq->opts, &t);
    if (r == 0) {
        rq->future = lb_future_ref(lb_task_future(t));
        lb_task_unref(t);
    }
    /* lb_error_detail() is per thread: the message travels back with the
     * status. */
    finish_request(rq, r, lb_error_detail());
}

/* The loop closed between accepting the request and running it. */
static void spawn_dropped(lb_loop *loop, void *data) {
    (void)loop;
    finish_request(data, -EBADF, "lb_loop_thread_submit: the loop thread is stopped");
}

int lb_loop_thread_submit(lb_loop_thread *thread, lb_task_fn fn, void *data,
                          const lb_task_options *opts, lb_future **ret) {
    lb_assert_return(thread, -EINVAL);
    lb_assert_return(fn, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    if (lb__thread_self() == thread->loop_thread_id)
        return lb__fail(thread->loop, -EDEADLK,
                        "lb_loop_thread_submit: called on the loop thread; use lb_task_spawn");
    submit_request rq = {.fn = fn, .data = data, .opts = opts};
    pthread_mutex_init(&rq.lock, NULL);
    pthread_cond_init(&rq.cond, NULL);
    int r = lb__post_internal(thread->loop, spawn_requested, &rq, spawn_dropped);
    if (r == 0) {
        pthread_mutex_lock(&rq.lock);
        while (!rq.done)
            pthread_cond_wait(&rq.cond, &rq.lock);
        pthread_mutex_unlock(&rq.lock);
        r = rq.status;
        if (r < 0)
            lb__fail(NULL, r, "%s", rq.detail);
    } else {
        r = lb__fail(thread->loop, r, "lb_loop_thread_submit: %s",
                     r == -EBADF ? "the loop thread is stopped" : "out of memory");
    }
    pthread_cond_destroy(&rq.cond);
    pthread_mutex_destroy(&rq.lock);
    if (r == 0)
        *ret = rq.future;
    return r;
}

static void stop_loop(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

int lb_loop_thread_stop(lb_loop_thread *thread) {
    lb_assert_return(thread, -EINVAL);
    if (lb__thread_self() == thread->loop_thread_id)
        return lb__fail(thread->loop, -EDEADLK, "lb_loop_thread_stop: called on the loop thread");
    /* -EBADF: the loop stopped on its own already; join all the same. */
    int r = lb_loop_call_soon_threadsafe(thread->loop, stop_loop, NULL);
    if (r < 0 && r != -EBADF)
        return r;
    pthread_join(thread->tid, NULL);
    lb_loop_unref(thread->loop);
    pthread_cond_destroy(&thread->cond);
    pthread_mutex_destroy(&thread->lock);
    lb__free(thread);
    return 0;
}
