/* SPDX-License-Identifier: MIT */
/* getaddrinfo on the default executor. The lookup's state is shared by
 * the job (which owns it until it is over, see executor_internal.h) and
 * the awaiting task; whichever lets go last frees it, with the result if
 * the task never took it. Both run on the loop's thread, so the count
 * needs no atomics: the worker thread only fills the result in. */
#include <loopbridge/dns.h>
#include <loopbridge/task.h>

#include "alloc.h"
#include "error.h"
#include "executor_internal.h"
#include "io_internal.h"
#include "test_hooks.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

typedef struct lookup {
    unsigned refs;
    char *host, *service;
    struct addrinfo hints;
    struct addrinfo *result;
    int gai;       /* what getaddrinfo returned */
    int sys_errno; /* errno, for EAI_SYSTEM */
} lookup;

/* Test hook: runs on the worker thread right before each lookup. */
static void (*before_lookup)(void *data);
static void *before_lookup_data;

void lb__test_dns_before_lookup(void (*hook)(void *), void *data) {
    before_lookup = hook;
    before_lookup_data = data;
}

static char *dup_or_null(const char *s, bool *failed) {
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = lb__malloc(n);
    if (!d)
        *failed = true;
    else
        memcpy(d, s, n);
    return d;
}

static void lookup_unref(void *data) {
    lookup *l = data;
    if (--l->refs > 0)
        return;
    if (l->result)
        freeaddrinfo(l->result);
    lb__free(l->host);
    lb__free(l->service);
    lb__free(l);
}

static int resolve_job(void *data, void **ret) {
    lookup *l = data;
    (void)ret;
    if (before_lookup)
        before_lookup(before_lookup_data);
    l->gai = getaddrinfo(l->host, l->service, &l->hints, &l->result);
    if (l->gai == EAI_SYSTEM)
        l->sys_errno = errno;
    return 0;
}

/* getaddrinfo's codes as negative errnos, with its message as detail. */
static int lookup_error(const lb_loop *loop, int gai, int sys_errno, const char *host,
                     const char *service) {
    int e;
    switch (gai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_SERVICE:
        e = -ENXIO;
        break;
    case EAI_AGAIN:
        e = -ETIMEDOUT;
        break;
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
    case EAI_FAMILY:
        e = -EAFNOSUPPORT;
        break;
    case EAI_MEMORY:
        e = -ENOMEM;
        break;
    case EAI_SYSTEM:
        e = sys_errno > 0 ? -sys_errno : -EIO;
        break;
    case EAI_BADFLAGS:
    case EAI_SOCKTYPE:
        e = -EINVAL;
        break;
    default:
        e = -EIO;
        break;
    }
    return lb__fail(loop, e, "lb_getaddrinfo: %s%s%s: %s", host ? host : "", service ? ":" : "",
                    service ? service : "",
                    gai == EAI_SYSTEM ? strerror(sys_errno) : gai_strerror(gai));
}

static bool all_digits(const char *s) {
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

int lb__resolve_numeric(const lb_loop *loop, const char *host, const char *service,
                           const struct addrinfo *hints, struct addrinfo **ret) {
    if (service && !all_digits(service))
        return 1;
    struct addrinfo h = *hints;
    h.ai_flags |= AI_NUMERICSERV;
    if (host)
        h.ai_flags |= AI_NUMERICHOST;
    int gai = getaddrinfo(host, service, &h, ret);
    if (gai == 0)
        return 0;
    if (gai == EAI_NONAME && host && !(hints->ai_flags & AI_NUMERICHOST))
        return 1;
    return lookup_error(loop, gai, errno, host, service);
}

int lb_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                   double timeout, struct addrinfo **ret) {
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(__func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(host || service, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    struct addrinfo h = {0};
    if (hints) {
        h.ai_flags = hints->ai_flags;
        h.ai_family = hints->ai_family;
        h.ai_socktype = hints->ai_socktype;
        h.ai_protocol = hints->ai_protocol;
    }
    struct addrinfo *res = NULL;
    r = lb__resolve_numeric(loop, host, service, &h, &res);
    if (r <= 0) {
        if (r == 0)
            *ret = res;
        return r;
    }

    lookup *l = lb__calloc(1, sizeof *l);
    bool failed = !l;
    if (l) {
        l->host = dup_or_null(host, &failed);
        l->service = dup_or_null(service, &failed);
        l->hints = h;
        l->refs = 1;
    }
    if (failed) {
        if (l)
            lookup_unref(l);
        return lb__fail(loop, -ENOMEM, "lb_getaddrinfo: out of memory");
    }
    lb_future *f = NULL;
    r = lb__loop_run_in_executor_owned(loop, NULL, resolve_job, l, lookup_unref, true, &f);
    if (r < 0) {
        lookup_unref(l);
        return r;
    }
    l->refs++; /* the job's, dropped when it is over */
    r = timeout < 0 ? lb_await(f, NULL) : lb_wait_for(f, timeout, NULL);
    lb_future_unref(f);
    if (r == 0) {
        if (l->gai != 0) {
            r = lookup_error(loop, l->gai, l->sys_errno, host, service);
        } else {
            *ret = l->result;
            l->result = NULL;
        }
    }
    lookup_unref(l);
    return r;
}
