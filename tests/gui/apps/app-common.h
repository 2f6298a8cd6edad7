/* SPDX-License-Identifier: MIT */
/* What both applications of tests/gui/apps print their events with: a
 * monotonic clock and one line at a time from any thread. */
#ifndef LB_APPS_COMMON_H
#define LB_APPS_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints one line; the jobs' threads print too, so under stdout's lock. */
static inline void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    flockfile(stdout);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    funlockfile(stdout);
    va_end(ap);
}

/* A job's report that it saw lb_job_cancelled(): how long after the
 * cancel was asked for at asked_ns (-1 ms when nobody asked: the job
 * was cancelled by other means). */
static inline void say_cancel_observed(int job, int64_t asked_ns) {
    say("job %d: cancel observed after %.1f ms", job,
        asked_ns ? (now_ns() - asked_ns) / 1e6 : -1.0);
}

#endif
