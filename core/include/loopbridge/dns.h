/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_DNS_H
#define LOOPBRIDGE_DNS_H

/* Name resolution that does not block the loop: getaddrinfo(3) runs on
 * the loop's default executor (asyncio's loop.getaddrinfo), awaited by
 * the calling task. */

#include <loopbridge/common.h>

#include <netdb.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Declared here too: strict C (-std=c11 without _POSIX_C_SOURCE) gets no
 * struct addrinfo from <netdb.h>, and a struct first named in a parameter
 * list would be a different type, visible only there. */
struct addrinfo;

/* Resolves host and service as getaddrinfo(3) does (either may be NULL,
 * not both; hints may be NULL, and only its ai_flags, ai_family,
 * ai_socktype and ai_protocol are read), inside a task. A numeric host
 * with a numeric or NULL service is answered at once, without a thread;
 * a name is looked up on the loop's default executor while the task
 * awaits; lookups take at most half of its threads, so that lookups the
 * resolver does not answer leave threads to the other jobs (later lookups
 * wait their turn). timeout bounds the wait in seconds (< 0: no limit).
 *
 * Returns 0 and stores the list in *ret, which the caller frees with
 * freeaddrinfo(3). Errors: -ENXIO (no such host or service), -ETIMEDOUT
 * (the timeout, or a temporary failure of the name server), -EAFNOSUPPORT
 * (no address in the family asked for), -EINVAL (bad arguments or hints),
 * -ENOMEM, -EIO (the name server failed), -ECANCELED, -EPERM outside a
 * task; lb_error_detail() has getaddrinfo's own message.
 *
 * Cancellation (or the timeout) returns at once. A lookup that has not
 * started yet is withdrawn; one that is running cannot be interrupted:
 * it finishes on its thread and its result is freed then, so nothing is
 * leaked and the task need not wait for it. Loop thread, in a task. */
LB_EXPORT int lb_getaddrinfo(const char *host, const char *service,
                             const struct addrinfo *hints, double timeout,
                             struct addrinfo **ret);

#ifdef __cplusplus
}
#endif

#endif
