/* SPDX-License-Identifier: MIT */
/* Closing a loop that still owns things: a stream a task is reading, a
 * stream closing with data queued that nobody holds, a server with
 * connections waiting to be accepted, a running child with unread
 * pipes, executor jobs queued and running, fd waiters and signal
 * watches, and all of them at once. Close cancels the tasks and lets
 * them unwind, then closes what the loop owns newest first (observed
 * through a test hook of the library), then drops its queues. Objects
 * the user still holds are closed, not freed: their calls fail with
 * -EBADF, and letting go of them afterwards frees them. Run under ASan
 * and valgrind: nothing may leak. */
#include "fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exported by the library for tests: fn gets the name of each resource
 * lb_loop_close() closes, in order. */
void lb__test_on_resource_close(void (*fn)(const char *));

/* The names the hook saw, comma-separated. */
static char closed_names[256];
static atomic_bool release_jobs;

static int watches_closed;
static int jobs_closed, jobs_running_last; /* the running job is closed as this one */

static void record_close(const char *name) {
    /* Watches come with the objects (a stream's read interest, a pidfd,
     * a listening socket) and, for a child, depend on the kernel (pidfd
     * or SIGCHLD): counted, not listed. */
    if (strcmp(name, "fd watch") == 0 || strcmp(name, "signal watch") == 0) {
        watches_closed++;
        return;
    }
    size_t n = strlen(closed_names);
    snprintf(closed_names + n, sizeof closed_names - n, "%s%s", n ? "," : "", name);
    /* A running job is waited for: let it end once close reached it (the
     * oldest job, the last one closed: a job released earlier could let
     * a queued one run before close withdrew it). */
    if (strcmp(name, "executor job") == 0 && ++jobs_closed == jobs_running_last)
        atomic_store(&release_jobs, true);
}

static int hook_on(void **state) {
    (void)state;
    closed_names[0] = '\0';
    watches_closed = 0;
    jobs_closed = 0;
    jobs_running_last = 1;
    atomic_store(&release_jobs, false);
    lb__test_on_resource_close(record_close);
    return 0;
}

static int hook_off(void **state) {
    (void)state;
    lb__test_on_resource_close(NULL);
    return 0;
}

/* ------------------------------------------------------------------ */

typedef struct line_reader {
    lb_stream *s;
    bool waiting;
    ssize_t result;
} line_reader;

static int read_a_line(lb_task *t, void *data) {
    line_reader *lr = data;
    (void)t;
    char buf[64];
    lr->waiting = true;
    lr->result = lb_stream_readline(lr->s, buf, sizeof buf);
    lr->waiting = false;
    return lr->result < 0 ? (int)lr->result : 0;
}

/* A task suspended in readline is cancelled and unwinds; then the
 * stream, which the test still holds, is closed: its fd is released at
 * close, not when the test lets go. */
static void test_close_stream_mid_readline(void **state) {
    (void)state;
    int base = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
    assert_int_equal(write(fd[1], "no newline yet", 14), 14);
    line_reader lr = {0};
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &lr.s), 0);
    lb_task *t = fixture_spawn(loop, read_a_line, &lr);
    fixture_run_until(loop, &lr.waiting, 10);
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(lr.result, -ECANCELED);
    assert_true(lb_task_is_done(t));
    /* Closed, not freed: the test's reference is still good. */
    assert_int_equal(lb_stream_fd(lr.s), -1);
    assert_true(lb_stream_is_closing(lr.s));
    assert_int_equal(lb_stream_write(lr.s, "x", 1), -EBADF);
    assert_int_equal(fixture_count_fds(), base + 1); /* only the peer's end */
    lb_stream_unref(lr.s);
    lb_task_unref(t);
    close(fd[1]);
    lb_loop_unref(loop);
}

/* A stream closed with data queued that nobody holds keeps itself until
 * the data is out; the peer reads nothing, so the loop's close releases
 * it (ASan/valgrind: no leak, its fd closed). */
static void test_close_stream_unheld_with_queued_data(void **state) {
    (void)state;
    int base = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
    lb_stream *s = NULL;
    lb_stream_options o = {.write_limit = 4 << 20};
    assert_int_equal(lb_stream_new(loop, fd[0], &o, &s), 0);
    static char big[1 << 20];
    assert_int_equal(lb_stream_write(s, big, sizeof big), 0);
    assert_true(lb_stream_write_buffered(s) > 0);
    assert_int_equal(lb_stream_close(s), 0);
    lb_stream_unref(s);
    fixture_loop_free(loop);
    assert_int_equal(fixture_count_fds(), base + 1);
    close(fd[1]);
}

/* ------------------------------------------------------------------ */

static int never_called(lb_stream *stream, void *data) {
    (void)stream;
    (void)data;
    fail_msg("no connection is served after the loop closed");
    return 0;
}

static int connect_to(int port) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(c);
    return r == 0 ? 0 : -e;
}

/* Connections wait in the backlog when the loop closes: the server, which
 * the test still holds, stops listening at close. */
static void test_close_server_pending_accepts(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_server *srv = NULL;
    assert_int_equal(lb_start_server(loop, "127.0.0.1", 0, never_called, NULL, NULL, &srv), 0);
    int port = lb_server_port(srv);
    assert_true(port > 0);
    assert_int_equal(connect_to(port), 0); /* accepted by the kernel, not by the loop */
    assert_int_equal(connect_to(port), 0);
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(connect_to(port), -ECONNREFUSED);
    assert_int_equal(lb_server_connections(srv), 0);
    assert_int_equal(lb_server_close(srv, true), 0);
    lb_server_unref(srv);
    lb_loop_unref(loop);
}

/* ------------------------------------------------------------------ */

/* A child blocked writing to a pipe nobody reads is killed and reaped at
 * close; the test, which still holds it, finds it killed, and its pipe
 * closed. */
static void test_close_process_with_unread_pipes(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    const char *argv[] = {"/bin/sh", "-c", "while :; do echo flood; done", NULL};
    lb_process_options o = {.out = LB_STDIO_PIPE, .in = LB_STDIO_PIPE};
    lb_process *p = NULL;
    assert_int_equal(lb_process_spawn(loop, argv, &o, &p), 0);
    pid_t pid = lb_process_pid(p);
    assert_int_equal(lb_loop_close(loop), 0);
    int code = 0;
    assert_int_equal(lb_process_returncode(p, &code), 0);
    assert_int_equal(code, -SIGKILL);
    errno = 0;
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(lb_stream_fd(lb_process_stdout(p)), -1);
    assert_int_equal(lb_stream_write(lb_process_stdin(p), "x", 1), -EBADF);
    lb_process_unref(p);
    lb_loop_unref(loop);
}

typedef struct process_waiter {
    lb_process *p;
    bool waiting;
    int result;
} process_waiter;

static int wait_process(lb_task *t, void *data) {
    process_waiter *w = data;
    (void)t;
    int code = 0;
    w->waiting = true;
    w->result = lb_process_wait(w->p, -1, &code);
    w->waiting = false;
    return 0;
}

/* A task waiting for a child when the loop closes: it unwinds, then the
 * child is killed and reaped, which completes the exit future the task's
 * wait was shielded from; the shield's done callback runs then, so
 * nothing is left holding the other (ASan/valgrind: no leak). */
static void test_close_task_waiting_for_process(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    const char *argv[] = {"sleep", "1000", NULL};
    process_waiter w = {0};
    assert_int_equal(lb_process_spawn(loop, argv, NULL, &w.p), 0);
    pid_t pid = lb_process_pid(w.p);
    lb_task *t = fixture_spawn(loop, wait_process, &w);
    fixture_run_until(loop, &w.waiting, 10);
    lb_process_unref(w.p);
    fixture_loop_free(loop);
    assert_int_equal(w.result, -ECANCELED);
    errno = 0;
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    lb_task_unref(t);
}

/* ------------------------------------------------------------------ */

typedef struct job_state {
    atomic_bool started, finished, ran;
} job_state;

/* Runs until close reached the executor jobs (the hook releases it). */
static int blocking_job(void *data, void **ret) {
    job_state *js = data;
    (void)ret;
    atomic_store(&js->started, true);
    while (!atomic_load(&release_jobs))
        sched_yield();
    atomic_store(&js->finished, true);
    return 0;
}

static int flag_job(void *data, void **ret) {
    job_state *js = data;
    (void)ret;
    atomic_store(&js->ran, true);
    return 0;
}

static void wait_started(job_state *js) {
    double end = fixture_now() + 10;
    while (!atomic_load(&js->started) && fixture_now() < end)
        sched_yield();
    assert_true(atomic_load(&js->started));
}

/* A running job is waited for; a queued one is withdrawn and never runs;
 * both futures are cancelled. */
static void test_close_executor_jobs(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *e = NULL;
    assert_int_equal(lb_executor_new(&e, 1), 0);
    job_state running = {0}, queued = {0};
    lb_future *fr = NULL, *fq = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, e, blocking_job, &running, &fr), 0);
    wait_started(&running);
    assert_int_equal(lb_loop_run_in_executor(loop, e, flag_job, &queued, &fq), 0);
    jobs_running_last = 2;
    assert_int_equal(lb_loop_close(loop), 0);
    assert_string_equal(closed_names, "executor job,executor job");
    assert_true(atomic_load(&running.finished));
    assert_false(atomic_load(&queued.ran));
    assert_true(lb_future_is_cancelled(fr));
    assert_true(lb_future_is_cancelled(fq));
    lb_future_unref(fr);
    lb_future_unref(fq);
    assert_int_equal(lb_executor_shutdown(e, true, false), 0);
    assert_false(atomic_load(&queued.ran));
    lb_executor_unref(e);
    lb_loop_unref(loop);
}

/* Runs until it learns its future was cancelled. */
static int cancellable_job(void *data, void **ret) {
    job_state *js = data;
    (void)ret;
    atomic_store(&js->started, true);
    while (!lb_job_cancelled())
        sched_yield();
    atomic_store(&js->finished, true);
    return 0;
}

/* A running job that watches lb_job_cancelled() learns at close that its
 * future was cancelled, so close's wait for it ends. */
static void test_close_tells_running_job(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *e = NULL;
    assert_int_equal(lb_executor_new(&e, 1), 0);
    job_state js = {0};
    lb_future *f = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, e, cancellable_job, &js, &f), 0);
    wait_started(&js);
    assert_int_equal(lb_loop_close(loop), 0);
    assert_true(atomic_load(&js.finished));
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);
    lb_executor_unref(e);
    lb_loop_unref(loop);
}

/* ------------------------------------------------------------------ */

typedef struct fd_waiter {
    int fd;
    bool waiting;
    int result;
} fd_waiter;

static int wait_fd(lb_task *t, void *data) {
    fd_waiter *w = data;
    (void)t;
    w->waiting = true;
    w->result = lb_wait_readable(w->fd, -1);
    w->waiting = false;
    return 0;
}

static void on_readable(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("nothing was written");
}

static void on_signal(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

/* A task awaiting readiness, a reader callback and a signal watch: the
 * task unwinds, the watches and the signal pipe go with the loop. */
static void test_close_fd_waiters_and_signal_watches(void **state) {
    (void)state;
    int before = fixture_fds_without_loop();
    lb_loop *loop = fixture_loop_new();
    int p1[2], p2[2];
    assert_int_equal(pipe2(p1, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(p2, O_CLOEXEC | O_NONBLOCK), 0);
    fd_waiter w = {.fd = p1[0]};
    lb_task *t = fixture_spawn(loop, wait_fd, &w);
    assert_int_equal(lb_loop_add_reader(loop, p2[0], on_readable, NULL), 0);
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGUSR2, on_signal, NULL), 0);
    fixture_run_until(loop, &w.waiting, 10);
    fixture_loop_free(loop);
    assert_int_equal(w.result, -ECANCELED);
    lb_task_unref(t);
    for (int i = 0; i < 2; i++) {
        close(p1[i]);
        close(p2[i]);
    }
    assert_int_equal(fixture_count_fds(), before);
}

/* ------------------------------------------------------------------ */

/* Everything at once, each held by the test, closed newest first after
 * the task that used them unwound. */
static void test_close_everything_newest_first(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *e = NULL;
    assert_int_equal(lb_executor_new(&e, 1), 0);
    job_state running = {0};
    lb_future *fr = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, e, blocking_job, &running, &fr), 0);
    wait_started(&running);

    int fd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
    line_reader lr = {0};
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &lr.s), 0);
    lb_task *t = fixture_spawn(loop, read_a_line, &lr);

    lb_server *srv = NULL;
    assert_int_equal(lb_start_server(loop, "127.0.0.1", 0, never_called, NULL, NULL, &srv), 0);

    const char *argv[] = {"sleep", "1000", NULL};
    lb_process *p = NULL;
    assert_int_equal(lb_process_spawn(loop, argv, NULL, &p), 0);

    fixture_run_until(loop, &lr.waiting, 10);
    assert_int_equal(lb_loop_close(loop), 0);
    assert_string_equal(closed_names, "process,server,stream,executor job");
    assert_true(watches_closed >= 2); /* the stream's and the server's */
    assert_int_equal(lr.result, -ECANCELED);
    assert_true(atomic_load(&running.finished));
    int code = 0;
    assert_int_equal(lb_process_returncode(p, &code), 0);
    assert_int_equal(code, -SIGKILL);
    assert_int_equal(lb_stream_fd(lr.s), -1);

    lb_process_unref(p);
    lb_server_unref(srv);
    lb_stream_unref(lr.s);
    lb_task_unref(t);
    lb_future_unref(fr);
    lb_executor_unref(e);
    close(fd[1]);
    lb_loop_unref(loop);
}

static void noop_close(lb_resource *resource) {
    (void)resource;
}

/* The registry itself refuses what it cannot take. */
static void test_close_resource_registry_checks(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    static const lb_resource_ops no_close = {.name = "bad"};
    static const lb_resource_ops ok = {.name = "test", .close = noop_close};
    lb_resource r = {0};
    assert_int_equal(lb_driver_resource_add(NULL, &r, &ok), -EINVAL);
    assert_int_equal(lb_driver_resource_add(loop, NULL, &ok), -EINVAL);
    assert_int_equal(lb_driver_resource_add(loop, &r, &no_close), -EINVAL);
    assert_int_equal(lb_driver_resource_add(loop, &r, &ok), 0);
    assert_int_equal(lb_driver_resource_add(loop, &r, &ok), -EINVAL); /* twice */
    lb_driver_resource_remove(&r);
    lb_driver_resource_remove(&r); /* not registered: a no-op */
    lb_driver_resource_remove(NULL);
    fixture_loop_free(loop);
    lb_loop *closed = fixture_loop_new();
    assert_int_equal(lb_loop_close(closed), 0);
    assert_int_equal(lb_driver_resource_add(closed, &r, &ok), -EBADF);
    lb_loop_unref(closed);
}

int run_close_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_stream_mid_readline),
        cmocka_unit_test(test_close_stream_unheld_with_queued_data),
        cmocka_unit_test(test_close_server_pending_accepts),
        cmocka_unit_test(test_close_process_with_unread_pipes),
        cmocka_unit_test(test_close_task_waiting_for_process),
        cmocka_unit_test_setup_teardown(test_close_executor_jobs, hook_on, hook_off),
        cmocka_unit_test(test_close_tells_running_job),
        cmocka_unit_test(test_close_fd_waiters_and_signal_watches),
        cmocka_unit_test_setup_teardown(test_close_everything_newest_first, hook_on, hook_off),
        cmocka_unit_test(test_close_resource_registry_checks),
    };
    return cmocka_run_group_tests_name("close", tests, NULL, NULL);
}
