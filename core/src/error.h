/* SPDX-License-Identifier: MIT */
#ifndef LB_ERROR_H
#define LB_ERROR_H

#include <loopbridge/common.h>

/* Records a detailed message for lb_error_detail() and returns error, so
 * that a failing path reads `return lb__fail(loop, -EBUSY, "...")`. When
 * loop is non-NULL and in debug mode, the message is also logged. */
int lb__fail(const lb_loop *loop, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), cold));

/* Writes one message through the log handler. */
void lb__log(lb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sd-event style argument checks at the top of public entry points. */
#define lb_assert_return(expr, error)                                                          \
    do {                                                                                       \
        if (__builtin_expect(!(expr), 0))                                                      \
            return lb__fail(NULL, (error), "%s: check failed: %s", __func__, #expr);           \
    } while (0)

#endif
