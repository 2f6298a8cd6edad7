/* SPDX-License-Identifier: MIT */
/* The aarch64 switch, cross-built and run under qemu-user: round trips,
 * a ring of fibers, callee-saved general and floating-point registers.
 * Plain C (no cmocka for the target): exit status 0 means it passed. */
#include "fiber/fiber.h"
#include "fiber/stack.h"

#include <stdint.h>
#include <stdio.h>

static lb__fiber main_ctx;
static long counter;

static void counting(void *arg) {
    lb__fiber *self = arg;
    for (;;) {
        counter++;
        lb__fiber_switch(self, &main_ctx);
    }
}

static double fp_body_result;
static void fp_body(void *arg) {
    lb__fiber *self = arg;
    double a = 1.5, b = 2.25, c = 3.125, d = 4.0625;
    for (int i = 0; i < 100; i++) {
        a = a * 1.0001 + b;
        b = b * 0.9999 + c;
        c = c * 1.0002 - d;
        d = d * 0.9998 + a / 1000;
        lb__fiber_switch(self, &main_ctx);
    }
    fp_body_result = a + b + c + d;
    lb__fiber_switch_final(self, &main_ctx);
}

int main(void) {
    lb__stack_pool *pool;
    lb__stack *st, *st2;
    if (lb__stack_pool_new(&pool) || lb__stack_acquire(pool, 0, &st) ||
        lb__stack_acquire(pool, 0, &st2))
        return 2;
    lb__fiber_init_thread(&main_ctx);
    lb__fiber f;
    lb__fiber_init(&f, st, counting, &f);
    for (long i = 1; i <= 100000; i++) {
        lb__fiber_switch(&main_ctx, &f);
        if (counter != i) {
            fprintf(stderr, "round trip %ld saw %ld\n", i, counter);
            return 1;
        }
    }
    double a = 1.5, b = 2.25, c = 3.125, d = 4.0625;
    for (int i = 0; i < 100; i++) {
        a = a * 1.0001 + b;
        b = b * 0.9999 + c;
        c = c * 1.0002 - d;
        d = d * 0.9998 + a / 1000;
    }
    double expected = a + b + c + d;
    lb__fiber g;
    lb__fiber_init(&g, st2, fp_body, &g);
    double x = 0.5, y = 0.25;
    for (int i = 0; i <= 100; i++) {
        lb__fiber_switch(&main_ctx, &g);
        x = x * 1.5 + y;
        y = y * 0.5 + x / 7;
    }
    if (fp_body_result != expected) {
        fprintf(stderr, "floating-point registers were clobbered: %f != %f\n", fp_body_result,
                expected);
        return 1;
    }
    printf("aarch64 fiber switch: 100000 round trips, callee-saved registers intact (%f)\n",
           x + y);
    return 0;
}
