/* SPDX-License-Identifier: MIT */
#ifndef LB_IO_INTERNAL_H
#define LB_IO_INTERNAL_H

/* What the I/O layer (io.c, stream.c, server.c, dns.c, process.c) shares
 * with the fd watches of fd.c. */

#include "future_internal.h"

#include <sys/types.h>

enum { LB__IO_READ = 0, LB__IO_WRITE = 1 };

enum {
    /* Leave the epoll interest registered once the wait is over, so that
     * the next wait on the same fd costs no epoll_ctl. A readiness event
     * that arrives while nobody waits drops the interest. Only for fds
     * whose owner calls lb__fd_forget() before closing them: a
     * registration left behind on a closed fd whose file lives on (a dup,
     * a child's copy) would go on reporting events for a number that may
     * since name another file. */
    LB__IO_KEEP = 1u << 0,
};

/* Stores in *ret a future that completes (result NULL) once fd is ready
 * in direction dir (LB__IO_READ or LB__IO_WRITE; a hang-up or error
 * counts as ready for both). Cancelling the future withdraws the wait.
 * One waiter per direction, and never next to an lb_loop_add_reader /
 * add_writer callback of that direction: -EBUSY. Also -EBADF (fd not
 * open), -EPERM (regular file), -ENOMEM. Loop thread. */
int lb__fd_wait(lb_loop *loop, int fd, int dir, unsigned flags, lb_future **ret);

/* Withdraws the wait of fd in dir if its future is still waiting, without
 * completing it (the caller does). */
void lb__fd_wait_withdraw(lb_loop *loop, int fd, int dir, lb_future *future);

/* Drops the interest that LB__IO_KEEP waits left registered for fd, and
 * the fd's watch if nothing else uses it. Call it before closing fd. */
void lb__fd_forget(lb_loop *loop, int fd);

/* write(2) that never raises SIGPIPE: send(MSG_NOSIGNAL) on a socket
 * (is_socket: 1 yes, 0 no, -1 unknown: try send first), else write with
 * SIGPIPE blocked in the calling thread and a SIGPIPE it caused
 * discarded. Returns the bytes written or -errno (-EAGAIN when full). */
ssize_t lb__io_write(int fd, const void *buf, size_t len, int is_socket);

/* 0 if len fits in the ssize_t a read or write returns; else -EINVAL
 * with a message naming func. A larger length is a caller's mistake,
 * typically a failed call's negative count passed on as a length, which
 * would send the memory after the buffer or overrun it. */
int lb__io_check_length(const lb_loop *loop, size_t len, const char *func);

/* accept(2) failed for want of descriptors or memory: the connection
 * waits in the backlog, and retrying at once would only spin. Accepting
 * pauses for LB__ACCEPT_PAUSE_S seconds then (the server stops watching
 * its sockets, lb_accept() sleeps before it reports the error). */
#define LB__ACCEPT_PAUSE_S 0.1
bool lb__accept_out_of_resources(int error);

/* read(2) returning the count or -errno, retrying on EINTR. */
ssize_t lb__io_read(int fd, void *buf, size_t len);

/* Logs a reference count that would go below zero; true if it would. */
bool lb__io_no_ref_left(unsigned refs, const char *what, const void *object);

/* The running task's loop, or -EPERM with a message naming func. */
int lb__io_task_loop(const char *func, lb_loop **ret);

/* Awaits readiness of fd in dir for at most timeout seconds (< 0: no
 * limit) in the running task. Returns 0, -ETIMEDOUT, -ECANCELED, or an
 * error of lb__fd_wait(). The fd is unwatched again when it returns. */
int lb__io_wait(lb_loop *loop, int fd, int dir, unsigned flags, double timeout);

/* Seconds left until deadline (an lb__clock_ns() time; INT64_MAX: none),
 * as a timeout for lb__io_wait(): -1 for none, 0 once passed. */
double lb__io_remaining(int64_t deadline);

/* The deadline timeout seconds from now (timeout < 0: INT64_MAX). */
int64_t lb__io_deadline(double timeout);

/* True if something besides its first owner holds the stream: a
 * reference the caller took, or a task waiting in one of its calls. */
typedef struct lb_stream lb_stream;
bool lb__stream_shared(const lb_stream *stream);

/* getaddrinfo without a thread, when host needs no lookup: a numeric
 * address, or NULL (the wildcard or loopback address), with a numeric or
 * NULL service. Returns 0 with the list in *ret, a negative errno, or 1:
 * host is a name, which needs lb_getaddrinfo(). Any context. */
struct addrinfo;
int lb__resolve_numeric(const lb_loop *loop, const char *host, const char *service,
                        const struct addrinfo *hints, struct addrinfo **ret);

#endif
