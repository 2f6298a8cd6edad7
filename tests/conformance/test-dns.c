/* SPDX-License-Identifier: MIT */
/* lb_getaddrinfo: names on the executor, numbers at once, errors, and
 * cancellation of a queued and of a running lookup without leaks. */
#include "fixture.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>

/* Exported by the library for tests: runs before each threaded lookup. */
void lb__test_dns_before_lookup(void (*hook)(void *), void *data);

static atomic_int lookups_started;
static atomic_bool hold_lookups;

/* Held lookups wait for a release in the order they were held: each takes
 * a ticket and waits until that many releases were made. A semaphore would
 * not do: a release wakes one waiter, but a lookup that starts before the
 * woken one runs can take the count first, and the wrong lookup goes on
 * (valgrind's scheduler made that happen). */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_changed = PTHREAD_COND_INITIALIZER;
static unsigned held, released;

static void release_lookup(void) {
    pthread_mutex_lock(&hold_lock);
    released++;
    pthread_cond_broadcast(&hold_changed);
    pthread_mutex_unlock(&hold_lock);
}

/* Whether to hold is read before the lookup is counted: the test releases
 * once it saw the count, and may clear hold_lookups right after, so
 * reading it later could skip the wait and leave the release for the next
 * held lookup. */
static void count_lookup(void *data) {
    (void)data;
    bool hold = atomic_load(&hold_lookups);
    pthread_mutex_lock(&hold_lock);
    unsigned ticket = hold ? ++held : 0;
    pthread_mutex_unlock(&hold_lock);
    atomic_fetch_add(&lookups_started, 1);
    pthread_mutex_lock(&hold_lock);
    while (released < ticket)
        pthread_cond_wait(&hold_changed, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
}

static int dns_setup(void **state) {
    (void)state;
    atomic_store(&lookups_started, 0);
    atomic_store(&hold_lookups, false);
    held = released = 0;
    lb__test_dns_before_lookup(count_lookup, NULL);
    return 0;
}

static int dns_teardown(void **state) {
    (void)state;
    lb__test_dns_before_lookup(NULL, NULL);
    return 0;
}

typedef struct query {
    const char *host, *service;
    int family;
    double timeout;
    int status;
    bool has_v4_loopback, has_v6_loopback;
    int port;
    int count;
} query;

static int query_task(lb_task *t, void *data) {
    query *q = data;
    (void)t;
    struct addrinfo hints = {.ai_family = q->family, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    q->status = lb_getaddrinfo(q->host, q->service, &hints, q->timeout, &res);
    if (q->status < 0)
        return q->status;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        q->count++;
        if (a->ai_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)a->ai_addr;
            q->has_v4_loopback |= in->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
            q->port = ntohs(in->sin_port);
        } else if (a->ai_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a->ai_addr;
            q->has_v6_loopback |= IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
            q->port = ntohs(in6->sin6_port);
        }
    }
    freeaddrinfo(res);
    return 0;
}

static void test_dns_localhost(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    query q = {.host = "localhost", .service = "8080", .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &q), 60), 0);
    assert_true(q.count >= 1);
    assert_true(q.has_v4_loopback || q.has_v6_loopback);
    assert_int_equal(q.port, 8080);
    assert_int_equal(atomic_load(&lookups_started), 1); /* on the executor */
    /* Service names are looked up too. */
    query s = {.host = "localhost", .service = "http", .family = AF_INET, .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &s), 60), 0);
    assert_true(s.has_v4_loopback);
    assert_int_equal(s.port, 80);
    fixture_loop_free(loop);
}

/* Numbers need no lookup: answered at once, no thread involved. */
static void test_dns_numeric_at_once(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    query q4 = {.host = "127.0.0.1", .service = "9", .timeout = -1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &q4), 10), 0);
    assert_true(q4.has_v4_loopback);
    assert_int_equal(q4.count, 1);
    query q6 = {.host = "::1", .service = NULL, .timeout = -1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &q6), 10), 0);
    assert_true(q6.has_v6_loopback);
    assert_int_equal(atomic_load(&lookups_started), 0);
    fixture_loop_free(loop);
}

static void test_dns_errors(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    query bad_service = {.host = "localhost", .service = "no-such-service-lb", .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &bad_service), 60),
                     -ENXIO);
    assert_non_null(strstr(lb_error_detail(), "no-such-service-lb"));
    query neither = {.timeout = 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &neither), 10), -EINVAL);
    struct addrinfo *res = NULL;
    assert_int_equal(lb_getaddrinfo("localhost", NULL, NULL, -1, &res), -EPERM);
    assert_null(res);
    fixture_loop_free(loop);
}

static int block_worker(void *data, void **ret) {
    (void)ret;
    sem_wait(data);
    return 0;
}

typedef struct cancel_run {
    lb_task *lookup;
    query *q;
    int lookups_when_cancelled;
} cancel_run;

static int cancel_once_running(lb_task *t, void *data) {
    cancel_run *c = data;
    (void)t;
    while (atomic_load(&lookups_started) == 0)
        lb_sleep(0.002);
    lb_task_cancel(c->lookup);
    /* The task returns without waiting for the lookup it abandoned. */
    int r = lb_await(lb_task_future(c->lookup), NULL);
    c->lookups_when_cancelled = atomic_load(&lookups_started);
    release_lookup();
    return r == -ECANCELED ? 0 : -EPROTO;
}

/* Cancelled while getaddrinfo runs: -ECANCELED at once; the lookup ends
 * on its thread later and its result is freed then (ASan and valgrind
 * check that nothing leaks). */
static void test_dns_cancel_running_lookup(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    atomic_store(&hold_lookups, true);
    query q = {.host = "localhost", .service = "80", .timeout = -1};
    lb_task *lookup = fixture_spawn(loop, query_task, &q);
    cancel_run c = {.lookup = lookup, .q = &q};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, cancel_once_running, &c), 30), 0);
    assert_int_equal(fixture_finish(loop, lookup, 10), -ECANCELED);
    assert_int_equal(q.status, -ECANCELED);
    assert_int_equal(c.lookups_when_cancelled, 1);
    /* The loop keeps resolving. */
    atomic_store(&hold_lookups, false);
    query again = {.host = "localhost", .service = "80", .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &again), 60), 0);
    /* The timeout behaves the same way. */
    atomic_store(&hold_lookups, true);
    query slow = {.host = "localhost", .service = "80", .timeout = 0.02};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &slow), 30), -ETIMEDOUT);
    release_lookup();
    fixture_loop_free(loop); /* waits for the abandoned lookups to end */
}

/* Cancelled before its job started: the job is withdrawn and never
 * runs. */
static void test_dns_cancel_queued_lookup(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *one = NULL;
    assert_int_equal(lb_executor_new(&one, 1), 0);
    assert_int_equal(lb_loop_set_default_executor(loop, one), 0);
    sem_t gate;
    sem_init(&gate, 0, 0);
    lb_future *blocker = NULL;
    assert_int_equal(lb_loop_run_in_executor(loop, NULL, block_worker, &gate, &blocker), 0);
    query q = {.host = "localhost", .service = "80", .timeout = 0.05};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &q), 30), -ETIMEDOUT);
    sem_post(&gate);
    assert_int_equal(lb_loop_run_until_complete(loop, blocker), 0);
    lb_future_unref(blocker);
    query after = {.host = "localhost", .service = "80", .timeout = 30};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, query_task, &after), 60), 0);
    assert_int_equal(atomic_load(&lookups_started), 1); /* only the second */
    fixture_loop_free(loop);
    lb_executor_unref(one);
    sem_destroy(&gate);
}

static int square_job(void *data, void **ret) {
    intptr_t x = (intptr_t)data;
    *ret = (void *)(x * x);
    return 0;
}

typedef struct to_thread_run {
    int status;
    intptr_t value;
} to_thread_run;

static int to_thread_task(lb_task *t, void *data) {
    to_thread_run *r = data;
    void *v = NULL;
    (void)t;
    r->status = lb_to_thread(square_job, (void *)9, &v);
    r->value = (intptr_t)v;
    return 0;
}

/* More lookups than the default pool has threads hang (a resolver that
 * does not answer): lookups take at most half the pool, so lb_to_thread
 * still finds a thread. The held lookups then end. */
#define HUNG_LOOKUPS 40 /* more than the default pool's largest size */

static void test_dns_hung_lookups_leave_threads(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    atomic_store(&hold_lookups, true);
    query qs[HUNG_LOOKUPS];
    lb_task *lookups[HUNG_LOOKUPS];
    for (int i = 0; i < HUNG_LOOKUPS; i++) {
        qs[i] = (query){.host = "localhost", .service = "80", .timeout = -1};
        lookups[i] = fixture_spawn(loop, query_task, &qs[i]);
    }
    /* Spawned last, it submits its job behind every lookup. */
    to_thread_run r = {.status = 1};
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, to_thread_task, &r), 30), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.value, 81);
    int started = atomic_load(&lookups_started);
    assert_true(started >= 1 && started < HUNG_LOOKUPS);
    /* One release per lookup: a lookup may hold after started was read. */
    atomic_store(&hold_lookups, false);
    for (int i = 0; i < HUNG_LOOKUPS; i++)
        release_lookup();
    for (int i = 0; i < HUNG_LOOKUPS; i++)
        assert_int_equal(fixture_finish(loop, lookups[i], 60), 0);
    fixture_loop_free(loop);
}

static int wait_lookup_started(lb_task *t, void *data) {
    (void)t;
    (void)data;
    while (atomic_load(&lookups_started) == 0)
        lb_sleep(0.002);
    return 0;
}

/* A lookup queued behind the share of lookups (one of a pool of two
 * threads) is cancelled at once by a shutdown that cancels what has not
 * started, without waiting for the running lookup to end. */
static void test_dns_shutdown_cancels_queued_lookup(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    lb_executor *two = NULL;
    assert_int_equal(lb_executor_new(&two, 2), 0);
    assert_int_equal(lb_loop_set_default_executor(loop, two), 0);
    atomic_store(&hold_lookups, true);
    query running = {.host = "localhost", .service = "80", .timeout = -1};
    query queued = {.host = "localhost", .service = "80", .timeout = -1};
    lb_task *first = fixture_spawn(loop, query_task, &running);
    lb_task *second = fixture_spawn(loop, query_task, &queued);
    assert_int_equal(fixture_finish(loop, fixture_spawn(loop, wait_lookup_started, NULL), 30), 0);
    assert_int_equal(lb_executor_shutdown(two, false, true), 0);
    assert_int_equal(fixture_finish(loop, second, 30), -ECANCELED);
    assert_int_equal(atomic_load(&lookups_started), 1);
    atomic_store(&hold_lookups, false);
    release_lookup();
    assert_int_equal(fixture_finish(loop, first, 60), 0);
    fixture_loop_free(loop);
    lb_executor_unref(two);
}

int run_dns_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dns_localhost, dns_setup, dns_teardown),
        cmocka_unit_test_setup_teardown(test_dns_numeric_at_once, dns_setup, dns_teardown),
        cmocka_unit_test_setup_teardown(test_dns_errors, dns_setup, dns_teardown),
        cmocka_unit_test_setup_teardown(test_dns_cancel_running_lookup, dns_setup,
                                        dns_teardown),
        cmocka_unit_test_setup_teardown(test_dns_cancel_queued_lookup, dns_setup, dns_teardown),
        cmocka_unit_test_setup_teardown(test_dns_hung_lookups_leave_threads, dns_setup,
                                        dns_teardown),
        cmocka_unit_test_setup_teardown(test_dns_shutdown_cancels_queued_lookup, dns_setup,
                                        dns_teardown),
    };
    return cmocka_run_group_tests_name("dns", tests, NULL, NULL);
}
