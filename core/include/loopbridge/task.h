/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_TASK_H
#define LOOPBRIDGE_TASK_H

/* lb_task: asyncio's `async def` + `await` for C. A task is a plain C
 * function running on its own stack (a fiber) on the loop's thread; it
 * suspends in lb_await() until a future is done, so the code reads top to
 * bottom:
 *
 *     static int load(lb_task *task, void *data) {
 *         set_label("Loading...");
 *         int err = lb_sleep(2.0);       // the loop (and the window) live on
 *         if (err)
 *             return err;                // -ECANCELED: the task was cancelled
 *         set_label("Done!");
 *         return 0;
 *     }
 *
 * Cancellation is asyncio's: lb_task_cancel() makes the pending (or next)
 * lb_await() return -ECANCELED; the task decides how to unwind, may clean
 * up and even await again. */

#include <loopbridge/common.h>
#include <loopbridge/future.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A task's body. Returns 0 (the result is then what lb_task_return()
 * set, or NULL), -ECANCELED to end as cancelled, or another negative
 * errno to fail. A task cancelled while it ran that returns 0 before it
 * awaited again ends cancelled, its result dropped (as in asyncio). */
typedef int (*lb_task_fn)(lb_task *task, void *data);

enum {
    /* The task runs on a stack the loop shares between all such tasks;
     * while it is suspended, its frames (a few hundred bytes when it
     * awaits) wait in a save area of its own, and are copied back when
     * it runs again. Use it for many tasks that mostly wait: a sleeping
     * task then costs about a kilobyte instead of a stack's pages, at the
     * price of two copies of its frames when it resumes after another such
     * task ran. Two rules come with it: nothing may point into the task's
     * locals while it is suspended (hand other code heap memory, not the
     * address of a local), and if the task runs a nested main loop, other
     * shared-stack tasks wait until that loop returns. The stack is 256
     * KiB. Where frames cannot move (the ucontext fiber switch), the task
     * gets a stack of its own instead. */
    LB_TASK_SHARED_STACK = 1u << 0,
};

/* A task's stack and overflows. The stack is address space; the pages
 * the task touches are committed as it touches them. Below it lies a
 * guard as large as the stack and at least 256 KiB, where any access
 * faults: a task that overflows is reported on stderr as "task NAME
 * overflowed its N KiB stack" and the process dies (of SIGSEGV there, of
 * SIGABRT when found at a switch, below).
 *
 * Largest safe frame: a function whose frame (its locals, arrays
 * included) is at most the guard's size, 256 KiB on the default stack,
 * cannot reach past the guard, however deep the stack is. A larger frame
 * can jump over the guard into another task's stack when its first write
 * lands there: build code that may have such frames with
 * -fstack-clash-protection (GCC, Clang), which touches a large frame a
 * page at a time from the top, so any frame hits the guard first. Two
 * checks stand behind the guard: at every switch away from a task its
 * stack pointer must be within its stack (a task that suspends inside a
 * frame larger than its stack is reported before any other task runs),
 * and where no guard could be installed (an old kernel whose map count
 * ran out) a canary word just below the stack, checked at every switch,
 * reports what overwrote it. */
typedef struct lb_task_options {
    const char *name;  /* copied; NULL: "task-N"; overflow reports show it */
    size_t stack_size; /* bytes of address space; 0: 256 KiB; 16 KiB .. 64 MiB
                        * (0 with LB_TASK_SHARED_STACK: the shared stack is
                        * 256 KiB) */
    unsigned flags;    /* LB_TASK_* */
} lb_task_options;

/* Starts fn(task, data) as a task on loop; it first runs in the loop's
 * next iteration. opts may be NULL. ret NULL: the task runs detached
 * (the loop keeps it until it ends); otherwise *ret gets a reference.
 * Returns 0; -EINVAL (bad options: stack size out of range, unknown
 * flags, a stack size with LB_TASK_SHARED_STACK); -EBADF (closed or
 * closing loop);
 * -ENOMEM (no memory or no address space for the stack); -EPERM (wrong
 * thread). Loop thread only. */
LB_EXPORT int lb_task_spawn(lb_loop *loop, lb_task_fn fn, void *data, const lb_task_options *opts,
                            lb_task **ret);

/* Takes a reference; returns task (NULL, logged, on a thread that does
 * not run the task's open loop). Loop thread. */
LB_EXPORT lb_task *lb_task_ref(lb_task *task);

/* Drops a reference; returns NULL. A task runs to its end whether or not
 * anyone holds it. NULL is a no-op. Loop thread (elsewhere refused and
 * logged while the loop is open). */
LB_EXPORT lb_task *lb_task_unref(lb_task *task);

/* Suspends the calling task until future is done, then returns as
 * lb_future_result() (0 and the value in *value, the error, or
 * -ECANCELED). If the task is cancelled while waiting, or was cancelled
 * before it awaits, future is cancelled and lb_await returns -ECANCELED
 * once future is done: as asyncio's await, it never returns while an
 * awaited task (or a gather of tasks) still unwinds. A future that
 * refuses the cancellation (lb_future_cancel() returns 0) is not waited
 * for when the cancellation came before the await. value may be NULL.
 * Outside a task returns -EPERM at once; -EXDEV for a future of another
 * loop; -EDEADLK for the task's own future (it would never complete). */
LB_EXPORT int lb_await(lb_future *future, void **value);

/* Suspends the calling task for seconds (0: one loop iteration).
 * Returns 0, -ECANCELED, -EPERM outside a task, -EINVAL (NaN). */
LB_EXPORT int lb_sleep(double seconds);

/* Lets every other ready callback and task run once, then resumes.
 * Returns 0, -ECANCELED, -EPERM outside a task. */
LB_EXPORT int lb_yield(void);

/* The task running on the calling thread, or NULL outside tasks. */
LB_EXPORT lb_task *lb_task_current(void);

/* Sets the calling task's result (destroy frees it with the task's
 * future). Returns 0, -EPERM outside a task. */
LB_EXPORT int lb_task_return(void *value, lb_destroy_fn destroy);

/* Requests cancellation: the task's pending or next lb_await() returns
 * -ECANCELED. A task cancelled before it first ran never runs; one
 * cancelled while it runs that returns 0 without awaiting again ends
 * cancelled.
 * Returns 1 if requested, 0 if the task is done already; -EINVAL; -EPERM
 * on a thread that does not run the task's open loop. Loop thread. */
LB_EXPORT int lb_task_cancel(lb_task *task);

/* True while cancellation requests are counted against the task
 * (asyncio's cancelling() > 0): each lb_task_cancel() that returned 1
 * counts one, delivering it counts none off, lb_task_uncancel() counts one
 * off. It stays true on a task that ended cancelled. */
LB_EXPORT bool lb_task_cancelling(const lb_task *task);

/* Clears a delivered cancellation request so the task can go on as if it
 * had not been cancelled (asyncio's uncancel). When no request remains, a
 * request not yet delivered is dropped too. Returns the number of
 * requests that remain, or -EINVAL. */
LB_EXPORT int lb_task_uncancel(lb_task *task);

/* The task's outcome as a future (borrowed: take a reference to keep it
 * beyond the task). Another task can lb_await() it, a callback can add a
 * done callback. Cancelling this future cancels the task. */
LB_EXPORT lb_future *lb_task_future(const lb_task *task);

/* The task's name (never NULL for a valid task). */
LB_EXPORT const char *lb_task_name(const lb_task *task);

/* True once the task ended. */
LB_EXPORT bool lb_task_is_done(const lb_task *task);

/* The number of tasks of loop that have not ended. */
LB_EXPORT size_t lb_loop_task_count(const lb_loop *loop);

/* Stores up to cap live tasks of loop (borrowed pointers) in tasks and
 * returns how many there are in all (which may exceed cap); -EINVAL. */
LB_EXPORT int lb_loop_all_tasks(const lb_loop *loop, lb_task **tasks, size_t cap);

/* ------------------------------------------------------------------ */
/* lb_run                                                              */
/* ------------------------------------------------------------------ */

/* asyncio.run for C, and the way synchronous code calls async code:
 * makes a loop (driver from LB_DRIVER, else native), runs main_fn(task,
 * data) as a task until it ends, then cancels every task still alive and
 * lets them unwind, shuts the default executor down and closes the loop.
 * Returns what main_fn returned (0, or its negative errno; -ECANCELED if
 * it was cancelled), or the error of making the loop. When it returned 0,
 * *result (if result is not NULL) receives the value main_fn passed to
 * lb_task_return(), and the caller owns it (its destroy function is not
 * called). Any thread that runs no loop (-EBUSY otherwise). */
LB_EXPORT int lb_run(lb_task_fn main_fn, void *data, void **result);

/* ------------------------------------------------------------------ */
/* Combinators                                                         */
/* ------------------------------------------------------------------ */

/* One outcome in a gather result. */
typedef struct lb_gather_item {
    int status;  /* 0, an error, or -ECANCELED */
    void *value; /* the result when status is 0 (owned by its future) */
} lb_gather_item;

/* A gather's value: n outcomes in the order of the futures given. items
 * points into the same allocation, which the gather future owns (a pointer
 * rather than a flexible array member, which C++ lacks). */
typedef struct lb_gather_result {
    size_t n;
    lb_gather_item *items; /* n outcomes */
} lb_gather_result;

enum {
    /* Collect every outcome instead of failing with the first error
     * (asyncio's return_exceptions=True). */
    LB_GATHER_RETURN_ERRORS = 1u << 0,
};

/* A future that completes when all n futures are done, with an
 * lb_gather_result (in the order given). Without LB_GATHER_RETURN_ERRORS
 * it fails with the first error as soon as one future fails (the others
 * go on). Cancelling it cancels every future still pending, and it ends
 * cancelled once they all ended (never before its tasks unwound); the
 * cancel returns 0 and changes nothing if every future was done already,
 * even if the gather has not seen it yet. The gather holds references to
 * the futures until it completes. n 0 (futures may then be NULL): a
 * future done at once with an empty result, on the loop of the calling
 * task or the loop running on this thread. Returns 0, -EINVAL (also for
 * n 0 where no loop runs), -EXDEV (futures of different loops), -ENOMEM. */
LB_EXPORT int lb_gather(lb_future *const *futures, size_t n, unsigned flags, lb_future **ret);

/* Awaits future for at most timeout seconds (timeout < 0: no limit).
 * On timeout cancels future, waits until it is done, and returns
 * -ETIMEDOUT (or future's outcome if it ended otherwise than cancelled).
 * timeout 0: a future done already gives its outcome; otherwise it is
 * cancelled at once, without one more iteration, and awaited as above.
 * A cancellation of the calling task requested before or during the wait
 * wins: -ECANCELED (one the task caught earlier does not count). Otherwise
 * as lb_await(). Inside a task only (-EPERM). */
LB_EXPORT int lb_wait_for(lb_future *future, double timeout, void **value);

/* A future that mirrors future's outcome, but whose cancellation does not
 * cancel future (asyncio.shield). Returns 0, -EINVAL, -ENOMEM. */
LB_EXPORT int lb_shield(lb_future *future, lb_future **ret);

/* asyncio's TaskGroup: tasks spawned into a group are awaited together
 * by lb_group_wait(); the first child that fails cancels its siblings and
 * the group's body, the task that made the group (if it was made in a
 * task), so that the body's awaits and nested groups are interrupted at
 * once. lb_group_wait() takes that cancellation of the body back. */
typedef struct lb_group lb_group;

/* Creates an empty group on loop; *ret gets its one reference.
 * Returns 0, -EINVAL, -EBADF (closed loop), -ENOMEM, -EPERM (wrong
 * thread). Loop thread. */
LB_EXPORT int lb_group_new(lb_loop *loop, lb_group **ret);

enum {
    /* A child that fails cancels nothing: its siblings and the body go
     * on, every child's outcome is kept for lb_group_results(), and
     * lb_group_wait() returns the first error once every child ended. */
    LB_GROUP_COLLECT_ERRORS = 1u << 0,
};

/* lb_group_new() with flags (LB_GROUP_*; 0 is lb_group_new()). Returns
 * lb_group_new()'s errors, and -EINVAL for unknown flags. Loop thread. */
LB_EXPORT int lb_group_new_full(lb_loop *loop, unsigned flags, lb_group **ret);

/* Takes a reference; returns group (NULL for NULL, and, logged, on a
 * thread that does not run the group's open loop). Loop thread. */
LB_EXPORT lb_group *lb_group_ref(lb_group *group);

/* Drops the group; returns NULL. Children still running go on running
 * (cancel them first, or lb_group_wait(), to end them with the group).
 * NULL is a no-op. Loop thread (elsewhere refused and logged while the
 * loop is open). */
LB_EXPORT lb_group *lb_group_unref(lb_group *group);

/* Spawns a child task into group (as lb_task_spawn). After a child
 * failed (without LB_GROUP_COLLECT_ERRORS) or the group was cancelled
 * (lb_group_cancel()), new children are refused with -ECANCELED. Returns 0, -EINVAL,
 * -EPERM (wrong thread: checked before the group is looked at), -EBADF
 * (closed loop), -ECANCELED, or lb_task_spawn()'s errors. Loop thread. */
LB_EXPORT int lb_group_spawn(lb_group *group, lb_task_fn fn, void *data,
                             const lb_task_options *opts, lb_task **ret);

/* Waits (inside a task) until every child ended. Returns 0 if all
 * succeeded, else the first child's error (its siblings and the body were
 * cancelled). If the group cancelled the body, the body is uncancelled
 * here (lb_task_uncancel()), so that cancellation does not leak out as
 * one from outside. If the waiting task is cancelled from outside, the
 * children are cancelled too, and -ECANCELED is returned once they
 * ended. After lb_group_cancel(), -ECANCELED unless a child failed
 * otherwise first. */
LB_EXPORT int lb_group_wait(lb_group *group);

/* Cancels every child not ended yet (each one's pending or next await
 * returns -ECANCELED) and refuses new children; the body is not
 * cancelled. The children unwind in the loop's next iterations: wait for
 * them with lb_group_wait() in a task, or lb_group_cancel_then() from a
 * callback. Returns how many children were asked to cancel (0 when none
 * was running or the group was cancelling already), -EINVAL, -EBADF
 * (closed loop), -EPERM (wrong thread). Loop thread. */
LB_EXPORT int lb_group_cancel(lb_group *group);

/* Cancels the group (lb_group_cancel()) and calls done(loop, data) from
 * the loop once every child has ended, so that what the children's
 * cleanup touches (a window's widgets) is released after them. It never
 * runs the loop itself, so it works from any callback, a task, or a
 * toolkit handler (GTK's close-request, Tk's WM_DELETE_WINDOW); with no
 * child running, done runs in the loop's next iteration, never inside
 * this call. If the loop is closed first, its close unwinds the
 * children and done runs from the close; only if a child refuses to end
 * and the close reclaims it is done dropped. destroy (may be NULL) is
 * called with data after done, or when done is dropped. The group is
 * held until done ran. Returns 0, -EINVAL (group or done NULL), -EBADF (closed
 * loop), -EPERM (wrong thread), -ENOMEM; on failure nothing is called.
 * Loop thread. */
LB_EXPORT int lb_group_cancel_then(lb_group *group, lb_callback done, void *data,
                                   lb_destroy_fn destroy);

/* The synchronous form of lb_group_cancel_then(), for code outside the
 * loop (before lb_loop_close(), or a toolkit handler that the loop does
 * not run): cancels the group and runs the loop until every child ended,
 * for at most timeout seconds (< 0: no limit). Returns 0 once they
 * ended; -ETIMEDOUT (some still unwind; they go on at the loop's next
 * run); -EBUSY where the loop cannot be run: inside one of its callbacks
 * (a GTK or Tk handler called from a loopbridge callback is one: the
 * group is cancelled all the same) or tasks (nothing done); use
 * lb_group_cancel_then() there, which works everywhere;
 * -EINTR (lb_loop_stop() meanwhile); -EINVAL (NULL group, NaN timeout);
 * -EBADF; -EPERM; -ENOMEM. Loop thread. */
LB_EXPORT int lb_group_cancel_and_drain(lb_group *group, double timeout);

/* Stores the outcomes of up to cap children of group, in the order they
 * were spawned, in items: status 0 with the child's result in value
 * (owned by the child's future, valid while the group lives), its error,
 * -ECANCELED, or -EINPROGRESS for a child not ended yet. Returns the
 * number of children in all (which may exceed cap), -EINVAL (group NULL,
 * items NULL with cap > 0), -EPERM (wrong thread). Readable after the
 * loop closed. Loop thread. */
LB_EXPORT int lb_group_results(const lb_group *group, lb_gather_item *items, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
