/* SPDX-License-Identifier: MIT */
/* Thread pools: results and errors back on the loop thread, cancelling
 * queued jobs, 10,000 jobs, to_thread inside a task, shutdown. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const void *loop_thread_token;

static int square(void *data, void **ret) {
    intptr_t x = (intptr_t)data;
    *ret = (void *)(x * x);
    return 0;
}

static int failing(void *data, void **ret) {
    (void)data;
    (void)ret;
    return -EIO;
}

static void test_executor_result_and_error(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *ok = NULL, *bad = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, square, (void *)12, &ok), 0);
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, failing, NULL, &bad), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, ok), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, bad), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(ok, &v), 0);
    assert_int_equal((intptr_t)v, 144);
    assert_int_equal(lb_future_result(bad, NULL), -EIO);
    lb_future_unref(ok);
    lb_future_unref(bad);
    fixture_loop_free(loop);
}

static int returns_positive(void *data, void **ret) {
    (void)data;
    (void)ret;
    return 1; /* a hash's low bit, say: not the convention */
}

/* A job that returns a positive value fails with -EINVAL, and the
 * exception handler says which job broke the convention (an -EINVAL with
 * no word on where it came from cannot be traced in an app); the job is
 * named by its symbol when the program exports it (a static function
 * shows as an offset). */
static void test_executor_positive_return_reported(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    fixture_reports rep = {0};
    fixture_capture_reports(loop, &rep);
    lb_future *f = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, returns_positive, NULL, &f), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, f), 0);
    assert_int_equal(lb_future_result(f, NULL), -EINVAL);
    assert_int_equal(rep.count, 1);
    assert_int_equal(rep.error, -EINVAL);
    assert_non_null(strstr(rep.message, "returned 1"));
    assert_non_null(strstr(rep.message, "executor job"));
    lb_future_unref(f);
    fixture_loop_free(loop);
}

/* Jobs a callback submits reach the pool together when it returns. What
 * that must not change: a job cancelled before then never runs and its
 * future is cancelled; a shutdown in the same callback still runs the
 * jobs submitted before it; a pool shut down from another thread before
 * then fails the job through its future, never losing it. */
typedef struct held_jobs {
    lb_executor *ex;
    lb_future *first, *cancelled, *before_shutdown, *refused;
    int cancel_result;
    int after_shutdown;
} held_jobs;

static atomic_int held_job_runs;

static int counted_job(void *data, void **ret) {
    (void)data;
    (void)ret;
    atomic_fetch_add(&held_job_runs, 1);
    return 0;
}

static void submit_then_cancel(lb_loop *loop, void *data) {
    held_jobs *h = data;
    /* The first goes to the pool at once; the others are held. */
    assert_int_equal(lb_loop_run_in_executor(loop, h->ex, counted_job, NULL, &h->first), 0);
    assert_int_equal(lb_loop_run_in_executor(loop, h->ex, counted_job, NULL, &h->cancelled), 0);
    h->cancel_result = lb_future_cancel(h->cancelled);
    assert_int_equal(lb_loop_run_in_executor(loop, h->ex, counted_job, NULL, &h->before_shutdown),
                     0);
    assert_int_equal(lb_executor_shutdown(h->ex, true, false), 0);
    /* The jobs submitted before the shutdown ran before it returned. */
    h->after_shutdown = atomic_load(&held_job_runs);
    assert_int_equal(lb_loop_stop(loop), 0);
}

static void test_executor_held_jobs_cancel_and_shutdown(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    held_jobs h = {0};
    atomic_store(&held_job_runs, 0);
    assert_int_equal(lb_executor_new(&h.ex, 2), 0);
    assert_int_equal(lb_loop_call_soon(loop, submit_then_cancel, &h, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(h.cancel_result, 1);
    assert_int_equal(h.after_shutdown, 2);
    assert_int_equal(lb_loop_run_until_complete(loop, h.before_shutdown), 0);
    assert_int_equal(lb_future_result(h.before_shutdown, NULL), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, h.first), 0);
    assert_true(lb_future_is_cancelled(h.cancelled));
    assert_int_equal(atomic_load(&held_job_runs), 2);
    lb_future_unref(h.first);
    lb_future_unref(h.cancelled);
    lb_future_unref(h.before_shutdown);
    lb_executor_unref(h.ex);
    fixture_loop_free(loop);
}

static void *shut_down_pool(void *data) {
    assert_int_equal(lb_executor_shutdown(data, true, false), 0);
    return NULL;
}

static void submit_while_shut_down(lb_loop *loop, void *data) {
    held_jobs *h = data;
    /* The first goes to the pool at once; the second is held. */
    assert_int_equal(lb_loop_run_in_executor(loop, h->ex, counted_job, NULL, &h->before_shutdown),
                     0);
    assert_int_equal(lb_loop_run_in_executor(loop, h->ex, counted_job, NULL, &h->refused), 0);
    /* Another thread shuts the pool down before this callback returns. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, shut_down_pool, h->ex), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_executor_held_job_refused_by_shutdown(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    held_jobs h = {0};
    atomic_store(&held_job_runs, 0);
    assert_int_equal(lb_executor_new(&h.ex, 2), 0);
    assert_int_equal(lb_loop_call_soon(loop, submit_while_shut_down, &h, NULL), 0);
    for (int i = 0; i < 100 && !h.refused; i++)
        assert_int_equal(lb_driver_dispatch(loop, 0, INT64_MAX) >= 0, 1);
    assert_non_null(h.refused);
    assert_int_equal(lb_loop_run_until_complete(loop, h.before_shutdown), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, h.refused), 0);
    /* The first ran; the held one came after the shutdown and failed:
     * never lost, never left pending. */
    assert_int_equal(lb_future_result(h.before_shutdown, NULL), 0);
    assert_int_equal(lb_future_result(h.refused, NULL), -EBADF);
    assert_int_equal(atomic_load(&held_job_runs), 1);
    lb_future_unref(h.before_shutdown);
    lb_future_unref(h.refused);
    lb_executor_unref(h.ex);
    fixture_loop_free(loop);
}

/* A callback that submits a job and waits for it to start before it
 * returns (a synchronous wrapper, a modal loop that does not dispatch
 * this loop) must see it start: only the jobs after a callback's first
 * are held until it returns. */
static atomic_int started_job;

static int mark_started(void *data, void **ret) {
    (void)data;
    (void)ret;
    atomic_store(&started_job, 1);
    return 0;
}

static void submit_and_wait_for_start(lb_loop *loop, void *data) {
    lb_future **f = data;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, mark_started, NULL, f), 0);
    for (int i = 0; i < 5000 && !atomic_load(&started_job); i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(lb_loop_stop(loop), 0);
}

static void test_executor_first_job_of_a_callback_starts_at_once(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_future *f = NULL;
    atomic_store(&started_job, 0);
    assert_int_equal(lb_loop_call_soon(loop, submit_and_wait_for_start, &f, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(atomic_load(&started_job), 1);
    assert_int_equal(lb_loop_run_until_complete(loop, f), 0);
    lb_future_unref(f);
    fixture_loop_free(loop);
}

/* A loop dispatched inside another loop's callback, on the same thread,
 * shuts down a pool that the outer loop holds a job for: the held job
 * was submitted first and reaches the pool first. */
typedef struct two_loops {
    lb_loop *inner;
    lb_executor *ex;
    lb_future *first, *second;
} two_loops;

static void shut_down_from_inner(lb_loop *loop, void *data) {
    two_loops *t = data;
    (void)loop;
    assert_int_equal(lb_executor_shutdown(t->ex, true, false), 0);
}

static void submit_then_dispatch_inner(lb_loop *loop, void *data) {
    two_loops *t = data;
    assert_int_equal(lb_loop_run_in_executor(loop, t->ex, square, (void *)3, &t->first), 0);
    assert_int_equal(lb_loop_run_in_executor(loop, t->ex, square, (void *)4, &t->second), 0);
    assert_int_equal(lb_loop_call_soon(t->inner, shut_down_from_inner, t, NULL), 0);
    assert_true(lb_driver_dispatch(t->inner, 0, INT64_MAX) >= 0);
    assert_int_equal(lb_loop_stop(loop), 0);
}

static void test_executor_shutdown_hands_over_every_loops_jobs(void **state) {
    (void)state;
    lb_loop *outer = fixture_loop_new();
    two_loops t = {.inner = fixture_loop_new()};
    assert_int_equal(lb_executor_new(&t.ex, 2), 0);
    assert_int_equal(lb_loop_call_soon(outer, submit_then_dispatch_inner, &t, NULL), 0);
    assert_int_equal(lb_loop_run_forever(outer), 0);
    lb_future *fs[] = {t.first, t.second};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lb_loop_run_until_complete(outer, fs[i]), 0);
        void *v = NULL;
        assert_int_equal(lb_future_result(fs[i], &v), 0);
        assert_int_equal((intptr_t)v, (i + 3) * (i + 3));
        lb_future_unref(fs[i]);
    }
    lb_executor_unref(t.ex);
    fixture_loop_free(t.inner);
    fixture_loop_free(outer);
}

/* Setting the default executor it already has keeps it working. */
static void test_executor_default_set_again_still_works(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *ex = NULL;
    assert_int_equal(lb_executor_new(&ex, 1), 0);
    assert_int_equal(lb_loop_set_default_executor(loop, ex), 0);
    assert_int_equal(lb_loop_set_default_executor(loop, ex), 0);
    lb_future *f = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, square, (void *)5, &f), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, f), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(f, &v), 0);
    assert_int_equal((intptr_t)v, 25);
    lb_future_unref(f);
    lb_executor_unref(ex);
    fixture_loop_free(loop);
}

/* A job's completion, once published, may be run, free the job (and with
 * it the job's hold on the loop), and the loop be closed and freed, while
 * the worker that posted it still reads the loop's flags: close must wait
 * for that worker (a use after free under ThreadSanitizer before). */
static void test_executor_loop_freed_right_after_completions(void **state) {
    (void)state;
    lb_executor *ex = NULL;
    assert_int_equal(lb_executor_new(&ex, 4), 0);
    for (int round = 0; round < 20; round++) {
        lb_loop *loop = fixture_loop_new();
        lb_future *fs[50];
        for (int i = 0; i < 50; i++)
            assert_int_equal(lb_loop_run_in_executor(loop, ex, square, (void *)(intptr_t)i, &fs[i]),
                             0);
        for (int i = 0; i < 50; i++) {
            assert_int_equal(lb_loop_run_until_complete(loop, fs[i]), 0);
            lb_future_unref(fs[i]);
        }
        fixture_loop_free(loop);
    }
    lb_executor_unref(ex);
}

static atomic_int on_loop_thread;

static int where_am_i(void *data, void **ret) {
    (void)ret;
    /* A job never runs on the loop's thread. */
    if (lb_loop_get_running() == data)
        atomic_fetch_add(&on_loop_thread, 1);
    return 0;
}

typedef struct batch {
    lb_loop *loop;
    long done;
    long n;
} batch;

static void count_done(lb_future *f, void *data) {
    batch *b = data;
    assert_true(lb_future_is_done(f));
    assert_ptr_equal(lb_loop_get_running(), b->loop); /* completed on the loop's thread */
    if (++b->done == b->n)
        lb_loop_stop(b->loop);
}

static void test_executor_many_jobs(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    batch b = {.loop = loop, .n = 10000};
    lb_future **fs = calloc((size_t)b.n, sizeof *fs);
    for (long i = 0; i < b.n; i++) {
        assert_int_equal(lb_loop_run_in_executor(loop, NULL, where_am_i, loop, &fs[i]), 0);
        assert_int_equal(lb_future_add_done_callback(fs[i], count_done, &b), 0);
    }
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(b.done, b.n);
    assert_int_equal(atomic_load(&on_loop_thread), 0);
    for (long i = 0; i < b.n; i++) {
        assert_int_equal(lb_future_result(fs[i], NULL), 0);
        lb_future_unref(fs[i]);
    }
    free(fs);
    fixture_loop_free(loop);
}

typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    bool entered;
} gate;

static int wait_at_gate(void *data, void **ret) {
    gate *g = data;
    (void)ret;
    pthread_mutex_lock(&g->lock);
    g->entered = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* Waits until a job stands at the gate. */
static void gate_wait_entered(gate *g) {
    pthread_mutex_lock(&g->lock);
    while (!g->entered)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static atomic_int ran_cancelled_job;

static int must_not_run(void *data, void **ret) {
    (void)data;
    (void)ret;
    atomic_fetch_add(&ran_cancelled_job, 1);
    return 0;
}

static void test_executor_cancel_queued_job(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *ex = NULL;
    assert_int_equal(lb_executor_new(&ex, 1), 0);
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lb_future *busy = NULL, *queued = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, ex, wait_at_gate, &g, &busy), 0);
    gate_wait_entered(&g);
    /* The only worker is busy: this one waits in the queue. */
    assert_int_equal(lb_loop_run_in_executor(loop, ex, must_not_run, NULL, &queued), 0);
    assert_int_equal(lb_future_cancel(queued), 1);
    assert_true(lb_future_is_cancelled(queued));
    gate_open(&g);
    assert_int_equal(lb_loop_run_until_complete(loop, busy), 0);
    assert_int_equal(lb_executor_shutdown(ex, true, false), 0);
    assert_int_equal(atomic_load(&ran_cancelled_job), 0);
    /* A shut down executor takes no more work. */
    lb_future *late = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, ex, square, NULL, &late), -EBADF);
    lb_future_unref(busy);
    lb_future_unref(queued);
    lb_executor_unref(ex);
    fixture_loop_free(loop);
}

static atomic_int executor_errors_logged;

static void count_errors(lb_log_level level, const char *message, void *data) {
    (void)message;
    (void)data;
    if (level == LB_LOG_ERROR)
        atomic_fetch_add(&executor_errors_logged, 1);
}

/* A cancelled job leaves the queue at once, as if it had never been
 * submitted: it no longer holds its loop. Here the pool's only worker is
 * busy with another loop's job for as long as the test wants, and the
 * loop whose queued job was cancelled closes without waiting for a worker
 * to pop it (close would wait for it 5 s, then give up, and the job, run
 * later, would find its loop closed and leak its future). */
static void test_executor_cancelled_job_leaves_queue(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_loop *other = fixture_loop_new();
    lb_executor *ex = NULL;
    assert_int_equal(lb_executor_new(&ex, 1), 0);
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lb_future *busy = NULL, *queued = NULL;
    assert_int_equal(lb_loop_run_in_executor(other, ex, wait_at_gate, &g, &busy), 0);
    gate_wait_entered(&g);
    atomic_store(&executor_errors_logged, 0);
    lb_set_log_handler(count_errors, NULL);
    assert_int_equal(lb_loop_run_in_executor(loop, ex, must_not_run, NULL, &queued), 0);
    assert_int_equal(lb_future_cancel(queued), 1);
    lb_future_unref(queued);
    double t0 = fixture_now();
    fixture_loop_free(loop);
    double took = fixture_now() - t0;
    gate_open(&g);
    assert_int_equal(lb_loop_run_until_complete(other, busy), 0);
    assert_int_equal(lb_executor_shutdown(ex, true, false), 0);
    lb_set_log_handler(NULL, NULL);
    assert_true(took < 2.5);
    assert_int_equal(atomic_load(&executor_errors_logged), 0);
    assert_int_equal(atomic_load(&ran_cancelled_job), 0);
    lb_future_unref(busy);
    lb_executor_unref(ex);
    fixture_loop_free(other);
}

typedef struct shutdown_waiter {
    lb_executor *ex;
    gate *g;
    pthread_mutex_t *lock;
    pthread_cond_t *returned;
    int *returns;
    bool gate_was_open;
} shutdown_waiter;

static void *wait_for_shutdown(void *data) {
    shutdown_waiter *w = data;
    int r = lb_executor_shutdown(w->ex, true, false);
    pthread_mutex_lock(&w->g->lock);
    w->gate_was_open = r == 0 && w->g->open;
    pthread_mutex_unlock(&w->g->lock);
    pthread_mutex_lock(w->lock);
    ++*w->returns;
    pthread_cond_broadcast(w->returned);
    pthread_mutex_unlock(w->lock);
    return NULL;
}

/* Two threads wait for the same shutdown: neither returns before the job
 * that runs has ended, the one that does not join the threads included.
 * The gate opens once a call returned, or after a while if none does. */
static void test_executor_every_waiting_shutdown_waits(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *ex = NULL;
    assert_int_equal(lb_executor_new(&ex, 1), 0);
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lb_future *busy = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, ex, wait_at_gate, &g, &busy), 0);
    gate_wait_entered(&g);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t returned = PTHREAD_COND_INITIALIZER;
    int returns = 0;
    shutdown_waiter w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (shutdown_waiter){ex, &g, &lock, &returned, &returns, false};
        assert_int_equal(pthread_create(&th[i], NULL, wait_for_shutdown, &w[i]), 0);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&lock);
    while (returns == 0 && pthread_cond_timedwait(&returned, &lock, &until) == 0)
        ;
    pthread_mutex_unlock(&lock);
    gate_open(&g);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_true(w[i].gate_was_open);
    }
    assert_int_equal(lb_loop_run_until_complete(loop, busy), 0);
    lb_future_unref(busy);
    lb_executor_unref(ex);
    fixture_loop_free(loop);
}

/* Makes a pool of `threads` the loop's default executor, which the loop
 * (and its jobs) alone hold. */
static void use_default_pool(lb_loop *loop, size_t threads) {
    lb_executor *pool = NULL;
    assert_int_equal(lb_executor_new(&pool, threads), 0);
    assert_int_equal(lb_loop_set_default_executor(loop, pool), 0);
    lb_executor_unref(pool);
}

/* Opens the gate after 5 s if the test has not: a regression (a replace
 * that waits for the job) then fails instead of hanging. */
static void *open_gate_later(void *data) {
    gate *g = data;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&g->lock);
    while (!g->open && pthread_cond_timedwait(&g->cond, &g->lock, &until) == 0)
        ;
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

/* Replacing the default executor while one of its jobs runs returns at
 * once (the loop's thread never waits for a pool), and the futures of the
 * old pool's jobs stay usable: cancelling one takes the old pool's lock,
 * which its jobs keep alive. */
static void test_executor_replace_default_while_busy(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    use_default_pool(loop, 1);
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t watchdog;
    assert_int_equal(pthread_create(&watchdog, NULL, open_gate_later, &g), 0);
    lb_future *busy = NULL, *queued = NULL, *fresh = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, wait_at_gate, &g, &busy), 0);
    gate_wait_entered(&g);
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, must_not_run, NULL, &queued), 0);

    assert_int_equal(lb_loop_set_default_executor(loop, NULL), 0);
    pthread_mutex_lock(&g.lock);
    bool still_held = !g.open;
    pthread_mutex_unlock(&g.lock);
    assert_true(still_held);
    assert_int_equal(lb_future_cancel(queued), 1);

    gate_open(&g);
    pthread_join(watchdog, NULL);
    assert_int_equal(lb_loop_run_until_complete(loop, busy), 0);
    assert_int_equal(lb_future_result(busy, NULL), 0);
    assert_true(lb_future_is_cancelled(queued));
    /* A new default pool is made on demand. */
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, square, (void *)5, &fresh), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, fresh), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(fresh, &v), 0);
    assert_int_equal((intptr_t)v, 25);
    lb_future_unref(busy);
    lb_future_unref(queued);
    lb_future_unref(fresh);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&ran_cancelled_job), 0);
}

typedef struct to_thread_case {
    int status;
    intptr_t value;
} to_thread_case;

static int to_thread_task(lb_task *task, void *data) {
    to_thread_case *c = data;
    void *v = NULL;
    (void)task;
    c->status = lb_to_thread(square, (void *)7, &v);
    c->value = (intptr_t)v;
    return 0;
}

static void test_executor_to_thread(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    to_thread_case c = {0};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, to_thread_task, &c, NULL, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.value, 49);
    assert_int_equal(lb_to_thread(square, NULL, NULL), -EPERM);
    lb_task_unref(t);
    fixture_loop_free(loop);
}

/* Jobs that wait (here at a gate) do not take every thread of the
 * default pool: it has more threads than CPUs (at least 5), started as
 * needed, so a job behind 4 waiting ones still runs. */
static void test_executor_default_pool_outgrows_waiting_jobs(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lb_future *waiting[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(lb_loop_run_in_executor(loop, NULL, wait_at_gate, &g, &waiting[i]), 0);
    to_thread_case c = {.status = 1};
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, to_thread_task, &c, NULL, &t), 0);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.value, 49);
    gate_open(&g);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lb_loop_run_until_complete(loop, waiting[i]), 0);
        lb_future_unref(waiting[i]);
    }
    fixture_loop_free(loop);
}

static atomic_int slow_jobs_started, slow_jobs_ran;

static int slow_job(void *data, void **ret) {
    (void)data;
    (void)ret;
    atomic_fetch_add(&slow_jobs_started, 1);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&slow_jobs_ran, 1);
    return 0;
}

/* Close waits for running jobs and cancels queued ones: nothing leaks,
 * no thread touches the loop afterwards, every job that started has
 * finished, and every one that had not is cancelled and never runs. */
static void test_executor_close_with_jobs(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    use_default_pool(loop, 2);
    atomic_store(&slow_jobs_started, 0);
    atomic_store(&slow_jobs_ran, 0);
    lb_future *fs[16];
    for (int i = 0; i < 16; i++)
        assert_int_equal(lb_loop_run_in_executor(loop, NULL, slow_job, NULL, &fs[i]), 0);
    fixture_loop_free(loop);
    int cancelled = 0;
    for (int i = 0; i < 16; i++) {
        assert_true(lb_future_is_done(fs[i]));
        cancelled += lb_future_is_cancelled(fs[i]);
        lb_future_unref(fs[i]);
    }
    int started = atomic_load(&slow_jobs_started);
    assert_int_equal(atomic_load(&slow_jobs_ran), started);
    assert_true(started < 16); /* two threads, 16 jobs of 50 ms: close came first */
    assert_true(cancelled >= 16 - started);
    (void)loop_thread_token;
}


/* ------------------------------------------------------------------ */
/* Cancellation seen by a running job, results freed when not taken    */
/* ------------------------------------------------------------------ */

/* A job that runs until it learns it was cancelled, or gives up after
 * 20 s (a regression then fails the test instead of hanging it). */
typedef struct spinner {
    atomic_bool started;
    atomic_bool saw_cancel;
    atomic_bool ended;
} spinner;

static int spin_until_cancelled(void *data, void **ret) {
    spinner *s = data;
    (void)ret;
    atomic_store(&s->started, true);
    double give_up = fixture_now() + 20;
    while (!lb_job_cancelled()) {
        if (fixture_now() > give_up) {
            atomic_store(&s->ended, true);
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&s->saw_cancel, true);
    atomic_store(&s->ended, true);
    return -ECANCELED;
}

static void wait_started(const atomic_bool *flag) {
    double give_up = fixture_now() + 30;
    while (!atomic_load(flag)) {
        assert_true(fixture_now() < give_up);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Cancels target once the job it awaits set *started: the job is then
 * running, not queued (a queued job would be withdrawn, not told). */
typedef struct cancel_when_started {
    lb_task *target;
    const atomic_bool *started;
} cancel_when_started;

static void cancel_once_started(lb_loop *loop, void *data) {
    cancel_when_started *k = data;
    if (atomic_load(k->started))
        assert_int_equal(lb_task_cancel(k->target), 1);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.002, cancel_once_started, k, NULL), 0);
}

typedef struct spin_task_case {
    spinner s;
    int status;
} spin_task_case;

static int spin_task(lb_task *task, void *data) {
    spin_task_case *c = data;
    (void)task;
    c->status = lb_to_thread(spin_until_cancelled, &c->s, NULL);
    return c->status;
}

static void note_ended(lb_loop *loop, void *data) {
    spinner *s = data;
    if (atomic_load(&s->ended))
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.002, note_ended, s, NULL), 0);
}

/* Cancelling the task that awaits a job in lb_to_thread() tells the job,
 * which ends long before its 20 s. */
static void test_executor_job_learns_task_cancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    static spin_task_case c;
    memset(&c, 0, sizeof c);
    lb_task *t = fixture_spawn(loop, spin_task, &c);
    cancel_when_started k = {.target = t, .started = &c.s.started};
    assert_int_equal(lb_loop_call_soon(loop, cancel_once_started, &k, NULL), 0);
    assert_int_equal(fixture_finish(loop, t, 30), -ECANCELED);
    assert_int_equal(c.status, -ECANCELED);
    double t0 = fixture_now();
    assert_int_equal(lb_loop_call_soon(loop, note_ended, &c.s, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_true(atomic_load(&c.s.saw_cancel));
    assert_true(fixture_now() - t0 < 10);
    assert_false(lb_job_cancelled()); /* outside a job */
    fixture_loop_free(loop);
}

/* Closing the loop tells its running jobs: close returns promptly. */
static void test_executor_close_tells_running_job(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    static spinner s;
    memset(&s, 0, sizeof s);
    lb_future *f = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, spin_until_cancelled, &s, &f), 0);
    wait_started(&s.started);
    double t0 = fixture_now();
    fixture_loop_free(loop);
    assert_true(fixture_now() - t0 < 10);
    assert_true(atomic_load(&s.saw_cancel));
    assert_true(atomic_load(&s.ended)); /* close waited for it */
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);
}

static atomic_bool stubborn_ended;

static int stubborn_job(void *data, void **ret) {
    atomic_bool *started = data;
    (void)ret;
    atomic_store(started, true);
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL); /* never checks lb_job_cancelled() */
    atomic_store(&stubborn_ended, true);
    return 0;
}

/* A job that ignores cancellation still runs to its end: close waits. */
static void test_executor_close_waits_for_stubborn_job(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    static atomic_bool started;
    atomic_store(&started, false);
    atomic_store(&stubborn_ended, false);
    lb_future *f = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, stubborn_job, &started, &f), 0);
    wait_started(&started);
    fixture_loop_free(loop);
    assert_true(atomic_load(&stubborn_ended));
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);
}

/* Results that need freeing: counted, so that every one is freed once. */
static atomic_int results_made, results_freed;

static void result_free(void *value) {
    assert_non_null(value);
    free(value);
    atomic_fetch_add(&results_freed, 1);
}

/* Makes its result once its gate opens, when given one, or once it was
 * cancelled, when given &until_cancelled (at most 20 s). */
static char until_cancelled;
static atomic_bool make_result_started;

static int make_result(void *data, void **ret) {
    atomic_store(&make_result_started, true);
    if (data == &until_cancelled) {
        double give_up = fixture_now() + 20;
        while (!lb_job_cancelled() && fixture_now() < give_up) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    } else if (data) {
        wait_at_gate(data, ret);
    }
    int *v = malloc(sizeof *v);
    if (!v)
        return -ENOMEM;
    *v = 42;
    atomic_fetch_add(&results_made, 1);
    *ret = v;
    return 0;
}

typedef struct full_case {
    void *job_data;
    int status;
    int *value;
} full_case;

static int full_task(lb_task *task, void *data) {
    full_case *c = data;
    void *v = NULL;
    (void)task;
    c->status = lb_to_thread_full(make_result, c->job_data, result_free, &v);
    c->value = v;
    return c->status;
}

/* Stops the loop once results_freed reached want, failing after 30 s. */
typedef struct freed_wait {
    int want;
    double give_up;
} freed_wait;

static void stop_when_freed(lb_loop *loop, void *data) {
    freed_wait *w = data;
    assert_true(fixture_now() < w->give_up);
    if (atomic_load(&results_freed) >= w->want)
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.002, stop_when_freed, w, NULL), 0);
}

static void run_until_freed(lb_loop *loop, int want) {
    freed_wait w = {.want = want, .give_up = fixture_now() + 30};
    assert_int_equal(lb_loop_call_soon(loop, stop_when_freed, &w, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
}

/* A result nobody takes is destroyed: the awaiting task was cancelled
 * mid-job, the future dropped before the job ended, or the loop closed;
 * one that was taken belongs to the taker. */
static void test_executor_untaken_result_destroyed(void **state) {
    (void)state;
    atomic_store(&results_made, 0);
    atomic_store(&results_freed, 0);
    lb_loop *loop = fixture_loop_new();

    /* The awaiting task is cancelled mid-job. */
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    full_case c = {.job_data = &g};
    atomic_store(&make_result_started, false);
    lb_task *t = fixture_spawn(loop, full_task, &c);
    cancel_when_started k = {.target = t, .started = &make_result_started};
    assert_int_equal(lb_loop_call_soon(loop, cancel_once_started, &k, NULL), 0);
    assert_int_equal(fixture_finish(loop, t, 30), -ECANCELED);
    assert_null(c.value);
    gate_open(&g);
    run_until_freed(loop, 1);

    /* Taken by the task: its own, not destroyed. */
    full_case taken = {0};
    t = fixture_spawn(loop, full_task, &taken);
    assert_int_equal(fixture_finish(loop, t, 30), 0);
    assert_non_null(taken.value);
    assert_int_equal(*taken.value, 42);
    assert_int_equal(atomic_load(&results_freed), 1);
    free(taken.value);

    /* The future is dropped while the job runs. */
    gate g2 = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lb_future *f = NULL;
    assert_int_equal(lb_loop_run_in_executor_full(loop, NULL, make_result, &g2, result_free, &f), 0);
    gate_wait_entered(&g2);
    lb_future_unref(f);
    gate_open(&g2);
    run_until_freed(loop, 2);

    /* Held by the future until the future goes. */
    assert_int_equal(lb_loop_run_in_executor_full(loop, NULL, make_result, NULL, result_free, &f), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, f), 0);
    void *v = NULL;
    assert_int_equal(lb_future_result(f, &v), 0);
    assert_int_equal(*(int *)v, 42);
    assert_int_equal(atomic_load(&results_freed), 2);
    lb_future_unref(f);
    assert_int_equal(atomic_load(&results_freed), 3);

    /* The loop closes while the job runs: close tells the job, which
     * returns its result, destroyed then. */
    atomic_store(&make_result_started, false);
    assert_int_equal(lb_loop_run_in_executor_full(loop, NULL, make_result, &until_cancelled,
                                                  result_free, &f), 0);
    wait_started(&make_result_started);
    double t0 = fixture_now();
    fixture_loop_free(loop);
    assert_true(fixture_now() - t0 < 10);
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);
    assert_int_equal(atomic_load(&results_made), 5);
    assert_int_equal(atomic_load(&results_freed), 4); /* plus the one taken */
}

/* A job that owns its data frees it once the job is over, whichever way,
 * exactly once, on the loop's thread: after it ran; instead of running
 * (withdrawn from the queue, the pool shut down, the loop closed); only
 * once a job cancelled while it runs has returned. A refused call frees
 * it at once. */
typedef struct owned {
    gate *g;             /* the job waits there, if set */
    bool spin;           /* the job runs until lb_job_cancelled() */
    atomic_bool started; /* the job began */
    atomic_bool over;    /* the job returned */
    atomic_int destroyed;
    atomic_bool destroyed_while_running;
    pthread_t destroyed_on;
    volatile bool gone; /* destroyed */
} owned;

static int owned_job(void *data, void **ret) {
    owned *o = data;
    (void)ret;
    atomic_store(&o->started, true);
    if (o->g)
        wait_at_gate(o->g, NULL);
    while (o->spin && !lb_job_cancelled()) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&o->over, true);
    return 0;
}

static void owned_destroy(void *data) {
    owned *o = data;
    if (atomic_load(&o->started) && !atomic_load(&o->over))
        atomic_store(&o->destroyed_while_running, true);
    o->destroyed_on = pthread_self();
    atomic_fetch_add(&o->destroyed, 1);
    o->gone = true;
}

/* Destroyed once, on this (the loop's) thread, never while it ran. */
static void assert_freed_once(owned *o) {
    assert_int_equal(atomic_load(&o->destroyed), 1);
    assert_true(pthread_equal(o->destroyed_on, pthread_self()));
    assert_false(atomic_load(&o->destroyed_while_running));
}

static void run_until_destroyed(lb_loop *loop, owned *o) {
    fixture_run_until(loop, &o->gone, 30);
    assert_freed_once(o);
}

static void set_true(lb_loop *loop, void *data) {
    (void)loop;
    *(volatile bool *)data = true;
}

static int owned_task(lb_task *task, void *data) {
    (void)task;
    return lb_to_thread_owned(owned_job, data, owned_destroy, NULL, NULL);
}

static void test_executor_owned_data_freed_once_the_job_is_over(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *ex = NULL;
    assert_int_equal(lb_executor_new(&ex, 1), 0);
    assert_int_equal(lb_loop_set_default_executor(loop, ex), 0);
    lb_future *f = NULL;

    /* It ran. */
    owned ran = {0};
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &ran, owned_destroy, NULL,
                                                   &f),
                     0);
    assert_int_equal(lb_loop_run_until_complete(loop, f), 0);
    lb_future_unref(f);
    run_until_destroyed(loop, &ran);
    assert_true(atomic_load(&ran.over));

    /* Cancelled while it runs: the future ends at once, the data only
     * once the job returned. */
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    owned running = {.g = &g};
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &running, owned_destroy,
                                                   NULL, &f),
                     0);
    gate_wait_entered(&g);

    /* Withdrawn from the queue (the only thread is busy): never runs.
     * So does a task's job when the task is cancelled before it starts. */
    owned queued = {0}, task_queued = {0};
    lb_future *q = NULL;
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &queued, owned_destroy,
                                                   NULL, &q),
                     0);
    assert_int_equal(lb_future_cancel(q), 1);
    run_until_destroyed(loop, &queued);
    assert_false(atomic_load(&queued.started));
    lb_future_unref(q);
    lb_task *t = fixture_spawn(loop, owned_task, &task_queued);
    volatile bool a_while = false; /* the task submits its job meanwhile */
    assert_int_equal(lb_loop_call_later(loop, 0.02, set_true, (void *)&a_while, NULL), 0);
    fixture_run_until(loop, &a_while, 30);
    assert_int_equal(lb_task_cancel(t), 1);
    assert_int_equal(fixture_finish(loop, t, 30), -ECANCELED);
    run_until_destroyed(loop, &task_queued);
    assert_false(atomic_load(&task_queued.started));

    assert_int_equal(lb_future_cancel(f), 1);
    assert_true(lb_future_is_cancelled(f));
    a_while = false;
    assert_int_equal(lb_loop_call_later(loop, 0.02, set_true, (void *)&a_while, NULL), 0);
    fixture_run_until(loop, &a_while, 30);
    assert_int_equal(atomic_load(&running.destroyed), 0);
    gate_open(&g);
    run_until_destroyed(loop, &running);
    lb_future_unref(f);

    /* A task cancelled while its job runs, through lb_to_thread_owned(). */
    gate g2 = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    owned in_task = {.g = &g2};
    t = fixture_spawn(loop, owned_task, &in_task);
    cancel_when_started k = {.target = t, .started = &in_task.started};
    assert_int_equal(lb_loop_call_soon(loop, cancel_once_started, &k, NULL), 0);
    assert_int_equal(fixture_finish(loop, t, 30), -ECANCELED);
    assert_int_equal(atomic_load(&in_task.destroyed), 0);
    gate_open(&g2);
    run_until_destroyed(loop, &in_task);

    /* Refused: destroyed at once. */
    owned no_fn = {0}, no_task = {0};
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, NULL, &no_fn, owned_destroy, NULL, &f),
                     -EINVAL);
    assert_freed_once(&no_fn);
    assert_int_equal(lb_to_thread_owned(owned_job, &no_task, owned_destroy, NULL, NULL), -EPERM);
    assert_freed_once(&no_task);

    /* Running and queued when the loop closes: the running one is told
     * and waited for, the queued one withdrawn; both destroyed once. */
    owned busy = {.spin = true}, left = {0};
    lb_future *b = NULL;
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &busy, owned_destroy,
                                                   NULL, &b),
                     0);
    while (!atomic_load(&busy.started))
        sched_yield();
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &left, owned_destroy,
                                                   NULL, &f),
                     0);
    fixture_loop_free(loop);
    lb_future_unref(b);
    lb_future_unref(f);
    assert_freed_once(&busy);
    assert_true(atomic_load(&busy.over));
    assert_freed_once(&left);
    assert_false(atomic_load(&left.started));

    /* Queued when the pool is shut down cancelling pending jobs; then
     * refused by the shut down pool, destroyed at once. */
    lb_executor_unref(ex); /* the closed loop's default: shut down with it */
    assert_int_equal(lb_executor_new(&ex, 1), 0);
    loop = fixture_loop_new();
    gate g3 = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    owned holding = {.g = &g3}, pending = {0}, late = {0};
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &holding, owned_destroy,
                                                   NULL, &b),
                     0);
    gate_wait_entered(&g3);
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &pending, owned_destroy,
                                                   NULL, &f),
                     0);
    assert_int_equal(lb_executor_shutdown(ex, false, true), 0);
    run_until_destroyed(loop, &pending);
    assert_false(atomic_load(&pending.started));
    assert_true(lb_future_is_cancelled(f));
    lb_future_unref(f);
    assert_int_equal(lb_loop_run_in_executor_owned(loop, ex, owned_job, &late, owned_destroy,
                                                   NULL, &f),
                     -EBADF);
    assert_freed_once(&late);
    gate_open(&g3);
    run_until_destroyed(loop, &holding);
    lb_future_unref(b);
    fixture_loop_free(loop);
    lb_executor_unref(ex);
}

int run_executor_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_executor_result_and_error),
        cmocka_unit_test(test_executor_positive_return_reported),
        cmocka_unit_test(test_executor_many_jobs),
        cmocka_unit_test(test_executor_cancel_queued_job),
        cmocka_unit_test(test_executor_cancelled_job_leaves_queue),
        cmocka_unit_test(test_executor_every_waiting_shutdown_waits),
        cmocka_unit_test(test_executor_replace_default_while_busy),
        cmocka_unit_test(test_executor_to_thread),
        cmocka_unit_test(test_executor_default_pool_outgrows_waiting_jobs),
        cmocka_unit_test(test_executor_close_with_jobs),
        cmocka_unit_test(test_executor_job_learns_task_cancel),
        cmocka_unit_test(test_executor_close_tells_running_job),
        cmocka_unit_test(test_executor_close_waits_for_stubborn_job),
        cmocka_unit_test(test_executor_untaken_result_destroyed),
        cmocka_unit_test(test_executor_owned_data_freed_once_the_job_is_over),
        cmocka_unit_test(test_executor_held_jobs_cancel_and_shutdown),
        cmocka_unit_test(test_executor_held_job_refused_by_shutdown),
        cmocka_unit_test(test_executor_first_job_of_a_callback_starts_at_once),
        cmocka_unit_test(test_executor_shutdown_hands_over_every_loops_jobs),
        cmocka_unit_test(test_executor_default_set_again_still_works),
        cmocka_unit_test(test_executor_loop_freed_right_after_completions),
    };
    return cmocka_run_group_tests_name("executor", tests, NULL, NULL);
}
