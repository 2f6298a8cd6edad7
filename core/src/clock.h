/* SPDX-License-Identifier: MIT */
#ifndef LB_CLOCK_H
#define LB_CLOCK_H

#include <stdint.h>
#include <time.h>

/* The loop's clock: CLOCK_MONOTONIC in nanoseconds (a vDSO call, no
 * syscall). */
static inline int64_t lb__clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
