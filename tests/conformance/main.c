/* SPDX-License-Identifier: MIT */
/* The conformance suite: the public API's contract, run once per driver
 * (LB_DRIVER picks it; meson registers conformance-<driver>). */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    const char *driver = getenv("LB_DRIVER");
    printf("conformance suite on driver '%s'\n", driver && *driver ? driver : "native");
    /* A hung test must fail the suite, never wedge CI. */
    alarm(600);
    int failed = 0;
    failed += run_loop_tests();
    failed += run_schedule_tests();
    failed += run_timer_tests();
    failed += run_threadsafe_tests();
    failed += run_fd_tests();
    failed += run_future_tests();
    failed += run_exception_tests();
    return failed ? 1 : 0;
}
