/* SPDX-License-Identifier: MIT */
/* Allocation failure. Each scenario makes a loop and a series of public
 * calls; the sweep runs it again and again, making allocation number N
 * fail, for N = 0, 1, 2, ... until a run completes without reaching the
 * failure: twice for each N, once with every later allocation failing
 * too, once with N failing alone. Every call must then succeed or return
 * -ENOMEM with a message in lb_error_detail(); once allocations succeed
 * again, everything the loop accepted must happen exactly once, the loop
 * must run and close, and nothing may leak (the ASan and valgrind jobs
 * run this file). The native driver only: GLib's and Tcl's allocations
 * are not the library's. */
#include <loopbridge/loopbridge.h>

#include "alloc.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* No scenario reaches this many allocations; a sweep that does is broken. */
#define SWEEP_LIMIT 5000
/* Generous: correctness never depends on it, it only turns a hang into a
 * failure. */
#define SETTLE_SECONDS 20.0

/* ------------------------------------------------------------------ */
/* Recording problems                                                  */
/* ------------------------------------------------------------------ */

/* cmocka's asserts may not run on a task's stack or another thread, so
 * problems are recorded here and asserted on the test's own stack. */
static atomic_int problems;
static char first_problem[256];
static pthread_mutex_t problem_lock = PTHREAD_MUTEX_INITIALIZER;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...) {
    pthread_mutex_lock(&problem_lock);
    if (atomic_fetch_add(&problems, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_problem, sizeof first_problem, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&problem_lock);
}

/* Leaves a known message in lb_error_detail(), so that a failing call
 * is seen to write its own. */
static void reset_detail(void) {
    (void)lb_future_result(NULL, NULL);
}

/* What a public call made while allocations may fail returned: 0, or
 * -ENOMEM with a message that says so. Returns r. */
static int checked(int r, atomic_long *failures, const char *call) {
    if (r == -ENOMEM) {
        if (!strstr(lb_error_detail(), "out of memory"))
            problem("%s returned -ENOMEM with the message '%s'", call, lb_error_detail());
        atomic_fetch_add(failures, 1);
    } else if (r != 0) {
        problem("%s returned %d (%s: %s)", call, r, lb_strerror(r), lb_error_detail());
    }
    reset_detail();
    return r;
}

#define CHECKED(p, call) checked((call), &(p)->failures, #call)

/* ------------------------------------------------------------------ */
/* The sweep                                                           */
/* ------------------------------------------------------------------ */

typedef struct probe probe;

typedef struct scenario {
    const char *name;
    /* The public calls, made while allocations fail from N on. */
    void (*body)(probe *p);
    /* True once everything the loop accepted has happened. */
    bool (*settled)(probe *p);
    /* Releases what the body kept, once settled (may be NULL). */
    void (*cleanup)(probe *p);
} scenario;

enum { MAX_ITEMS = 320 };

struct probe {
    lb_loop *loop;
    atomic_long failures; /* calls that returned -ENOMEM */
    atomic_long accepted; /* callbacks the loop took */
    atomic_long ran;      /* callbacks that ran */
    long cancelled;       /* accepted, then cancelled */
    long expected_destroys;
    atomic_long destroys;
    long tasks_spawned;
    long tasks_ended;
    int fds[2];
    lb_future *futures[MAX_ITEMS];
    lb_handle *handles[MAX_ITEMS];
    size_t n_futures, n_handles;
    bool posted[MAX_ITEMS]; /* a threadsafe result was accepted */
    lb_future *outer;
    lb_executor *executor;
};

/* Runs iterations until pred(p) or the time is up; the loop's own entry
 * points, so that this makes no allocation of its own. */
static bool run_while_not(probe *p, bool (*pred)(probe *p), double seconds) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!pred(p)) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
            return false;
        int64_t wait = lb_driver_prepare(p->loop);
        if (wait < 0 || wait > 10 * 1000 * 1000)
            wait = 10 * 1000 * 1000;
        int r = lb_driver_dispatch(p->loop, wait, INT64_MAX);
        if (r < 0) {
            problem("lb_driver_dispatch returned %d", r);
            return false;
        }
    }
    return true;
}

/* Iterations the loop runs after the body with allocations still
 * failing. */
#define ARMED_ITERATIONS 8

static void run_iterations(probe *p, int n) {
    for (int i = 0; i < n; i++) {
        int64_t wait = lb_driver_prepare(p->loop);
        if (wait < 0 || wait > 1000 * 1000)
            wait = 1000 * 1000;
        if (lb_driver_dispatch(p->loop, wait, INT64_MAX) < 0)
            problem("lb_driver_dispatch failed");
    }
}

static bool all_ran(probe *p) {
    return atomic_load(&p->ran) == atomic_load(&p->accepted) - p->cancelled;
}

/* Tasks and futures that fail with -ENOMEM on purpose are reported when
 * nobody reads their error: expected here, so not printed. */
static void quiet_handler(lb_loop *loop, const lb_exception_context *context, void *data) {
    (void)loop;
    (void)data;
    if (context->error != -ENOMEM && context->error != -EIO)
        problem("unexpected report: %s", context->message);
}

/* One run of scenario s with allocation n made to fail: with arm
 * lb__test_alloc_fail_after, n and every later one while the body runs;
 * with lb__test_alloc_fail_once, n alone. Returns how many allocations
 * succeeded meanwhile; *failures gets how many calls returned -ENOMEM. */
static long run_failing(const scenario *s, long n, void (*arm)(long), const char *how,
                        long *failures) {
    probe p = {.fds = {-1, -1}};
    long before = lb__test_alloc_count();
    reset_detail();
    arm(n);
    if (CHECKED(&p, lb_loop_new(&p.loop, lb_driver_native())) == 0) {
        lb_loop_set_exception_handler(p.loop, quiet_handler, NULL);
        s->body(&p);
        /* The loop must keep running while allocations fail, and lose
         * nothing it had accepted. */
        run_iterations(&p, ARMED_ITERATIONS);
    }
    arm(-1);
    long made = lb__test_alloc_count() - before;

    if (p.loop) {
        if (!run_while_not(&p, s->settled, SETTLE_SECONDS))
            problem("not settled (accepted %ld, ran %ld, cancelled %ld)",
                    atomic_load(&p.accepted), atomic_load(&p.ran), p.cancelled);
        if (atomic_load(&p.ran) > atomic_load(&p.accepted) - p.cancelled)
            problem("a callback ran twice or after being cancelled");
        if (s->cleanup)
            s->cleanup(&p);
        /* What the loop still holds (and close releases) has run its drop
         * path by now. */
        int r = lb_loop_close(p.loop);
        if (r != 0)
            problem("lb_loop_close returned %d (%s)", r, lb_error_detail());
        p.loop = lb_loop_unref(p.loop);
        if (atomic_load(&p.destroys) != p.expected_destroys)
            problem("%ld values destroyed, %ld expected", atomic_load(&p.destroys),
                    p.expected_destroys);
    }
    if (atomic_load(&problems) != 0)
        fail_msg("%s, failing allocation %ld %s: %s", s->name, n, how, first_problem);
    *failures = atomic_load(&p.failures);
    return made;
}

static void sweep(const scenario *s) {
    long n, failures;
    atomic_store(&problems, 0);
    for (n = 0;; n++) {
        assert_true(n < SWEEP_LIMIT);
        long made = run_failing(s, n, lb__test_alloc_fail_after, "and every later one", &failures);
        if (made < n) {
            /* Nothing failed in this run: every call must have worked. */
            assert_int_equal(failures, 0);
            break;
        }
        /* The same point failing alone: the work around it goes on. */
        run_failing(s, n, lb__test_alloc_fail_once, "alone", &failures);
    }
    /* The run at n completed without a failure, so the scenario makes
     * about n - 1 allocations (threads make the count vary a little);
     * one that allocates nothing would test nothing. */
    assert_true(n >= 2);
    printf("# %s: %ld allocation points, each made to fail alone and from there on\n", s->name,
           n - 1);
}

static void count_cb(lb_loop *loop, void *data) {
    probe *p = data;
    (void)loop;
    atomic_fetch_add(&p->ran, 1);
}

/* ------------------------------------------------------------------ */
/* Scenarios                                                           */
/* ------------------------------------------------------------------ */

static void body_loop_new(probe *p) {
    (void)p; /* the sweep made the loop; nothing else */
}

static bool settled_always(probe *p) {
    (void)p;
    return true;
}

/* 300 callbacks, enough to outgrow the handle slab's first chunk (and
 * for timers, to grow the heap several times); some kept and cancelled. */
static void schedule_many(probe *p, bool timers) {
    for (int i = 0; i < 300; i++) {
        lb_handle **keep = i % 10 == 0 ? &p->handles[p->n_handles] : NULL;
        int r = timers ? CHECKED(p, lb_loop_call_later(p->loop, (double)(i % 7) * 0.0003,
                                                       count_cb, p, keep))
                       : CHECKED(p, lb_loop_call_soon(p->loop, count_cb, p, keep));
        if (r < 0)
            return;
        atomic_fetch_add(&p->accepted, 1);
        if (keep) {
            p->n_handles++;
            if (i % 20 == 0 && lb_handle_cancel(*keep) == 1)
                p->cancelled++;
        }
    }
}

static void body_call_soon(probe *p) {
    schedule_many(p, false);
}

static void body_call_later(probe *p) {
    schedule_many(p, true);
}

static void release_handles(probe *p) {
    for (size_t i = 0; i < p->n_handles; i++)
        lb_handle_unref(p->handles[i]);
}

static void destroy_counted(void *value) {
    probe *p = value;
    atomic_fetch_add(&p->destroys, 1);
}

/* From another thread: posts (enough to grow the inbox twice) and
 * threadsafe results. */
static void *poster_main(void *data) {
    probe *p = data;
    reset_detail();
    for (int i = 0; i < 1100; i++) {
        if (CHECKED(p, lb_loop_call_soon_threadsafe(p->loop, count_cb, p)) < 0)
            break;
        atomic_fetch_add(&p->accepted, 1);
    }
    for (size_t i = 0; i < p->n_futures; i++)
        p->posted[i] =
            CHECKED(p, lb_future_set_result_threadsafe(p->futures[i], p, destroy_counted)) == 0;
    return NULL;
}

static void body_threadsafe(probe *p) {
    for (int i = 0; i < 4; i++) {
        if (CHECKED(p, lb_future_new(p->loop, &p->futures[p->n_futures])) < 0)
            break;
        p->n_futures++;
    }
    /* Every value handed over is destroyed exactly once: with its
     * future, or at once when the call failed. */
    p->expected_destroys = (long)p->n_futures;
    pthread_t th;
    if (pthread_create(&th, NULL, poster_main, p) != 0) {
        problem("pthread_create failed");
        return;
    }
    pthread_join(th, NULL);
}

static bool futures_done(probe *p) {
    for (size_t i = 0; i < p->n_futures; i++)
        if (!lb_future_is_done(p->futures[i]))
            return false;
    return true;
}

/* A result whose post failed never arrives; those futures stay pending
 * (and close cancels them). */
static bool threadsafe_settled(probe *p) {
    if (!all_ran(p))
        return false;
    for (size_t i = 0; i < p->n_futures; i++)
        if (p->posted[i] && !lb_future_is_done(p->futures[i]))
            return false;
    return true;
}

static void release_futures(probe *p) {
    for (size_t i = 0; i < p->n_futures; i++)
        lb_future_unref(p->futures[i]);
    p->n_futures = 0;
    lb_future_unref(p->outer);
    p->outer = NULL;
}

static void on_future_done(lb_future *f, void *data) {
    probe *p = data;
    (void)f;
    atomic_fetch_add(&p->ran, 1);
}

/* Futures with done callbacks, completed every way: result, error,
 * cancellation. Enough to outgrow the future slab's first chunk. */
static void body_future(probe *p) {
    for (size_t i = 0; i < 140; i++) {
        lb_future *f = NULL;
        if (CHECKED(p, lb_future_new(p->loop, &f)) < 0)
            return;
        p->futures[p->n_futures++] = f;
        for (int k = 0; k < 2; k++) {
            if (CHECKED(p, lb_future_add_done_callback(f, on_future_done, p)) < 0)
                return;
            atomic_fetch_add(&p->accepted, 1);
        }
        int r;
        switch (i % 3) {
        case 0:
            r = lb_future_set_result(f, p, destroy_counted);
            p->expected_destroys++;
            break;
        case 1:
            r = lb_future_set_error(f, -EIO);
            break;
        default:
            r = lb_future_cancel(f) == 1 ? 0 : -EINVAL;
            break;
        }
        if (r != 0)
            problem("completing future %zu returned %d", i, r);
    }
}

static void read_errors_and_release(probe *p) {
    for (size_t i = 0; i < p->n_futures; i++)
        (void)lb_future_result(p->futures[i], NULL); /* errors are retrieved */
    release_futures(p);
}

/* ---- tasks ---- */

static void resolve_soon(lb_loop *loop, void *data) {
    (void)loop;
    lb_future_set_result(data, NULL, NULL);
    lb_future_unref(data);
}

/* Queues resolve_soon with a reference of its own: the task may give up
 * on the future (an allocation failed) and drop it before the callback
 * runs. */
static int resolve_future_soon(probe *p, lb_future *f) {
    lb_future_ref(f);
    int r = CHECKED(p, lb_loop_call_soon(p->loop, resolve_soon, f, NULL));
    if (r < 0)
        lb_future_unref(f);
    return r;
}

static int task_body(lb_task *task, void *data) {
    probe *p = data;
    (void)task;
    int r = CHECKED(p, lb_yield());
    if (r == 0)
        r = CHECKED(p, lb_sleep(0.0005));
    lb_future *f = NULL;
    if (r == 0)
        r = CHECKED(p, lb_future_new(p->loop, &f));
    if (r == 0)
        r = resolve_future_soon(p, f);
    if (r == 0)
        r = CHECKED(p, lb_await(f, NULL));
    lb_future_unref(f);
    p->tasks_ended++;
    return r;
}

static bool tasks_ended(probe *p) {
    return p->tasks_ended == p->tasks_spawned;
}

static bool tasks_and_callbacks_done(probe *p) {
    return tasks_ended(p) && all_ran(p);
}

/* Sleeps until cancelled; the sleep is short enough that a cancellation
 * delivered late (at the timer) still ends the test quickly. */
static int sleeper_body(lb_task *task, void *data) {
    probe *p = data;
    (void)task;
    int r = lb_sleep(0.2);
    if (r != 0 && r != -ECANCELED && r != -ENOMEM)
        problem("lb_sleep in a cancelled task returned %d", r);
    p->tasks_ended++;
    return 0;
}

/* Tasks spawned in numbers (the stack pool grows), each yielding,
 * sleeping and awaiting; the loop runs while allocations fail. */
static void body_task(probe *p) {
    for (int i = 0; i < 70; i++) {
        lb_task *t = NULL;
        if (CHECKED(p, lb_task_spawn(p->loop, task_body, p, NULL, i % 2 ? &t : NULL)) < 0)
            break;
        p->tasks_spawned++;
        lb_task_unref(t);
    }
    /* Sleeping tasks cancelled while allocations fail. */
    lb_task *sleepers[8];
    size_t n_sleepers = 0;
    for (int i = 0; i < 8; i++) {
        if (CHECKED(p, lb_task_spawn(p->loop, sleeper_body, p, NULL, &sleepers[n_sleepers])) < 0)
            break;
        p->tasks_spawned++;
        n_sleepers++;
    }
    run_iterations(p, 3);
    /* Use up the handles the loop has spare, so that cancelling needs an
     * allocation of its own (when allocations fail, the calls below stop
     * at the first -ENOMEM). */
    for (int i = 0; i < 600; i++) {
        if (lb_loop_call_soon(p->loop, count_cb, p, NULL) < 0)
            break;
        atomic_fetch_add(&p->accepted, 1);
    }
    reset_detail();
    for (size_t i = 0; i < n_sleepers; i++) {
        lb_task_cancel(sleepers[i]);
        lb_task_unref(sleepers[i]);
    }
    if (!run_while_not(p, tasks_ended, SETTLE_SECONDS))
        problem("task scenario: tasks did not end");
}

/* ---- executor ---- */

static int work(void *data, void **ret) {
    *ret = data;
    return 0;
}

/* Jobs on the loop's default executor and on one of the test's own.
 * The latter is released once allocations work again: a worker retries
 * delivering its result until memory is available, and releasing the
 * last reference waits for the workers. */
static void body_executor(probe *p) {
    if (CHECKED(p, lb_executor_new(&p->executor, 2)) < 0)
        return;
    for (int i = 0; i < 20; i++) {
        lb_future *f = NULL;
        lb_executor *e = i % 2 ? p->executor : NULL;
        if (CHECKED(p, lb_loop_run_in_executor(p->loop, e, work, p, &f)) < 0)
            break;
        p->futures[p->n_futures++] = f;
    }
}

static void check_executor_results(probe *p) {
    for (size_t i = 0; i < p->n_futures; i++) {
        void *v = NULL;
        int r = lb_future_result(p->futures[i], &v);
        if (r != 0 || v != p)
            problem("executor job %zu: status %d", i, r);
    }
    release_futures(p);
    p->executor = lb_executor_unref(p->executor);
}

/* ---- fd watches ---- */

static void on_readable(lb_loop *loop, void *data) {
    probe *p = data;
    char b;
    if (read(p->fds[0], &b, 1) == 1)
        atomic_fetch_add(&p->ran, 1);
    (void)loop;
}

static void on_writable(lb_loop *loop, void *data) {
    probe *p = data;
    lb_loop_remove_writer(loop, p->fds[1]);
    atomic_fetch_add(&p->ran, 1);
}

static void body_fd(probe *p) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        problem("pipe2 failed");
        return;
    }
    /* High numbers, so the watch table grows. */
    p->fds[0] = fcntl(fds[0], F_DUPFD_CLOEXEC, 200);
    p->fds[1] = fcntl(fds[1], F_DUPFD_CLOEXEC, 300);
    close(fds[0]);
    close(fds[1]);
    if (CHECKED(p, lb_loop_add_reader(p->loop, p->fds[0], on_readable, p)) < 0)
        return;
    if (write(p->fds[1], "x", 1) != 1)
        problem("write failed");
    atomic_fetch_add(&p->accepted, 1);
    if (CHECKED(p, lb_loop_add_writer(p->loop, p->fds[1], on_writable, p)) < 0)
        return;
    atomic_fetch_add(&p->accepted, 1);
}

static void close_fds(probe *p) {
    for (int i = 0; i < 2; i++) {
        if (p->fds[i] >= 0) {
            lb_loop_remove_reader(p->loop, p->fds[i]);
            lb_loop_remove_writer(p->loop, p->fds[i]);
            close(p->fds[i]);
        }
    }
}

/* ---- signals ---- */

static void on_signal(lb_loop *loop, void *data) {
    (void)loop;
    atomic_fetch_add(&((probe *)data)->ran, 1);
}

static void body_signal(probe *p) {
    if (CHECKED(p, lb_loop_add_signal_handler(p->loop, SIGUSR1, on_signal, p)) < 0)
        return;
    /* Only once the handler is in place: SIGUSR1's default action
     * ends the process. */
    atomic_fetch_add(&p->accepted, 1);
    kill(getpid(), SIGUSR1);
    CHECKED(p, lb_loop_add_signal_handler(p->loop, SIGUSR2, on_signal, p));
}

/* ---- combinators ---- */

static bool outer_done(probe *p) {
    return !p->outer || lb_future_is_done(p->outer);
}

/* gather over futures completed while allocations fail: the outer
 * future ends with the results or, when even that fails, -ENOMEM. */
static void body_gather(probe *p) {
    for (int i = 0; i < 6; i++) {
        if (CHECKED(p, lb_future_new(p->loop, &p->futures[p->n_futures])) < 0)
            return;
        p->n_futures++;
    }
    if (CHECKED(p, lb_gather(p->futures, p->n_futures, LB_GATHER_RETURN_ERRORS, &p->outer)) < 0)
        return;
    for (size_t i = 0; i < p->n_futures; i++) {
        if (i == 2)
            lb_future_set_error(p->futures[i], -EIO);
        else
            lb_future_set_result(p->futures[i], (void *)(uintptr_t)i, NULL);
    }
    if (!run_while_not(p, outer_done, SETTLE_SECONDS))
        problem("gather: the outer future never completed");
}

static void check_gather(probe *p) {
    if (p->outer) {
        void *v = NULL;
        int r = lb_future_result(p->outer, &v);
        if (r == 0) {
            const lb_gather_result *g = v;
            if (g->n != p->n_futures || g->items[2].status != -EIO ||
                g->items[5].value != (void *)5)
                problem("gather: wrong result");
        } else if (r != -ENOMEM) {
            problem("gather: outer future ended with %d", r);
        }
    }
    read_errors_and_release(p);
}

static void check_outcome(probe *p, int r, const char *what, int expected) {
    if (r != 0 && r != -ENOMEM && r != expected)
        problem("%s ended with %d (%s)", what, r, lb_strerror(r));
    (void)p;
}

static int wait_for_task(lb_task *task, void *data) {
    probe *p = data;
    (void)task;
    lb_future *never = NULL, *soon = NULL;
    int r = CHECKED(p, lb_future_new(p->loop, &never));
    if (r == 0) {
        r = lb_wait_for(never, 0.001, NULL);
        check_outcome(p, r, "lb_wait_for (timing out)", -ETIMEDOUT);
        r = CHECKED(p, lb_future_new(p->loop, &soon));
    }
    if (r == 0)
        r = resolve_future_soon(p, soon);
    if (r == 0) {
        r = lb_wait_for(soon, 5.0, NULL);
        check_outcome(p, r, "lb_wait_for (completing)", 0);
    }
    lb_future_unref(never);
    lb_future_unref(soon);
    p->tasks_ended++;
    return r == -ETIMEDOUT ? 0 : r;
}

static void spawn_and_run(probe *p, lb_task_fn fn) {
    if (CHECKED(p, lb_task_spawn(p->loop, fn, p, NULL, NULL)) < 0)
        return;
    p->tasks_spawned++;
    if (!run_while_not(p, tasks_ended, SETTLE_SECONDS))
        problem("the scenario's task did not end");
}

static void body_wait_for(probe *p) {
    spawn_and_run(p, wait_for_task);
}

/* shield: cancelling the outer future leaves the inner one alone. */
static int shield_task(lb_task *task, void *data) {
    probe *p = data;
    (void)task;
    lb_future *inner = NULL, *outer = NULL;
    int r = CHECKED(p, lb_future_new(p->loop, &inner));
    if (r == 0)
        r = CHECKED(p, lb_shield(inner, &outer));
    if (r == 0) {
        lb_future_cancel(outer);
        if (lb_future_is_done(inner))
            problem("shield: cancelling the outer future cancelled the inner one");
        r = resolve_future_soon(p, inner);
    }
    if (r == 0) {
        r = lb_await(inner, NULL);
        check_outcome(p, r, "lb_await (shielded)", 0);
    }
    lb_future_unref(outer);
    lb_future_unref(inner);
    p->tasks_ended++;
    return r;
}

static void body_shield(probe *p) {
    spawn_and_run(p, shield_task);
}

static int child_ok(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(0.0005);
}

static int child_fails(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(0.001);
    return r ? r : -EIO;
}

/* A task group: children spawned while allocations fail, one of them
 * failing on purpose, which cancels its siblings. */
static int group_task(lb_task *task, void *data) {
    probe *p = data;
    (void)task;
    lb_group *g = NULL;
    int r = CHECKED(p, lb_group_new(p->loop, &g));
    for (int i = 0; r == 0 && i < 12; i++) {
        lb_task *child = NULL;
        r = CHECKED(p, lb_group_spawn(g, i == 11 ? child_fails : child_ok, p, NULL,
                                      i % 2 ? &child : NULL));
        lb_task_unref(child);
    }
    if (g) {
        int w = lb_group_wait(g);
        if (w != 0 && w != -ENOMEM && w != -EIO)
            problem("lb_group_wait returned %d", w);
        lb_group_unref(g);
    }
    p->tasks_ended++;
    return r;
}

static void body_group(probe *p) {
    spawn_and_run(p, group_task);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

/* Destroy notifies: every _full call's destroy runs exactly once,
 * whether the call ran, was cancelled, was dropped at close or failed with
 * -ENOMEM (then before it returned). expected_destroys counts the calls
 * made; run_failing compares after close. */
static void *full_poster_main(void *data) {
    probe *p = data;
    reset_detail();
    for (int i = 0; i < 600; i++) {
        p->expected_destroys++;
        int r = CHECKED(p, lb_loop_call_soon_threadsafe_full(p->loop, count_cb, p,
                                                              destroy_counted));
        if (r < 0)
            break;
        atomic_fetch_add(&p->accepted, 1);
    }
    return NULL;
}

static void on_full_done(lb_future *f, void *data) {
    count_cb(lb_future_get_loop(f), data);
}

static void body_destroy(probe *p) {
    if (CHECKED(p, lb_future_new(p->loop, &p->futures[0])) < 0)
        return;
    p->n_futures = 1;
    for (int i = 0; i < 300; i++) {
        lb_handle **keep = i % 10 == 0 ? &p->handles[p->n_handles] : NULL;
        int r;
        p->expected_destroys++;
        switch (i % 4) {
        case 0:
            r = CHECKED(p, lb_loop_call_soon_full(p->loop, count_cb, p, destroy_counted, keep));
            break;
        case 1:
            r = CHECKED(p, lb_loop_call_later_full(p->loop, 0.0003, count_cb, p, destroy_counted,
                                                   keep));
            break;
        case 2: /* never due: dropped by close */
            r = CHECKED(p, lb_loop_call_at_full(p->loop, 1e9, count_cb, p, destroy_counted, keep));
            break;
        default:
            keep = NULL;
            r = CHECKED(p, lb_future_add_done_callback_full(p->futures[0], on_full_done, p,
                                                            destroy_counted));
            break;
        }
        if (r < 0)
            break;
        if (i % 4 != 2)
            atomic_fetch_add(&p->accepted, 1);
        if (keep) {
            p->n_handles++;
            if (i % 20 == 0 && lb_handle_cancel(*keep) == 1)
                p->cancelled++;
        }
    }
    /* Completing never allocates: the done callbacks all run. */
    if (lb_future_set_result(p->futures[0], NULL, NULL) != 0)
        problem("lb_future_set_result failed");
    pthread_t th;
    if (pthread_create(&th, NULL, full_poster_main, p) != 0) {
        problem("pthread_create failed");
        return;
    }
    pthread_join(th, NULL);
}

static void release_handles_and_futures(probe *p) {
    release_handles(p);
    release_futures(p);
}

static const scenario scenarios[] = {
    {"loop_new", body_loop_new, settled_always, NULL},
    {"call_soon", body_call_soon, all_ran, release_handles},
    {"call_later", body_call_later, all_ran, release_handles},
    {"threadsafe", body_threadsafe, threadsafe_settled, release_futures},
    {"future", body_future, all_ran, read_errors_and_release},
    {"task", body_task, tasks_and_callbacks_done, NULL},
    {"executor", body_executor, futures_done, check_executor_results},
    {"fd", body_fd, all_ran, close_fds},
    {"signal", body_signal, all_ran, NULL},
    {"gather", body_gather, outer_done, check_gather},
    {"wait_for", body_wait_for, tasks_ended, NULL},
    {"shield", body_shield, tasks_ended, NULL},
    {"group", body_group, tasks_ended, NULL},
    {"destroy", body_destroy, all_ran, release_handles_and_futures},
};

static const scenario *find(const char *name) {
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        if (strcmp(scenarios[i].name, name) == 0)
            return &scenarios[i];
    return NULL;
}

#define SWEEP_TEST(name)                                                                       \
    static void test_alloc_fail_##name(void **state) {                                         \
        (void)state;                                                                           \
        sweep(find(#name));                                                                    \
    }

SWEEP_TEST(loop_new)
SWEEP_TEST(call_soon)
SWEEP_TEST(call_later)
SWEEP_TEST(threadsafe)
SWEEP_TEST(future)
SWEEP_TEST(task)
SWEEP_TEST(executor)
SWEEP_TEST(fd)
SWEEP_TEST(signal)
SWEEP_TEST(gather)
SWEEP_TEST(wait_for)
SWEEP_TEST(shield)
SWEEP_TEST(group)
SWEEP_TEST(destroy)

int main(void) {
    /* Unread errors of futures that failed on purpose are reported at
     * exit of their loops; the messages are expected here. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_fail_loop_new),
        cmocka_unit_test(test_alloc_fail_call_soon),
        cmocka_unit_test(test_alloc_fail_call_later),
        cmocka_unit_test(test_alloc_fail_threadsafe),
        cmocka_unit_test(test_alloc_fail_future),
        cmocka_unit_test(test_alloc_fail_task),
        cmocka_unit_test(test_alloc_fail_executor),
        cmocka_unit_test(test_alloc_fail_fd),
        cmocka_unit_test(test_alloc_fail_signal),
        cmocka_unit_test(test_alloc_fail_gather),
        cmocka_unit_test(test_alloc_fail_wait_for),
        cmocka_unit_test(test_alloc_fail_shield),
        cmocka_unit_test(test_alloc_fail_group),
        cmocka_unit_test(test_alloc_fail_destroy),
    };
    alarm(900); /* a hang fails the suite instead of wedging CI */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
