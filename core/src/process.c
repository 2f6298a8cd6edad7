/* SPDX-License-Identifier: MIT */
/* Subprocesses. posix_spawn starts the child (glibc uses a vfork-style
 * clone and reports exec failures as its return value); a pidfd watched
 * by the loop, or SIGCHLD where there is none, says when it exited; the
 * loop reaps it then with waitpid on its pid.
 *
 * Each process has an internal exit future, pending while the child runs
 * and completed when it is reaped. A process is a resource of its loop
 * (lb_resource): when the loop closes with the child still running, the
 * process's close kills and reaps it, so no child is left behind as a
 * zombie. */
#include <loopbridge/process.h>
#include <loopbridge/task.h>

#include "alloc.h"
#include "error.h"
#include "io_internal.h"
#include "test_hooks.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct lb_process {
    lb_loop *loop;
    unsigned refs;       /* the user's */
    bool watching;       /* the loop still watches the child: it holds the object */
    pid_t pid;
    int pidfd;           /* -1: watched through SIGCHLD */
    lb_stream *pipes[3];
    bool exited;
    int returncode;      /* valid once exited; -ECHILD's meaning below */
    bool lost;           /* someone else reaped it: no return code */
    lb_future *exit;     /* pending while the child runs */
    lb_process *prev_child, *next_child; /* the SIGCHLD watch list */
    lb_resource resource; /* registered while the child is watched or the user holds it */
};

/* ------------------------------------------------------------------ */
/* pidfd                                                               */
/* ------------------------------------------------------------------ */

/* Cleared once the kernel (or valgrind) says it has no pidfd_open, so
 * that it is asked once per process, not once per child. */
static atomic_bool pidfd_available = true;

/* Test hook: false makes every new child use the SIGCHLD watch. */
static atomic_bool pidfd_allowed = true;

void lb__test_process_use_pidfd(bool allowed) {
    atomic_store(&pidfd_allowed, allowed);
}

static int open_pidfd(pid_t pid) {
    if (!atomic_load(&pidfd_allowed) || !atomic_load(&pidfd_available))
        return -1;
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        /* pidfd_open makes its fd close-on-exec already. */
        return fd;
    }
    if (errno == ENOSYS)
        atomic_store(&pidfd_available, false);
#endif
    return -1;
}

/* ------------------------------------------------------------------ */
/* Exit                                                                */
/* ------------------------------------------------------------------ */

static void process_free(lb_process *p) {
    for (int i = 0; i < 3; i++)
        lb_stream_unref(p->pipes[i]);
    lb_future_unref(p->exit);
    lb_loop *loop = p->loop;
    lb_driver_resource_remove(&p->resource);
    lb__free(p);
    lb_loop_unref(loop);
}

static void sigchld_watch_remove(lb_process *p);

/* The child was reaped with status (or lost): record it and complete the
 * exit future. */
static void reaped(lb_process *p, int status, bool lost) {
    if (p->exited)
        return;
    p->exited = true;
    p->lost = lost;
    if (lost)
        p->returncode = 0;
    else if (WIFEXITED(status))
        p->returncode = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        p->returncode = -WTERMSIG(status);
    else
        p->returncode = status;
    if (!lb_future_is_done(p->exit)) {
        if (lost)
            lb__future_complete(p->exit, LB__FUTURE_ERROR, NULL, NULL, -ECHILD);
        else
            lb__future_complete(p->exit, LB__FUTURE_RESULT, (void *)(intptr_t)p->returncode,
                                NULL, 0);
    }
}

/* Reaps the child if it exited. Returns true if it is gone. */
static bool try_reap(lb_process *p) {
    int status = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == p->pid)
        reaped(p, status, false);
    else if (r < 0 && errno == ECHILD)
        reaped(p, 0, true);
    return p->exited;
}

/* The child is gone: stop watching it, and free the object if nobody
 * holds it. */
static void finish_watch(lb_process *p) {
    if (p->pidfd >= 0) {
        if (!lb_loop_is_closed(p->loop))
            lb_loop_remove_reader(p->loop, p->pidfd);
        close(p->pidfd);
        p->pidfd = -1;
    } else {
        sigchld_watch_remove(p);
    }
    p->watching = false;
    if (p->refs == 0)
        process_free(p);
}

static void on_pidfd(lb_loop *loop, void *data) {
    (void)loop;
    if (try_reap(data))
        finish_watch(data);
}

/* The loop closes with the child running: kill and reap it (SIGKILL
 * ends it at once, so the wait is short), and let go of the object if
 * nobody holds it. A user who does finds it exited, killed. */
static void process_resource_close(lb_resource *resource) {
    lb_process *p = (lb_process *)((char *)resource - offsetof(lb_process, resource));
    if (!p->exited) {
        kill(p->pid, SIGKILL);
        int status = 0;
        pid_t r;
        do
            r = waitpid(p->pid, &status, 0);
        while (r < 0 && errno == EINTR);
        reaped(p, status, r != p->pid);
    }
    if (p->watching)
        finish_watch(p); /* frees it if the user let go */
}

static const lb_resource_ops process_resource_ops = {.name = "process",
                                                     .close = process_resource_close};

/* ------------------------------------------------------------------ */
/* The SIGCHLD watch                                                   */
/* ------------------------------------------------------------------ */

/* Children watched through SIGCHLD, of every loop (each loop handles its
 * own); touched on the loops' threads, hence the lock. */
static pthread_mutex_t children_lock = PTHREAD_MUTEX_INITIALIZER;
static lb_process *children;

static void unlink_child_locked(lb_process *p) {
    if (p->prev_child)
        p->prev_child->next_child = p->next_child;
    else
        children = p->next_child;
    if (p->next_child)
        p->next_child->prev_child = p->prev_child;
    p->prev_child = p->next_child = NULL;
}

static bool loop_has_children_locked(const lb_loop *loop) {
    for (lb_process *c = children; c; c = c->next_child)
        if (c->loop == loop)
            return true;
    return false;
}

/* SIGCHLD on this loop: reap those of its children that exited. */
static void on_sigchld(lb_loop *loop, void *data) {
    (void)data;
    lb_process *done = NULL, *next;
    pthread_mutex_lock(&children_lock);
    for (lb_process *c = children; c; c = next) {
        next = c->next_child;
        if (c->loop != loop)
            continue;
        int status = 0;
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid || (r < 0 && errno == ECHILD)) {
            unlink_child_locked(c);
            reaped(c, status, r != c->pid);
            c->next_child = done; /* a list of our own until unlocked */
            done = c;
        }
    }
    pthread_mutex_unlock(&children_lock);
    for (lb_process *c = done; c; c = next) {
        next = c->next_child;
        c->next_child = NULL;
        finish_watch(c);
    }
}

static void check_children_soon(lb_loop *loop, void *data) {
    on_sigchld(loop, data);
}

static int sigchld_watch_add(lb_process *p) {
    int r = lb_loop_add_signal_handler(p->loop, SIGCHLD, on_sigchld, NULL);
    if (r < 0)
        return r;
    pthread_mutex_lock(&children_lock);
    p->next_child = children;
    if (children)
        children->prev_child = p;
    children = p;
    pthread_mutex_unlock(&children_lock);
    /* The child may have exited before it was on the list. */
    if (!lb__call_soon_internal(p->loop, check_children_soon, NULL))
        return -ENOMEM;
    return 0;
}

static void sigchld_watch_remove(lb_process *p) {
    pthread_mutex_lock(&children_lock);
    bool listed = p->prev_child || p->next_child || children == p;
    if (listed)
        unlink_child_locked(p);
    bool last = !loop_has_children_locked(p->loop);
    pthread_mutex_unlock(&children_lock);
    if (last && !lb_loop_is_closed(p->loop))
        lb_loop_remove_signal_handler(p->loop, SIGCHLD);
}

/* ------------------------------------------------------------------ */
/* Spawning                                                            */
/* ------------------------------------------------------------------ */

/* A pipe whose child end is not 0, 1 or 2 (dup2 onto itself would leave
 * it close-on-exec), both ends close-on-exec. */
static int make_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        if (fds[i] <= 2) {
            int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0) {
                int e = errno;
                close(fds[0]);
                close(fds[1]);
                return -e;
            }
            close(fds[i]);
            fds[i] = moved;
        }
    }
    return 0;
}

typedef struct spawn_plan {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int child_end[3]; /* closed in the parent after the spawn */
} spawn_plan;

static int plan_stdio(lb_process *p, spawn_plan *plan, int fd, lb_stdio_mode mode,
                      const lb_process_options *opts) {
    switch (mode) {
    case LB_STDIO_INHERIT:
        return 0;
    case LB_STDIO_DEVNULL:
        return -posix_spawn_file_actions_addopen(&plan->actions, fd, "/dev/null",
                                                 fd == 0 ? O_RDONLY : O_WRONLY, 0);
    case LB_STDIO_STDOUT:
        if (fd != 2)
            return -EINVAL;
        return -posix_spawn_file_actions_adddup2(&plan->actions, 1, 2);
    case LB_STDIO_PIPE: {
        int ends[2];
        int r = make_pipe(ends);
        if (r < 0)
            return r;
        int parent = fd == 0 ? ends[1] : ends[0];
        int child = fd == 0 ? ends[0] : ends[1];
        plan->child_end[fd] = child;
        r = lb_stream_new(p->loop, parent, &opts->stream, &p->pipes[fd]);
        if (r < 0) {
            close(parent);
            return r;
        }
        return -posix_spawn_file_actions_adddup2(&plan->actions, child, fd);
    }
    default:
        return -EINVAL;
    }
}

static void spawn_failed(lb_process *p, spawn_plan *plan) {
    for (int i = 0; i < 3; i++) {
        if (plan->child_end[i] >= 0)
            close(plan->child_end[i]);
        p->pipes[i] = lb_stream_unref(p->pipes[i]);
    }
}

int lb_process_spawn(lb_loop *loop, const char *const argv[], const lb_process_options *opts,
                     lb_process **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(argv && argv[0] && argv[0][0], -EINVAL);
    lb_assert_return(ret, -EINVAL);
    if (lb__loop_get_state(loop) != LB__LOOP_OPEN)
        return lb__fail(loop, -EBADF, "lb_process_spawn: the loop is closing");
    static const lb_process_options defaults;
    if (!opts)
        opts = &defaults;

    lb_process *p = lb__calloc(1, sizeof *p);
    if (!p)
        return lb__fail(loop, -ENOMEM, "lb_process_spawn: out of memory");
    p->loop = loop;
    p->pidfd = -1;
    int r = lb_future_new(loop, &p->exit);
    if (r < 0) {
        lb__free(p);
        return r;
    }

    spawn_plan plan = {.child_end = {-1, -1, -1}};
    posix_spawn_file_actions_init(&plan.actions);
    posix_spawnattr_init(&plan.attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    r = -posix_spawnattr_setsigmask(&plan.attr, &none);
    if (r == 0)
        r = -posix_spawnattr_setsigdefault(&plan.attr, &all);
    if (r == 0)
        r = -posix_spawnattr_setflags(&plan.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (r == 0 && opts->cwd)
        r = -posix_spawn_file_actions_addchdir_np(&plan.actions, opts->cwd);
    const lb_stdio_mode modes[3] = {opts->in, opts->out, opts->err};
    for (int fd = 0; fd < 3 && r == 0; fd++)
        r = plan_stdio(p, &plan, fd, modes[fd], opts);
    /* Without a pidfd, SIGCHLD must be caught before the child can exit. */
    bool sigchld_first = !atomic_load(&pidfd_allowed) || !atomic_load(&pidfd_available);
    if (r == 0 && sigchld_first)
        r = lb_loop_add_signal_handler(loop, SIGCHLD, on_sigchld, NULL);

    pid_t pid = 0;
    if (r == 0) {
        char *const *env = opts->env ? (char *const *)opts->env : environ;
        int e = strchr(argv[0], '/')
                    ? posix_spawn(&pid, argv[0], &plan.actions, &plan.attr, (char *const *)argv, env)
                    : posix_spawnp(&pid, argv[0], &plan.actions, &plan.attr, (char *const *)argv,
                                   env);
        if (e != 0)
            r = lb__fail(loop, -e, "lb_process_spawn: cannot run %s: %s", argv[0], strerror(e));
    } else {
        r = lb__fail(loop, r, "lb_process_spawn: cannot prepare %s: %s", argv[0], strerror(-r));
    }
    posix_spawn_file_actions_destroy(&plan.actions);
    posix_spawnattr_destroy(&plan.attr);
    if (r < 0) {
        spawn_failed(p, &plan);
        if (sigchld_first)
            sigchld_watch_remove(p);
        lb_future_unref(p->exit);
        lb__free(p);
        return r;
    }
    for (int i = 0; i < 3; i++)
        if (plan.child_end[i] >= 0)
            close(plan.child_end[i]);

    /* From here on the child runs: whatever fails, it is watched and
     * reaped. */
    p->pid = pid;
    p->refs = 1;
    p->watching = true;
    lb_loop_ref(loop);
    lb_driver_resource_add(loop, &p->resource, &process_resource_ops); /* cannot fail here */
    p->pidfd = open_pidfd(pid);
    if (p->pidfd >= 0 && lb_loop_add_reader(loop, p->pidfd, on_pidfd, p) < 0) {
        close(p->pidfd);
        p->pidfd = -1;
    }
    if (p->pidfd < 0)
        r = sigchld_watch_add(p);
    if (r < 0) {
        /* Cannot watch it: stop it now rather than leave a zombie. */
        kill(pid, SIGKILL);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        reaped(p, status, false);
        finish_watch(p); /* refs is 1: not freed */
        lb_process_unref(p);
        return lb__fail(loop, r, "lb_process_spawn: cannot watch %s: %s", argv[0], strerror(-r));
    }
    *ret = p;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Queries and control                                                 */
/* ------------------------------------------------------------------ */

static void process_ref(void *process) {
    ((lb_process *)process)->refs++;
}

lb_process *lb_process_ref(lb_process *process) {
    return process && lb__loop_release_call(process->loop, __func__, process_ref, process)
               ? process
               : NULL;
}

/* The last reference went while the child runs: let go of the pipes
 * nobody else holds, so that the child does not block on a full pipe
 * nobody will read until the loop closes. Its output pipes are aborted
 * (writing to them fails with EPIPE); its input is closed, after what
 * was queued for it is sent (it then reads the end of its input). A pipe
 * the caller took a reference to (lb_stream_ref) is the caller's: the
 * process lets go of it, and the caller's last reference aborts it
 * (lb_stream_unref), unless the caller closed it first. */
static void release_pipes(lb_process *p) {
    for (int i = 0; i < 3; i++) {
        lb_stream *s = p->pipes[i];
        if (!s)
            continue;
        if (!lb__stream_shared(s)) {
            if (i == 0)
                lb_stream_close(s);
            else
                lb_stream_abort(s);
        }
        p->pipes[i] = lb_stream_unref(s);
    }
}

static void process_unref(void *data) {
    lb_process *process = data;
    if (lb__io_no_ref_left(process->refs, "lb_process", process) || --process->refs > 0)
        return;
    if (!process->watching)
        process_free(process);
    else
        release_pipes(process); /* the watch reaps the child and frees it */
}

lb_process *lb_process_unref(lb_process *process) {
    if (process)
        lb__loop_release_call(process->loop, __func__, process_unref, process);
    return NULL;
}

pid_t lb_process_pid(const lb_process *process) {
    return process ? process->pid : 0;
}

lb_stream *lb_process_stdin(const lb_process *process) {
    return process ? process->pipes[0] : NULL;
}

lb_stream *lb_process_stdout(const lb_process *process) {
    return process ? process->pipes[1] : NULL;
}

lb_stream *lb_process_stderr(const lb_process *process) {
    return process ? process->pipes[2] : NULL;
}

int lb_process_returncode(const lb_process *process, int *ret) {
    lb_assert_return(process, -EINVAL);
    if (!process->exited)
        return -EAGAIN;
    if (process->lost)
        return lb__fail(process->loop, -ECHILD,
                        "process %d was reaped by someone else: its status is unknown",
                        (int)process->pid);
    if (ret)
        *ret = process->returncode;
    return 0;
}

int lb_process_exit_future(lb_process *process, lb_future **ret) {
    lb_assert_return(process, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    LB__CHECK_LOOP(process->loop);
    /* A shield: cancelling it leaves the exit future (and the process)
     * alone. */
    return lb_shield(process->exit, ret);
}

int lb_process_wait(lb_process *process, double timeout, int *ret) {
    lb_assert_return(process, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    lb_loop *loop = NULL;
    int r = lb__io_task_loop(__func__, &loop);
    if (r < 0)
        return r;
    if (process->exited)
        return lb_process_returncode(process, ret);
    lb_future *mine = NULL;
    r = lb_shield(process->exit, &mine);
    if (r < 0)
        return r;
    /* Held while waiting: another task may drop the caller's last
     * reference meanwhile, and the child's exit would then free it. */
    process->refs++;
    r = timeout < 0 ? lb_await(mine, NULL) : lb_wait_for(mine, timeout, NULL);
    lb_future_unref(mine);
    if (r >= 0 || r == -ECHILD)
        r = lb_process_returncode(process, ret);
    lb_process_unref(process);
    return r;
}

int lb_process_send_signal(lb_process *process, int signum) {
    lb_assert_return(process, -EINVAL);
    lb_assert_return(signum >= 0 && signum < NSIG, -EINVAL);
    int r = lb__loop_check_thread(process->loop, __func__);
    if (r < 0)
        return r;
    if (process->exited)
        return lb__fail(process->loop, -ESRCH, "process %d has exited", (int)process->pid);
    r = -1;
#ifdef SYS_pidfd_send_signal
    if (process->pidfd >= 0)
        r = (int)syscall(SYS_pidfd_send_signal, process->pidfd, signum, NULL, 0);
#endif
    if (r < 0)
        r = kill(process->pid, signum);
    if (r < 0)
        return lb__fail(process->loop, -errno, "cannot signal process %d: %s",
                        (int)process->pid, strerror(errno));
    return 0;
}

int lb_process_terminate(lb_process *process) {
    return lb_process_send_signal(process, SIGTERM);
}

int lb_process_kill(lb_process *process) {
    return lb_process_send_signal(process, SIGKILL);
}
