/* SPDX-License-Identifier: MIT */
/* The stress suite's entry point. LB_STRESS_GROUPS=a,b runs only the
 * named groups (the TSan job runs the threaded ones, smaller). */
#include "stress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

typedef struct group {
    const char *name;
    int (*run)(void);
} group;

static const group groups[] = {
    {"posts", run_post_stress},   {"close_race", run_close_race_stress},
    {"timers", run_timer_stress}, {"tasks", run_task_stress},
    {"fds", run_fd_stress},       {"signals", run_signal_stress},
};

static bool selected(const char *list, const char *name) {
    if (!list || !*list)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

int main(void) {
    const char *driver = getenv("LB_DRIVER");
    const char *only = getenv("LB_STRESS_GROUPS");
    printf("stress suite on driver '%s'\n", driver && *driver ? driver : "native");
    fixture_register_bridges();
    /* A wedged loop must fail the suite, never hang CI. */
    alarm(900);
    int failed = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (selected(only, groups[i].name))
            failed += groups[i].run();
    return failed ? 1 : 0;
}
