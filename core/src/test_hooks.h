/* SPDX-License-Identifier: MIT */
#ifndef LB_TEST_HOOKS_H
#define LB_TEST_HOOKS_H

/* Hooks the tests call (they link the core's objects; the hooks are
 * hidden like every lb__ function): they force paths that a test cannot
 * otherwise take. */

#include <stdbool.h>

/* dns.c: runs hook(data) on the worker thread right before each lookup. */
void lb__test_dns_before_lookup(void (*hook)(void *), void *data);

/* process.c: false makes every new child use the SIGCHLD watch. */
void lb__test_process_use_pidfd(bool allowed);

/* resource.c: fn(name) runs as lb_loop_close() closes each resource, in
 * order (NULL: none). */
void lb__test_on_resource_close(void (*fn)(const char *name));

#endif
