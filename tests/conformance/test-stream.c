/* SPDX-License-Identifier: MIT */
/* Buffered streams: read exactly / until / line and their edge cases (end
 * of stream mid-frame, limit overrun, a delimiter split across reads),
 * write backpressure with drain, close and abort, cancellation and
 * timeouts that keep what was read. */
#include "fixture.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void make_socketpair(int fd[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd), 0);
}

/* A pair whose kernel buffers from `from` to the other end are small, so
 * that a stream writing on `from` soon uses its own buffer. */
static void make_narrow_socketpair(int fd[2], int from) {
    make_socketpair(fd);
    int small = 4096;
    setsockopt(fd[from], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(fd[1 - from], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
}

/* The far end of the pair is written by timed callbacks, so that what a
 * reader gets arrives in separate pieces. */
typedef struct feed {
    int fd;
    const char *pieces[8];
    size_t next;
    bool close_after;
} feed;

static void feed_next(lb_loop *loop, void *data) {
    feed *f = data;
    const char *p = f->pieces[f->next];
    if (p) {
        assert_int_equal(write(f->fd, p, strlen(p)), (ssize_t)strlen(p));
        f->next++;
        assert_int_equal(lb_loop_call_later(loop, 0.01, feed_next, f, NULL), 0);
    } else if (f->close_after && f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}

typedef struct reader {
    lb_stream *s;
    char buf[128];
    ssize_t results[8];
    int n;
    size_t cap;
    int op; /* 0 read_exactly(len), 1 read_until(delim), 2 readline, 3 read */
    size_t len;
    const char *delim;
    int max; /* calls to make; 0: until one returns <= 0 */
    bool waiting;
} reader;

static int reader_task(lb_task *t, void *data) {
    reader *r = data;
    (void)t;
    size_t cap = r->cap ? r->cap : sizeof r->buf;
    int max = r->max ? r->max : 8;
    while (r->n < max) {
        ssize_t got;
        r->waiting = true;
        switch (r->op) {
        case 0:
            got = lb_stream_read_exactly(r->s, r->buf, r->len);
            break;
        case 1:
            got = lb_stream_read_until(r->s, r->delim, strlen(r->delim), r->buf, cap);
            break;
        case 2:
            got = lb_stream_readline(r->s, r->buf, cap);
            break;
        default:
            got = lb_stream_read(r->s, r->buf, cap);
            break;
        }
        r->waiting = false;
        r->results[r->n++] = got;
        if (got <= 0)
            return 0;
    }
    return 0;
}

static lb_stream *stream_of(lb_loop *loop, int fd, size_t limit) {
    lb_stream_options o = {.limit = limit};
    lb_stream *s = NULL;
    assert_int_equal(lb_stream_new(loop, fd, &o, &s), 0);
    return s;
}

static void test_stream_read_exactly(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    int fd[2];
    make_socketpair(fd);
    /* Two 6-byte frames in uneven pieces, then 4 bytes and the end. */
    feed f = {.fd = fd[1], .pieces = {"ab", "cdefg", "hijk", "l", "wxyz"}, .close_after = true};
    reader r = {.s = stream_of(loop, fd[0], 0), .op = 0, .len = 6};
    assert_int_equal(lb_loop_call_soon(loop, feed_next, &f, NULL), 0);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &r), 10), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.results[0], 6);
    assert_int_equal(r.results[1], 6);
    assert_int_equal(r.results[2], -ENODATA);
    /* Nothing of the partial frame is lost. */
    assert_int_equal(lb_stream_buffered(r.s), 4);
    reader rest = {.s = r.s, .op = 3};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &rest), 10), 0);
    assert_int_equal(rest.results[0], 4);
    assert_memory_equal(rest.buf, "wxyz", 4);
    assert_int_equal(rest.results[1], 0);
    assert_true(lb_stream_at_eof(r.s));
    /* A clean end before a frame: 0, not an error. */
    reader after = {.s = r.s, .op = 0, .len = 6};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &after), 10), 0);
    assert_int_equal(after.results[0], 0);
    lb_stream_unref(r.s);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

static void test_stream_read_until_split_delimiter(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    /* "--END--" arrives in three pieces; a second frame is whole; then a
     * partial frame and the end. */
    feed f = {.fd = fd[1],
              .pieces = {"one--E", "N", "D--two--END--thr", "ee"},
              .close_after = true};
    reader r = {.s = stream_of(loop, fd[0], 0), .op = 1, .delim = "--END--"};
    assert_int_equal(lb_loop_call_soon(loop, feed_next, &f, NULL), 0);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &r), 10), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.results[0], 10);
    assert_int_equal(r.results[1], 10);
    assert_memory_equal(r.buf, "two--END--", 10);
    assert_int_equal(r.results[2], -ENODATA);
    assert_int_equal(lb_stream_buffered(r.s), 5); /* "three" */
    lb_stream_unref(r.s);
    fixture_loop_free(loop);
}

static void test_stream_read_until_limit(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    /* A limit of 8: "abc\n" fits, "0123456789\n" does not; nothing of it is
     * consumed and it can still be read as bytes. */
    assert_int_equal(write(fd[1], "abc\n0123456789\n", 15), 15);
    reader r = {.s = stream_of(loop, fd[0], 8), .op = 1, .delim = "\n"};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &r), 10), 0);
    assert_int_equal(r.results[0], 4);
    assert_int_equal(r.results[1], -EMSGSIZE);
    assert_true(lb_stream_buffered(r.s) >= 8);
    reader raw = {.s = r.s, .op = 0, .len = 11, .max = 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &raw), 10), 0);
    assert_int_equal(raw.results[0], 11);
    assert_memory_equal(raw.buf, "0123456789\n", 11);
    /* The caller's buffer bounds a frame as well. */
    assert_int_equal(write(fd[1], "12345\n", 6), 6);
    reader small = {.s = r.s, .op = 2, .cap = 4};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &small), 10), 0);
    assert_int_equal(small.results[0], -EMSGSIZE);
    assert_int_equal(lb_stream_buffered(r.s), 6);
    /* No delimiter within the limit at all. */
    assert_int_equal(write(fd[1], "xxxxxxxxxxxx", 12), 12);
    reader big = {.s = r.s, .op = 1, .delim = "#"};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &big), 10), 0);
    assert_int_equal(big.results[0], -EMSGSIZE);
    lb_stream_unref(r.s);
    close(fd[1]);
    fixture_loop_free(loop);
}

static void test_stream_readline(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    feed f = {.fd = fd[1], .pieces = {"first\nsec", "ond\n", "last"}, .close_after = true};
    reader r = {.s = stream_of(loop, fd[0], 0), .op = 2};
    assert_int_equal(lb_loop_call_soon(loop, feed_next, &f, NULL), 0);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &r), 10), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.results[0], 6);
    assert_int_equal(r.results[1], 7);
    assert_int_equal(r.results[2], 4); /* the last line, without newline */
    assert_memory_equal(r.buf, "last", 4);
    assert_int_equal(r.results[3], 0);
    lb_stream_unref(r.s);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */

/* A read_exactly cancelled in the middle of a frame keeps what arrived;
 * the next call completes the frame. */
static void test_stream_cancel_read_keeps_data(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    assert_int_equal(write(fd[1], "half", 4), 4);
    reader r = {.s = stream_of(loop, fd[0], 0), .op = 0, .len = 8};
    lb_task *t = fixture_spawn(loop, reader_task, &r);
    fixture_canceller k = {.target = t, .waiting = &r.waiting};
    fixture_cancel_when_waiting(loop, &k);
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(r.results[0], -ECANCELED);
    assert_int_equal(lb_stream_buffered(r.s), 4);
    assert_int_equal(write(fd[1], "full", 4), 4);
    reader again = {.s = r.s, .op = 0, .len = 8, .max = 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &again), 10), 0);
    assert_int_equal(again.results[0], 8);
    assert_memory_equal(again.buf, "halffull", 8);
    /* A timeout behaves the same. */
    assert_int_equal(lb_stream_set_timeout(r.s, 0.03), 0);
    assert_int_equal(write(fd[1], "ab", 2), 2);
    reader timed = {.s = r.s, .op = 0, .len = 4};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &timed), 10), 0);
    assert_int_equal(timed.results[0], -ETIMEDOUT);
    assert_int_equal(lb_stream_buffered(r.s), 2);
    lb_stream_unref(r.s);
    close(fd[1]);
    fixture_loop_free(loop);
}

/* read_until and readline cancelled before their delimiter came: the
 * partial frame stays buffered and the next call completes it. */
static void test_stream_cancel_read_until_and_readline(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    lb_stream *s = stream_of(loop, fd[0], 0);
    const int ops[] = {1, 2};
    const char *const first[] = {"par", "li"}, *const rest[] = {"tial\n", "ne\n"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(write(fd[1], first[i], strlen(first[i])), (ssize_t)strlen(first[i]));
        reader r = {.s = s, .op = ops[i], .delim = "\n"};
        lb_task *t = fixture_spawn(loop, reader_task, &r);
        fixture_canceller k = {.target = t, .waiting = &r.waiting};
        fixture_cancel_when_waiting(loop, &k);
        assert_int_equal(fixture_finish(loop, t, 10), 0);
        assert_int_equal(r.results[0], -ECANCELED);
        assert_int_equal(lb_stream_buffered(s), strlen(first[i]));
        assert_int_equal(write(fd[1], rest[i], strlen(rest[i])), (ssize_t)strlen(rest[i]));
        reader again = {.s = s, .op = ops[i], .delim = "\n", .max = 1};
        assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &again), 10), 0);
        size_t whole = strlen(first[i]) + strlen(rest[i]);
        assert_int_equal(again.results[0], (ssize_t)whole);
        char expect[16];
        snprintf(expect, sizeof expect, "%s%s", first[i], rest[i]);
        assert_memory_equal(again.buf, expect, whole);
    }
    lb_stream_unref(s);
    close(fd[1]);
    fixture_loop_free(loop);
}

#define QUEUED (64 * 1024)

typedef struct sender {
    lb_stream *s;
    bool close_first; /* wait_closed instead of drain */
    bool waiting;
    int status;
} sender;

/* Queues more than the write limit with nobody reading, then waits in
 * drain (or, closing, in wait_closed) until cancelled. */
static int queue_and_wait(lb_task *t, void *data) {
    sender *w = data;
    (void)t;
    static unsigned char block[QUEUED];
    memset(block, 'q', sizeof block);
    int r = lb_stream_write(w->s, block, sizeof block);
    if (r < 0)
        return r;
    w->waiting = true;
    if (w->close_first) {
        lb_stream_close(w->s);
        w->status = lb_stream_wait_closed(w->s);
    } else {
        w->status = lb_stream_drain(w->s);
    }
    w->waiting = false;
    return 0;
}

typedef struct sink {
    lb_stream *s;
    size_t want, got;
    bool eof;
} sink;

/* Reads until want bytes came (0: until end of stream). */
static int sink_task(lb_task *t, void *data) {
    sink *k = data;
    (void)t;
    char buf[65536];
    while (k->want == 0 || k->got < k->want) {
        ssize_t n = lb_stream_read(k->s, buf, sizeof buf);
        if (n < 0)
            return (int)n;
        if (n == 0) {
            k->eof = true;
            break;
        }
        k->got += (size_t)n;
    }
    return 0;
}

/* drain and wait_closed cancelled while the peer reads nothing: they
 * return -ECANCELED, and what was queued is still sent (and, closing,
 * the stream still closes once it is out). */
static void test_stream_cancel_drain_and_wait_closed(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    for (int closing = 0; closing < 2; closing++) {
        int fd[2];
        make_narrow_socketpair(fd, 0);
        lb_stream_options o = {.write_limit = 16384};
        sender w = {.close_first = closing};
        assert_int_equal(lb_stream_new(loop, fd[0], &o, &w.s), 0);
        lb_task *t = fixture_spawn(loop, queue_and_wait, &w);
        fixture_canceller k = {.target = t, .waiting = &w.waiting};
        fixture_cancel_when_waiting(loop, &k);
        assert_int_equal(fixture_finish(loop, t, 10), 0);
        assert_int_equal(w.status, -ECANCELED);
        assert_true(lb_stream_write_buffered(w.s) > 0);
        sink in = {.s = stream_of(loop, fd[1], 0), .want = closing ? 0 : QUEUED};
        assert_int_equal(fixture_finish(loop, fixture_spawn(loop, sink_task, &in), 30), 0);
        assert_int_equal(in.got, QUEUED);
        assert_int_equal(in.eof, closing); /* the close went on */
        assert_int_equal(lb_stream_write_buffered(w.s), 0);
        lb_stream_unref(w.s);
        lb_stream_unref(in.s);
    }
    fixture_loop_free(loop);
}

typedef struct two {
    lb_stream *s;
    reader first;
    ssize_t second;
    ssize_t after_close;
} two;

static int second_reader(lb_task *t, void *data) {
    two *w = data;
    (void)t;
    while (!w->first.waiting)
        lb_sleep(0.002);
    char buf[4];
    w->second = lb_stream_read(w->s, buf, sizeof buf);
    lb_stream_close(w->s);
    w->after_close = lb_stream_read(w->s, buf, sizeof buf);
    return 0;
}

/* One reader at a time; closing wakes the reader with -EBADF. */
static void test_stream_one_reader_and_close_wakes_it(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    int fd[2];
    make_socketpair(fd);
    two w = {.s = stream_of(loop, fd[0], 0)};
    w.first = (reader){.s = w.s, .op = 3};
    lb_task *a = fixture_spawn(loop, reader_task, &w.first);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, second_reader, &w), 10), 0);
    assert_int_equal(fixture_finish(loop, a, 10), 0);
    assert_int_equal(w.second, -EBUSY);
    assert_int_equal(w.first.results[0], -EBADF);
    assert_int_equal(w.after_close, -EBADF);
    assert_int_equal(lb_stream_fd(w.s), -1);
    lb_stream_unref(w.s);
    close(fd[1]);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */
/* ------------------------------------------------------------------ */

#define BULK (1u << 20)

typedef struct bulk {
    lb_stream *w, *r;
    unsigned char *out, *in;
    size_t max_after_drain;
    size_t got;
    int drains_waited;
    int status;
} bulk;

static int bulk_writer(lb_task *t, void *data) {
    bulk *b = data;
    (void)t;
    for (size_t off = 0; off < BULK; off += 4096) {
        int r = lb_stream_write(b->w, b->out + off, 4096);
        if (r == 0) {
            size_t before = lb_stream_write_buffered(b->w);
            r = lb_stream_drain(b->w);
            if (lb_stream_write_buffered(b->w) < before)
                b->drains_waited++;
        }
        if (r < 0)
            return r;
        if (lb_stream_write_buffered(b->w) > b->max_after_drain)
            b->max_after_drain = lb_stream_write_buffered(b->w);
    }
    return lb_stream_flush(b->w);
}

static int bulk_reader(lb_task *t, void *data) {
    bulk *b = data;
    (void)t;
    while (b->got < BULK) {
        /* A slow reader, so that the writer's buffer fills. */
        if (lb_sleep(0.0005) < 0)
            return -ECANCELED;
        ssize_t n = lb_stream_read(b->r, b->in + b->got, 8192);
        if (n <= 0)
            return n < 0 ? (int)n : -EPIPE;
        b->got += (size_t)n;
    }
    return 0;
}

/* A megabyte through a stream with a 16 KiB write limit and a slow
 * reader: drain holds the writer back, the queue never grows past the
 * limit after a drain, every byte arrives in order. */
static void test_stream_write_backpressure(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_narrow_socketpair(fd, 1);
    lb_stream_options o = {.write_limit = 16384};
    bulk b = {.out = malloc(BULK), .in = malloc(BULK)};
    for (size_t i = 0; i < BULK; i++)
        b.out[i] = (unsigned char)(i ^ (i >> 8));
    assert_int_equal(lb_stream_new(loop, fd[1], &o, &b.w), 0);
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &b.r), 0);
    lb_task *w = fixture_spawn(loop, bulk_writer, &b);
    lb_task *r = fixture_spawn(loop, bulk_reader, &b);
    assert_int_equal(fixture_finish(loop, w, 120), 0);
    assert_int_equal(fixture_finish(loop, r, 120), 0);
    assert_int_equal(b.got, BULK);
    assert_memory_equal(b.in, b.out, BULK);
    assert_true(b.max_after_drain <= 16384);
    assert_true(b.drains_waited > 0);
    assert_int_equal(lb_stream_write_buffered(b.w), 0);
    lb_stream_unref(b.w);
    lb_stream_unref(b.r);
    free(b.out);
    free(b.in);
    fixture_loop_free(loop);
}

typedef struct closing {
    lb_stream *s;
    int wait_closed;
    int drain;
    int write_after;
} closing;

static int close_and_wait(lb_task *t, void *data) {
    closing *c = data;
    (void)t;
    lb_stream_close(c->s);
    c->write_after = lb_stream_write(c->s, "x", 1);
    c->wait_closed = lb_stream_wait_closed(c->s);
    return 0;
}

static int drain_then_abort(lb_task *t, void *data) {
    closing *c = data;
    (void)t;
    c->drain = lb_stream_drain(c->s);
    return 0;
}

static void abort_later(lb_loop *loop, void *data) {
    (void)loop;
    lb_stream_abort(data);
}

/* Close sends what is queued, then closes; abort drops it. */
static void test_stream_close_flushes_abort_drops(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    int fd[2];
    make_socketpair(fd);
    int small = 4096;
    setsockopt(fd[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    lb_stream *w = NULL, *r = NULL;
    assert_int_equal(lb_stream_new(loop, fd[1], NULL, &w), 0);
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &r), 0);
    static char data[200000];
    memset(data, 'q', sizeof data);
    assert_int_equal(lb_stream_write(w, data, sizeof data), 0);
    assert_true(lb_stream_write_buffered(w) > 0);
    closing c = {.s = w};
    lb_task *closer = fixture_spawn(loop, close_and_wait, &c);
    reader all = {.s = r, .op = 3, .cap = sizeof all.buf};
    size_t total = 0;
    for (;;) {
        all.n = 0;
        assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &all), 30), 0);
        for (int i = 0; i < all.n && all.results[i] > 0; i++)
            total += (size_t)all.results[i];
        if (all.results[all.n - 1] <= 0)
            break;
    }
    assert_int_equal(total, sizeof data);
    assert_int_equal(all.results[all.n - 1], 0);
    assert_int_equal(fixture_finish(loop, closer, 10), 0);
    assert_int_equal(c.wait_closed, 0);
    assert_int_equal(c.write_after, -EBADF);
    lb_stream_unref(w);
    lb_stream_unref(r);

    /* Abort: the queued data is dropped and a drainer learns it. */
    make_socketpair(fd);
    setsockopt(fd[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    lb_stream_options o = {.write_limit = 1024};
    assert_int_equal(lb_stream_new(loop, fd[1], &o, &w), 0);
    assert_int_equal(lb_stream_write(w, data, sizeof data), 0);
    closing d = {.s = w};
    lb_task *drainer = fixture_spawn(loop, drain_then_abort, &d);
    assert_int_equal(lb_loop_call_later(loop, 0.02, abort_later, w, NULL), 0);
    assert_int_equal(fixture_finish(loop, drainer, 10), 0);
    assert_int_equal(d.drain, -EBADF);
    assert_int_equal(lb_stream_write_buffered(w), 0);
    assert_int_equal(lb_stream_fd(w), -1);
    lb_stream_unref(w);
    close(fd[0]);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

static void write_from_callback(lb_loop *loop, void *data) {
    (void)loop;
    assert_int_equal(lb_stream_write(data, "from a callback\n", 16), 0);
}

/* Writing needs no task; a write error sticks; no SIGPIPE. */
static void test_stream_write_outside_task_and_epipe(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
    lb_stream *w = NULL, *r = NULL;
    assert_int_equal(lb_stream_new(loop, fd[1], NULL, &w), 0);
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &r), 0);
    assert_int_equal(lb_loop_call_soon(loop, write_from_callback, w, NULL), 0);
    reader line = {.s = r, .op = 2, .max = 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, reader_task, &line), 10), 0);
    assert_int_equal(line.results[0], 16);
    assert_memory_equal(line.buf, "from a callback\n", 16);
    assert_int_equal(lb_stream_write_eof(w), -ENOTSOCK);
    /* The reader goes away: writes fail with -EPIPE and keep failing. */
    lb_stream_unref(r);
    assert_int_equal(lb_stream_write(w, "x", 1), -EPIPE);
    assert_int_equal(lb_stream_write(w, "y", 1), -EPIPE);
    char buf[4];
    assert_int_equal(lb_stream_read(w, buf, 1), -EPERM); /* outside a task */
    lb_stream_unref(w);
    fixture_loop_free(loop);
}

typedef struct half {
    lb_stream *client, *server;
    char answer[32];
    ssize_t answer_len;
    ssize_t request_len;
} half;

static int half_client(lb_task *t, void *data) {
    half *h = data;
    (void)t;
    int r = lb_stream_write(h->client, "question", 8);
    if (r == 0)
        r = lb_stream_write_eof(h->client);
    if (r < 0)
        return r;
    h->answer_len = lb_stream_read_exactly(h->client, h->answer, 6);
    return 0;
}

static int half_server(lb_task *t, void *data) {
    half *h = data;
    (void)t;
    char req[32];
    ssize_t n, total = 0;
    while ((n = lb_stream_read(h->server, req + total, sizeof req - (size_t)total)) > 0)
        total += n;
    h->request_len = total;
    int r = lb_stream_write(h->server, "answer", 6);
    return r < 0 ? r : lb_stream_flush(h->server);
}

/* write_eof half-closes: the peer reads the end and still answers. */
static void test_stream_write_eof(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_socketpair(fd);
    half h = {0};
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &h.client), 0);
    assert_int_equal(lb_stream_new(loop, fd[1], NULL, &h.server), 0);
    lb_task *s = fixture_spawn(loop, half_server, &h);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, half_client, &h), 10), 0);
    assert_int_equal(fixture_finish(loop, s, 10), 0);
    assert_int_equal(h.request_len, 8);
    assert_int_equal(h.answer_len, 6);
    assert_memory_equal(h.answer, "answer", 6);
    assert_int_equal(lb_stream_write(h.client, "more", 4), -EPIPE);
    lb_stream_unref(h.client);
    lb_stream_unref(h.server);
    fixture_loop_free(loop);
}

static void test_stream_misuse(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_stream *s = NULL;
    assert_int_equal(lb_stream_new(loop, -1, NULL, &s), -EBADF);
    char path[] = "/tmp/lb-stream-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    assert_int_equal(lb_stream_new(loop, file, NULL, &s), -EPERM);
    close(file);
    assert_int_equal(lb_stream_new(loop, 0, NULL, NULL), -EINVAL);
    assert_null(lb_stream_unref(NULL));
    assert_int_equal(lb_stream_fd(NULL), -1);
    fixture_loop_free(loop);
}

/* A stream closed with data queued is kept until the data is out, even
 * once its last reference went; the loop closing first aborts it. A
 * stream the caller still holds keeps its fd until its last reference. */
static void test_stream_loop_close_while_sending(void **state) {
    (void)state;
    int fds = fixture_count_fds();
    lb_loop *loop = fixture_loop_new();
    int a[2], b[2];
    make_socketpair(a);
    make_socketpair(b);
    static char data[1 << 20];
    lb_stream *dropped = NULL, *held = NULL;
    assert_int_equal(lb_stream_new(loop, a[1], NULL, &dropped), 0);
    assert_int_equal(lb_stream_new(loop, b[1], NULL, &held), 0);
    assert_int_equal(lb_stream_write(dropped, data, sizeof data), 0);
    assert_int_equal(lb_stream_write(held, data, sizeof data), 0);
    assert_true(lb_stream_write_buffered(dropped) > 0);
    lb_stream_close(dropped);
    lb_stream_unref(dropped); /* it holds itself until the rest is sent... */
    lb_stream_close(held);
    fixture_loop_free(loop); /* ...or the loop closes */
    assert_int_equal(lb_stream_write(held, "x", 1), -EBADF);
    lb_stream_unref(held);
    close(a[0]);
    close(b[0]);
    assert_int_equal(fixture_count_fds(), fds);
}

/* The same, when the data does get out: the peer reads all of it. */
static void test_stream_close_then_unref_sends_everything(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    int fd[2];
    make_socketpair(fd);
    static char data[1 << 20];
    lb_stream *w = NULL;
    sink d = {0}; /* to the end of the stream */
    assert_int_equal(lb_stream_new(loop, fd[1], NULL, &w), 0);
    assert_int_equal(lb_stream_new(loop, fd[0], NULL, &d.s), 0);
    assert_int_equal(lb_stream_write(w, data, sizeof data), 0);
    lb_stream_close(w);
    lb_stream_unref(w);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, sink_task, &d), 60), 0);
    assert_int_equal(d.got, sizeof data);
    assert_true(d.eof);
    lb_stream_unref(d.s);
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

/* The last reference dropped while a task waits in a read, in drain or in
 * wait_closed: the waiting call holds a reference of its own, so it ends
 * as it would have, and the stream goes when it returns. */
static void test_stream_unref_while_a_task_waits(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fds = fixture_fd_baseline(loop);
    int fd[2];
    make_socketpair(fd);
    reader r = {.s = stream_of(loop, fd[0], 0), .op = 2, .max = 1};
    lb_task *t = fixture_spawn(loop, reader_task, &r);
    fixture_run_until(loop, &r.waiting, 10);
    assert_int_equal(send(fd[1], "hello\n", 6, MSG_NOSIGNAL), 6);
    lb_stream_unref(r.s); /* the test's reference, the last but the reader's */
    assert_int_equal(fixture_finish(loop, t, 10), 0);
    assert_int_equal(r.results[0], 6);
    assert_memory_equal(r.buf, "hello\n", 6);
    char c;
    assert_int_equal(recv(fd[1], &c, 1, MSG_DONTWAIT), 0); /* it closed as it went */
    close(fd[1]);

    for (int wait_closed = 0; wait_closed < 2; wait_closed++) {
        make_narrow_socketpair(fd, 0);
        lb_stream_options o = {.write_limit = 16384};
        sender w = {.close_first = wait_closed};
        assert_int_equal(lb_stream_new(loop, fd[0], &o, &w.s), 0);
        t = fixture_spawn(loop, queue_and_wait, &w);
        fixture_run_until(loop, &w.waiting, 10);
        lb_stream_unref(w.s);
        sink in = {.s = stream_of(loop, fd[1], 0)}; /* to the end of the stream */
        assert_int_equal(fixture_finish(loop, fixture_spawn(loop, sink_task, &in), 30), 0);
        assert_int_equal(fixture_finish(loop, t, 10), 0);
        assert_int_equal(w.status, 0);
        assert_true(in.eof);
        if (wait_closed)
            assert_int_equal(in.got, QUEUED);
        lb_stream_unref(in.s);
    }
    assert_int_equal(fixture_count_fds(), fds);
    fixture_loop_free(loop);
}

/* A length above SSIZE_MAX, such as a failed read's -1 passed on as a
 * length, is refused: nothing of the memory after the buffer is sent, and
 * the stream goes on working. A length that would grow the queue past
 * SSIZE_MAX is refused too, before any allocation. */
static void test_stream_write_length_too_large(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int fd[2];
    make_narrow_socketpair(fd, 0);
    lb_stream *s = stream_of(loop, fd[0], 0);
    char *small = calloc(1, 64);
    assert_non_null(small);
    assert_int_equal(lb_stream_write(s, small, (size_t)-1), -EINVAL);
    assert_non_null(strstr(lb_error_detail(), "too large"));
    assert_int_equal(lb_stream_write(s, small, (size_t)SSIZE_MAX + 1), -EINVAL);
    assert_int_equal(lb_stream_write_buffered(s), 0);
    char c;
    assert_int_equal(recv(fd[1], &c, 1, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);

    static char data[1 << 20];
    assert_int_equal(lb_stream_write(s, data, sizeof data), 0);
    size_t queued = lb_stream_write_buffered(s);
    assert_true(queued > 0);
    assert_int_equal(lb_stream_write(s, small, SSIZE_MAX), -ENOMEM);
    assert_int_equal(lb_stream_write_buffered(s), queued);
    free(small);
    lb_stream_close(s);
    sink in = {.s = stream_of(loop, fd[1], 0)};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, sink_task, &in), 30), 0);
    assert_int_equal(in.got, sizeof data);
    lb_stream_unref(in.s);
    lb_stream_unref(s);
    fixture_loop_free(loop);
}

int run_stream_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_read_exactly),
        cmocka_unit_test(test_stream_read_until_split_delimiter),
        cmocka_unit_test(test_stream_read_until_limit),
        cmocka_unit_test(test_stream_readline),
        cmocka_unit_test(test_stream_cancel_read_keeps_data),
        cmocka_unit_test(test_stream_cancel_read_until_and_readline),
        cmocka_unit_test(test_stream_cancel_drain_and_wait_closed),
        cmocka_unit_test(test_stream_one_reader_and_close_wakes_it),
        cmocka_unit_test(test_stream_write_backpressure),
        cmocka_unit_test(test_stream_close_flushes_abort_drops),
        cmocka_unit_test(test_stream_write_outside_task_and_epipe),
        cmocka_unit_test(test_stream_write_eof),
        cmocka_unit_test(test_stream_misuse),
        cmocka_unit_test(test_stream_loop_close_while_sending),
        cmocka_unit_test(test_stream_close_then_unref_sends_everything),
        cmocka_unit_test(test_stream_unref_while_a_task_waits),
        cmocka_unit_test(test_stream_write_length_too_large),
    };
    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
