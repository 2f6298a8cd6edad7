/* SPDX-License-Identifier: MIT */
/* Posts racing lb_loop_close: threads keep posting callbacks and
 * results while the loop stops and closes. Every post is run, dropped
 * through its drop path at close, or refused with -EBADF; every value
 * handed over is destroyed exactly once; nothing runs after close. */
#include "stress.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* A racer posts until the close refuses it, but never more than
 * MAX_AHEAD posts ahead of what the loop ran, so the posts stay a race
 * with the close however fast they are, in bounded memory. */
enum { RACERS = 3, FUTURES = 4, MAX_AHEAD = 100000 };

typedef struct race {
    lb_loop *loop;
    lb_future *futures[FUTURES];
    atomic_long posts_accepted;
    atomic_long posts_refused;
    atomic_long results_handed; /* values handed to set_result_threadsafe */
    atomic_long destroyed;
    atomic_long ran;
    atomic_long ran_after_close;
    atomic_long other_errors;
    atomic_bool closed;
    atomic_bool go;
    long stop_after; /* the loop stops once this many posts ran */
    bool stop;
} race;

static void on_post(lb_loop *loop, void *data) {
    race *r = data;
    (void)loop;
    if (atomic_load(&r->closed))
        atomic_fetch_add(&r->ran_after_close, 1);
    if (atomic_fetch_add(&r->ran, 1) + 1 >= r->stop_after)
        r->stop = true;
}

/* The value's destroy function: counts, and frees the allocation, so a
 * double destroy or a lost value shows in the sanitizer jobs too. */
static race *destroy_race;
static void destroy_value(void *value) {
    atomic_fetch_add(&destroy_race->destroyed, 1);
    free(value);
}

static void *racer_main(void *data) {
    race *r = data;
    while (!atomic_load(&r->go))
        sched_yield();
    bool posts_open = true, results_open = true;
    for (long i = 0; posts_open || results_open; i++) {
        while (atomic_load(&r->posts_accepted) - atomic_load(&r->ran) > MAX_AHEAD &&
               !atomic_load(&r->closed))
            sched_yield();
        if (posts_open) {
            int rc = lb_loop_call_soon_threadsafe(r->loop, on_post, r);
            if (rc == 0)
                atomic_fetch_add(&r->posts_accepted, 1);
            else if (rc == -EBADF)
                posts_open = false, atomic_fetch_add(&r->posts_refused, 1);
            else
                atomic_fetch_add(&r->other_errors, 1);
        }
        if (results_open) {
            int *value = malloc(sizeof *value);
            atomic_fetch_add(&r->results_handed, 1);
            int rc = lb_future_set_result_threadsafe(r->futures[i % FUTURES], value,
                                                     destroy_value);
            if (rc == -EBADF)
                results_open = false;
            else if (rc != 0)
                atomic_fetch_add(&r->other_errors, 1);
        }
    }
    return NULL;
}

static void test_close_race_posts(void **state) {
    (void)state;
    long rounds = stress_size(150, 5);
    stress_rng rng = {0x9E3779B97F4A7C15ULL};
    long accepted = 0, refused = 0, ran = 0, handed = 0;
    int64_t t0 = stress_now_ns();
    for (long round = 0; round < rounds; round++) {
        race r = {.loop = fixture_loop_new(), .stop_after = 1 + (long)stress_below(&rng, 5000)};
        destroy_race = &r;
        for (int i = 0; i < FUTURES; i++)
            assert_int_equal(lb_future_new(r.loop, &r.futures[i]), 0);
        pthread_t th[RACERS];
        for (int i = 0; i < RACERS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r), 0);
        atomic_store(&r.go, true);
        fixture_run_until(r.loop, &r.stop, 60.0);
        /* The racers are still posting: close under them. */
        assert_int_equal(lb_loop_close(r.loop), 0);
        atomic_store(&r.closed, true);
        for (int i = 0; i < RACERS; i++)
            pthread_join(th[i], NULL);

        assert_int_equal(atomic_load(&r.other_errors), 0);
        assert_int_equal(atomic_load(&r.ran_after_close), 0);
        assert_true(atomic_load(&r.ran) <= atomic_load(&r.posts_accepted));
        assert_int_equal(atomic_load(&r.posts_refused), RACERS);
        for (int i = 0; i < FUTURES; i++) {
            assert_true(lb_future_is_done(r.futures[i]));
            lb_future_unref(r.futures[i]);
        }
        /* Applied, dropped as late, dropped at close or refused: each
         * value was destroyed once. */
        assert_int_equal(atomic_load(&r.destroyed), atomic_load(&r.results_handed));
        lb_loop_unref(r.loop);
        accepted += atomic_load(&r.posts_accepted);
        refused += atomic_load(&r.posts_refused);
        ran += atomic_load(&r.ran);
        handed += atomic_load(&r.results_handed);
    }
    printf("# close race: %ld rounds, %d threads: %ld posts accepted (%ld ran, %ld dropped at "
           "close), %ld refused, %ld results all destroyed once, %.2f s\n",
           rounds, RACERS, accepted, ran, accepted - ran, refused, handed,
           (double)(stress_now_ns() - t0) / 1e9);
}

int run_close_race_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_race_posts),
    };
    return cmocka_run_group_tests_name("close_race", tests, NULL, NULL);
}
