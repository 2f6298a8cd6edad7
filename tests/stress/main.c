/* SPDX-License-Identifier: MIT */
/* The stress suite's entry point. LB_STRESS_GROUPS=a,b runs only the
 * named groups (the TSan job runs the threaded ones, smaller). */
#include "stress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long stress_size(long full, long least) {
    const char *s = getenv("LB_STRESS_SCALE");
    double scale = s && *s ? atof(s) : 1.0;
    long n = (long)((double)full * scale);
    return n < least ? least : n;
}

bool stress_timing_checked(void) {
    const char *p = getenv("LD_PRELOAD");
    return !(p && strstr(p, "vgpreload"));
}

int64_t stress_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const fixture_group groups[] = {
    {"posts", run_post_stress},   {"close_race", run_close_race_stress},
    {"timers", run_timer_stress}, {"tasks", run_task_stress},
    {"fds", run_fd_stress},       {"signals", run_signal_stress},
    {"destroy_race", run_destroy_race_stress},
};

int main(void) {
    /* The watchdog: a wedged loop fails the suite. */
    return fixture_main("stress", groups, sizeof groups / sizeof groups[0], "LB_STRESS_GROUPS",
                        900);
}
