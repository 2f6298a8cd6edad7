/* SPDX-License-Identifier: MIT */
/* Buffered streams. Reads are pulled by the reading task: the buffer
 * fills only inside a read call, and a frame that is not complete stays
 * in it. Writes are pushed: what the fd does not take at once is copied
 * and sent from a writer watch on the fd (lb_loop_add_writer), so that
 * writing never waits and works from plain callbacks too.
 *
 * The read side keeps its epoll interest between reads (LB__IO_KEEP): a
 * task that reads, answers and reads again costs no epoll_ctl. The
 * stream owns its fd and forgets the interest before closing it.
 *
 * A stream is a resource of its loop (lb_resource): when the loop
 * closes, it aborts the stream and drops the reference a closing stream
 * holds on itself while its queued data is sent after its last user let
 * go. Nothing here hinges on a queued callback holding a reference: a
 * watch's queued event holds none (it finds the watch again by fd). */
#include <loopbridge/stream.h>
#include <loopbridge/task.h>

#include "alloc.h"
#include "error.h"
#include "io_internal.h"

#include <limits.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loopbridge/io.h>

#define DEFAULT_LIMIT (64 * 1024)
#define READ_CHUNK (16 * 1024)

struct lb_stream {
    lb_loop *loop;
    unsigned refs;
    int fd;
    bool is_socket;
    size_t limit;
    size_t write_high, write_low;
    double timeout;

    /* Reading: bytes rbuf[rstart, rend) are buffered. */
    char *rbuf;
    size_t rstart, rend, rcap;
    bool eof;           /* the peer ended the stream */
    bool drained;       /* the last read was short: the fd had nothing more */
    int read_error;     /* sticky: returned once the buffer is consumed */
    bool reading;       /* a task is inside a read call */
    lb_future *read_wait; /* its readiness wait (borrowed) */

    /* Writing: bytes wbuf[wstart, wend) are queued. */
    char *wbuf;
    size_t wstart, wend, wcap;
    int write_error;       /* sticky: sending stopped for good */
    bool writer_on;        /* the writer watch sends the queue */
    lb_future *progress;   /* completed when sending progressed, failed or the fd closed */
    bool eof_pending, eof_sent;

    /* Closing. */
    bool closing, aborted, closed;
    int close_status;
    bool holds_self; /* closing with data queued and no user: one reference */
    lb_resource resource;
};

static size_t rbuffered(const lb_stream *s) {
    return s->rend - s->rstart;
}

static size_t wbuffered(const lb_stream *s) {
    return s->wend - s->wstart;
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                            */
/* ------------------------------------------------------------------ */

static void stream_resource_close(lb_resource *resource);
static const lb_resource_ops stream_resource_ops = {.name = "stream",
                                                    .close = stream_resource_close};

int lb_stream_new(lb_loop *loop, int fd, const lb_stream_options *opts, lb_stream **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(ret, -EINVAL);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return lb__fail(loop, -EBADF, "lb_stream_new: fd %d is not open", fd);
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return lb__fail(loop, -EPERM,
                        "lb_stream_new: fd %d is a regular file, which cannot be awaited", fd);
    int r = lb_set_nonblocking(fd, true);
    if (r < 0)
        return r;
    lb_stream *s = lb__calloc(1, sizeof *s);
    if (!s)
        return lb__fail(loop, -ENOMEM, "lb_stream_new: out of memory");
    s->loop = lb_loop_ref(loop);
    s->refs = 1;
    s->fd = fd;
    s->is_socket = S_ISSOCK(st.st_mode);
    s->limit = opts && opts->limit ? opts->limit : DEFAULT_LIMIT;
    s->write_high = opts && opts->write_limit ? opts->write_limit : DEFAULT_LIMIT;
    s->write_low = s->write_high / 4;
    s->timeout = -1;
    lb_driver_resource_add(loop, &s->resource, &stream_resource_ops); /* cannot fail here */
    *ret = s;
    return 0;
}

static void stream_ref(void *stream) {
    ((lb_stream *)stream)->refs++;
}

lb_stream *lb_stream_ref(lb_stream *stream) {
    return stream && lb__loop_release_call(stream->loop, __func__, stream_ref, stream) ? stream
                                                                                       : NULL;
}

static void stream_unref(void *data) {
    lb_stream *stream = data;
    if (lb__io_no_ref_left(stream->refs, "lb_stream", stream) || --stream->refs > 0)
        return;
    /* Closed with data still queued: it lives on until that is sent. */
    if (stream->closing && !stream->closed && stream->writer_on) {
        stream->holds_self = true;
        stream->refs = 1;
        return;
    }
    if (!stream->closed)
        lb_stream_abort(stream);
    if (stream->progress) {
        lb_future_cancel(stream->progress);
        lb_future_unref(stream->progress);
    }
    lb_loop *loop = stream->loop;
    lb_driver_resource_remove(&stream->resource);
    lb__free(stream->rbuf);
    lb__free(stream->wbuf);
    lb__free(stream);
    lb_loop_unref(loop);
}

lb_stream *lb_stream_unref(lb_stream *stream) {
    if (stream)
        lb__loop_release_call(stream->loop, __func__, stream_unref, stream);
    return NULL;
}

bool lb__stream_shared(const lb_stream *stream) {
    return stream->refs > 1;
}

int lb_stream_fd(const lb_stream *stream) {
    return stream && !stream->closed ? stream->fd : -1;
}

int lb_stream_set_timeout(lb_stream *stream, double seconds) {
    lb_assert_return(stream, -EINVAL);
    lb_assert_return(!isnan(seconds), -EINVAL);
    int r = lb__loop_check_thread(stream->loop, __func__);
    if (r < 0)
        return r;
    stream->timeout = seconds < 0 ? -1 : seconds;
    return 0;
}

size_t lb_stream_buffered(const lb_stream *stream) {
    return stream ? rbuffered(stream) : 0;
}

bool lb_stream_at_eof(const lb_stream *stream) {
    return stream && stream->eof && rbuffered(stream) == 0;
}

size_t lb_stream_write_buffered(const lb_stream *stream) {
    return stream ? wbuffered(stream) : 0;
}

bool lb_stream_is_closing(const lb_stream *stream) {
    return stream && stream->closing;
}

/* ------------------------------------------------------------------ */
/* Progress of sending, for drain, flush and wait_closed               */
/* ------------------------------------------------------------------ */

static void notify_progress(lb_stream *s) {
    lb_future *f = s->progress;
    if (f) {
        s->progress = NULL;
        lb__future_complete(f, LB__FUTURE_RESULT, NULL, NULL, 0);
        lb_future_unref(f);
    }
}

/* Awaits the next notify_progress(). Each waiter awaits a shield of the
 * shared future, so that cancelling one waiter leaves the others be. */
static int wait_progress(lb_stream *s, int64_t deadline) {
    double left = lb__io_remaining(deadline);
    if (left == 0)
        return lb__fail(s->loop, -ETIMEDOUT, "stream %p: timed out", (void *)s);
    if (!s->progress) {
        int r = lb_future_new(s->loop, &s->progress);
        if (r < 0)
            return r;
    }
    lb_future *mine = NULL;
    int r = lb_shield(s->progress, &mine);
    if (r < 0)
        return r;
    r = left < 0 ? lb_await(mine, NULL) : lb_wait_for(mine, left, NULL);
    lb_future_unref(mine);
    return r;
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */
/* ------------------------------------------------------------------ */

/* A closing stream nobody holds keeps itself alive (one reference) until
 * its data is out; release_self drops that reference from a callback,
 * never from within the stream's own frames. Should the loop close
 * first, the stream's close below drops it instead. */
static void drop_self(lb_stream *s) {
    if (s->holds_self) {
        s->holds_self = false;
        lb_stream_unref(s);
    }
}

static void release_self(lb_loop *loop, void *data) {
    (void)loop;
    drop_self(data);
}

static void queue_release(lb_stream *s) {
    if (!lb__call_soon_internal(s->loop, release_self, s))
        lb__log(LB_LOG_ERROR, "stream %p: out of memory while closing; it is released when "
                              "its loop closes", (void *)s);
}

/* The loop closes: the stream is aborted (what it still had to send is
 * lost, a task waiting on it learns it closed) and, if it held itself,
 * released. A user who still holds it finds it closed. */
static void stream_resource_close(lb_resource *resource) {
    lb_stream *s = (lb_stream *)((char *)resource - offsetof(lb_stream, resource));
    lb_stream_abort(s);
    drop_self(s);
}

/* A task waiting to read learns at once that the stream closed. */
static void fail_reader(lb_stream *s) {
    lb_future *f = s->read_wait;
    if (!f)
        return;
    s->read_wait = NULL;
    lb__fd_wait_withdraw(s->loop, s->fd, LB__IO_READ, f);
    lb__future_complete(f, LB__FUTURE_ERROR, NULL, NULL, -EBADF);
    lb__fail(s->loop, -EBADF, "the stream was closed while a task was reading it");
}

static void writer_off(lb_stream *s) {
    if (s->writer_on) {
        s->writer_on = false;
        if (!lb_loop_is_closed(s->loop))
            lb_loop_remove_writer(s->loop, s->fd);
    }
}

static void finish_close(lb_stream *s) {
    if (s->closed)
        return;
    s->closing = s->closed = true;
    fail_reader(s);
    writer_off(s);
    lb__fd_forget(s->loop, s->fd);
    close(s->fd);
    s->fd = -1;
    s->wstart = s->wend = 0;
    s->close_status = s->aborted ? 0 : s->write_error;
    notify_progress(s);
    if (s->holds_self)
        queue_release(s);
}

int lb_stream_close(lb_stream *stream) {
    lb_assert_return(stream, -EINVAL);
    int r = lb__loop_check_thread(stream->loop, __func__);
    if (r < 0)
        return r;
    if (stream->closing)
        return 0;
    stream->closing = true;
    fail_reader(stream);
    /* With data queued, the writer closes the fd once it is out. */
    if (wbuffered(stream) == 0 || stream->write_error || !stream->writer_on)
        finish_close(stream);
    return 0;
}

int lb_stream_abort(lb_stream *stream) {
    lb_assert_return(stream, -EINVAL);
    int r = lb__loop_check_thread(stream->loop, __func__);
    if (r < 0)
        return r;
    if (stream->closed)
        return 0;
    stream->closing = stream->aborted = true;
    if (!stream->write_error)
        stream->write_error = -EBADF;
    finish_close(stream);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */
/* ------------------------------------------------------------------ */

static void send_queued(lb_stream *s);

static void fail_sending(lb_stream *s, int error) {
    if (!s->write_error)
        s->write_error = error;
    writer_off(s);
    s->wstart = s->wend = 0;
    notify_progress(s);
    if (s->closing)
        finish_close(s);
}

static void on_writable(lb_loop *loop, void *data) {
    (void)loop;
    send_queued(data);
}

/* Has the loop send the queue as the fd turns writable. */
static int writer_on(lb_stream *s) {
    if (s->writer_on)
        return 0;
    int r = lb_loop_add_writer(s->loop, s->fd, on_writable, s);
    if (r == 0)
        s->writer_on = true;
    return r;
}

static void send_queued(lb_stream *s) {
    bool progressed = false;
    while (wbuffered(s) > 0) {
        ssize_t n = lb__io_write(s->fd, s->wbuf + s->wstart, wbuffered(s), s->is_socket);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            fail_sending(s, lb__fail(s->loop, (int)n, "stream %p: sending failed: %s",
                                     (void *)s, strerror((int)-n)));
            return;
        }
        s->wstart += (size_t)n;
        progressed = true;
    }
    if (wbuffered(s) > 0) {
        int r = writer_on(s);
        if (r < 0) {
            fail_sending(s, r);
            return;
        }
    } else {
        writer_off(s);
        s->wstart = s->wend = 0;
        if (s->eof_pending && !s->eof_sent) {
            s->eof_sent = true;
            if (shutdown(s->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
                fail_sending(s, -errno);
                return;
            }
        }
    }
    if (progressed && wbuffered(s) <= s->write_low)
        notify_progress(s);
    if (wbuffered(s) == 0 && s->closing)
        finish_close(s);
}

/* Appends to the queue, compacting or growing it. The queue never holds
 * more than SSIZE_MAX bytes, so that its size and its doubling cannot
 * overflow. */
static int enqueue(lb_stream *s, const char *buf, size_t len) {
    size_t used = wbuffered(s);
    if (len > (size_t)SSIZE_MAX - used)
        return lb__fail(s->loop, -ENOMEM,
                        "lb_stream_write: cannot queue %zu more bytes after %zu (out of memory)",
                        len, used);
    if (s->wcap - s->wend < len) {
        if (s->wstart > 0) {
            memmove(s->wbuf, s->wbuf + s->wstart, used);
            s->wstart = 0;
            s->wend = used;
        }
        if (s->wcap - s->wend < len) {
            size_t need = used + len;
            size_t cap = s->wcap ? s->wcap : READ_CHUNK;
            while (cap < need)
                cap = cap > (size_t)SSIZE_MAX / 2 ? need : cap * 2;
            char *b = lb__realloc(s->wbuf, cap);
            if (!b)
                return lb__fail(s->loop, -ENOMEM, "lb_stream_write: out of memory");
            s->wbuf = b;
            s->wcap = cap;
        }
    }
    memcpy(s->wbuf + s->wend, buf, len);
    s->wend += len;
    return 0;
}

int lb_stream_write(lb_stream *stream, const void *buf, size_t len) {
    lb_assert_return(stream, -EINVAL);
    lb_assert_return(buf || len == 0, -EINVAL);
    lb_stream *s = stream;
    LB__CHECK_LOOP(s->loop);
    if (s->closing)
        return lb__fail(s->loop, -EBADF, "lb_stream_write: the stream is closing");
    if (s->write_error)
        return lb__fail(s->loop, s->write_error, "lb_stream_write: sending failed earlier: %s",
                        strerror(-s->write_error));
    if (s->eof_pending || s->eof_sent)
        return lb__fail(s->loop, -EPIPE, "lb_stream_write: after lb_stream_write_eof()");
    int r = lb__io_check_length(s->loop, len, __func__);
    if (r < 0 || len == 0)
        return r;
    const char *p = buf;
    if (wbuffered(s) == 0) {
        ssize_t n = lb__io_write(s->fd, p, len, s->is_socket);
        if (n == (ssize_t)len)
            return 0;
        if (n < 0 && n != -EAGAIN) {
            s->write_error = (int)n;
            return lb__fail(s->loop, (int)n, "lb_stream_write: fd %d: %s", s->fd,
                            strerror((int)-n));
        }
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    r = enqueue(s, p, len);
    if (r < 0)
        return r;
    if (!s->writer_on) {
        r = writer_on(s);
        if (r < 0) {
            s->write_error = r;
            s->wstart = s->wend = 0;
            return r;
        }
    }
    return 0;
}

/* The checks of a call that may wait: in a task of the stream's loop. */
static int check_wait(lb_stream *s, const char *func) {
    lb_assert_return(s, -EINVAL);
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(func, &loop);
    if (r < 0)
        return r;
    if (loop != s->loop)
        return lb__fail(loop, -EXDEV, "%s: the stream belongs to another loop", func);
    return 0;
}

/* check_wait(), and a reference held until end_wait(): another task may
 * drop the last of the caller's while this one waits, and the stream
 * must outlive the call that uses it. */
static int begin_wait(lb_stream *s, const char *func) {
    int r = check_wait(s, func);
    if (r == 0)
        s->refs++;
    return r;
}

/* Drops begin_wait()'s reference (the stream may go with it) and passes
 * the call's result on. */
static ssize_t end_wait(lb_stream *s, ssize_t result) {
    lb_stream_unref(s);
    return result;
}

/* Awaits until at most `left` bytes are queued. */
static int wait_sent(lb_stream *s, size_t left, const char *func) {
    int64_t deadline = lb__io_deadline(s->timeout);
    while (wbuffered(s) > left && !s->write_error && !s->closed) {
        int r = wait_progress(s, deadline);
        if (r < 0)
            return r;
    }
    if (s->write_error)
        return lb__fail(s->loop, s->write_error, "%s: %s", func,
                        s->aborted ? "the stream was aborted" : strerror(-s->write_error));
    return 0;
}

/* wait_sent() as a call of its own, holding the stream meanwhile. */
static int wait_sent_held(lb_stream *s, size_t left, const char *func) {
    int r = begin_wait(s, func);
    if (r < 0)
        return r;
    return (int)end_wait(s, wait_sent(s, left, func));
}

int lb_stream_drain(lb_stream *stream) {
    lb_assert_return(stream, -EINVAL);
    if (wbuffered(stream) <= stream->write_high && !stream->write_error)
        return check_wait(stream, __func__);
    return wait_sent_held(stream, stream->write_low, __func__);
}

int lb_stream_flush(lb_stream *stream) {
    return wait_sent_held(stream, 0, __func__);
}

int lb_stream_write_eof(lb_stream *stream) {
    lb_assert_return(stream, -EINVAL);
    lb_stream *s = stream;
    LB__CHECK_LOOP(s->loop);
    if (!s->is_socket)
        return lb__fail(s->loop, -ENOTSOCK,
                        "lb_stream_write_eof: the stream is not a socket; close it instead");
    if (s->closing)
        return lb__fail(s->loop, -EBADF, "lb_stream_write_eof: the stream is closing");
    if (s->eof_pending || s->eof_sent)
        return 0;
    s->eof_pending = true;
    if (wbuffered(s) == 0) {
        s->eof_sent = true;
        if (shutdown(s->fd, SHUT_WR) < 0 && errno != ENOTCONN)
            return lb__fail(s->loop, -errno, "lb_stream_write_eof: %s", strerror(errno));
    }
    return 0;
}

static int wait_closed(lb_stream *stream) {
    if (!stream->closing)
        return lb__fail(stream->loop, -EINVAL, "lb_stream_wait_closed: the stream is open");
    int64_t deadline = lb__io_deadline(stream->timeout);
    while (!stream->closed) {
        int r = wait_progress(stream, deadline);
        if (r < 0)
            return r;
    }
    return stream->close_status;
}

int lb_stream_wait_closed(lb_stream *stream) {
    int r = begin_wait(stream, __func__);
    if (r < 0)
        return r;
    return (int)end_wait(stream, wait_closed(stream));
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */
/* ------------------------------------------------------------------ */

/* Every read call starts here and, once this succeeded, ends through
 * end_read(); the reference it holds meanwhile is begin_wait()'s. */
static int begin_read(lb_stream *s, const char *func) {
    int r = check_wait(s, func);
    if (r < 0)
        return r;
    if (s->closing)
        return lb__fail(s->loop, -EBADF, "%s: the stream is closed", func);
    if (s->reading)
        return lb__fail(s->loop, -EBUSY, "%s: another task is reading the stream", func);
    s->reading = true;
    s->refs++;
    return 0;
}

static ssize_t end_read(lb_stream *s, ssize_t r) {
    s->reading = false;
    return end_wait(s, r);
}

static int wait_readable(lb_stream *s, int64_t deadline) {
    double left = lb__io_remaining(deadline);
    if (left == 0)
        return lb__fail(s->loop, -ETIMEDOUT, "stream %p: timed out reading", (void *)s);
    lb_future *f = NULL;
    int r = lb__fd_wait(s->loop, s->fd, LB__IO_READ, LB__IO_KEEP, &f);
    if (r < 0)
        return r;
    s->read_wait = f;
    r = left < 0 ? lb_await(f, NULL) : lb_wait_for(f, left, NULL);
    if (s->read_wait == f)
        s->read_wait = NULL;
    lb_future_unref(f);
    return r;
}

/* One read from the fd into dst, awaiting data as needed. Returns the
 * count, 0 at end of stream (remembered), or an error (remembered when
 * it comes from the fd). */
static ssize_t read_some(lb_stream *s, void *dst, size_t cap, int64_t deadline) {
    if (s->eof)
        return 0;
    if (s->read_error)
        return s->read_error;
    /* A short read emptied the socket or pipe at that instant: await
     * readiness rather than try a read that would most likely fail with
     * EAGAIN (the kept, level-triggered interest reports at once data
     * that came meanwhile). In a request-reply exchange this saves one
     * system call per message. */
    if (s->drained) {
        s->drained = false;
        int r = wait_readable(s, deadline);
        if (r < 0)
            return r;
    }
    for (;;) {
        ssize_t n = lb__io_read(s->fd, dst, cap);
        if (n > 0) {
            s->drained = (size_t)n < cap;
            return n;
        }
        if (n == 0) {
            s->eof = true;
            return 0;
        }
        if (n != -EAGAIN) {
            s->read_error = (int)n;
            return lb__fail(s->loop, (int)n, "stream %p: reading failed: %s", (void *)s,
                            strerror((int)-n));
        }
        int r = wait_readable(s, deadline);
        if (r < 0)
            return r;
    }
}

/* Room for `want` buffered bytes in all, and some free space at the end. */
static int reserve(lb_stream *s, size_t want) {
    size_t used = rbuffered(s);
    if (used == 0)
        s->rstart = s->rend = 0;
    if (s->rstart > 0 && (s->rcap - s->rend < READ_CHUNK / 4 || s->rcap - s->rstart < want)) {
        memmove(s->rbuf, s->rbuf + s->rstart, used);
        s->rstart = 0;
        s->rend = used;
    }
    if (s->rcap >= want && s->rcap > s->rend)
        return 0;
    size_t cap = s->rcap ? s->rcap * 2 : READ_CHUNK;
    while (cap < want)
        cap *= 2;
    char *b = lb__realloc(s->rbuf, cap);
    if (!b)
        return lb__fail(s->loop, -ENOMEM, "stream %p: out of memory", (void *)s);
    s->rbuf = b;
    s->rcap = cap;
    return 0;
}

/* Reads once more into the buffer, which will hold want bytes in all. */
static ssize_t fill(lb_stream *s, size_t want, int64_t deadline) {
    int r = reserve(s, want);
    if (r < 0)
        return r;
    ssize_t n = read_some(s, s->rbuf + s->rend, s->rcap - s->rend, deadline);
    if (n > 0)
        s->rend += (size_t)n;
    return n;
}

static void consume(lb_stream *s, void *buf, size_t n) {
    memcpy(buf, s->rbuf + s->rstart, n);
    s->rstart += n;
}

ssize_t lb_stream_read(lb_stream *stream, void *buf, size_t len) {
    int r = begin_read(stream, __func__);
    if (r < 0)
        return r;
    lb_stream *s = stream;
    if (!buf && len > 0)
        return end_read(s, lb__fail(s->loop, -EINVAL, "lb_stream_read: buf is NULL"));
    r = lb__io_check_length(s->loop, len, __func__);
    if (r < 0 || len == 0)
        return end_read(s, r);
    int64_t deadline = lb__io_deadline(s->timeout);
    if (rbuffered(s) == 0) {
        /* A large read goes straight to the caller's buffer. */
        if (len >= READ_CHUNK)
            return end_read(s, read_some(s, buf, len, deadline));
        ssize_t n = fill(s, 1, deadline);
        if (n <= 0)
            return end_read(s, n);
    }
    size_t n = rbuffered(s) < len ? rbuffered(s) : len;
    consume(s, buf, n);
    return end_read(s, (ssize_t)n);
}

ssize_t lb_stream_read_exactly(lb_stream *stream, void *buf, size_t len) {
    int r = begin_read(stream, __func__);
    if (r < 0)
        return r;
    lb_stream *s = stream;
    if (!buf && len > 0)
        return end_read(s, lb__fail(s->loop, -EINVAL, "lb_stream_read_exactly: buf is NULL"));
    r = lb__io_check_length(s->loop, len, __func__);
    if (r < 0)
        return end_read(s, r);
    int64_t deadline = lb__io_deadline(s->timeout);
    while (rbuffered(s) < len) {
        ssize_t n = fill(s, len, deadline);
        if (n == 0 && rbuffered(s) == 0)
            return end_read(s, 0);
        if (n == 0)
            return end_read(s, lb__fail(s->loop, -ENODATA,
                                        "lb_stream_read_exactly: the stream ended after %zu of "
                                        "%zu bytes (they stay buffered)",
                                        rbuffered(s), len));
        if (n < 0)
            return end_read(s, n);
    }
    consume(s, buf, len);
    return end_read(s, (ssize_t)len);
}

static ssize_t read_until(lb_stream *s, const void *delim, size_t dlen, void *buf, size_t cap,
                          bool partial_at_eof, const char *func) {
    size_t limit = s->limit < cap ? s->limit : cap;
    int64_t deadline = lb__io_deadline(s->timeout);
    size_t searched = 0;
    for (;;) {
        size_t avail = rbuffered(s);
        if (avail >= dlen) {
            /* The delimiter may straddle what was searched and what came
             * since: search from dlen - 1 bytes back. */
            size_t from = searched >= dlen - 1 ? searched - (dlen - 1) : 0;
            const char *base = s->rbuf + s->rstart;
            const char *p = memmem(base + from, avail - from, delim, dlen);
            if (p) {
                size_t frame = (size_t)(p - base) + dlen;
                if (frame > limit)
                    return lb__fail(s->loop, -EMSGSIZE,
                                    "%s: a %zu-byte frame exceeds the limit of %zu (it stays "
                                    "buffered)",
                                    func, frame, limit);
                consume(s, buf, frame);
                return (ssize_t)frame;
            }
        }
        searched = avail;
        if (avail >= limit)
            return lb__fail(s->loop, -EMSGSIZE,
                            "%s: no delimiter in the first %zu bytes (the limit; they stay "
                            "buffered)",
                            func, avail);
        ssize_t n = fill(s, avail + 1, deadline);
        if (n == 0) {
            if (avail == 0)
                return 0;
            if (partial_at_eof) {
                consume(s, buf, avail);
                return (ssize_t)avail;
            }
            return lb__fail(s->loop, -ENODATA,
                            "%s: the stream ended %zu bytes into a frame (they stay buffered)",
                            func, avail);
        }
        if (n < 0)
            return n;
    }
}

ssize_t lb_stream_read_until(lb_stream *stream, const void *delim, size_t delim_len, void *buf,
                             size_t cap) {
    int r = begin_read(stream, __func__);
    if (r < 0)
        return r;
    if (!delim || delim_len == 0 || !buf)
        return end_read(stream, lb__fail(stream->loop, -EINVAL,
                                         "lb_stream_read_until: no delimiter or no buffer"));
    return end_read(stream, read_until(stream, delim, delim_len, buf, cap, false, __func__));
}

ssize_t lb_stream_readline(lb_stream *stream, void *buf, size_t cap) {
    int r = begin_read(stream, __func__);
    if (r < 0)
        return r;
    if (!buf)
        return end_read(stream, lb__fail(stream->loop, -EINVAL, "lb_stream_readline: buf is NULL"));
    return end_read(stream, read_until(stream, "\n", 1, buf, cap, true, __func__));
}
