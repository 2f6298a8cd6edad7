/* SPDX-License-Identifier: MIT */
/* TCP and Unix-domain servers, and client connections. A server accepts
 * from a reader callback on each listening socket (no task needed for
 * that) and spawns a task per connection. The task releases its
 * connection when it ends; a connection task cancelled before it first
 * ran never runs, so the server releases those itself: at once when it
 * cancels them, or when it closes if another cancelled them. */
#include <loopbridge/dns.h>
#include <loopbridge/io.h>
#include <loopbridge/stream.h>
#include <loopbridge/task.h>

#include "alloc.h"
#include "error.h"
#include "io_internal.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LISTENERS 8
#define ACCEPTS_PER_CALLBACK 64

typedef struct connection connection;

struct lb_server {
    lb_loop *loop;
    unsigned refs;             /* the user's: the last one closes the server */
    unsigned holds;            /* the connections': the server lives on for them */
    lb_stream_handler handler;
    void *data;
    lb_server_options opts;
    struct listener {
        lb_server *server;
        int fd;
    } listeners[MAX_LISTENERS];
    size_t nfds;
    int port;                  /* TCP; -1 for Unix */
    char *path;                /* Unix: the socket file, removed at close */
    dev_t path_dev;
    ino_t path_ino;
    bool closed;
    bool paused;               /* accepting paused after EMFILE and the like */
    lb_handle *resume;         /* the timer that resumes it */
    connection *conns;         /* live connection tasks */
    size_t nconns;
    lb_future *idle;           /* completed when closed with no connection left */
    lb_resource resource;      /* on the loop until freed */
};

struct connection {
    lb_server *server;
    lb_stream *stream;
    lb_task *task;
    bool started; /* its task ran: it releases the connection itself */
    connection *prev, *next;
};

static void server_release(lb_server *srv);

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static void check_idle(lb_server *srv) {
    if (srv->closed && srv->nconns == 0 && srv->idle) {
        lb_future *f = srv->idle;
        srv->idle = NULL;
        lb__future_complete(f, LB__FUTURE_RESULT, NULL, NULL, 0);
        lb_future_unref(f);
    }
}

static void connection_release(connection *c) {
    lb_server *srv = c->server;
    lb_stream_abort(c->stream); /* a no-op when the task closed it */
    lb_stream_unref(c->stream);
    lb_task_unref(c->task);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    lb__free(c);
    check_idle(srv);
    srv->holds--;
    server_release(srv);
}

static int connection_main(lb_task *task, void *data) {
    connection *c = data;
    lb_server *srv = c->server;
    c->started = true;
    int r = srv->handler(c->stream, srv->data);
    if (r == -ECANCELED || lb_task_cancelling(task)) {
        lb_stream_abort(c->stream);
        r = -ECANCELED;
    } else {
        /* Send what the handler queued before the fd closes. */
        lb_stream_close(c->stream);
        if (lb_stream_wait_closed(c->stream) == -ECANCELED)
            lb_stream_abort(c->stream);
        if (r < 0)
            lb__report(srv->loop, r, NULL, task, "connection handler of a server failed: %s",
                       strerror(-r));
    }
    connection_release(c);
    return r == -ECANCELED ? r : 0;
}

/* Connections whose task was cancelled before it first ran. */
static void release_unstarted(lb_server *srv) {
    connection *next;
    for (connection *c = srv->conns; c; c = next) {
        next = c->next;
        if (!c->started && lb_task_is_done(c->task))
            connection_release(c);
    }
}

static void serve(lb_server *srv, int fd) {
    lb_loop *loop = srv->loop;
    if (srv->port >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    connection *c = lb__calloc(1, sizeof *c);
    int r = c ? lb_stream_new(loop, fd, &srv->opts.stream, &c->stream) : -ENOMEM;
    if (r < 0) {
        close(fd);
        lb__free(c);
        lb__report(loop, r, NULL, NULL, "server: a connection was dropped: %s", strerror(-r));
        return;
    }
    c->server = srv;
    lb_task_options o = {.name = "connection", .stack_size = srv->opts.stack_size};
    r = lb_task_spawn(loop, connection_main, c, &o, &c->task);
    if (r < 0) {
        lb_stream_unref(c->stream);
        lb__free(c);
        lb__report(loop, r, NULL, NULL, "server: a connection was dropped: %s", strerror(-r));
        return;
    }
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->holds++;
}

static int start_accepting(lb_server *srv);

static void resume_accepting(lb_loop *loop, void *data) {
    lb_server *srv = data;
    (void)loop;
    srv->resume = lb_handle_unref(srv->resume);
    srv->paused = false;
    if (!srv->closed && start_accepting(srv) < 0)
        lb__report(srv->loop, -ENOMEM, NULL, NULL, "server: cannot resume accepting: %s",
                   lb_error_detail());
    srv->holds--;
    server_release(srv);
}

static void stop_accepting(lb_server *srv) {
    for (size_t i = 0; i < srv->nfds; i++)
        lb_loop_remove_reader(srv->loop, srv->listeners[i].fd);
}

static void on_acceptable(lb_loop *loop, void *data) {
    struct listener *l = data;
    lb_server *srv = l->server;
    for (int k = 0; k < ACCEPTS_PER_CALLBACK && !srv->closed && !srv->paused; k++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            serve(srv, fd);
            continue;
        }
        int e = errno;
        if (e == EAGAIN || e == EINTR || e == ECONNABORTED || e == EPROTO)
            return;
        if (lb__accept_out_of_resources(e)) {
            lb__report(loop, -e, NULL, NULL, "server: cannot accept (%s); pausing for %.1f s",
                       strerror(e), LB__ACCEPT_PAUSE_S);
            stop_accepting(srv);
            srv->paused = true;
            if (lb_loop_call_later(loop, LB__ACCEPT_PAUSE_S, resume_accepting, srv, &srv->resume) ==
                0)
                srv->holds++;
            return;
        }
        lb__report(loop, -e, NULL, NULL, "server: accept failed: %s", strerror(e));
        return;
    }
}

static int start_accepting(lb_server *srv) {
    for (size_t i = 0; i < srv->nfds; i++) {
        int r = lb_loop_add_reader(srv->loop, srv->listeners[i].fd, on_acceptable,
                                   &srv->listeners[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Server lifetime                                                     */
/* ------------------------------------------------------------------ */

/* The loop closes (its tasks, the connections', have unwound): the
 * server closes as lb_server_close(server, true) would, and is freed
 * unless the user still holds it. */
static void server_resource_close(lb_resource *resource) {
    lb_server *srv = (lb_server *)((char *)resource - offsetof(lb_server, resource));
    srv->holds++;
    lb_server_close(srv, true);
    srv->holds--;
    server_release(srv);
}

static const lb_resource_ops server_resource_ops = {.name = "server",
                                                    .close = server_resource_close};

static int server_new(lb_loop *loop, lb_stream_handler handler, void *data,
                      const lb_server_options *opts, lb_server **ret) {
    lb_server *srv = lb__calloc(1, sizeof *srv);
    if (!srv)
        return lb__fail(loop, -ENOMEM, "lb_start_server: out of memory");
    srv->loop = lb_loop_ref(loop);
    srv->refs = 1;
    srv->handler = handler;
    srv->data = data;
    if (opts)
        srv->opts = *opts;
    if (srv->opts.backlog <= 0)
        srv->opts.backlog = 128;
    srv->port = -1;
    lb_driver_resource_add(loop, &srv->resource, &server_resource_ops); /* cannot fail here */
    *ret = srv;
    return 0;
}

static void close_listeners(lb_server *srv) {
    if (!lb_loop_is_closed(srv->loop))
        stop_accepting(srv);
    for (size_t i = 0; i < srv->nfds; i++)
        close(srv->listeners[i].fd);
    srv->nfds = 0;
    if (srv->path) {
        /* Only the socket this server made: another may have replaced it. */
        struct stat st;
        if (stat(srv->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == srv->path_dev &&
            st.st_ino == srv->path_ino)
            unlink(srv->path);
    }
}

int lb_server_close(lb_server *server, bool cancel_connections) {
    lb_assert_return(server, -EINVAL);
    int r = lb__loop_check_thread(server->loop, __func__);
    if (r < 0)
        return r;
    if (!server->closed) {
        server->closed = true;
        close_listeners(server);
        if (server->resume) {
            if (lb_handle_cancel(server->resume) == 1)
                server->holds--; /* the timer's; the caller holds the server */
            server->resume = lb_handle_unref(server->resume);
        }
    }
    server->holds++; /* releasing connections must not free it under us */
    if (cancel_connections) {
        connection *next;
        for (connection *c = server->conns; c; c = next) {
            next = c->next;
            lb_task_cancel(c->task); /* a started one releases itself as it ends */
            /* One accepted since its task last had a turn never runs now
             * (nobody else holds its task to uncancel it), and nothing
             * would tell the server when its task is done: release it. */
            if (!c->started)
                connection_release(c);
        }
    }
    release_unstarted(server);
    check_idle(server);
    server->holds--;
    return 0;
}

int lb_server_wait_closed(lb_server *server) {
    lb_assert_return(server, -EINVAL);
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(__func__, &loop);
    if (r < 0)
        return r;
    if (!server->closed)
        return lb__fail(loop, -EINVAL, "lb_server_wait_closed: the server is open");
    if (server->nconns == 0)
        return 0;
    if (!server->idle) {
        r = lb_future_new(loop, &server->idle);
        if (r < 0)
            return r;
    }
    /* A shield, so that one waiter's cancellation leaves the others be. */
    lb_future *mine = NULL;
    r = lb_shield(server->idle, &mine);
    if (r < 0)
        return r;
    /* Held while waiting, as every waiting call holds its object: another
     * task may drop the caller's last reference meanwhile. */
    server->refs++;
    r = lb_await(mine, NULL);
    lb_future_unref(mine);
    lb_server_unref(server);
    return r;
}

static void server_ref(void *server) {
    ((lb_server *)server)->refs++;
}

lb_server *lb_server_ref(lb_server *server) {
    return server && lb__loop_release_call(server->loop, __func__, server_ref, server) ? server
                                                                                       : NULL;
}

/* Frees the server once the user and the connections let go. */
static void server_release(lb_server *srv) {
    if (srv->refs > 0 || srv->holds > 0)
        return;
    if (srv->idle) {
        lb_future_cancel(srv->idle);
        lb_future_unref(srv->idle);
    }
    lb_loop *loop = srv->loop;
    lb_driver_resource_remove(&srv->resource);
    lb__free(srv->path);
    lb__free(srv);
    lb_loop_unref(loop);
}

static void server_unref(void *data) {
    lb_server *server = data;
    if (lb__io_no_ref_left(server->refs, "lb_server", server) || --server->refs > 0)
        return;
    lb_server_close(server, false);
    server_release(server);
}

lb_server *lb_server_unref(lb_server *server) {
    if (server)
        lb__loop_release_call(server->loop, __func__, server_unref, server);
    return NULL;
}

int lb_server_port(const lb_server *server) {
    lb_assert_return(server && server->port >= 0, -EINVAL);
    return server->port;
}

size_t lb_server_connections(const lb_server *server) {
    return server ? server->nconns : 0;
}

/* ------------------------------------------------------------------ */
/* Listening                                                           */
/* ------------------------------------------------------------------ */

static int port_of(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

static void set_port(struct sockaddr *sa, int port) {
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

static int listen_on(lb_server *srv, const struct addrinfo *ai) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (srv->opts.reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    /* Port 0 on several addresses: the one the first got, on all. */
    if (srv->port > 0 && port_of((struct sockaddr *)&addr) == 0)
        set_port((struct sockaddr *)&addr, srv->port);
    if (bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) < 0 ||
        listen(fd, srv->opts.backlog) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    socklen_t len = sizeof addr;
    if (srv->port <= 0 && getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        srv->port = port_of((struct sockaddr *)&addr);
    srv->listeners[srv->nfds++] = (struct listener){srv, fd};
    return 0;
}

static int start_listening(lb_server *srv, const char *what) {
    int r = start_accepting(srv);
    if (r < 0) {
        close_listeners(srv);
        return lb__fail(srv->loop, r, "%s: cannot watch the listening socket: %s", what,
                        strerror(-r));
    }
    return 0;
}

int lb_start_server(lb_loop *loop, const char *host, uint16_t port, lb_stream_handler handler,
                    void *data, const lb_server_options *opts, lb_server **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(handler, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int r = lb__resolve_numeric(loop, host, service, &hints, &res);
    if (r == 1) {
        if (!lb_task_current())
            return lb__fail(loop, -EPERM,
                            "lb_start_server: host \"%s\" is a name: start the server in a task, "
                            "or give a numeric address",
                            host);
        r = lb_getaddrinfo(host, service, &hints, -1, &res);
    }
    if (r < 0)
        return r;
    lb_server *srv = NULL;
    r = server_new(loop, handler, data, opts, &srv);
    if (r < 0) {
        freeaddrinfo(res);
        return r;
    }
    srv->port = 0;
    int err = 0;
    for (struct addrinfo *ai = res; ai && srv->nfds < MAX_LISTENERS; ai = ai->ai_next) {
        int e = listen_on(srv, ai);
        /* A family the machine lacks (IPv6 off) is skipped for the
         * wildcard; any other failure fails the server. */
        if (e == -EAFNOSUPPORT || (e == -EADDRNOTAVAIL && ai->ai_family == AF_INET6 && !host))
            continue;
        if (e < 0) {
            err = e;
            break;
        }
    }
    freeaddrinfo(res);
    if (err == 0 && srv->nfds == 0)
        err = -EAFNOSUPPORT;
    if (err < 0) {
        close_listeners(srv);
        srv->closed = true;
        lb_server_unref(srv);
        return lb__fail(loop, err, "lb_start_server: cannot listen on %s:%u: %s",
                        host ? host : "*", (unsigned)port, strerror(-err));
    }
    r = start_listening(srv, "lb_start_server");
    if (r < 0) {
        srv->closed = true;
        lb_server_unref(srv);
        return r;
    }
    *ret = srv;
    return 0;
}

static int unix_address(const lb_loop *loop, const char *path, struct sockaddr_un *addr,
                        const char *func) {
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof addr->sun_path)
        return lb__fail(loop, n ? -ENAMETOOLONG : -EINVAL,
                        "%s: the socket path must be 1 to %zu bytes long", func,
                        sizeof addr->sun_path - 1);
    *addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    memcpy(addr->sun_path, path, n);
    return 0;
}

int lb_start_unix_server(lb_loop *loop, const char *path, lb_stream_handler handler, void *data,
                         const lb_server_options *opts, lb_server **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(path, -EINVAL);
    lb_assert_return(handler, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    struct sockaddr_un addr;
    int r = unix_address(loop, path, &addr, __func__);
    if (r < 0)
        return r;
    /* A socket file left behind by an earlier server is replaced. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    lb_server *srv = NULL;
    r = server_new(loop, handler, data, opts, &srv);
    if (r < 0)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(fd, srv->opts.backlog) < 0 || stat(path, &st) < 0) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        srv->closed = true;
        lb_server_unref(srv);
        return lb__fail(loop, r, "%s: cannot listen on %s: %s", __func__, path, strerror(-r));
    }
    srv->listeners[srv->nfds++] = (struct listener){srv, fd};
    size_t n = strlen(path) + 1;
    srv->path = lb__malloc(n);
    if (srv->path) {
        memcpy(srv->path, path, n);
        srv->path_dev = st.st_dev;
        srv->path_ino = st.st_ino;
    }
    r = srv->path ? start_listening(srv, __func__) : -ENOMEM;
    if (r < 0) {
        if (!srv->path) {
            close_listeners(srv);
            unlink(path);
        }
        srv->closed = true;
        lb_server_unref(srv);
        return r == -ENOMEM ? lb__fail(loop, r, "%s: out of memory", __func__) : r;
    }
    *ret = srv;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Client connections                                                  */
/* ------------------------------------------------------------------ */

/* Connects a new socket to addr and wraps it in a stream. */
static int connect_stream(lb_loop *loop, const struct sockaddr *addr, socklen_t len, bool tcp,
                          const lb_stream_options *opts, double timeout, lb_stream **ret) {
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lb__fail(loop, -errno, "cannot make a socket: %s", strerror(errno));
    if (tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int r = lb_connect(fd, addr, len, timeout);
    if (r == 0)
        r = lb_stream_new(loop, fd, opts, ret);
    if (r < 0)
        close(fd);
    return r;
}

int lb_open_connection(const char *host, uint16_t port, const lb_stream_options *opts,
                       double timeout, lb_stream **ret) {
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(__func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(host, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    int64_t deadline = lb__io_deadline(timeout);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    r = lb_getaddrinfo(host, service, &hints, lb__io_remaining(deadline), &res);
    if (r < 0)
        return r;
    r = -ENXIO;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        r = connect_stream(loop, ai->ai_addr, ai->ai_addrlen, true, opts,
                           lb__io_remaining(deadline), ret);
        if (r == 0 || r == -ECANCELED || r == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return r;
}

int lb_open_unix_connection(const char *path, const lb_stream_options *opts, double timeout,
                            lb_stream **ret) {
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(__func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(path, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    struct sockaddr_un addr;
    r = unix_address(loop, path, &addr, __func__);
    if (r < 0)
        return r;
    return connect_stream(loop, (struct sockaddr *)&addr, sizeof addr, false, opts, timeout, ret);
}
