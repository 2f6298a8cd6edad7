/* SPDX-License-Identifier: MIT */
#include "clock.h"

#include <stdatomic.h>

int64_t lb__clock_coarse_lag_ns(void) {
#ifdef LB_TEST_CLOCK
    return 0; /* the coarse clock is the test clock */
#endif
    /* 0 means "not computed yet"; any thread may compute it, and every
     * one finds the same value. */
    static atomic_llong lag;
    int64_t v = atomic_load_explicit(&lag, memory_order_relaxed);
    if (v)
        return v;
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
        v = 2 * ((int64_t)res.tv_sec * 1000000000 + res.tv_nsec);
#endif
    if (v <= 0)
        v = 1; /* the coarse clock is the precise one */
    atomic_store_explicit(&lag, v, memory_order_relaxed);
    return v;
}
