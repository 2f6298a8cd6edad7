/* SPDX-License-Identifier: MIT */
/* Subprocesses: pipes both ways, exit codes, exit by signal, kill and
 * terminate, environment and working directory, waits that are cancelled
 * or time out, no zombie in any case (a child running when the loop
 * closes is killed and reaped). Every test runs twice: with a pidfd, and
 * with the SIGCHLD watch that kernels without pidfd_open get. */
#include "fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exported by the library for tests: false forces the SIGCHLD watch. */
void lb__test_process_use_pidfd(bool allowed);

static int use_pidfd(void **state) {
    (void)state;
    lb__test_process_use_pidfd(true);
    return 0;
}

static int use_sigchld(void **state) {
    (void)state;
    lb__test_process_use_pidfd(false);
    return 0;
}

static int restore(void **state) {
    (void)state;
    lb__test_process_use_pidfd(true);
    return 0;
}

/* The child was reaped: no zombie is left under its pid. */
static void assert_reaped(pid_t pid) {
    errno = 0;
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static lb_process *spawn(lb_loop *loop, const char *const argv[], const lb_process_options *o) {
    lb_process *p = NULL;
    int r = lb_process_spawn(loop, argv, o, &p);
    if (r < 0)
        fail_msg("lb_process_spawn(%s): %s (%s)", argv[0], lb_strerror(r), lb_error_detail());
    return p;
}

typedef struct run {
    lb_process *p;
    double timeout;
    int wait_status;
    int code;
    char out[4096];
    size_t out_len;
    bool waiting;
} run;

static int collect_and_wait(lb_task *t, void *data) {
    run *r = data;
    (void)t;
    lb_stream *out = lb_process_stdout(r->p);
    if (out) {
        ssize_t n;
        while ((n = lb_stream_read(out, r->out + r->out_len, sizeof r->out - 1 - r->out_len)) > 0)
            r->out_len += (size_t)n;
        if (n < 0)
            return (int)n;
    }
    r->waiting = true;
    r->wait_status = lb_process_wait(r->p, r->timeout, &r->code);
    r->waiting = false;
    return 0;
}

static void run_to_end(lb_loop *loop, run *r) {
    r->timeout = r->timeout ? r->timeout : -1;
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, collect_and_wait, r), 60), 0);
}

static void test_process_echo_and_exit_codes(void **state) {
    (void)state;
    int fds = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    const char *echo[] = {"echo", "hello", "world", NULL};
    lb_process_options o = {.out = LB_STDIO_PIPE};
    run r = {.p = spawn(loop, echo, &o)};
    pid_t pid = lb_process_pid(r.p);
    assert_true(pid > 0);
    assert_null(lb_process_stdin(r.p));
    assert_null(lb_process_stderr(r.p));
    run_to_end(loop, &r);
    assert_int_equal(r.wait_status, 0);
    assert_int_equal(r.code, 0);
    assert_int_equal(r.out_len, 12);
    assert_memory_equal(r.out, "hello world\n", 12);
    int code = -1;
    assert_int_equal(lb_process_returncode(r.p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(lb_process_send_signal(r.p, SIGTERM), -ESRCH);
    lb_process_unref(r.p);
    assert_reaped(pid);

    const char *three[] = {"/bin/sh", "-c", "exit 3", NULL};
    run e = {.p = spawn(loop, three, NULL)};
    assert_int_equal(lb_process_returncode(e.p, NULL), -EAGAIN);
    run_to_end(loop, &e);
    assert_int_equal(e.code, 3);
    lb_process_unref(e.p);

    const char *by_signal[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    run s = {.p = spawn(loop, by_signal, NULL)};
    run_to_end(loop, &s);
    assert_int_equal(s.code, -SIGTERM);
    lb_process_unref(s.p);
    fixture_loop_free(loop);
    assert_int_equal(fixture_count_fds(), fds);
}

typedef struct cat_io {
    lb_process *p;
    unsigned char *sent;
    size_t len;
    unsigned char *got;
    size_t got_len;
} cat_io;

static int cat_writer(lb_task *t, void *data) {
    cat_io *c = data;
    (void)t;
    lb_stream *in = lb_process_stdin(c->p);
    for (size_t off = 0; off < c->len; off += 8192) {
        size_t n = c->len - off < 8192 ? c->len - off : 8192;
        int r = lb_stream_write(in, c->sent + off, n);
        if (r == 0)
            r = lb_stream_drain(in);
        if (r < 0)
            return r;
    }
    lb_stream_close(in); /* cat reads the end of its input */
    return lb_stream_wait_closed(in);
}

static int cat_reader(lb_task *t, void *data) {
    cat_io *c = data;
    (void)t;
    ssize_t n;
    while ((n = lb_stream_read(lb_process_stdout(c->p), c->got + c->got_len,
                               c->len + 1 - c->got_len)) > 0)
        c->got_len += (size_t)n;
    return (int)n;
}

/* Half a megabyte through cat and back: more than the pipes hold, so the
 * writer and the reader take turns. */
static void test_process_cat_round_trip(void **state) {
    (void)state;
    int fds = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    const char *cat[] = {"cat", NULL};
    lb_process_options o = {.in = LB_STDIO_PIPE, .out = LB_STDIO_PIPE};
    cat_io c = {.p = spawn(loop, cat, &o), .len = 512 * 1024};
    c.sent = malloc(c.len);
    c.got = malloc(c.len + 1);
    for (size_t i = 0; i < c.len; i++)
        c.sent[i] = (unsigned char)(i * 31 + (i >> 10));
    lb_task *w = fixture_spawn(loop, cat_writer, &c);
    lb_task *r = fixture_spawn(loop, cat_reader, &c);
    assert_int_equal(fixture_finish(loop, w, 60), 0);
    assert_int_equal(fixture_finish(loop, r, 60), 0);
    assert_int_equal(c.got_len, c.len);
    assert_memory_equal(c.got, c.sent, c.len);
    run done = {.p = c.p};
    run_to_end(loop, &done);
    assert_int_equal(done.code, 0);
    pid_t pid = lb_process_pid(c.p);
    lb_process_unref(c.p);
    assert_reaped(pid);
    free(c.sent);
    free(c.got);
    fixture_loop_free(loop);
    assert_int_equal(fixture_count_fds(), fds);
}

static void test_process_env_cwd_and_redirects(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    const char *env[] = {"GREETING=from the parent", "PATH=/usr/bin:/bin", NULL};
    const char *sh[] = {"/bin/sh", "-c", "echo \"$GREETING\"; pwd; echo oops >&2; cat", NULL};
    lb_process_options o = {
        .in = LB_STDIO_DEVNULL, /* cat ends at once */
        .out = LB_STDIO_PIPE,
        .err = LB_STDIO_STDOUT,
        .env = env,
        .cwd = "/",
    };
    run r = {.p = spawn(loop, sh, &o)};
    run_to_end(loop, &r);
    assert_int_equal(r.code, 0);
    r.out[r.out_len] = '\0';
    assert_string_equal(r.out, "from the parent\n/\noops\n");
    lb_process_unref(r.p);

    /* stderr to /dev/null: nothing comes back. */
    const char *quiet[] = {"/bin/sh", "-c", "echo hidden >&2", NULL};
    lb_process_options q = {.out = LB_STDIO_PIPE, .err = LB_STDIO_DEVNULL};
    run n = {.p = spawn(loop, quiet, &q)};
    run_to_end(loop, &n);
    assert_int_equal(n.out_len, 0);
    lb_process_unref(n.p);
    fixture_loop_free(loop);
}

/* Valgrind runs glibc's vfork-style posix_spawn as a plain fork, where
 * an exec failure can no longer be reported to the parent: the child
 * exits with 127 instead (what a shell does), or with valgrind's
 * --error-exitcode (1 in tools/dev.sh) when memcheck, checking the copy of
 * this process at its exit, finds a block only another thread pointed to
 * at the fork (the copy has no other threads; tools/dev.sh passes
 * --child-silent-after-fork so that report stays out of the log). */
static bool under_valgrind(void) {
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}


static void assert_spawn_fails(lb_loop *loop, const char *const argv[],
                               const lb_process_options *o, int expected) {
    lb_process *p = NULL;
    int r = lb_process_spawn(loop, argv, o, &p);
    if (r == 0 && under_valgrind()) {
        run ran = {.p = p};
        run_to_end(loop, &ran);
        if (ran.code != 1)
            assert_int_equal(ran.code, 127);
        lb_process_unref(p);
        return;
    }
    assert_int_equal(r, expected);
    assert_null(p);
}

static void test_process_spawn_errors(void **state) {
    (void)state;
    int fds = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    lb_process *p = NULL;
    const char *missing[] = {"/nonexistent/program", NULL};
    assert_spawn_fails(loop, missing, NULL, -ENOENT);
    if (!under_valgrind())
        assert_non_null(strstr(lb_error_detail(), "/nonexistent/program"));
    const char *unknown[] = {"no-such-program-lb", NULL};
    lb_process_options o = {.in = LB_STDIO_PIPE, .out = LB_STDIO_PIPE};
    assert_spawn_fails(loop, unknown, &o, -ENOENT);
    const char *empty[] = {NULL};
    assert_int_equal(lb_process_spawn(loop, empty, NULL, &p), -EINVAL);
    const char *echo[] = {"echo", NULL};
    lb_process_options bad = {.in = LB_STDIO_STDOUT};
    assert_int_equal(lb_process_spawn(loop, echo, &bad, &p), -EINVAL);
    lb_process_options no_dir = {.cwd = "/nonexistent-dir-lb"};
    assert_spawn_fails(loop, echo, &no_dir, -ENOENT);
    assert_null(p);
    int code;
    assert_int_equal(lb_process_wait(NULL, -1, &code), -EINVAL);
    fixture_loop_free(loop);
    assert_int_equal(fixture_count_fds(), fds);
}

/* A cancelled or timed-out wait leaves the process running; kill and
 * terminate end it. */
static void test_process_kill_terminate_and_cancelled_wait(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    const char *sleep30[] = {"sleep", "30", NULL};
    run r = {.p = spawn(loop, sleep30, NULL), .timeout = -1};
    lb_task *t = fixture_spawn(loop, collect_and_wait, &r);
    fixture_canceller k = {.target = t, .waiting = &r.waiting};
    fixture_cancel_when_waiting(loop, &k);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_int_equal(r.wait_status, -ECANCELED);
    assert_int_equal(lb_process_returncode(r.p, NULL), -EAGAIN);

    run timed = {.p = r.p, .timeout = 0.05};
    run_to_end(loop, &timed);
    assert_int_equal(timed.wait_status, -ETIMEDOUT);

    assert_int_equal(lb_process_kill(r.p), 0);
    run killed = {.p = r.p};
    run_to_end(loop, &killed);
    assert_int_equal(killed.code, -SIGKILL);
    assert_reaped(lb_process_pid(r.p));
    lb_process_unref(r.p);

    run term = {.p = spawn(loop, sleep30, NULL)};
    assert_int_equal(lb_process_terminate(term.p), 0);
    run_to_end(loop, &term);
    assert_int_equal(term.code, -SIGTERM);
    assert_int_equal(lb_process_send_signal(term.p, 0), -ESRCH);
    assert_int_equal(lb_process_send_signal(term.p, 99999), -EINVAL);
    lb_process_unref(term.p);
    fixture_loop_free(loop);
}

typedef struct exit_seen {
    int code;
    bool done;
} exit_seen;

static void on_exit_future(lb_future *f, void *data) {
    exit_seen *e = data;
    void *v = NULL;
    assert_int_equal(lb_future_result(f, &v), 0);
    e->code = (int)(intptr_t)v;
    e->done = true;
}

typedef struct many {
    lb_process *ps[16];
    int codes[16];
} many;

static int wait_all(lb_task *t, void *data) {
    many *m = data;
    (void)t;
    for (int i = 0; i < 16; i++) {
        int r = lb_process_wait(m->ps[i], 30, &m->codes[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Sixteen children at once, an exit future for a callback, and children
 * nobody holds: all reaped. */
static void test_process_many_and_unheld(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    many m;
    for (int i = 0; i < 16; i++) {
        char script[32];
        snprintf(script, sizeof script, "exit %d", i);
        const char *argv[] = {"/bin/sh", "-c", script, NULL};
        m.ps[i] = spawn(loop, argv, NULL);
    }
    lb_future *f = NULL;
    assert_int_equal(lb_process_exit_future(m.ps[7], &f), 0);
    exit_seen seen = {.code = -1};
    assert_int_equal(lb_future_add_done_callback(f, on_exit_future, &seen), 0);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, wait_all, &m), 60), 0);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(m.codes[i], i);
        lb_process_unref(m.ps[i]);
    }
    fixture_run_until(loop, &seen.done, 10);
    lb_future_unref(f);
    assert_int_equal(seen.code, 7);

    /* Fire and forget: dropped at once, reaped when they exit. */
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        const char *argv[] = {"true", NULL};
        lb_process *p = spawn(loop, argv, NULL);
        pids[i] = lb_process_pid(p);
        lb_process_unref(p);
    }
    const char *marker[] = {"/bin/sh", "-c", "sleep 0.2", NULL};
    run r = {.p = spawn(loop, marker, NULL)};
    run_to_end(loop, &r);
    lb_process_unref(r.p);
    for (int i = 0; i < 4; i++)
        assert_reaped(pids[i]);
    fixture_loop_free(loop);
}

/* The loop closes while children run, held or not: each is killed and
 * reaped by close; nothing is leaked. */
static void test_process_loop_close_reaps(void **state) {
    (void)state;
    int fds = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    const char *sleep30[] = {"sleep", "30", NULL};
    lb_process_options o = {.in = LB_STDIO_PIPE, .out = LB_STDIO_PIPE, .err = LB_STDIO_PIPE};
    lb_process *held = spawn(loop, sleep30, &o);
    lb_process *dropped = spawn(loop, sleep30, &o);
    pid_t a = lb_process_pid(held), b = lb_process_pid(dropped);
    lb_process_unref(dropped);
    /* A task waiting for one of them is cancelled by close. */
    run r = {.p = held, .timeout = -1};
    lb_task *t = fixture_spawn(loop, collect_and_wait, &r);
    fixture_loop_free(loop);
    assert_reaped(a);
    assert_reaped(b);
    int code = 0;
    assert_int_equal(lb_process_returncode(held, &code), 0);
    assert_int_equal(code, -SIGKILL);
    assert_true(lb_task_is_done(t));
    lb_task_unref(t);
    lb_process_unref(held);
    assert_int_equal(fixture_count_fds(), fds);
}

/* A task waits for a child while the last other reference goes: the wait
 * holds one of its own, so it returns the exit code once the child ends
 * (it read a freed process before). */
static void test_process_unref_while_waited(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    const char *cat[] = {"cat", NULL};
    lb_process_options o = {.in = LB_STDIO_PIPE, .out = LB_STDIO_DEVNULL};
    run r = {.p = spawn(loop, cat, &o), .timeout = -1};
    pid_t pid = lb_process_pid(r.p);
    lb_stream *in = lb_stream_ref(lb_process_stdin(r.p));
    lb_task *t = fixture_spawn(loop, collect_and_wait, &r);
    fixture_run_until(loop, &r.waiting, 10);
    lb_process_unref(r.p);
    lb_stream_close(in); /* cat reads the end of its input and exits */
    lb_stream_unref(in);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_int_equal(r.wait_status, 0);
    assert_int_equal(r.code, 0);
    assert_reaped(pid);
    fixture_loop_free(loop);
}

typedef struct gone {
    pid_t pid;
    bool done;
} gone;

/* Polls until the child is reaped (kill finds no process, not even a
 * zombie), without reaping it here. */
static void check_gone(lb_loop *loop, void *data) {
    gone *g = data;
    if (kill(g->pid, 0) < 0 && errno == ESRCH)
        g->done = true;
    else
        assert_int_equal(lb_loop_call_later(loop, 0.01, check_gone, g, NULL), 0);
}

static void assert_gone_soon(lb_loop *loop, pid_t pid) {
    gone g = {.pid = pid};
    assert_int_equal(lb_loop_call_soon(loop, check_gone, &g, NULL), 0);
    fixture_run_until(loop, &g.done, 30);
}

typedef struct held_out {
    lb_stream *out;
    char buf[64];
    ssize_t n;
} held_out;

static int read_held(lb_task *t, void *data) {
    held_out *h = data;
    (void)t;
    h->n = lb_stream_read_exactly(h->out, h->buf, 3);
    return 0;
}

/* Spawns `yes` writing to a pipe, drops it (held: with a reference to
 * its stdout taken first, dropped after) and checks it ends. */
static void drop_writer(lb_loop *loop, bool held) {
    const char *yes[] = {"yes", NULL};
    lb_process_options out = {.out = LB_STDIO_PIPE};
    lb_process *p = spawn(loop, yes, &out);
    pid_t writer = lb_process_pid(p);
    lb_stream *stdout_ref = held ? lb_stream_ref(lb_process_stdout(p)) : NULL;
    lb_process_unref(p);
    lb_stream_unref(stdout_ref);
    assert_gone_soon(loop, writer);
}

/* Dropping a child whose pipes nobody reads or holds closes them: a
 * child writing more than a pipe holds is not left blocked until the
 * loop closes (it gets EPIPE, here SIGPIPE, and is reaped in the
 * background), one reading its input sees the end of it. A pipe the
 * caller still holds stays open. */
static void test_process_dropped_with_unread_pipes(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    drop_writer(loop, false);
    lb_process_options out = {.out = LB_STDIO_PIPE};

    const char *cat[] = {"cat", NULL};
    lb_process_options in = {.in = LB_STDIO_PIPE, .out = LB_STDIO_DEVNULL};
    lb_process *p = spawn(loop, cat, &in);
    pid_t reader = lb_process_pid(p);
    lb_process_unref(p);
    assert_gone_soon(loop, reader);

    const char *hi[] = {"/bin/sh", "-c", "sleep 0.1; echo hi", NULL};
    p = spawn(loop, hi, &out);
    held_out h = {.out = lb_stream_ref(lb_process_stdout(p))};
    lb_process_unref(p);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, read_held, &h), 30), 0);
    assert_int_equal(h.n, 3);
    assert_memory_equal(h.buf, "hi\n", 3);
    lb_stream_unref(h.out);
    fixture_loop_free(loop);
}

/* A pipe the caller held when the child was dropped, dropped later: its
 * last reference aborts it as the process's would have, so the child
 * writing to it is not left blocked until the loop closes. */
static void test_process_held_pipe_dropped_later(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    drop_writer(loop, true);
    fixture_loop_free(loop);
}

#define BOTH_WATCHES(test)                                                                     \
    cmocka_unit_test_setup_teardown(test, use_pidfd, restore),                                 \
        cmocka_unit_test_setup_teardown(test, use_sigchld, restore)

int run_process_tests(void) {
    const struct CMUnitTest tests[] = {
        BOTH_WATCHES(test_process_echo_and_exit_codes),
        BOTH_WATCHES(test_process_cat_round_trip),
        BOTH_WATCHES(test_process_env_cwd_and_redirects),
        BOTH_WATCHES(test_process_spawn_errors),
        BOTH_WATCHES(test_process_kill_terminate_and_cancelled_wait),
        BOTH_WATCHES(test_process_many_and_unheld),
        BOTH_WATCHES(test_process_loop_close_reaps),
        BOTH_WATCHES(test_process_unref_while_waited),
        BOTH_WATCHES(test_process_dropped_with_unread_pipes),
        BOTH_WATCHES(test_process_held_pipe_dropped_later),
    };
    return cmocka_run_group_tests_name("process", tests, NULL, NULL);
}
