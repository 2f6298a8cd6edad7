/* SPDX-License-Identifier: MIT */
#include "fixture.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef LB_TEST_GLIB
const lb_driver *lb_driver_glib(void);
#endif
#ifdef LB_TEST_TK
const lb_driver *lb_driver_tk(void);
#endif

/* The bridge libraries register their drivers when loaded; referencing
 * them here keeps the linker (which drops libraries no symbol is used
 * from) from leaving them out. */
void fixture_register_bridges(void) {
#ifdef LB_TEST_GLIB
    lb_driver_register(lb_driver_glib());
#endif
#ifdef LB_TEST_TK
    lb_driver_register(lb_driver_tk());
#endif
}

lb_loop *fixture_loop_new(void) {
    lb_loop *loop = NULL;
    int r = lb_loop_new(&loop, NULL);
    if (r < 0)
        fail_msg("lb_loop_new: %s (%s)", lb_strerror(r), lb_error_detail());
    assert_non_null(loop);
    return loop;
}

void fixture_loop_free(lb_loop *loop) {
    assert_int_equal(lb_loop_close(loop), 0);
    assert_true(lb_loop_is_closed(loop));
    lb_loop_unref(loop);
}

double fixture_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool selected(const char *list, const char *name) {
    if (!list || !*list)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

/* Whether every name in the comma-separated list is a group's: a
 * misspelt name would otherwise run nothing and pass. */
static bool all_known(const char *list, const fixture_group *groups, size_t n,
                      const char *groups_env) {
    bool known = true;
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = strlen(groups[i].name) == len && !strncmp(groups[i].name, p, len);
        if (!found && len) {
            fprintf(stderr, "%s: no group '%.*s'; the groups:", groups_env, (int)len, p);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %s", groups[i].name);
            fprintf(stderr, "\n");
            known = false;
        }
        p += len + (p[len] == ',');
    }
    return known;
}

int fixture_main(const char *suite, const fixture_group *groups, size_t n,
                 const char *groups_env, unsigned watchdog_s) {
    const char *driver = getenv("LB_DRIVER");
    const char *only = getenv(groups_env);
    if (!all_known(only, groups, n, groups_env))
        return 2;
    printf("%s suite on driver '%s'\n", suite, driver && *driver ? driver : "native");
    fixture_register_bridges();
    alarm(watchdog_s);
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        if (selected(only, groups[i].name))
            failed += groups[i].run();
    return failed ? 1 : 0;
}

typedef struct until_state {
    const volatile bool *flag;
    double deadline;
    bool timed_out;
} until_state;

static void until_check(lb_loop *loop, void *data) {
    until_state *st = data;
    if (*st->flag) {
        lb_loop_stop(loop);
        return;
    }
    if (fixture_now() > st->deadline) {
        st->timed_out = true;
        lb_loop_stop(loop);
        return;
    }
    assert_int_equal(lb_loop_call_later(loop, 0.001, until_check, st, NULL), 0);
}

void fixture_run_until(lb_loop *loop, const volatile bool *flag, double timeout_s) {
    until_state st = {.flag = flag, .deadline = fixture_now() + timeout_s};
    assert_int_equal(lb_loop_call_soon(loop, until_check, &st, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    if (st.timed_out)
        fail_msg("condition not reached within %.1f s", timeout_s);
}

lb_task *fixture_spawn(lb_loop *loop, lb_task_fn fn, void *data) {
    lb_task *t = NULL;
    int r = lb_task_spawn(loop, fn, data, NULL, &t);
    if (r < 0)
        fail_msg("lb_task_spawn: %s (%s)", lb_strerror(r), lb_error_detail());
    return t;
}

static void guard_expired(lb_loop *loop, void *data) {
    *(bool *)data = true;
    lb_loop_stop(loop);
}

int fixture_finish(lb_loop *loop, lb_task *task, double timeout_s) {
    bool expired = false;
    lb_handle *guard = NULL;
    assert_int_equal(lb_loop_call_later(loop, timeout_s, guard_expired, &expired, &guard), 0);
    int r = lb_loop_run_until_complete(loop, lb_task_future(task));
    lb_handle_cancel(guard);
    lb_handle_unref(guard);
    if (expired || r < 0)
        fail_msg("task %s did not end within %.1f s", lb_task_name(task), timeout_s);
    int status = lb_future_result(lb_task_future(task), NULL);
    lb_task_unref(task);
    return status;
}

int fixture_count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void settled(lb_loop *loop, void *data) {
    *(bool *)data = true;
    (void)loop;
}

int fixture_fd_baseline(lb_loop *loop) {
    bool done = false;
    assert_int_equal(lb_loop_call_later(loop, 0.001, settled, &done, NULL), 0);
    fixture_run_until(loop, &done, 10);
    return fixture_count_fds();
}

int fixture_fds_without_loop(void) {
    lb_loop *loop = fixture_loop_new();
    fixture_fd_baseline(loop);
    fixture_loop_free(loop);
    return fixture_count_fds();
}

static void cancel_check(lb_loop *loop, void *data) {
    fixture_canceller *k = data;
    if (*k->waiting && ++k->polls > 2) {
        assert_int_equal(lb_task_cancel(k->target), 1);
        return;
    }
    assert_int_equal(lb_loop_call_later(loop, 0.005, cancel_check, k, NULL), 0);
}

void fixture_cancel_when_waiting(lb_loop *loop, fixture_canceller *canceller) {
    assert_int_equal(lb_loop_call_soon(loop, cancel_check, canceller, NULL), 0);
}

static void record_report(lb_loop *loop, const lb_exception_context *ctx, void *data) {
    fixture_reports *r = data;
    (void)loop;
    r->count++;
    r->error = ctx->error;
    snprintf(r->message, sizeof r->message, "%s", ctx->message ? ctx->message : "");
}

void fixture_capture_reports(lb_loop *loop, fixture_reports *reports) {
    assert_int_equal(lb_loop_set_exception_handler(loop, record_report, reports), 0);
}

long fixture_resident_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    if (f)
        fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

bool fixture_under_valgrind(void) {
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

bool fixture_memory_measurable(void) {
#if defined(LB_TEST_FRAMES_FIXED) || defined(__SANITIZE_ADDRESS__)
    return false;
#else
    return !fixture_under_valgrind();
#endif
}
