/* SPDX-License-Identifier: MIT */
/* Misuse is an error, never a crash or a hang. The rows of the misuse
 * table in docs/errors.md are read from the document itself (its path is
 * compiled in) and each is walked by the check of the same name below,
 * which makes every call the row covers; what the call returns and the
 * message it leaves in lb_error_detail() must be what the row says. A row
 * without a check, or a check without a row, fails too: the document and
 * the code cannot drift apart. */
#include "fixture.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef LB_ERRORS_MD
#error "the build passes the path of docs/errors.md as LB_ERRORS_MD"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define MISUSE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MISUSE_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------ */
/* The rows of docs/errors.md                                          */
/* ------------------------------------------------------------------ */

typedef enum outcome {
    OUTCOME_CODE,   /* the calls return `code` and set a message */
    OUTCOME_LOGGED, /* reported through the log handler */
    OUTCOME_ASAN,   /* a use after free only a sanitizer sees */
} outcome;

enum { MAX_ROWS = 80, MAX_GISTS = 4 };

typedef struct row {
    char id[96];
    char name[112]; /* the test's name: misuse_<id> */
    outcome kind;
    int code;
    char gists[MAX_GISTS][96];
    size_t n_gists;
} row;

static row rows[MAX_ROWS];
static size_t n_rows;
static char parse_error[256];

static const struct {
    const char *name;
    int code;
} codes[] = {
    {"0", 0},
    {"-EINVAL", -EINVAL},
    {"-EBADF", -EBADF},
    {"-EBUSY", -EBUSY},
    {"-EPERM", -EPERM},
    {"-ECANCELED", -ECANCELED},
    {"-EALREADY", -EALREADY},
    {"-EDEADLK", -EDEADLK},
    {"-EXDEV", -EXDEV},
    {"-ENOENT", -ENOENT},
};

/* Copies the backticked strings of cell into out; returns how many. */
static size_t backticked(const char *cell, char out[][96], size_t cap) {
    size_t n = 0;
    const char *p = cell;
    while (n < cap && (p = strchr(p, '`'))) {
        const char *end = strchr(p + 1, '`');
        if (!end)
            break;
        snprintf(out[n++], 96, "%.*s", (int)(end - p - 1), p + 1);
        p = end + 1;
    }
    return n;
}

/* Splits a table line into its cells (without the outer pipes). */
static size_t split_cells(char *line, char **cells, size_t cap) {
    size_t n = 0;
    char *p = strchr(line, '|');
    while (p && n < cap) {
        char *next = strchr(p + 1, '|');
        if (!next)
            break;
        *next = '\0';
        cells[n++] = p + 1;
        p = next;
    }
    return n;
}

static bool parse_row(char *line) {
    char *cells[8];
    if (split_cells(line, cells, 8) != 5)
        return false;
    row *r = &rows[n_rows];
    *r = (row){0};
    char id[1][96];
    if (backticked(cells[0], id, 1) != 1)
        return false;
    memcpy(r->id, id[0], sizeof r->id);
    snprintf(r->name, sizeof r->name, "misuse_%s", id[0]);

    char ret[1][96];
    if (strstr(cells[3], "logged")) {
        r->kind = OUTCOME_LOGGED;
    } else if (strstr(cells[3], "ASan")) {
        r->kind = OUTCOME_ASAN;
    } else if (backticked(cells[3], ret, 1) == 1) {
        size_t i;
        for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
            if (strcmp(codes[i].name, ret[0]) == 0)
                break;
        if (i == sizeof codes / sizeof codes[0]) {
            snprintf(parse_error, sizeof parse_error, "row %s: unknown code %s", r->id, ret[0]);
            return false;
        }
        r->kind = OUTCOME_CODE;
        r->code = codes[i].code;
    } else {
        snprintf(parse_error, sizeof parse_error, "row %s: no code in '%s'", r->id, cells[3]);
        return false;
    }
    r->n_gists = backticked(cells[4], r->gists, MAX_GISTS);
    n_rows++;
    return true;
}

/* Reads the table under "## Misuse". Returns false with parse_error set
 * when the document cannot be read or a row is malformed. */
static bool load_rows(void) {
    FILE *f = fopen(LB_ERRORS_MD, "r");
    if (!f) {
        snprintf(parse_error, sizeof parse_error, "cannot open %s", LB_ERRORS_MD);
        return false;
    }
    char line[4096];
    bool in_section = false, ok = true;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0)
            in_section = strncmp(line, "## Misuse", 9) == 0;
        if (!in_section || strncmp(line, "| `", 3) != 0)
            continue;
        if (n_rows == MAX_ROWS || !parse_row(line)) {
            if (!parse_error[0])
                snprintf(parse_error, sizeof parse_error, "malformed row: %.120s", line);
            ok = false;
            break;
        }
    }
    fclose(f);
    if (ok && n_rows == 0) {
        snprintf(parse_error, sizeof parse_error, "no misuse rows in %s", LB_ERRORS_MD);
        ok = false;
    }
    return ok;
}

/* ------------------------------------------------------------------ */
/* Checking calls against their row                                    */
/* ------------------------------------------------------------------ */

typedef struct misuse {
    const row *row;
    lb_loop *loop;
    int checks;
    int failures;
    char first_failure[512];
    char log[2048]; /* what the log handler received */
} misuse;

/* cmocka's asserts must not run on a task's stack or another thread:
 * the checks record, and the test asserts once the walk is over. */
static void record(misuse *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record(misuse *m, const char *fmt, ...) {
    if (m->failures++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->first_failure, sizeof m->first_failure, fmt, ap);
        va_end(ap);
    }
}

/* A message no row names, left before each call so that the call is
 * seen to write its own. */
static void reset_detail(void) {
    (void)lb_driver_register(NULL); /* "driver is NULL" */
}

static bool contains_gist(const row *r, const char *text) {
    if (r->n_gists == 0)
        return true;
    for (size_t i = 0; i < r->n_gists; i++)
        if (strstr(text, r->gists[i]))
            return true;
    return false;
}

static void check_call(misuse *m, int r, const char *call) {
    m->checks++;
    if (m->row->kind != OUTCOME_CODE)
        record(m, "%s: row %s has no return code to check", call, m->row->id);
    else if (r != m->row->code)
        record(m, "%s returned %d (%s); docs/errors.md says %d", call, r, lb_strerror(r),
               m->row->code);
    else if (r != 0 && !contains_gist(m->row, lb_error_detail()))
        record(m, "%s: the message '%s' contains none of the row's phrases", call,
               lb_error_detail());
    reset_detail();
}

/* Calls made with CHECK are compared with the row. */
#define CHECK(m, call)                                                                         \
    do {                                                                                       \
        reset_detail();                                                                        \
        check_call((m), (call), #call);                                                        \
    } while (0)

/* What a row says beyond a call's code (the call's effect, or the
 * result of a call that returns no code). */
#define EXPECT(m, cond) expect_true((m), (cond), #cond)

static void expect_true(misuse *m, bool ok, const char *what) {
    m->checks++;
    if (!ok)
        record(m, "expected %s", what);
}

static void check_logged(misuse *m, const char *what) {
    m->checks++;
    if (!m->log[0])
        record(m, "%s: nothing was logged", what);
    else if (!contains_gist(m->row, m->log))
        record(m, "%s: the log '%s' contains none of the row's phrases", what, m->log);
    m->log[0] = '\0';
}

static void capture_log(lb_log_level level, const char *message, void *data) {
    misuse *m = data;
    (void)level;
    size_t len = strlen(m->log);
    snprintf(m->log + len, sizeof m->log - len, "%s\n", message);
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static void nop_done(lb_future *f, void *data) {
    (void)f;
    (void)data;
}

static void set_flag(lb_loop *loop, void *data) {
    (void)loop;
    *(bool *)data = true;
}

static int task_nop(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return 0;
}

static int work_nop(void *data, void **ret) {
    (void)data;
    *ret = NULL;
    return 0;
}

static atomic_int destroyed;
static void count_destroy(void *value) {
    (void)value;
    atomic_fetch_add(&destroyed, 1);
}

/* Runs fn(m) as a callback of m->loop while it runs, then stops it. */
typedef struct in_loop {
    misuse *m;
    void (*fn)(misuse *m);
    bool done;
} in_loop;

static void in_loop_cb(lb_loop *loop, void *data) {
    in_loop *il = data;
    il->fn(il->m);
    il->done = true;
    (void)loop;
}

static void run_in_callback(misuse *m, void (*fn)(misuse *m)) {
    in_loop il = {m, fn, false};
    assert_int_equal(lb_loop_call_soon(m->loop, in_loop_cb, &il, NULL), 0);
    fixture_run_until(m->loop, &il.done, 10.0);
}

/* Runs fn(m) inside a task of m->loop until it ends. */
typedef struct in_task {
    misuse *m;
    void (*fn)(misuse *m);
} in_task;

static int in_task_main(lb_task *task, void *data) {
    in_task *it = data;
    (void)task;
    it->fn(it->m);
    return 0;
}

static void run_in_task(misuse *m, void (*fn)(misuse *m)) {
    in_task it = {m, fn};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(m->loop, in_task_main, &it, NULL, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(m->loop, lb_task_future(t)), 0);
    assert_true(lb_task_is_done(t));
    lb_task_unref(t);
}

/* A pipe, for the rows that need a real fd. */
typedef struct fd_pair {
    int r, w;
} fd_pair;

static fd_pair make_pipe(void) {
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    return (fd_pair){fds[0], fds[1]};
}

static void close_pipe(fd_pair p) {
    close(p.r);
    close(p.w);
}

/* ------------------------------------------------------------------ */
/* NULL arguments                                                      */
/* ------------------------------------------------------------------ */

static void walk_null_loop(misuse *m) {
    lb_future *f = NULL, *out = NULL;
    lb_group *g = NULL;
    lb_loop_stats st;
    lb_exception_context ctx = {.message = "x"};
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_loop_run_forever(NULL));
    CHECK(m, lb_loop_run_until_complete(NULL, f));
    CHECK(m, lb_loop_stop(NULL));
    CHECK(m, lb_loop_close(NULL));
    CHECK(m, lb_loop_call_soon(NULL, nop, NULL, NULL));
    CHECK(m, lb_loop_call_later(NULL, 0.1, nop, NULL, NULL));
    CHECK(m, lb_loop_call_at(NULL, 1.0, nop, NULL, NULL));
    CHECK(m, lb_loop_call_at_ns(NULL, 1, nop, NULL, NULL));
    CHECK(m, lb_loop_call_soon_threadsafe(NULL, nop, NULL));
    CHECK(m, lb_loop_wakeup(NULL));
    CHECK(m, lb_future_new(NULL, &out));
    CHECK(m, lb_task_spawn(NULL, task_nop, NULL, NULL, NULL));
    CHECK(m, lb_loop_add_reader(NULL, 0, nop, NULL));
    CHECK(m, lb_loop_add_writer(NULL, 1, nop, NULL));
    CHECK(m, lb_loop_remove_reader(NULL, 0));
    CHECK(m, lb_loop_remove_writer(NULL, 1));
    CHECK(m, lb_loop_add_signal_handler(NULL, SIGUSR1, nop, NULL));
    CHECK(m, lb_loop_remove_signal_handler(NULL, SIGUSR1));
    CHECK(m, lb_loop_set_exception_handler(NULL, NULL, NULL));
    CHECK(m, lb_loop_call_exception_handler(NULL, &ctx));
    CHECK(m, lb_loop_set_debug(NULL, true));
    CHECK(m, lb_loop_set_slow_callback_duration(NULL, 1.0));
    CHECK(m, lb_loop_get_stats(NULL, &st));
    CHECK(m, lb_loop_run_in_executor(NULL, NULL, work_nop, NULL, &out));
    CHECK(m, lb_loop_set_default_executor(NULL, NULL));
    CHECK(m, lb_group_new(NULL, &g));
    CHECK(m, lb_loop_all_tasks(NULL, NULL, 0));
    CHECK(m, lb_driver_backend_fd(NULL));
    CHECK(m, lb_driver_dispatch(NULL, 0, 0));
    lb_future_unref(f);
}

static void coalesce_nop(lb_loop *loop, void *value, void *data) {
    (void)loop;
    (void)value;
    (void)data;
}

static void walk_null_callback(misuse *m) {
    lb_future *f = NULL, *out = NULL;
    lb_group *g = NULL;
    fd_pair p = make_pipe();
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    assert_int_equal(lb_group_new(m->loop, &g), 0);
    CHECK(m, lb_loop_call_soon(m->loop, NULL, NULL, NULL));
    CHECK(m, lb_loop_call_later(m->loop, 0.1, NULL, NULL, NULL));
    CHECK(m, lb_loop_call_at(m->loop, 1.0, NULL, NULL, NULL));
    CHECK(m, lb_loop_call_soon_threadsafe(m->loop, NULL, NULL));
    CHECK(m, lb_loop_add_reader(m->loop, p.r, NULL, NULL));
    CHECK(m, lb_loop_add_writer(m->loop, p.w, NULL, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGUSR1, NULL, NULL));
    CHECK(m, lb_future_add_done_callback(f, NULL, NULL));
    CHECK(m, lb_future_remove_done_callback(f, NULL, NULL));
    CHECK(m, lb_task_spawn(m->loop, NULL, NULL, NULL, NULL));
    CHECK(m, lb_group_spawn(g, NULL, NULL, NULL, NULL));
    CHECK(m, lb_group_cancel_then(g, NULL, NULL, NULL));
    CHECK(m, lb_loop_run_in_executor(m->loop, NULL, NULL, NULL, &out));
    CHECK(m, lb_loop_run_in_executor_full(m->loop, NULL, NULL, NULL, free, &out));
    lb_coalesce *c = NULL;
    CHECK(m, lb_coalesce_new(m->loop, NULL, NULL, NULL, &c));
    CHECK(m, lb_run(NULL, NULL, NULL));
    lb_group_unref(g);
    lb_future_unref(f);
    close_pipe(p);
}

static void walk_null_ret(misuse *m) {
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_loop_new(NULL, NULL));
    CHECK(m, lb_loop_new_full(NULL, lb_driver_native(), NULL));
    CHECK(m, lb_future_new(m->loop, NULL));
    CHECK(m, lb_gather(&f, 1, 0, NULL));
    CHECK(m, lb_shield(f, NULL));
    CHECK(m, lb_group_new(m->loop, NULL));
    CHECK(m, lb_executor_new(NULL, 1));
    CHECK(m, lb_loop_run_in_executor(m->loop, NULL, work_nop, NULL, NULL));
    CHECK(m, lb_loop_run_in_executor_full(m->loop, NULL, work_nop, NULL, free, NULL));
    CHECK(m, lb_coalesce_new(m->loop, coalesce_nop, NULL, NULL, NULL));
    CHECK(m, lb_loop_get_stats(m->loop, NULL));
    CHECK(m, lb_loop_thread_start(NULL, NULL));
    CHECK(m, lb_driver_find("native", NULL));
    lb_future_unref(f);
}

static void null_future_in_task(misuse *m) {
    CHECK(m, lb_await(NULL, NULL));
    CHECK(m, lb_wait_for(NULL, 1.0, NULL));
}

static void walk_null_future(misuse *m) {
    lb_future *out = NULL;
    lb_future *none[1] = {NULL};
    atomic_store(&destroyed, 0);
    CHECK(m, lb_future_set_result(NULL, m, count_destroy));
    CHECK(m, lb_future_set_error(NULL, -EIO));
    CHECK(m, lb_future_cancel(NULL));
    CHECK(m, lb_future_result(NULL, NULL));
    CHECK(m, lb_future_add_done_callback(NULL, nop_done, NULL));
    CHECK(m, lb_future_remove_done_callback(NULL, nop_done, NULL));
    CHECK(m, lb_future_wait(NULL, 0.0, NULL));
    CHECK(m, lb_future_set_result_threadsafe(NULL, m, count_destroy));
    CHECK(m, lb_future_set_error_threadsafe(NULL, -EIO));
    CHECK(m, lb_gather(none, 1, 0, &out));
    CHECK(m, lb_shield(NULL, &out));
    CHECK(m, lb_loop_run_until_complete(m->loop, NULL));
    run_in_task(m, null_future_in_task);
    /* A value handed over is destroyed even when the call fails. */
    EXPECT(m, atomic_load(&destroyed) == 2);
}

static void walk_null_task(misuse *m) {
    CHECK(m, lb_task_cancel(NULL));
    CHECK(m, lb_task_uncancel(NULL));
}

static void walk_null_handle(misuse *m) {
    CHECK(m, lb_handle_cancel(NULL));
}

static void walk_null_other(misuse *m) {
    lb_future *out = NULL;
    CHECK(m, lb_group_spawn(NULL, task_nop, NULL, NULL, NULL));
    CHECK(m, lb_group_wait(NULL));
    CHECK(m, lb_group_cancel(NULL));
    CHECK(m, lb_group_cancel_then(NULL, nop, NULL, NULL));
    CHECK(m, lb_group_results(NULL, NULL, 0));
    CHECK(m, lb_executor_shutdown(NULL, true, false));
    CHECK(m, lb_loop_thread_call(NULL, nop, NULL));
    CHECK(m, lb_loop_thread_submit(NULL, task_nop, NULL, NULL, &out));
    CHECK(m, lb_loop_thread_stop(NULL));
    CHECK(m, lb_coalesce_post(NULL, NULL));
}

static void walk_null_unref(misuse *m) {
    EXPECT(m, lb_loop_ref(NULL) == NULL);
    EXPECT(m, lb_loop_unref(NULL) == NULL);
    EXPECT(m, lb_future_ref(NULL) == NULL);
    EXPECT(m, lb_future_unref(NULL) == NULL);
    EXPECT(m, lb_task_ref(NULL) == NULL);
    EXPECT(m, lb_task_unref(NULL) == NULL);
    EXPECT(m, lb_handle_ref(NULL) == NULL);
    EXPECT(m, lb_handle_unref(NULL) == NULL);
    EXPECT(m, lb_group_unref(NULL) == NULL);
    EXPECT(m, lb_executor_unref(NULL) == NULL);
    EXPECT(m, lb_coalesce_free(NULL) == NULL);
    EXPECT(m, !lb_loop_is_running(NULL));
    EXPECT(m, !lb_loop_is_closed(NULL));
    EXPECT(m, lb_loop_time(NULL) == 0.0);
    EXPECT(m, lb_loop_time_ns(NULL) == 0);
    EXPECT(m, lb_loop_driver_name(NULL) == NULL);
    EXPECT(m, !lb_loop_get_debug(NULL));
    EXPECT(m, lb_loop_task_count(NULL) == 0);
    EXPECT(m, !lb_future_is_done(NULL));
    EXPECT(m, !lb_future_is_cancelled(NULL));
    EXPECT(m, lb_future_get_loop(NULL) == NULL);
    EXPECT(m, lb_task_future(NULL) == NULL);
    EXPECT(m, lb_task_name(NULL) == NULL);
    EXPECT(m, !lb_task_is_done(NULL));
    EXPECT(m, !lb_task_cancelling(NULL));
    EXPECT(m, !lb_handle_is_cancelled(NULL));
    EXPECT(m, lb_handle_when(NULL) == 0.0);
    EXPECT(m, lb_loop_thread_loop(NULL) == NULL);
    EXPECT(m, lb_driver_state(NULL) == NULL);
    EXPECT(m, lb_driver_prepare(NULL) == 0);
    EXPECT(m, lb_driver_stop_requested(NULL));
}

/* ------------------------------------------------------------------ */
/* Closed loops                                                        */
/* ------------------------------------------------------------------ */

static void walk_closed_loop(misuse *m) {
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL, *out = NULL;
    lb_group *g = NULL;
    lb_loop_stats st;
    fd_pair p = make_pipe();
    lb_coalesce *c = NULL, *c2 = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_coalesce_new(loop, coalesce_nop, NULL, NULL, &c), 0);
    assert_int_equal(lb_loop_close(loop), 0);
    atomic_store(&destroyed, 0);
    CHECK(m, lb_loop_call_soon(loop, nop, NULL, NULL));
    CHECK(m, lb_loop_call_later(loop, 0.1, nop, NULL, NULL));
    CHECK(m, lb_loop_call_at(loop, 1.0, nop, NULL, NULL));
    CHECK(m, lb_loop_call_soon_threadsafe(loop, nop, NULL));
    CHECK(m, lb_loop_wakeup(loop));
    CHECK(m, lb_loop_run_forever(loop));
    CHECK(m, lb_loop_run_until_complete(loop, f));
    CHECK(m, lb_loop_stop(loop));
    CHECK(m, lb_future_new(loop, &out));
    CHECK(m, lb_task_spawn(loop, task_nop, NULL, NULL, NULL));
    CHECK(m, lb_loop_add_reader(loop, p.r, nop, NULL));
    CHECK(m, lb_loop_add_writer(loop, p.w, nop, NULL));
    CHECK(m, lb_loop_remove_reader(loop, p.r));
    CHECK(m, lb_loop_remove_writer(loop, p.w));
    CHECK(m, lb_loop_add_signal_handler(loop, SIGUSR1, nop, NULL));
    CHECK(m, lb_loop_remove_signal_handler(loop, SIGUSR1));
    CHECK(m, lb_loop_set_exception_handler(loop, NULL, NULL));
    CHECK(m, lb_loop_set_debug(loop, true));
    CHECK(m, lb_loop_set_slow_callback_duration(loop, 1.0));
    CHECK(m, lb_loop_get_stats(loop, &st));
    CHECK(m, lb_loop_run_in_executor(loop, NULL, work_nop, NULL, &out));
    CHECK(m, lb_loop_set_default_executor(loop, NULL));
    CHECK(m, lb_group_new(loop, &g));
    CHECK(m, lb_driver_backend_fd(loop));
    CHECK(m, lb_driver_dispatch(loop, 0, INT64_MAX));
    CHECK(m, lb_future_set_result(f, m, count_destroy));
    CHECK(m, lb_future_set_error(f, -EIO));
    CHECK(m, lb_future_cancel(f));
    CHECK(m, lb_future_add_done_callback(f, nop_done, NULL));
    CHECK(m, lb_future_set_result_threadsafe(f, m, count_destroy));
    CHECK(m, lb_future_set_error_threadsafe(f, -EIO));
    EXPECT(m, atomic_load(&destroyed) == 2);
    CHECK(m, lb_loop_run_in_executor_full(loop, NULL, work_nop, NULL, free, &out));
    CHECK(m, lb_coalesce_new(loop, coalesce_nop, NULL, NULL, &c2));
    CHECK(m, lb_coalesce_post(c, NULL));
    lb_coalesce_free(c);
    lb_future_unref(f);
    lb_loop_unref(loop);
    close_pipe(p);
}

static void walk_double_close(misuse *m) {
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_close(loop), 0);
    CHECK(m, lb_loop_close(loop));
    CHECK(m, lb_loop_close(loop));
    lb_loop_unref(loop);
}

static void close_from_callback(misuse *m) {
    CHECK(m, lb_loop_close(m->loop));
}

static void walk_close_running(misuse *m) {
    run_in_callback(m, close_from_callback);
    EXPECT(m, !lb_loop_is_closed(m->loop));
}

/* ------------------------------------------------------------------ */
/* Reference counting                                                  */
/* ------------------------------------------------------------------ */

static void walk_double_unref_reported(misuse *m) {
    /* A pending timer's handle: the loop still holds it. */
    lb_handle *h = NULL;
    bool ran = false;
    assert_int_equal(lb_loop_call_later(m->loop, 0.01, set_flag, &ran, &h), 0);
    lb_handle_unref(h);
    lb_handle_unref(h);
    check_logged(m, "lb_handle_unref twice on a pending timer");
    fixture_run_until(m->loop, &ran, 10.0); /* and it still runs */

#ifndef MISUSE_ASAN
    /* Freed, in a slot not reused yet: ASan builds report these instead
     * (double-unref-freed). */
    ran = false;
    assert_int_equal(lb_loop_call_soon(m->loop, set_flag, &ran, &h), 0);
    fixture_run_until(m->loop, &ran, 10.0);
    lb_handle_unref(h);
    lb_handle_unref(h);
    check_logged(m, "lb_handle_unref twice");

    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    lb_future_unref(f);
    lb_future_unref(f);
    check_logged(m, "lb_future_unref twice");
    /* And again: each extra unref is reported. */
    lb_future_unref(f);
    check_logged(m, "lb_future_unref a third time");
#endif
}

#ifdef MISUSE_ASAN
/* The child makes the mistake; its sanitizer report comes back through
 * a pipe. */
/* The mistakes the sanitizer must see, each in a child process (the
 * report ends it). */
static void task_unref_twice(void) {
    lb_loop *loop = NULL;
    lb_task *t = NULL;
    if (lb_loop_new(&loop, lb_driver_native()) < 0 ||
        lb_task_spawn(loop, task_nop, NULL, NULL, &t) < 0 ||
        lb_loop_run_until_complete(loop, lb_task_future(t)) < 0)
        _exit(2);
    lb_task_unref(t);
    lb_task_unref(t); /* the mistake */
}

static void stop_at_once(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static void handle_unref_twice(void) {
    lb_loop *loop = NULL;
    lb_handle *h = NULL;
    if (lb_loop_new(&loop, lb_driver_native()) < 0 ||
        lb_loop_call_soon(loop, stop_at_once, NULL, &h) < 0 || lb_loop_run_forever(loop) < 0)
        _exit(2);
    lb_handle_unref(h);
    lb_handle_unref(h); /* the mistake: the handle ran and was freed */
}

static void future_unref_twice(void) {
    lb_loop *loop = NULL;
    lb_future *f = NULL;
    if (lb_loop_new(&loop, lb_driver_native()) < 0 || lb_future_new(loop, &f) < 0)
        _exit(2);
    lb_future_unref(f);
    lb_future_unref(f); /* the mistake */
}

static void expect_sanitizer_report(misuse *m, const char *what, void (*mistake)(void)) {
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        dup2(out[1], STDERR_FILENO);
        mistake();
        _exit(0);
    }
    close(out[1]);
    char report[8192];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof report - 1 && (n = read(out[0], report + len, sizeof report - 1 - len)) > 0)
        len += (size_t)n;
    report[len] = '\0';
    close(out[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    m->checks++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        record(m, "the second %s went unreported", what);
    else if (!contains_gist(m->row, report))
        record(m, "%s: the sanitizer's report contains none of the row's phrases: %.200s", what,
               report);
}

static void walk_double_unref_freed(misuse *m) {
    expect_sanitizer_report(m, "lb_task_unref", task_unref_twice);
    /* Handles and futures come from the loop's slabs, poisoned when
     * freed in ASan builds. */
    expect_sanitizer_report(m, "lb_handle_unref", handle_unref_twice);
    expect_sanitizer_report(m, "lb_future_unref", future_unref_twice);
}
#else
/* Only a sanitizer build can see a use after free: the row is skipped
 * before this could run (see test_misuse_row). */
static void walk_double_unref_freed(misuse *m) {
    record(m, "walked without a sanitizer");
}
#endif

static void walk_cancel_after_done(misuse *m) {
    lb_handle *h = NULL;
    bool ran = false;
    assert_int_equal(lb_loop_call_soon(m->loop, set_flag, &ran, &h), 0);
    fixture_run_until(m->loop, &ran, 10.0);
    CHECK(m, lb_handle_cancel(h));
    EXPECT(m, !lb_handle_is_cancelled(h));
    lb_handle_unref(h);

    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    assert_int_equal(lb_future_set_result(f, NULL, NULL), 0);
    CHECK(m, lb_future_cancel(f));
    EXPECT(m, !lb_future_is_cancelled(f));
    lb_future_unref(f);

    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(m->loop, task_nop, NULL, NULL, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(m->loop, lb_task_future(t)), 0);
    CHECK(m, lb_task_cancel(t));
    EXPECT(m, lb_future_result(lb_task_future(t), NULL) == 0);
    lb_task_unref(t);
}

/* ------------------------------------------------------------------ */
/* Tasks and loops                                                     */
/* ------------------------------------------------------------------ */

static void await_outside(misuse *m) {
    lb_future *f = NULL;
    lb_group *g = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    assert_int_equal(lb_group_new(m->loop, &g), 0);
    CHECK(m, lb_await(f, NULL));
    CHECK(m, lb_sleep(0.1));
    CHECK(m, lb_yield());
    CHECK(m, lb_wait_for(f, 1.0, NULL));
    CHECK(m, lb_group_wait(g));
    CHECK(m, lb_to_thread(work_nop, NULL, NULL));
    CHECK(m, lb_task_return(NULL, NULL));
    CHECK(m, lb_to_thread_full(work_nop, NULL, free, NULL));
    lb_group_unref(g);
    lb_future_unref(f);
}

static void walk_outside_task(misuse *m) {
    await_outside(m);                  /* plain code */
    run_in_callback(m, await_outside); /* a callback of the running loop */
}

static void await_self(misuse *m) {
    lb_future *own = lb_task_future(lb_task_current());
    CHECK(m, lb_await(own, NULL));
    CHECK(m, lb_wait_for(own, 1.0, NULL));
    CHECK(m, lb_wait_for(own, -1.0, NULL));
}

static void walk_await_own_future(misuse *m) {
    run_in_task(m, await_self);
}

typedef struct two_loops {
    misuse *m;
    lb_loop *other;
    lb_future *foreign;
    fd_pair pipe;
    lb_task *task;     /* of m->loop, for the calls of another thread */
    lb_handle *handle; /* likewise */
} two_loops;

static two_loops pair;

static void await_foreign(misuse *m) {
    CHECK(m, lb_await(pair.foreign, NULL));
    CHECK(m, lb_wait_for(pair.foreign, 1.0, NULL));
}

static void walk_other_loop(misuse *m) {
    pair = (two_loops){m, fixture_loop_new(), NULL, {-1, -1}, NULL, NULL};
    lb_future *mine = NULL, *out = NULL;
    assert_int_equal(lb_future_new(pair.other, &pair.foreign), 0);
    assert_int_equal(lb_future_new(m->loop, &mine), 0);
    lb_future *both[2] = {mine, pair.foreign};
    CHECK(m, lb_gather(both, 2, 0, &out));
    CHECK(m, lb_loop_run_until_complete(m->loop, pair.foreign));
    run_in_task(m, await_foreign);
    lb_future_unref(mine);
    lb_future_unref(pair.foreign);
    fixture_loop_free(pair.other);
}

static void run_again(misuse *m) {
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_loop_run_forever(m->loop));
    CHECK(m, lb_loop_run_until_complete(m->loop, f));
    lb_future_unref(f);
}

static void walk_run_inside_run(misuse *m) {
    run_in_callback(m, run_again);
}

static void run_second(misuse *m) {
    CHECK(m, lb_loop_run_forever(pair.other));
    CHECK(m, lb_loop_run_until_complete(pair.other, pair.foreign));
}

static void walk_run_other_loop(misuse *m) {
    pair = (two_loops){m, fixture_loop_new(), NULL, {-1, -1}, NULL, NULL};
    assert_int_equal(lb_future_new(pair.other, &pair.foreign), 0);
    run_in_callback(m, run_second);
    lb_future_unref(pair.foreign);
    fixture_loop_free(pair.other);
}

/* The loop is idle while its home thread lets another misuse it. */
static bool wrong_thread_idle;

static void *wrong_thread_main(void *data) {
    misuse *m = data;
    lb_loop *loop = m->loop;
    lb_future *out = NULL;
    lb_group *g = NULL;
    fd_pair p = pair.pipe;
    /* A future made on the loop's thread, before this thread started. */
    lb_future *f = pair.foreign;
    CHECK(m, lb_loop_call_soon(loop, nop, NULL, NULL));
    CHECK(m, lb_loop_call_later(loop, 0.1, nop, NULL, NULL));
    CHECK(m, lb_loop_call_at(loop, 1.0, nop, NULL, NULL));
    CHECK(m, lb_future_new(loop, &out));
    CHECK(m, lb_future_set_result(f, NULL, NULL));
    CHECK(m, lb_future_set_error(f, -EIO));
    CHECK(m, lb_future_cancel(f));
    CHECK(m, lb_future_add_done_callback(f, nop_done, NULL));
    CHECK(m, lb_task_spawn(loop, task_nop, NULL, NULL, NULL));
    CHECK(m, lb_task_cancel(pair.task));
    CHECK(m, lb_handle_cancel(pair.handle));
    CHECK(m, lb_loop_add_reader(loop, p.r, nop, NULL));
    CHECK(m, lb_loop_remove_reader(loop, p.r));
    CHECK(m, lb_loop_add_signal_handler(loop, SIGUSR1, nop, NULL));
    CHECK(m, lb_loop_stop(loop));
    CHECK(m, lb_loop_set_debug(loop, true));
    CHECK(m, lb_loop_set_exception_handler(loop, NULL, NULL));
    CHECK(m, lb_loop_run_in_executor(loop, NULL, work_nop, NULL, &out));
    CHECK(m, lb_group_new(loop, &g));
    if (!wrong_thread_idle) {
        /* A loop nobody runs is adopted by these instead. */
        CHECK(m, lb_loop_run_forever(loop));
        CHECK(m, lb_loop_close(loop));
    }
    return NULL;
}

/* Runs thread_main(m) on a thread of its own and waits for it. */
static void on_other_thread(misuse *m, void *(*thread_main)(void *)) {
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, thread_main, m), 0);
    pthread_join(th, NULL);
}

static void from_other_thread(misuse *m) {
    on_other_thread(m, wrong_thread_main);
}

/* A task and a timer of m->loop for another thread to misuse; made in
 * a callback, so that the loop is bound to this thread on every driver. */
static void make_task_and_timer(misuse *m) {
    assert_int_equal(lb_task_spawn(m->loop, task_nop, NULL, NULL, &pair.task), 0);
    assert_int_equal(lb_loop_call_later(m->loop, 100.0, nop, NULL, &pair.handle), 0);
}

static void drop_task_and_timer(misuse *m) {
    lb_handle_cancel(pair.handle);
    pair.handle = lb_handle_unref(pair.handle);
    assert_int_equal(fixture_finish(m->loop, pair.task, 10), 0); /* it was not cancelled */
}

static void walk_wrong_thread(misuse *m) {
    pair = (two_loops){m, NULL, NULL, make_pipe(), NULL, NULL};
    assert_int_equal(lb_future_new(m->loop, &pair.foreign), 0);
    run_in_callback(m, make_task_and_timer);
    run_in_callback(m, from_other_thread);
    /* Idle between runs, the loop is still its home thread's. */
    wrong_thread_idle = true;
    from_other_thread(m);
    wrong_thread_idle = false;
    EXPECT(m, !lb_future_is_done(pair.foreign));
    EXPECT(m, !lb_handle_is_cancelled(pair.handle));
    lb_future_unref(pair.foreign);
    close_pipe(pair.pipe);
    drop_task_and_timer(m);
}

static void *wrong_thread_refs_main(void *data) {
    misuse *m = data;
    EXPECT(m, lb_task_ref(pair.task) == NULL);
    check_logged(m, "lb_task_ref on another thread");
    lb_task_unref(pair.task);
    check_logged(m, "lb_task_unref on another thread");
    EXPECT(m, lb_handle_ref(pair.handle) == NULL);
    check_logged(m, "lb_handle_ref on another thread");
    lb_handle_unref(pair.handle);
    check_logged(m, "lb_handle_unref on another thread");
    return NULL;
}

static void refs_from_other_thread(misuse *m) {
    on_other_thread(m, wrong_thread_refs_main);
}

/* The refused calls left the objects as they were: the references the
 * test drops afterwards are still its own. */
static void walk_wrong_thread_ref(misuse *m) {
    pair = (two_loops){m, NULL, NULL, {-1, -1}, NULL, NULL};
    run_in_callback(m, make_task_and_timer);
    run_in_callback(m, refs_from_other_thread);
    refs_from_other_thread(m); /* idle between runs: the same */
    drop_task_and_timer(m);
}

static void wait_here(misuse *m) {
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_future_wait(f, 1.0, NULL));
    CHECK(m, lb_future_wait(f, -1.0, NULL));
    lb_future_unref(f);
}

static void walk_wait_on_loop_thread(misuse *m) {
    run_in_callback(m, wait_here);
}

/* ------------------------------------------------------------------ */
/* fds and signals                                                     */
/* ------------------------------------------------------------------ */

static void walk_bad_fd(misuse *m) {
    int closed = fcntl(0, F_DUPFD_CLOEXEC, 700);
    assert_true(closed >= 0);
    close(closed);
    CHECK(m, lb_loop_add_reader(m->loop, -1, nop, NULL));
    CHECK(m, lb_loop_add_writer(m->loop, -5, nop, NULL));
    CHECK(m, lb_loop_add_reader(m->loop, closed, nop, NULL));
    CHECK(m, lb_loop_add_writer(m->loop, closed, nop, NULL));
}

static void walk_unwatchable_fd(misuse *m) {
    FILE *file = tmpfile();
    assert_non_null(file);
    CHECK(m, lb_loop_add_reader(m->loop, fileno(file), nop, NULL));
    CHECK(m, lb_loop_add_writer(m->loop, fileno(file), nop, NULL));
    fclose(file);
}

static void on_signal_nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

/* The signal pipe's read end takes the lowest free number. */
static void walk_loop_own_fd(misuse *m) {
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    assert_int_equal(lb_loop_add_signal_handler(m->loop, SIGUSR2, on_signal_nop, NULL), 0);
    CHECK(m, lb_loop_add_reader(m->loop, probe, nop, NULL));
    CHECK(m, lb_loop_add_writer(m->loop, probe, nop, NULL));
    EXPECT(m, lb_loop_remove_reader(m->loop, probe) == 0);
    assert_int_equal(lb_loop_remove_signal_handler(m->loop, SIGUSR2), 1);
}

/* Closes the pipe end at fd and makes fd name a fresh pipe's write end. */
static fd_pair reuse_number(int fd) {
    fd_pair fresh = make_pipe();
    close(fd);
    assert_int_equal(dup2(fresh.w, fd), fd);
    close(fresh.w);
    fresh.w = fd;
    return fresh;
}

static void walk_fd_closed_while_watched(misuse *m) {
    bool old_ran = false, new_ran = false;
    /* Watched, closed, and its number reused: watching the new file
     * drops the old watch, whose callback never runs for it. */
    fd_pair a = make_pipe();
    assert_int_equal(lb_loop_add_reader(m->loop, a.r, set_flag, &old_ran), 0);
    fd_pair b = reuse_number(a.r);
    assert_int_equal(lb_loop_add_writer(m->loop, b.w, set_flag, &new_ran), 0);
    check_logged(m, "lb_loop_add_writer on a reused fd");
    fixture_run_until(m->loop, &new_ran, 10.0);
    EXPECT(m, !old_ran);
    EXPECT(m, lb_loop_remove_writer(m->loop, b.w) == 1);
    close(a.w);
    close_pipe(b);

    /* Watched both ways, closed, reused: removing one direction drops
     * the other, which belonged to the old file. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(lb_loop_add_reader(m->loop, sv[0], set_flag, &old_ran), 0);
    assert_int_equal(lb_loop_add_writer(m->loop, sv[0], set_flag, &old_ran), 0);
    fd_pair c = reuse_number(sv[0]);
    EXPECT(m, lb_loop_remove_reader(m->loop, c.w) == 1);
    check_logged(m, "lb_loop_remove_reader on a reused fd");
    EXPECT(m, lb_loop_remove_writer(m->loop, c.w) == 0);
    close(sv[1]);
    close_pipe(c);
    EXPECT(m, !old_ran);
}

static void lengths_in_task(misuse *m) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    char buf[16] = {0};
    CHECK(m, (int)lb_write(sv[0], buf, (size_t)-1, 1));
    CHECK(m, (int)lb_write_some(sv[0], buf, (size_t)-1, 1));
    CHECK(m, (int)lb_read(sv[0], buf, (size_t)SSIZE_MAX + 1, 1));
    lb_stream *s = NULL;
    assert_int_equal(lb_stream_new(m->loop, sv[0], NULL, &s), 0);
    CHECK(m, lb_stream_write(s, buf, (size_t)-1));
    CHECK(m, (int)lb_stream_read(s, buf, (size_t)-1));
    CHECK(m, (int)lb_stream_read_exactly(s, buf, (size_t)-1));
    /* Nothing of what follows buf was sent. */
    EXPECT(m, recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN);
    lb_stream_unref(s);
    close(sv[1]);
}

static void walk_length_too_large(misuse *m) {
    run_in_task(m, lengths_in_task);
}

static void walk_signal_out_of_range(misuse *m) {
    CHECK(m, lb_loop_add_signal_handler(m->loop, 0, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, -3, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, NSIG, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, 100000, nop, NULL));
    CHECK(m, lb_loop_remove_signal_handler(m->loop, 0));
    CHECK(m, lb_loop_remove_signal_handler(m->loop, NSIG));
}

static void walk_signal_uncatchable(misuse *m) {
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGKILL, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGSTOP, nop, NULL));
    CHECK(m, lb_loop_remove_signal_handler(m->loop, SIGKILL));
}

static void walk_signal_synchronous(misuse *m) {
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGSEGV, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGBUS, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGFPE, nop, NULL));
    CHECK(m, lb_loop_add_signal_handler(m->loop, SIGILL, nop, NULL));
    CHECK(m, lb_loop_remove_signal_handler(m->loop, SIGSEGV));
}

/* ------------------------------------------------------------------ */
/* Futures                                                             */
/* ------------------------------------------------------------------ */

static void walk_future_done_twice(misuse *m) {
    lb_future *f = NULL, *c = NULL;
    atomic_store(&destroyed, 0);
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    assert_int_equal(lb_future_set_result(f, m, NULL), 0);
    CHECK(m, lb_future_set_result(f, m, count_destroy));
    CHECK(m, lb_future_set_error(f, -EIO));
    assert_int_equal(lb_future_new(m->loop, &c), 0);
    assert_int_equal(lb_future_cancel(c), 1);
    CHECK(m, lb_future_set_result(c, m, count_destroy));
    EXPECT(m, atomic_load(&destroyed) == 2);
    void *v = NULL;
    EXPECT(m, lb_future_result(f, &v) == 0 && v == m);
    lb_future_unref(f);
    lb_future_unref(c);
}

static int sleep_briefly(lb_task *task, void *data) {
    (void)task;
    (void)data;
    lb_sleep(0.01);
    return lb_task_return((void *)0x1, NULL);
}

static void walk_task_future_by_hand(misuse *m) {
    lb_task *t = NULL;
    atomic_store(&destroyed, 0);
    assert_int_equal(lb_task_spawn(m->loop, sleep_briefly, NULL, NULL, &t), 0);
    CHECK(m, lb_future_set_result(lb_task_future(t), m, count_destroy));
    CHECK(m, lb_future_set_error(lb_task_future(t), -EIO));
    /* From another thread the request is accepted, then dropped with its
     * value, as a late result is. */
    assert_int_equal(lb_future_set_result_threadsafe(lb_task_future(t), m, count_destroy), 0);
    assert_int_equal(lb_loop_run_until_complete(m->loop, lb_task_future(t)), 0);
    void *v = NULL;
    EXPECT(m, lb_future_result(lb_task_future(t), &v) == 0 && v == (void *)0x1);
    EXPECT(m, atomic_load(&destroyed) == 2);
    lb_task_unref(t);
}

static void walk_bad_error_code(misuse *m) {
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_future_set_error(f, 0));
    CHECK(m, lb_future_set_error(f, 5));
    CHECK(m, lb_future_set_error(f, -ECANCELED));
    CHECK(m, lb_future_set_error_threadsafe(f, 0));
    CHECK(m, lb_future_set_error_threadsafe(f, -ECANCELED));
    EXPECT(m, !lb_future_is_done(f));
    lb_future_unref(f);
}

/* ------------------------------------------------------------------ */
/* Times                                                               */
/* ------------------------------------------------------------------ */

static void sleep_negative(misuse *m) {
    CHECK(m, lb_sleep(-1.0));
    CHECK(m, lb_sleep(-INFINITY));
}

static void walk_negative_delay(misuse *m) {
    bool a = false, b = false, c = false;
    CHECK(m, lb_loop_call_later(m->loop, -1.0, set_flag, &a, NULL));
    CHECK(m, lb_loop_call_at(m->loop, lb_loop_time(m->loop) - 10.0, set_flag, &b, NULL));
    CHECK(m, lb_loop_call_later(m->loop, -INFINITY, set_flag, &c, NULL));
    fixture_run_until(m->loop, &a, 10.0);
    fixture_run_until(m->loop, &b, 10.0);
    fixture_run_until(m->loop, &c, 10.0);
    run_in_task(m, sleep_negative);
}

static void nan_in_task(misuse *m) {
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_sleep(NAN));
    CHECK(m, lb_wait_for(f, NAN, NULL));
    lb_future_unref(f);
}

static void walk_nan_delay(misuse *m) {
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(m->loop, &f), 0);
    CHECK(m, lb_loop_call_later(m->loop, NAN, nop, NULL, NULL));
    CHECK(m, lb_loop_call_at(m->loop, NAN, nop, NULL, NULL));
    CHECK(m, lb_loop_set_slow_callback_duration(m->loop, NAN));
    CHECK(m, lb_future_wait(f, NAN, NULL));
    run_in_task(m, nan_in_task);
    lb_future_unref(f);
}

static void walk_infinite_delay(misuse *m) {
    lb_loop *loop = fixture_loop_new();
    bool ran = false, tick = false;
    lb_handle *h[3] = {NULL, NULL, NULL};
    CHECK(m, lb_loop_call_later(loop, INFINITY, set_flag, &ran, &h[0]));
    CHECK(m, lb_loop_call_later(loop, 1e300, set_flag, &ran, &h[1]));
    CHECK(m, lb_loop_call_at(loop, INFINITY, set_flag, &ran, &h[2]));
    assert_int_equal(lb_loop_call_later(loop, 0.01, set_flag, &tick, NULL), 0);
    fixture_run_until(loop, &tick, 10.0);
    lb_loop_stats st;
    assert_int_equal(lb_loop_get_stats(loop, &st), 0);
    EXPECT(m, st.timers_alive == 3);
    fixture_loop_free(loop);
    EXPECT(m, !ran);
    for (int i = 0; i < 3; i++)
        lb_handle_unref(h[i]);
}

/* ------------------------------------------------------------------ */
/* Closing loops, loop threads, executors                              */
/* ------------------------------------------------------------------ */

typedef struct closing {
    misuse *m;
    lb_loop *loop;
    bool sleeping;
} closing;

static int spawn_while_closing(lb_task *task, void *data) {
    closing *c = data;
    lb_future *out = NULL;
    (void)task;
    c->sleeping = true;
    int r = lb_sleep(60.0);
    if (r != -ECANCELED)
        return r;
    /* Unwinding in lb_loop_close: new work is refused. */
    CHECK(c->m, lb_task_spawn(c->loop, task_nop, NULL, NULL, NULL));
    CHECK(c->m, lb_loop_run_in_executor(c->loop, NULL, work_nop, NULL, &out));
    return r;
}

static void walk_spawn_closing(misuse *m) {
    closing c = {m, fixture_loop_new(), false};
    assert_int_equal(lb_task_spawn(c.loop, spawn_while_closing, &c, NULL, NULL), 0);
    fixture_run_until(c.loop, &c.sleeping, 10.0);
    fixture_loop_free(c.loop);
}

static void stop_self(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

/* Waits (on this thread, the loop runs on another) until cond(arg) or
 * ten seconds passed; returns cond(arg). */
static bool eventually(bool (*cond)(void *arg), void *arg) {
    double deadline = fixture_now() + 10.0;
    while (!cond(arg) && fixture_now() < deadline) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return cond(arg);
}

static bool loop_closed(void *loop) {
    return lb_loop_is_closed(loop);
}

static void walk_stopped_loop_thread(misuse *m) {
    lb_loop_thread *lt = NULL;
    lb_future *f = NULL;
    assert_int_equal(lb_loop_thread_start(&lt, NULL), 0);
    assert_int_equal(lb_loop_thread_call(lt, stop_self, NULL), 0);
    assert_true(eventually(loop_closed, lb_loop_thread_loop(lt)));
    CHECK(m, lb_loop_thread_submit(lt, task_nop, NULL, NULL, &f));
    CHECK(m, lb_loop_thread_call(lt, nop, NULL));
    assert_int_equal(lb_loop_thread_stop(lt), 0);
}

typedef struct self_stop {
    misuse *m;
    lb_loop_thread *lt;
    atomic_bool done;
} self_stop;

static void stop_from_inside(lb_loop *loop, void *data) {
    self_stop *s = data;
    lb_future *f = NULL;
    (void)loop;
    CHECK(s->m, lb_loop_thread_stop(s->lt));
    CHECK(s->m, lb_loop_thread_submit(s->lt, task_nop, NULL, NULL, &f));
    atomic_store(&s->done, true);
}

static bool self_stop_done(void *arg) {
    return atomic_load(&((self_stop *)arg)->done);
}

static void walk_loop_thread_self(misuse *m) {
    self_stop s = {.m = m};
    assert_int_equal(lb_loop_thread_start(&s.lt, NULL), 0);
    assert_int_equal(lb_loop_thread_call(s.lt, stop_from_inside, &s), 0);
    assert_true(eventually(self_stop_done, &s));
    assert_int_equal(lb_loop_thread_stop(s.lt), 0);
}

static void walk_executor_shut_down(misuse *m) {
    lb_executor *e = NULL;
    lb_future *f = NULL;
    assert_int_equal(lb_executor_new(&e, 1), 0);
    assert_int_equal(lb_executor_shutdown(e, true, false), 0);
    CHECK(m, lb_loop_run_in_executor(m->loop, e, work_nop, NULL, &f));
    assert_int_equal(lb_loop_set_default_executor(m->loop, e), 0);
    CHECK(m, lb_loop_run_in_executor(m->loop, NULL, work_nop, NULL, &f));
    assert_int_equal(lb_loop_set_default_executor(m->loop, NULL), 0);
    lb_executor_unref(e);
}

typedef struct pool_job {
    misuse *m;
    lb_executor *e;
} pool_job;

static int shutdown_own_pool(void *data, void **ret) {
    pool_job *j = data;
    *ret = NULL;
    CHECK(j->m, lb_executor_shutdown(j->e, true, false));
    return 0;
}

static void walk_executor_wait_self(misuse *m) {
    pool_job j = {m, NULL};
    lb_future *f = NULL;
    assert_int_equal(lb_executor_new(&j.e, 1), 0);
    assert_int_equal(lb_loop_run_in_executor(m->loop, j.e, shutdown_own_pool, &j, &f), 0);
    assert_int_equal(lb_loop_run_until_complete(m->loop, f), 0);
    EXPECT(m, lb_future_result(f, NULL) == 0);
    lb_future_unref(f);
    lb_executor_unref(j.e);
}

static void walk_bad_stack_size(misuse *m) {
    lb_group *g = NULL;
    lb_task_options tiny = {.stack_size = 4096};
    lb_task_options huge = {.stack_size = (size_t)1 << 30};
    assert_int_equal(lb_group_new(m->loop, &g), 0);
    CHECK(m, lb_task_spawn(m->loop, task_nop, NULL, &tiny, NULL));
    CHECK(m, lb_task_spawn(m->loop, task_nop, NULL, &huge, NULL));
    CHECK(m, lb_group_spawn(g, task_nop, NULL, &tiny, NULL));
    lb_group_unref(g);
}

static int fail_at_once(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return -EIO;
}

static int sleep_long(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(60.0);
}

static void group_after_failure(misuse *m) {
    lb_group *g = NULL;
    assert_int_equal(lb_group_new(m->loop, &g), 0);
    assert_int_equal(lb_group_spawn(g, sleep_long, NULL, NULL, NULL), 0);
    assert_int_equal(lb_group_spawn(g, fail_at_once, NULL, NULL, NULL), 0);
    EXPECT(m, lb_group_wait(g) == -EIO);
    CHECK(m, lb_group_spawn(g, task_nop, NULL, NULL, NULL));
    lb_group_unref(g);
    assert_int_equal(lb_group_new(m->loop, &g), 0);
    EXPECT(m, lb_group_cancel(g) == 0);
    CHECK(m, lb_group_spawn(g, task_nop, NULL, NULL, NULL));
    lb_group_unref(g);
}

static void walk_group_after_failure(misuse *m) {
    run_in_task(m, group_after_failure);
}

static void drain_group_here(misuse *m) {
    lb_group *g = NULL;
    assert_int_equal(lb_group_new(m->loop, &g), 0);
    CHECK(m, lb_group_cancel_and_drain(g, 1.0));
    lb_group_unref(g);
}

static void walk_group_drain_in_loop(misuse *m) {
    run_in_callback(m, drain_group_here);
    run_in_task(m, drain_group_here);
}

static void walk_group_bad_flags(misuse *m) {
    lb_group *g = NULL;
    CHECK(m, lb_group_new_full(m->loop, 0x80, &g));
    EXPECT(m, g == NULL);
}

static void walk_gather_nothing_no_loop(misuse *m) {
    lb_future *out = NULL;
    CHECK(m, lb_gather(NULL, 0, 0, &out));
    EXPECT(m, out == NULL);
}

/* ------------------------------------------------------------------ */
/* Drivers                                                             */
/* ------------------------------------------------------------------ */

static void walk_unknown_driver(misuse *m) {
    const lb_driver *d = NULL;
    CHECK(m, lb_driver_find("nope", &d));
    CHECK(m, lb_driver_find("", &d));
}

static int bad_attach(lb_loop *loop, void *arg, void **state) {
    (void)loop;
    (void)arg;
    *state = NULL;
    return 0;
}

static void bad_detach(lb_loop *loop, void *state) {
    (void)loop;
    (void)state;
}

static void walk_bad_driver(misuse *m) {
    static const lb_driver old_abi = {
        .abi_version = 0, .name = "old", .attach = bad_attach, .detach = bad_detach};
    static const lb_driver no_run = {.abi_version = LB_DRIVER_ABI_VERSION,
                                     .name = "no-run",
                                     .attach = bad_attach,
                                     .detach = bad_detach};
    lb_loop *loop = NULL;
    CHECK(m, lb_loop_new(&loop, &old_abi));
    CHECK(m, lb_loop_new(&loop, &no_run));
    CHECK(m, lb_driver_register(&old_abi));
    CHECK(m, lb_driver_register(&no_run));
    EXPECT(m, loop == NULL);
}

/* ------------------------------------------------------------------ */
/* The walk                                                            */
/* ------------------------------------------------------------------ */

static const struct {
    const char *id;
    void (*walk)(misuse *m);
} walkers[] = {
    {"null-loop", walk_null_loop},
    {"null-callback", walk_null_callback},
    {"null-ret", walk_null_ret},
    {"null-future", walk_null_future},
    {"null-task", walk_null_task},
    {"null-handle", walk_null_handle},
    {"null-other", walk_null_other},
    {"null-unref", walk_null_unref},
    {"closed-loop", walk_closed_loop},
    {"double-close", walk_double_close},
    {"close-running", walk_close_running},
    {"double-unref-reported", walk_double_unref_reported},
    {"double-unref-freed", walk_double_unref_freed},
    {"cancel-after-done", walk_cancel_after_done},
    {"outside-task", walk_outside_task},
    {"await-own-future", walk_await_own_future},
    {"other-loop", walk_other_loop},
    {"run-inside-run", walk_run_inside_run},
    {"run-other-loop", walk_run_other_loop},
    {"wrong-thread", walk_wrong_thread},
    {"wrong-thread-ref", walk_wrong_thread_ref},
    {"wait-on-loop-thread", walk_wait_on_loop_thread},
    {"bad-fd", walk_bad_fd},
    {"unwatchable-fd", walk_unwatchable_fd},
    {"loop-own-fd", walk_loop_own_fd},
    {"fd-closed-while-watched", walk_fd_closed_while_watched},
    {"length-too-large", walk_length_too_large},
    {"signal-out-of-range", walk_signal_out_of_range},
    {"signal-uncatchable", walk_signal_uncatchable},
    {"signal-synchronous", walk_signal_synchronous},
    {"future-done-twice", walk_future_done_twice},
    {"task-future-by-hand", walk_task_future_by_hand},
    {"bad-error-code", walk_bad_error_code},
    {"negative-delay", walk_negative_delay},
    {"nan-delay", walk_nan_delay},
    {"infinite-delay", walk_infinite_delay},
    {"spawn-closing", walk_spawn_closing},
    {"stopped-loop-thread", walk_stopped_loop_thread},
    {"loop-thread-self", walk_loop_thread_self},
    {"executor-shut-down", walk_executor_shut_down},
    {"executor-wait-self", walk_executor_wait_self},
    {"bad-stack-size", walk_bad_stack_size},
    {"group-after-failure", walk_group_after_failure},
    {"group-drain-in-loop", walk_group_drain_in_loop},
    {"group-bad-flags", walk_group_bad_flags},
    {"gather-nothing-no-loop", walk_gather_nothing_no_loop},
    {"unknown-driver", walk_unknown_driver},
    {"bad-driver", walk_bad_driver},
};

enum { N_WALKERS = sizeof walkers / sizeof walkers[0] };

static void test_misuse_row(void **state) {
    const row *r = *state;
    void (*walk)(misuse *m) = NULL;
    for (size_t i = 0; i < N_WALKERS; i++)
        if (strcmp(walkers[i].id, r->id) == 0)
            walk = walkers[i].walk;
    if (!walk)
        fail_msg("docs/errors.md has a row '%s' that no check walks", r->id);

#ifndef MISUSE_ASAN
    if (r->kind == OUTCOME_ASAN)
        skip(); /* before anything is allocated: skip() does not return */
#endif
    misuse m = {.row = r, .loop = fixture_loop_new()};
    lb_set_log_handler(capture_log, &m);
    walk(&m);
    lb_set_log_handler(NULL, NULL);
    fixture_loop_free(m.loop);
    if (m.failures)
        fail_msg("row %s: %s (%d problems)", r->id, m.first_failure, m.failures);
    if (m.checks == 0)
        fail_msg("row %s: the check made no call", r->id);
}

static void test_misuse_every_check_documented(void **state) {
    (void)state;
    for (size_t i = 0; i < N_WALKERS; i++) {
        bool found = false;
        for (size_t k = 0; k < n_rows; k++)
            found |= strcmp(rows[k].id, walkers[i].id) == 0;
        if (!found)
            fail_msg("the check '%s' has no row in docs/errors.md", walkers[i].id);
    }
}

static void test_misuse_table_readable(void **state) {
    (void)state;
    if (parse_error[0])
        fail_msg("docs/errors.md: %s", parse_error);
}

int run_misuse_tests(void) {
    static struct CMUnitTest tests[MAX_ROWS + 2];
    size_t n = 0;
    load_rows();
    tests[n++] = (struct CMUnitTest){.name = "misuse_table_readable",
                                     .test_func = test_misuse_table_readable};
    tests[n++] = (struct CMUnitTest){.name = "misuse_every_check_documented",
                                     .test_func = test_misuse_every_check_documented};
    for (size_t i = 0; i < n_rows; i++)
        tests[n++] = (struct CMUnitTest){
            .name = rows[i].name, .test_func = test_misuse_row, .initial_state = &rows[i]};
    return _cmocka_run_group_tests("misuse", tests, n, NULL, NULL);
}
