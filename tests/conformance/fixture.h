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
 * on the driver LB_DRIVER names. Returns the exit status. */
int fixture_main(const char *suite, const fixture_group *groups, size_t n,
                 const char *groups_env, unsigned watchdog_s);

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
int run_executor_tests(void);
int run_signal_tests(void);
int run_loop_thread_tests(void);
int run_debug_tests(void);
int run_misuse_tests(void);

#endif
