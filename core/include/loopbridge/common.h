/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_COMMON_H
#define LOOPBRIDGE_COMMON_H

/* Types and conventions shared by every loopbridge header.
 *
 * Conventions (see docs/design.md):
 * - Fallible functions return int: 0 (or a count) on success, a negative
 *   errno on failure. They never set errno.
 * - Out parameters come last, are named ret, and are left untouched on
 *   failure.
 * - Objects are opaque and reference counted; every *_unref() accepts NULL
 *   and returns NULL, so `x = lb_x_unref(x);` clears the pointer.
 * - A loop belongs to its home thread: the thread that made it, until a
 *   native loop that no thread runs is adopted by the thread that runs or
 *   closes it next (a hosted loop stays on its host's thread). Only
 *   functions whose name ends in _threadsafe, lb_future_wait(),
 *   lb_loop_wakeup() and the lb_loop_thread_* family may be called from
 *   other threads, whether the loop runs or idles between runs. Elsewhere
 *   a loop-thread function fails with -EPERM; a ref or unref of an object
 *   counted by its loop's home thread (task, handle, group, stream,
 *   server, process) is refused and logged until the loop's close
 *   returned, which leaks a reference rather than racing the home thread.
 *   Futures, loops and executors may be referenced from any thread (the
 *   home thread frees a future released elsewhere). */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LB_COMPILATION) || defined(LB_BRIDGE_COMPILATION)
#define LB_EXPORT __attribute__((visibility("default")))
#else
#define LB_EXPORT
#endif

typedef struct lb_loop lb_loop;
typedef struct lb_handle lb_handle;
typedef struct lb_future lb_future;
typedef struct lb_task lb_task;
typedef struct lb_driver lb_driver;

/* A callback scheduled on a loop. It runs on the loop's thread. */
typedef void (*lb_callback)(lb_loop *loop, void *data);

/* Frees a value handed to loopbridge (a future's result, for instance). */
typedef void (*lb_destroy_fn)(void *value);

/* A short English description of a loopbridge error code, which is a
 * negative errno (positive values are accepted too; INT_MIN, which is
 * neither, is "not an error code"). Never NULL; the string is static.
 * Any thread. */
LB_EXPORT const char *lb_strerror(int error);

/* The detailed message of the last loopbridge call that failed on the
 * calling thread ("loop already running", "fd 7 is not open", ...),
 * or "" when none failed yet. The string belongs to the thread and stays
 * valid until its next failing loopbridge call. Any thread. */
LB_EXPORT const char *lb_error_detail(void);

/* Severity of a message passed to the log handler. */
typedef enum lb_log_level {
    LB_LOG_ERROR = 0,
    LB_LOG_WARNING = 1,
    LB_LOG_INFO = 2,
    LB_LOG_DEBUG = 3,
} lb_log_level;

/* Receives every message loopbridge writes: debug-mode reports, unread
 * future errors, misuse details. message is one line without a newline. */
typedef void (*lb_log_fn)(lb_log_level level, const char *message, void *data);

/* Routes loopbridge's messages to fn (NULL restores the default, which
 * writes "loopbridge: LEVEL: message" to stderr). The GLib bridge installs
 * a handler that forwards to g_log. Process-wide; call it before starting
 * threads that use loopbridge. */
LB_EXPORT void lb_set_log_handler(lb_log_fn fn, void *data);

#ifdef __cplusplus
}
#endif

#endif
