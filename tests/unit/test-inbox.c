/* SPDX-License-Identifier: MIT */
/* The inbox alone: passes and order, lanes of threads that exit, many
 * inboxes per thread, close dropping what was not run, and posts racing
 * the close. */
#include "inbox.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static atomic_int dropped;
static void drop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    atomic_fetch_add(&dropped, 1);
}

static uintptr_t next_data(lb__inbox *in) {
    lb__post p = {0};
    assert_true(lb__inbox_next(in, &p));
    return (uintptr_t)p.data;
}

static size_t count_lanes(const lb__inbox *in) {
    size_t n = 0;
    for (lb__lane *l = atomic_load(&in->lanes); l; l = atomic_load(&l->next))
        n++;
    return n;
}

static void test_inbox_pass_takes_what_was_published(void **state) {
    (void)state;
    lb__inbox in;
    lb__post p = {0};
    assert_int_equal(lb__inbox_init(&in), 0);
    assert_false(lb__inbox_has_work(&in));
    assert_int_equal(lb__inbox_post(&in, nop, (void *)1, NULL), 0);
    assert_int_equal(lb__inbox_post(&in, nop, (void *)2, NULL), 0);
    assert_true(lb__inbox_has_work(&in));
    lb__inbox_begin(&in);
    /* Posts after the pass began wait for the next pass. */
    assert_int_equal(lb__inbox_post(&in, nop, (void *)3, NULL), 0);
    assert_int_equal(next_data(&in), 1);
    assert_int_equal(next_data(&in), 2);
    assert_false(lb__inbox_next(&in, &p));
    assert_true(lb__inbox_has_work(&in));
    lb__inbox_begin(&in);
    assert_int_equal(next_data(&in), 3);
    assert_false(lb__inbox_next(&in, &p));
    assert_false(lb__inbox_has_work(&in));
    lb__inbox_close(&in, NULL);
    lb__inbox_destroy(&in, NULL);
}

static void test_inbox_order_across_segments(void **state) {
    (void)state;
    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    const uintptr_t n = 5 * LB__LANE_SEGMENT_POSTS + 3;
    for (int round = 0; round < 3; round++) {
        for (uintptr_t i = 0; i < n; i++)
            assert_int_equal(lb__inbox_post(&in, nop, (void *)i, NULL), 0);
        lb__inbox_begin(&in);
        for (uintptr_t i = 0; i < n; i++)
            assert_int_equal(next_data(&in), i);
    }
    lb__inbox_close(&in, NULL);
    lb__inbox_destroy(&in, NULL);
}

static void test_inbox_close_drops(void **state) {
    (void)state;
    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb__inbox_post(&in, nop, NULL, drop), 0);
    lb__inbox_begin(&in);
    for (int i = 0; i < 4; i++) /* four ran */
        next_data(&in);
    for (int i = 0; i < 5; i++)
        assert_int_equal(lb__inbox_post(&in, nop, NULL, drop), 0);
    atomic_store(&dropped, 0);
    lb__inbox_close(&in, NULL);
    assert_int_equal(atomic_load(&dropped), 6 + 5);
    assert_int_equal(lb__inbox_post(&in, nop, NULL, drop), -EBADF);
    assert_int_equal(atomic_load(&dropped), 11);
    lb__inbox_destroy(&in, NULL);
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

enum { PRODUCERS = 4, PER = 100000 };

typedef struct producer {
    lb__inbox *in;
    uintptr_t id;
} producer;

static void *produce(void *data) {
    producer *p = data;
    for (uintptr_t i = 0; i < PER; i++)
        assert_int_equal(lb__inbox_post(p->in, nop, (void *)(i * PRODUCERS + p->id), NULL), 0);
    return NULL;
}

static void test_inbox_concurrent_exactly_once(void **state) {
    (void)state;
    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    pthread_t th[PRODUCERS];
    producer p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (producer){&in, (uintptr_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    uint8_t *seen = calloc((size_t)PRODUCERS * PER, 1);
    long last[PRODUCERS] = {-1, -1, -1, -1};
    long total = 0;
    lb__post post;
    while (total < (long)PRODUCERS * PER) {
        lb__inbox_begin(&in);
        while (lb__inbox_next(&in, &post)) {
            uintptr_t v = (uintptr_t)post.data;
            assert_int_equal(seen[v]++, 0);
            long seq = (long)(v / PRODUCERS);
            assert_true(seq > last[v % PRODUCERS]);
            last[v % PRODUCERS] = seq;
            total++;
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    free(seen);
    /* The producers exited: their lanes go once drained (some may have
     * gone already, while the loop was still taking posts). */
    assert_true(count_lanes(&in) <= PRODUCERS);
    for (int i = 0; i < 64; i++)
        lb__inbox_begin(&in);
    assert_int_equal(count_lanes(&in), 0);
    lb__inbox_close(&in, NULL);
    lb__inbox_destroy(&in, NULL);
}

/* One thread posting to more inboxes than its lane cache holds: each
 * inbox still gets its posts in order, and replaced lanes are reaped. */
enum { INBOXES = 7, ROUNDS = 300 };

static void *post_to_many(void *data) {
    lb__inbox *in = data;
    for (uintptr_t r = 0; r < ROUNDS; r++)
        for (int i = 0; i < INBOXES; i++)
            assert_int_equal(lb__inbox_post(&in[i], nop, (void *)r, NULL), 0);
    return NULL;
}

static void test_inbox_many_inboxes_per_thread(void **state) {
    (void)state;
    lb__inbox in[INBOXES];
    for (int i = 0; i < INBOXES; i++)
        assert_int_equal(lb__inbox_init(&in[i]), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_to_many, in), 0);
    pthread_join(th, NULL);
    for (int i = 0; i < INBOXES; i++) {
        lb__inbox_begin(&in[i]);
        for (uintptr_t r = 0; r < ROUNDS; r++)
            assert_int_equal(next_data(&in[i]), r);
        lb__post p;
        assert_false(lb__inbox_next(&in[i], &p));
        for (int k = 0; k < 64; k++)
            lb__inbox_begin(&in[i]);
        assert_int_equal(count_lanes(&in[i]), 0);
        lb__inbox_close(&in[i], NULL);
        lb__inbox_destroy(&in[i], NULL);
    }
}

/* Posts racing the close: each accepted post is run or dropped exactly
 * once, each refused one never. */
typedef struct racer {
    lb__inbox *in;
    atomic_int *accepted;
    atomic_bool *go;
} racer;

static void *race(void *data) {
    racer *r = data;
    while (!atomic_load(r->go))
        ;
    while (lb__inbox_post(r->in, nop, NULL, drop) == 0)
        atomic_fetch_add(r->accepted, 1);
    return NULL;
}

static void test_inbox_posts_racing_close(void **state) {
    (void)state;
    for (int round = 0; round < 200; round++) {
        lb__inbox in;
        assert_int_equal(lb__inbox_init(&in), 0);
        atomic_int accepted = 0;
        atomic_bool go = false;
        racer r = {&in, &accepted, &go};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, race, &r), 0);
        atomic_store(&dropped, 0);
        atomic_store(&go, true);
        int ran = 0;
        lb__post p;
        for (int k = 0; k < round % 13; k++) {
            lb__inbox_begin(&in);
            while (lb__inbox_next(&in, &p))
                ran++;
        }
        lb__inbox_close(&in, NULL);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        assert_int_equal(ran + atomic_load(&dropped), atomic_load(&accepted));
        lb__inbox_destroy(&in, NULL);
        assert_int_equal(ran + atomic_load(&dropped), atomic_load(&accepted));
    }
}

/* A post made by a thread-exit destructor that runs after the inbox let
 * go of the thread's lanes: the lane it needs is freed with the others
 * (it was owned by a thread that would never let go of it). */
static lb__inbox *late_inbox;
static pthread_key_t late_key;
static atomic_int late_posts;

static void post_from_destructor(void *value) {
    (void)value;
    if (lb__inbox_post(late_inbox, nop, (void *)2, NULL) == 0)
        atomic_fetch_add(&late_posts, 1);
}

static void *late_poster(void *data) {
    assert_int_equal(lb__inbox_post(data, nop, (void *)1, NULL), 0);
    /* A key made after the inbox's own: its destructor runs after. */
    pthread_setspecific(late_key, data);
    return NULL;
}

static void test_inbox_post_from_exit_destructor(void **state) {
    (void)state;
    /* The inbox's thread-exit key exists once any thread posted. */
    lb__inbox scratch;
    assert_int_equal(lb__inbox_init(&scratch), 0);
    assert_int_equal(lb__inbox_post(&scratch, nop, NULL, NULL), 0);
    lb__inbox_destroy(&scratch, NULL);
    assert_int_equal(pthread_key_create(&late_key, post_from_destructor), 0);

    lb__inbox in;
    assert_int_equal(lb__inbox_init(&in), 0);
    late_inbox = &in;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_poster, &in), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&late_posts), 1);
    /* Both posts run, and the lanes of the exited thread are reaped. */
    int seen = 0;
    for (int pass = 0; pass < 256 && count_lanes(&in) > 0; pass++) {
        lb__post p;
        lb__inbox_begin(&in);
        while (lb__inbox_next(&in, &p))
            seen++;
    }
    assert_int_equal(seen, 2);
    assert_int_equal(count_lanes(&in), 0);
    lb__inbox_destroy(&in, NULL);
    pthread_key_delete(late_key);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbox_pass_takes_what_was_published),
        cmocka_unit_test(test_inbox_order_across_segments),
        cmocka_unit_test(test_inbox_close_drops),
        cmocka_unit_test(test_inbox_concurrent_exactly_once),
        cmocka_unit_test(test_inbox_many_inboxes_per_thread),
        cmocka_unit_test(test_inbox_posts_racing_close),
        cmocka_unit_test(test_inbox_post_from_exit_destructor),
    };
    return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
