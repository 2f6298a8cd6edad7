/* SPDX-License-Identifier: MIT */
/* Threadsafe posts in bulk: eight threads post while the loop runs, and
 * every accepted callback runs exactly once, in each thread's order. */
#include "stress.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

enum { POSTERS = 8 };

typedef struct flood {
    lb_loop *loop;
    long per_thread;
    long next[POSTERS]; /* the sequence number each thread posts next */
    long ran;
    long out_of_order;
    atomic_long failed_posts;
    atomic_bool go;
    bool all_ran;
} flood;

/* The callback's data is (sequence, thread); the flood is found here. */
static flood *current;

static void on_post(lb_loop *loop, void *data) {
    uintptr_t v = (uintptr_t)data;
    int thread = (int)(v % POSTERS);
    long seq = (long)(v / POSTERS);
    flood *f = current;
    /* Exactly once and in order: each thread's posts arrive as 0, 1, 2,
     * ... with no gap and no repeat. */
    if (seq != f->next[thread])
        f->out_of_order++;
    f->next[thread] = seq + 1;
    if (++f->ran == POSTERS * f->per_thread)
        f->all_ran = true;
    (void)loop;
}

typedef struct poster {
    flood *f;
    int index;
} poster;

static void *poster_main(void *data) {
    poster *p = data;
    flood *f = p->f;
    while (!atomic_load(&f->go))
        sched_yield();
    for (long i = 0; i < f->per_thread; i++) {
        uintptr_t v = (uintptr_t)i * POSTERS + (uintptr_t)p->index;
        if (lb_loop_call_soon_threadsafe(f->loop, on_post, (void *)v) != 0)
            atomic_fetch_add(&f->failed_posts, 1);
    }
    return NULL;
}

static void test_posts_exactly_once_in_order(void **state) {
    (void)state;
    flood f = {.loop = fixture_loop_new(), .per_thread = stress_size(1000000, 1000)};
    current = &f;
    pthread_t th[POSTERS];
    poster p[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        p[i] = (poster){&f, i};
        assert_int_equal(pthread_create(&th[i], NULL, poster_main, &p[i]), 0);
    }
    int64_t t0 = stress_now_ns();
    atomic_store(&f.go, true);
    fixture_run_until(f.loop, &f.all_ran, 300.0);
    double took = (double)(stress_now_ns() - t0) / 1e9;
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    long total = POSTERS * f.per_thread;
    long lost = total - f.ran;
    printf("# posts: %d threads x %ld: %ld run in %.2f s, %.2f M posts/s, lost %ld, out of "
           "order %ld\n",
           POSTERS, f.per_thread, f.ran, took, (double)total / took / 1e6, lost,
           f.out_of_order);
    assert_int_equal(atomic_load(&f.failed_posts), 0);
    assert_int_equal(lost, 0);
    assert_int_equal(f.out_of_order, 0);
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(f.next[i], f.per_thread);
    fixture_loop_free(f.loop);
}

int run_post_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posts_exactly_once_in_order),
    };
    return cmocka_run_group_tests_name("posts", tests, NULL, NULL);
}
