/* SPDX-License-Identifier: MIT */
#ifndef LB_EXECUTOR_INTERNAL_H
#define LB_EXECUTOR_INTERNAL_H

#include <loopbridge/executor.h>

/* lb_loop_run_in_executor() for a job that owns data: data_destroy(data)
 * runs on the loop's thread once the job is over, whether fn ran, the job
 * was withdrawn before it started, or its result was discarded because
 * the future was cancelled meanwhile. So data may hold what fn produces
 * and free it when nobody is left to take it. On failure the caller keeps
 * data. slow: the job may block for long (a name lookup); slow jobs take
 * at most half of the pool's threads, the others wait their turn. */
int lb__loop_run_in_executor_owned(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                   void *data, lb_destroy_fn data_destroy, bool slow,
                                   lb_future **ret);

/* The loop's default executor, made on first use; NULL with the error in
 * *error. Loop thread. */
lb_executor *lb__loop_default_executor(lb_loop *loop, int *error);

/* Called by close: the default executor's queued jobs were cancelled
 * with their futures; the pool stops and its threads are joined. */
void lb__loop_executor_close(lb_loop *loop);

#endif
