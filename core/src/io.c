/* SPDX-License-Identifier: MIT */
/* Awaitable file descriptors: each call tries its system call first and
 * awaits readiness (a future of the fd's watch, see fd.c) only when the
 * call would block. */
#include <loopbridge/io.h>
#include <loopbridge/task.h>

#include "error.h"
#include "io_internal.h"
#include "task_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Shared by the I/O layer                                             */
/* ------------------------------------------------------------------ */

int lb__io_task_loop(const char *func, lb_loop **ret) {
    lb_task *t = lb__current_task;
    if (!t)
        return lb__fail(NULL, -EPERM, "%s: called outside a task", func);
    *ret = t->loop;
    return 0;
}

bool lb__io_no_ref_left(unsigned refs, const char *what, const void *object) {
    if (refs > 0)
        return false;
    lb__log(LB_LOG_ERROR, "%s_unref: %p has no reference left", what, object);
    return true;
}

int lb__io_check_length(const lb_loop *loop, size_t len, const char *func) {
    if (len <= SSIZE_MAX)
        return 0;
    return lb__fail(loop, -EINVAL,
                    "%s: length %zu is too large (above SSIZE_MAX; a failed call's negative "
                    "count passed on as a length?)",
                    func, len);
}

int64_t lb__io_deadline(double timeout) {
    if (timeout < 0 || timeout > 1e9)
        return INT64_MAX;
    return lb__clock_ns() + (int64_t)ceil(timeout * 1e9);
}

double lb__io_remaining(int64_t deadline) {
    if (deadline == INT64_MAX)
        return -1;
    int64_t left = deadline - lb__clock_ns();
    return left > 0 ? (double)left / 1e9 : 0;
}

/* Readiness right now, without the loop: what a zero timeout asks. */
static bool ready_now(int fd, int dir) {
    struct pollfd p = {.fd = fd, .events = dir == LB__IO_READ ? POLLIN : POLLOUT};
    int n;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    return n > 0;
}

int lb__io_wait(lb_loop *loop, int fd, int dir, unsigned flags, double timeout) {
    if (timeout == 0) {
        if (ready_now(fd, dir))
            return 0;
        return lb__fail(loop, -ETIMEDOUT, "fd %d is not %s", fd,
                        dir == LB__IO_READ ? "readable" : "writable");
    }
    lb_future *f = NULL;
    int r = lb__fd_wait(loop, fd, dir, flags, &f);
    if (r < 0)
        return r;
    /* Cancellation and the timeout cancel f, whose hook unwatches fd. */
    r = timeout < 0 ? lb_await(f, NULL) : lb_wait_for(f, timeout, NULL);
    lb_future_unref(f);
    return r;
}

ssize_t lb__io_read(int fd, void *buf, size_t len) {
    ssize_t n;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* write() with SIGPIPE blocked in this thread: the kernel then leaves the
 * signal pending instead of killing the process, and it is taken back
 * before the mask is restored. Only when it was not blocked already, or
 * it could be one the application means to receive. */
static ssize_t write_without_sigpipe(int fd, const void *buf, size_t len) {
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    ssize_t n;
    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : 0;
    if (err == EPIPE && !sigismember(&old, SIGPIPE)) {
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            (void)sigtimedwait(&pipe_only, NULL, &zero);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return n < 0 ? -err : n;
}

ssize_t lb__io_write(int fd, const void *buf, size_t len, int is_socket) {
    if (is_socket != 0) {
        for (;;) {
            ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
            if (n >= 0)
                return n;
            if (errno == EINTR)
                continue;
            if (errno == ENOTSOCK && is_socket < 0)
                break;
            return -errno;
        }
    }
    return write_without_sigpipe(fd, buf, len);
}

/* ------------------------------------------------------------------ */
/* The public calls                                                    */
/* ------------------------------------------------------------------ */

/* The preamble of every call: inside a task, a sane fd and timeout; in
 * debug mode, an fd in non-blocking mode. */
static int enter(int fd, double timeout, const char *func, lb_loop **ret) {
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(func, &loop);
    if (r < 0)
        return r;
    lb_assert_return(!isnan(timeout), -EINVAL);
    if (fd < 0)
        return lb__fail(loop, -EBADF, "%s: fd %d is not a file descriptor", func, fd);
    if (loop->debug) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
            return lb__fail(loop, -EBADF, "%s: fd %d is not open", func, fd);
        if (!(fl & O_NONBLOCK))
            return lb__fail(loop, -EINVAL,
                            "%s: fd %d is in blocking mode and would block the loop; "
                            "lb_set_nonblocking() it first",
                            func, fd);
    }
    *ret = loop;
    return 0;
}

static int wait_ready(int fd, int dir, double timeout, const char *func) {
    lb_loop *loop = NULL;
    int r = enter(fd, timeout, func, &loop);
    if (r < 0)
        return r;
    return lb__io_wait(loop, fd, dir, 0, timeout);
}

int lb_wait_readable(int fd, double timeout) {
    return wait_ready(fd, LB__IO_READ, timeout, __func__);
}

int lb_wait_writable(int fd, double timeout) {
    return wait_ready(fd, LB__IO_WRITE, timeout, __func__);
}

ssize_t lb_read(int fd, void *buf, size_t len, double timeout) {
    lb_loop *loop = NULL;
    int r = enter(fd, timeout, __func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(buf || len == 0, -EINVAL);
    r = lb__io_check_length(loop, len, __func__);
    if (r < 0)
        return r;
    int64_t deadline = lb__io_deadline(timeout);
    for (;;) {
        ssize_t n = lb__io_read(fd, buf, len);
        if (n >= 0)
            return n;
        if (n != -EAGAIN)
            return lb__fail(loop, (int)n, "lb_read: fd %d: %s", fd, strerror((int)-n));
        r = lb__io_wait(loop, fd, LB__IO_READ, 0, lb__io_remaining(deadline));
        if (r < 0)
            return r;
    }
}

/* One write once fd takes some, by the deadline. */
static ssize_t write_some(lb_loop *loop, int fd, const void *buf, size_t len, int64_t deadline,
                          const char *func) {
    for (;;) {
        ssize_t n = lb__io_write(fd, buf, len, -1);
        if (n >= 0)
            return n;
        if (n != -EAGAIN)
            return lb__fail(loop, (int)n, "%s: fd %d: %s", func, fd, strerror((int)-n));
        int r = lb__io_wait(loop, fd, LB__IO_WRITE, 0, lb__io_remaining(deadline));
        if (r < 0)
            return r;
    }
}

ssize_t lb_write_some(int fd, const void *buf, size_t len, double timeout) {
    lb_loop *loop = NULL;
    int r = enter(fd, timeout, __func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(buf || len == 0, -EINVAL);
    r = lb__io_check_length(loop, len, __func__);
    if (r < 0 || len == 0)
        return r;
    return write_some(loop, fd, buf, len, lb__io_deadline(timeout), __func__);
}

ssize_t lb_write(int fd, const void *buf, size_t len, double timeout) {
    lb_loop *loop = NULL;
    int r = enter(fd, timeout, __func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(buf || len == 0, -EINVAL);
    r = lb__io_check_length(loop, len, __func__);
    if (r < 0)
        return r;
    int64_t deadline = lb__io_deadline(timeout);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write_some(loop, fd, (const char *)buf + done, len - done, deadline, __func__);
        if (n < 0)
            return n;
        done += (size_t)n;
    }
    return (ssize_t)len;
}

/* Errors of accept(2) that concern only the connection being accepted
 * (the peer gave up, the network went away): skip it, as accept(2)'s
 * manual asks. */
static bool skippable_accept_error(int e) {
    switch (e) {
    case ECONNABORTED:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case ENETDOWN:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

bool lb__accept_out_of_resources(int error) {
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

/* accept(2) ran out of descriptors or memory: the error is reported after
 * a pause (shortened by the deadline; cancellation ends it), so that a
 * caller retrying at once does not spin, as the server's accepting
 * pauses. */
static int accept_exhausted(lb_loop *loop, int fd, int e, int64_t deadline) {
    double left = lb__io_remaining(deadline);
    double pause = left >= 0 && left < LB__ACCEPT_PAUSE_S ? left : LB__ACCEPT_PAUSE_S;
    int r = lb_sleep(pause);
    if (r < 0)
        return r;
    return lb__fail(loop, -e, "lb_accept: fd %d: %s (reported after a %.1f s pause)", fd,
                    strerror(e), pause);
}

int lb_accept(int fd, double timeout) {
    lb_loop *loop = NULL;
    int r = enter(fd, timeout, __func__, &loop);
    if (r < 0)
        return r;
    int64_t deadline = lb__io_deadline(timeout);
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0)
            return c;
        int e = errno;
        if (e == EINTR || skippable_accept_error(e))
            continue;
        if (lb__accept_out_of_resources(e))
            return accept_exhausted(loop, fd, e, deadline);
        if (e != EAGAIN)
            return lb__fail(loop, -e, "lb_accept: fd %d: %s", fd, strerror(e));
        r = lb__io_wait(loop, fd, LB__IO_READ, 0, lb__io_remaining(deadline));
        if (r < 0)
            return r;
    }
}

int lb_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, double timeout) {
    lb_loop *loop = NULL;
    int r = enter(fd, timeout, __func__, &loop);
    if (r < 0)
        return r;
    lb_assert_return(addr, -EINVAL);
    if (connect(fd, addr, addrlen) == 0)
        return 0;
    int e = errno;
    if (e == EAGAIN)
        return lb__fail(loop, -EAGAIN,
                        "lb_connect: fd %d: the listening socket's backlog is full", fd);
    if (e != EINPROGRESS && e != EINTR)
        return lb__fail(loop, -e, "lb_connect: fd %d: %s", fd, strerror(e));
    /* The handshake goes on in the kernel; the socket turns writable
     * when it is over, and SO_ERROR says how it went. */
    r = lb__io_wait(loop, fd, LB__IO_WRITE, 0, timeout);
    if (r < 0)
        return r;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        return lb__fail(loop, -err, "lb_connect: fd %d: %s", fd, strerror(err));
    return 0;
}

int lb_set_nonblocking(int fd, bool nonblocking) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return lb__fail(NULL, -EBADF, "lb_set_nonblocking: fd %d is not open", fd);
    int want = nonblocking ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (want != fl && fcntl(fd, F_SETFL, want) < 0)
        return lb__fail(NULL, -errno, "lb_set_nonblocking: fd %d: %s", fd, strerror(errno));
    return 0;
}
