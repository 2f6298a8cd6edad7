/* SPDX-License-Identifier: MIT */
/* Debug mode: slow callbacks reported by name. */
#include "error.h"
#include "loop_internal.h"

#include <dlfcn.h>
#include <stdio.h>

/* The name of the function at fn: its symbol when the dynamic symbol
 * table has it (shared libraries; executables linked with -rdynamic),
 * else its address. */
const char *lb__symbol_name(const void *fn, char *buf, size_t size);
const char *lb__symbol_name(const void *fn, char *buf, size_t size) {
    Dl_info info;
    /* Function pointers and object pointers share a representation on
     * every platform loopbridge supports; dladdr wants the latter. */
    if (dladdr(fn, &info) && info.dli_sname && info.dli_saddr == fn)
        snprintf(buf, size, "%s", info.dli_sname);
    else if (dladdr(fn, &info) && info.dli_fname)
        snprintf(buf, size, "%p (in %s)", fn, info.dli_fname);
    else
        snprintf(buf, size, "%p", fn);
    return buf;
}

void lb__debug_call(lb_loop *loop, lb_callback cb, void *data) {
    int64_t t0 = lb__clock_ns();
    cb(loop, data);
    int64_t took = lb__clock_ns() - t0;
    if (took > loop->slowest_ns) {
        loop->slowest_ns = took;
        loop->slowest_fn = (const void *)cb;
    }
    if (took >= loop->slow_callback_ns) {
        char name[128];
        lb__log(LB_LOG_WARNING, "slow callback: %s took %.3f s (slow_callback_duration is %.3f s)",
                lb__symbol_name((const void *)cb, name, sizeof name), (double)took / 1e9,
                (double)loop->slow_callback_ns / 1e9);
    }
}
