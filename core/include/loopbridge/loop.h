/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_LOOP_H
#define LOOPBRIDGE_LOOP_H

/* lb_loop: the event loop. Lifecycle, callbacks, timers, file descriptor
 * watches and the exception handler. The semantics are asyncio's: a
 * callback scheduled during an iteration runs in the next one, timers due
 * at the start of an iteration run in it, and the loop does not sleep
 * while work is ready. */

#include <loopbridge/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

/* Creates a loop on the given driver and stores it in *ret with one
 * reference. driver NULL picks the driver named by the LB_DRIVER
 * environment variable ("native", "glib", "tk"), or the native epoll
 * driver when LB_DRIVER is unset or empty.
 * Returns 0; -EINVAL (ret NULL, or a driver table that fails validation);
 * -ENOENT (LB_DRIVER names a driver that is not linked into the program;
 * lb_error_detail() lists the drivers that are); -ENOMEM; -EMFILE and
 * friends when the epoll or eventfd descriptors cannot be made.
 * The caller owns the reference and drops it with lb_loop_unref(). The
 * calling thread becomes the loop's home thread (see common.h). */
LB_EXPORT int lb_loop_new(lb_loop **ret, const lb_driver *driver);

/* Like lb_loop_new(), handing driver_arg to the driver's attach entry
 * (the GLib driver takes a GMainContext, the Tk driver a Tcl_Interp). */
LB_EXPORT int lb_loop_new_full(lb_loop **ret, const lb_driver *driver, void *driver_arg);

/* Takes a reference. Returns loop. Any thread. */
LB_EXPORT lb_loop *lb_loop_ref(lb_loop *loop);

/* Drops a reference and returns NULL. The last reference closes the loop
 * if it is not closed yet and frees it; dropping the last reference of a
 * running loop, or of an open loop on a thread that may not close it, is
 * a bug that is reported and leaks the loop rather than freeing memory in
 * use. NULL is a no-op. Any thread. */
LB_EXPORT lb_loop *lb_loop_unref(lb_loop *loop);

/* Runs the loop until lb_loop_stop() is called. Makes the loop the
 * calling thread's running loop for the duration. Called on a thread
 * other than the loop's home thread, it adopts a native loop that no
 * thread runs or closes (the caller becomes its home thread); of threads
 * that start runs of one loop at once, one runs it and the others are
 * refused. Returns 0 once stopped; -EBUSY if the loop (or another loop on this
 * thread) is already running; -EBADF if it is closed; -EPERM if another
 * thread runs it or it is hosted on another thread; -EINVAL. */
LB_EXPORT int lb_loop_run_forever(lb_loop *loop);

/* Runs the loop until future is done, then returns. The future's outcome
 * is read with lb_future_result().
 * Returns 0 when the future is done; -EINTR if lb_loop_stop() stopped the
 * loop first; -EBUSY, -EBADF, -EINVAL as lb_loop_run_forever(); -EXDEV if
 * the future belongs to another loop. */
LB_EXPORT int lb_loop_run_until_complete(lb_loop *loop, lb_future *future);

/* Asks the running loop to stop after the callbacks of the current
 * iteration. When the loop is not running (including a hosted loop its
 * toolkit drives outside lb_loop_run_*), the next run stops after one
 * iteration (asyncio's behaviour); until then the request changes
 * nothing. Returns 0; -EBADF if closed; -EPERM
 * from another thread while it runs (post lb_loop_stop through
 * lb_loop_call_soon_threadsafe() instead). */
LB_EXPORT int lb_loop_stop(lb_loop *loop);

/* Closes the loop: cancels its tasks and lets them unwind (their
 * cleanup may await), then closes what it owns, newest first (streams
 * are aborted, servers closed, running children killed and reaped,
 * queued executor jobs withdrawn and running ones waited for), cancels
 * the pending futures, drops the pending callbacks, timers and posts,
 * removes every watch and releases every descriptor and byte the loop
 * holds. Objects the caller still holds are closed, not freed: their
 * calls fail with -EBADF until their last reference goes. The lb_loop object
 * itself stays valid until its last reference is dropped, and every call
 * on it then fails with -EBADF.
 * Called on a thread other than its home thread, it adopts a native loop
 * that no thread runs, as lb_loop_run_forever() does. Once it returned,
 * the loop has no home thread and what is left of it may be released on
 * any thread.
 * Returns 0; -EBUSY if it is running; -EBADF if already closed; -EPERM
 * from a thread other than the one running it (or hosting it). */
LB_EXPORT int lb_loop_close(lb_loop *loop);

/* True while lb_loop_run_* executes on the loop. Any thread (a snapshot). */
LB_EXPORT bool lb_loop_is_running(const lb_loop *loop);

/* True once lb_loop_close() ran. Any thread (a snapshot). */
LB_EXPORT bool lb_loop_is_closed(const lb_loop *loop);

/* The loop running on the calling thread, or NULL. No reference is taken. */
LB_EXPORT lb_loop *lb_loop_get_running(void);

/* The loop's clock: monotonic seconds (CLOCK_MONOTONIC), read when
 * called, as asyncio's loop.time(). lb_loop_call_at() deadlines are on
 * this clock. Returns 0.0 for NULL. Any thread. */
LB_EXPORT double lb_loop_time(const lb_loop *loop);

/* The same clock in integer nanoseconds. */
LB_EXPORT int64_t lb_loop_time_ns(const lb_loop *loop);

/* The name of the loop's driver ("native", "glib", "tk"), or NULL. */
LB_EXPORT const char *lb_loop_driver_name(const lb_loop *loop);

/* ------------------------------------------------------------------ */
/* Scheduling                                                          */
/* ------------------------------------------------------------------ */

/* Schedules cb(loop, data) to run in the loop's next iteration; callbacks
 * run in the order they were scheduled. ret NULL makes a floating handle
 * owned by the loop; otherwise *ret receives a handle reference the caller
 * must drop with lb_handle_unref() (it can cancel the call).
 * Returns 0; -EINVAL (loop or cb NULL); -EBADF closed; -ENOMEM; -EPERM
 * from a thread other than the one running the loop. */
LB_EXPORT int lb_loop_call_soon(lb_loop *loop, lb_callback cb, void *data, lb_handle **ret);

/* Schedules cb to run delay seconds from now (the loop's clock). Timers
 * with equal deadlines run in the order they were scheduled; a timer never
 * runs before its deadline. delay < 0 counts as 0; NaN is -EINVAL.
 * Errors and ownership as lb_loop_call_soon(). */
LB_EXPORT int lb_loop_call_later(lb_loop *loop, double delay, lb_callback cb, void *data,
                                 lb_handle **ret);

/* Schedules cb at the absolute loop time when (seconds, see lb_loop_time()).
 * Errors and ownership as lb_loop_call_soon(). */
LB_EXPORT int lb_loop_call_at(lb_loop *loop, double when, lb_callback cb, void *data,
                              lb_handle **ret);

/* lb_loop_call_at() in integer nanoseconds of lb_loop_time_ns(). */
LB_EXPORT int lb_loop_call_at_ns(lb_loop *loop, int64_t when_ns, lb_callback cb, void *data,
                                 lb_handle **ret);

/* Schedules cb from any thread. Each accepted callback runs exactly once
 * on the loop's thread, in the order each thread posted them; a sleeping
 * loop is woken once per batch, an awake one not at all. Callbacks still
 * queued when the loop closes are dropped without running.
 * Returns 0; -EINVAL; -EBADF if the loop is closed (the callback will
 * never run); -ENOMEM. */
LB_EXPORT int lb_loop_call_soon_threadsafe(lb_loop *loop, lb_callback cb, void *data);

/* Destroy notifies (the _full variants). Each takes destroy, called as
 * destroy(data) exactly once: after cb ran (on the loop's thread), or when
 * the call is dropped without running: at lb_handle_cancel() (on the loop's
 * thread, before it returns), when the loop closes (on the thread that
 * closes it), or when the call is refused (on the calling thread, before
 * the call returns its error; a post racing lb_loop_close() that gets
 * -EBADF included). So once a _full call is made, data belongs to
 * loopbridge whatever it returns. destroy NULL makes a _full call the same
 * as the plain one; a handle never grows for it, and a plain call costs no
 * more. */

/* lb_loop_call_soon() with a destroy notify (see above). */
LB_EXPORT int lb_loop_call_soon_full(lb_loop *loop, lb_callback cb, void *data,
                                     lb_destroy_fn destroy, lb_handle **ret);

/* lb_loop_call_later() with a destroy notify (see above). */
LB_EXPORT int lb_loop_call_later_full(lb_loop *loop, double delay, lb_callback cb, void *data,
                                      lb_destroy_fn destroy, lb_handle **ret);

/* lb_loop_call_at() with a destroy notify (see above). */
LB_EXPORT int lb_loop_call_at_full(lb_loop *loop, double when, lb_callback cb, void *data,
                                   lb_destroy_fn destroy, lb_handle **ret);

/* lb_loop_call_soon_threadsafe() with a destroy notify (see above): it
 * runs on the loop's thread after cb, on the closing thread if the loop
 * closes first, or on the calling thread if the post is refused (-EBADF,
 * -ENOMEM, -EINVAL). Any thread. A post with a destroy allocates a small
 * record (a plain post does not). */
LB_EXPORT int lb_loop_call_soon_threadsafe_full(lb_loop *loop, lb_callback cb, void *data,
                                                lb_destroy_fn destroy);

/* Wakes the loop from any thread, so that a hosted driver re-evaluates
 * what is ready. Returns 0, -EINVAL, -EBADF. */
LB_EXPORT int lb_loop_wakeup(lb_loop *loop);

/* ------------------------------------------------------------------ */
/* Handles                                                             */
/* ------------------------------------------------------------------ */

/* Cancels a scheduled callback so that it never runs; a destroy notify
 * given to a _full call runs now. Returns 1 if it was
 * cancelled, 0 if it had already run or been cancelled; -EINVAL for NULL;
 * -EPERM on a thread that does not run the handle's open loop. Loop
 * thread only. */
LB_EXPORT int lb_handle_cancel(lb_handle *handle);

/* True if the handle was cancelled. */
LB_EXPORT bool lb_handle_is_cancelled(const lb_handle *handle);

/* The absolute loop time (seconds) of a timer handle; 0.0 for others. */
LB_EXPORT double lb_handle_when(const lb_handle *handle);

/* Takes a reference. Returns handle (NULL, logged, on a thread that does
 * not run the handle's open loop). Loop thread only. */
LB_EXPORT lb_handle *lb_handle_ref(lb_handle *handle);

/* Drops a reference; returns NULL. Dropping a reference does not cancel
 * the callback. NULL is a no-op. Loop thread only (elsewhere refused and
 * logged while the loop is open). */
LB_EXPORT lb_handle *lb_handle_unref(lb_handle *handle);

/* ------------------------------------------------------------------ */
/* File descriptors                                                    */
/* ------------------------------------------------------------------ */

/* Calls cb(loop, data) whenever fd is readable (level-triggered, as
 * asyncio's add_reader), until lb_loop_remove_reader(). Adding again
 * replaces the callback. A hang-up or error on fd counts as readable.
 * Returns 0; -EBADF if fd is not an open descriptor or the loop is closed;
 * -EPERM if fd cannot be watched (a regular file is always ready);
 * -EBUSY while a task awaits fd in the same direction (loopbridge/io.h:
 * readiness goes to one consumer); -EINVAL; -ENOMEM; -EPERM from another
 * thread. */
LB_EXPORT int lb_loop_add_reader(lb_loop *loop, int fd, lb_callback cb, void *data);

/* Stops watching fd for reading. Returns 1 if a reader was removed, 0 if
 * there was none; -EINVAL, -EBADF (closed loop). Removing the watch of an
 * fd that the caller already closed is fine. */
LB_EXPORT int lb_loop_remove_reader(lb_loop *loop, int fd);

/* As lb_loop_add_reader(), for writability. */
LB_EXPORT int lb_loop_add_writer(lb_loop *loop, int fd, lb_callback cb, void *data);

/* As lb_loop_remove_reader(), for writability. */
LB_EXPORT int lb_loop_remove_writer(lb_loop *loop, int fd);

/* ------------------------------------------------------------------ */
/* Signals                                                             */
/* ------------------------------------------------------------------ */

/* Calls cb(loop, data) on the loop's thread after signum was delivered
 * to the process (several deliveries before it runs may coalesce into
 * one call). Works on every driver. Adding again replaces the callback.
 * Several loops may watch the same signal; each is called. The signal's
 * previous disposition is restored when the last loop stops watching it.
 * Returns 0; -EINVAL (signum out of range; SIGKILL / SIGSTOP, which
 * cannot be caught; SIGSEGV, SIGBUS, SIGFPE, SIGILL, which a faulting
 * instruction raises and raises again as soon as a handler returns, so a
 * callback that runs later could never handle them; SIGTRAP is accepted,
 * a trap resumes after its instruction); -EBADF (closed loop); -EBUSY (8 loops of the process
 * watch signum already); -ENOMEM; -EMFILE; -EPERM (wrong thread). Loop
 * thread only. */
LB_EXPORT int lb_loop_add_signal_handler(lb_loop *loop, int signum, lb_callback cb, void *data);

/* Stops watching signum. Returns 1 if a handler was removed, 0 if there
 * was none; -EINVAL; -EBADF. Close removes every handler of the loop. */
LB_EXPORT int lb_loop_remove_signal_handler(lb_loop *loop, int signum);

/* ------------------------------------------------------------------ */
/* Exception handler                                                   */
/* ------------------------------------------------------------------ */

/* What went wrong, handed to the exception handler. Pointers are borrowed
 * for the duration of the call; fields that do not apply are NULL / 0. */
typedef struct lb_exception_context {
    const char *message; /* one line, never NULL */
    int error;           /* negative errno, or 0 */
    lb_future *future;   /* the future concerned, if any */
    lb_handle *handle;   /* the handle concerned, if any */
    lb_task *task;       /* the task concerned, if any */
} lb_exception_context;

typedef void (*lb_exception_handler)(lb_loop *loop, const lb_exception_context *context,
                                     void *data);

/* Installs the loop's exception handler (NULL restores the default, which
 * logs through the log handler at LB_LOG_ERROR). Returns 0, -EINVAL,
 * -EBADF. Loop thread only. */
LB_EXPORT int lb_loop_set_exception_handler(lb_loop *loop, lb_exception_handler handler,
                                            void *data);

/* Passes context to the loop's exception handler. Returns 0, -EINVAL. */
LB_EXPORT int lb_loop_call_exception_handler(lb_loop *loop, const lb_exception_context *context);

/* The default handler: logs the message with its error and the objects
 * concerned. Useful from a custom handler that adds to it. */
LB_EXPORT void lb_loop_default_exception_handler(lb_loop *loop,
                                                 const lb_exception_context *context);

/* ------------------------------------------------------------------ */
/* Debug mode                                                          */
/* ------------------------------------------------------------------ */

/* Turns debug mode on or off (LB_DEBUG=1 in the environment turns it on
 * for every new loop). In debug mode failing calls log their detail.
 * Returns 0, -EINVAL, -EBADF. */
LB_EXPORT int lb_loop_set_debug(lb_loop *loop, bool enabled);

/* True if debug mode is on. */
LB_EXPORT bool lb_loop_get_debug(const lb_loop *loop);

/* In debug mode, callbacks (and task steps) that run longer than seconds
 * are reported through the log handler with their function's name and
 * duration (default 0.1 s); a task step by the task's name and function.
 * A function the dynamic symbol table cannot name is given as its module
 * and offset ("myapp+0x1a2b", for addr2line).
 * Returns 0, -EINVAL, -EBADF. */
LB_EXPORT int lb_loop_set_slow_callback_duration(lb_loop *loop, double seconds);

/* What lb_loop_get_stats() reports. */
typedef struct lb_loop_stats {
    uint64_t iterations;         /* dispatch passes so far */
    uint64_t callbacks_run;      /* callbacks, posts and task steps run */
    size_t timers_alive;         /* scheduled timers not cancelled */
    size_t tasks_alive;          /* tasks not ended */
    size_t ready;                /* callbacks waiting in the ready queue */
    double slowest_callback;     /* seconds (measured in debug mode only) */
    const char *slowest_callback_name; /* its function, or NULL */
    double loop_lag;             /* how late the last due timer ran, seconds */
    double max_loop_lag;         /* the worst so far, seconds */
} lb_loop_stats;

/* Fills *ret with the loop's counters. Returns 0, -EINVAL, -EBADF. */
LB_EXPORT int lb_loop_get_stats(const lb_loop *loop, lb_loop_stats *ret);

#ifdef __cplusplus
}
#endif

#endif
