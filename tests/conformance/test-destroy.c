/* SPDX-License-Identifier: MIT */
/* Destroy notifies: the _full variants of call_soon, call_later, call_at,
 * call_soon_threadsafe and done callbacks run their destroy exactly once,
 * after the callback ran or when it was dropped (cancel, close, refusal,
 * a post racing close), on the thread the headers name. */
#include "fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* One scheduled call: what happened to it, checked at the end. */
typedef struct call {
    atomic_int ran;
    atomic_int destroyed;
    atomic_int destroyed_before_run; /* the destroy came first: a bug */
    pthread_t destroy_thread;
} call;

static void call_cb(lb_loop *loop, void *data) {
    (void)loop;
    call *c = data;
    atomic_fetch_add(&c->ran, 1);
}

static void call_destroy(void *data) {
    call *c = data;
    c->destroy_thread = pthread_self();
    atomic_fetch_add(&c->destroyed, 1);
}

static void future_cb(lb_future *f, void *data) {
    (void)f;
    call_cb(NULL, data);
}

static void stop_cb(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

/* A callback that checks its own destroy has not run yet. */
static void ordered_cb(lb_loop *loop, void *data) {
    call *c = data;
    if (atomic_load(&c->destroyed))
        atomic_fetch_add(&c->destroyed_before_run, 1);
    call_cb(loop, data);
}

static void test_destroy_after_run(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    call c[5] = {0};
    lb_handle *h = NULL;
    assert_int_equal(lb_loop_call_soon_full(loop, ordered_cb, &c[0], call_destroy, NULL), 0);
    assert_int_equal(lb_loop_call_soon_full(loop, ordered_cb, &c[1], call_destroy, &h), 0);
    assert_int_equal(
        lb_loop_call_later_full(loop, 0.001, ordered_cb, &c[2], call_destroy, NULL), 0);
    assert_int_equal(lb_loop_call_at_full(loop, lb_loop_time(loop), ordered_cb, &c[3],
                                          call_destroy, NULL), 0);
    assert_int_equal(lb_loop_call_soon_threadsafe_full(loop, ordered_cb, &c[4], call_destroy), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(atomic_load(&c[i].destroyed), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.05, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(atomic_load(&c[i].ran), 1);
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
        assert_int_equal(atomic_load(&c[i].destroyed_before_run), 0);
        assert_true(pthread_equal(c[i].destroy_thread, pthread_self()));
    }
    /* The caller's reference outlives the call; the destroy ran once. */
    assert_int_equal(lb_handle_cancel(h), 0);
    h = lb_handle_unref(h);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&c[1].destroyed), 1);
}

static void test_destroy_at_cancel(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    call c[3] = {0};
    lb_handle *h[3] = {0};
    assert_int_equal(lb_loop_call_soon_full(loop, call_cb, &c[0], call_destroy, &h[0]), 0);
    assert_int_equal(lb_loop_call_later_full(loop, 3600, call_cb, &c[1], call_destroy, &h[1]), 0);
    assert_int_equal(lb_loop_call_later_full(loop, 0, call_cb, &c[2], call_destroy, &h[2]), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lb_handle_cancel(h[i]), 1);
        /* At cancel time, not later. */
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
        assert_int_equal(lb_handle_cancel(h[i]), 0);
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
    }
    assert_int_equal(lb_loop_call_later(loop, 0.02, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    h[0] = lb_handle_unref(h[0]);
    fixture_loop_free(loop);
    h[1] = lb_handle_unref(h[1]);
    h[2] = lb_handle_unref(h[2]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&c[i].ran), 0);
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
    }
}

enum { AT_CLOSE = 8 };

static void test_destroy_at_close(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    call c[AT_CLOSE] = {0};
    lb_handle *held = NULL;
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_loop_call_soon_full(loop, call_cb, &c[0], call_destroy, NULL), 0);
    assert_int_equal(lb_loop_call_soon_full(loop, call_cb, &c[1], call_destroy, &held), 0);
    assert_int_equal(lb_loop_call_later_full(loop, 3600, call_cb, &c[2], call_destroy, NULL), 0);
    assert_int_equal(lb_loop_call_at_full(loop, 1e9, call_cb, &c[3], call_destroy, NULL), 0);
    assert_int_equal(lb_loop_call_soon_threadsafe_full(loop, call_cb, &c[4], call_destroy), 0);
    assert_int_equal(lb_future_add_done_callback_full(f, future_cb, &c[5], call_destroy), 0);
    assert_int_equal(lb_future_add_done_callback_full(f, future_cb, &c[6], call_destroy), 0);
    assert_int_equal(lb_future_remove_done_callback(f, future_cb, &c[6]), 1);
    assert_int_equal(atomic_load(&c[6].destroyed), 1);
    /* A done future whose callback is queued, not run. */
    lb_future *done = NULL;
    assert_int_equal(lb_future_new(loop, &done), 0);
    assert_int_equal(lb_future_set_result(done, NULL, NULL), 0);
    assert_int_equal(lb_future_add_done_callback_full(done, future_cb, &c[7], call_destroy), 0);
    done = lb_future_unref(done);
    for (int i = 0; i < AT_CLOSE; i++)
        if (i != 6)
            assert_int_equal(atomic_load(&c[i].destroyed), 0);
    assert_int_equal(lb_loop_close(loop), 0);
    for (int i = 0; i < AT_CLOSE; i++) {
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
        assert_true(pthread_equal(c[i].destroy_thread, pthread_self()));
    }
    /* What was queued before close was dropped unrun; the post may run
     * while close lets the cancelled future's callback run, and that
     * callback runs (a cancel completes the future). */
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&c[i].ran), 0);
    assert_true(atomic_load(&c[4].ran) <= 1);
    assert_int_equal(atomic_load(&c[7].ran), 0);
    /* The held reference keeps the handle, not its data. */
    held = lb_handle_unref(held);
    f = lb_future_unref(f);
    lb_loop_unref(loop);
    for (int i = 0; i < AT_CLOSE; i++)
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
}

/* A future freed with its callback still registered drops it. */
static void test_destroy_future_freed(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    call c = {0};
    lb_future *f = NULL;
    assert_int_equal(lb_future_new(loop, &f), 0);
    assert_int_equal(lb_future_add_done_callback_full(f, future_cb, &c, call_destroy), 0);
    assert_int_equal(lb_future_set_result(f, NULL, NULL), 0);
    f = lb_future_unref(f);
    assert_int_equal(lb_loop_call_later(loop, 0.02, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(atomic_load(&c.ran), 1);
    assert_int_equal(atomic_load(&c.destroyed), 1);
    fixture_loop_free(loop);
    assert_int_equal(atomic_load(&c.destroyed), 1);
}

typedef struct off_thread_call {
    lb_loop *loop;
    call c;
    int r;
    pthread_t self;
} off_thread_call;

static void *call_from_other_thread(void *data) {
    off_thread_call *o = data;
    o->self = pthread_self();
    o->r = lb_loop_call_soon_full(o->loop, call_cb, &o->c, call_destroy, NULL);
    return NULL;
}

/* A refused call runs its destroy before it returns, on the caller's
 * thread. */
static void test_destroy_on_refusal(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    off_thread_call o = {.loop = loop};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_from_other_thread, &o), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(o.r, -EPERM);
    assert_int_equal(atomic_load(&o.c.destroyed), 1);
    assert_true(pthread_equal(o.c.destroy_thread, o.self));
    call c[6] = {0};
    assert_int_equal(lb_loop_call_soon_full(loop, NULL, &c[0], call_destroy, NULL), -EINVAL);
    assert_int_equal(lb_loop_call_later_full(loop, 0.0 / 0.0, call_cb, &c[1], call_destroy, NULL),
                     -EINVAL);
    assert_int_equal(lb_future_add_done_callback_full(NULL, future_cb, &c[2], call_destroy),
                     -EINVAL);
    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(lb_loop_call_soon_full(loop, call_cb, &c[3], call_destroy, NULL), -EBADF);
    assert_int_equal(lb_loop_call_at_full(loop, 0, call_cb, &c[4], call_destroy, NULL), -EBADF);
    assert_int_equal(lb_loop_call_soon_threadsafe_full(loop, call_cb, &c[5], call_destroy), -EBADF);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(atomic_load(&c[i].ran), 0);
        assert_int_equal(atomic_load(&c[i].destroyed), 1);
        assert_true(pthread_equal(c[i].destroy_thread, pthread_self()));
    }
    lb_loop_unref(loop);
    /* NULL destroy: the plain call. */
    loop = fixture_loop_new();
    call d = {0};
    assert_int_equal(lb_loop_call_soon_full(loop, call_cb, &d, NULL, NULL), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, stop_cb, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(atomic_load(&d.ran), 1);
    fixture_loop_free(loop);
}

/* Posts from 8 threads racing close: each poster posts records it
 * allocated until the loop refuses one. Every destroy frees its record
 * (ASan and valgrind catch a second one, and a missing one leaks), runs
 * on the main thread (which runs and closes the loop) or, for a refused
 * post, on its poster, and the counts add up. */
enum { RACERS = 8 };

static _Thread_local int thread_index; /* 0: the main thread */
static atomic_long race_ran, race_destroyed, race_wrong_thread;

typedef struct race_post {
    int poster;
    bool ran;
} race_post;

static void race_cb(lb_loop *loop, void *data) {
    race_post *p = data;
    p->ran = true;
    if (atomic_fetch_add(&race_ran, 1) == 100)
        lb_loop_stop(loop);
}

static void race_destroy(void *data) {
    race_post *p = data;
    if (thread_index != 0 && thread_index != p->poster)
        atomic_fetch_add(&race_wrong_thread, 1);
    atomic_fetch_add(&race_destroyed, 1);
    free(p);
}

typedef struct racer {
    lb_loop *loop;
    int index;
    atomic_int *go;
    long accepted, refused, failed;
} racer;

static void *racer_main(void *data) {
    racer *r = data;
    thread_index = r->index;
    while (!atomic_load(r->go))
        ;
    for (;;) {
        race_post *p = malloc(sizeof *p);
        if (!p) {
            r->failed++;
            break;
        }
        *p = (race_post){r->index, false};
        int e = lb_loop_call_soon_threadsafe_full(r->loop, race_cb, p, race_destroy);
        if (e == -EBADF) {
            r->refused++;
            break;
        }
        if (e == 0)
            r->accepted++;
        else if (e != -ENOMEM)
            r->failed++;
    }
    return NULL;
}

static void test_destroy_posts_racing_close(void **state) {
    (void)state;
    atomic_store(&race_ran, 0);
    atomic_store(&race_destroyed, 0);
    atomic_store(&race_wrong_thread, 0);
    lb_loop *loop = fixture_loop_new();
    atomic_int go = 0;
    racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer){loop, i + 1, &go, 0, 0, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    atomic_store(&go, 1);
    /* Run until a hundred posts ran, then close under the posters. */
    assert_int_equal(lb_loop_call_later(loop, 30, stop_cb, NULL, NULL), 0); /* a bound */
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_true(atomic_load(&race_ran) > 100);
    assert_int_equal(lb_loop_close(loop), 0);
    long accepted = 0, refused = 0;
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(racers[i].failed, 0);
        assert_int_equal(racers[i].refused, 1);
        accepted += racers[i].accepted;
        refused += racers[i].refused;
    }
    lb_loop_unref(loop);
    assert_int_equal(atomic_load(&race_wrong_thread), 0);
    assert_int_equal(atomic_load(&race_destroyed), accepted + refused);
    assert_true(atomic_load(&race_ran) <= accepted);
}

int run_destroy_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destroy_after_run),
        cmocka_unit_test(test_destroy_at_cancel),
        cmocka_unit_test(test_destroy_at_close),
        cmocka_unit_test(test_destroy_future_freed),
        cmocka_unit_test(test_destroy_on_refusal),
        cmocka_unit_test(test_destroy_posts_racing_close),
    };
    return cmocka_run_group_tests_name("destroy", tests, NULL, NULL);
}
