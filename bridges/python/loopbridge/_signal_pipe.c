/* SPDX-License-Identifier: MIT */
/* The pipe a Bridge gives signal.set_wakeup_fd() (Bridge.signal_fd()),
 * read by a thread of its own rather than watched by the loop. On Tk, a
 * watched fd gives the loop's thread a Tcl file handler, and Tcl 8.6 hands
 * every wait of a thread that has one to its notifier thread: two writes
 * to that thread's pipe and two wakeups of it, a wait. The program's main
 * thread (where run_forever() sets this fd) would pay that on every wait
 * for the signal that rarely comes. The reader sleeps in poll() instead,
 * and a signal's byte becomes a post to the loop, which wakes the host
 * through the loop's own wakeup (Tcl_ThreadAlert, g_main_context_wakeup).
 *
 * The thread touches no Python object and never takes the GIL. */
#include "_signal_pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct lb_py_signal_pipe {
    int fds[2];       /* read end: the thread's; write end: the wakeup fd */
    dev_t dev;        /* the pipe's identity: after a fork, a number the */
    ino_t ino;        /* child closed may name another file */
    lb_loop *loop;    /* borrowed: the pipe is closed before the loop */
    lb_callback cb;
    void *data;
    pthread_t thread;
    unsigned generation; /* fork_generation when the thread started */
    atomic_bool stopping;
    atomic_bool posted; /* a post is on its way: one is enough */
};

/* One more in each forked child: a pipe made in an earlier generation
 * has no thread in this process. */
static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

static void delivered(lb_loop *loop, void *data)
{
    lb_py_signal_pipe *p = data;
    atomic_store(&p->posted, false);
    p->cb(loop, p->data);
}

static void *reader_main(void *arg)
{
    lb_py_signal_pipe *p = arg;
    struct pollfd pfd = {.fd = p->fds[0], .events = POLLIN};
    char bytes[64];
    for (;;) {
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            break;
        while (read(p->fds[0], bytes, sizeof bytes) > 0)
            ;
        if (atomic_load(&p->stopping))
            break;
        /* A refused post (the loop is closing) loses nothing: the close
         * stops this thread next. */
        if (!atomic_exchange(&p->posted, true) &&
            lb_loop_call_soon_threadsafe(p->loop, delivered, p) < 0)
            atomic_store(&p->posted, false);
    }
    return NULL;
}

/* A new pipe in p->fds, its identity noted. 0 or a negative errno. */
static int make_pipe(lb_py_signal_pipe *p)
{
    struct stat st;
    if (pipe2(p->fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    if (fstat(p->fds[0], &st) < 0) {
        int r = -errno;
        close(p->fds[0]);
        close(p->fds[1]);
        return r;
    }
    p->dev = st.st_dev;
    p->ino = st.st_ino;
    return 0;
}

/* fd still names the pipe dev/ino (after a fork, the child may have
 * closed the number and reused it). */
static bool names_pipe(int fd, dev_t dev, ino_t ino)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

/* Starts the thread; 0 or a negative errno. The generation is the
 * process's only once a thread runs: stop() joins only then. */
static int start_reader(lb_py_signal_pipe *p)
{
    atomic_store(&p->stopping, false);
    atomic_store(&p->posted, false);
    /* Signals stay with the program's threads: CPython runs its handlers
     * on the main thread, and a signal taken here would only interrupt
     * the poll. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&p->thread, NULL, reader_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0)
        p->generation = atomic_load(&fork_generation);
    return -r;
}

int lb_py_signal_pipe_open(lb_py_signal_pipe **ret, lb_loop *loop, lb_callback cb, void *data)
{
    pthread_once(&atfork_once, register_atfork);
    lb_py_signal_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int r = make_pipe(p);
    if (r < 0) {
        free(p);
        return r;
    }
    p->loop = loop;
    p->cb = cb;
    p->data = data;
    r = start_reader(p);
    if (r < 0) {
        close(p->fds[0]);
        close(p->fds[1]);
        free(p);
        return r;
    }
    *ret = p;
    return 0;
}

int lb_py_signal_pipe_renew(lb_py_signal_pipe *p, int inherited[2])
{
    inherited[0] = inherited[1] = -1;
    if (p->generation == atomic_load(&fork_generation))
        return 0;
    /* A forked child: the pipe is the parent's too, and the parent's
     * thread would take the child's bytes. A pipe of the child's own;
     * the parent's ends go back to the caller, if this process still has
     * them under their numbers. */
    int old[2] = {p->fds[0], p->fds[1]};
    dev_t old_dev = p->dev;
    ino_t old_ino = p->ino;
    int r = make_pipe(p);
    if (r == 0 && (r = start_reader(p)) < 0) {
        close(p->fds[0]);
        close(p->fds[1]);
    }
    if (r < 0) {
        p->fds[0] = old[0];
        p->fds[1] = old[1];
        p->dev = old_dev;
        p->ino = old_ino;
        return r;
    }
    for (int i = 0; i < 2; i++)
        if (names_pipe(old[i], old_dev, old_ino))
            inherited[i] = old[i];
    return 0;
}

int lb_py_signal_pipe_fd(const lb_py_signal_pipe *p)
{
    return p->fds[1];
}

void lb_py_signal_pipe_stop(lb_py_signal_pipe *p)
{
    if (!p || atomic_exchange(&p->stopping, true))
        return;
    /* A forked child has the pipe but not the thread. */
    if (p->generation != atomic_load(&fork_generation))
        return;
    ssize_t n = write(p->fds[1], "", 1); /* a full pipe wakes it as well */
    (void)n;
    pthread_join(p->thread, NULL);
}

void lb_py_signal_pipe_close(lb_py_signal_pipe *p)
{
    if (!p)
        return;
    lb_py_signal_pipe_stop(p);
    close(p->fds[0]);
    close(p->fds[1]);
    free(p);
}
