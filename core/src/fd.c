/* SPDX-License-Identifier: MIT */
/* File descriptor watches. Every watched fd sits in the loop's one epoll
 * instance (the backend fd), level-triggered, so hosted drivers only
 * ever watch that one descriptor. Readiness becomes a handle in the ready
 * queue, run in the same iteration as asyncio does; the handle names its
 * watch by (fd, generation), so a watch removed or replaced meanwhile is
 * never called through a stale pointer. */
#include "alloc.h"
#include "error.h"
#include "loop_internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>

struct lb__watch {
    int fd;
    uint32_t gen;
    uint32_t events; /* EPOLLIN / EPOLLOUT registered with epoll */
    bool in_epoll;
    bool read_queued, write_queued;
    lb_callback read_cb, write_cb;
    void *read_data, *write_data;
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

/* Registers what w wants with epoll. Returns 0, a negative errno, or
 * -ENOENT when the kernel no longer knows the file w registered: its fd
 * was closed while watched (and its number maybe reused since). */
static int update_epoll(lb_loop *loop, lb__watch *w) {
    uint32_t want = (w->read_cb ? EPOLLIN : 0) | (w->write_cb ? EPOLLOUT : 0);
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

/* w's fd was closed while watched: what w still wanted belonged to the
 * file that is gone. Its callbacks are dropped (keep names the direction
 * the caller is setting right now), and a new generation makes events
 * already queued for the old file miss. */
static void forget_closed(lb_loop *loop, lb__watch *w, int keep, const char *func) {
    lb__log(LB_LOG_WARNING,
            "%s: fd %d was closed while watched; its old watch was dropped (remove a watch "
            "before closing its fd)",
            func, w->fd);
    if (keep != DIR_READ) {
        w->read_cb = NULL;
        w->read_data = NULL;
    }
    if (keep != DIR_WRITE) {
        w->write_cb = NULL;
        w->write_data = NULL;
    }
    w->in_epoll = false;
    w->events = 0;
    w->read_queued = w->write_queued = false;
    w->gen = ++loop->watch_gen;
}

static void free_watch(lb_loop *loop, lb__watch *w) {
    loop->watches[w->fd] = NULL;
    loop->watches_live--;
    lb__free(w);
}

static int add_watch(lb_loop *loop, int fd, int dir, lb_callback cb, void *data,
                     const char *func) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(cb, -EINVAL);
    if (fd < 0 || fcntl(fd, F_GETFD) < 0)
        return lb__fail(loop, -EBADF, "%s: fd %d is not an open file descriptor", func, fd);
    if ((size_t)fd >= loop->watches_cap) {
        size_t cap = loop->watches_cap ? loop->watches_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        lb__watch **v = lb__realloc(loop->watches, cap * sizeof *v);
        if (!v)
            return lb__fail(loop, -ENOMEM, "%s: out of memory", func);
        memset(v + loop->watches_cap, 0, (cap - loop->watches_cap) * sizeof *v);
        loop->watches = v;
        loop->watches_cap = cap;
    }
    lb__watch *w = loop->watches[fd];
    bool fresh = false;
    if (!w) {
        w = lb__calloc(1, sizeof *w);
        if (!w)
            return lb__fail(loop, -ENOMEM, "%s: out of memory", func);
        w->fd = fd;
        w->gen = ++loop->watch_gen;
        loop->watches[fd] = w;
        loop->watches_live++;
        fresh = true;
    }
    lb_callback old_cb = dir == DIR_READ ? w->read_cb : w->write_cb;
    void *old_data = dir == DIR_READ ? w->read_data : w->write_data;
    if (dir == DIR_READ) {
        w->read_cb = cb;
        w->read_data = data;
    } else {
        w->write_cb = cb;
        w->write_data = data;
    }
    int r = update_epoll(loop, w);
    if (r == -ENOENT) {
        forget_closed(loop, w, dir, func);
        old_cb = NULL; /* what it replaced belonged to the closed file */
        old_data = NULL;
        r = update_epoll(loop, w);
    }
    if (r < 0) {
        if (dir == DIR_READ) {
            w->read_cb = old_cb;
            w->read_data = old_data;
        } else {
            w->write_cb = old_cb;
            w->write_data = old_data;
        }
        if (fresh || (!w->read_cb && !w->write_cb))
            free_watch(loop, w);
        if (r == -EPERM)
            return lb__fail(loop, -EPERM,
                            "%s: fd %d cannot be watched (regular files are always ready)", func,
                            fd);
        return lb__fail(loop, r, "%s: epoll_ctl on fd %d: %s", func, fd, strerror(-r));
    }
    return 0;
}

static int remove_watch(lb_loop *loop, int fd, int dir, const char *func) {
    LB__CHECK_LOOP(loop);
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
    if (!w->read_cb && !w->write_cb)
        free_watch(loop, w);
    return 1;
}

int lb_loop_add_reader(lb_loop *loop, int fd, lb_callback cb, void *data) {
    return add_watch(loop, fd, DIR_READ, cb, data, __func__);
}

int lb_loop_add_writer(lb_loop *loop, int fd, lb_callback cb, void *data) {
    return add_watch(loop, fd, DIR_WRITE, cb, data, __func__);
}

int lb_loop_remove_reader(lb_loop *loop, int fd) {
    return remove_watch(loop, fd, DIR_READ, __func__);
}

int lb_loop_remove_writer(lb_loop *loop, int fd) {
    return remove_watch(loop, fd, DIR_WRITE, __func__);
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
}

void lb__watches_close(lb_loop *loop) {
    for (size_t fd = 0; fd < loop->watches_cap; fd++) {
        lb__watch *w = loop->watches[fd];
        if (w) {
            w->read_cb = w->write_cb = NULL;
            (void)update_epoll(loop, w);
            free_watch(loop, w);
        }
    }
    lb__free(loop->watches);
    loop->watches = NULL;
    loop->watches_cap = 0;
}
