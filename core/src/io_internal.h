/* SPDX-License-Identifier: MIT */
#ifndef LB_IO_INTERNAL_H
#define LB_IO_INTERNAL_H

/* What the I/O layer shares with the fd watches of fd.c. */

#include "future_internal.h"

enum { LB__IO_READ = 0, LB__IO_WRITE = 1 };

enum {
    /* Leave the epoll interest registered once the wait is over, so that
     * the next wait on the same fd costs no epoll_ctl. A readiness event
     * that arrives while nobody waits drops the interest. Only for fds
     * whose owner calls lb__fd_forget() before closing them: a
     * registration left behind on a closed fd whose file lives on (a dup,
     * a child's copy) would go on reporting events for a number that may
     * since name another file. */
    LB__IO_KEEP = 1u << 0,
};

/* Stores in *ret a future that completes (result NULL) once fd is ready
 * in direction dir (LB__IO_READ or LB__IO_WRITE; a hang-up or error
 * counts as ready for both). Cancelling the future withdraws the wait.
 * One waiter per direction, and never next to an lb_loop_add_reader /
 * add_writer callback of that direction: -EBUSY. Also -EBADF (fd not
 * open), -EPERM (regular file), -ENOMEM. Loop thread. */
int lb__fd_wait(lb_loop *loop, int fd, int dir, unsigned flags, lb_future **ret);

/* Withdraws the wait of fd in dir if its future is still waiting, without
 * completing it (the caller does). */
void lb__fd_wait_withdraw(lb_loop *loop, int fd, int dir, lb_future *future);

/* Drops the interest that LB__IO_KEEP waits left registered for fd, and
 * the fd's watch if nothing else uses it. Call it before closing fd. */
void lb__fd_forget(lb_loop *loop, int fd);

#endif
