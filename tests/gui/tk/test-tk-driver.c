/* SPDX-License-Identifier: MIT */
/* The Tk driver inside a real Tcl notifier, without a display: the first
 * run of a loop starts no thread (Tcl's notifier thread came at attach);
 * making a loop queues no event of the program's file handlers;
 * no CPU and no dispatch while idle; a 60 Hz Tcl `after` tick that keeps its
 * pace under a flood of callbacks and tasks, in the main loop and inside
 * a vwait; a worker thread's label updates arriving in order; tasks and
 * timers inside vwait (run from a callback and from a task) and inside
 * update; errors reaching bgerror; the cross-thread wakeup's latency;
 * no file handler (so no hand-off to Tcl's notifier thread) while the
 * loop watches no fd, and a reader added by a callback then served;
 * Tcl's idle callbacks running while the backend fd stays readable (the
 * livelock the driver once had); the backend fd kept below 1024; the
 * budget setting. */
#include "tk-fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static void stop(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ */
/* The first run                                                       */
/* ------------------------------------------------------------------ */

/* Tcl 8.6's threaded notifier starts its thread at the process's first
 * wait, about a millisecond of work. If that wait were the first run's,
 * a program that schedules, then runs, would find its first due timers
 * that much late. The driver's attach starts the thread: running the
 * loop starts none. First in main(): the notifier thread is the
 * process's, started once. */
static void test_tk_first_run_starts_no_thread(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    int threads = thread_count();
    assert_int_equal(lb_loop_call_soon(loop, stop, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(thread_count(), threads);
    tk_loop_free(loop, interp);
}

/* Making a loop queues no event of the program's own file handlers: a
 * program that then reads its fd itself (a reply it waits for) must not
 * find its handler called on an fd with nothing left to read. */
static void note_fd_call(void *data, int mask) {
    (void)mask;
    ++*(int *)data;
}

static void test_tk_loop_new_queues_no_file_event(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    int calls = 0;
    Tcl_CreateFileHandler(p[0], TCL_READABLE, note_fd_call, &calls);
    assert_int_equal(write(p[1], "x", 1), 1);
    lb_loop *loop = tk_loop_new(interp);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1); /* the program takes its reply */
    while (Tcl_DoOneEvent(TCL_DONT_WAIT | TCL_FILE_EVENTS))
        ;
    assert_int_equal(calls, 0);
    Tcl_DeleteFileHandler(p[0]);
    close(p[0]);
    close(p[1]);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* Idle                                                                */
/* ------------------------------------------------------------------ */

/* 1,000 timers a minute away, nothing ready: two seconds of the notifier
 * cost (almost) no CPU and no dispatch, as there is no polling. */
static void test_tk_idle_costs_no_cpu(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(lb_loop_call_later(loop, 60 + i * 0.001, nop, NULL, NULL), 0);
    tk_idle_cost c = tk_measure_idle(loop, 2.0);
    printf("# idle: %.2f ms CPU over 2 s, %ld wakeups, %ld dispatches\n", c.cpu_s * 1000,
           c.wakeups, c.dispatches);
    if (tk_timing_checked())
        assert_true(c.cpu_s < 0.020);
    /* The `after` that ends the measure wakes the notifier once. */
    assert_true(c.wakeups <= 2);
    assert_int_equal(c.dispatches, 0);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* Flood: a 60 Hz Tcl tick keeps its pace                              */
/* ------------------------------------------------------------------ */

/* The tasks keep yielding until MIN_GAPS tick gaps were measured, so the
 * loop is busy for every gap the test checks, however fast the machine
 * gets through the flood. */
enum {
    FLOOD_CALLBACKS = 1000000,
    FLOOD_TASKS = 10000,
    FLOOD_YIELDS = 20,
    MIN_GAPS = 10,
    MAX_TICKS = 4096,
};

typedef struct flood {
    Tcl_Interp *interp;
    long callbacks;
    long tasks_done;
    int64_t last_tick;
    int64_t gaps[MAX_TICKS];
    size_t ngaps;
    volatile bool done;
} flood;

static void flood_cb(lb_loop *loop, void *data) {
    flood *f = data;
    (void)loop;
    f->callbacks++;
}

static void flood_start(lb_loop *loop, void *data) {
    for (int i = 0; i < FLOOD_CALLBACKS; i++)
        assert_int_equal(lb_loop_call_soon(loop, flood_cb, data, NULL), 0);
}

static int yielder(lb_task *task, void *data) {
    flood *f = data;
    (void)task;
    for (int i = 0; i < FLOOD_YIELDS || f->ngaps < MIN_GAPS; i++)
        if (lb_yield() < 0)
            return -ECANCELED;
    f->tasks_done++;
    return 0;
}

/* The Tcl command the tick runs: records the gap, and ends the flood
 * (sets ::flood_done, which a vwait may be waiting for) once it is over. */
static int tick_cmd(void *data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    flood *f = data;
    (void)objc;
    (void)objv;
    int64_t now = tk_now_ns();
    if (f->last_tick && f->ngaps < MAX_TICKS)
        f->gaps[f->ngaps++] = now - f->last_tick;
    f->last_tick = now;
    if (f->callbacks == FLOOD_CALLBACKS && f->tasks_done == FLOOD_TASKS && !f->done) {
        f->done = true;
        Tcl_SetVar(interp, "flood_done", "1", TCL_GLOBAL_ONLY);
    }
    return TCL_OK;
}

static flood *flood_new(Tcl_Interp *interp, lb_loop *loop) {
    flood *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->interp = interp;
    Tcl_CreateObjCommand(interp, "tick", tick_cmd, f, NULL);
    assert_int_equal(lb_loop_call_soon(loop, flood_start, f, NULL), 0);
    for (int i = 0; i < FLOOD_TASKS; i++)
        assert_int_equal(lb_task_spawn(loop, yielder, f, NULL, NULL), 0);
    /* Tk's way of ticking at 60 Hz: `after 16`, re-armed each time. */
    tk_eval(interp, "proc every16 {} { tick; if {![info exists ::flood_done]} "
                    "{ after 16 every16 } }; after 16 every16");
    return f;
}

static void flood_report(flood *f, const char *where) {
    int64_t max = 0;
    for (size_t i = 0; i < f->ngaps; i++)
        if (f->gaps[i] > max)
            max = f->gaps[i];
    int64_t p99 = tk_percentile(f->gaps, f->ngaps, 99);
    printf("# flood %s: %zu ticks, gap max %.1f ms, p99 %.1f ms\n", where, f->ngaps, max / 1e6,
           p99 / 1e6);
    assert_int_equal(f->callbacks, FLOOD_CALLBACKS);
    assert_int_equal(f->tasks_done, FLOOD_TASKS);
    assert_true(f->ngaps >= MIN_GAPS);
    if (tk_timing_checked())
        assert_true(max < 50 * 1000 * 1000);
}

static void test_tk_flood_keeps_ticking(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    flood *f = flood_new(interp, loop);
    tk_run_until(&f->done, 120);
    flood_report(f, "in Tcl's loop");
    free(f);
    tk_loop_free(loop, interp);
}

/* The same flood while a callback waits in a nested event loop (a
 * vwait, as a modal dialog does): the loop steps aside at any depth, so
 * the tick keeps its pace inside it too. */
static void vwait_flood(lb_loop *loop, void *data) {
    flood *f = data;
    tk_eval(f->interp, "vwait ::flood_done");
    lb_loop_stop(loop);
}

static void test_tk_flood_in_vwait_keeps_ticking(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    flood *f = flood_new(interp, loop);
    assert_int_equal(lb_loop_call_soon(loop, vwait_flood, f, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_true(f->done);
    flood_report(f, "in a vwait");
    free(f);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* A worker thread's label updates                                     */
/* ------------------------------------------------------------------ */

/* 5,000 updates posted as fast as the worker can, each setting the Tcl
 * variable a label's -textvariable would show; a write trace checks
 * that they arrive one by one, in order. */
enum { UPDATES = 5000 };

typedef struct updates {
    lb_loop *loop;
    Tcl_Interp *interp;
    int posted;
} updates;

typedef struct update_msg {
    Tcl_Interp *interp;
    long n;
} update_msg;

static void set_label(lb_loop *loop, void *data) {
    update_msg *m = data;
    (void)loop;
    Tcl_SetVar2Ex(m->interp, "label", NULL, Tcl_ObjPrintf("update %ld", m->n), TCL_GLOBAL_ONLY);
    free(m);
}

static void *update_worker(void *data) {
    updates *u = data;
    for (long i = 1; i <= UPDATES; i++) {
        update_msg *m = malloc(sizeof *m);
        *m = (update_msg){u->interp, i};
        if (lb_loop_call_soon_threadsafe(u->loop, set_label, m) < 0) {
            free(m);
            break;
        }
        u->posted++;
        /* Now and then the loop falls asleep between posts. */
        if (i % 500 == 0)
            usleep(2000);
    }
    return NULL;
}

static void test_tk_worker_updates_arrive_in_order(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_eval(interp, "set expected 1; set bad {}\n"
                    "proc check {args} {\n"
                    "  if {$::label ne \"update $::expected\" && $::bad eq {}} {\n"
                    "    set ::bad \"got '$::label', expected 'update $::expected'\"\n"
                    "  }\n"
                    "  incr ::expected\n"
                    "  if {$::expected > 5000} { set ::all_in 1 }\n"
                    "}\n"
                    "trace add variable label write check");
    updates u = {.loop = loop, .interp = interp};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, update_worker, &u), 0);
    tk_eval(interp, "after 30000 {set ::all_in timeout}; vwait ::all_in");
    pthread_join(th, NULL);
    assert_int_equal(u.posted, UPDATES);
    assert_string_equal(Tcl_GetVar(interp, "bad", TCL_GLOBAL_ONLY), "");
    assert_int_equal(tk_get_long(interp, "expected"), UPDATES + 1);
    assert_string_equal(Tcl_GetVar(interp, "all_in", TCL_GLOBAL_ONLY), "1");
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* Nested event loops: vwait, update                                   */
/* ------------------------------------------------------------------ */

/* A callback waits in vwait; tasks and timers keep running, and end the
 * wait. */
static void test_tk_tasks_tick_in_vwait_from_callback(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_run_modal(interp, loop, "vwait ::answer", "set ::answer 42", false, "vwait in a callback");
    tk_loop_free(loop, interp);
}

/* A task runs the vwait itself: the loop's dispatch then runs on that
 * task's stack, other tasks keep running, and the task goes on (and
 * awaits again) once the vwait returned. */
static void test_tk_tasks_tick_in_vwait_from_task(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_run_modal(interp, loop, "vwait ::answer", "set ::answer 42", true, "vwait in a task");
    tk_loop_free(loop, interp);
}

/* A callback does long work and calls `update` now and then: tasks and
 * timers run inside it. */
static void test_tk_tasks_tick_in_update(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_run_busy_with_update(interp, loop, "update in a callback");
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* Errors go to bgerror                                                */
/* ------------------------------------------------------------------ */

static int failing_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    return -EIO;
}

/* A task fails and nobody awaits it: the loop reports the error, and
 * with an interp Tcl's background error handler gets it, with an error
 * code naming the errno. A script running meanwhile keeps its result. */
static void test_tk_errors_reach_bgerror(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_eval(interp, "proc bgerror {msg} { set ::error_msg $msg; set ::error_code $::errorCode }");
    assert_int_equal(lb_task_spawn(loop, failing_task, NULL, NULL, NULL), 0);
    tk_eval(interp, "after 10000 {set ::error_msg timeout}; vwait ::error_msg; set r kept");
    assert_string_equal(Tcl_GetStringResult(interp), "kept");
    const char *msg = Tcl_GetVar(interp, "error_msg", TCL_GLOBAL_ONLY);
    printf("# bgerror got: %s\n", msg);
    assert_non_null(strstr(msg, "loopbridge: "));
    assert_non_null(strstr(msg, "never retrieved"));
    Tcl_Obj *code = Tcl_GetVar2Ex(interp, "error_code", NULL, TCL_GLOBAL_ONLY);
    Tcl_Obj *word;
    assert_int_equal(Tcl_ListObjIndex(interp, code, 0, &word), TCL_OK);
    assert_string_equal(Tcl_GetString(word), "LOOPBRIDGE");
    assert_int_equal(Tcl_ListObjIndex(interp, code, 1, &word), TCL_OK);
    assert_int_equal(atoi(Tcl_GetString(word)), EIO);
    tk_loop_free(loop, interp);
}

/* An error reported after close (the last reference of a failed task,
 * whose error nobody read, let go once the loop closed) no longer goes
 * to the driver's handler, whose state close freed: it goes to the
 * default handler (ASan and valgrind check that nothing freed is read). */
static void test_tk_error_after_close_skips_freed_handler(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    tk_eval(interp, "proc bgerror {msg} { set ::error_msg $msg }");
    lb_task *t = NULL;
    assert_int_equal(lb_task_spawn(loop, failing_task, NULL, NULL, &t), 0);
    assert_int_equal(lb_loop_run_until_complete(loop, lb_task_future(t)), 0);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_task_unref(t); /* reports the error nobody retrieved */
    lb_loop_unref(loop);
    Tcl_DeleteInterp(interp);
}

/* ------------------------------------------------------------------ */
/* Cross-thread wakeup                                                 */
/* ------------------------------------------------------------------ */

/* Another thread's post wakes a notifier asleep in Tcl_WaitForEvent,
 * promptly: 2,000 round trips. */
enum { PINGS = 2000 };

typedef struct pingpong {
    lb_loop *loop;
    sem_t acked;
    int64_t rtt[PINGS];
    int done;
    volatile bool finished;
} pingpong;

static void pong(lb_loop *loop, void *data) {
    (void)loop;
    sem_post(&((pingpong *)data)->acked);
}

static void pings_over(lb_loop *loop, void *data) {
    (void)loop;
    ((pingpong *)data)->finished = true;
}

static void *pinger(void *data) {
    pingpong *p = data;
    for (int i = 0; i < PINGS; i++) {
        int64_t t0 = tk_now_ns();
        if (lb_loop_call_soon_threadsafe(p->loop, pong, p) < 0)
            break;
        sem_wait(&p->acked);
        p->rtt[i] = tk_now_ns() - t0;
        p->done++;
        /* Let the loop fall asleep again now and then. */
        if (i % 100 == 0)
            usleep(1000);
    }
    lb_loop_call_soon_threadsafe(p->loop, pings_over, p);
    return NULL;
}

static void test_tk_threadsafe_wakeup_latency(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    pingpong *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->loop = loop;
    sem_init(&p->acked, 0, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pinger, p), 0);
    tk_run_until(&p->finished, 60);
    pthread_join(th, NULL);
    assert_int_equal(p->done, PINGS);
    int64_t p50 = tk_percentile(p->rtt, PINGS, 50), p99 = tk_percentile(p->rtt, PINGS, 99);
    printf("# thread -> sleeping Tcl notifier round trip: median %.1f us, p99 %.1f us\n",
           p50 / 1e3, p99 / 1e3);
    if (tk_timing_checked() && !tk_instrumented())
        assert_true(p99 < 1000 * 1000);
    sem_destroy(&p->acked);
    free(p);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* Tcl's idle callbacks are never starved                              */
/* ------------------------------------------------------------------ */

/* A pipe with a byte nobody reads and a reader that leaves it there:
 * the loop's backend fd is readable for good. */
typedef struct readable {
    int fds[2];
    long reads;
} readable;

static void leave_it(lb_loop *loop, void *data) {
    (void)loop;
    ((readable *)data)->reads++;
}

static void readable_open(lb_loop *loop, readable *rd) {
    assert_int_equal(pipe(rd->fds), 0);
    assert_int_equal(write(rd->fds[1], "x", 1), 1);
    assert_int_equal(lb_loop_add_reader(loop, rd->fds[0], leave_it, rd), 0);
}

static void readable_close(lb_loop *loop, readable *rd) {
    assert_int_equal(lb_loop_remove_reader(loop, rd->fds[0]), 1);
    close(rd->fds[0]);
    close(rd->fds[1]);
}

/* The backend fd is watched only while the loop watches an fd: */

/* The voluntary context switches of the process's threads other than
 * the calling one: Tcl's notifier thread, and threads of earlier tests
 * that sleep. */
static long other_threads_switches(void) {
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    char self[24];
    snprintf(self, sizeof self, "%ld", (long)syscall(SYS_gettid));
    long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, self))
            continue;
        char path[300], line[128];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread ended meanwhile */
        long v;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
                total += v;
        fclose(f);
    }
    closedir(d);
    return total;
}

enum { SLEEPS = 100 };

typedef struct sleeper {
    int left;
} sleeper;

static void sleep_again(lb_loop *loop, void *data) {
    sleeper *s = data;
    if (--s->left == 0)
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.001, sleep_again, s, NULL), 0);
}

/* The notifier thread's wakeups while the loop's thread sleeps SLEEPS
 * times for a timer. */
static long notifier_wakeups_over_sleeps(lb_loop *loop) {
    sleeper s = {SLEEPS};
    long before = other_threads_switches();
    assert_int_equal(lb_loop_call_later(loop, 0.001, sleep_again, &s, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    return other_threads_switches() - before;
}

/* A loop that watches no fd has nothing for Tcl's notifier thread to
 * select on: its thread's waits are timed waits on a condition variable
 * and leave that thread asleep. The driver once kept a file handler on
 * the backend fd for good, and Tcl 8.6 hands each wait of a thread with
 * a file handler to its notifier thread: two writes to its pipe and two
 * wakeups of it a wait, a sixth of the cross-thread round trip. */
static void test_tk_wait_without_watches_leaves_notifier_thread_asleep(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    assert_false(lb_driver_backend_needed(loop));
    long without = notifier_wakeups_over_sleeps(loop);
    readable rd;
    readable_open(loop, &rd);
    assert_true(lb_driver_backend_needed(loop));
    char c;
    assert_int_equal(read(rd.fds[0], &c, 1), 1); /* a reader, nothing to read */
    long with = notifier_wakeups_over_sleeps(loop);
    readable_close(loop, &rd);
    printf("# %d sleeps: %ld wakeups of other threads without a watched fd, %ld with one\n",
           SLEEPS, without, with);
    assert_true(without < SLEEPS / 4);
    assert_false(lb_driver_backend_needed(loop));
    tk_loop_free(loop, interp);
    assert_false(lb_driver_backend_needed(NULL));
}

/* A reader added by a callback while the driver watched nothing is
 * served from the notifier's next wait, and so is the one added after
 * the last was removed. The byte comes from another thread once the
 * loop's thread sleeps. */
typedef struct late_byte {
    lb_loop *loop;
    int fds[2];
    int reads;
} late_byte;

static void *write_later(void *data) {
    late_byte *b = data;
    usleep(50 * 1000);
    assert_int_equal(write(b->fds[1], "x", 1), 1);
    return NULL;
}

static void byte_read(lb_loop *loop, void *data) {
    late_byte *b = data;
    char c;
    assert_int_equal(read(b->fds[0], &c, 1), 1);
    b->reads++;
    assert_int_equal(lb_loop_remove_reader(loop, b->fds[0]), 1);
    lb_loop_stop(loop);
}

static void add_reader_now(lb_loop *loop, void *data) {
    late_byte *b = data;
    assert_int_equal(lb_loop_add_reader(loop, b->fds[0], byte_read, b), 0);
}

static void test_tk_reader_added_from_callback_is_served(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    late_byte b = {.loop = loop};
    assert_int_equal(pipe(b.fds), 0);
    for (int round = 1; round <= 2; round++) {
        assert_false(lb_driver_backend_needed(loop));
        assert_int_equal(lb_loop_call_soon(loop, add_reader_now, &b, NULL), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, write_later, &b), 0);
        /* No timer: only the byte can end the run. */
        assert_int_equal(lb_loop_run_forever(loop), 0);
        pthread_join(th, NULL);
        assert_int_equal(b.reads, round);
    }
    close(b.fds[0]);
    close(b.fds[1]);
    tk_loop_free(loop, interp);
}

static void idle_ran(void *data) {
    (*(int *)data)++;
}

static void endless(lb_loop *loop, void *data) {
    lb_loop_call_soon(loop, endless, data, NULL);
}

/* Work left after the budget while the backend fd is readable: the
 * driver steps aside, and Tcl's idle callbacks run within a few
 * Tcl_DoOneEvent calls. The driver once kept its file handler while it
 * stepped aside; the notifier then queued a file event on every pass,
 * idle callbacks never ran, and neither did the loop again. */
static void test_tk_idle_runs_while_flooded_and_fd_readable(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    readable rd = {0};
    readable_open(loop, &rd);
    assert_int_equal(lb_loop_call_soon(loop, endless, NULL, NULL), 0);
    for (int round = 0; round < 20; round++) {
        int idles = 0;
        Tcl_DoWhenIdle(idle_ran, &idles);
        int calls = 0;
        while (idles == 0 && calls < 50) {
            Tcl_DoOneEvent(TCL_ALL_EVENTS);
            calls++;
        }
        if (round == 0)
            printf("# the idle callback waited %d Tcl_DoOneEvent calls\n", calls);
        assert_int_equal(idles, 1);
        assert_true(calls <= 5);
    }
    assert_true(rd.reads > 0);
    readable_close(loop, &rd);
    tk_loop_free(loop, interp);
}

/* No work left after any drain, but the fd keeps the loop coming back
 * (a socket that is always readable): the stream of short drains steps
 * aside after a budget's time too, so idle callbacks still run. */
static void test_tk_idle_runs_while_fd_stays_readable(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    readable rd = {0};
    readable_open(loop, &rd);
    for (int round = 0; round < 20; round++) {
        int idles = 0;
        Tcl_DoWhenIdle(idle_ran, &idles);
        int64_t give_up = tk_now_ns() + 2000LL * 1000 * 1000;
        int calls = 0;
        while (idles == 0 && tk_now_ns() < give_up) {
            Tcl_DoOneEvent(TCL_ALL_EVENTS);
            calls++;
        }
        if (round == 0)
            printf("# the idle callback waited %d Tcl_DoOneEvent calls\n", calls);
        assert_int_equal(idles, 1);
    }
    assert_true(rd.reads > 0);
    readable_close(loop, &rd);
    tk_loop_free(loop, interp);
}

/* ------------------------------------------------------------------ */
/* The backend fd stays below Tcl 8.6's select limit                   */
/* ------------------------------------------------------------------ */

/* The core makes its epoll fd with epoll_create1; this test program
 * defines (and exports) its own, which the dynamic linker picks for the
 * library too, to hand out one at 1024 or above while lower ones are
 * free, as a program with many files open (or that closed some) gets. */
static bool epoll_fd_high;

__attribute__((visibility("default"))) int epoll_create1(int flags) {
    int fd = (int)syscall(SYS_epoll_create1, flags);
    if (fd < 0 || !epoll_fd_high)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
    close(fd);
    return high;
}

static void mark_ran(lb_loop *loop, void *data) {
    (void)loop;
    *(volatile bool *)data = true;
}

static void read_byte(lb_loop *loop, void *data) {
    char c;
    (void)loop;
    ssize_t n = read(((readable *)data)->fds[0], &c, 1);
    (void)n;
    ((readable *)data)->reads++;
}

/* Tcl 8.6's select notifier writes fd_sets of 1024 bits: the driver hands
 * it a duplicate of a backend fd above that, and timers and fd watches
 * work through it; with no descriptor free below 1024, making the loop
 * fails with -EMFILE instead of letting Tcl write past its fd_set. */
static void test_tk_backend_fd_kept_below_1024(void **state) {
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1100 && rl.rlim_max >= 1100) {
        rl.rlim_cur = 1100;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1100)
        skip();
    Tcl_Interp *interp = tk_interp_new();
    epoll_fd_high = true;
    lb_loop *loop = tk_loop_new(interp);
    assert_true(lb_driver_backend_fd(loop) >= 1024);
    volatile bool ran = false;
    assert_int_equal(lb_loop_call_later(loop, 0.01, mark_ran, (void *)&ran, NULL), 0);
    tk_run_until(&ran, 10);
    readable rd = {0};
    assert_int_equal(pipe(rd.fds), 0);
    assert_int_equal(lb_loop_add_reader(loop, rd.fds[0], read_byte, &rd), 0);
    assert_int_equal(write(rd.fds[1], "x", 1), 1);
    while (rd.reads == 0)
        Tcl_DoOneEvent(TCL_ALL_EVENTS);
    readable_close(loop, &rd);
    assert_int_equal(lb_loop_close(loop), 0);
    lb_loop_unref(loop);

    /* Every descriptor below 1024 taken. */
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(null >= 0);
    int *held = calloc(1024, sizeof *held);
    int nheld = 0, fd;
    while ((fd = fcntl(null, F_DUPFD_CLOEXEC, 0)) >= 0 && fd < 1024)
        held[nheld++] = fd;
    if (fd >= 0)
        close(fd);
    loop = NULL;
    assert_int_equal(lb_tk_loop_new(&loop, interp), -EMFILE);
    assert_null(loop);
    printf("# with no fd free below 1024: %s\n", lb_error_detail());
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    free(held);
    close(null);
    epoll_fd_high = false;
    Tcl_DeleteInterp(interp);
}

/* ------------------------------------------------------------------ */
/* Settings                                                            */
/* ------------------------------------------------------------------ */

static void *set_budget_elsewhere(void *data) {
    return (void *)(intptr_t)lb_tk_loop_set_budget(data, 0.01);
}

static void test_tk_budget_setting(void **state) {
    (void)state;
    Tcl_Interp *interp = tk_interp_new();
    lb_loop *loop = tk_loop_new(interp);
    assert_int_equal(lb_tk_loop_set_budget(loop, 0), -EINVAL);
    assert_non_null(strstr(lb_error_detail(), "positive"));
    assert_int_equal(lb_tk_loop_set_budget(loop, -1), -EINVAL);
    assert_int_equal(lb_tk_loop_set_budget(loop, NAN), -EINVAL);
    assert_int_equal(lb_tk_loop_set_budget(NULL, 0.01), -EINVAL);
    assert_int_equal(lb_tk_loop_set_budget(loop, INFINITY), 0);
    assert_int_equal(lb_tk_loop_set_budget(loop, 0.004), 0);
    pthread_t th;
    void *r;
    assert_int_equal(pthread_create(&th, NULL, set_budget_elsewhere, loop), 0);
    pthread_join(th, &r);
    assert_int_equal((int)(intptr_t)r, -EPERM);

    lb_loop *native = NULL;
    assert_int_equal(lb_loop_new(&native, lb_driver_native()), 0);
    assert_int_equal(lb_tk_loop_set_budget(native, 0.01), -EINVAL);
    assert_int_equal(lb_loop_close(native), 0);
    lb_loop_unref(native);

    assert_int_equal(lb_loop_close(loop), 0);
    assert_int_equal(lb_tk_loop_set_budget(loop, 0.01), -EBADF);
    lb_loop_unref(loop);
    Tcl_DeleteInterp(interp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tk_first_run_starts_no_thread),
        cmocka_unit_test(test_tk_loop_new_queues_no_file_event),
        cmocka_unit_test(test_tk_idle_costs_no_cpu),
        cmocka_unit_test(test_tk_flood_keeps_ticking),
        cmocka_unit_test(test_tk_flood_in_vwait_keeps_ticking),
        cmocka_unit_test(test_tk_worker_updates_arrive_in_order),
        cmocka_unit_test(test_tk_tasks_tick_in_vwait_from_callback),
        cmocka_unit_test(test_tk_tasks_tick_in_vwait_from_task),
        cmocka_unit_test(test_tk_tasks_tick_in_update),
        cmocka_unit_test(test_tk_errors_reach_bgerror),
        cmocka_unit_test(test_tk_error_after_close_skips_freed_handler),
        cmocka_unit_test(test_tk_threadsafe_wakeup_latency),
        cmocka_unit_test(test_tk_wait_without_watches_leaves_notifier_thread_asleep),
        cmocka_unit_test(test_tk_reader_added_from_callback_is_served),
        cmocka_unit_test(test_tk_idle_runs_while_flooded_and_fd_readable),
        cmocka_unit_test(test_tk_idle_runs_while_fd_stays_readable),
        cmocka_unit_test(test_tk_backend_fd_kept_below_1024),
        cmocka_unit_test(test_tk_budget_setting),
    };
    int failed = cmocka_run_group_tests_name("tk_driver", tests, NULL, NULL);
    Tcl_Finalize();
    return failed;
}
