/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_EXECUTOR_H
#define LOOPBRIDGE_EXECUTOR_H

/* Thread pools for blocking work (asyncio's run_in_executor and
 * to_thread). Blocking work never runs on the loop's thread: a job runs
 * on a pool thread and its result is delivered to the loop's thread as a
 * future. */

#include <loopbridge/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_executor lb_executor;

/* A job: runs on a pool thread. Returns 0 and stores its result in *ret
 * (NULL by default), or a negative errno (a positive return fails the
 * job with -EINVAL, reported through the loop's exception handler with
 * the job's function). It must not call loop-thread
 * functions (post with lb_loop_call_soon_threadsafe() or an lb_coalesce
 * instead). A job that runs for long should check lb_job_cancelled() now
 * and then and return (-ECANCELED, say) once it is true: nothing stops a
 * running job from outside, and lb_loop_close() waits for every job
 * running on its loop's behalf. */
typedef int (*lb_work_fn)(void *data, void **ret);

/* Inside a job: true once nobody waits for the job's result any more:
 * its future was cancelled (a task awaiting it in lb_to_thread() was
 * cancelled, for instance) or its loop is closing (lb_loop_close()
 * cancels the futures of running jobs, then waits for the jobs). The job
 * should then return soon; its result is discarded (and destroyed, see
 * lb_loop_run_in_executor_full()). False outside a job. Cheap enough for
 * an inner loop (a thread-local read and a relaxed atomic load). Any
 * thread. */
LB_EXPORT bool lb_job_cancelled(void);

/* Creates a pool of `threads` threads, started lazily as work finds the
 * others busy. 0 sizes it like asyncio's default: min(32, CPUs + 4)
 * threads, for jobs that wait (on a disk, a resolver); past the CPU count
 * (at least 2), a thread starts only once the queue made no progress for
 * 10 ms while every worker was waiting (sleeping in the kernel: a lookup,
 * a read, a lock), so that a burst of short jobs is not spread over more
 * threads than CPUs. Name lookups (lb_getaddrinfo()) run on at most half of a
 * pool's threads (at least one), so lookups that hang cannot take every
 * thread. Returns 0, -EINVAL (more than 1024 threads), -ENOMEM. Any
 * thread. */
LB_EXPORT int lb_executor_new(lb_executor **ret, size_t threads);

/* Stops accepting work. wait: block until the running jobs ended and the
 * threads exited (every caller that waits, whichever thread it is on);
 * cancel_pending: jobs not started yet are withdrawn at once (their
 * futures end cancelled) instead of run. The jobs that loops of the
 * calling thread hold back (lb_loop_run_in_executor()) reach their pools
 * first. Returns 0, -EINVAL, -EDEADLK when called
 * from one of the pool's own threads with wait. Any thread but the
 * pool's. */
LB_EXPORT int lb_executor_shutdown(lb_executor *executor, bool wait, bool cancel_pending);

/* Drops the reference; the last one shuts the pool down (waiting, and
 * running what was queued). Every submitted job holds a reference until
 * its completion reached its loop, so the last one goes only once no job
 * is left and then waits for idle threads alone. Returns NULL. Any
 * thread. */
LB_EXPORT lb_executor *lb_executor_unref(lb_executor *executor);

/* Runs fn(data) on executor (NULL: the loop's default executor, made on
 * first use) and stores in *ret a future that completes on the loop's
 * thread with fn's result or error. Cancelling the future before the job
 * started removes the job from the queue at once (it no longer holds
 * the pool or the loop); once it runs, lb_job_cancelled() turns true in
 * it and its result is discarded, but it runs on until it returns, and
 * data with it: the cancelled future completes before the job is over. When the loop closes, a queued job is
 * withdrawn (fn never runs) and a running one is cancelled likewise and
 * waited for, however long it runs; either way the future is cancelled.
 * The jobs a callback (or a task's step) submits after its first reach
 * the pool when it returns, together, under one lock: a callback must not
 * block waiting for any but its first. If another thread shuts the pool
 * down before then, such a job's future fails with -EBADF (cancelled if
 * the shutdown cancelled pending jobs), and if no worker thread can start
 * then, with that error.
 * Returns 0, -EINVAL, -EBADF (closed loop, or executor shut down),
 * -ENOMEM, -EPERM (wrong thread). Loop thread only. */
LB_EXPORT int lb_loop_run_in_executor(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                      void *data, lb_future **ret);

/* lb_loop_run_in_executor() for a job whose result must be freed:
 * result_destroy (may be NULL) is called on the result of a job that
 * succeeded, on the loop's thread, when nobody takes it: the future was
 * cancelled while the job ran (the task awaiting it was cancelled, or
 * the loop closed), or else when the future, which then holds the
 * result, is freed (lb_future_set_result()'s destroy). A job that fails
 * must free what it made itself. Returns and threads as
 * lb_loop_run_in_executor(). */
LB_EXPORT int lb_loop_run_in_executor_full(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                           void *data, lb_destroy_fn result_destroy,
                                           lb_future **ret);

/* lb_loop_run_in_executor_full() for a job that owns its data: data
 * belongs to loopbridge once this is called, whatever it returns, and
 * data_destroy (may be NULL) is called on it exactly once, when the job
 * is over, whichever way it ends:
 *  - after fn returned;
 *  - instead of fn, for a job that never ran: its future cancelled while
 *    it was queued, its pool shut down cancelling pending jobs or, for a
 *    job a callback submitted after its first, shut down before the
 *    callback returned (the future then fails with -EBADF), its loop
 *    closed;
 *  - at once, on the calling thread, when this call fails (a negative
 *    return: nothing was submitted).
 * Otherwise it runs on the loop's thread, from the loop's inbox: after
 * lb_future_cancel() returned, not within it. A job cancelled while it
 * runs completes its future at once and keeps its data until fn returns.
 * At close it runs on the closing thread under the loop's inbox lock, so
 * it must not wait for a thread that posts to that loop. Returns and
 * threads as lb_loop_run_in_executor(). */
LB_EXPORT int lb_loop_run_in_executor_owned(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                            void *data, lb_destroy_fn data_destroy,
                                            lb_destroy_fn result_destroy, lb_future **ret);

/* Replaces the loop's default executor (the loop takes a reference; NULL
 * returns to making one on demand). The previous one stops taking work;
 * its running and queued jobs finish and deliver their results as usual,
 * and it is freed after the last of them, without the loop's thread ever
 * waiting for it. Returns 0, -EINVAL, -EBADF, -EPERM (wrong thread).
 * Loop thread. */
LB_EXPORT int lb_loop_set_default_executor(lb_loop *loop, lb_executor *executor);

/* Inside a task: runs fn(data) on the loop's default executor and awaits
 * it (asyncio.to_thread). Returns fn's status, -ECANCELED if the task was
 * cancelled meanwhile, -EPERM outside a task. value may be NULL.
 * Cancelled, it returns at once, while a job that had started goes on
 * until it returns (it sees lb_job_cancelled()): data must stay valid
 * until the job is over, not only until this returns, so it must not
 * live in the task's frame if the task can be cancelled; hand it over
 * with lb_to_thread_owned() instead. */
LB_EXPORT int lb_to_thread(lb_work_fn fn, void *data, void **value);

/* lb_to_thread() for a job whose result must be freed: on success the
 * result is stored in *value and belongs to the caller (value NULL: it is
 * destroyed at once); whenever the task does not take it (cancelled
 * meanwhile, or the loop closing), result_destroy (may be NULL) is called
 * on it, on the loop's thread, once the job is over. */
LB_EXPORT int lb_to_thread_full(lb_work_fn fn, void *data, lb_destroy_fn result_destroy,
                                void **value);

/* lb_to_thread_full() for a job that owns its data: data_destroy (may be
 * NULL) is called on data exactly once, as lb_loop_run_in_executor_owned()
 * does: when the job is over, also when the task is cancelled before or
 * while the job runs, and at once when this fails before submitting the
 * job (-EPERM outside a task, or a refused submission). The way to hand
 * data from a task that may be cancelled to a job. */
LB_EXPORT int lb_to_thread_owned(lb_work_fn fn, void *data, lb_destroy_fn data_destroy,
                                 lb_destroy_fn result_destroy, void **value);

#ifdef __cplusplus
}
#endif

#endif
