/* SPDX-License-Identifier: MIT */
/* Tasks: C functions on their own fibers, resumed by loop callbacks. A
 * task suspends by switching back to whoever resumed it (the loop's
 * dispatch, possibly running nested on another task's stack), so resumes
 * nest as naturally as calls do. */
#include "task_internal.h"

#include "alloc.h"
#include "error.h"

#include <loopbridge/executor.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The thread's own stack, described once per thread: tasks resumed from
 * plain loop code switch back to it. */
static _Thread_local lb__fiber thread_fiber;
static _Thread_local bool thread_fiber_ready;

/* ------------------------------------------------------------------ */
/* Per-loop state                                                      */
/* ------------------------------------------------------------------ */

static size_t tasks_cancel_all(lb_loop *loop);
static void tasks_destroy(lb_loop *loop);

static bool tasks_give_back(lb_loop *loop) {
    lb__tasks *ts = loop->task_state;
    return lb__stack_pool_give_back(ts->stacks);
}

static const lb__task_hooks task_hooks = {
    .count = lb_loop_task_count,
    .cancel_all = tasks_cancel_all,
    .destroy = tasks_destroy,
    .give_back = tasks_give_back,
};

static lb__tasks *tasks_of(lb_loop *loop) {
    if (loop->task_state)
        return loop->task_state;
    lb__tasks *ts = lb__calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    if (lb__stack_pool_new(&ts->stacks) < 0) {
        lb__free(ts);
        return NULL;
    }
    loop->task_state = ts;
    loop->task_hooks = &task_hooks;
    return ts;
}

size_t lb_loop_task_count(const lb_loop *loop) {
    const lb__tasks *ts = loop ? loop->task_state : NULL;
    return ts ? ts->count : 0;
}

int lb_loop_all_tasks(const lb_loop *loop, lb_task **tasks, size_t cap) {
    lb_assert_return(loop, -EINVAL);
    lb_assert_return(tasks || cap == 0, -EINVAL);
    const lb__tasks *ts = loop->task_state;
    size_t n = 0;
    for (lb_task *t = ts ? ts->live : NULL; t; t = t->next, n++)
        if (n < cap)
            tasks[n] = t;
    return (int)n;
}

/* ------------------------------------------------------------------ */
/* Switching                                                           */
/* ------------------------------------------------------------------ */

static void task_finish(lb_task *t);
static void resume_parked(lb_task *t);

/* Runs t on its fiber until it suspends or ends. */
static void task_resume(lb_task *t) {
    lb__tasks *ts = t->loop->task_state;
    if (t->shared && !lb__shared_claim(ts, t))
        return; /* parked: resumed once the shared stack is free */
    lb_task *outer = lb__current_task;
    if (!thread_fiber_ready) {
        lb__fiber_init_thread(&thread_fiber);
        thread_fiber_ready = true;
    }
    /* The caller's context: this thread's stack, or the stack of the task
     * whose nested main loop is dispatching right now. */
    t->caller = outer ? outer->fiber : thread_fiber;
    t->state = LB__TASK_RUNNING;
    t->wait = LB__WAIT_NONE;
    if (__builtin_expect(t->loop->debug, 0))
        lb__debug_note_task(t->loop, (const void *)t->fn, t->name);
    lb__current_task = t;
    lb__fiber_switch(&t->caller, &t->fiber);
    lb__current_task = outer;
    if (t->state == LB__TASK_DONE)
        task_finish(t);
    if (ts->parked)
        lb__shared_unpark(ts, resume_parked);
}

/* A shared-stack task woken while the stack was taken gets it now; one
 * cancelled before it ever ran still never runs. */
static void resume_parked(lb_task *t) {
    if (t->state == LB__TASK_CREATED && t->must_cancel) {
        t->status = -ECANCELED;
        t->state = LB__TASK_DONE;
        task_finish(t);
    } else {
        task_resume(t);
    }
}

void lb__task_suspend(lb_task *t, lb__task_wait why) {
    t->state = LB__TASK_SUSPENDED;
    t->wait = why;
    lb__fiber_switch(&t->fiber, &t->caller);
}

static void task_entry(void *arg) {
    lb_task *t = arg;
    t->status = t->fn(t, t->data);
    /* Cancelled while it ran, it returned before awaiting again: as in
     * asyncio, the undelivered cancellation wins over its result (an
     * error it returned still wins over the cancellation). */
    if (t->status == 0 && t->must_cancel) {
        t->must_cancel = false;
        t->status = -ECANCELED;
    }
    t->state = LB__TASK_DONE;
    lb__fiber_switch_final(&t->fiber, &t->caller);
}

/* A queued step: resumes the task (first run, lb_yield, cancellation).
 * Steps and done callbacks hold no reference: a task can only end by
 * being resumed through the one step or callback it waits for, and close
 * runs nothing once it reclaimed the tasks that would not end (it drops
 * what is still queued). */
static void task_step(lb_loop *loop, void *data) {
    lb_task *t = data;
    (void)loop;
    if (t->state == LB__TASK_CREATED && t->must_cancel) {
        /* Cancelled before it first ran: it never runs. */
        t->status = -ECANCELED;
        t->state = LB__TASK_DONE;
        task_finish(t);
    } else if (t->state == LB__TASK_CREATED || (t->state == LB__TASK_SUSPENDED && t->wait == LB__WAIT_STEP)) {
        task_resume(t);
    }
}

int lb__task_schedule_step(lb_task *t) {
    lb_handle *h = lb__call_soon_internal(t->loop, task_step, t);
    return h ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                            */
/* ------------------------------------------------------------------ */

static int future_cancel_hook(lb_future *future, void *data) {
    (void)future;
    return lb_task_cancel(data);
}

static const lb__future_hooks task_future_hooks = {.cancel = future_cancel_hook,
                                                   .owner_completes = true};

int lb_task_spawn(lb_loop *loop, lb_task_fn fn, void *data, const lb_task_options *opts,
                  lb_task **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(fn, -EINVAL);
    if (lb__loop_closing(loop))
        return lb__fail(loop, -EBADF, "lb_task_spawn: loop is closing");
    size_t stack_size = opts ? opts->stack_size : 0;
    unsigned flags = opts ? opts->flags : 0;
    if (stack_size && (stack_size < 16 * 1024 || stack_size > 64 * 1024 * 1024))
        return lb__fail(loop, -EINVAL,
                        "lb_task_spawn: stack size %zu outside 16 KiB .. 64 MiB", stack_size);
    if (flags & ~(unsigned)LB_TASK_SHARED_STACK)
        return lb__fail(loop, -EINVAL, "lb_task_spawn: unknown flags 0x%x", flags);
    if ((flags & LB_TASK_SHARED_STACK) && stack_size)
        return lb__fail(loop, -EINVAL,
                        "lb_task_spawn: a shared-stack task takes no stack size");
    /* Where frames cannot move (the ucontext switch), the task gets a
     * stack of its own: the same program, more memory. */
    bool shared = (flags & LB_TASK_SHARED_STACK) && lb__fiber_frames_movable();
    lb__tasks *ts = tasks_of(loop);
    if (!ts)
        return lb__fail(loop, -ENOMEM, "lb_task_spawn: out of memory");

    lb_task *t = lb__calloc(1, sizeof *t);
    if (!t)
        return lb__fail(loop, -ENOMEM, "lb_task_spawn: out of memory");
    t->loop = loop;
    t->refs = 1; /* the loop's, until the task ends */
    t->fn = fn;
    t->data = data;
    ts->next_id++;
    if (opts && opts->name)
        snprintf(t->name, sizeof t->name, "%s", opts->name);
    else
        snprintf(t->name, sizeof t->name, "task-%llu", (unsigned long long)ts->next_id);

    int r = lb_future_new(loop, &t->future);
    if (r < 0)
        goto fail;
    t->future->hooks = &task_future_hooks;
    t->future->hooks_data = t;
    if (shared) {
        r = lb__shared_prepare(ts, t, task_entry);
    } else {
        r = lb__stack_acquire(ts->stacks, stack_size, &t->stack);
        if (r == 0) {
            t->stack->owner = t->name;
            lb__fiber_init(&t->fiber, t->stack, task_entry, t);
        }
    }
    if (r < 0) {
        lb__fail(loop, r, "lb_task_spawn: no stack for task %s: %s", t->name, lb_strerror(r));
        goto fail;
    }
    r = lb__task_schedule_step(t);
    if (r < 0)
        goto fail;
    t->state = LB__TASK_CREATED;
    t->wait = LB__WAIT_STEP;

    t->next = ts->live;
    if (ts->live)
        ts->live->prev = t;
    ts->live = t;
    ts->count++;
    lb__loop_hold(loop);
    if (ret) {
        t->refs++;
        *ret = t;
    }
    return 0;

fail:
    if (t->stack) {
        /* The fiber was made on the stack (under TSan it holds a fiber of
         * the sanitizer's own). */
        lb__fiber_destroy(&t->fiber);
        lb__stack_release(ts->stacks, t->stack);
    }
    if (t->future) {
        t->future->hooks = NULL;
        lb_future_unref(t->future);
    }
    lb__free(t);
    if (r == -ENOMEM)
        lb__fail(loop, r, "lb_task_spawn: out of memory");
    return r;
}

static void task_ref(void *task) {
    ((lb_task *)task)->refs++;
}

lb_task *lb_task_ref(lb_task *task) {
    return task && lb__loop_release_call(task->loop, __func__, task_ref, task) ? task : NULL;
}

static void task_unref(void *data) {
    lb_task *task = data;
    if (task->refs == 0) {
        lb__log(LB_LOG_ERROR, "lb_task_unref: task %p has no reference left", data);
        return;
    }
    if (--task->refs > 0)
        return;
    lb_loop *loop = task->loop;
    task->future->hooks = NULL;
    /* The future goes with the task: its error, if nobody read it, is
     * reported now, while the task can still be named. */
    if (atomic_load(&task->future->refs) == 1 &&
        atomic_load(&task->future->state) == LB__FUTURE_ERROR &&
        !atomic_exchange(&task->future->retrieved, true))
        lb__report_unretrieved(loop, task->future, task, task->name, (const void *)task->fn);
    lb_future_unref(task->future);
    lb__free(task);
    lb__loop_unhold(loop);
}

lb_task *lb_task_unref(lb_task *task) {
    if (task)
        lb__loop_release_call(task->loop, __func__, task_unref, task);
    return NULL;
}

/* The task ended (its stack is no longer in use): publish the outcome,
 * give the stack back, drop the loop's reference. */
static void task_finish(lb_task *t) {
    lb__tasks *ts = t->loop->task_state;
    if (t->stack) {
        lb__fiber_destroy(&t->fiber);
        lb__stack_release(ts->stacks, t->stack);
        t->stack = NULL;
    } else if (t->shared) {
        lb__fiber_destroy(&t->fiber);
        lb__shared_release(ts, t);
    }
    if (t->prev)
        t->prev->next = t->next;
    else
        ts->live = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    ts->count--;

    lb_future *f = t->future;
    if (t->status == 0) {
        /* Close may have cancelled the future of a task that would not
         * end: the result then has nowhere to go. */
        if (lb__future_complete(f, LB__FUTURE_RESULT, t->result, t->result_destroy, 0) < 0 &&
            t->result_destroy)
            t->result_destroy(t->result);
    } else if (t->status == -ECANCELED) {
        if (t->result_destroy)
            t->result_destroy(t->result);
        lb__future_cancel_plain(f);
    } else {
        if (t->result_destroy)
            t->result_destroy(t->result);
        if (t->status > 0) {
            lb__report(t->loop, -EINVAL, f, t,
                       "task %s returned %d; a task returns 0 or a negative errno", t->name,
                       t->status);
            t->status = -EINVAL;
        }
        lb__future_complete(f, LB__FUTURE_ERROR, NULL, NULL, t->status);
    }
    t->result = NULL;
    t->result_destroy = NULL;
    lb_task_unref(t); /* the loop's */
}

/* ------------------------------------------------------------------ */
/* Inside a task                                                       */
/* ------------------------------------------------------------------ */

lb_task *lb_task_current(void) {
    return lb__current_task;
}

static int not_in_task(const char *func) {
    return lb__fail(NULL, -EPERM, "%s: called outside a task", func);
}

int lb_task_return(void *value, lb_destroy_fn destroy) {
    lb_task *t = lb__current_task;
    if (!t)
        return not_in_task(__func__);
    if (t->result_destroy)
        t->result_destroy(t->result);
    t->result = value;
    t->result_destroy = destroy;
    return 0;
}

/* Consumes a pending cancellation: true if the caller must return
 * -ECANCELED. */
static bool take_cancel(lb_task *t) {
    if (!t->must_cancel)
        return false;
    t->must_cancel = false;
    return true;
}

/* What a task needs before it may suspend: for a shared-stack task, room
 * to save its frames (so saving them when another task needs the stack
 * cannot fail). */
static int ready_to_suspend(lb_task *t, const char *func) {
    if (t->shared && lb__shared_reserve(t) < 0)
        return lb__fail(t->loop, -ENOMEM, "%s: out of memory for the frames of task %s", func,
                        t->name);
    return 0;
}

static void wake_on_done(lb_future *f, void *data) {
    lb_task *t = data;
    (void)f;
    if (t->state == LB__TASK_SUSPENDED && t->wait == LB__WAIT_FUTURE && t->awaiting == f)
        task_resume(t);
}

int lb_await(lb_future *future, void **value) {
    lb_task *t = lb__current_task;
    if (!t)
        return not_in_task(__func__);
    lb_assert_return(future, -EINVAL);
    if (future->loop != t->loop)
        return lb__fail(t->loop, -EXDEV, "lb_await: the future belongs to another loop");
    if (future == t->future)
        return lb__fail(t->loop, -EDEADLK, "lb_await: task %s cannot await its own future",
                        t->name);
    bool cancelled = take_cancel(t);
    /* Cancelled before it awaits: as asyncio does, the task cancels what
     * it would have awaited and, if that is still unwinding (a task, a
     * gather of tasks), waits until it ended. What refuses cancellation is
     * not waited for. */
    if (cancelled &&
        (lb_future_is_done(future) || lb_future_cancel(future) <= 0 || lb_future_is_done(future)))
        return -ECANCELED;
    if (!lb_future_is_done(future)) {
        int r = ready_to_suspend(t, __func__);
        if (r == 0)
            r = lb_future_add_done_callback(future, wake_on_done, t);
        if (r < 0)
            return cancelled ? -ECANCELED : r;
        lb_future_ref(future);
        t->awaiting = future;
        lb__task_suspend(t, LB__WAIT_FUTURE);
        t->awaiting = NULL;
        cancelled |= take_cancel(t);
        if (cancelled && !lb_future_is_done(future))
            lb_future_cancel(future);
        lb_future_unref(future);
    }
    if (cancelled)
        return -ECANCELED;
    return lb_future_result(future, value);
}

static void wake_on_timer(lb_loop *loop, void *data) {
    lb_task *t = data;
    (void)loop;
    if (t->state == LB__TASK_SUSPENDED && t->wait == LB__WAIT_TIMER)
        task_resume(t);
}

int lb_yield(void) {
    lb_task *t = lb__current_task;
    if (!t)
        return not_in_task(__func__);
    if (take_cancel(t))
        return -ECANCELED;
    int r = ready_to_suspend(t, __func__);
    if (r < 0)
        return r;
    r = lb__task_schedule_step(t);
    if (r < 0)
        return lb__fail(t->loop, r, "lb_yield: out of memory");
    lb__task_suspend(t, LB__WAIT_STEP);
    return take_cancel(t) ? -ECANCELED : 0;
}

int lb_sleep(double seconds) {
    lb_task *t = lb__current_task;
    if (!t)
        return not_in_task(__func__);
    lb_assert_return(!isnan(seconds), -EINVAL);
    if (seconds <= 0)
        return lb_yield();
    if (take_cancel(t))
        return -ECANCELED;
    int r = ready_to_suspend(t, __func__);
    if (r < 0)
        return r;
    r = lb_loop_call_later(t->loop, seconds, wake_on_timer, t, &t->timer);
    if (r < 0)
        return r;
    lb__task_suspend(t, LB__WAIT_TIMER);
    t->timer = lb_handle_unref(t->timer);
    return take_cancel(t) ? -ECANCELED : 0;
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                        */
/* ------------------------------------------------------------------ */

int lb_task_cancel(lb_task *task) {
    lb_assert_return(task, -EINVAL);
    int r = lb__loop_check_thread(task->loop, __func__);
    if (r < 0)
        return r;
    if (task->state == LB__TASK_DONE)
        return 0;
    task->cancel_requests++;
    task->must_cancel = true;
    if (task->state != LB__TASK_SUSPENDED)
        return 1; /* delivered at its first run or next wait */
    switch (task->wait) {
    case LB__WAIT_FUTURE:
        /* The future's cancellation resumes the task through its done
         * callback; if the future is done already, that callback is on
         * its way. */
        lb_future_cancel(task->awaiting);
        break;
    case LB__WAIT_TIMER:
        /* The step first: if there is no memory for it, the timer stays
         * and delivers the cancellation when it fires, late but never
         * lost. */
        if (lb__task_schedule_step(task) == 0) {
            lb_handle_cancel(task->timer);
            task->wait = LB__WAIT_STEP;
        }
        break;
    default:
        break; /* a step is queued already */
    }
    return 1;
}

bool lb_task_cancelling(const lb_task *task) {
    return task && task->cancel_requests > 0;
}

int lb_task_uncancel(lb_task *task) {
    lb_assert_return(task, -EINVAL);
    if (task->cancel_requests > 0)
        task->cancel_requests--;
    if (task->cancel_requests == 0)
        task->must_cancel = false;
    return (int)task->cancel_requests;
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */
/* ------------------------------------------------------------------ */

lb_future *lb_task_future(const lb_task *task) {
    return task ? task->future : NULL;
}

const char *lb_task_name(const lb_task *task) {
    return task ? task->name : NULL;
}

bool lb_task_is_done(const lb_task *task) {
    return task && task->state == LB__TASK_DONE;
}

/* ------------------------------------------------------------------ */
/* Close                                                               */
/* ------------------------------------------------------------------ */

static size_t tasks_cancel_all(lb_loop *loop) {
    lb__tasks *ts = loop->task_state;
    for (lb_task *t = ts->live; t; t = t->next) {
        if (!t->close_cancelled) {
            t->close_cancelled = true;
            lb_task_cancel(t);
        }
    }
    return ts->count;
}

/* Tasks still alive when close gave up waiting: reported, then their
 * stacks are reclaimed without unwinding and their futures cancelled.
 * Close runs no callback after this: the steps and done callbacks still
 * queued for them are dropped, never run. */
static void tasks_destroy(lb_loop *loop) {
    lb__tasks *ts = loop->task_state;
    while (ts->live) {
        lb_task *t = ts->live;
        lb__report(loop, -ECANCELED, t->future, t,
                   "task %s did not finish after being cancelled at close; its stack was "
                   "reclaimed without unwinding",
                   t->name);
        /* What it waited for may still complete as close goes on: it must
         * not resume the task then (which may be freed by that time). */
        if (t->timer)
            t->timer = lb_handle_unref(t->timer);
        if (t->awaiting) {
            lb_future_remove_done_callback(t->awaiting, wake_on_done, t);
            t->awaiting = lb_future_unref(t->awaiting);
        }
        if (t->deadline)
            t->deadline = lb_handle_unref(t->deadline);
        t->status = -ECANCELED;
        t->state = LB__TASK_DONE;
        task_finish(t);
    }
    lb__shared_destroy(ts);
    lb__stack_pool_free(ts->stacks);
    lb__free(ts);
    loop->task_state = NULL;
    loop->task_hooks = NULL;
}

/* The task layer's use of the executor, through its public API. */
int lb_to_thread(lb_work_fn fn, void *data, void **value) {
    return lb_to_thread_full(fn, data, NULL, value);
}

int lb_to_thread_full(lb_work_fn fn, void *data, lb_destroy_fn result_destroy, void **value) {
    return lb_to_thread_owned(fn, data, NULL, result_destroy, value);
}

int lb_to_thread_owned(lb_work_fn fn, void *data, lb_destroy_fn data_destroy,
                       lb_destroy_fn result_destroy, void **value) {
    lb_task *t = lb__current_task;
    if (!t)
        return lb__destroy_if_refused(
            lb__fail(NULL, -EPERM, "lb_to_thread: called outside a task"), data_destroy, data);
    lb_future *f = NULL;
    /* Refused, it destroyed data already. */
    int r = lb_loop_run_in_executor_owned(t->loop, NULL, fn, data, data_destroy, result_destroy,
                                          &f);
    if (r < 0)
        return r;
    r = lb_await(f, NULL);
    /* The caller takes the result: the future, which nobody else holds
     * now that the job is over, must not destroy it. */
    if (r == 0 && value)
        r = lb__future_take_result(f, value);
    lb_future_unref(f);
    return r;
}
