/* SPDX-License-Identifier: MIT */
/* loopbridge's side of the benchmark workloads (shared/bench/WORKLOADS.md):
 * W1-W11 and G1-G4 on the driver LB_DRIVER names, one JSON line per
 * workload in the peers' format ("peer" names the implementation, "impl"
 * says what the workload calls). Usage: bench [W1,W2,...] [n]. Run each
 * workload in its own process (peak RSS is per process); tools/bench.sh
 * does, next to the peers. W11's n is its duration in milliseconds.
 *
 * G1 and G4 need a host toolkit loop and run on the glib and tk drivers
 * only; on the native driver they print an "error": "not applicable"
 * line, as the peers do for what they lack. No widget toolkit is linked:
 * G3's "label" is a string the callback replaces (a g_strdup'd string on
 * glib, the Tcl variable a Tk label's -textvariable would show on tk). */
#include <loopbridge/loopbridge.h>

#ifdef LB_BENCH_GLIB
#include <loopbridge/glib.h>
#endif
#ifdef LB_BENCH_TK
#include <loopbridge/tk.h>
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static lb_loop *loop;
static char peer[64];
static const char *driver = "native";

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

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void check(int r, const char *what) {
    if (r < 0) {
        fprintf(stderr, "bench: %s: %s (%s)\n", what, lb_strerror(r), lb_error_detail());
        exit(1);
    }
}

static bool on_driver(const char *name) {
    return strcmp(driver, name) == 0;
}

/* How the loop is hosted, appended to every "impl". */
static const char *hosting(void) {
    if (on_driver("native"))
        return "; native driver: epoll_wait on the loop's epoll fd";
    if (on_driver("glib"))
        return "; glib driver: one GSource in the default GMainContext, "
               "run_forever iterates the context";
    if (on_driver("tk"))
        return "; tk driver: Tcl event source (+ a file handler while fds are watched), run_forever loops Tcl_DoOneEvent";
    return "";
}

/* Ends a workload's line: peak RSS of the process so far and what ran. */
static void end_line(const char *impl) {
    printf(", \"maxrss_kb\": %ld, \"impl\": \"%s%s\"}\n", maxrss_kb(), impl, hosting());
}

static void not_applicable(const char *workload, const char *why) {
    printf("{\"peer\": \"%s\", \"workload\": \"%s\", \"error\": \"not applicable to %s: %s\"}\n",
           peer, workload, driver, why);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted samples: median, and the nearest-rank percentile the peers use
 * (py_peers.pct). */
static double median_of(const int64_t *v, long n) {
    return (n % 2) ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static int64_t pct_of(const int64_t *v, long n, long p) {
    long k = (p * n + 99) / 100 - 1;
    return v[k < 0 ? 0 : k];
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
    if (count != n)
        fprintf(stderr, "W1 count mismatch\n");
    printf("{\"peer\": \"%s\", \"workload\": \"W1_call_soon\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"schedule_ns\": %.4f",
           peer, n, dt, dt * 1e9 / n, w1_sched * 1e9 / n);
    end_line("lb_loop_call_soon (floating handle)");
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
           "\"per_op_ns\": %.4f", peer, n, dt, dt * 1e9 / n);
    end_line("lb_loop_call_soon from the callback");
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
static int64_t w3_max_late, w3_min_late, w3_max_late_post, w3_max_late_post_at, w3_t2;
static long w3_due_in_setup; /* live timers already due when the loop started */
static int64_t w3_backlog_done; /* when the last of those ran */
static void w3_fire(lb_loop *l, void *d) {
    w3_timer *t = d;
    int64_t late = now_ns() - t->deadline_ns;
    if (late > w3_max_late)
        w3_max_late = late;
    if (late < w3_min_late)
        w3_min_late = late;
    if (t->deadline_ns < w3_t2) {
        w3_due_in_setup++;
        w3_backlog_done = now_ns();
    }
    if (t->deadline_ns >= w3_t2 && late > w3_max_late_post) {
        w3_max_late_post = late;
        w3_max_late_post_at = t->deadline_ns;
    }
    if (++count == target)
        lb_loop_stop(l);
}
static void w3(long n) {
    double *delays = malloc(n * sizeof *delays);
    sm_x = 42;
    for (long i = 0; i < n; i++)
        delays[i] = splitmix_uniform();
    w3_timer *tm = calloc(n, sizeof *tm);
    /* The harness's own bookkeeping is faulted in before the clock
     * starts: what setup measures is the loop's memory. */
    for (size_t off = 0; off < n * sizeof *tm; off += 4096)
        ((volatile char *)tm)[off] = 0;
    count = 0;
    target = n - n / 2;
    w3_max_late = INT64_MIN;
    w3_min_late = INT64_MAX;
    w3_max_late_post = 0;
    w3_due_in_setup = 0;
    w3_backlog_done = 0;
    w3_t2 = INT64_MAX;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        /* call_later, as WORKLOADS.md says; the deadline the lateness is
         * measured against is read just before, as the peers do (the
         * loop's own deadline is its clock read inside the call plus the
         * delay, so never earlier). */
        int64_t dl = now_ns() + (int64_t)(delays[i] * 1e9);
        tm[i].deadline_ns = dl;
        check(lb_loop_call_later(loop, delays[i], w3_fire, &tm[i], &tm[i].h), "call_later");
    }
    int64_t t1 = now_ns();
    for (long i = 1; i < n; i += 2)
        lb_handle_cancel(tm[i].h);
    int64_t t2 = now_ns();
    w3_t2 = t2;
    check(lb_loop_run_forever(loop), "run");
    int64_t t3 = now_ns();
    double wall = (t3 - t0) / 1e9;
    if (count != target)
        fprintf(stderr, "W3 count mismatch\n");
    printf("{\"peer\": \"%s\", \"workload\": \"W3_timers\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"schedule_ns\": %.4f, \"cancel_ns\": %.4f, \"overhead_s\": %.4f, "
           "\"max_late_ms\": %.4f, \"min_late_ms\": %.4f, \"max_late_after_setup_ms\": %.4f, "
           "\"setup_ms\": %.4f, \"max_late_after_setup_at_ms\": %.4f, \"due_in_setup\": %ld, \"backlog_ms\": %.4f",
           peer, n, wall, (double)(t1 - t0) / n, (double)(t1 - t0) / n,
           (double)(t2 - t1) / (n / 2), wall - 1.0, w3_max_late / 1e6, w3_min_late / 1e6,
           w3_max_late_post / 1e6, (t2 - t0) / 1e6, (w3_max_late_post_at - t2) / 1e6, w3_due_in_setup,
           w3_backlog_done ? (w3_backlog_done - t2) / 1e6 : 0.0);
    end_line("lb_loop_call_later (handle kept) / lb_handle_cancel");
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
           "\"per_op_ns\": %.4f, \"post_side_ns\": %.4f, \"lost\": %ld",
           peer, n, dt, dt * 1e9 / n, w4_post * 1e9 / n, n - count);
    end_line("lb_loop_call_soon_threadsafe from a pthread");
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
    printf("{\"peer\": \"%s\", \"workload\": \"W5_pingpong\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"median_us\": %.4f, \"p99_us\": %.4f, \"max_us\": %.4f",
           peer, n, dt, dt * 1e9 / n, median_of(w5_rtt, n) / 1e3, pct_of(w5_rtt, n, 99) / 1e3,
           w5_rtt[n - 1] / 1e3);
    end_line("lb_loop_call_soon_threadsafe there, POSIX semaphore back");
    free(w5_rtt);
}

/* ---------------- W6: task switches ---------------- */
/* The options W6 and W7 spawn their many tasks with: a stack each, or
 * (workloads W6s and W7s, peer "loopbridge-<driver>-shared") the loop's
 * shared stack. */
static lb_task_options many_tasks;

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
        check(lb_task_spawn(loop, w6_task, NULL, &many_tasks, &ts[i]), "spawn");
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
           "\"per_op_ns\": %.4f, \"rss_delta_kb\": %ld",
           peer, n, dt, dt * 1e9 / (n * 10), maxrss_kb() - r0);
    end_line(many_tasks.flags ? "lb_task_spawn(LB_TASK_SHARED_STACK) x n, each lb_sleep(0) x 10, "
                                "awaited in order"
                              : "lb_task_spawn x n, each lb_sleep(0) x 10 (fiber switch), awaited "
                                "in order");
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
        check(lb_task_spawn(loop, w7_task, NULL, &many_tasks, &ts[i]), "spawn");
    w7_create = now_s() - t0;
    lb_yield(); /* every task has started and armed its timer */
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
           "\"bytes_per_task\": %.1f, \"overhead_s\": %.4f",
           peer, n, dt, w7_create * 1e9 / n, w7_create * 1e9 / n, w7_started * 1e9 / n,
           (r1 - r0) * 1024.0 / n, dt - 1.0);
    end_line(many_tasks.flags ? "lb_task_spawn(LB_TASK_SHARED_STACK) x n, each lb_sleep(1.0)"
                              : "lb_task_spawn x n, each lb_sleep(1.0)");
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
           "\"per_op_ns\": %.4f", peer, n, dt, dt * 1e9 / n);
    end_line("lb_future_new + add_done_callback + set_result from the done callback");
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
    /* The default executor's size: the CPU count, at least 2. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("{\"peer\": \"%s\", \"workload\": \"W9_executor\", \"n\": %ld, \"seconds\": %.4f, "
           "\"per_op_ns\": %.4f, \"batch\": %d, \"executor_workers\": %ld",
           peer, count, dt, dt * 1e9 / count, W9_BATCH, cpus < 2 ? 2 : cpus);
    end_line("lb_loop_run_in_executor (default executor) + lb_gather per batch, in a task");
}

/* ---------------- W10: fd readiness ---------------- */
#define W10_PAIRS 1000
static int w10_fds[W10_PAIRS][2];
static long w10_written, w10_events, w10_spurious;
static void w10_read(lb_loop *l, void *d) {
    int i = (int)(intptr_t)d;
    char b;
    /* One byte per readiness event, as WORKLOADS.md says: an fd holding
     * several bytes stays readable (level-triggered) and is reported
     * again. */
    ssize_t r = read(w10_fds[i][0], &b, 1);
    if (r == 1) {
        w10_events++;
        if (++count >= target)
            lb_loop_stop(l);
    } else {
        w10_spurious++;
    }
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
    w10_written = w10_events = w10_spurious = 0;
    /* One iteration before the 2,000 descriptors exist: Tcl 8.6 makes its
     * notifier thread's pipe lazily, at the first wait, and an fd number
     * beyond FD_SETSIZE there aborts the process (tk driver). Not timed. */
    lb_loop_stop(loop);
    check(lb_loop_run_forever(loop), "run");
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
           "\"per_op_ns\": %.4f, \"pairs\": %d, \"events\": %ld, \"spurious\": %ld",
           peer, n, dt, dt * 1e9 / n, W10_PAIRS, w10_events, w10_spurious);
    end_line("lb_loop_add_reader per socketpair, 1-byte read per event");
}

/* ---------------- W11: TCP echo ---------------- */
/* A server (lb_start_server: a task per connection) and 100 client tasks
 * in this process on 127.0.0.1; each client sends 64 bytes, awaits the
 * echo, and again, for n milliseconds. Round trips are timed one by one. */
#define W11_CLIENTS 100
#define W11_MSG 64
static int64_t *w11_rtt;
static long w11_nrtt, w11_cap;
static int64_t w11_end;
static int w11_port, w11_clients_left, w11_errors;

static int w11_echo(lb_stream *s, void *d) {
    (void)d;
    char buf[W11_MSG];
    ssize_t n;
    while ((n = lb_stream_read_exactly(s, buf, sizeof buf)) == W11_MSG) {
        int r = lb_stream_write(s, buf, sizeof buf);
        if (r == 0)
            r = lb_stream_drain(s);
        if (r < 0)
            return r;
    }
    return n < 0 ? (int)n : 0;
}

static int w11_client(lb_task *t, void *d) {
    (void)t;
    (void)d;
    lb_stream *s = NULL;
    int r = lb_open_connection("127.0.0.1", (uint16_t)w11_port, NULL, 10, &s);
    char msg[W11_MSG], got[W11_MSG];
    memset(msg, 'e', sizeof msg);
    while (r == 0) {
        int64_t t0 = now_ns();
        r = lb_stream_write(s, msg, sizeof msg);
        if (r == 0 && lb_stream_read_exactly(s, got, sizeof got) != W11_MSG)
            r = -EPIPE;
        int64_t t1 = now_ns();
        if (r < 0)
            break;
        if (w11_nrtt == w11_cap) {
            w11_cap = w11_cap ? w11_cap * 2 : 1 << 16;
            w11_rtt = realloc(w11_rtt, w11_cap * sizeof *w11_rtt);
        }
        w11_rtt[w11_nrtt++] = t1 - t0;
        if (t1 >= w11_end)
            break;
    }
    if (r < 0)
        w11_errors++;
    lb_stream_unref(s);
    if (--w11_clients_left == 0)
        lb_loop_stop(loop);
    return 0;
}

static void w11(long ms) {
    lb_server *srv = NULL;
    check(lb_start_server(loop, "127.0.0.1", 0, w11_echo, NULL, NULL, &srv), "lb_start_server");
    w11_port = lb_server_port(srv);
    w11_nrtt = 0;
    w11_errors = 0;
    w11_clients_left = W11_CLIENTS;
    double t0 = now_s();
    w11_end = now_ns() + ms * 1000000;
    for (int i = 0; i < W11_CLIENTS; i++)
        check(lb_task_spawn(loop, w11_client, NULL, NULL, NULL), "spawn");
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    lb_server_close(srv, true);
    lb_server_unref(srv);
    qsort(w11_rtt, w11_nrtt, sizeof *w11_rtt, cmp_i64);
    printf("{\"peer\": \"%s\", \"workload\": \"W11_echo\", \"n\": %ld, \"seconds\": %.4f, "
           "\"msgs_per_s\": %.1f, \"median_us\": %.3f, \"p99_us\": %.3f, \"connections\": %d, "
           "\"message_bytes\": %d, \"errors\": %d",
           peer, w11_nrtt, dt, w11_nrtt / dt, w11_nrtt ? median_of(w11_rtt, w11_nrtt) / 1e3 : 0,
           w11_nrtt ? pct_of(w11_rtt, w11_nrtt, 99) / 1e3 : 0, W11_CLIENTS, W11_MSG, w11_errors);
    end_line("lb_start_server (task per connection) + 100 lb_open_connection tasks; "
             "lb_stream_write + lb_stream_read_exactly");
    free(w11_rtt);
    w11_rtt = NULL;
    w11_cap = 0;
}

/* ------------------------------------------------------------------ */
/* GUI workloads                                                       */
/* ------------------------------------------------------------------ */

#ifdef LB_BENCH_TK
static Tcl_Interp *tcl_interp(void) {
    static Tcl_Interp *interp;
    if (!interp)
        interp = Tcl_CreateInterp();
    return interp;
}
#endif

/* ---------------- G1: frame gap under flood ---------------- */
/* A 16 ms tick of the host loop while W1 (n callbacks from one callback)
 * and W6 (n/10 tasks, each 10 x lb_sleep(0)) run on the bridged loop.
 * The tasks are spawned before the tick starts (spawning is W7's
 * subject). W1's scheduling callback runs first thing and is one long
 * callback (n call_soon) that no driver can split: it delays the first
 * tick, which first_tick_late_ms shows; the gaps are measured between
 * ticks from the first one on. */
#define G1_MAX_TICKS 200000
static int64_t *g1_ticks;
static long g1_nticks, g1_cb_target, g1_cb_count, g1_tasks_target, g1_tasks_done;
static bool g1_done;
static int64_t g1_end;

/* What ran between two ticks, so that the worst gap can say what made it
 * long. Every flood event (a callback, a task's start, step or end)
 * reads the clock; a stretch without any of them longer than G1_DARK_NS
 * is "dark": the host's turn, work of the loop that no callback of ours
 * ran (queue growth, stack trimming, ...), or the thread off the CPU. A
 * "slice" is a stretch of events between two dark ones: with a 1 ms
 * dispatch budget, no slice should be much longer than 1 ms. The
 * thread's use of the machine (CPU time, page faults, context switches)
 * is read once per G1_USE_EVERY events and after each dark stretch, so a
 * dark stretch tells the loop's own work (CPU time, faults) from the
 * thread sleeping (voluntary switches) or waiting for a CPU on a busy
 * machine (involuntary ones). Nothing here allocates while the flood
 * runs. */
#define G1_DARK_NS 100000
#define G1_USE_EVERY 64
enum { G1_EV_CALLBACK, G1_EV_TASK_START, G1_EV_STEP, G1_EV_TASK_END, G1_EV_TICK, G1_EV_START };
static const char *const g1_ev_name[] = {"callback", "task start", "task step",
                                         "task end", "tick",       "start"};

typedef struct thread_use {
    int64_t cpu_ns;
    long minflt, slept, preempted; /* faults, voluntary and involuntary switches */
} thread_use;

static thread_use thread_use_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (thread_use){
        .cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * (int64_t)1000000000 +
                  (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * (int64_t)1000,
        .minflt = ru.ru_minflt,
        .slept = ru.ru_nvcsw,
        .preempted = ru.ru_nivcsw,
    };
}

static thread_use thread_use_since(thread_use a, thread_use b) {
    return (thread_use){b.cpu_ns - a.cpu_ns, b.minflt - a.minflt, b.slept - a.slept,
                        b.preempted - a.preempted};
}

typedef struct g1_interval {
    int64_t start, end;                  /* the ticks around it */
    long callbacks, starts, steps, ends; /* flood events run in it */
    uint64_t iterations;                 /* the loop's dispatch passes in it */
    thread_use use;                      /* the thread's, in it */
    long dark;                           /* dark stretches in it */
    int64_t dark_max, dark_max_at;       /* the longest one and when it began, */
    thread_use dark_use;                 /* the thread's use in it (about), */
    int dark_before, dark_after;         /* between these two kinds of events */
    int64_t slice_max;                   /* the longest slice in it */
} g1_interval;
static g1_interval g1_cur, g1_worst;
static int64_t g1_last_ev, g1_slice_start, g1_slice_max_all, g1_dark_max_all;
static int64_t g1_dark_max_after[G1_EV_START + 1]; /* the longest dark stretch after each kind */
static int g1_last_kind;
static long g1_since_use;
static uint64_t g1_iter0;
static thread_use g1_use0, g1_use_last;

static uint64_t loop_iterations(void) {
    lb_loop_stats st;
    return lb_loop_get_stats(loop, &st) == 0 ? st.iterations : 0;
}

static void g1_event(int kind) {
    int64_t t = now_ns();
    int64_t dark = t - g1_last_ev;
    if (dark > G1_DARK_NS || ++g1_since_use == G1_USE_EVERY) {
        thread_use use = thread_use_now();
        if (dark > G1_DARK_NS && dark > g1_cur.dark_max)
            g1_cur.dark_use = thread_use_since(g1_use_last, use);
        g1_use_last = use;
        g1_since_use = 0;
    }
    if (dark > G1_DARK_NS) {
        g1_cur.dark++;
        if (dark > g1_cur.dark_max) {
            g1_cur.dark_max = dark;
            g1_cur.dark_max_at = g1_last_ev;
            g1_cur.dark_before = g1_last_kind;
            g1_cur.dark_after = kind;
        }
        if (dark > g1_dark_max_all)
            g1_dark_max_all = dark;
        if (dark > g1_dark_max_after[g1_last_kind])
            g1_dark_max_after[g1_last_kind] = dark;
        int64_t slice = g1_last_ev - g1_slice_start;
        if (slice > g1_cur.slice_max)
            g1_cur.slice_max = slice;
        if (slice > g1_slice_max_all)
            g1_slice_max_all = slice;
        g1_slice_start = t;
    }
    g1_last_ev = t;
    g1_last_kind = kind;
    g1_cur.callbacks += kind == G1_EV_CALLBACK;
    g1_cur.starts += kind == G1_EV_TASK_START;
    g1_cur.steps += kind == G1_EV_STEP;
    g1_cur.ends += kind == G1_EV_TASK_END;
}

/* Starts the first interval (at the flood's start) or closes one at a
 * tick, keeping the longest. */
static void g1_interval_mark(int kind) {
    if (kind != G1_EV_START) {
        g1_event(kind);
        g1_cur.end = g1_last_ev;
        g1_cur.use = thread_use_since(g1_use0, thread_use_now());
        g1_cur.iterations = loop_iterations() - g1_iter0;
        if (g1_nticks > 1 && g1_cur.end - g1_cur.start > g1_worst.end - g1_worst.start)
            g1_worst = g1_cur;
    }
    g1_cur = (g1_interval){.start = now_ns(), .dark_before = G1_EV_START,
                           .dark_after = G1_EV_START};
    g1_last_ev = g1_slice_start = g1_cur.start;
    g1_last_kind = kind;
    g1_iter0 = loop_iterations();
    g1_use0 = g1_use_last = thread_use_now();
}

static void g1_tick_now(void) {
    if (!g1_done && g1_nticks < G1_MAX_TICKS) {
        g1_ticks[g1_nticks++] = now_ns();
        g1_interval_mark(G1_EV_TICK);
    }
}
static void g1_check_done(void) {
    if (!g1_done && g1_cb_count == g1_cb_target && g1_tasks_done == g1_tasks_target) {
        g1_done = true;
        g1_end = now_ns();
        lb_loop_stop(loop);
    }
}
static void g1_inc(lb_loop *l, void *d) {
    (void)l;
    (void)d;
    g1_cb_count++;
    g1_event(G1_EV_CALLBACK);
    g1_check_done();
}
static void g1_initial(lb_loop *l, void *d) {
    (void)d;
    for (long i = 0; i < g1_cb_target; i++)
        lb_loop_call_soon(l, g1_inc, NULL, NULL);
}
static int g1_task(lb_task *t, void *d) {
    (void)t;
    (void)d;
    g1_event(G1_EV_TASK_START);
    for (int i = 0; i < 10; i++) {
        if (lb_sleep(0) < 0)
            return -ECANCELED;
        g1_event(G1_EV_STEP);
    }
    g1_event(G1_EV_TASK_END);
    g1_tasks_done++;
    g1_check_done();
    return 0;
}

#ifdef LB_BENCH_GLIB
static gboolean g1_glib_tick(gpointer d) {
    (void)d;
    g1_tick_now();
    return G_SOURCE_CONTINUE;
}
#endif
#ifdef LB_BENCH_TK
static Tcl_TimerToken g1_tk_timer;
static void g1_tk_tick(ClientData d) {
    (void)d;
    g1_tick_now();
    g1_tk_timer = Tcl_CreateTimerHandler(16, g1_tk_tick, NULL); /* `after 16` re-armed */
}
#endif

static void g1(long n) {
    const char *tick_impl = NULL;
#ifdef LB_BENCH_GLIB
    if (on_driver("glib"))
        tick_impl = "tick: g_timeout_source_new(16) on the loop's context";
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk"))
        tick_impl = "tick: Tcl_CreateTimerHandler(16) re-armed from the tick";
#endif
    if (!tick_impl) {
        not_applicable("G1_frame_gap", "no host toolkit loop to tick");
        return;
    }
    g1_ticks = malloc(G1_MAX_TICKS * sizeof *g1_ticks);
    g1_nticks = 0;
    g1_cb_target = n;
    g1_cb_count = 0;
    g1_tasks_target = n / 10;
    g1_tasks_done = 0;
    g1_done = false;
    /* W1's scheduling callback first, then the tasks' first steps: as in
     * tests/gui/glib's flood test. */
    check(lb_loop_call_soon(loop, g1_initial, NULL, NULL), "call_soon");
    for (long i = 0; i < g1_tasks_target; i++)
        check(lb_task_spawn(loop, g1_task, NULL, NULL, NULL), "spawn");

    void *tick_src = NULL;
    int64_t t0 = now_ns();
    g1_worst = (g1_interval){0};
    g1_slice_max_all = g1_dark_max_all = 0;
    memset(g1_dark_max_after, 0, sizeof g1_dark_max_after);
    g1_interval_mark(G1_EV_START);
#ifdef LB_BENCH_GLIB
    if (on_driver("glib")) {
        GSource *s = g_timeout_source_new(16);
        g_source_set_callback(s, g1_glib_tick, NULL, NULL);
        g_source_attach(s, lb_glib_loop_get_context(loop));
        tick_src = s;
    }
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk"))
        g1_tk_timer = Tcl_CreateTimerHandler(16, g1_tk_tick, NULL);
#endif
    check(lb_loop_run_forever(loop), "run");
#ifdef LB_BENCH_GLIB
    if (tick_src) {
        g_source_destroy(tick_src);
        g_source_unref(tick_src);
    }
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk"))
        Tcl_DeleteTimerHandler(g1_tk_timer);
#endif
    (void)tick_src;
    if (!g1_done)
        fprintf(stderr, "G1: the loop stopped before the flood ended\n");

    long ngaps = g1_nticks > 1 ? g1_nticks - 1 : 0;
    int64_t *gaps = malloc((ngaps ? ngaps : 1) * sizeof *gaps);
    for (long i = 0; i < ngaps; i++)
        gaps[i] = g1_ticks[i + 1] - g1_ticks[i];
    qsort(gaps, ngaps, sizeof *gaps, cmp_i64);
    double first_late = g1_nticks ? (g1_ticks[0] - (t0 + 16000000)) / 1e6 : -1;
    /* The time from the last tick to the end of the flood is a gap too
     * (a tick that did not come). */
    double tail_ms = g1_nticks ? (g1_end - g1_ticks[g1_nticks - 1]) / 1e6 : (g1_end - t0) / 1e6;
    printf("{\"peer\": \"%s\", \"workload\": \"G1_frame_gap\", \"n\": %ld, \"tasks\": %ld, "
           "\"seconds\": %.4f, \"ticks\": %ld, \"max_gap_ms\": %.4f, \"p99_gap_ms\": %.4f, "
           "\"median_gap_ms\": %.4f, \"first_tick_late_ms\": %.4f, \"tail_ms\": %.4f",
           peer, n, g1_tasks_target, (g1_end - t0) / 1e9, g1_nticks,
           ngaps ? gaps[ngaps - 1] / 1e6 : 0.0, ngaps ? pct_of(gaps, ngaps, 99) / 1e6 : 0.0,
           ngaps ? median_of(gaps, ngaps) / 1e6 : 0.0, first_late, tail_ms);
    /* The worst gap and what ran in it; the longest slice and dark
     * stretch of the whole flood (the first tick's wait included). */
    const g1_interval *w = &g1_worst;
    printf(", \"worst_gap_at_ms\": %.1f, \"worst_gap_callbacks\": %ld, "
           "\"worst_gap_task_starts\": %ld, \"worst_gap_task_steps\": %ld, "
           "\"worst_gap_task_ends\": %ld, \"worst_gap_iterations\": %llu, "
           "\"worst_gap_cpu_ms\": %.3f, \"worst_gap_minflt\": %ld, \"worst_gap_slept\": %ld, "
           "\"worst_gap_preempted\": %ld, \"worst_gap_slice_max_ms\": %.3f, "
           "\"worst_gap_dark\": %ld, \"worst_gap_dark_max_ms\": %.3f, "
           "\"worst_gap_dark_between\": \"%s > %s\", \"worst_gap_dark_cpu_ms\": %.3f, "
           "\"worst_gap_dark_minflt\": %ld, \"worst_gap_dark_slept\": %ld, "
           "\"worst_gap_dark_preempted\": %ld, \"max_slice_ms\": %.3f, \"max_dark_ms\": %.3f",
           (w->start - t0) / 1e6, w->callbacks, w->starts, w->steps, w->ends,
           (unsigned long long)w->iterations, w->use.cpu_ns / 1e6, w->use.minflt, w->use.slept,
           w->use.preempted, w->slice_max / 1e6, w->dark, w->dark_max / 1e6,
           g1_ev_name[w->dark_before], g1_ev_name[w->dark_after], w->dark_use.cpu_ns / 1e6,
           w->dark_use.minflt, w->dark_use.slept, w->dark_use.preempted, g1_slice_max_all / 1e6,
           g1_dark_max_all / 1e6);
    printf(", \"max_dark_ms_after\": {");
    for (int k = 0; k <= G1_EV_START; k++)
        printf("%s\"%s\": %.3f", k ? ", " : "", g1_ev_name[k], g1_dark_max_after[k] / 1e6);
    printf("}");
    /* G1_TRACE=1: when the worst gap's longest pause was, on the clock
     * perf record -k CLOCK_MONOTONIC stamps its samples with. */
    if (getenv("G1_TRACE"))
        fprintf(stderr, "worst dark: CLOCK_MONOTONIC %.6f .. %.6f\n", w->dark_max_at / 1e9,
                (w->dark_max_at + w->dark_max) / 1e9);
    char impl[256];
    snprintf(impl, sizeof impl, "%s; flood: W1 + W6 at once, default 1 ms budget", tick_impl);
    end_line(impl);
    free(gaps);
    free(g1_ticks);
}

/* ---------------- G2: idle cost ---------------- */
/* n timers 60 s ahead, nothing ready, 5 s of wall time (a loop timer
 * stops it). wakeups is counted as the peers count it on the same host:
 * poll calls of the GMainContext (glib), check calls of an idle Tcl
 * event source (tk), and the loop's own iterations (native: one per
 * epoll_wait return). */
static long g2_wakeups;
static void g2_never(lb_loop *l, void *d) {
    (void)l;
    (void)d;
    fprintf(stderr, "G2 timer fired\n");
}
static void g2_stop(lb_loop *l, void *d) {
    (void)d;
    lb_loop_stop(l);
}
#ifdef LB_BENCH_GLIB
static GPollFunc g2_orig_poll;
static gint g2_poll(GPollFD *fds, guint nfds, gint timeout) {
    g2_wakeups++;
    return g2_orig_poll(fds, nfds, timeout);
}
#endif
#ifdef LB_BENCH_TK
static void g2_setup(ClientData cd, int flags) {
    (void)cd;
    (void)flags;
}
static void g2_check(ClientData cd, int flags) {
    (void)cd;
    (void)flags;
    g2_wakeups++;
}
#endif
static void g2(long n) {
    for (long i = 0; i < n; i++)
        check(lb_loop_call_later(loop, 60.0, g2_never, NULL, NULL), "call_later");
    check(lb_loop_call_later(loop, 5.0, g2_stop, NULL, NULL), "call_later");
    const char *how = "wakeups = loop iterations";
#ifdef LB_BENCH_GLIB
    GMainContext *ctx = NULL;
    if (on_driver("glib")) {
        ctx = lb_glib_loop_get_context(loop);
        g2_orig_poll = g_main_context_get_poll_func(ctx);
        g_main_context_set_poll_func(ctx, g2_poll);
        how = "wakeups = GMainContext poll calls";
    }
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk")) {
        Tcl_CreateEventSource(g2_setup, g2_check, NULL);
        how = "wakeups = check calls of a no-op Tcl event source";
    }
#endif
    lb_loop_stats s0, s1;
    check(lb_loop_get_stats(loop, &s0), "stats");
    g2_wakeups = 0;
    double c0 = cpu_s(), t0 = now_s();
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0, c = cpu_s() - c0;
    check(lb_loop_get_stats(loop, &s1), "stats");
    long iterations = (long)(s1.iterations - s0.iterations);
#ifdef LB_BENCH_GLIB
    if (ctx)
        g_main_context_set_poll_func(ctx, g2_orig_poll);
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk"))
        Tcl_DeleteEventSource(g2_setup, g2_check, NULL);
#endif
    if (on_driver("native"))
        g2_wakeups = iterations;
    printf("{\"peer\": \"%s\", \"workload\": \"G2_idle_cost\", \"n\": %ld, \"seconds\": %.4f, "
           "\"cpu_s\": %.6f, \"wakeups\": %ld, \"iterations\": %ld",
           peer, n, dt, c, g2_wakeups, iterations);
    char impl[200];
    snprintf(impl, sizeof impl, "lb_loop_call_later(60) x n, a 5 s loop timer stops; %s", how);
    end_line(impl);
}

/* ---------------- G3: thread to widget ---------------- */
/* A worker posts a "label update" n times with
 * lb_loop_call_soon_threadsafe and waits for each: the callback replaces
 * the label text, then posts a semaphore. */
static sem_t g3_sem;
static int64_t *g3_rtt;
static char g3_label[64];
#ifdef LB_BENCH_GLIB
static char *g3_glabel;
#endif
static void g3_set_label(lb_loop *l, void *d) {
    (void)l;
    long i = (long)(intptr_t)d;
#ifdef LB_BENCH_GLIB
    if (on_driver("glib")) {
        g_free(g3_glabel);
        g3_glabel = g_strdup_printf("update %ld", i);
        sem_post(&g3_sem);
        return;
    }
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk")) {
        Tcl_SetVar2Ex(tcl_interp(), "label", NULL, Tcl_ObjPrintf("update %ld", i),
                      TCL_GLOBAL_ONLY);
        sem_post(&g3_sem);
        return;
    }
#endif
    snprintf(g3_label, sizeof g3_label, "update %ld", i);
    sem_post(&g3_sem);
}
static void *g3_worker(void *a) {
    (void)a;
    for (long i = 0; i < target; i++) {
        int64_t t = now_ns();
        lb_loop_call_soon_threadsafe(loop, g3_set_label, (void *)(intptr_t)i);
        sem_wait(&g3_sem);
        g3_rtt[i] = now_ns() - t;
    }
    lb_loop_call_soon_threadsafe(loop, w5_stop, NULL);
    return NULL;
}
static void g3(long n) {
    target = n;
    g3_rtt = malloc(n * sizeof *g3_rtt);
    sem_init(&g3_sem, 0, 0);
#ifdef LB_BENCH_TK
    if (on_driver("tk"))
        (void)tcl_interp();
#endif
    pthread_t th;
    double t0 = now_s();
    pthread_create(&th, NULL, g3_worker, NULL);
    check(lb_loop_run_forever(loop), "run");
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    qsort(g3_rtt, n, sizeof *g3_rtt, cmp_i64);
    printf("{\"peer\": \"%s\", \"workload\": \"G3_thread_to_widget\", \"n\": %ld, "
           "\"seconds\": %.4f, \"per_op_ns\": %.4f, \"median_us\": %.4f, \"p99_us\": %.4f, "
           "\"max_us\": %.4f",
           peer, n, dt, dt * 1e9 / n, median_of(g3_rtt, n) / 1e3, pct_of(g3_rtt, n, 99) / 1e3,
           g3_rtt[n - 1] / 1e3);
    const char *label = "label: a char buffer (snprintf)";
    if (on_driver("glib"))
        label = "label: a g_strdup_printf string (no GTK widget)";
    else if (on_driver("tk"))
        label = "label: a Tcl variable set with Tcl_SetVar2Ex (what -textvariable shows; no Tk)";
    char impl[256];
    snprintf(impl, sizeof impl, "lb_loop_call_soon_threadsafe from a pthread, semaphore back; %s",
             label);
    end_line(impl);
#ifdef LB_BENCH_GLIB
    g_free(g3_glabel);
    g3_glabel = NULL;
#endif
    free(g3_rtt);
}

/* ---------------- G4: nested loop ---------------- */
/* A task ticking with lb_sleep(0.01) and a task yielding in a loop run
 * for n ms in the loop, then a callback opens a modal nested host loop
 * (g_main_loop_run on the same context / Tcl `vwait`) for n ms more. The
 * figure is the tasks' progress inside the nested loop against outside
 * it. */
static long g4_ticks, g4_yields;
static int g4_phase; /* 0: outside, 1: nested, 2: over */
static long g4_ms;
static long g4_ticks_out, g4_yields_out, g4_ticks_in, g4_yields_in;
static double g4_t_out, g4_t_in, g4_t_start;
static char g4_error[160];

static int g4_ticker(lb_task *t, void *d) {
    (void)t;
    (void)d;
    while (g4_phase < 2) {
        if (lb_sleep(0.01) < 0)
            return -ECANCELED;
        g4_ticks++;
    }
    return 0;
}
static int g4_yielder(lb_task *t, void *d) {
    (void)t;
    (void)d;
    while (g4_phase < 2) {
        if (lb_yield() < 0)
            return -ECANCELED;
        g4_yields++;
    }
    return 0;
}
#ifdef LB_BENCH_GLIB
static gboolean g4_quit(gpointer d) {
    g_main_loop_quit(d);
    return G_SOURCE_REMOVE;
}
#endif
static void g4_open_modal(lb_loop *l, void *d) {
    (void)d;
    double t = now_s();
    g4_t_out = t - g4_t_start;
    g4_ticks_out = g4_ticks;
    g4_yields_out = g4_yields;
    g4_ticks = g4_yields = 0;
    g4_phase = 1;
#ifdef LB_BENCH_GLIB
    if (on_driver("glib")) {
        GMainContext *ctx = lb_glib_loop_get_context(l);
        GMainLoop *inner = g_main_loop_new(ctx, FALSE);
        GSource *s = g_timeout_source_new((guint)g4_ms);
        g_source_set_callback(s, g4_quit, inner, NULL);
        g_source_attach(s, ctx);
        g_main_loop_run(inner); /* the modal dialog */
        g_source_destroy(s);
        g_source_unref(s);
        g_main_loop_unref(inner);
    }
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk")) {
        char script[128];
        snprintf(script, sizeof script, "after %ld {set ::g4_done 1}; vwait ::g4_done", g4_ms);
        if (Tcl_Eval(tcl_interp(), script) != TCL_OK)
            snprintf(g4_error, sizeof g4_error, "vwait: %s",
                     Tcl_GetStringResult(tcl_interp()));
    }
#endif
    g4_t_in = now_s() - t;
    g4_ticks_in = g4_ticks;
    g4_yields_in = g4_yields;
    g4_phase = 2;
    lb_loop_stop(l);
}
static void g4(long n) {
    const char *nested = NULL;
#ifdef LB_BENCH_GLIB
    if (on_driver("glib"))
        nested = "nested: g_main_loop_run on the loop's context in a callback";
#endif
#ifdef LB_BENCH_TK
    if (on_driver("tk"))
        nested = "nested: Tcl_Eval(after ms {set done 1}; vwait done) in a callback";
#endif
    if (!nested) {
        not_applicable("G4_nested_loop", "no host main loop to nest");
        return;
    }
    g4_ms = n;
    g4_phase = 0;
    g4_ticks = g4_yields = 0;
    g4_error[0] = 0;
    check(lb_task_spawn(loop, g4_ticker, NULL, NULL, NULL), "spawn");
    check(lb_task_spawn(loop, g4_yielder, NULL, NULL, NULL), "spawn");
    check(lb_loop_call_later(loop, n / 1000.0, g4_open_modal, NULL, NULL), "call_later");
    g4_t_start = now_s();
    check(lb_loop_run_forever(loop), "run");
    if (g4_error[0]) {
        printf("{\"peer\": \"%s\", \"workload\": \"G4_nested_loop\", \"error\": \"%s\"}\n", peer,
               g4_error);
        return;
    }
    double tin = g4_ticks_in / g4_t_in, tout = g4_ticks_out / g4_t_out;
    printf("{\"peer\": \"%s\", \"workload\": \"G4_nested_loop\", \"n\": %ld, \"seconds\": %.4f, "
           "\"ticks_per_s_nested\": %.2f, \"ticks_per_s_outside\": %.2f, "
           "\"yields_per_s_nested\": %.1f, \"yields_per_s_outside\": %.1f, "
           "\"nested_vs_outside\": %.4f",
           peer, n, g4_t_out + g4_t_in, tin, tout, g4_yields_in / g4_t_in,
           g4_yields_out / g4_t_out, tout > 0 ? tin / tout : 0.0);
    char impl[200];
    snprintf(impl, sizeof impl, "a lb_sleep(0.01) ticker + a lb_yield loop; %s", nested);
    end_line(impl);
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
    const char *sel = argc > 1 ? argv[1] : "W1,W2,W3,W4,W5,W6,W7,W8,W9,W10,W11,G1,G2,G3,G4";
    long nover = argc > 2 ? atol(argv[2]) : 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sel);
    for (char *w = strtok(buf, ","); w; w = strtok(NULL, ",")) {
        check(lb_loop_new(&loop, NULL), "lb_loop_new");
        driver = lb_loop_driver_name(loop);
        snprintf(peer, sizeof peer, "loopbridge-%s", driver);
        if (!strcmp(w, "W6s") || !strcmp(w, "W7s")) {
            many_tasks.flags = LB_TASK_SHARED_STACK;
            snprintf(peer, sizeof peer, "loopbridge-%s-shared", driver);
            w[2] = '\0';
        }
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
        else if (!strcmp(w, "W11"))
            w11(nover ? nover : 10000);
        else if (!strcmp(w, "G1"))
            g1(nover ? nover : 1000000);
        else if (!strcmp(w, "G2"))
            g2(nover ? nover : 1000);
        else if (!strcmp(w, "G3"))
            g3(nover ? nover : 5000);
        else if (!strcmp(w, "G4"))
            g4(nover ? nover : 2000);
        else if (!strcmp(w, "version"))
            printf("{\"loopbridge\": \"%s\", \"driver\": \"%s\"}\n", LB_BENCH_VERSION, driver);
        else
            printf("{\"peer\": \"%s\", \"workload\": \"%s\", \"error\": \"unknown workload\"}\n",
                   peer, w);
        fflush(stdout);
        lb_loop_close(loop);
        lb_loop_unref(loop);
    }
    return 0;
}
