/* SPDX-License-Identifier: MIT */
#ifndef LB_TEST_FIXTURE_H
#define LB_TEST_FIXTURE_H

/* What every conformance test shares: the loop comes from LB_DRIVER, so
 * the same tests run once per driver; each test closes its loop and
 * checks that nothing it scheduled was lost. */

#include <loopbridge/loopbridge.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Makes sure the drivers of the bridges built are registered. */
void fixture_register_bridges(void);

/* Makes a loop on the driver named by LB_DRIVER; fails the test if it
 * cannot. */
lb_loop *fixture_loop_new(void);

/* Closes and unrefs the loop, asserting both succeed. */
void fixture_loop_free(lb_loop *loop);

/* Runs the loop until *flag becomes true, or fails the test after
 * timeout_s seconds (a generous bound: correctness never depends on it). */
void fixture_run_until(lb_loop *loop, const volatile bool *flag, double timeout_s);

/* Monotonic seconds. */
double fixture_now(void);

/* A group of tests: one concept's file. run returns its failure count. */
typedef struct fixture_group {
    const char *name;
    int (*run)(void);
} fixture_group;

/* A suite's main: registers the bridges, arms a watchdog (a hung test
 * fails the suite instead of wedging CI) and runs the groups that the
 * environment variable groups_env lists (comma-separated; all when unset)
 * on the driver LB_DRIVER names. Returns the exit status (2 when the list
 * names a group that does not exist). */
int fixture_main(const char *suite, const fixture_group *groups, size_t n,
                 const char *groups_env, unsigned watchdog_s);
/* Spawns fn(task, data) as a task on loop and returns a reference. */
lb_task *fixture_spawn(lb_loop *loop, lb_task_fn fn, void *data);

/* Runs the loop until task ended, or fails the test after timeout_s
 * seconds; drops the caller's reference and returns the task's status
 * (0, its error, or -ECANCELED). */
int fixture_finish(lb_loop *loop, lb_task *task, double timeout_s);

/* Cancels target once *waiting is true and the loop ran a few more
 * iterations, so that the task is suspended in the call under test
 * (tests set *waiting right before that call). The caller keeps the
 * struct alive until the task ended. */
typedef struct fixture_canceller {
    lb_task *target;
    const bool *waiting;
    int polls;
} fixture_canceller;

void fixture_cancel_when_waiting(lb_loop *loop, fixture_canceller *canceller);

/* The number of file descriptors open in the process, so that a test can
 * check it leaked none. */
int fixture_count_fds(void);

/* fixture_count_fds() once loop ran a timer, so that what the driver's
 * host opens on first use (Tcl's notifier pipe) is in the count. */
int fixture_fd_baseline(lb_loop *loop);

/* fixture_count_fds() once a loop was made, run and closed, for tests that
 * compare it with the count after their own loop closed (the descriptors
 * a loop opens as needed, its signal pipe, are closed with it). */
int fixture_fds_without_loop(void);

/* The process's resident memory, in KiB (-1 if /proc cannot tell). */
long fixture_resident_kb(void);

/* Whether the test runs under valgrind, which runs one thread at a time. */
bool fixture_under_valgrind(void);

/* Whether resident memory means anything here: not under memcheck or
 * AddressSanitizer, nor with frames of a fixed size (ucontext). */
bool fixture_memory_measurable(void);

/* What the loop's exception handler was given: how many reports, and the
 * last one's error and message. */
typedef struct fixture_reports {
    int count;
    int error;
    char message[256];
} fixture_reports;

/* Sets loop's exception handler to one that records into reports. */
void fixture_capture_reports(lb_loop *loop, fixture_reports *reports);

/* The groups, one per concept file. Each returns its failure count. */
int run_loop_tests(void);
int run_schedule_tests(void);
int run_timer_tests(void);
int run_threadsafe_tests(void);
int run_fd_tests(void);
int run_future_tests(void);
int run_exception_tests(void);
int run_task_tests(void);
int run_task_shared_tests(void);
int run_taskgroup_tests(void);
int run_executor_tests(void);
int run_coalesce_tests(void);
int run_signal_tests(void);
int run_loop_thread_tests(void);
int run_debug_tests(void);
int run_misuse_tests(void);
int run_io_tests(void);
int run_dns_tests(void);
int run_stream_tests(void);
int run_server_tests(void);
int run_process_tests(void);
int run_close_tests(void);
int run_destroy_tests(void);

#endif
