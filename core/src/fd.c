/* SPDX-License-Identifier: MIT */
/* File descriptor watches. Every watched fd sits in the loop's one epoll
 * instance (the backend fd), level-triggered, so hosted drivers only
 * ever watch that one descriptor. Readiness becomes a handle in the ready
 * queue, run in the same iteration as asyncio does; the handle names its
 * watch by (fd, generation), so a watch removed or replaced meanwhile is
 * never called through a stale pointer.
 *
 * A direction is used either by a callback (lb_loop_add_reader/writer) or
 * by one waiter (a future the I/O layer awaits), never both: readiness is
 * consumed by whoever reads first, so sharing it would split the data
 * between them at random. A waiter's future completes while the backend
 * is polled, so the task awaiting it resumes in that same iteration. */
#include "alloc.h"
#include "error.h"
#include "io_internal.h"
#include "loop_internal.h"

#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>

struct lb__watch {
    lb_loop *loop;
    int fd;
    uint32_t gen;
    uint32_t events; /* EPOLLIN / EPOLLOUT registered with epoll */
    bool in_epoll;
    bool read_queued, write_queued;
    lb_callback read_cb, write_cb;
    void *read_data, *write_data;
    lb_future *waiter[2]; /* by direction; holds a reference */
    bool kept[2];         /* interest left registered after a waiter */
    lb_resource resource; /* on the loop while the watch exists */
    bool own;             /* one of the loop's own descriptors (signal pipe) */
};

enum { DIR_READ = 0, DIR_WRITE = 1 };

static uint64_t make_token(const lb__watch *w) {
    return ((uint64_t)w->gen << 32) | (uint32_t)w->fd;
}

static lb__watch *lookup(const lb_loop *loop, int fd) {
    if (fd < 0 || (size_t)fd >= loop->watches_cap)
        return NULL;
    return loop->watches[fd];
}

static bool uses(const lb__watch *w, int dir) {
    return (dir == DIR_READ ? w->read_cb != NULL : w->write_cb != NULL) || w->waiter[dir] ||
           w->kept[dir];
}

static bool unused(const lb__watch *w) {
    return !uses(w, DIR_READ) && !uses(w, DIR_WRITE);
}

static uint32_t wanted(const lb__watch *w) {
    return (uses(w, DIR_READ) ? EPOLLIN : 0) | (uses(w, DIR_WRITE) ? EPOLLOUT : 0);
}

/* Registers what w wants with epoll. Returns 0, a negative errno, or
 * -ENOENT when the kernel no longer knows the file w registered: its fd
 * was closed while watched (and its number maybe reused since). */
static int update_epoll(lb_loop *loop, lb__watch *w) {
    uint32_t want = wanted(w);
    if (want == 0) {
        if (w->in_epoll) {
            /* EBADF/ENOENT: the caller closed the fd first, and the
             * kernel already forgot it. Either way it is gone. */
            epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
            w->in_epoll = false;
        }
        w->events = 0;
        return 0;
    }
    struct epoll_event ev = {.events = want, .data.u64 = make_token(w)};
    int op = w->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int r = epoll_ctl(loop->epoll_fd, op, w->fd, &ev);
    if (r < 0 && op == EPOLL_CTL_MOD && (errno == ENOENT || errno == EBADF))
        return -ENOENT;
    if (r < 0 && op == EPOLL_CTL_ADD && errno == EEXIST) {
        r = epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, w->fd, &ev);
    }
    if (r < 0)
        return -errno;
    w->in_epoll = true;
    w->events = want;
    return 0;
}

static void free_watch(lb_loop *loop, lb__watch *w) {
    loop->watches[w->fd] = NULL;
    loop->watches_live--;
    lb_driver_resource_remove(&w->resource);
    lb__free(w);
}

/* The loop closes: the fd leaves its epoll instance and the watch goes
 * (callbacks dropped; a waiter still pending, whose task was reclaimed,
 * is cancelled with the loop's other pending futures). The fd is the
 * caller's and stays open. */
static void watch_close(lb_resource *resource) {
    lb__watch *w = (lb__watch *)((char *)resource - offsetof(lb__watch, resource));
    lb_loop *loop = w->loop;
    w->read_cb = w->write_cb = NULL;
    w->waiter[DIR_READ] = w->waiter[DIR_WRITE] = NULL;
    w->kept[DIR_READ] = w->kept[DIR_WRITE] = false;
    (void)update_epoll(loop, w);
    free_watch(loop, w);
}

static const lb_resource_ops watch_ops = {.name = "fd watch", .close = watch_close};

/* w's fd was closed while watched: what w still wanted belonged to the
 * file that is gone. Its callbacks are dropped and its waiters fail with
 * -EBADF (keep names the direction the caller is setting right now), and
 * a new generation makes events already queued for the old file miss. */
static void forget_closed(lb_loop *loop, lb__watch *w, int keep, const char *func) {
    lb__log(LB_LOG_WARNING,
            "%s: fd %d was closed while watched; its old watch was dropped (remove a watch "
            "before closing its fd)",
            func, w->fd);
    for (int dir = DIR_READ; dir <= DIR_WRITE; dir++) {
        if (dir == keep)
            continue;
        if (dir == DIR_READ) {
            w->read_cb = NULL;
            w->read_data = NULL;
        } else {
            w->write_cb = NULL;
            w->write_data = NULL;
        }
        w->kept[dir] = false;
        lb_future *f = w->waiter[dir];
        if (f) {
            w->waiter[dir] = NULL;
            lb__future_complete(f, LB__FUTURE_ERROR, NULL, NULL, -EBADF);
        }
    }
    w->in_epoll = false;
    w->events = 0;
    w->read_queued = w->write_queued = false;
    w->gen = ++loop->watch_gen;
}

/* update_epoll(), and when the kernel forgot the file (its fd was closed
 * while watched), the same again once the old file's watch is dropped.
 * *stale says that happened. */
static int update_epoll_fresh(lb_loop *loop, lb__watch *w, int keep, const char *func,
                              bool *stale) {
    int r = update_epoll(loop, w);
    *stale = r == -ENOENT;
    if (*stale) {
        forget_closed(loop, w, keep, func);
        r = update_epoll(loop, w);
    }
    return r;
}

/* A direction in use blocks a second user, unless the use is stale: its
 * fd was closed (and its number maybe reused since) without the watch
 * being removed, and the kernel forgot the file. Then the old use is
 * dropped (its waiters fail with -EBADF), leaving the way free. */
static void drop_if_stale(lb_loop *loop, lb__watch *w, const char *func) {
    if (!w->in_epoll)
        return;
    struct epoll_event ev = {.events = w->events, .data.u64 = make_token(w)};
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, w->fd, &ev) < 0 &&
        (errno == ENOENT || errno == EBADF))
        forget_closed(loop, w, -1, func);
}

/* The watch of fd, made (and the table grown) if there is none yet;
 * *fresh says it was made now. NULL with an error in *error. */
static lb__watch *watch_for(lb_loop *loop, int fd, const char *func, bool *fresh, int *error) {
    *fresh = false;
    lb__watch *w = lookup(loop, fd);
    if (w)
        return w;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
        *error = lb__fail(loop, -EBADF, "%s: fd %d is not an open file descriptor", func, fd);
        return NULL;
    }
    if ((size_t)fd >= loop->watches_cap) {
        size_t cap = loop->watches_cap ? loop->watches_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        lb__watch **v = lb__realloc(loop->watches, cap * sizeof *v);
        if (!v) {
            *error = lb__fail(loop, -ENOMEM, "%s: out of memory", func);
            return NULL;
        }
        memset(v + loop->watches_cap, 0, (cap - loop->watches_cap) * sizeof *v);
        loop->watches = v;
        loop->watches_cap = cap;
    }
    w = lb__calloc(1, sizeof *w);
    if (!w) {
        *error = lb__fail(loop, -ENOMEM, "%s: out of memory", func);
        return NULL;
    }
    w->loop = loop;
    w->fd = fd;
    w->gen = ++loop->watch_gen;
    lb_driver_resource_add(loop, &w->resource, &watch_ops); /* cannot fail here */
    loop->watches[fd] = w;
    loop->watches_live++;
    *fresh = true;
    return w;
}

static int epoll_failed(lb_loop *loop, int fd, int r, const char *func) {
    if (r == -EPERM)
        return lb__fail(loop, -EPERM,
                        "%s: fd %d cannot be watched (regular files are always ready)", func, fd);
    return lb__fail(loop, r, "%s: epoll_ctl on fd %d: %s", func, fd, strerror(-r));
}

/* The loop was checked by the caller. */
static int add_watch(lb_loop *loop, int fd, int dir, lb_callback cb, void *data,
                     const char *func) {
    lb_assert_return(cb, -EINVAL);
    if (fd < 0 || fcntl(fd, F_GETFD) < 0)
        return lb__fail(loop, -EBADF, "%s: fd %d is not an open file descriptor", func, fd);
    lb__watch *w = lookup(loop, fd);
    if (w && w->waiter[dir])
        drop_if_stale(loop, w, func);
    if (w && w->waiter[dir])
        return lb__fail(loop, -EBUSY, "%s: a task is awaiting fd %d in that direction", func, fd);
    bool fresh;
    int r = 0;
    if (!(w = watch_for(loop, fd, func, &fresh, &r)))
        return r;
    lb_callback old_cb = dir == DIR_READ ? w->read_cb : w->write_cb;
    void *old_data = dir == DIR_READ ? w->read_data : w->write_data;
    w->kept[dir] = false; /* the callback takes the interest over */
    if (dir == DIR_READ) {
        w->read_cb = cb;
        w->read_data = data;
    } else {
        w->write_cb = cb;
        w->write_data = data;
    }
    bool stale;
    r = update_epoll_fresh(loop, w, dir, func, &stale);
    if (stale) {
        old_cb = NULL; /* what it replaced belonged to the closed file */
        old_data = NULL;
    }
    if (r < 0) {
        if (dir == DIR_READ) {
            w->read_cb = old_cb;
            w->read_data = old_data;
        } else {
            w->write_cb = old_cb;
            w->write_data = old_data;
        }
        if (fresh || unused(w))
            free_watch(loop, w);
        return epoll_failed(loop, fd, r, func);
    }
    return 0;
}

/* The loop was checked by the caller; a closed loop has no watch left. */
static int remove_watch(lb_loop *loop, int fd, int dir, const char *func) {
    lb__watch *w = lookup(loop, fd);
    if (!w || !(dir == DIR_READ ? w->read_cb : w->write_cb))
        return 0;
    if (dir == DIR_READ) {
        w->read_cb = NULL;
        w->read_data = NULL;
    } else {
        w->write_cb = NULL;
        w->write_data = NULL;
    }
    if (update_epoll(loop, w) == -ENOENT)
        forget_closed(loop, w, -1, func);
    if (unused(w))
        free_watch(loop, w);
    return 1;
}

/* The loop's own descriptors are not the caller's to replace or remove
 * (a caller's stale fd number may have been reused for one). */
static bool owned_by_loop(const lb_loop *loop, int fd) {
    const lb__watch *w = lookup(loop, fd);
    return w && w->own;
}

static int refuse_own(lb_loop *loop, int fd, const char *func) {
    return lb__fail(loop, -EBUSY, "%s: fd %d is one of the loop's own descriptors", func, fd);
}

int lb_loop_add_reader(lb_loop *loop, int fd, lb_callback cb, void *data) {
    LB__CHECK_LOOP(loop);
    if (owned_by_loop(loop, fd))
        return refuse_own(loop, fd, __func__);
    return add_watch(loop, fd, DIR_READ, cb, data, __func__);
}

int lb_loop_add_writer(lb_loop *loop, int fd, lb_callback cb, void *data) {
    LB__CHECK_LOOP(loop);
    if (owned_by_loop(loop, fd))
        return refuse_own(loop, fd, __func__);
    return add_watch(loop, fd, DIR_WRITE, cb, data, __func__);
}

int lb_loop_remove_reader(lb_loop *loop, int fd) {
    LB__CHECK_LOOP(loop);
    return owned_by_loop(loop, fd) ? 0 : remove_watch(loop, fd, DIR_READ, __func__);
}

int lb_loop_remove_writer(lb_loop *loop, int fd) {
    LB__CHECK_LOOP(loop);
    return owned_by_loop(loop, fd) ? 0 : remove_watch(loop, fd, DIR_WRITE, __func__);
}

/* The loop's own descriptors (the signal pipe) are ordinary readers. */
int lb__watch_add_reader(lb_loop *loop, int fd, lb_callback cb, void *data, const char *func) {
    int r = add_watch(loop, fd, DIR_READ, cb, data, func);
    if (r == 0)
        loop->watches[fd]->own = true;
    return r;
}

void lb__watch_remove_reader(lb_loop *loop, int fd) {
    remove_watch(loop, fd, DIR_READ, "lb__watch_remove_reader");
}

/* Runs in the ready queue: finds the watch again and calls its callback
 * if it still exists and still watches that direction. */
static void fd_ready(lb_loop *loop, void *data) {
    uint64_t token = (uint64_t)(uintptr_t)lb__current(loop)->aux;
    int dir = (int)(uintptr_t)data;
    int fd = (int)(uint32_t)token;
    lb__watch *w = lookup(loop, fd);
    if (!w || w->gen != (uint32_t)(token >> 32))
        return;
    if (dir == DIR_READ) {
        w->read_queued = false;
        if (w->read_cb)
            w->read_cb(loop, w->read_data);
    } else {
        w->write_queued = false;
        if (w->write_cb)
            w->write_cb(loop, w->write_data);
    }
}

static void wake_waiters(lb_loop *loop, lb__watch *w, uint32_t events);

void lb__watch_event(lb_loop *loop, uint64_t token, uint32_t events) {
    int fd = (int)(uint32_t)token;
    lb__watch *w = lookup(loop, fd);
    if (!w || w->gen != (uint32_t)(token >> 32))
        return;
    bool failed = events & (EPOLLERR | EPOLLHUP);
    if (w->read_cb && !w->read_queued && (events & EPOLLIN || failed)) {
        lb_handle *h = lb__call_soon_internal(loop, fd_ready, (void *)(uintptr_t)DIR_READ);
        if (h) {
            h->aux = (void *)(uintptr_t)token;
            w->read_queued = true;
        }
    }
    if (w->write_cb && !w->write_queued && (events & EPOLLOUT || failed)) {
        lb_handle *h = lb__call_soon_internal(loop, fd_ready, (void *)(uintptr_t)DIR_WRITE);
        if (h) {
            h->aux = (void *)(uintptr_t)token;
            w->write_queued = true;
        }
    }
    if (w->waiter[DIR_READ] || w->waiter[DIR_WRITE] || w->kept[DIR_READ] || w->kept[DIR_WRITE])
        wake_waiters(loop, w, events);
}

void lb__watches_close(lb_loop *loop) {
    /* Every watch was closed as a resource of the loop, unless one was
     * made after that (by a cancelled future's hook). */
    for (size_t fd = 0; loop->watches_live > 0 && fd < loop->watches_cap; fd++)
        if (loop->watches[fd])
            watch_close(&loop->watches[fd]->resource);
    lb__free(loop->watches);
    loop->watches = NULL;
    loop->watches_cap = 0;
}

/* ------------------------------------------------------------------ */
/* Waiters (the I/O layer's awaitable readiness)                       */
/* ------------------------------------------------------------------ */

/* The watch points at its waiters without holding a reference: every way
 * a waiter's future ends (readiness, cancellation, being freed while
 * pending) clears the pointer first. */
static uintptr_t waiter_key(int fd, int dir) {
    return ((uintptr_t)(unsigned)fd << 1) | (uintptr_t)dir;
}

static void withdraw(lb_loop *loop, uintptr_t key, lb_future *future) {
    if (lb__loop_closed(loop))
        return; /* close freed every watch */
    int fd = (int)(key >> 1), dir = (int)(key & 1);
    lb__watch *w = lookup(loop, fd);
    if (!w || w->waiter[dir] != future)
        return;
    w->waiter[dir] = NULL;
    if (wanted(w) != w->events)
        (void)update_epoll(loop, w);
    if (unused(w))
        free_watch(loop, w);
}

static int waiter_cancel(lb_future *future, void *data) {
    withdraw(future->loop, (uintptr_t)data, future);
    return lb__future_cancel_plain(future);
}

static void waiter_free(lb_future *future, void *data) {
    withdraw(future->loop, (uintptr_t)data, future);
}

static const lb__future_hooks waiter_hooks = {.cancel = waiter_cancel, .free = waiter_free};

int lb__fd_wait(lb_loop *loop, int fd, int dir, unsigned flags, lb_future **ret) {
    static const char func[] = "lb__fd_wait";
    LB__CHECK_LOOP(loop);
    lb__watch *w = lookup(loop, fd);
    if (w && w->own)
        return refuse_own(loop, fd, "awaiting readiness");
    if (w && ((dir == DIR_READ ? w->read_cb : w->write_cb) || w->waiter[dir]))
        drop_if_stale(loop, w, "awaiting readiness");
    if (w && (dir == DIR_READ ? w->read_cb : w->write_cb))
        return lb__fail(loop, -EBUSY, "fd %d has a %s callback (lb_loop_add_%s); it cannot be "
                        "awaited in that direction too", fd, dir == DIR_READ ? "reader" : "writer",
                        dir == DIR_READ ? "reader" : "writer");
    if (w && w->waiter[dir])
        return lb__fail(loop, -EBUSY, "another task is already awaiting fd %d for %s", fd,
                        dir == DIR_READ ? "reading" : "writing");
    bool fresh;
    int r = 0;
    if (!(w = watch_for(loop, fd, func, &fresh, &r)))
        return r;
    lb_future *f = NULL;
    r = lb_future_new(loop, &f);
    if (r < 0) {
        if (fresh)
            free_watch(loop, w);
        return r;
    }
    bool was_kept = w->kept[dir];
    w->waiter[dir] = f;
    w->kept[dir] = flags & LB__IO_KEEP;
    /* A kept interest is still registered: no syscall. */
    if (wanted(w) != w->events || !w->in_epoll) {
        bool stale;
        r = update_epoll_fresh(loop, w, dir, func, &stale);
        if (r < 0) {
            w->waiter[dir] = NULL;
            w->kept[dir] = was_kept;
            if (fresh || unused(w))
                free_watch(loop, w);
            lb_future_unref(f);
            return epoll_failed(loop, fd, r, "awaiting readiness");
        }
    }
    f->hooks = &waiter_hooks;
    f->hooks_data = (void *)waiter_key(fd, dir);
    *ret = f;
    return 0;
}

void lb__fd_wait_withdraw(lb_loop *loop, int fd, int dir, lb_future *future) {
    withdraw(loop, waiter_key(fd, dir), future);
}

void lb__fd_forget(lb_loop *loop, int fd) {
    if (!loop || lb__loop_closed(loop))
        return;
    lb__watch *w = lookup(loop, fd);
    if (!w)
        return;
    w->kept[DIR_READ] = w->kept[DIR_WRITE] = false;
    if (wanted(w) != w->events)
        (void)update_epoll(loop, w);
    if (unused(w))
        free_watch(loop, w);
}

/* Readiness for the waiters, and for interest kept with nobody waiting,
 * which is dropped (level-triggered epoll would report it every poll). */
static void wake_waiters(lb_loop *loop, lb__watch *w, uint32_t events) {
    bool failed = events & (EPOLLERR | EPOLLHUP);
    bool changed = false;
    for (int dir = DIR_READ; dir <= DIR_WRITE; dir++) {
        uint32_t bit = dir == DIR_READ ? EPOLLIN : EPOLLOUT;
        if (!(events & bit) && !failed)
            continue;
        lb_future *f = w->waiter[dir];
        if (f) {
            w->waiter[dir] = NULL;
            lb__future_complete(f, LB__FUTURE_RESULT, NULL, NULL, 0);
            changed = true;
        } else if (w->kept[dir] && !(dir == DIR_READ ? w->read_cb : w->write_cb)) {
            w->kept[dir] = false;
            changed = true;
        }
    }
    if (changed && wanted(w) != w->events)
        (void)update_epoll(loop, w);
    if (changed && unused(w))
        free_watch(loop, w);
}
