/* SPDX-License-Identifier: MIT */
/* The pipe behind Bridge.signal_fd(): a non-blocking fd for
 * signal.set_wakeup_fd(), read by a thread that posts cb(loop, data) to
 * the loop when bytes arrive (one post at a time), so that the loop
 * watches no fd for it (_signal_pipe.c says why). */
#ifndef LOOPBRIDGE_PY_SIGNAL_PIPE_H
#define LOOPBRIDGE_PY_SIGNAL_PIPE_H

#include <loopbridge/loopbridge.h>

typedef struct lb_py_signal_pipe lb_py_signal_pipe;

/* Makes the pipe and starts its thread. Returns 0 or a negative errno. */
int lb_py_signal_pipe_open(lb_py_signal_pipe **ret, lb_loop *loop, lb_callback cb, void *data);

/* In a forked child, where the pipe is still the parent's and has no
 * thread: a new pipe and a thread for it. inherited[] gets the parent's
 * two ends where this process still has them under their numbers (the
 * child may have closed and reused them), else -1: the caller points the
 * wakeup fd away from inherited[1], then closes both. Otherwise nothing
 * (inherited[] -1). Returns 0 or a negative errno (the pipe unchanged). */
int lb_py_signal_pipe_renew(lb_py_signal_pipe *p, int inherited[2]);

/* The write end, for signal.set_wakeup_fd(). */
int lb_py_signal_pipe_fd(const lb_py_signal_pipe *p);

/* Ends and joins the thread: nothing is posted to the loop after it (a
 * post already made waits in the loop). The fds stay open. Idempotent;
 * in a forked child that did not renew the pipe, which has no such
 * thread, it only marks it ended. */
void lb_py_signal_pipe_stop(lb_py_signal_pipe *p);

/* Stops the thread if needed, closes both fds, frees p (NULL: nothing). */
void lb_py_signal_pipe_close(lb_py_signal_pipe *p);

#endif
