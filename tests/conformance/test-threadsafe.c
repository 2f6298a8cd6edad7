/* SPDX-License-Identifier: MIT */
/* call_soon_threadsafe: exactly once, per-thread order, wakeups, closed
 * loops. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { THREADS = 4, PER_THREAD = 250000 };

typedef struct flood {
    lb_loop *loop;
    uint8_t *seen;          /* one byte per post id */
    long last[THREADS];     /* per-thread order check */
    long ran;
    long order_violations;
    long duplicates;
} flood;

typedef struct poster {
    flood *f;
    int index;
} poster;

/* The callback's data is the post id, so the flood is found here. */
static flood *current_flood;
static atomic_int thread_errors; /* cmocka asserts only on the test thread */

static void flood_cb(lb_loop *loop, void *data) {
    /* data encodes (thread, sequence). */
    uintptr_t v = (uintptr_t)data;
    flood *f = current_flood;
    int thread = (int)(v % THREADS);
    long seq = (long)(v / THREADS);
    if (f->seen[v]++)
        f->duplicates++;
    if (seq <= f->last[thread])
        f->order_violations++;
    f->last[thread] = seq;
    if (++f->ran == (long)THREADS * PER_THREAD)
        lb_loop_stop(loop);
}

static void *poster_main(void *data) {
    poster *p = data;
    for (long i = 0; i < PER_THREAD; i++) {
        uintptr_t v = (uintptr_t)(i * THREADS + p->index);
        int r;
        while ((r = lb_loop_call_soon_threadsafe(p->f->loop, flood_cb, (void *)v)) == -ENOMEM)
            sched_yield();
        if (r != 0)
            atomic_fetch_add(&thread_errors, 1);
    }
    return NULL;
}

static void test_threadsafe_exactly_once(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    flood f = {.loop = loop};
    f.seen = calloc((size_t)THREADS * PER_THREAD, 1);
    for (int i = 0; i < THREADS; i++)
        f.last[i] = -1;
    current_flood = &f;
    pthread_t th[THREADS];
    poster p[THREADS];
    for (int i = 0; i < THREADS; i++) {
        p[i] = (poster){&f, i};
        assert_int_equal(pthread_create(&th[i], NULL, poster_main, &p[i]), 0);
    }
    assert_int_equal(lb_loop_run_forever(loop), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&thread_errors), 0);
    assert_int_equal(f.ran, (long)THREADS * PER_THREAD);
    assert_int_equal(f.duplicates, 0);
    assert_int_equal(f.order_violations, 0);
    for (long i = 0; i < (long)THREADS * PER_THREAD; i++)
        assert_int_equal(f.seen[i], 1);
    free(f.seen);
    fixture_loop_free(loop);
}

typedef struct sleeper {
    lb_loop *loop;
    volatile bool ran;
    double posted_at;
    double ran_at;
} sleeper;

static void wake_cb(lb_loop *loop, void *data) {
    sleeper *s = data;
    s->ran = true;
    s->ran_at = fixture_now();
    lb_loop_stop(loop);
}

static void *late_poster(void *data) {
    sleeper *s = data;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    s->posted_at = fixture_now();
    if (lb_loop_call_soon_threadsafe(s->loop, wake_cb, s) != 0)
        atomic_fetch_add(&thread_errors, 1);
    return NULL;
}

/* A loop with nothing to do sleeps without limit; a post wakes it. */
static void test_threadsafe_wakes_idle_loop(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    sleeper s = {.loop = loop};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_poster, &s), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    pthread_join(th, NULL);
    assert_true(s.ran);
    assert_true(s.ran_at - s.posted_at < 5.0);
    fixture_loop_free(loop);
}

static void never(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("a callback posted to a closed loop ran");
}

static void test_threadsafe_closed_loop(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(lb_loop_call_soon_threadsafe(loop, never, NULL), -EBADF);
    lb_loop_unref(loop);
}

typedef struct racer {
    lb_loop *loop;
    atomic_long accepted;
    atomic_long refused;
    atomic_long ran;
    atomic_bool go;
} racer;

static void race_cb(lb_loop *loop, void *data) {
    racer *r = data;
    (void)loop;
    atomic_fetch_add(&r->ran, 1);
}

static void *race_poster(void *data) {
    racer *r = data;
    while (!atomic_load(&r->go))
        ;
    for (int i = 0; i < 200000; i++) {
        int rc = lb_loop_call_soon_threadsafe(r->loop, race_cb, r);
        if (rc == 0)
            atomic_fetch_add(&r->accepted, 1);
        else if (rc == -EBADF)
            atomic_fetch_add(&r->refused, 1);
        else
            atomic_fetch_add(&thread_errors, 1);
    }
    return NULL;
}

static void stop_soon(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

/* Posts racing close: each is run, dropped at close, or refused. */
static void test_threadsafe_race_close(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    racer r = {.loop = loop};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_poster, &r), 0);
    atomic_store(&r.go, true);
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_soon, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(lb_loop_close(loop), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&thread_errors), 0);
    assert_int_equal(atomic_load(&r.accepted) + atomic_load(&r.refused), 400000);
    assert_true(atomic_load(&r.ran) <= atomic_load(&r.accepted));
    lb_loop_unref(loop);
}

/* A thread that never stops posting must not hold back the loop's own
 * callbacks and timers: they run while the flood goes on. */
typedef struct endless {
    lb_loop *loop;
    atomic_long posted, ran;
    atomic_bool stop;
    int ticks;
} endless;

/* Each post costs about a microsecond, so the posts waiting at any time
 * (up to 10,000) outlast a hosted driver's dispatch budget many times.
 * The native driver runs every post published when its iteration began,
 * as asyncio runs every ready handle: up to 10 ms a tick here. */
static void endless_cb(lb_loop *loop, void *data) {
    (void)loop;
    double until = fixture_now() + 1e-6;
    while (fixture_now() < until)
        ;
    atomic_fetch_add(&((endless *)data)->ran, 1);
}

static void *endless_poster(void *data) {
    endless *e = data;
    while (!atomic_load(&e->stop)) {
        /* Far enough ahead to keep every iteration busy with posts. */
        if (atomic_load(&e->posted) - atomic_load(&e->ran) > 10000) {
            sched_yield();
            continue;
        }
        if (lb_loop_call_soon_threadsafe(e->loop, endless_cb, e) == 0)
            atomic_fetch_add(&e->posted, 1);
    }
    return NULL;
}

static void endless_tick(lb_loop *loop, void *data) {
    endless *e = data;
    if (++e->ticks == 20)
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.002, endless_tick, e, NULL), 0);
}

static void test_threadsafe_flood_does_not_starve_timers(void **state) {
    (void)state;
    endless e = {.loop = fixture_loop_new()};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, endless_poster, &e), 0);
    assert_int_equal(lb_loop_call_later(e.loop, 0.002, endless_tick, &e, NULL), 0);
    double t0 = fixture_now();
    assert_int_equal(lb_loop_run_forever(e.loop), 0);
    double took = fixture_now() - t0;
    atomic_store(&e.stop, true);
    pthread_join(th, NULL);
    printf("# 20 timer ticks of 2 ms under a flood of posts: %.3f s, %ld posts ran\n", took,
           atomic_load(&e.ran));
    assert_int_equal(e.ticks, 20);
    /* 40 ms of ticks; a starved loop took minutes (generous bound). */
    assert_true(took < 10.0);
    fixture_loop_free(e.loop);
}

/* A post from a thread-exit destructor that runs after the library let
 * go of the thread's lanes (a key made later runs later) is run, and its
 * lane is freed (it leaked: ASan and valgrind builds see it). */
static void count_nothing(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static pthread_key_t late_key;
static atomic_int late_ran, late_refused;

static void late_cb(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    atomic_fetch_add(&late_ran, 1);
}

static void post_while_exiting(void *loop) {
    if (lb_loop_call_soon_threadsafe(loop, late_cb, NULL) != 0)
        atomic_fetch_add(&late_refused, 1);
}

static void *late_thread_main(void *loop) {
    if (lb_loop_call_soon_threadsafe(loop, late_cb, NULL) != 0)
        atomic_fetch_add(&late_refused, 1);
    pthread_setspecific(late_key, loop);
    return NULL;
}

static void stop_after_two(lb_loop *loop, void *data) {
    (void)data;
    if (atomic_load(&late_ran) == 2)
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.001, stop_after_two, NULL, NULL), 0);
}

static void test_threadsafe_post_from_exit_destructor(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    /* The library's thread-exit key exists once a thread posted. */
    assert_int_equal(lb_loop_call_soon_threadsafe(loop, count_nothing, NULL), 0);
    assert_int_equal(pthread_key_create(&late_key, post_while_exiting), 0);
    atomic_store(&late_ran, 0);
    atomic_store(&late_refused, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_thread_main, loop), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&late_refused), 0);
    assert_int_equal(lb_loop_call_soon(loop, stop_after_two, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(atomic_load(&late_ran), 2);
    fixture_loop_free(loop);
    pthread_key_delete(late_key);
}

/* After the loop's close returned, its handles, tasks and groups may be
 * released on any thread, on several at once: the releases share the
 * loop's slabs and counts, so they must not race each other (TSan), and
 * the loop they keep is freed once, by the last. Each thread takes and
 * drops extra references and releases its share of every kind. */
#define RELEASERS 2
#define RELEASED_EACH 64

typedef struct released_objects {
    pthread_barrier_t *start;
    lb_handle *handles[RELEASED_EACH];
    lb_task *tasks[RELEASED_EACH / 4];
    lb_group *group;
} released_objects;

static void released_noop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static void set_flag(lb_loop *loop, void *data) {
    (void)loop;
    *(bool *)data = true;
}

static int sleeping_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return lb_sleep(60);
}

static void *release_objects_main(void *data) {
    released_objects *o = data;
    pthread_barrier_wait(o->start);
    for (int i = 0; i < RELEASED_EACH; i++) {
        lb_handle_unref(lb_handle_ref(o->handles[i]));
        lb_handle_unref(o->handles[i]);
    }
    for (int i = 0; i < RELEASED_EACH / 4; i++) {
        lb_task_unref(lb_task_ref(o->tasks[i]));
        lb_task_unref(o->tasks[i]);
    }
    lb_group_unref(lb_group_ref(o->group));
    lb_group_unref(o->group);
    return NULL;
}

static void test_threadsafe_objects_released_on_threads_after_close(void **state) {
    (void)state;
    for (int round = 0; round < 20; round++) {
        lb_loop *loop = fixture_loop_new();
        released_objects objects[RELEASERS];
        pthread_barrier_t start;
        assert_int_equal(pthread_barrier_init(&start, NULL, RELEASERS), 0);
        for (int k = 0; k < RELEASERS; k++) {
            released_objects *o = &objects[k];
            o->start = &start;
            for (int i = 0; i < RELEASED_EACH; i++)
                assert_int_equal(lb_loop_call_later(loop, 60, released_noop, NULL, &o->handles[i]), 0);
            assert_int_equal(lb_group_new(loop, &o->group), 0);
            for (int i = 0; i < RELEASED_EACH / 4; i++)
                assert_int_equal(lb_group_spawn(o->group, sleeping_task, NULL, NULL, &o->tasks[i]),
                                 0);
        }
        bool started = false; /* the tasks are asleep on their stacks */
        assert_int_equal(lb_loop_call_later(loop, 0.01, set_flag, &started, NULL), 0);
        fixture_run_until(loop, &started, 30);
        fixture_loop_free(loop); /* the objects keep it */
        pthread_t threads[RELEASERS];
        for (int k = 0; k < RELEASERS; k++)
            assert_int_equal(pthread_create(&threads[k], NULL, release_objects_main, &objects[k]),
                             0);
        for (int k = 0; k < RELEASERS; k++)
            assert_int_equal(pthread_join(threads[k], NULL), 0);
        pthread_barrier_destroy(&start);
    }
}

int run_threadsafe_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threadsafe_exactly_once),
        cmocka_unit_test(test_threadsafe_wakes_idle_loop),
        cmocka_unit_test(test_threadsafe_closed_loop),
        cmocka_unit_test(test_threadsafe_race_close),
        cmocka_unit_test(test_threadsafe_flood_does_not_starve_timers),
        cmocka_unit_test(test_threadsafe_post_from_exit_destructor),
        cmocka_unit_test(test_threadsafe_objects_released_on_threads_after_close),
    };
    return cmocka_run_group_tests_name("threadsafe", tests, NULL, NULL);
}
