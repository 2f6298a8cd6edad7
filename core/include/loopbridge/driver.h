/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_DRIVER_H
#define LOOPBRIDGE_DRIVER_H

/* The driver contract, for authors of drivers that connect a loop to a
 * host main loop (the GLib and Tk bridges are drivers and nothing else).
 *
 * The core owns every piece of scheduling state and one epoll instance,
 * the "backend fd", that holds every watched descriptor and the loop's
 * wakeup eventfd. A driver therefore hands its host three things only:
 *
 *   1. one fd to watch for readability: lb_driver_backend_fd();
 *   2. one deadline: lb_driver_prepare() says how long the host may sleep
 *      (0 while work is ready);
 *   3. a way to run what is due: lb_driver_dispatch(), which polls the
 *      backend fd without blocking, moves due timers and posted callbacks
 *      to the ready queue and runs the ready callbacks within a time
 *      budget.
 *
 * Cross-thread wakeups need nothing from the driver: the core writes its
 * eventfd, which makes the backend fd readable, which wakes any host that
 * polls it. A driver may offer a faster wakeup through its wakeup entry,
 * and with LB_DRIVER_CAP_WAKEUP own it: the core then skips the eventfd.
 *
 * All of these run on the loop's thread, except the wakeup entry. */

#include <loopbridge/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LB_DRIVER_ABI_VERSION 1u

/* Capabilities a driver declares. */
enum {
    /* The driver runs inside a host loop that other code also drives
     * (GLib, Tcl): dispatch must leave room for the host's own work. */
    LB_DRIVER_CAP_HOSTED = 1u << 0,
    /* The host loop may be re-entered from a callback (nested main loops);
     * the driver then dispatches recursively. */
    LB_DRIVER_CAP_NESTED = 1u << 1,
    /* The driver's wakeup entry alone wakes its host, so a post from
     * another thread calls it without writing the core's eventfd (a host
     * that polls the backend fd from a thread of its own, as Tcl 8.6's
     * notifier does, would otherwise be woken twice, the slower way
     * too). The core still writes the eventfd while it blocks on the
     * backend fd itself (lb_driver_dispatch() with a poll timeout, as
     * lb_loop_close() does while executor jobs report back) and for
     * lb_loop_wakeup(). Requires the wakeup entry. */
    LB_DRIVER_CAP_WAKEUP = 1u << 2,
};

struct lb_driver {
    uint32_t abi_version; /* Required: LB_DRIVER_ABI_VERSION */
    const char *name;     /* Required: short name, as LB_DRIVER spells it */
    uint32_t caps;        /* Required: LB_DRIVER_CAP_* mask (0 for none) */

    /* Required. Called by lb_loop_new_full() once the core is set up;
     * arg is its driver_arg. Stores the driver's per-loop state in *state.
     * Returns 0 or a negative errno (the loop is then not created). */
    int (*attach)(lb_loop *loop, void *arg, void **state);

    /* Required. Called by lb_loop_close() after everything else was
     * released; frees the driver's state. Must not fail. */
    void (*detach)(lb_loop *loop, void *state);

    /* Required. Drives the host loop until lb_driver_stop_requested()
     * becomes true, dispatching the core whenever it is ready. Returns 0
     * or a negative errno. */
    int (*run)(lb_loop *loop, void *state);

    /* Optional (required with LB_DRIVER_CAP_WAKEUP). Called from any
     * thread, after the core wrote its eventfd (or instead, with
     * LB_DRIVER_CAP_WAKEUP), when work was posted to a loop whose host
     * may be asleep: a host that can be woken more directly than through
     * the backend fd does it here. Called with no lock held; the core
     * guarantees the driver state is not detached meanwhile. */
    void (*wakeup)(lb_loop *loop, void *state);
};

/* The built-in driver: blocks in epoll_wait on the backend fd. */
LB_EXPORT const lb_driver *lb_driver_native(void);

/* Makes a driver findable by name for lb_loop_new(NULL) / LB_DRIVER.
 * Bridges register theirs when their library is loaded. Returns 0,
 * -EINVAL (table fails validation), -EEXIST (another driver has the
 * name), -ENOSPC (the registry holds 16 drivers). Any thread. */
LB_EXPORT int lb_driver_register(const lb_driver *driver);

/* Finds a registered driver by name. Returns 0, -EINVAL, -ENOENT. */
LB_EXPORT int lb_driver_find(const char *name, const lb_driver **ret);

/* The descriptor the host must watch for readability. Returns the fd,
 * or -EINVAL / -EBADF. Stable for the life of the loop. */
LB_EXPORT int lb_driver_backend_fd(const lb_loop *loop);

/* Whether the host must watch the backend fd now: true while the loop
 * watches an fd or a signal (the signal pipe is an fd watch), and always
 * for a driver without LB_DRIVER_CAP_WAKEUP, whose wakeups go through the
 * backend's eventfd. A driver that owns the wakeup may stop watching the
 * backend fd while this is false (with Tcl 8.6's threaded notifier, each
 * wait of a thread that has a file handler is two writes to the notifier
 * thread's pipe and two wakeups of that thread); it must ask again before
 * each wait, since callbacks add and remove watches. False for NULL or a
 * closed loop. On the loop's thread. */
LB_EXPORT bool lb_driver_backend_needed(const lb_loop *loop);

/* Asks the core how long the host may sleep: 0 when work is ready (or a
 * stop is pending), the nanoseconds until the next timer, or -1 for no
 * limit. Arms the cross-thread wakeup, so call it right before the host
 * blocks. */
LB_EXPORT int64_t lb_driver_prepare(lb_loop *loop);

/* A deadline this near (in ns) is best waited for by polling without a
 * timeout rather than by sleeping: it is the kernel's default timer
 * slack, by which a sleep this short may last longer anyway, and on a
 * virtual machine a wakeup is now and then milliseconds late. The native
 * driver and the Tk bridge poll below it (docs/performance.md, W3). */
#define LB_DRIVER_POLL_BELOW_NS (50 * 1000)

/* Runs one iteration of the loop: polls the backend fd with
 * poll_timeout_ns (0 for a hosted driver, whose host already waited;
 * -1 blocks until something happens), moves due timers and posted
 * callbacks to the ready queue and runs the callbacks that were ready at
 * its start, stopping early once budget_ns elapsed (INT64_MAX: no
 * budget; what is left runs first next time). Safe to call recursively
 * from a callback (nested main loops).
 * Returns 1 if work is still ready, 0 if not, or a negative errno. */
LB_EXPORT int lb_driver_dispatch(lb_loop *loop, int64_t poll_timeout_ns, int64_t budget_ns);

/* True once lb_loop_stop() asked the loop to stop while a run entry
 * (lb_loop_run_*) runs it; run entries return then. A stop asked while
 * the host drives the loop outside lb_loop_run_* waits for the next run
 * and reads false here (and does not make lb_driver_prepare() return 0). */
LB_EXPORT bool lb_driver_stop_requested(const lb_loop *loop);

/* For bridge authors: the checks of every loop-thread entry point, so
 * that a bridge's own entry points follow the core's thread rule (see
 * docs/design.md). Returns 0 if loop is open and the calling thread is
 * its home thread; -EINVAL (NULL), -EBADF (closed) or -EPERM (another
 * thread) with a message naming func, the bridge's public function. Any
 * thread. */
LB_EXPORT int lb_driver_check_loop(const lb_loop *loop, const char *func);

/* For driver and bridge authors: records the message (printf-style) as
 * the calling thread's lb_error_detail() and returns error (a negative
 * errno), so that a failing path reads
 * `return lb_driver_fail(-EMFILE, "no descriptor below %d is free", 1024);`.
 * Any thread. */
LB_EXPORT int lb_driver_fail(int error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The driver state stored by attach, for driver helpers that only get the
 * loop. */
LB_EXPORT void *lb_driver_state(const lb_loop *loop);

/* The driver table the loop runs on (NULL for NULL): a bridge compares it
 * with its own before it trusts lb_driver_state(). Any thread. */
LB_EXPORT const lb_driver *lb_loop_driver(const lb_loop *loop);

/* Something a loop owns and must release when it closes (a stream, a
 * process, a GIO operation, an executor job): embedded in the object,
 * registered on the loop when the object is made and removed when it is
 * freed. lb_loop_close() cancels the loop's tasks and lets them unwind,
 * then calls each registered resource's close, newest first, then drops
 * its queues. The fields are the loop's; zero them before
 * lb_driver_resource_add(). */
typedef struct lb_resource lb_resource;

typedef struct lb_resource_ops {
    /* Required. A name for logs and tests ("stream", "process"). */
    const char *name;
    /* Required. Called once, by lb_loop_close() on the loop's thread,
     * with the resource already removed from the loop: releases the
     * loop's hold on the object and completes or cancels what waits on
     * it, without running the loop. The user may still hold the object:
     * it then stays allocated, closed (its calls fail with -EBADF), until
     * the user lets go of it. */
    void (*close)(lb_resource *resource);
} lb_resource_ops;

struct lb_resource {
    lb_resource *next;
    lb_resource **pprev; /* NULL while not registered */
    const lb_resource_ops *ops;
};

/* Registers resource (embedded in an object of the caller) on loop with
 * ops. Returns 0, -EINVAL (NULL argument, ops without close, resource
 * already registered), -EBADF (the loop is closed), -EPERM
 * (wrong thread). Loop thread. */
LB_EXPORT int lb_driver_resource_add(lb_loop *loop, lb_resource *resource,
                                     const lb_resource_ops *ops);

/* Removes resource from its loop (a no-op when it is not registered, as
 * after lb_loop_close() closed it). Call it when the object is freed.
 * NULL is a no-op. Loop thread, or any thread once the loop is closed. */
LB_EXPORT void lb_driver_resource_remove(lb_resource *resource);

#ifdef __cplusplus
}
#endif

#endif
