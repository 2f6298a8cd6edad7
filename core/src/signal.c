/* SPDX-License-Identifier: MIT */
/* Signal handlers that run as loop callbacks. A process-wide sigaction
 * handler writes the signal number into the self-pipe of every loop that
 * watches it; the pipe's read end is an ordinary fd watch of the loop
 * (the iteration knows nothing of signals), so signals reach loops on
 * every driver.
 *
 * Not signalfd: it only sees signals blocked in every thread, and a
 * library cannot block them in threads it did not create (GLib's, the
 * application's), where the signal would then take its default action. */
#include "alloc.h"
#include "error.h"
#include "loop_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define LOOPS_PER_SIGNAL 8

/* Read by the signal handler: plain atomics, no locks. */
static atomic_int pipe_of[NSIG][LOOPS_PER_SIGNAL];
static atomic_int handlers_running;

/* Written under `lock` only. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous[NSIG];
static int watchers[NSIG];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
    for (int s = 0; s < NSIG; s++)
        for (int i = 0; i < LOOPS_PER_SIGNAL; i++)
            atomic_init(&pipe_of[s][i], -1);
}

static void on_signal(int signo) {
    int saved = errno;
    atomic_fetch_add(&handlers_running, 1);
    unsigned char b = (unsigned char)signo;
    for (int i = 0; i < LOOPS_PER_SIGNAL; i++) {
        int fd = atomic_load(&pipe_of[signo][i]);
        if (fd >= 0) {
            /* A full pipe means the loop has a wakeup pending already. */
            ssize_t n = write(fd, &b, 1);
            (void)n;
        }
    }
    atomic_fetch_sub(&handlers_running, 1);
    errno = saved;
}

/* A loop's handler of one signal, a resource of the loop while set. */
typedef struct signal_watch {
    lb_resource resource;
    lb__signals *signals;
    int signum;
} signal_watch;

typedef struct lb__signals {
    int read_fd, write_fd;
    lb_callback cb[NSIG];
    void *data[NSIG];
    signal_watch watch[NSIG];
} lb__signals;

static int check_signum(const lb_loop *loop, int signum, const char *func) {
    if (signum <= 0 || signum >= NSIG)
        return lb__fail(loop, -EINVAL, "%s: signal %d is out of range (1..%d)", func, signum,
                        NSIG - 1);
    if (signum == SIGKILL || signum == SIGSTOP)
        return lb__fail(loop, -EINVAL, "%s: signal %d (%s) cannot be caught", func, signum,
                        strsignal(signum));
    /* A faulting instruction runs again as soon as the handler returns:
     * the callback, which runs later, could never fix its cause, and the
     * fault would repeat forever (replacing the fiber stack overflow
     * reporter besides). A trap (SIGTRAP) resumes after the trapping
     * instruction, so it is accepted. */
    if (signum == SIGSEGV || signum == SIGBUS || signum == SIGFPE || signum == SIGILL)
        return lb__fail(loop, -EINVAL,
                        "%s: signal %d (%s) is raised by a faulting instruction, which runs "
                        "again as soon as the handler returns; a loop callback cannot handle it",
                        func, signum, strsignal(signum));
    return 0;
}

/* The pipe's reader: the signals that arrived since the last read, each
 * once, in the order they came. A handler may remove another's (it is
 * looked up as it is called). */
static void pipe_readable(lb_loop *loop, void *data) {
    lb__signals *s = data;
    unsigned char buf[64];
    bool seen[NSIG] = {false};
    int order[NSIG];
    size_t count = 0;
    ssize_t n;
    while ((n = read(s->read_fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            int signo = buf[i];
            if (signo > 0 && signo < NSIG && !seen[signo]) {
                seen[signo] = true;
                order[count++] = signo;
            }
        }
    }
    for (size_t i = 0; i < count; i++)
        if (s->cb[order[i]])
            s->cb[order[i]](loop, s->data[order[i]]);
}

static lb__signals *signals_of(lb_loop *loop, int *error) {
    if (loop->signals)
        return loop->signals;
    lb__signals *s = lb__calloc(1, sizeof *s);
    if (!s) {
        *error = -ENOMEM;
        return NULL;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        *error = -errno;
        lb__free(s);
        return NULL;
    }
    int r = lb__watch_add_reader(loop, fds[0], pipe_readable, s, "lb_loop_add_signal_handler");
    if (r < 0) {
        *error = r;
        close(fds[0]);
        close(fds[1]);
        lb__free(s);
        return NULL;
    }
    s->read_fd = fds[0];
    s->write_fd = fds[1];
    loop->signals = s;
    return s;
}

/* Unhooks loop from signum in the process-wide tables. Under `lock`. */
static void unhook_locked(lb__signals *s, int signum) {
    for (int i = 0; i < LOOPS_PER_SIGNAL; i++) {
        if (atomic_load(&pipe_of[signum][i]) == s->write_fd) {
            atomic_store(&pipe_of[signum][i], -1);
            break;
        }
    }
    if (--watchers[signum] == 0)
        sigaction(signum, &previous[signum], NULL);
}

/* Unhooks and forgets the handler of signum. */
static void signal_unwatch(lb__signals *s, int signum) {
    pthread_mutex_lock(&lock);
    unhook_locked(s, signum);
    pthread_mutex_unlock(&lock);
    s->cb[signum] = NULL;
    s->data[signum] = NULL;
    lb_driver_resource_remove(&s->watch[signum].resource);
}

/* The loop closes: the signal goes back to its previous disposition
 * when no other loop watches it. */
static void signal_watch_close(lb_resource *resource) {
    signal_watch *w = (signal_watch *)resource;
    signal_unwatch(w->signals, w->signum);
}

static const lb_resource_ops signal_watch_ops = {.name = "signal watch",
                                                 .close = signal_watch_close};

int lb_loop_add_signal_handler(lb_loop *loop, int signum, lb_callback cb, void *data) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(cb, -EINVAL);
    int r = check_signum(loop, signum, __func__);
    if (r < 0)
        return r;
    pthread_once(&init_once, init_tables);
    r = 0;
    lb__signals *s = signals_of(loop, &r);
    if (!s)
        return lb__fail(loop, r, "%s: cannot make the signal pipe: %s", __func__, lb_strerror(r));
    if (s->cb[signum]) {
        s->cb[signum] = cb;
        s->data[signum] = data;
        return 0;
    }

    pthread_mutex_lock(&lock);
    int slot = -1;
    for (int i = 0; i < LOOPS_PER_SIGNAL && slot < 0; i++)
        if (atomic_load(&pipe_of[signum][i]) < 0)
            slot = i;
    if (slot < 0) {
        pthread_mutex_unlock(&lock);
        return lb__fail(loop, -EBUSY, "%s: %d loops watch signal %d already", __func__,
                        LOOPS_PER_SIGNAL, signum);
    }
    if (watchers[signum] == 0) {
        struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigfillset(&sa.sa_mask);
        if (sigaction(signum, &sa, &previous[signum]) < 0) {
            r = -errno;
            pthread_mutex_unlock(&lock);
            return lb__fail(loop, r, "%s: sigaction(%d): %s", __func__, signum, strerror(-r));
        }
    }
    watchers[signum]++;
    s->cb[signum] = cb;
    s->data[signum] = data;
    atomic_store(&pipe_of[signum][slot], s->write_fd);
    pthread_mutex_unlock(&lock);
    s->watch[signum].signals = s;
    s->watch[signum].signum = signum;
    lb_driver_resource_add(loop, &s->watch[signum].resource, &signal_watch_ops); /* cannot fail */
    return 0;
}

int lb_loop_remove_signal_handler(lb_loop *loop, int signum) {
    LB__CHECK_LOOP(loop);
    int r = check_signum(loop, signum, __func__);
    if (r < 0)
        return r;
    lb__signals *s = loop->signals;
    if (!s || !s->cb[signum])
        return 0;
    signal_unwatch(s, signum);
    return 1;
}

void lb__signals_close(lb_loop *loop) {
    lb__signals *s = loop->signals;
    if (!s)
        return;
    pthread_mutex_lock(&lock);
    for (int signum = 1; signum < NSIG; signum++)
        if (s->cb[signum])
            unhook_locked(s, signum);
    pthread_mutex_unlock(&lock);
    /* A handler that loaded our write fd before it was unhooked may still
     * be writing to it: let it finish before the number can be reused. */
    while (atomic_load(&handlers_running) > 0)
        sched_yield();
    lb__watch_remove_reader(loop, s->read_fd);
    close(s->read_fd);
    close(s->write_fd);
    lb__free(s);
    loop->signals = NULL;
}
