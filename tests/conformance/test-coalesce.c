/* SPDX-License-Identifier: MIT */
/* Coalescing posts: the latest value wins, every value is delivered or
 * destroyed exactly once, from 8 threads, at free, at close and when
 * posts race the close. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Values are malloc'd longs, so that valgrind and ASan see a lost or
 * doubly freed one; the counters see the rest. */
static atomic_long made, delivered, destroyed;

static void reset_counts(void) {
    atomic_store(&made, 0);
    atomic_store(&delivered, 0);
    atomic_store(&destroyed, 0);
}

static long *value_new(long n) {
    long *v = malloc(sizeof *v);
    assert_non_null(v);
    *v = n;
    atomic_fetch_add(&made, 1);
    return v;
}

static void value_destroy(void *value) {
    assert_non_null(value);
    free(value);
    atomic_fetch_add(&destroyed, 1);
}

typedef struct receiver {
    lb_loop *loop;
    long calls;
    long last;
} receiver;

static void receive(lb_loop *loop, void *value, void *data) {
    receiver *r = data;
    assert_ptr_equal(loop, r->loop);
    assert_ptr_equal(lb_loop_get_running(), loop);
    r->calls++;
    r->last = *(long *)value;
    free(value);
    atomic_fetch_add(&delivered, 1);
}

/* A coalescer delivering to r on loop, the counts reset. */
static lb_coalesce *counted_coalesce(lb_loop *loop, receiver *r) {
    reset_counts();
    *r = (receiver){.loop = loop};
    lb_coalesce *c = NULL;
    assert_int_equal(lb_coalesce_new(loop, receive, r, value_destroy, &c), 0);
    return c;
}

static void stop_soon(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

/* Runs a few iterations: enough for posted deliveries to run. */
static void run_a_little(lb_loop *loop) {
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lb_loop_call_later(loop, 0.001, stop_soon, NULL, NULL), 0);
        assert_int_equal(lb_loop_run_forever(loop), 0);
    }
}

/* Three posts before the loop runs: one call, with the last value; the
 * two replaced ones are destroyed. NULL is a value like any other. */
static void test_coalesce_latest_wins(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    receiver r;
    lb_coalesce *c = counted_coalesce(loop, &r);
    for (long i = 1; i <= 3; i++)
        assert_int_equal(lb_coalesce_post(c, value_new(i)), 0);
    run_a_little(loop);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.last, 3);
    assert_int_equal(atomic_load(&destroyed), 2);
    /* Again, after the delivery. */
    assert_int_equal(lb_coalesce_post(c, value_new(4)), 0);
    run_a_little(loop);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.last, 4);
    lb_coalesce_free(c);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&made), atomic_load(&delivered) + atomic_load(&destroyed));
}

static void count_null(lb_loop *loop, void *value, void *data) {
    (void)loop;
    assert_null(value);
    (*(int *)data)++;
}

static void test_coalesce_null_value(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    int calls = 0;
    lb_coalesce *c = NULL;
    assert_int_equal(lb_coalesce_new(loop, count_null, &calls, NULL, &c), 0);
    assert_int_equal(lb_coalesce_post(c, NULL), 0);
    run_a_little(loop);
    assert_int_equal(calls, 1);
    lb_coalesce_free(c);
    fixture_loop_free(loop);
}

/* Freed with a value queued: destroyed, never delivered. */
static void test_coalesce_free_destroys_queued(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    receiver r;
    lb_coalesce *c = counted_coalesce(loop, &r);
    assert_int_equal(lb_coalesce_post(c, value_new(1)), 0);
    assert_null(lb_coalesce_free(c));
    assert_int_equal(atomic_load(&destroyed), 1);
    run_a_little(loop);
    assert_int_equal(r.calls, 0);
    /* Queued at close: destroyed by the close. */
    assert_int_equal(lb_coalesce_new(loop, receive, &r, value_destroy, &c), 0);
    assert_int_equal(lb_coalesce_post(c, value_new(2)), 0);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&destroyed), 2);
    assert_int_equal(lb_coalesce_post(c, value_new(3)), -EBADF);
    assert_int_equal(atomic_load(&destroyed), 3);
    lb_coalesce_free(c);
    assert_int_equal(r.calls, 0);
}

static void test_coalesce_misuse(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_coalesce *c = NULL;
    assert_int_equal(lb_coalesce_new(loop, NULL, NULL, NULL, &c), -EINVAL);
    assert_int_equal(lb_coalesce_new(loop, count_null, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(lb_coalesce_new(NULL, count_null, NULL, NULL, &c), -EINVAL);
    assert_int_equal(lb_coalesce_post(NULL, NULL), -EINVAL);
    assert_null(c);
    assert_null(lb_coalesce_free(NULL));
    lb_loop_ref(loop);
    fixture_loop_free(loop);
    assert_int_equal(lb_coalesce_new(loop, count_null, NULL, NULL, &c), -EBADF);
    lb_loop_unref(loop);
}

#define POSTERS 8
#define POSTS 5000

typedef struct poster {
    lb_coalesce *c;
    long accepted, refused;
    atomic_bool *go;
} poster;

/* Posts POSTS values, or until the loop is closed. */
static void *post_many(void *data) {
    poster *p = data;
    while (!atomic_load(p->go))
        ;
    for (long i = 0; i < POSTS; i++) {
        int r = lb_coalesce_post(p->c, value_new(i));
        if (r == 0) {
            p->accepted++;
        } else {
            assert_int_equal(r, -EBADF);
            p->refused++;
            break;
        }
    }
    return NULL;
}

typedef struct flood {
    atomic_int finished;
} flood;

static void check_settled(lb_loop *loop, void *data) {
    flood *f = data;
    if (atomic_load(&f->finished) == POSTERS &&
        atomic_load(&made) == atomic_load(&delivered) + atomic_load(&destroyed))
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.001, check_settled, f, NULL), 0);
}

static flood the_flood;

/* POSTERS threads running fn on c, released together once all started. */
typedef struct posters {
    atomic_bool go;
    poster ps[POSTERS];
    pthread_t threads[POSTERS];
} posters;

static void posters_start(posters *p, lb_coalesce *c, void *(*fn)(void *)) {
    atomic_store(&p->go, false);
    for (int i = 0; i < POSTERS; i++) {
        p->ps[i] = (poster){.c = c, .go = &p->go};
        assert_int_equal(pthread_create(&p->threads[i], NULL, fn, &p->ps[i]), 0);
    }
    atomic_store(&p->go, true);
}

static void *post_many_and_count(void *data) {
    post_many(data);
    atomic_fetch_add(&the_flood.finished, 1);
    return NULL;
}

/* 8 threads post at once while the loop runs: every value is delivered
 * or destroyed, once, and the last one of some thread is delivered. */
static void test_coalesce_from_eight_threads(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    receiver r;
    lb_coalesce *c = counted_coalesce(loop, &r);
    atomic_store(&the_flood.finished, 0);
    static posters p;
    posters_start(&p, c, post_many_and_count);
    double t0 = fixture_now();
    assert_int_equal(lb_loop_call_soon(loop, check_settled, &the_flood, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_true(fixture_now() - t0 < 120);
    for (int i = 0; i < POSTERS; i++) {
        pthread_join(p.threads[i], NULL);
        assert_int_equal(p.ps[i].accepted, POSTS);
    }
    assert_true(r.calls >= 1);
    assert_int_equal(r.last, POSTS - 1);
    assert_int_equal(atomic_load(&made), (long)POSTERS * POSTS);
    lb_coalesce_free(c);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&made), atomic_load(&delivered) + atomic_load(&destroyed));
}

/* 8 threads post while the loop closes: each value is delivered or
 * destroyed once, whether its post was accepted, dropped by the close or
 * refused after it. */
static void test_coalesce_posts_race_close(void **state) {
    (void)state;
    for (int round = 0; round < 5; round++) {
        lb_loop *loop = fixture_loop_new();
        receiver r;
        lb_coalesce *c = counted_coalesce(loop, &r);
        static posters p;
        posters_start(&p, c, post_many);
        run_a_little(loop);
        fixture_loop_free(loop);
        for (int i = 0; i < POSTERS; i++)
            pthread_join(p.threads[i], NULL);
        lb_coalesce_free(c);
        assert_int_equal(atomic_load(&made), atomic_load(&delivered) + atomic_load(&destroyed));
    }
}


/* Paced: deliveries at least the interval apart on the loop's clock,
 * the latest value last, each value delivered or destroyed once. */
typedef struct paced_receiver {
    receiver r;
    int64_t last_ns;
    int64_t min_gap_ns;
} paced_receiver;

static void receive_paced(lb_loop *loop, void *value, void *data) {
    paced_receiver *p = data;
    int64_t now = lb_loop_time_ns(loop);
    if (p->last_ns && now - p->last_ns < p->min_gap_ns)
        p->min_gap_ns = now - p->last_ns;
    p->last_ns = now;
    receive(loop, value, &p->r);
}

typedef struct paced_poster {
    lb_coalesce *c;
    long posts;
} paced_poster;

static void *post_slowly(void *data) {
    paced_poster *pp = data;
    for (long i = 1; i <= pp->posts; i++) {
        assert_int_equal(lb_coalesce_post(pp->c, value_new(i)), 0);
        struct timespec pause = {0, 1000000}; /* 1 ms */
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void test_coalesce_paced(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    reset_counts();
    paced_receiver p = {.r = {.loop = loop}, .min_gap_ns = INT64_MAX};
    lb_coalesce *c = NULL;
    assert_int_equal(lb_coalesce_new(loop, receive_paced, &p, value_destroy, &c), 0);
    assert_int_equal(lb_coalesce_set_interval(c, 0.05), 0);
    paced_poster pp = {.c = c, .posts = 150};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, post_slowly, &pp), 0);
    /* until the poster is done and its last value arrived */
    double t0 = fixture_now();
    while (p.r.last != pp.posts && fixture_now() - t0 < 120)
        run_a_little(loop);
    pthread_join(thread, NULL);
    assert_int_equal(p.r.last, pp.posts);
    assert_true(p.r.calls >= 2);
    /* The coalescer stamps a delivery as it begins it; the receiver reads
     * the clock a moment later, and a preemption in that moment (a
     * sanitizer build on a busy machine) shortens the next measured gap
     * by as much. Without pacing, gaps would be about 1 ms. */
    if (p.min_gap_ns < 45000000)
        fail_msg("deliveries %lld us apart, paced at 50 ms", (long long)(p.min_gap_ns / 1000));
    /* 150 posts over at least 150 ms: far fewer deliveries */
    assert_true(p.r.calls < pp.posts / 2);
    lb_coalesce_free(c);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&made), atomic_load(&delivered) + atomic_load(&destroyed));
}

/* A paced delivery still waiting when the loop closes, or when the
 * coalescer is freed: its value is destroyed, never delivered. */
static void test_coalesce_paced_close_and_free(void **state) {
    (void)state;
    for (int freed_first = 0; freed_first < 2; freed_first++) {
        lb_loop *loop = fixture_loop_new();
        receiver r;
        lb_coalesce *c = counted_coalesce(loop, &r);
        assert_int_equal(lb_coalesce_set_interval(c, 3600), 0);
        assert_int_equal(lb_coalesce_post(c, value_new(1)), 0);
        run_a_little(loop); /* delivered at once: the first */
        assert_int_equal(lb_coalesce_post(c, value_new(2)), 0);
        run_a_little(loop); /* waits an hour on a timer */
        assert_int_equal(lb_coalesce_post(c, value_new(3)), 0); /* replaces 2 */
        run_a_little(loop);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.last, 1);
        if (freed_first) {
            lb_coalesce_free(c);
            fixture_loop_free(loop);
        } else {
            fixture_loop_free(loop);
            lb_coalesce_free(c);
        }
        assert_int_equal(r.calls, 1);
        assert_int_equal(atomic_load(&made), 3);
        assert_int_equal(atomic_load(&destroyed), 2);
    }
}

typedef struct interval_call {
    lb_coalesce *c;
    int rc;
} interval_call;

static void *set_interval_elsewhere(void *data) {
    interval_call *call = data;
    call->rc = lb_coalesce_set_interval(call->c, 1);
    return NULL;
}

static void test_coalesce_interval_checked(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    receiver r;
    lb_coalesce *c = counted_coalesce(loop, &r);
    assert_int_equal(lb_coalesce_set_interval(NULL, 1), -EINVAL);
    assert_int_equal(lb_coalesce_set_interval(c, -1), -EINVAL);
    assert_int_equal(lb_coalesce_set_interval(c, 0.0 / 0.0), -EINVAL);
    assert_int_equal(lb_coalesce_set_interval(c, LB_COALESCE_MAX_INTERVAL + 1), -EINVAL);
    assert_int_equal(lb_coalesce_set_interval(c, 0), 0);
    pthread_t thread;
    interval_call call = {.c = c};
    assert_int_equal(pthread_create(&thread, NULL, set_interval_elsewhere, &call), 0);
    pthread_join(thread, NULL);
    assert_int_equal(call.rc, -EPERM);
    lb_coalesce_free(c);
    fixture_loop_free(loop);
}

int run_coalesce_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalesce_latest_wins),
        cmocka_unit_test(test_coalesce_null_value),
        cmocka_unit_test(test_coalesce_free_destroys_queued),
        cmocka_unit_test(test_coalesce_misuse),
        cmocka_unit_test(test_coalesce_from_eight_threads),
        cmocka_unit_test(test_coalesce_posts_race_close),
        cmocka_unit_test(test_coalesce_paced),
        cmocka_unit_test(test_coalesce_paced_close_and_free),
        cmocka_unit_test(test_coalesce_interval_checked),
    };
    return cmocka_run_group_tests_name("coalesce", tests, NULL, NULL);
}
