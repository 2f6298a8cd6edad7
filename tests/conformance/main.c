/* SPDX-License-Identifier: MIT */
/* The conformance suite: the public API's contract, run once per driver
 * (LB_DRIVER picks it; meson registers conformance-<driver>).
 * LB_TEST_GROUPS=a,b runs only the named groups (the TSan job runs the
 * threaded ones: ThreadSanitizer tracks at most 8,128 threads and fibers,
 * fewer than the task tests create). */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct group {
    const char *name;
    int (*run)(void);
} group;

static const group groups[] = {
    {"loop", run_loop_tests},
    {"schedule", run_schedule_tests},
    {"timers", run_timer_tests},
    {"threadsafe", run_threadsafe_tests},
    {"fd", run_fd_tests},
    {"future", run_future_tests},
    {"exception", run_exception_tests},
    {"task", run_task_tests},
    {"executor", run_executor_tests},
    {"signal", run_signal_tests},
    {"loop_thread", run_loop_thread_tests},
    {"debug", run_debug_tests},
    {"io", run_io_tests},
    {"dns", run_dns_tests},
    {"stream", run_stream_tests},
    {"server", run_server_tests},
    {"process", run_process_tests},
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
    const char *only = getenv("LB_TEST_GROUPS");
    printf("conformance suite on driver '%s'\n", driver && *driver ? driver : "native");
    fixture_register_bridges();
    /* A hung test must fail the suite, never wedge CI. */
    alarm(600);
    int failed = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (selected(only, groups[i].name))
            failed += groups[i].run();
    return failed ? 1 : 0;
}
