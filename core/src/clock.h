/* SPDX-License-Identifier: MIT */
#ifndef LB_CLOCK_H
#define LB_CLOCK_H

#include <stdint.h>
#include <time.h>

#ifdef LB_TEST_CLOCK
/* Test hook: a copy of the core compiled with LB_TEST_CLOCK (the fuzzer
 * in tests/fuzz builds one) reads its time from this variable, which the
 * test defines and advances, so timers can be checked to the nanosecond
 * without waiting. The library itself is never built this way: its
 * clock stays one vDSO call, with no branch and no indirection. */
extern int64_t lb__test_clock_now_ns;

static inline int64_t lb__clock_ns(void) {
    return lb__test_clock_now_ns;
}
#else
/* The loop's clock: CLOCK_MONOTONIC in nanoseconds (a vDSO call, no
 * syscall, but it costs as much as a few callbacks: docs/performance.md,
 * "Figures behind the code"). */
static inline int64_t lb__clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif

/* The same clock as of the last timer tick (a fraction of the precise
 * clock's cost, a few milliseconds of resolution; never ahead of
 * lb__clock_ns()). The loop reads it once per iteration to learn whether
 * anything time-bound can be due, and reads the precise clock only when
 * something may be. */
static inline int64_t lb__clock_coarse_ns(void) {
#if defined(LB_TEST_CLOCK)
    return lb__test_clock_now_ns; /* the test clock is exact */
#elif defined(CLOCK_MONOTONIC_COARSE)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#else
    return lb__clock_ns();
#endif
}

/* The absolute time ns (>= 0) from now on CLOCK_MONOTONIC, for a
 * condition variable on that clock to wait until. Always the system's
 * clock, in an LB_TEST_CLOCK build too: a thread waits in real time. */
static inline struct timespec lb__monotonic_deadline(int64_t ns) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec += (long)(ns % 1000000000);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* How far lb__clock_coarse_ns() may lag lb__clock_ns(): twice its
 * resolution. Computed once per process. */
int64_t lb__clock_coarse_lag_ns(void);

#endif
