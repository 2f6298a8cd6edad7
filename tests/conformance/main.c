/* SPDX-License-Identifier: MIT */
/* The conformance suite: the public API's contract, run on each driver
 * (LB_DRIVER picks it). LB_TEST_GROUPS=a,b runs only the named groups;
 * meson reads the table below and registers each group on each driver as
 * a test of its own, conformance-<driver>-<group>, so that a crash names
 * its group and the other groups still run (the TSan job picks the
 * threaded ones: ThreadSanitizer tracks at most 8,128 threads and fibers,
 * fewer than the task tests create). */
#include "fixture.h"

static const fixture_group groups[] = {
    {"loop", run_loop_tests},
    {"schedule", run_schedule_tests},
    {"timers", run_timer_tests},
    {"threadsafe", run_threadsafe_tests},
    {"fd", run_fd_tests},
    {"future", run_future_tests},
    {"exception", run_exception_tests},
    {"task", run_task_tests},
    {"task_shared", run_task_shared_tests},
    {"group", run_taskgroup_tests},
    {"executor", run_executor_tests},
    {"coalesce", run_coalesce_tests},
    {"signal", run_signal_tests},
    {"loop_thread", run_loop_thread_tests},
    {"debug", run_debug_tests},
    {"misuse", run_misuse_tests},
    {"io", run_io_tests},
    {"dns", run_dns_tests},
    {"stream", run_stream_tests},
    {"server", run_server_tests},
    {"process", run_process_tests},
    {"destroy", run_destroy_tests},
};

int main(void) {
    return fixture_main("conformance", groups, sizeof groups / sizeof groups[0],
                        "LB_TEST_GROUPS", 600);
}
