/* SPDX-License-Identifier: MIT */
#ifndef LB_TEST_HOOKS_H
#define LB_TEST_HOOKS_H

/* Hooks the tests reach through the shared library (exported, but in no
 * public header): they force paths that a test cannot otherwise take. */

#include <stdbool.h>

#define LB__TEST_HOOK __attribute__((visibility("default")))

/* dns.c: runs hook(data) on the worker thread right before each lookup. */
LB__TEST_HOOK void lb__test_dns_before_lookup(void (*hook)(void *), void *data);

/* process.c: false makes every new child use the SIGCHLD watch. */
LB__TEST_HOOK void lb__test_process_use_pidfd(bool allowed);

#endif
