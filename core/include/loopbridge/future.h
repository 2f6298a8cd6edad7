/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_FUTURE_H
#define LOOPBRIDGE_FUTURE_H

/* lb_future: the eventual outcome of an operation, as asyncio.Future. It
 * ends in exactly one of three ways: a result (a void * with an optional
 * destroy function), an error (a negative errno) or cancellation. Done
 * callbacks are scheduled on the loop with call_soon, in the order they
 * were added. */

#include <loopbridge/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*lb_future_callback)(lb_future *future, void *data);

/* Creates a pending future bound to loop, with one reference for the
 * caller. Returns 0, -EINVAL, -EBADF (closed loop), -ENOMEM, -EPERM (wrong
 * thread). */
LB_EXPORT int lb_future_new(lb_loop *loop, lb_future **ret);

/* Takes a reference. Returns future. Loop thread only. */
LB_EXPORT lb_future *lb_future_ref(lb_future *future);

/* Drops a reference; returns NULL. The last one frees the future, calling
 * the result's destroy function. A future that failed and whose error was
 * never read (lb_future_result()) is reported to the exception handler
 * when it is freed. NULL is a no-op. Any thread: when the last reference
 * goes on another thread while the loop runs, the loop's thread frees
 * it. */
LB_EXPORT lb_future *lb_future_unref(lb_future *future);

/* Completes the future with value. destroy (may be NULL) is called on
 * value when the future is freed, or at once if this call fails.
 * Returns 0; -EINVAL; -EALREADY if the future is already done; -EBADF if
 * its loop is closed; -EPERM for a task's future (lb_task_future()),
 * which completes when its task ends. Loop thread only. */
LB_EXPORT int lb_future_set_result(lb_future *future, void *value, lb_destroy_fn destroy);

/* Completes the future with error (a negative errno; -ECANCELED is not an
 * error but a cancellation: use lb_future_cancel()).
 * Returns 0; -EINVAL (error >= 0 or -ECANCELED); -EALREADY; -EBADF;
 * -EPERM (a task's future). */
LB_EXPORT int lb_future_set_error(lb_future *future, int error);

/* Cancels the future if it is pending. Returns 1 if it was cancelled, 0
 * if it was already done; -EINVAL. */
LB_EXPORT int lb_future_cancel(lb_future *future);

/* lb_future_set_result() from any thread: the result is set on the
 * loop's thread, in posting order. Returns 0 when the request was
 * accepted (whether the future is still pending by then is not known:
 * a late result, or one for a task's future, is destroyed); -EINVAL;
 * -EBADF if the loop is closed (destroy has been called on value). */
LB_EXPORT int lb_future_set_result_threadsafe(lb_future *future, void *value,
                                              lb_destroy_fn destroy);

/* lb_future_set_error() from any thread; see above. */
LB_EXPORT int lb_future_set_error_threadsafe(lb_future *future, int error);

/* True once the future has a result, an error or was cancelled. Any
 * thread (a snapshot). */
LB_EXPORT bool lb_future_is_done(const lb_future *future);

/* True if the future was cancelled. */
LB_EXPORT bool lb_future_is_cancelled(const lb_future *future);

/* Reads the outcome. Returns 0 and stores the result in *value (value may
 * be NULL; the pointer stays owned by the future); -EAGAIN while pending;
 * -ECANCELED if cancelled; the error it failed with; -EINVAL for NULL.
 * Reading marks an error as retrieved. Loop thread, or any thread once
 * lb_future_wait() returned. */
LB_EXPORT int lb_future_result(lb_future *future, void **value);

/* Adds cb(future, data) to run when the future is done, scheduled with
 * call_soon in the order added (at once, i.e. in the next iteration, if it
 * is done already). Returns 0, -EINVAL, -ENOMEM, -EBADF. */
LB_EXPORT int lb_future_add_done_callback(lb_future *future, lb_future_callback cb, void *data);

/* lb_future_add_done_callback() with a destroy notify: destroy(data) runs
 * exactly once, after cb ran, or when the callback is dropped without
 * running (lb_future_remove_done_callback(), the future freed or its loop
 * closed before it ran: on the thread doing that), or at once on the
 * calling thread if the call fails. A callback added to a future that is
 * being freed (from a destroy notify of its value or of its callbacks)
 * is dropped at once: it never runs, its destroy runs. Loop thread. */
LB_EXPORT int lb_future_add_done_callback_full(lb_future *future, lb_future_callback cb,
                                               void *data, lb_destroy_fn destroy);

/* Removes every pending registration of (cb, data), running the destroy
 * notify of those added with one once all are unlinked (a destroy notify
 * may add or remove callbacks of the same future). Returns how many were
 * removed; -EINVAL. */
LB_EXPORT int lb_future_remove_done_callback(lb_future *future, lb_future_callback cb,
                                             void *data);

/* Blocks the calling thread, which must not be the thread running the
 * future's loop, until the future is done or timeout seconds passed
 * (timeout < 0 or INFINITY: no limit). The caller keeps its reference to future for
 * the whole call.
 * Returns as lb_future_result() when done (value may be NULL);
 * -ETIMEDOUT; -EDEADLK if called on the loop's own running thread (it
 * would never finish); -EINVAL. Any thread. */
LB_EXPORT int lb_future_wait(lb_future *future, double timeout, void **value);

/* The loop the future belongs to (no reference taken). */
LB_EXPORT lb_loop *lb_future_get_loop(const lb_future *future);

#ifdef __cplusplus
}
#endif

#endif
