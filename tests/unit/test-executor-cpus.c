/* SPDX-License-Identifier: MIT */
/* The default pool on a machine with more CPUs than its 32 threads: this
 * program answers sysconf(_SC_NPROCESSORS_ONLN) with 64 (the library is
 * linked in statically, so its call comes here), then keeps 40 jobs
 * blocked at once. At most 32 may run together; more would write past the
 * pool's thread table (ASan sees it; the count shows it anywhere). */
#include <loopbridge/loopbridge.h>

#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

long sysconf(int name) {
    if (name == _SC_NPROCESSORS_ONLN || name == _SC_NPROCESSORS_CONF)
        return 64;
    long (*real)(int) = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
    return real(name);
}

enum { JOBS = 40 };
static atomic_int running, most_running, released;

static int blocked_job(void *data, void **ret) {
    (void)data;
    (void)ret;
    int now = atomic_fetch_add(&running, 1) + 1;
    int seen = atomic_load(&most_running);
    while (now > seen && !atomic_compare_exchange_weak(&most_running, &seen, now))
        ;
    /* Held until the test has given the pool time to start every thread
     * it would (generous: the count, not the time, is what is checked). */
    while (!atomic_load(&released)) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_fetch_sub(&running, 1);
    return 0;
}

static void release_jobs(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    atomic_store(&released, 1);
}

static void test_default_pool_caps_threads_past_32_cpus(void **state) {
    (void)state;
    lb_loop *loop = NULL;
    assert_int_equal(lb_loop_new(&loop, lb_driver_native()), 0);
    lb_future *f[JOBS];
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(lb_loop_run_in_executor(loop, NULL, blocked_job, NULL, &f[i]), 0);
    assert_int_equal(lb_loop_call_later(loop, 1.0, release_jobs, NULL, NULL), 0);
    lb_future *all = NULL;
    assert_int_equal(lb_gather(f, JOBS, 0, &all), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, all), 0);
    assert_true(atomic_load(&most_running) <= 32);
    assert_true(atomic_load(&most_running) >= 2);
    lb_future_unref(all);
    for (int i = 0; i < JOBS; i++)
        lb_future_unref(f[i]);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_pool_caps_threads_past_32_cpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
