/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_PROCESS_H
#define LOOPBRIDGE_PROCESS_H

/* Subprocesses (asyncio's create_subprocess_exec): a program started with
 * posix_spawn, its standard streams inherited, sent to /dev/null or
 * connected to lb_streams, its exit awaited by a task.
 *
 *     const char *argv[] = {"sort", NULL};
 *     lb_process_options o = {.in = LB_STDIO_PIPE, .out = LB_STDIO_PIPE};
 *     lb_process *p;
 *     lb_process_spawn(loop, argv, &o, &p);
 *     lb_stream_write(lb_process_stdin(p), "b\na\n", 4);
 *     lb_stream_close(lb_process_stdin(p));      // sort sees the end
 *     ... lb_stream_read(lb_process_stdout(p), ...) until 0 ...
 *     int code;
 *     lb_process_wait(p, -1, &code);              // 0
 *     lb_process_unref(p);
 *
 * Exit is noticed through a pidfd watched by the loop (Linux 5.3 and
 * later), or else through SIGCHLD: the loop then installs its own SIGCHLD
 * handler (lb_loop_add_signal_handler() on SIGCHLD) while it has
 * children, which replaces one the application set on that loop (and
 * removes it when the last child was reaped); at most 8 loops of a
 * process can do that at once. Either way only this module's own
 * children are reaped (waitpid on their pids, never on -1).
 *
 * No zombies: every process is reaped by the loop as soon as it exits,
 * whether or not anyone holds or awaits it. A process still running when
 * its loop closes is killed (SIGKILL) and reaped by lb_loop_close(); a
 * program that must outlive the loop should be started detached (a
 * double fork, setsid) rather than through this module.
 *
 * Processes are loop-thread objects. */

#include <loopbridge/common.h>
#include <loopbridge/stream.h>

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_process lb_process;

/* What one of the child's standard streams is connected to. */
typedef enum lb_stdio_mode {
    LB_STDIO_INHERIT = 0, /* the parent's own descriptor */
    LB_STDIO_DEVNULL,     /* /dev/null */
    LB_STDIO_PIPE,        /* a pipe, the parent's end as an lb_stream */
    LB_STDIO_STDOUT,      /* stderr only: wherever stdout goes */
} lb_stdio_mode;

typedef struct lb_process_options {
    lb_stdio_mode in, out, err;     /* the child's stdin, stdout, stderr */
    const char *const *env;         /* "NAME=value" strings ending with NULL,
                                     * the whole environment; NULL: inherit */
    const char *cwd;                /* working directory; NULL: inherit */
    lb_stream_options stream;       /* for the pipes' streams */
} lb_process_options;

/* Starts argv[0] with the arguments argv (ending with NULL); a name
 * without '/' is searched in the PATH of this process. opts may be NULL
 * (everything inherited). Signal dispositions are reset to their
 * defaults and the signal mask emptied in the child; descriptors other
 * than 0, 1, 2 are not passed on unless they lack FD_CLOEXEC. *ret gets
 * one reference.
 * Returns 0; -ENOENT or -EACCES (the program cannot be run; the message
 * names it), -EINVAL (argv empty, a bad mode), -ENOMEM, -EMFILE, -EAGAIN
 * (the process limit), -EBADF (closed or closing loop), -EBUSY (no
 * pidfd, and 8 other loops watch SIGCHLD already), -EPERM (wrong
 * thread). Loop thread. */
LB_EXPORT int lb_process_spawn(lb_loop *loop, const char *const argv[],
                               const lb_process_options *opts, lb_process **ret);

/* Takes a reference. Returns process (NULL, logged, on a thread that does
 * not run its open loop). Loop thread. */
LB_EXPORT lb_process *lb_process_ref(lb_process *process);

/* Drops a reference; returns NULL. The last one does not stop the
 * process: it is still reaped in the background when it exits. While it
 * runs, the last reference lets go of the pipes nobody else holds, so
 * that a child is not left blocked on output nobody reads: its stdout
 * and stderr pipes are aborted (the child's writes then fail with EPIPE,
 * or SIGPIPE ends it), its stdin pipe is closed once what was queued is
 * sent (the child reads the end of its input). A pipe you took a
 * reference to (lb_stream_ref() on lb_process_stdout() and the like), or
 * one a task is reading, stays open and is yours to read and release:
 * your last reference aborts it as the process's would have (close it
 * first to have queued input sent). Once the child exited, the pipes go with the object (aborted if still
 * open). NULL is a no-op. Loop thread (elsewhere refused and logged while
 * the loop is open). */
LB_EXPORT lb_process *lb_process_unref(lb_process *process);

/* The child's process id. */
LB_EXPORT pid_t lb_process_pid(const lb_process *process);

/* The streams of the pipes (LB_STDIO_PIPE), borrowed from the process
 * (take a reference to keep one longer), or NULL. Close the stdin stream
 * to let the child read the end of its input. */
LB_EXPORT lb_stream *lb_process_stdin(const lb_process *process);
LB_EXPORT lb_stream *lb_process_stdout(const lb_process *process);
LB_EXPORT lb_stream *lb_process_stderr(const lb_process *process);

/* Awaits the process's exit, for at most timeout seconds (< 0: no limit),
 * and stores its return code in *ret (may be NULL): the exit status
 * (0..255), or -N if signal N ended it (asyncio's returncode).
 * Cancellation or the timeout leave the process running. The call holds
 * a reference to the process while it waits (another task may drop the
 * last of yours meanwhile).
 * Returns 0; -ETIMEDOUT; -ECANCELED; -ECHILD (someone else reaped it);
 * -EPERM outside a task. */
LB_EXPORT int lb_process_wait(lb_process *process, double timeout, int *ret);

/* The return code without waiting: 0 and *ret as lb_process_wait(), or
 * -EAGAIN while the process runs, -ECHILD as above. */
LB_EXPORT int lb_process_returncode(const lb_process *process, int *ret);

/* A new future that completes when the process exits, with the return
 * code as its result ((intptr_t)value); cancelling it does not affect the
 * process. For callbacks that cannot await. Returns 0, -EINVAL, -ENOMEM,
 * -EBADF. */
LB_EXPORT int lb_process_exit_future(lb_process *process, lb_future **ret);

/* Sends signum to the process (0: only checks that it runs). Returns 0;
 * -ESRCH once it exited (the pid may belong to another process by then,
 * so nothing is sent); -EINVAL. */
LB_EXPORT int lb_process_send_signal(lb_process *process, int signum);

/* lb_process_send_signal() with SIGTERM. */
LB_EXPORT int lb_process_terminate(lb_process *process);

/* lb_process_send_signal() with SIGKILL. */
LB_EXPORT int lb_process_kill(lb_process *process);

#ifdef __cplusplus
}
#endif

#endif
