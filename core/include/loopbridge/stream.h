/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_STREAM_H
#define LOOPBRIDGE_STREAM_H

/* Buffered streams over a socket or a pipe (asyncio's StreamReader and
 * StreamWriter in one object), TCP and Unix-domain servers that run a
 * task per connection, and client connections.
 *
 *     static int handle(lb_stream *s, void *data) {        // one task each
 *         char line[256];
 *         ssize_t n;
 *         while ((n = lb_stream_readline(s, line, sizeof line)) > 0) {
 *             int r = lb_stream_write(s, line, (size_t)n);  // buffered
 *             if (r == 0)
 *                 r = lb_stream_drain(s);                    // backpressure
 *             if (r < 0)
 *                 return r;
 *         }
 *         return (int)n;  // 0 at end of stream; the server closes s after
 *     }
 *     ...
 *     lb_start_server(loop, "127.0.0.1", 8888, handle, NULL, NULL, &server);
 *
 * Reading is pulled: bytes are read from the fd only inside a read call,
 * so a stream that is not read holds at most what the last call buffered
 * and the peer is held back by the kernel's flow control. Writing is
 * pushed: lb_stream_write() never waits; it writes what the fd takes at
 * once and buffers the rest, which the loop sends as the fd turns
 * writable; lb_stream_drain() awaits until the buffer is small again.
 *
 * Ownership: a stream owns its fd from lb_stream_new() on and closes it
 * (lb_stream_close(), lb_stream_abort(), or its last reference); do not
 * close it yourself. Streams are loop-thread objects. Calls that wait
 * (reads, drain, flush, wait_closed) run inside a task and return -EPERM
 * elsewhere; at most one task reads a stream at a time (-EBUSY). A call
 * that waits holds a reference of its own until it returns, so another
 * task may drop the last of yours meanwhile: the call ends as it would
 * have, and the stream goes once it returned. */

#include <loopbridge/common.h>

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_stream lb_stream;
typedef struct lb_server lb_server;

typedef struct lb_stream_options {
    /* The longest frame lb_stream_read_until() and lb_stream_readline()
     * accept, delimiter included; 0: 64 KiB. */
    size_t limit;
    /* lb_stream_drain()'s high-water mark: it waits while more than this
     * is buffered, until a quarter of it is left; 0: 64 KiB. */
    size_t write_limit;
} lb_stream_options;

/* ------------------------------------------------------------------ */
/* Streams                                                             */
/* ------------------------------------------------------------------ */

/* Wraps fd (a socket or a pipe end; it is switched to non-blocking mode)
 * in a stream with one reference for the caller; opts may be NULL. On
 * success the stream owns fd; on failure the caller still does.
 * Returns 0; -EINVAL; -EBADF (fd not open, or the loop is closed); -EPERM
 * (a regular file or wrong thread); -ENOMEM. Loop thread. */
LB_EXPORT int lb_stream_new(lb_loop *loop, int fd, const lb_stream_options *opts,
                            lb_stream **ret);

/* Takes a reference. Returns stream (NULL, logged, on a thread that does
 * not run its open loop). Loop thread. */
LB_EXPORT lb_stream *lb_stream_ref(lb_stream *stream);

/* Drops a reference; returns NULL. The last one (a task waiting in a
 * call on the stream holds one) aborts the stream if it is still open
 * (unsent data is dropped). Close it first to have the data
 * sent: a closing stream lives on until its data is out, or until its
 * loop closes. NULL is a no-op. Loop thread (elsewhere refused and logged
 * while the loop is open). */
LB_EXPORT lb_stream *lb_stream_unref(lb_stream *stream);

/* The stream's fd (borrowed, for getsockopt and the like), or -1 once it
 * is closed. */
LB_EXPORT int lb_stream_fd(const lb_stream *stream);

/* Sets the time limit, in seconds, of each call that waits on this
 * stream (< 0: none, the default). A call that runs out returns
 * -ETIMEDOUT and leaves the stream usable (what it read stays buffered).
 * Returns 0, -EINVAL, -EPERM (wrong thread). Loop thread. */
LB_EXPORT int lb_stream_set_timeout(lb_stream *stream, double seconds);

/* Reads up to len bytes: what is buffered, else what the fd has, awaiting
 * data if there is none. Returns the count (at least 1), 0 at end of
 * stream, or a negative errno: the read error (-ECONNRESET...),
 * -ETIMEDOUT, -ECANCELED, -EBADF once the stream is closed, -EBUSY if
 * another task is reading, -EPERM outside a task, -EINVAL if len is above
 * SSIZE_MAX. */
LB_EXPORT ssize_t lb_stream_read(lb_stream *stream, void *buf, size_t len);

/* Reads exactly len bytes into buf. Returns len; 0 if the stream ended
 * before its first byte; -ENODATA if it ended in the middle: nothing is
 * consumed then, the partial frame stays buffered (lb_stream_read()
 * returns it, lb_stream_buffered() counts it). Other errors as
 * lb_stream_read(); after them too, what was read stays buffered. */
LB_EXPORT ssize_t lb_stream_read_exactly(lb_stream *stream, void *buf, size_t len);

/* Reads up to and including the first occurrence of the delim_len bytes
 * of delim (found even when it arrives split across reads) into buf.
 * Returns the frame's length, delimiter included; 0 if the stream ended
 * with nothing buffered; -ENODATA if it ended in the middle of a frame;
 * -EMSGSIZE if the frame is longer than the stream's limit or than cap.
 * On every error nothing is consumed: the bytes stay buffered. Other
 * errors as lb_stream_read(). */
LB_EXPORT ssize_t lb_stream_read_until(lb_stream *stream, const void *delim, size_t delim_len,
                                       void *buf, size_t cap);

/* lb_stream_read_until() with "\n", except that at end of stream a last
 * line without its newline is returned as is (asyncio's readline). The
 * line is not NUL-terminated. */
LB_EXPORT ssize_t lb_stream_readline(lb_stream *stream, void *buf, size_t cap);

/* Bytes read from the fd and not consumed yet. */
LB_EXPORT size_t lb_stream_buffered(const lb_stream *stream);

/* True once the peer ended the stream and every buffered byte was
 * consumed. */
LB_EXPORT bool lb_stream_at_eof(const lb_stream *stream);

/* Queues len bytes of buf for sending: writes what the fd takes now and
 * copies the rest, which the loop sends as the fd turns writable; never
 * waits, so a callback may call it too. Returns 0; the error that ended
 * sending earlier (-EPIPE, -ECONNRESET...: later writes return it too);
 * -EBADF once the stream is closing; -EINVAL if len is above SSIZE_MAX
 * (refused before anything is sent: typically a failed read's negative
 * count passed on as a length); -ENOMEM, also when the queue would grow
 * past SSIZE_MAX bytes. Never raises SIGPIPE. */
LB_EXPORT int lb_stream_write(lb_stream *stream, const void *buf, size_t len);

/* Bytes queued and not sent yet. */
LB_EXPORT size_t lb_stream_write_buffered(const lb_stream *stream);

/* Backpressure: returns at once while at most the write limit is
 * buffered, else awaits until a quarter of it is left (after
 * lb_stream_close() too, while the rest is sent). Returns 0, the send
 * error, -ETIMEDOUT, -ECANCELED (what is buffered is still sent), -EBADF
 * if the stream was aborted, -EPERM outside a task. */
LB_EXPORT int lb_stream_drain(lb_stream *stream);

/* Awaits until everything queued was sent. Errors as lb_stream_drain(). */
LB_EXPORT int lb_stream_flush(lb_stream *stream);

/* Half-closes a socket stream once what is queued was sent
 * (shutdown(SHUT_WR): the peer reads end of stream and may still
 * answer). Returns 0; -ENOTSOCK for a pipe (close it instead); -EBADF if
 * closing. */
LB_EXPORT int lb_stream_write_eof(lb_stream *stream);

/* Starts closing: reads fail with -EBADF from now on (a pending read
 * returns it at once), the queued data is sent in the background, then
 * the fd is closed. Returns 0 (also when already closing). Never waits. */
LB_EXPORT int lb_stream_close(lb_stream *stream);

/* Awaits the end of lb_stream_close(). Returns 0 once the fd is closed
 * with everything sent, or the error that cut sending short; -ETIMEDOUT,
 * -ECANCELED (closing goes on), -EINVAL if the stream is not closing,
 * -EPERM outside a task. */
LB_EXPORT int lb_stream_wait_closed(lb_stream *stream);

/* Closes now: queued data is dropped, a pending read returns -EBADF,
 * drain and flush return -EBADF. Returns 0. */
LB_EXPORT int lb_stream_abort(lb_stream *stream);

/* True once lb_stream_close() or lb_stream_abort() was called. */
LB_EXPORT bool lb_stream_is_closing(const lb_stream *stream);

/* ------------------------------------------------------------------ */
/* Servers                                                             */
/* ------------------------------------------------------------------ */

/* Serves one connection, in a task of its own: the stream is the
 * connection (borrowed: the server closes it, flushing what was queued,
 * once the handler returns, or aborts it if the task was cancelled; take
 * a reference to keep the object longer). Returns 0, or a negative errno
 * that is reported to the loop's exception handler (-ECANCELED is not). */
typedef int (*lb_stream_handler)(lb_stream *stream, void *data);

typedef struct lb_server_options {
    int backlog;              /* listen(2) backlog; 0: 128 */
    bool reuse_port;          /* SO_REUSEPORT (TCP) */
    lb_stream_options stream; /* for the connections' streams */
    size_t stack_size;        /* of the connection tasks; 0: the default */
} lb_server_options;

/* Listens on host:port over TCP and runs handler(stream, data) in a new
 * task for each connection accepted (TCP_NODELAY set). host NULL listens
 * on every interface (IPv4 and IPv6); a numeric address on that one; a
 * name on each address it resolves to, which needs a task (-EPERM
 * otherwise). port 0 picks a free port (lb_server_port()). SO_REUSEADDR
 * is set. opts may be NULL. *ret gets a reference (drop it with
 * lb_server_unref(), which closes the server).
 * Returns 0; -EADDRINUSE; -EACCES; -EINVAL; -ENXIO (unknown host);
 * -ENOMEM; -EMFILE; -EBADF (closed loop); -EPERM. Loop thread. */
LB_EXPORT int lb_start_server(lb_loop *loop, const char *host, uint16_t port,
                              lb_stream_handler handler, void *data,
                              const lb_server_options *opts, lb_server **ret);

/* As lb_start_server() on a Unix-domain socket at path. A socket file
 * left at path by a previous server is replaced; any other file makes it
 * fail with -EADDRINUSE. Closing the server removes the socket file.
 * -ENAMETOOLONG if path does not fit a sockaddr_un. */
LB_EXPORT int lb_start_unix_server(lb_loop *loop, const char *path, lb_stream_handler handler,
                                   void *data, const lb_server_options *opts,
                                   lb_server **ret);

/* The TCP port the server listens on (useful with port 0), or -EINVAL
 * for a Unix-domain server. */
LB_EXPORT int lb_server_port(const lb_server *server);

/* Connections being served now. */
LB_EXPORT size_t lb_server_connections(const lb_server *server);

/* Stops accepting: the listening sockets are closed at once. With
 * cancel_connections, every connection task is cancelled too (their
 * streams are aborted as they end); otherwise they run on. Returns 0
 * (also when closed already), -EINVAL. */
LB_EXPORT int lb_server_close(lb_server *server, bool cancel_connections);

/* Awaits until the server is closed and its last connection task ended,
 * holding a reference to the server meanwhile. Returns 0, -ECANCELED,
 * -EINVAL if the server is not closed, -EPERM outside a task. */
LB_EXPORT int lb_server_wait_closed(lb_server *server);

/* Takes a reference. Returns server (NULL, logged, on a thread that does
 * not run its open loop). Loop thread. */
LB_EXPORT lb_server *lb_server_ref(lb_server *server);

/* Drops a reference; returns NULL. The last one closes the server
 * (lb_server_close(server, false)): connections still being served go
 * on, and the object is freed once they ended. NULL is a no-op. Loop
 * thread (elsewhere refused and logged while the loop is open). */
LB_EXPORT lb_server *lb_server_unref(lb_server *server);

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/* Connects to host:port over TCP (TCP_NODELAY set) and stores a stream
 * with one reference in *ret. host is resolved with lb_getaddrinfo()
 * (numbers at once); each address is tried in turn until one connects.
 * timeout bounds the whole call (< 0: no limit); opts may be NULL.
 * Returns 0; the last address's connect error (-ECONNREFUSED...); -ENXIO
 * (unknown host); -ETIMEDOUT; -ECANCELED; -ENOMEM; -EPERM outside a
 * task. */
LB_EXPORT int lb_open_connection(const char *host, uint16_t port, const lb_stream_options *opts,
                                 double timeout, lb_stream **ret);

/* As lb_open_connection() to the Unix-domain socket at path;
 * -ENAMETOOLONG, -ENOENT (no socket there), -ECONNREFUSED (nobody
 * listening), -EAGAIN (the listener's backlog is full). */
LB_EXPORT int lb_open_unix_connection(const char *path, const lb_stream_options *opts,
                                      double timeout, lb_stream **ret);

#ifdef __cplusplus
}
#endif

#endif
