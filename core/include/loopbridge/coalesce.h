/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_COALESCE_H
#define LOOPBRIDGE_COALESCE_H

/* lb_coalesce: a cross-thread post in which a later value replaces one
 * still queued, for progress and state updates from worker threads
 * ("only the latest update per row"). However fast a thread posts, the
 * loop runs at most one callback per iteration for it, with the latest
 * value. Every value posted is either delivered to the callback or
 * passed to the destroy function, exactly once: when a later one
 * replaced it, when the coalescer is freed with it queued, when its loop
 * closes with it queued, or when the post fails. */

#include <loopbridge/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_coalesce lb_coalesce;

/* Receives the latest value on the loop's thread; value belongs to the
 * callback from then on (destroy is not called on it). */
typedef void (*lb_coalesce_fn)(lb_loop *loop, void *value, void *data);

/* Makes a coalescer delivering to cb(loop, value, data) on loop's thread.
 * destroy (may be NULL) frees a value that is never delivered; it runs on
 * whichever thread dropped the value (a poster that replaced it, the
 * loop's thread, the thread that freed the coalescer), so it must be
 * callable from any thread and must not wait for the loop. The
 * coalescer holds a reference to loop. Returns 0; -EINVAL; -EBADF
 * (closed loop); -ENOMEM; -EPERM (wrong thread). Loop thread. */
LB_EXPORT int lb_coalesce_new(lb_loop *loop, lb_coalesce_fn cb, void *data,
                              lb_destroy_fn destroy, lb_coalesce **ret);

/* Queues value (any pointer, NULL included) for the callback, replacing
 * (and destroying) a value still queued; posts to the loop only when no
 * delivery is pending already. Returns 0 (value will be delivered,
 * replaced or destroyed); -EINVAL (coalesce NULL: value is not touched);
 * -EBADF (the loop is closed) or -ENOMEM, value having been destroyed.
 * Any thread, until lb_coalesce_free() was called. */
LB_EXPORT int lb_coalesce_post(lb_coalesce *coalesce, void *value);

/* The longest interval lb_coalesce_set_interval() takes, in seconds. */
#define LB_COALESCE_MAX_INTERVAL 3600

/* Paces the deliveries: at least seconds apart (0, the default: each as
 * soon as the loop can). A value posted sooner after the last delivery
 * waits on a loop timer, replaced by any later post, and the latest is
 * delivered when the interval has passed; every value is still delivered
 * or destroyed exactly once. For progress shown on screen, 1/60 s keeps
 * a worker that posts thousands of times a second from waking the loop
 * more often than the screen can show. Returns 0; -EINVAL (coalesce NULL,
 * seconds negative, NaN or above LB_COALESCE_MAX_INTERVAL); -EBADF
 * (closed loop); -EPERM (wrong thread). Loop thread. */
LB_EXPORT int lb_coalesce_set_interval(lb_coalesce *coalesce, double seconds);

/* Frees the coalescer: a value still queued is destroyed, never
 * delivered. Called on the loop's thread, the callback never runs after
 * it returned (elsewhere, one already running may finish). No thread may
 * post to it once this was called. NULL is a no-op. Returns NULL. Any
 * thread. */
LB_EXPORT lb_coalesce *lb_coalesce_free(lb_coalesce *coalesce);

#ifdef __cplusplus
}
#endif

#endif
