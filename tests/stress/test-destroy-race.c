/* SPDX-License-Identifier: MIT */
/* Destroy notifies under a racing close: eight threads post with
 * lb_loop_call_soon_threadsafe_full() until the loop refuses them, while
 * the loop thread keeps timers, held and cancelled handles, done
 * callbacks and executor jobs whose results have a destroy function
 * (results taken, dropped, cancelled, caught by the close), and then
 * closes. Every
 * destroy frees a record (a second one is a double free for ASan and
 * valgrind, a missing one a leak), runs on the thread the headers name,
 * and the counts add up: each call made is destroyed exactly once. */
#include "stress.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum { RACERS = 8, MAX_AHEAD = 20000, LOCAL = 64, JOBS = 24 };

typedef struct record {
    int owner; /* 0: the loop's thread; 1..RACERS: a poster */
    int ran;
} record;

typedef struct round {
    lb_loop *loop;
    atomic_long made;      /* calls made with a destroy, accepted or not */
    atomic_long destroyed;
    atomic_long ran;
    atomic_long accepted;
    atomic_long ran_twice;
    atomic_long wrong_thread;
    atomic_long other_errors;
    atomic_bool closed;
    atomic_bool go;
    long stop_after;
} round;

static round *current_round;
static _Thread_local int thread_owner; /* 0 on the loop's thread */

static record *record_new(int owner) {
    record *rec = malloc(sizeof *rec);
    if (rec)
        *rec = (record){owner, 0};
    return rec;
}

static void record_destroy(void *data) {
    record *rec = data;
    round *r = current_round;
    /* The loop's thread (which also closes it), or the poster whose post
     * was refused, never another. */
    if (thread_owner != 0 && thread_owner != rec->owner)
        atomic_fetch_add(&r->wrong_thread, 1);
    atomic_fetch_add(&r->destroyed, 1);
    free(rec);
}

static void record_ran(lb_loop *loop, void *data) {
    record *rec = data;
    round *r = current_round;
    if (rec->ran++)
        atomic_fetch_add(&r->ran_twice, 1);
    if (atomic_fetch_add(&r->ran, 1) + 1 == r->stop_after)
        lb_loop_stop(loop);
}

static void record_done(lb_future *f, void *data) {
    record_ran(lb_future_get_loop(f), data);
}

/* A job's result is a record: made on the worker, destroyed on the loop's
 * thread when nobody takes it, or with the future that holds it. A job
 * withdrawn before it ran makes none. */
static int record_job(void *data, void **ret) {
    (void)data;
    record *rec = record_new(0);
    if (!rec)
        return -ENOMEM;
    atomic_fetch_add(&current_round->made, 1);
    *ret = rec;
    return 0;
}

/* Jobs whose future is dropped at once, kept (it holds the result), or
 * cancelled while queued or running; close catches those still out. */
static void start_jobs(round *r, lb_future **jobs) {
    for (int i = 0; i < JOBS; i++) {
        assert_int_equal(
            lb_loop_run_in_executor_full(r->loop, NULL, record_job, NULL, record_destroy, &jobs[i]),
            0);
        if (i % 3 == 0)
            jobs[i] = lb_future_unref(jobs[i]);
        else if (i % 3 == 2)
            lb_future_cancel(jobs[i]);
    }
}

static void *poster_main(void *data) {
    round *r = current_round;
    thread_owner = (int)(intptr_t)data;
    while (!atomic_load(&r->go))
        sched_yield();
    for (;;) {
        /* Stay a race with the close, in bounded memory. */
        while (atomic_load(&r->accepted) - atomic_load(&r->ran) > MAX_AHEAD &&
               !atomic_load(&r->closed))
            sched_yield();
        record *rec = record_new(thread_owner);
        if (!rec) {
            atomic_fetch_add(&r->other_errors, 1);
            break;
        }
        atomic_fetch_add(&r->made, 1);
        int e = lb_loop_call_soon_threadsafe_full(r->loop, record_ran, rec, record_destroy);
        if (e == 0) {
            atomic_fetch_add(&r->accepted, 1);
        } else if (e == -EBADF) {
            break;
        } else if (e != -ENOMEM) {
            atomic_fetch_add(&r->other_errors, 1);
            break;
        }
    }
    return NULL;
}

/* The loop thread's own calls: some run, some are cancelled, the rest
 * are dropped at close. */
static void schedule_local(round *r, lb_future **futures, lb_handle **held) {
    lb_loop *loop = r->loop;
    for (int i = 0; i < LOCAL; i++) {
        int e = 0;
        record *rec = record_new(0);
        assert_non_null(rec);
        atomic_fetch_add(&r->made, 1);
        switch (i % 6) {
        case 0:
            e = lb_loop_call_soon_full(loop, record_ran, rec, record_destroy, NULL);
            break;
        case 1:
            e = lb_loop_call_later_full(loop, 3600, record_ran, rec, record_destroy, NULL);
            break;
        case 2:
            e = lb_loop_call_at_full(loop, 0, record_ran, rec, record_destroy, &held[i]);
            break;
        case 3:
            e = lb_loop_call_later_full(loop, 3600, record_ran, rec, record_destroy, &held[i]);
            if (e == 0 && i % 4 == 3)
                assert_int_equal(lb_handle_cancel(held[i]), 1);
            break;
        case 4:
            e = lb_future_add_done_callback_full(futures[0], record_done, rec, record_destroy);
            break;
        default:
            e = lb_future_add_done_callback_full(futures[1], record_done, rec, record_destroy);
            break;
        }
        assert_int_equal(e, 0);
    }
    /* One future completes (its callbacks run), the other stays pending
     * until close cancels it. */
    assert_int_equal(lb_future_set_result(futures[0], NULL, NULL), 0);
}

static void bound_hit(lb_loop *loop, void *data) {
    *(bool *)data = true;
    lb_loop_stop(loop);
}

static void run_round(long stop_after) {
    round r = {.stop_after = stop_after};
    current_round = &r;
    thread_owner = 0;
    r.loop = fixture_loop_new();
    lb_future *futures[2];
    lb_handle *held[LOCAL] = {0};
    for (int i = 0; i < 2; i++)
        assert_int_equal(lb_future_new(r.loop, &futures[i]), 0);
    schedule_local(&r, futures, held);
    lb_future *jobs[JOBS] = {0};
    start_jobs(&r, jobs);

    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, poster_main, (void *)(intptr_t)(i + 1)),
                         0);
    atomic_store(&r.go, true);
    bool timed_out = false; /* a bound, never reached when all is well */
    assert_int_equal(lb_loop_call_later(r.loop, 60, bound_hit, &timed_out, NULL), 0);
    assert_int_equal(lb_loop_run_forever(r.loop), 0);
    assert_false(timed_out);
    assert_int_equal(lb_loop_close(r.loop), 0);
    atomic_store(&r.closed, true);
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < LOCAL; i++)
        held[i] = lb_handle_unref(held[i]);
    for (int i = 0; i < 2; i++)
        futures[i] = lb_future_unref(futures[i]);
    for (int i = 0; i < JOBS; i++)
        jobs[i] = lb_future_unref(jobs[i]);
    lb_loop_unref(r.loop);

    printf("# destroy race: %ld calls made, %ld ran, %ld posts accepted\n",
           atomic_load(&r.made), atomic_load(&r.ran), atomic_load(&r.accepted));
    assert_int_equal(atomic_load(&r.other_errors), 0);
    assert_int_equal(atomic_load(&r.ran_twice), 0);
    assert_int_equal(atomic_load(&r.wrong_thread), 0);
    assert_int_equal(atomic_load(&r.destroyed), atomic_load(&r.made));
    current_round = NULL;
}

static void test_destroy_race_close(void **state) {
    (void)state;
    long rounds = stress_size(20, 2);
    for (long i = 0; i < rounds; i++)
        run_round(stress_size(50000, 200) * (i % 3 + 1) / 3);
}

int run_destroy_race_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destroy_race_close),
    };
    return cmocka_run_group_tests_name("destroy_race", tests, NULL, NULL);
}
