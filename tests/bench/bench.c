/* SPDX-License-Identifier: MIT */
/* loopbridge's side of the benchmark workloads (shared/bench/WORKLOADS.md):
 * W1-W10 on the driver LB_DRIVER names, one JSON line per workload in the
 * peers' format. Usage: bench [W1,W2,...] [n]. Run each workload in its
 * own process (peak RSS is per process). */
#include <loopbridge/loopbridge.h>

#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static lb_loop *loop;
static char peer[64];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void check(int r, const char *what) {
    if (r < 0) {
        fprintf(stderr, "bench: %s: %s (%s)\n", what, lb_strerror(r), lb_error_detail());
        exit(1);
    }
}

static long count, target;

/* ---------------- W1: call_soon batch ---------------- */
static double w1_sched;
static void w1_inc(lb_loop *l, void *d) {
    (void)d;
    if (++count == target)
        lb_loop_stop(l);
}
static void w1_initial(lb_loop *l, void *d) {
    (void)d;
    double t = now_s();
    for (long i = 0; i < target; i++)
        lb_loop_call_soon(l, w1_inc, NULL, NULL);
    w1_sched = now_s() - t;
}
static void w1(long n) {
    count = 0;
    target = n;
    double t0 = now_s();
    check(lb_loop_call_soon(loop, w1_initial, NULL, NULL), "call_soon");
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    printf("{\"peer\": \"%s\", \"workload\": \"W1_call_soon\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"schedule_ns\": %.4f}\n",
           peer, n, dt, dt * 1e9 / n, w1_sched * 1e9 / n);
}

/* ---------------- W2: call_soon chain ---------------- */
static void w2_hop(lb_loop *l, void *d) {
    if (++count == target)
        lb_loop_stop(l);
    else
        lb_loop_call_soon(l, w2_hop, d, NULL);
}
static void w2(long n) {
    count = 0;
    target = n;
    double t0 = now_s();
    check(lb_loop_call_soon(loop, w2_hop, NULL, NULL), "call_soon");
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    printf("{\"peer\": \"%s\", \"workload\": \"W2_chain\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f}\n", peer, n, dt, dt * 1e9 / n);
}

/* ---------------- W3: timers ---------------- */
static uint64_t sm_x;
static double splitmix_uniform(void) {
    uint64_t z = (sm_x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
typedef struct w3_timer {
    int64_t deadline_ns;
    lb_handle *h;
} w3_timer;
static int64_t w3_max_late, w3_min_late, w3_max_late_post, w3_t2;
static void w3_fire(lb_loop *l, void *d) {
    w3_timer *t = d;
    int64_t late = now_ns() - t->deadline_ns;
    if (late > w3_max_late)
        w3_max_late = late;
    if (late < w3_min_late)
        w3_min_late = late;
    if (t->deadline_ns >= w3_t2 && late > w3_max_late_post)
        w3_max_late_post = late;
    if (++count == target)
        lb_loop_stop(l);
}
static void w3(long n) {
    double *delays = malloc(n * sizeof *delays);
    sm_x = 42;
    for (long i = 0; i < n; i++)
        delays[i] = splitmix_uniform();
    w3_timer *tm = calloc(n, sizeof *tm);
    count = 0;
    target = n - n / 2;
    w3_max_late = INT64_MIN;
    w3_min_late = INT64_MAX;
    w3_max_late_post = 0;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        /* call_at on the deadline the peers use: now + delay. */
        int64_t dl = now_ns() + (int64_t)(delays[i] * 1e9);
        tm[i].deadline_ns = dl;
        check(lb_loop_call_at_ns(loop, dl, w3_fire, &tm[i], &tm[i].h), "call_at");
    }
    int64_t t1 = now_ns();
    for (long i = 1; i < n; i += 2)
        lb_handle_cancel(tm[i].h);
    int64_t t2 = now_ns();
    w3_t2 = t2;
    check(lb_loop_run_forever(loop), "run");
    int64_t t3 = now_ns();
    double wall = (t3 - t0) / 1e9;
    printf("{\"peer\": \"%s\", \"workload\": \"W3_timers\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"schedule_ns\": %.4f, \"cancel_ns\": %.4f, \"overhead_s\": %.4f, "
           "\"max_late_ms\": %.4f, \"min_late_ms\": %.4f, \"max_late_after_setup_ms\": %.4f, "
           "\"setup_ms\": %.4f}\n",
           peer, n, wall, (double)(t1 - t0) / n, (double)(t1 - t0) / n,
           (double)(t2 - t1) / (n / 2), wall - 1.0, w3_max_late / 1e6, w3_min_late / 1e6,
           w3_max_late_post / 1e6, (t2 - t0) / 1e6);
    for (long i = 0; i < n; i++)
        lb_handle_unref(tm[i].h);
    free(tm);
    free(delays);
}

/* ---------------- W4: threadsafe flood ---------------- */
static double w4_post;
static void w4_inc(lb_loop *l, void *d) {
    (void)d;
    if (++count == target)
        lb_loop_stop(l);
}
static void *w4_worker(void *a) {
    (void)a;
    double t = now_s();
    for (long i = 0; i < target; i++)
        while (lb_loop_call_soon_threadsafe(loop, w4_inc, NULL) < 0)
            ;
    w4_post = now_s() - t;
    return NULL;
}
static void w4(long n) {
    count = 0;
    target = n;
    pthread_t th;
    double t0 = now_s();
    pthread_create(&th, NULL, w4_worker, NULL);
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    printf("{\"peer\": \"%s\", \"workload\": \"W4_threadsafe\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"post_side_ns\": %.4f, \"lost\": %ld}\n",
           peer, n, dt, dt * 1e9 / n, w4_post * 1e9 / n, n - count);
}

/* ---------------- W5: ping-pong ---------------- */
static sem_t w5_sem;
static int64_t *w5_rtt;
static void w5_pong(lb_loop *l, void *d) {
    (void)l;
    (void)d;
    sem_post(&w5_sem);
}
static void w5_stop(lb_loop *l, void *d) {
    (void)d;
    lb_loop_stop(l);
}
static void *w5_worker(void *a) {
    (void)a;
    for (long i = 0; i < target; i++) {
        int64_t t = now_ns();
        lb_loop_call_soon_threadsafe(loop, w5_pong, NULL);
        sem_wait(&w5_sem);
        w5_rtt[i] = now_ns() - t;
    }
    lb_loop_call_soon_threadsafe(loop, w5_stop, NULL);
    return NULL;
}
static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}
static void w5(long n) {
    target = n;
    w5_rtt = malloc(n * sizeof *w5_rtt);
    sem_init(&w5_sem, 0, 0);
    pthread_t th;
    double t0 = now_s();
    pthread_create(&th, NULL, w5_worker, NULL);
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    qsort(w5_rtt, n, sizeof *w5_rtt, cmp_i64);
    double med = (n % 2) ? w5_rtt[n / 2] : (w5_rtt[n / 2 - 1] + w5_rtt[n / 2]) / 2.0;
    long k = (99 * n + 99) / 100 - 1;
    printf("{\"peer\": \"%s\", \"workload\": \"W5_pingpong\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"median_us\": %.4f, \"p99_us\": %.4f, \"max_us\": %.4f}\n",
           peer, n, dt, dt * 1e9 / n, med / 1e3, w5_rtt[k] / 1e3, w5_rtt[n - 1] / 1e3);
    free(w5_rtt);
}

/* ---------------- W6: task switches ---------------- */
static int w6_task(lb_task *t, void *d) {
    (void)t;
    (void)d;
    for (int i = 0; i < 10; i++)
        if (lb_sleep(0) < 0)
            return -ECANCELED;
    return 0;
}
static int w6_main(lb_task *t, void *d) {
    (void)t;
    long n = (long)(intptr_t)d;
    lb_task **ts = malloc(n * sizeof *ts);
    for (long i = 0; i < n; i++)
        check(lb_task_spawn(loop, w6_task, NULL, NULL, &ts[i]), "spawn");
    for (long i = 0; i < n; i++) {
        lb_await(lb_task_future(ts[i]), NULL);
        lb_task_unref(ts[i]);
    }
    free(ts);
    return 0;
}
static void w6(long n) {
    long r0 = maxrss_kb();
    lb_task *m;
    double t0 = now_s();
    check(lb_task_spawn(loop, w6_main, (void *)(intptr_t)n, NULL, &m), "spawn");
    check(lb_loop_run_until_complete(loop, lb_task_future(m)), "run");
    double dt = now_s() - t0;
    lb_task_unref(m);
    printf("{\"peer\": \"%s\", \"workload\": \"W6_tasks\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"rss_delta_kb\": %ld}\n",
           peer, n, dt, dt * 1e9 / (n * 10), maxrss_kb() - r0);
}

/* ---------------- W7: sleeping tasks ---------------- */
static double w7_create, w7_started;
static int w7_task(lb_task *t, void *d) {
    (void)t;
    (void)d;
    return lb_sleep(1.0);
}
static int w7_main(lb_task *t, void *d) {
    (void)t;
    long n = (long)(intptr_t)d;
    lb_task **ts = malloc(n * sizeof *ts);
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        check(lb_task_spawn(loop, w7_task, NULL, NULL, &ts[i]), "spawn");
    w7_create = now_s() - t0;
    lb_yield();
    w7_started = now_s() - t0;
    for (long i = 0; i < n; i++) {
        lb_await(lb_task_future(ts[i]), NULL);
        lb_task_unref(ts[i]);
    }
    free(ts);
    return 0;
}
static void w7(long n) {
    long r0 = maxrss_kb();
    lb_task *m;
    double t0 = now_s();
    check(lb_task_spawn(loop, w7_main, (void *)(intptr_t)n, NULL, &m), "spawn");
    check(lb_loop_run_until_complete(loop, lb_task_future(m)), "run");
    double dt = now_s() - t0;
    lb_task_unref(m);
    long r1 = maxrss_kb();
    printf("{\"peer\": \"%s\", \"workload\": \"W7_sleeping_tasks\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"create_ns\": %.4f, \"create_and_start_ns\": %.4f, "
           "\"bytes_per_task\": %.1f, \"overhead_s\": %.4f}\n",
           peer, n, dt, w7_create * 1e9 / n, w7_create * 1e9 / n, w7_started * 1e9 / n,
           (r1 - r0) * 1024.0 / n, dt - 1.0);
}

/* ---------------- W8: future chain ---------------- */
static void w8_on_done(lb_future *f, void *d) {
    (void)d;
    lb_future_unref(f);
    if (++count == target) {
        lb_loop_stop(loop);
        return;
    }
    lb_future *nf;
    lb_future_new(loop, &nf);
    lb_future_add_done_callback(nf, w8_on_done, NULL);
    lb_future_set_result(nf, NULL, NULL);
}
static void w8_start(lb_loop *l, void *d) {
    (void)d;
    lb_future *f;
    lb_future_new(l, &f);
    lb_future_add_done_callback(f, w8_on_done, NULL);
    lb_future_set_result(f, NULL, NULL);
}
static void w8(long n) {
    count = 0;
    target = n;
    double t0 = now_s();
    check(lb_loop_call_soon(loop, w8_start, NULL, NULL), "call_soon");
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    printf("{\"peer\": \"%s\", \"workload\": \"W8_futures\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f}\n", peer, n, dt, dt * 1e9 / n);
}

/* ---------------- W9: executor ---------------- */
#define W9_BATCH 1000
static volatile long w9_sink;
static int w9_trivial(void *d, void **ret) {
    (void)d;
    (void)ret;
    w9_sink = 1;
    return 0;
}
static int w9_main(lb_task *t, void *d) {
    (void)t;
    long n = (long)(intptr_t)d;
    lb_future *fs[W9_BATCH];
    for (long b = 0; b < n / W9_BATCH; b++) {
        for (int i = 0; i < W9_BATCH; i++)
            check(lb_loop_run_in_executor(loop, NULL, w9_trivial, NULL, &fs[i]), "executor");
        lb_future *g;
        check(lb_gather(fs, W9_BATCH, 0, &g), "gather");
        check(lb_await(g, NULL), "await");
        lb_future_unref(g);
        for (int i = 0; i < W9_BATCH; i++)
            lb_future_unref(fs[i]);
        count += W9_BATCH;
    }
    return 0;
}
static void w9(long n) {
    count = 0;
    lb_task *m;
    double t0 = now_s();
    check(lb_task_spawn(loop, w9_main, (void *)(intptr_t)n, NULL, &m), "spawn");
    check(lb_loop_run_until_complete(loop, lb_task_future(m)), "run");
    double dt = now_s() - t0;
    lb_task_unref(m);
    printf("{\"peer\": \"%s\", \"workload\": \"W9_executor\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"batch\": %d, \"executor_workers\": %ld}\n",
           peer, count, dt, dt * 1e9 / count, W9_BATCH, sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---------------- W10: fd readiness ---------------- */
#define W10_PAIRS 1000
static int w10_fds[W10_PAIRS][2];
static long w10_written;
static void w10_read(lb_loop *l, void *d) {
    int i = (int)(intptr_t)d;
    char b[64];
    ssize_t r = read(w10_fds[i][0], b, sizeof b);
    if (r > 0 && (count += r) >= target)
        lb_loop_stop(l);
}
static void w10_write_some(lb_loop *l, void *d) {
    (void)d;
    /* Writes spread round-robin, a batch per iteration, so readiness
     * events keep coming while the readers drain. */
    for (int k = 0; k < W10_PAIRS && w10_written < target; k++, w10_written++)
        if (write(w10_fds[w10_written % W10_PAIRS][1], "x", 1) != 1)
            abort();
    if (w10_written < target)
        lb_loop_call_soon(l, w10_write_some, NULL, NULL);
}
static void w10(long n) {
    count = 0;
    target = n;
    w10_written = 0;
    for (int i = 0; i < W10_PAIRS; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, w10_fds[i]) < 0) {
            perror("socketpair");
            exit(1);
        }
        check(lb_loop_add_reader(loop, w10_fds[i][0], w10_read, (void *)(intptr_t)i), "add_reader");
    }
    double t0 = now_s();
    check(lb_loop_call_soon(loop, w10_write_some, NULL, NULL), "call_soon");
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    for (int i = 0; i < W10_PAIRS; i++) {
        lb_loop_remove_reader(loop, w10_fds[i][0]);
        close(w10_fds[i][0]);
        close(w10_fds[i][1]);
    }
    printf("{\"peer\": \"%s\", \"workload\": \"W10_fd_readiness\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"pairs\": %d}\n", peer, n, dt, dt * 1e9 / n, W10_PAIRS);
}

#ifdef LB_BENCH_GLIB
const lb_driver *lb_driver_glib(void);
#endif
#ifdef LB_BENCH_TK
const lb_driver *lb_driver_tk(void);
#endif

int main(int argc, char **argv) {
    /* Referencing the bridges keeps them linked, so LB_DRIVER finds
     * their drivers. */
#ifdef LB_BENCH_GLIB
    lb_driver_register(lb_driver_glib());
#endif
#ifdef LB_BENCH_TK
    lb_driver_register(lb_driver_tk());
#endif
    const char *sel = argc > 1 ? argv[1] : "W1,W2,W3,W4,W5,W6,W7,W8,W9,W10";
    long nover = argc > 2 ? atol(argv[2]) : 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sel);
    for (char *w = strtok(buf, ","); w; w = strtok(NULL, ",")) {
        check(lb_loop_new(&loop, NULL), "lb_loop_new");
        snprintf(peer, sizeof peer, "loopbridge-%s", lb_loop_driver_name(loop));
        if (!strcmp(w, "W1"))
            w1(nover ? nover : 1000000);
        else if (!strcmp(w, "W2"))
            w2(nover ? nover : 1000000);
        else if (!strcmp(w, "W3"))
            w3(nover ? nover : 200000);
        else if (!strcmp(w, "W4"))
            w4(nover ? nover : 1000000);
        else if (!strcmp(w, "W5"))
            w5(nover ? nover : 20000);
        else if (!strcmp(w, "W6"))
            w6(nover ? nover : 100000);
        else if (!strcmp(w, "W7"))
            w7(nover ? nover : 100000);
        else if (!strcmp(w, "W8"))
            w8(nover ? nover : 1000000);
        else if (!strcmp(w, "W9"))
            w9(nover ? nover : 100000);
        else if (!strcmp(w, "W10"))
            w10(nover ? nover : 100000);
        else
            printf("{\"peer\": \"%s\", \"workload\": \"%s\", \"error\": \"unknown workload\"}\n",
                   peer, w);
        fflush(stdout);
        lb_loop_close(loop);
        lb_loop_unref(loop);
    }
    return 0;
}
