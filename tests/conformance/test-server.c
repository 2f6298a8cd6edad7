/* SPDX-License-Identifier: MIT */
/* TCP and Unix-domain servers and connections: 100 concurrent echo
 * clients, closing with and without cancelling the connections, refused
 * and unknown destinations, handler errors, the loop closing under a
 * live server. */
#include "fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct echo_stats {
    int handled;
    int ended;
    int cancelled;
} echo_stats;

/* Echoes lines until the client ends the stream. */
static int echo_handler(lb_stream *s, void *data) {
    echo_stats *st = data;
    st->handled++;
    char line[128];
    ssize_t n;
    while ((n = lb_stream_readline(s, line, sizeof line)) > 0) {
        int r = lb_stream_write(s, line, (size_t)n);
        if (r == 0)
            r = lb_stream_drain(s);
        if (r < 0) {
            n = r;
            break;
        }
    }
    if (n == -ECANCELED)
        st->cancelled++;
    st->ended++;
    return n < 0 ? (int)n : 0;
}

#define CLIENTS 100
#define ROUNDS 5

typedef struct client {
    const char *host;  /* TCP host, or NULL for Unix */
    const char *path;  /* Unix socket path */
    uint16_t port;
    int ok;
    int status;
} client;

/* A server on 127.0.0.1 with a port of the kernel's choosing. */
static lb_server *local_server(lb_loop *loop, lb_stream_handler handler, echo_stats *st) {
    lb_server *srv = NULL;
    assert_int_equal(lb_start_server(loop, "127.0.0.1", 0, handler, st, NULL, &srv), 0);
    return srv;
}

static int open_client(const client *c, lb_stream **s) {
    if (c->path)
        return lb_open_unix_connection(c->path, NULL, 30, s);
    return lb_open_connection(c->host, c->port, NULL, 30, s);
}

static int client_task(lb_task *t, void *data) {
    client *c = data;
    lb_stream *s = NULL;
    int r = open_client(c, &s);
    for (int i = 0; r == 0 && i < ROUNDS; i++) {
        char msg[64], got[64];
        int len = snprintf(msg, sizeof msg, "round %d of %s\n", i, lb_task_name(t));
        r = lb_stream_write(s, msg, (size_t)len);
        ssize_t n = r < 0 ? r : lb_stream_readline(s, got, sizeof got);
        if (n < 0)
            r = (int)n;
        else if (n != len || memcmp(msg, got, (size_t)len) != 0)
            r = -EBADMSG;
    }
    if (s) {
        lb_stream_close(s);
        lb_stream_unref(s);
    }
    if (r == 0)
        c->ok++;
    c->status = r;
    return r;
}

static void run_clients(lb_loop *loop, client *c) {
    lb_task *ts[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "client-%d", i);
        lb_task_options o = {.name = name};
        assert_int_equal(lb_task_spawn(loop, client_task, c, &o, &ts[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        assert_int_equal(fixture_finish(loop, ts[i], 120), 0);
    assert_int_equal(c->ok, CLIENTS);
}

typedef struct closer {
    lb_server *server;
    bool cancel;
    int status;
} closer;

static int close_server(lb_task *t, void *data) {
    closer *c = data;
    (void)t;
    lb_server_close(c->server, c->cancel);
    c->status = lb_server_wait_closed(c->server);
    return 0;
}

static void test_server_tcp_echo_100_clients(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    echo_stats st = {0};
    lb_server *srv = local_server(loop, echo_handler, &st);
    int port = lb_server_port(srv);
    assert_true(port > 0);
    client c = {.host = "127.0.0.1", .port = (uint16_t)port};
    run_clients(loop, &c);
    closer k = {.server = srv};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, close_server, &k), 30), 0);
    assert_int_equal(k.status, 0);
    assert_int_equal(st.handled, CLIENTS);
    assert_int_equal(st.ended, CLIENTS);
    assert_int_equal(lb_server_connections(srv), 0);
    lb_server_unref(srv);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

static void test_server_unix_echo(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    char dir[] = "/tmp/lb-unix-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/echo.sock", dir);
    echo_stats st = {0};
    lb_server *srv = NULL;
    assert_int_equal(lb_start_unix_server(loop, path, echo_handler, &st, NULL, &srv), 0);
    assert_int_equal(lb_server_port(srv), -EINVAL);
    client c = {.path = path};
    run_clients(loop, &c);
    /* A second server on the same path replaces the first's socket file. */
    lb_server *again = NULL;
    assert_int_equal(lb_start_unix_server(loop, path, echo_handler, &st, NULL, &again), 0);
    c.ok = 0;
    lb_task *one = fixture_spawn(loop, client_task, &c);
    assert_int_equal(fixture_finish(loop, one, 30), 0);
    /* Closing the first leaves the second's file alone. */
    closer k = {.server = srv};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, close_server, &k), 30), 0);
    lb_server_unref(srv);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    k.server = again;
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, close_server, &k), 30), 0);
    lb_server_unref(again);
    assert_int_equal(stat(path, &sb), -1); /* removed */
    /* Nobody there now. */
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, client_task, &c), 30), -ENOENT);
    /* A file that is not a socket is not replaced. */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(lb_start_unix_server(loop, path, echo_handler, &st, NULL, &srv),
                     -EADDRINUSE);
    unlink(path);
    rmdir(dir);
    char long_path[200];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    assert_int_equal(lb_start_unix_server(loop, long_path, echo_handler, &st, NULL, &srv),
                     -ENAMETOOLONG);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */

typedef struct idle_client {
    uint16_t port;
    lb_stream *s;
    bool connected;
    ssize_t read_result;
} idle_client;

/* Connects and waits for the server to say something (it never does). */
static int idle_client_task(lb_task *t, void *data) {
    idle_client *c = data;
    (void)t;
    int r = lb_open_connection("127.0.0.1", c->port, NULL, 30, &c->s);
    if (r < 0)
        return r;
    c->connected = true;
    char buf[4];
    c->read_result = lb_stream_read(c->s, buf, sizeof buf);
    lb_stream_unref(c->s);
    return 0;
}

static int silent_handler(lb_stream *s, void *data) {
    echo_stats *st = data;
    st->handled++;
    char buf[4];
    ssize_t n = lb_stream_read(s, buf, sizeof buf); /* until cancelled or end */
    if (n == -ECANCELED)
        st->cancelled++;
    st->ended++;
    return n < 0 ? (int)n : 0;
}

typedef struct wait_conns {
    lb_server *srv;
    size_t n;
} wait_conns;

static int until_connections(lb_task *t, void *data) {
    wait_conns *w = data;
    (void)t;
    while (lb_server_connections(w->srv) < w->n)
        if (lb_sleep(0.002) < 0)
            return -ECANCELED;
    return 0;
}

/* close(false) stops accepting but lets the connections run; close(true)
 * cancels them, and their clients see the end of the stream. */
static void test_server_close_and_cancel_connections(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    echo_stats st = {0};
    lb_server *srv = local_server(loop, silent_handler, &st);
    uint16_t port = (uint16_t)lb_server_port(srv);
    idle_client cs[3] = {{.port = port}, {.port = port}, {.port = port}};
    lb_task *ct[3];
    for (int i = 0; i < 3; i++)
        ct[i] = fixture_spawn(loop, idle_client_task, &cs[i]);
    wait_conns w = {srv, 3};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, until_connections, &w), 30), 0);

    assert_int_equal(lb_server_close(srv, false), 0);
    assert_int_equal(lb_server_connections(srv), 3);
    /* No longer accepting. */
    idle_client late = {.port = port};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, idle_client_task, &late), 30),
                     -ECONNREFUSED);
    /* Now cancel them. */
    closer k = {.server = srv, .cancel = true};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, close_server, &k), 30), 0);
    assert_int_equal(k.status, 0);
    assert_int_equal(st.cancelled, 3);
    assert_int_equal(lb_server_connections(srv), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fixture_finish(loop, ct[i], 30), 0);
        assert_int_equal(cs[i].read_result, 0); /* the end of stream */
    }
    lb_server_unref(srv);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

static int failing_handler(lb_stream *s, void *data) {
    (void)s;
    (void)data;
    return -EPROTO;
}

/* A handler's error goes to the exception handler; the client sees the
 * end of the stream. */
static void test_server_handler_error_reported(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fixture_reports rep = {0};
    fixture_capture_reports(loop, &rep);
    lb_server *srv = local_server(loop, failing_handler, NULL);
    idle_client c = {.port = (uint16_t)lb_server_port(srv)};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, idle_client_task, &c), 30), 0);
    assert_int_equal(c.read_result, 0);
    closer k = {.server = srv};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, close_server, &k), 30), 0);
    assert_int_equal(rep.count, 1);
    assert_int_equal(rep.error, -EPROTO);
    lb_server_unref(srv);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */

typedef struct dial {
    const char *host;
    uint16_t port;
    double timeout;
    int status;
    bool waiting; /* in lb_open_connection */
} dial;

static int dial_task(lb_task *t, void *data) {
    dial *d = data;
    (void)t;
    lb_stream *s = NULL;
    d->waiting = true;
    d->status = lb_open_connection(d->host, d->port, NULL, d->timeout, &s);
    d->waiting = false;
    if (d->status == 0) {
        lb_stream_write(s, "hi\n", 3);
        char buf[8];
        ssize_t n = lb_stream_readline(s, buf, sizeof buf);
        if (n != 3)
            d->status = n < 0 ? (int)n : -EBADMSG;
        lb_stream_unref(s);
    }
    return 0;
}

static void test_server_connect_errors_and_names(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    echo_stats st = {0};
    lb_server *srv = local_server(loop, echo_handler, &st);
    uint16_t port = (uint16_t)lb_server_port(srv);
    /* "localhost" is looked up on the executor, then connected to. */
    dial named = {.host = "localhost", .port = port, .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, dial_task, &named), 60), 0);
    assert_int_equal(named.status, 0);
    /* The same port again: in use. */
    lb_server *twice = NULL;
    assert_int_equal(lb_start_server(loop, "127.0.0.1", port, echo_handler, &st, NULL, &twice),
                     -EADDRINUSE);
    /* A name needs a task. */
    assert_int_equal(lb_start_server(loop, "localhost", 0, echo_handler, &st, NULL, &twice),
                     -EPERM);
    assert_int_equal(lb_server_close(srv, false), 0);
    /* Refused once closed. */
    dial refused = {.host = "127.0.0.1", .port = port, .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, dial_task, &refused), 30), 0);
    assert_int_equal(refused.status, -ECONNREFUSED);
    lb_server_unref(srv);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

/* A connection whose handshake cannot finish (the listener's queue is
 * full): the timeout ends it, and so does cancelling the task, and
 * nothing is left open. */
static void test_server_connect_timeout(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(listen(lfd, 0), 0);
    int queued = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(queued, (struct sockaddr *)&a, sizeof a), 0);
    dial d = {.host = "127.0.0.1", .port = ntohs(a.sin_port), .timeout = 0.05};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, dial_task, &d), 30), 0);
    assert_int_equal(d.status, -ETIMEDOUT);
    dial c = {.host = "127.0.0.1", .port = ntohs(a.sin_port), .timeout = -1};
    lb_task *t = fixture_spawn(loop, dial_task, &c);
    fixture_canceller k = {.target = t, .waiting = &c.waiting};
    fixture_cancel_when_waiting(loop, &k);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_int_equal(c.status, -ECANCELED);
    close(queued);
    close(lfd);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

/* The loop closes with a server and live connections: the connection
 * tasks are cancelled and their streams closed; dropping the server
 * afterwards closes its socket. */
static void test_server_loop_close_with_connections(void **state) {
    (void)state;
    int fds = fixture_count_fds();
    lb_loop *loop = fixture_loop_new();
    echo_stats st = {0};
    lb_server *srv = local_server(loop, silent_handler, &st);
    idle_client c = {.port = (uint16_t)lb_server_port(srv)};
    lb_task *ct = fixture_spawn(loop, idle_client_task, &c);
    wait_conns w = {srv, 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, until_connections, &w), 30), 0);
    lb_task_unref(ct);
    fixture_loop_free(loop);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(lb_server_connections(srv), 0);
    lb_server_unref(srv);
    assert_int_equal(fixture_count_fds(), fds);
}

typedef struct early_close {
    lb_server *server;
    bool closed;
} early_close;

static int wait_server_closed(lb_task *t, void *data) {
    closer *c = data;
    (void)t;
    c->status = lb_server_wait_closed(c->server);
    return 0;
}

/* Closes the server, cancelling its connections, as soon as it accepted
 * one: before the connection's task first runs. */
static void close_once_accepted(lb_loop *loop, void *data) {
    early_close *e = data;
    if (lb_server_connections(e->server) == 0) {
        assert_int_equal(lb_loop_call_soon(loop, close_once_accepted, e, NULL), 0);
        return;
    }
    assert_int_equal(lb_server_close(e->server, true), 0);
    e->closed = true;
}

/* A connection accepted in the iteration before the server closes with
 * cancel_connections: its task never starts, the server releases it (the
 * client sees the end of the stream) and wait_closed returns. */
static void test_server_close_right_after_accept(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    echo_stats st = {0};
    lb_server *srv = local_server(loop, echo_handler, &st);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)lb_server_port(srv)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)&addr, sizeof addr), 0);
    early_close e = {.server = srv};
    assert_int_equal(lb_loop_call_soon(loop, close_once_accepted, &e, NULL), 0);
    fixture_run_until(loop, &e.closed, 10);
    closer k = {.server = srv, .status = 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, wait_server_closed, &k), 10), 0);
    assert_int_equal(k.status, 0);
    assert_int_equal(st.handled, 0);
    assert_int_equal(lb_server_connections(srv), 0);
    char b;
    assert_int_equal(recv(c, &b, 1, MSG_DONTWAIT), 0);
    close(c);
    lb_server_unref(srv);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

int run_server_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_tcp_echo_100_clients),
        cmocka_unit_test(test_server_unix_echo),
        cmocka_unit_test(test_server_close_and_cancel_connections),
        cmocka_unit_test(test_server_handler_error_reported),
        cmocka_unit_test(test_server_connect_errors_and_names),
        cmocka_unit_test(test_server_connect_timeout),
        cmocka_unit_test(test_server_loop_close_with_connections),
        cmocka_unit_test(test_server_close_right_after_accept),
    };
    return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
