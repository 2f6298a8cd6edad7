/* SPDX-License-Identifier: MIT */
#include "error.h"

#include <loopbridge/driver.h>
#include <loopbridge/loop.h>

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char detail[256];

const char *lb_strerror(int error) {
    /* INT_MIN has no positive counterpart (negating it is undefined). */
    if (error == INT_MIN)
        return "not an error code";
    if (error < 0)
        error = -error;
    switch (error) {
    case 0:
        return "success";
    case EINVAL:
        return "invalid argument";
    case EBADF:
        return "closed, or not an open file descriptor";
    case EBUSY:
        return "busy: already running, or in use";
    case ECANCELED:
        return "cancelled";
    case ETIMEDOUT:
        return "timed out";
    case ENOMEM:
        return "out of memory";
    case EPERM:
        return "not permitted (wrong thread, or outside a task)";
    case ENOENT:
        return "not found";
    case EAGAIN:
        return "not ready yet";
    case EALREADY:
        return "already done";
    case EDEADLK:
        return "would deadlock";
    case EXDEV:
        return "object belongs to another loop";
    case EINTR:
        return "interrupted: the loop stopped first";
    default:
        return strerror(error);
    }
}

const char *lb_error_detail(void) {
    return detail;
}

int lb__fail(const lb_loop *loop, int error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (lb_loop_get_debug(loop))
        lb__log(LB_LOG_WARNING, "%s (%s)", detail, lb_strerror(error));
    return error;
}

int lb_driver_fail(int error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return error;
}

/* The handler is process-wide and read on every message; messages are
 * rare, so a mutex keeps the pair (fn, data) consistent without asking
 * more of the callers. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static lb_log_fn log_fn;
static void *log_data;

void lb_set_log_handler(lb_log_fn fn, void *data) {
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_data = data;
    pthread_mutex_unlock(&log_lock);
}

void lb__log(lb_log_level level, const char *fmt, ...) {
    static const char *const names[] = {"error", "warning", "info", "debug"};
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    lb_log_fn fn = log_fn;
    void *data = log_data;
    pthread_mutex_unlock(&log_lock);
    if (fn)
        fn(level, line, data);
    else
        fprintf(stderr, "loopbridge: %s: %s\n", names[level & 3], line);
}
