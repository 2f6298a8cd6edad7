/* SPDX-License-Identifier: MIT */
#ifndef LB_STRESS_H
#define LB_STRESS_H

/* The stress suite: the loop under load, faults and races, on the driver
 * LB_DRIVER names (meson runs it once per driver). Sizes are the full
 * ones unless LB_STRESS_SCALE (a fraction, e.g. 0.05 under TSan) says
 * otherwise. Figures are printed as "# ..." lines; correctness never
 * depends on timing. */

#include "fixture.h"

#include <stdint.h>

/* full * LB_STRESS_SCALE, at least `least`. */
long stress_size(long full, long least);

/* True unless running under valgrind: measured figures are asserted
 * only then, and only with wide margins. */
bool stress_timing_checked(void);

/* A small deterministic generator (xorshift64*), one per test. */
typedef struct stress_rng {
    uint64_t s;
} stress_rng;

static inline uint64_t stress_next(stress_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

/* A value in [0, n). */
static inline uint64_t stress_below(stress_rng *r, uint64_t n) {
    return stress_next(r) % n;
}

/* Monotonic nanoseconds. */
int64_t stress_now_ns(void);

/* The groups, one per file. Each returns its failure count. */
int run_post_stress(void);
int run_close_race_stress(void);
int run_timer_stress(void);
int run_task_stress(void);
int run_fd_stress(void);
int run_signal_stress(void);
int run_destroy_race_stress(void);

#endif
