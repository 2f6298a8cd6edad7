/* SPDX-License-Identifier: MIT */
/* Debug mode: slow callbacks reported by name; errors nobody read. */
#include "error.h"
#include "future_internal.h"
#include "loop_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* The name of the function at fn: its symbol when the dynamic symbol
 * table has it (shared libraries; executables linked with -rdynamic),
 * else its module and its offset there, which `addr2line -f -e` turns
 * into a name and a line (an absolute address changes with each run),
 * else its address. */
const char *lb__symbol_name(const void *fn, char *buf, size_t size) {
    Dl_info info;
    /* Function pointers and object pointers share a representation on
     * every platform loopbridge supports; dladdr wants the latter. */
    if (!dladdr(fn, &info)) {
        snprintf(buf, size, "%p", fn);
    } else if (info.dli_sname && info.dli_saddr == fn) {
        snprintf(buf, size, "%s", info.dli_sname);
    } else if (info.dli_fname && info.dli_fbase) {
        const char *slash = strrchr(info.dli_fname, '/');
        snprintf(buf, size, "%s+0x%lx", slash ? slash + 1 : info.dli_fname,
                 (unsigned long)((const char *)fn - (const char *)info.dli_fbase));
    } else {
        snprintf(buf, size, "%p", fn);
    }
    return buf;
}

/* A future's error that nobody read, reported once, when the future goes;
 * a task's names the task and its function. The application's exception
 * handler gets it; without one it is logged as a warning, not an error:
 * it says that a result went unread, which is no misuse of the library
 * (GLib maps errors to criticals, which G_DEBUG=fatal-criticals makes
 * abort). */
void lb__report_unretrieved(lb_loop *loop, lb_future *future, lb_task *task,
                            const char *task_name, const void *task_fn) {
    char msg[256];
    if (task) {
        char fn[128];
        snprintf(msg, sizeof msg, "task %s (%s) failed and its error was never retrieved: %s",
                 task_name, lb__symbol_name(task_fn, fn, sizeof fn),
                 lb_strerror(future->error));
    } else {
        snprintf(msg, sizeof msg, "future error was never retrieved: %s",
                 lb_strerror(future->error));
    }
    if (loop->exception_handler) {
        lb_exception_context ctx = {
            .message = msg, .error = future->error, .future = future, .task = task};
        lb_loop_call_exception_handler(loop, &ctx);
    } else {
        lb__log(LB_LOG_WARNING, "%s", msg);
    }
}

/* The first task a callback resumes is the one it is named after (a
 * shared-stack task that suspends may let parked ones run in the same
 * callback). */
void lb__debug_note_task(lb_loop *loop, const void *fn, const char *name) {
    if (loop->resumed_fn)
        return;
    loop->resumed_fn = fn;
    snprintf(loop->resumed_name, sizeof loop->resumed_name, "%s", name);
}

/* A callback that resumed a task is named after the task: its name and
 * its function, which is where the time went (the callback itself is a
 * step, a timer or a done callback of the library). A task's nested main
 * loop runs callbacks of its own inside: what they note is theirs, and
 * the outer callback's note comes back after them. */
void lb__debug_call(lb_loop *loop, lb_callback cb, void *data) {
    if (cb == lb__run_handle) {
        cb(loop, data);
        return;
    }
    const void *outer_fn = loop->resumed_fn;
    char outer_name[sizeof loop->resumed_name];
    memcpy(outer_name, loop->resumed_name, sizeof outer_name);
    loop->resumed_fn = NULL;
    int64_t t0 = lb__clock_ns();
    cb(loop, data);
    int64_t took = lb__clock_ns() - t0;
    const void *who = loop->resumed_fn ? loop->resumed_fn : (const void *)cb;
    if (took > loop->slowest_ns) {
        loop->slowest_ns = took;
        loop->slowest_fn = who;
    }
    if (took >= loop->slow_callback_ns) {
        char name[128];
        lb__symbol_name(who, name, sizeof name);
        if (loop->resumed_fn)
            lb__log(LB_LOG_WARNING,
                    "slow callback: task %s (%s) took %.3f s before it awaited "
                    "(slow_callback_duration is %.3f s)",
                    loop->resumed_name, name, (double)took / 1e9,
                    (double)loop->slow_callback_ns / 1e9);
        else
            lb__log(LB_LOG_WARNING,
                    "slow callback: %s took %.3f s (slow_callback_duration is %.3f s)", name,
                    (double)took / 1e9, (double)loop->slow_callback_ns / 1e9);
    }
    loop->resumed_fn = outer_fn;
    memcpy(loop->resumed_name, outer_name, sizeof outer_name);
}
