/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_IO_H
#define LOOPBRIDGE_IO_H

/* Awaitable file descriptors: asyncio's sock_recv / sock_sendall /
 * sock_accept / sock_connect for any non-blocking descriptor (socket,
 * pipe, terminal, eventfd...). Each call runs inside a task: it tries the
 * system call first and only when that would block (EAGAIN) awaits
 * readiness through the loop, so data that is already there costs no
 * round trip through the loop.
 *
 *     static int echo_once(lb_task *task, void *data) {
 *         int fd = *(int *)data;
 *         char buf[512];
 *         ssize_t n = lb_read(fd, buf, sizeof buf, 5.0);  // at most 5 s
 *         if (n <= 0)
 *             return (int)n;                              // EOF or -errno
 *         return (int)lb_write(fd, buf, (size_t)n, -1);   // everything
 *     }
 *
 * Common rules:
 * - fd must be in non-blocking mode (O_NONBLOCK; see lb_set_nonblocking()),
 *   or the system call blocks the loop's thread. Debug mode checks it and
 *   fails with -EINVAL.
 * - timeout is in seconds; a negative timeout means no limit, 0 means "do
 *   not wait" (-ETIMEDOUT at once if the call would block).
 * - Cancellation (lb_task_cancel(), or lb_wait_for() on the task's future)
 *   makes a pending call return -ECANCELED. Whatever ends the call, the fd
 *   is left open, unwatched and usable: the caller still owns it.
 * - Readiness goes to one consumer per direction. While a task awaits fd
 *   for reading, another task awaiting it for reading, or
 *   lb_loop_add_reader() on it, fails with -EBUSY (and likewise for
 *   writing): with level-triggered readiness both would be woken for the
 *   same bytes and split them at random. The two directions are
 *   independent: one task may read a socket while another writes it.
 * - Outside a task every call returns -EPERM. */

#include <loopbridge/common.h>

#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Awaits until fd is readable (data, end of file, a pending connection on
 * a listening socket, a hang-up or an error) or timeout seconds passed.
 * Returns 0; -ETIMEDOUT; -ECANCELED; -EBUSY (see above); -EBADF (fd not
 * open); -EPERM (outside a task, or a regular file, which is always
 * ready); -ENOMEM. */
LB_EXPORT int lb_wait_readable(int fd, double timeout);

/* As lb_wait_readable(), until fd is writable. */
LB_EXPORT int lb_wait_writable(int fd, double timeout);

/* Reads up to len bytes from fd, awaiting data if none is there yet.
 * Returns the number of bytes read (at least 1), 0 at end of file, or a
 * negative errno: the read error (-ECONNRESET...), -ETIMEDOUT,
 * -ECANCELED, -EINVAL if len is above SSIZE_MAX (a negative count passed
 * on as a length), and the errors of lb_wait_readable(). */
LB_EXPORT ssize_t lb_read(int fd, void *buf, size_t len, double timeout);

/* Writes at least one byte of buf (up to len), awaiting room if there is
 * none. Returns the number of bytes written, or a negative errno: the
 * write error (-EPIPE once the reader is gone, -ECONNRESET...),
 * -ETIMEDOUT, -ECANCELED, -EINVAL if len is above SSIZE_MAX (refused
 * before anything is written: typically a failed read's negative count
 * passed on as a length, which would send the memory after buf), and the
 * errors of lb_wait_writable(). Never raises SIGPIPE. len 0 returns 0. */
LB_EXPORT ssize_t lb_write_some(int fd, const void *buf, size_t len, double timeout);

/* Writes all len bytes of buf, awaiting room as often as needed; timeout
 * bounds the whole call. Returns len, or a negative errno as
 * lb_write_some(); on failure an unknown prefix of buf may have been
 * written (loop on lb_write_some() to know how much). Never raises
 * SIGPIPE. */
LB_EXPORT ssize_t lb_write(int fd, const void *buf, size_t len, double timeout);

/* Accepts a connection on the listening socket fd, awaiting one if none is
 * pending. Returns the new socket, non-blocking and close-on-exec, owned
 * by the caller; or a negative errno: -ETIMEDOUT, -ECANCELED, -EMFILE or
 * -ENFILE (out of descriptors), -ENOBUFS or -ENOMEM, the errors of
 * lb_wait_readable(). Out of descriptors or memory, the connection stays
 * in the backlog and the error is returned after a pause of 0.1 s (less
 * if the timeout ends sooner), as lb_start_server() pauses, so that a
 * loop retrying lb_accept() does not spin. A connection the peer aborted
 * before it was accepted is skipped. */
LB_EXPORT int lb_accept(int fd, double timeout);

/* Connects the non-blocking socket fd to addr, awaiting the handshake.
 * Returns 0 once connected; or a negative errno: the connection's error
 * (-ECONNREFUSED, -ENETUNREACH...), -ETIMEDOUT, -ECANCELED, -EAGAIN (a
 * Unix socket whose listener's backlog is full), the errors of
 * lb_wait_writable(). After a failure, timeout or cancellation the socket
 * cannot be connected again: close it. */
LB_EXPORT int lb_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, double timeout);

/* Sets (nonblocking true) or clears O_NONBLOCK on fd. Returns 0, -EBADF.
 * Any thread. */
LB_EXPORT int lb_set_nonblocking(int fd, bool nonblocking);

#ifdef __cplusplus
}
#endif

#endif
