/* SPDX-License-Identifier: MIT */
/* The context switch alone: round trips, ordering among fibers, many
 * fibers, floating-point modes and callee-saved registers. */
#include "fiber/fiber.h"
#include "fiber/stack.h"

#include <fenv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>

static lb__fiber main_ctx;

typedef struct pingpong {
    lb__fiber self;
    long count;
    long limit;
} pingpong;

static void pingpong_body(void *arg) {
    pingpong *p = arg;
    while (p->count < p->limit) {
        p->count++;
        lb__fiber_switch(&p->self, &main_ctx);
    }
    lb__fiber_switch_final(&p->self, &main_ctx);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_fiber_million_round_trips(void **state) {
    (void)state;
    lb__stack_pool *pool;
    lb__stack *st;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    assert_int_equal(lb__stack_acquire(pool, 0, &st), 0);
    lb__fiber_init_thread(&main_ctx);
    pingpong p = {.limit = 1000000};
    lb__fiber_init(&p.self, st, pingpong_body, &p);
    double t0 = now();
    long rounds = 0;
    while (p.count < p.limit) {
        lb__fiber_switch(&main_ctx, &p.self);
        rounds++;
        assert_int_equal(p.count, rounds);
    }
    lb__fiber_switch(&main_ctx, &p.self); /* let it finish */
    double dt = now() - t0;
    printf("# %.1f ns per switch\n", dt * 1e9 / (2.0 * (double)rounds));
    lb__fiber_destroy(&p.self);
    lb__stack_release(pool, st);
    lb__stack_pool_free(pool);
}

/* Three fibers pass control around a ring in a fixed order. */
typedef struct ring {
    lb__fiber self;
    struct ring *next;
    int id;
    int *log;
    int *n;
    int laps;
} ring;

static void ring_body(void *arg) {
    ring *r = arg;
    for (int lap = 0; lap < r->laps; lap++) {
        r->log[(*r->n)++] = r->id;
        lb__fiber_switch(&r->self, r->id == 2 ? &main_ctx : &r->next->self);
    }
    lb__fiber_switch_final(&r->self, &main_ctx);
}

static void test_fiber_ring_order(void **state) {
    (void)state;
    lb__stack_pool *pool;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    lb__fiber_init_thread(&main_ctx);
    int log[64], n = 0;
    ring r[3];
    lb__stack *st[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lb__stack_acquire(pool, 0, &st[i]), 0);
        r[i] = (ring){.next = &r[(i + 1) % 3], .id = i, .log = log, .n = &n, .laps = 5};
        lb__fiber_init(&r[i].self, st[i], ring_body, &r[i]);
    }
    for (int lap = 0; lap < 5; lap++)
        lb__fiber_switch(&main_ctx, &r[0].self);
    assert_int_equal(n, 15);
    for (int i = 0; i < 15; i++)
        assert_int_equal(log[i], i % 3);
    /* Each fiber finishes when resumed once more. */
    for (int i = 0; i < 3; i++) {
        lb__fiber_switch(&main_ctx, &r[i].self);
        lb__fiber_destroy(&r[i].self);
        lb__stack_release(pool, st[i]);
    }
    lb__stack_pool_free(pool);
}

typedef struct parked {
    lb__fiber self;
    int state;
} parked;

static void parked_body(void *arg) {
    parked *p = arg;
    p->state = 1;
    lb__fiber_switch(&p->self, &main_ctx);
    p->state = 2;
    lb__fiber_switch_final(&p->self, &main_ctx);
}

static void test_fiber_ten_thousand(void **state) {
    (void)state;
    enum { N = 10000 };
    lb__stack_pool *pool;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    lb__fiber_init_thread(&main_ctx);
    parked *p = calloc(N, sizeof *p);
    lb__stack **st = calloc(N, sizeof *st);
    for (int i = 0; i < N; i++) {
        assert_int_equal(lb__stack_acquire(pool, 0, &st[i]), 0);
        lb__fiber_init(&p[i].self, st[i], parked_body, &p[i]);
        lb__fiber_switch(&main_ctx, &p[i].self);
        assert_int_equal(p[i].state, 1);
    }
    assert_int_equal(lb__stack_pool_count(pool), N);
    for (int i = N; i-- > 0;) {
        lb__fiber_switch(&main_ctx, &p[i].self);
        assert_int_equal(p[i].state, 2);
        lb__fiber_destroy(&p[i].self);
        lb__stack_release(pool, st[i]);
    }
    assert_int_equal(lb__stack_pool_count(pool), 0);
    free(p);
    free(st);
    lb__stack_pool_free(pool);
}

/* Floating-point modes belong to each context. */
typedef struct fp {
    lb__fiber self;
    int seen_round;
} fp;

static void fp_body(void *arg) {
    fp *f = arg;
    fesetround(FE_UPWARD);
    lb__fiber_switch(&f->self, &main_ctx);
    f->seen_round = fegetround();
    lb__fiber_switch_final(&f->self, &main_ctx);
}

static void test_fiber_floating_point_modes(void **state) {
    (void)state;
    lb__stack_pool *pool;
    lb__stack *st;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    assert_int_equal(lb__stack_acquire(pool, 0, &st), 0);
    lb__fiber_init_thread(&main_ctx);
    fesetround(FE_TONEAREST);
    fp f = {0};
    lb__fiber_init(&f.self, st, fp_body, &f);
    lb__fiber_switch(&main_ctx, &f.self);
    /* The fiber's rounding mode did not leak into main. */
    assert_int_equal(fegetround(), FE_TONEAREST);
    fesetround(FE_DOWNWARD);
    lb__fiber_switch(&main_ctx, &f.self);
    /* Nor main's into the fiber. */
    assert_int_equal(f.seen_round, FE_UPWARD);
    assert_int_equal(fegetround(), FE_DOWNWARD);
    fesetround(FE_TONEAREST);
    lb__fiber_destroy(&f.self);
    lb__stack_release(pool, st);
    lb__stack_pool_free(pool);
}

/* Values the compiler keeps in callee-saved registers across a switch
 * survive it: a long computation interleaved with switches gives the
 * same result as without them. */
typedef struct regs {
    lb__fiber self;
    uint64_t result;
} regs;

static uint64_t mix(uint64_t a, uint64_t b) {
    return (a ^ (b << 7)) * 0x9E3779B97F4A7C15ULL + (b >> 3);
}

static void regs_body(void *arg) {
    regs *r = arg;
    uint64_t a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
    for (int i = 0; i < 1000; i++) {
        a = mix(a, f);
        b = mix(b, a);
        c = mix(c, b);
        d = mix(d, c);
        e = mix(e, d);
        f = mix(f, e);
        lb__fiber_switch(&r->self, &main_ctx);
    }
    r->result = a ^ b ^ c ^ d ^ e ^ f;
    lb__fiber_switch_final(&r->self, &main_ctx);
}

static void test_fiber_callee_saved_registers(void **state) {
    (void)state;
    uint64_t a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
    for (int i = 0; i < 1000; i++) {
        a = mix(a, f);
        b = mix(b, a);
        c = mix(c, b);
        d = mix(d, c);
        e = mix(e, d);
        f = mix(f, e);
    }
    uint64_t expected = a ^ b ^ c ^ d ^ e ^ f;
    lb__stack_pool *pool;
    lb__stack *st;
    assert_int_equal(lb__stack_pool_new(&pool), 0);
    assert_int_equal(lb__stack_acquire(pool, 0, &st), 0);
    lb__fiber_init_thread(&main_ctx);
    regs r = {0};
    lb__fiber_init(&r.self, st, regs_body, &r);
    uint64_t x = 11, y = 13, z = 17;
    for (int i = 0; i <= 1000; i++) {
        lb__fiber_switch(&main_ctx, &r.self);
        x = mix(x, y);
        y = mix(y, z);
        z = mix(z, x);
    }
    assert_true(r.result == expected);
    (void)(x + y + z);
    lb__fiber_destroy(&r.self);
    lb__stack_release(pool, st);
    lb__stack_pool_free(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fiber_million_round_trips),
        cmocka_unit_test(test_fiber_ring_order),
        cmocka_unit_test(test_fiber_ten_thousand),
        cmocka_unit_test(test_fiber_floating_point_modes),
        cmocka_unit_test(test_fiber_callee_saved_registers),
    };
    return cmocka_run_group_tests_name("fiber", tests, NULL, NULL);
}
