/* SPDX-License-Identifier: MIT */
/* Awaitable file descriptors: lb_read / lb_write / lb_accept /
 * lb_connect in tasks, timeouts and cancellation that leave the fd usable
 * and unwatched, one consumer per direction, 100 concurrent echo
 * clients. */
#include "fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void make_socketpair(int fd[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0);
}

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

/* The fd is unwatched: a reader and a writer callback can take it. */
static void assert_unwatched(lb_loop *loop, int fd) {
    assert_int_equal(lb_loop_add_reader(loop, fd, nop, NULL), 0);
    assert_int_equal(lb_loop_add_writer(loop, fd, nop, NULL), 0);
    assert_int_equal(lb_loop_remove_reader(loop, fd), 1);
    assert_int_equal(lb_loop_remove_writer(loop, fd), 1);
}

/* A listening TCP socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_loopback(int backlog, struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    socklen_t len = sizeof *addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    assert_int_equal(listen(fd, backlog), 0);
    return fd;
}

static int tcp_socket(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    return fd;
}

/* ------------------------------------------------------------------ */

typedef struct rw {
    int fd[2];
    char buf[256];
    ssize_t n;
    double timeout;
    bool waiting; /* set right before the call that is to block */
} rw;

static int read_task(lb_task *t, void *data) {
    rw *c = data;
    (void)t;
    c->waiting = true;
    c->n = lb_read(c->fd[0], c->buf, sizeof c->buf, c->timeout);
    c->waiting = false;
    return c->n < 0 ? (int)c->n : 0;
}

static void write_hello(lb_loop *loop, void *data) {
    rw *c = data;
    (void)loop;
    assert_int_equal(write(c->fd[1], "hello", 5), 5);
}

static void test_io_read_awaits_data(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds_before = fixture_fd_baseline(loop);
    rw c = {.timeout = -1};
    make_socketpair(c.fd);
    lb_task *t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(lb_loop_call_later(loop, 0.02, write_hello, &c, NULL), 0);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(c.n, 5);
    assert_memory_equal(c.buf, "hello", 5);
    assert_unwatched(loop, c.fd[0]);

    /* Data already there: read at once. */
    assert_int_equal(write(c.fd[1], "again", 5), 5);
    t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(c.n, 5);
    assert_memory_equal(c.buf, "again", 5);

    /* End of file. */
    close(c.fd[1]);
    t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(c.n, 0);
    close(c.fd[0]);
    assert_int_equal(fixture_count_fds(), fds_before);
    fixture_loop_free(loop);
}

static void test_io_read_timeout(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    rw c = {.timeout = 0.05};
    make_socketpair(c.fd);
    lb_task *t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(fixture_finish(loop, t, 10), -ETIMEDOUT);
    assert_int_equal(c.n, -ETIMEDOUT);
    assert_unwatched(loop, c.fd[0]);
    /* A zero timeout does not wait. */
    c.timeout = 0;
    t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(fixture_finish(loop, t, 10), -ETIMEDOUT);
    /* Usable afterwards. */
    c.timeout = 5;
    assert_int_equal(lb_loop_call_later(loop, 0.01, write_hello, &c, NULL), 0);
    t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(c.n, 5);
    close(c.fd[0]);
    close(c.fd[1]);
    fixture_loop_free(loop);
}

static void test_io_read_cancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    rw c = {.timeout = -1};
    make_socketpair(c.fd);
    lb_task *t = fixture_spawn(loop, read_task, &c);
    fixture_canceller k = {.target = t, .waiting = &c.waiting};
    fixture_cancel_when_waiting(loop, &k);
    assert_int_equal(fixture_finish(loop, t, 10), -ECANCELED);
    assert_int_equal(c.n, -ECANCELED);
    assert_unwatched(loop, c.fd[0]);
    /* The fd still works, for a new reader. */
    c.timeout = 5;
    assert_int_equal(lb_loop_call_later(loop, 0.01, write_hello, &c, NULL), 0);
    t = fixture_spawn(loop, read_task, &c);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(c.n, 5);
    close(c.fd[0]);
    close(c.fd[1]);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */

typedef struct big {
    int fd[2];
    size_t len;
    unsigned char *out, *in;
    ssize_t wrote, got;
    bool waiting;
} big;

static int big_writer(lb_task *t, void *data) {
    big *b = data;
    (void)t;
    b->waiting = true;
    b->wrote = lb_write(b->fd[1], b->out, b->len, -1);
    b->waiting = false;
    return b->wrote < 0 ? (int)b->wrote : 0;
}

static int big_reader(lb_task *t, void *data) {
    big *b = data;
    (void)t;
    size_t got = 0;
    while (got < b->len) {
        ssize_t n = lb_read(b->fd[0], b->in + got, b->len - got, 10);
        if (n <= 0)
            return n < 0 ? (int)n : -EPIPE;
        got += (size_t)n;
    }
    b->got = (ssize_t)got;
    return 0;
}

/* 4 MiB through a pipe whose buffer holds 64 KiB: the writer awaits room
 * many times, the reader data, and every byte arrives in order. */
static void test_io_write_everything(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    big b = {.len = 4u << 20};
    assert_int_equal(pipe2(b.fd, O_NONBLOCK | O_CLOEXEC), 0);
    b.out = malloc(b.len);
    b.in = malloc(b.len);
    for (size_t i = 0; i < b.len; i++)
        b.out[i] = (unsigned char)(i * 7 + (i >> 12));
    lb_task *w = fixture_spawn(loop, big_writer, &b);
    lb_task *r = fixture_spawn(loop, big_reader, &b);
    assert_int_equal(fixture_finish(loop, w, 60), 0);
    assert_int_equal(fixture_finish(loop, r, 60), 0);
    assert_int_equal(b.wrote, (ssize_t)b.len);
    assert_int_equal(b.got, (ssize_t)b.len);
    assert_memory_equal(b.in, b.out, b.len);
    free(b.out);
    free(b.in);
    close(b.fd[0]);
    close(b.fd[1]);
    fixture_loop_free(loop);
}

/* A writer blocked on a full pipe is cancelled: the pipe stays usable and
 * what was written can be read. */
static void test_io_write_cancel_full_pipe(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    big b = {.len = 1u << 20};
    assert_int_equal(pipe2(b.fd, O_NONBLOCK | O_CLOEXEC), 0);
    b.out = calloc(1, b.len);
    lb_task *w = fixture_spawn(loop, big_writer, &b);
    fixture_canceller k = {.target = w, .waiting = &b.waiting};
    fixture_cancel_when_waiting(loop, &k);
    assert_int_equal(fixture_finish(loop, w, 10), -ECANCELED);
    assert_int_equal(b.wrote, -ECANCELED);
    assert_unwatched(loop, b.fd[1]);
    /* The pipe is full of what went out before the cancel. */
    char buf[4096];
    size_t drained = 0;
    ssize_t n;
    while ((n = read(b.fd[0], buf, sizeof buf)) > 0)
        drained += (size_t)n;
    assert_true(drained > 0 && drained < b.len);
    /* And it takes more. */
    assert_int_equal(write(b.fd[1], "x", 1), 1);
    assert_int_equal(read(b.fd[0], buf, 1), 1);
    free(b.out);
    close(b.fd[0]);
    close(b.fd[1]);
    fixture_loop_free(loop);
}

typedef struct some {
    int fd;
    ssize_t n;
} some;

static int write_some_task(lb_task *t, void *data) {
    some *s = data;
    (void)t;
    static char chunk[1 << 20];
    s->n = lb_write_some(s->fd, chunk, sizeof chunk, 5);
    return 0;
}

/* lb_write_some writes what fits and says how much; after the reader is
 * gone it reports -EPIPE, without a SIGPIPE killing the process. */
static void test_io_write_some_and_epipe(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    assert_int_equal(pipe2(fd, O_NONBLOCK | O_CLOEXEC), 0);
    some s = {.fd = fd[1]};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, write_some_task, &s), 10), 0);
    assert_true(s.n > 0 && s.n < (1 << 20));
    close(fd[0]);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, write_some_task, &s), 10), 0);
    assert_int_equal(s.n, -EPIPE);
    close(fd[1]);
    /* A socket whose peer is gone: -EPIPE as well. */
    int sp[2];
    make_socketpair(sp);
    close(sp[0]);
    s.fd = sp[1];
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, write_some_task, &s), 10), 0);
    assert_int_equal(s.n, -EPIPE);
    close(sp[1]);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */

typedef struct busy {
    int fd;
    int status;
    bool waiting;
} busy;

static int wait_readable_task(lb_task *t, void *data) {
    busy *b = data;
    (void)t;
    b->waiting = true;
    b->status = lb_wait_readable(b->fd, -1);
    b->waiting = false;
    return 0;
}

typedef struct busy_check {
    busy *first;
    lb_task *first_task;
    busy second;
    int add_reader, add_writer, second_read, second_write;
} busy_check;

/* One consumer per direction: while a task awaits readability, another
 * waiter or a reader callback is refused; the other direction is free. */
static int check_busy(lb_task *t, void *data) {
    busy_check *bc = data;
    (void)t;
    lb_loop *loop = lb_loop_get_running();
    while (!bc->first->waiting)
        lb_sleep(0.005);
    int fd = bc->first->fd;
    bc->add_reader = lb_loop_add_reader(loop, fd, nop, NULL);
    bc->second_read = lb_wait_readable(fd, 1);
    bc->second_write = lb_wait_writable(fd, 1);
    bc->add_writer = lb_loop_add_writer(loop, fd, nop, NULL);
    if (bc->add_writer == 0)
        lb_loop_remove_writer(loop, fd);
    lb_task_cancel(bc->first_task);
    return 0;
}

static void test_io_one_consumer_per_direction(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    busy first = {.fd = fd[0]};
    lb_task *t = fixture_spawn(loop, wait_readable_task, &first);
    busy_check bc = {.first = &first, .first_task = t};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, check_busy, &bc), 10), 0);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(bc.add_reader, -EBUSY);
    assert_int_equal(bc.second_read, -EBUSY);
    assert_int_equal(bc.second_write, 0);
    assert_int_equal(bc.add_writer, 0);
    assert_int_equal(first.status, -ECANCELED);
    /* And a reader callback keeps tasks out until it is removed. */
    assert_int_equal(lb_loop_add_reader(loop, fd[0], nop, NULL), 0);
    busy other = {.fd = fd[0]};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, wait_readable_task, &other), 5), 0);
    assert_int_equal(other.status, -EBUSY);
    assert_int_equal(lb_loop_remove_reader(loop, fd[0]), 1);
    assert_unwatched(loop, fd[0]);
    close(fd[0]);
    close(fd[1]);
    fixture_loop_free(loop);
}

static void test_io_outside_task_and_misuse(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    char buf[4];
    assert_int_equal(lb_read(0, buf, sizeof buf, 1), -EPERM);
    assert_int_equal(lb_write(1, buf, sizeof buf, 1), -EPERM);
    assert_int_equal(lb_wait_readable(0, 1), -EPERM);
    assert_int_equal(lb_accept(0, 1), -EPERM);
    assert_int_equal(lb_set_nonblocking(-1, true), -EBADF);
    fixture_loop_free(loop);
}

typedef struct misuse {
    int fd;
    int bad_fd, read_blocking, regular;
} misuse;

static int misuse_task(lb_task *t, void *data) {
    misuse *m = data;
    char buf[4];
    (void)t;
    m->bad_fd = (int)lb_read(-1, buf, sizeof buf, 1);
    m->read_blocking = (int)lb_read(m->fd, buf, sizeof buf, 1);
    char path[] = "/tmp/lb-io-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    lb_set_nonblocking(file, true);
    m->regular = lb_wait_writable(file, 1);
    close(file);
    return 0;
}

/* Debug mode refuses a blocking fd instead of letting it block the
 * loop; a regular file cannot be awaited (it is always ready). */
static void test_io_debug_checks_blocking_fd(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_set_debug(loop, true), 0);
    int fd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
    misuse m = {.fd = fd[0]};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, misuse_task, &m), 5), 0);
    assert_int_equal(m.bad_fd, -EBADF);
    assert_int_equal(m.read_blocking, -EINVAL);
    assert_int_equal(m.regular, -EPERM);
    assert_int_equal(lb_set_nonblocking(fd[0], true), 0);
    assert_true(fcntl(fd[0], F_GETFL) & O_NONBLOCK);
    assert_int_equal(lb_set_nonblocking(fd[0], false), 0);
    assert_false(fcntl(fd[0], F_GETFL) & O_NONBLOCK);
    close(fd[0]);
    close(fd[1]);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */
/* accept and connect                                                  */
/* ------------------------------------------------------------------ */

typedef struct conn {
    int listen_fd;
    struct sockaddr_in addr;
    int accepted;
    int connect_status;
    int client;
    double timeout;
    bool waiting;
} conn;

static int accept_task(lb_task *t, void *data) {
    conn *c = data;
    (void)t;
    c->waiting = true;
    c->accepted = lb_accept(c->listen_fd, c->timeout);
    c->waiting = false;
    return c->accepted < 0 ? c->accepted : 0;
}

static int connect_task(lb_task *t, void *data) {
    conn *c = data;
    (void)t;
    c->client = tcp_socket();
    c->waiting = true;
    c->connect_status =
        lb_connect(c->client, (struct sockaddr *)&c->addr, sizeof c->addr, c->timeout);
    c->waiting = false;
    return c->connect_status;
}

static void test_io_accept_and_connect(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds_before = fixture_fd_baseline(loop);
    conn c = {.timeout = 10};
    c.listen_fd = listen_loopback(16, &c.addr);
    lb_task *a = fixture_spawn(loop, accept_task, &c);
    lb_task *k = fixture_spawn(loop, connect_task, &c);
    assert_int_equal(fixture_finish(loop, k, 10), 0);
    assert_int_equal(fixture_finish(loop, a, 10), 0);
    assert_true(c.accepted >= 0);
    assert_true(fcntl(c.accepted, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(c.accepted, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(c.client, "ping", 4), 4);
    char buf[8];
    rw r = {.fd = {c.accepted, -1}, .timeout = 5};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, read_task, &r), 10), 0);
    assert_int_equal(r.n, 4);
    memcpy(buf, r.buf, 4);
    assert_memory_equal(buf, "ping", 4);
    close(c.accepted);
    close(c.client);
    close(c.listen_fd);
    assert_int_equal(fixture_count_fds(), fds_before);
    fixture_loop_free(loop);
}

static void test_io_connect_refused(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    conn c = {.timeout = 10};
    /* A port that was just free: nothing listens there. */
    int probe = listen_loopback(1, &c.addr);
    close(probe);
    lb_task *k = fixture_spawn(loop, connect_task, &c);
    assert_int_equal(fixture_finish(loop, k, 10), -ECONNREFUSED);
    assert_int_equal(c.connect_status, -ECONNREFUSED);
    assert_unwatched(loop, c.client);
    close(c.client);
    fixture_loop_free(loop);
}

static void test_io_accept_cancel_and_timeout(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    conn c = {.timeout = -1};
    c.listen_fd = listen_loopback(16, &c.addr);
    lb_task *a = fixture_spawn(loop, accept_task, &c);
    fixture_canceller k = {.target = a, .waiting = &c.waiting};
    fixture_cancel_when_waiting(loop, &k);
    assert_int_equal(fixture_finish(loop, a, 10), -ECANCELED);
    assert_unwatched(loop, c.listen_fd);
    c.timeout = 0.03;
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, accept_task, &c), 10), -ETIMEDOUT);
    /* The listening socket still accepts. */
    c.timeout = 10;
    a = fixture_spawn(loop, accept_task, &c);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, connect_task, &c), 10), 0);
    assert_int_equal(fixture_finish(loop, a, 10), 0);
    close(c.accepted);
    close(c.client);
    close(c.listen_fd);
    fixture_loop_free(loop);
}

/* A connect that cannot complete: the listener's accept queue (backlog 0)
 * holds one connection that nobody accepts, so the kernel drops the next
 * handshake and the client waits for its retransmission (a second away,
 * then three). */
static void test_io_connect_cancel_and_timeout(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    conn c = {.timeout = 10};
    c.listen_fd = listen_loopback(0, &c.addr);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, connect_task, &c), 10), 0);
    int queued = c.client;

    c.timeout = -1;
    lb_task *k = fixture_spawn(loop, connect_task, &c);
    fixture_canceller kc = {.target = k, .waiting = &c.waiting};
    fixture_cancel_when_waiting(loop, &kc);
    assert_int_equal(fixture_finish(loop, k, 10), -ECANCELED);
    assert_unwatched(loop, c.client);
    close(c.client);

    c.timeout = 0.05;
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, connect_task, &c), 10), -ETIMEDOUT);
    assert_unwatched(loop, c.client);
    close(c.client);
    close(queued);
    close(c.listen_fd);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */
/* 100 concurrent echo clients on raw fds                              */
/* ------------------------------------------------------------------ */

#define ECHO_CLIENTS 100
#define ECHO_ROUNDS 10

typedef struct echo {
    lb_loop *loop;
    int listen_fd;
    struct sockaddr_in addr;
    int served_fds[ECHO_CLIENTS];
    int served, next_session, clients_ok, sessions_done;
    bool all_done;
} echo;

static int echo_session(lb_task *t, void *data) {
    echo *e = data;
    int fd = e->served_fds[e->next_session++];
    (void)t;
    char buf[256];
    ssize_t n;
    int r = 0;
    while ((n = lb_read(fd, buf, sizeof buf, 30)) > 0) {
        ssize_t w = lb_write(fd, buf, (size_t)n, 30);
        if (w < 0) {
            r = (int)w;
            break;
        }
    }
    if (n < 0)
        r = (int)n;
    close(fd);
    if (++e->sessions_done == ECHO_CLIENTS)
        e->all_done = true;
    return r;
}

static int echo_acceptor(lb_task *t, void *data) {
    echo *e = data;
    (void)t;
    while (e->served < ECHO_CLIENTS) {
        int fd = lb_accept(e->listen_fd, 30);
        if (fd < 0)
            return fd;
        e->served_fds[e->served++] = fd;
        int r = lb_task_spawn(e->loop, echo_session, e, NULL, NULL);
        if (r < 0) {
            close(fd);
            return r;
        }
    }
    return 0;
}

static int echo_client(lb_task *t, void *data) {
    echo *e = data;
    (void)t;
    int fd = tcp_socket();
    int r = lb_connect(fd, (struct sockaddr *)&e->addr, sizeof e->addr, 30);
    for (int i = 0; r == 0 && i < ECHO_ROUNDS; i++) {
        char msg[32], got[32];
        int len = snprintf(msg, sizeof msg, "message %d from %p", i, (void *)t);
        ssize_t w = lb_write(fd, msg, (size_t)len, 30);
        if (w < 0) {
            r = (int)w;
            break;
        }
        int have = 0;
        while (have < len) {
            ssize_t n = lb_read(fd, got + have, (size_t)(len - have), 30);
            if (n <= 0) {
                r = n < 0 ? (int)n : -EPIPE;
                break;
            }
            have += (int)n;
        }
        if (r == 0 && memcmp(msg, got, (size_t)len) != 0)
            r = -EBADMSG;
    }
    close(fd);
    if (r == 0)
        e->clients_ok++;
    return r;
}

static void test_io_echo_100_clients(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds_before = fixture_fd_baseline(loop);
    echo e = {.loop = loop};
    e.listen_fd = listen_loopback(ECHO_CLIENTS, &e.addr);
    lb_task *acceptor = fixture_spawn(loop, echo_acceptor, &e);
    lb_task *clients[ECHO_CLIENTS];
    for (int i = 0; i < ECHO_CLIENTS; i++)
        clients[i] = fixture_spawn(loop, echo_client, &e);
    for (int i = 0; i < ECHO_CLIENTS; i++)
        assert_int_equal(fixture_finish(loop, clients[i], 60), 0);
    assert_int_equal(fixture_finish(loop, acceptor, 60), 0);
    assert_int_equal(e.clients_ok, ECHO_CLIENTS);
    assert_int_equal(e.served, ECHO_CLIENTS);
    /* The sessions see their clients' end of file and end on their own. */
    fixture_run_until(loop, &e.all_done, 30);
    close(e.listen_fd);
    assert_int_equal(fixture_count_fds(), fds_before);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */
/* Hostile lengths, reused fds, running out of fds                     */
/* ------------------------------------------------------------------ */

typedef struct too_long {
    int fd;
    ssize_t write_some, write, read;
    char detail[256];
} too_long;

static int too_long_task(lb_task *t, void *data) {
    too_long *c = data;
    (void)t;
    char *small = calloc(1, 64);
    if (!small)
        return -ENOMEM;
    /* A failed read's -1 passed on as a length. */
    c->write_some = lb_write_some(c->fd, small, (size_t)-1, 1);
    snprintf(c->detail, sizeof c->detail, "%s", lb_error_detail());
    c->write = lb_write(c->fd, small, (size_t)SSIZE_MAX + 1, 1);
    c->read = lb_read(c->fd, small, (size_t)-1, 1);
    free(small);
    return 0;
}

/* A length above SSIZE_MAX is refused before any system call: the peer
 * receives none of the memory that follows the buffer. */
static void test_io_length_too_large(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    too_long c = {.fd = fd[0]};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, too_long_task, &c), 10), 0);
    assert_int_equal(c.write_some, -EINVAL);
    assert_non_null(strstr(c.detail, "too large"));
    assert_int_equal(c.write, -EINVAL);
    assert_int_equal(c.read, -EINVAL);
    char b;
    assert_int_equal(recv(fd[1], &b, 1, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    close(fd[0]);
    close(fd[1]);
    fixture_loop_free(loop);
}

/* A socket pair whose first end has the (free) number num. */
static void make_socketpair_at(int fd[2], int num) {
    make_socketpair(fd);
    if (fd[0] != num) {
        assert_int_equal(dup2(fd[0], num), num);
        close(fd[0]);
        fd[0] = num;
    }
}

/* Other code closes an fd a task awaits, and the number is reused: a task
 * awaiting the new file is served (the old wait is stale: the kernel
 * forgot its file), and the stale waiter wakes with -EBADF rather than
 * keep the number busy until its timeout. A reader callback left on the
 * closed fd is dropped the same way. */
static void test_io_fd_reused_while_awaited(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int a[2], b[2];
    make_socketpair(a);
    int num = a[0];
    busy old = {.fd = num};
    lb_task *t_old = fixture_spawn(loop, wait_readable_task, &old);
    fixture_run_until(loop, &old.waiting, 10);
    close(a[0]);
    make_socketpair_at(b, num);
    busy fresh = {.fd = num};
    lb_task *t_new = fixture_spawn(loop, wait_readable_task, &fresh);
    assert_int_equal(write(b[1], "x", 1), 1);
    assert_int_equal(fixture_finish(loop, t_new, 10), 0);
    assert_int_equal(fresh.status, 0);
    assert_int_equal(fixture_finish(loop, t_old, 10), 0);
    assert_int_equal(old.status, -EBADF);
    assert_unwatched(loop, num);

    /* A reader callback on the closed number keeps no task out. */
    char x;
    assert_int_equal(read(num, &x, 1), 1);
    assert_int_equal(lb_loop_add_reader(loop, num, nop, NULL), 0);
    close(num);
    int c[2];
    make_socketpair_at(c, num);
    fresh = (busy){.fd = num};
    t_new = fixture_spawn(loop, wait_readable_task, &fresh);
    assert_int_equal(write(c[1], "y", 1), 1);
    assert_int_equal(fixture_finish(loop, t_new, 10), 0);
    assert_int_equal(fresh.status, 0);
    assert_unwatched(loop, num);

    /* Nor does a stale waiter keep a reader callback out. */
    old = (busy){.fd = num};
    t_old = fixture_spawn(loop, wait_readable_task, &old);
    fixture_run_until(loop, &old.waiting, 10);
    close(num);
    int d[2];
    make_socketpair_at(d, num);
    assert_int_equal(lb_loop_add_reader(loop, num, nop, NULL), 0);
    assert_int_equal(fixture_finish(loop, t_old, 10), 0);
    assert_int_equal(old.status, -EBADF);
    assert_int_equal(lb_loop_remove_reader(loop, num), 1);
    assert_unwatched(loop, num);
    close(num);
    close(a[1]);
    close(b[1]);
    close(c[1]);
    close(d[1]);
    fixture_loop_free(loop);
}

/* The highest open fd number. */
static int highest_fd(void) {
    int high = -1;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            high = fd;
    return high;
}

typedef struct accept_retry {
    int listen_fd;
    int status[3];
    double elapsed;
} accept_retry;

/* Retries lb_accept as a naive server would. */
static int accept_retry_task(lb_task *t, void *data) {
    accept_retry *c = data;
    (void)t;
    double start = fixture_now();
    for (int i = 0; i < 3; i++)
        c->status[i] = lb_accept(c->listen_fd, 5);
    c->elapsed = fixture_now() - start;
    return 0;
}

/* Valgrind keeps descriptors of its own under the limit it shows, and
 * closes an accepted one above it (consuming the connection). */
static bool under_valgrind(void) {
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}

/* Out of descriptors, lb_accept fails with -EMFILE only after a pause, as
 * the server's accepting does, so that a loop retrying it does not spin;
 * once descriptors are free again the waiting connection is accepted. */
static void test_io_accept_backs_off_without_fds(void **state) {
    (void)state;
    if (under_valgrind())
        skip();
    lb_loop *loop = fixture_loop_new();
    struct sockaddr_in addr;
    int l = listen_loopback(8, &addr);
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(client >= 0);
    assert_int_equal(connect(client, (struct sockaddr *)&addr, sizeof addr), 0);

    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)highest_fd() + 8;
    enum { MAX_FILLERS = 4096 };
    int *fillers = calloc(MAX_FILLERS, sizeof *fillers), n = 0;
    assert_non_null(fillers);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < MAX_FILLERS && (fillers[n] = dup(l)) >= 0)
        n++;
    accept_retry c = {.listen_fd = l};
    lb_task *t = fixture_spawn(loop, accept_retry_task, &c);
    int status = fixture_finish(loop, t, 30);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    free(fillers);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(status, 0);
    assert_true(n < MAX_FILLERS);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.status[i], -EMFILE);
    assert_true(c.elapsed >= 0.25);

    conn ok = {.listen_fd = l, .timeout = 5};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, accept_task, &ok), 10), 0);
    assert_true(ok.accepted >= 0);
    close(ok.accepted);
    close(client);
    close(l);
    fixture_loop_free(loop);
}

int run_io_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_read_awaits_data),
        cmocka_unit_test(test_io_read_timeout),
        cmocka_unit_test(test_io_read_cancel),
        cmocka_unit_test(test_io_write_everything),
        cmocka_unit_test(test_io_write_cancel_full_pipe),
        cmocka_unit_test(test_io_write_some_and_epipe),
        cmocka_unit_test(test_io_one_consumer_per_direction),
        cmocka_unit_test(test_io_outside_task_and_misuse),
        cmocka_unit_test(test_io_debug_checks_blocking_fd),
        cmocka_unit_test(test_io_accept_and_connect),
        cmocka_unit_test(test_io_connect_refused),
        cmocka_unit_test(test_io_accept_cancel_and_timeout),
        cmocka_unit_test(test_io_connect_cancel_and_timeout),
        cmocka_unit_test(test_io_echo_100_clients),
        cmocka_unit_test(test_io_length_too_large),
        cmocka_unit_test(test_io_fd_reused_while_awaited),
        cmocka_unit_test(test_io_accept_backs_off_without_fds),
    };
    return cmocka_run_group_tests_name("io", tests, NULL, NULL);
}
