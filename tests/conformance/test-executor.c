/* SPDX-License-Identifier: MIT */
/* Thread pools: results and errors back on the loop thread, cancelling
 * queued jobs, 10,000 jobs, to_thread inside a task, shutdown. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
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

int run_executor_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_executor_result_and_error),
        cmocka_unit_test(test_executor_many_jobs),
        cmocka_unit_test(test_executor_cancel_queued_job),
        cmocka_unit_test(test_executor_cancelled_job_leaves_queue),
        cmocka_unit_test(test_executor_every_waiting_shutdown_waits),
        cmocka_unit_test(test_executor_replace_default_while_busy),
        cmocka_unit_test(test_executor_to_thread),
        cmocka_unit_test(test_executor_default_pool_outgrows_waiting_jobs),
        cmocka_unit_test(test_executor_close_with_jobs),
    };
    return cmocka_run_group_tests_name("executor", tests, NULL, NULL);
}
