/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_LOOP_THREAD_H
#define LOOPBRIDGE_LOOP_THREAD_H

/* A loop running on a thread of its own, that other threads hand work
 * to (the seed chapter's AsyncWorker; asyncio's run_coroutine_threadsafe
 * with future.result(timeout)). Every function here may be called from
 * any thread except the loop thread itself (where noted). */

#include <loopbridge/common.h>
#include <loopbridge/task.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_loop_thread lb_loop_thread;

/* Starts a thread that makes a loop on driver (NULL: LB_DRIVER or
 * native) and runs it until lb_loop_thread_stop(). Returns once the loop
 * runs: 0, or the error lb_loop_new gave, -EAGAIN (no thread), -ENOMEM. */
LB_EXPORT int lb_loop_thread_start(lb_loop_thread **ret, const lb_driver *driver);

/* The thread's loop (no reference taken; valid until stop). Use it with
 * *_threadsafe functions only, from other threads. */
LB_EXPORT lb_loop *lb_loop_thread_loop(const lb_loop_thread *thread);

/* Runs cb(loop, data) on the loop thread. Returns 0, -EINVAL, -EBADF
 * (stopped). */
LB_EXPORT int lb_loop_thread_call(lb_loop_thread *thread, lb_callback cb, void *data);

/* Spawns fn(task, data) as a task on the loop thread and stores its
 * result future in *ret (a reference the caller drops with
 * lb_future_unref, from any thread); wait for it with lb_future_wait.
 * Returns 0, -EINVAL, -EBADF (stopped), -EDEADLK (called on the loop
 * thread: use lb_task_spawn there), or lb_task_spawn's error. */
LB_EXPORT int lb_loop_thread_submit(lb_loop_thread *thread, lb_task_fn fn, void *data,
                                    const lb_task_options *opts, lb_future **ret);

/* Stops the loop (tasks still running are cancelled and unwound by its
 * close), joins the thread and frees everything. A loop that stopped
 * itself (lb_loop_stop from one of its callbacks) is closed at once and
 * refuses calls and submissions with -EBADF; stop is still needed to
 * join the thread and free it. Returns 0, -EINVAL, -EDEADLK (called on
 * the loop thread). */
LB_EXPORT int lb_loop_thread_stop(lb_loop_thread *thread);

#ifdef __cplusplus
}
#endif

#endif
