/* SPDX-License-Identifier: MIT */
/* Watched fds closed under the loop, thousands of times: closed from
 * their own callback with the watch left in place, the peer closed under
 * a watched reader (hang-up), both ends closed from another callback.
 * Each round's socket pair takes the numbers the last one left, watched
 * the other way round (a number that had a reader gets a writer), so a
 * stale watch would fire for a file it was not added for. No crash, no
 * such callback, no spinning afterwards. */
#include "stress.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { KINDS = 4 };

/* The round is over: the loop stops at once (no polling). */
static void finish(lb_loop *loop, bool *done) {
    *done = true;
    lb_loop_stop(loop);
}

typedef struct round_state {
    int fds[2];
    int rd, wr; /* the fds watched for reading and for writing */
    int kind;
    long reads, writes;
    bool hangup_seen;
    bool done;
} round_state;

typedef struct fds {
    lb_loop *loop;
    round_state *current;
    round_state *rounds; /* one each: callbacks of past rounds are told apart */
    long stale_dropped; /* warnings: a stale watch was dropped */
    long wrong_file;    /* a callback ran for a round that was over */
    long rounds_by_kind[KINDS];
} fds;

static fds the_fds;

static void count_warnings(lb_log_level level, const char *message, void *data) {
    fds *f = data;
    if (level == LB_LOG_WARNING && strstr(message, "was closed while watched"))
        f->stale_dropped++;
}

static void on_readable(lb_loop *loop, void *data) {
    round_state *s = data;
    if (s != the_fds.current) {
        the_fds.wrong_file++;
        return;
    }
    char buf[64];
    ssize_t n = read(s->rd, buf, sizeof buf);
    if (n > 0)
        s->reads++;
    if (n == 0) {
        /* Hang-up: the well-behaved reader removes itself. */
        s->hangup_seen = true;
        lb_loop_remove_reader(loop, s->rd);
        close(s->rd);
        finish(loop, &s->done);
        return;
    }
    if (s->kind == 0) {
        /* Closed from its own callback, watch left in place. */
        close(s->fds[0]);
        close(s->fds[1]);
        finish(loop, &s->done);
    }
}

static void on_writable(lb_loop *loop, void *data) {
    round_state *s = data;
    (void)loop;
    if (s != the_fds.current) {
        the_fds.wrong_file++;
        return;
    }
    /* The fd may have been closed under this callback already: a failed
     * write is what the test is about, not an error. */
    if (s->writes++ == 0 && write(s->wr, "x", 1) != 1)
        s->writes = 0;
}

/* Closes under the loop, from another callback, without removing. */
static void close_under(lb_loop *loop, void *data) {
    round_state *s = data;
    switch (s->kind) {
    case 1:
        close(s->wr); /* the reader sees a hang-up */
        break;
    case 2:
    case 3:
        close(s->fds[0]);
        close(s->fds[1]);
        finish(loop, &s->done);
        break;
    default:
        break;
    }
}

static void stop_loop(lb_loop *loop, void *data) {
    (void)data;
    lb_loop_stop(loop);
}

static void one_round(fds *f, long index) {
    round_state *s = &f->rounds[index];
    *s = (round_state){.kind = (int)(index % KINDS)};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s->fds),
                     0);
    /* The numbers are the lowest free ones: those of the last round,
     * whose watches may still be there; swap the roles every other
     * round. */
    s->rd = s->fds[index / KINDS % 2];
    s->wr = s->fds[1 - index / KINDS % 2];
    f->current = s;
    assert_int_equal(lb_loop_add_reader(f->loop, s->rd, on_readable, s), 0);
    assert_int_equal(lb_loop_add_writer(f->loop, s->wr, on_writable, s), 0);
    if (s->kind == 3)
        assert_int_equal(lb_loop_add_writer(f->loop, s->rd, on_writable, s), 0);
    if (s->kind != 0)
        assert_int_equal(lb_loop_call_soon(f->loop, close_under, s, NULL), 0);
    /* A round that never ends fails here instead of hanging. */
    lb_handle *watchdog = NULL;
    assert_int_equal(lb_loop_call_later(f->loop, 30.0, stop_loop, NULL, &watchdog), 0);
    assert_int_equal(lb_loop_run_forever(f->loop), 0);
    lb_handle_cancel(watchdog);
    lb_handle_unref(watchdog);
    assert_true(s->done);
    if (s->kind == 1) {
        assert_true(s->hangup_seen);
        /* The writer's watch goes with its closed fd's number. */
        lb_loop_remove_writer(f->loop, s->wr);
    }
    f->rounds_by_kind[s->kind]++;
    f->current = NULL;
}

static void test_fds_closed_under_loop(void **state) {
    (void)state;
    fds *f = &the_fds;
    long rounds = stress_size(4000, 40);
    *f = (fds){.loop = fixture_loop_new(), .rounds = calloc((size_t)rounds, sizeof(round_state))};
    assert_non_null(f->rounds);
    lb_set_log_handler(count_warnings, f);
    int64_t t0 = stress_now_ns();
    for (long i = 0; i < rounds; i++)
        one_round(f, i);
    double took = (double)(stress_now_ns() - t0) / 1e9;

    /* Stale watches may be left under numbers that are closed now: an
     * idle loop must sleep, not spin on them. */
    lb_loop_stats before, after;
    assert_int_equal(lb_loop_get_stats(f->loop, &before), 0);
    assert_int_equal(lb_loop_call_later(f->loop, 0.2, stop_loop, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(f->loop), 0);
    assert_int_equal(lb_loop_get_stats(f->loop, &after), 0);
    uint64_t idle_iterations = after.iterations - before.iterations;
    lb_set_log_handler(NULL, NULL);
    printf("# fds: %ld rounds closed under the loop in %.2f s, %ld stale watches dropped, %ld "
           "callbacks for a finished round, %llu iterations in 0.2 s idle\n",
           rounds, took, f->stale_dropped, f->wrong_file, (unsigned long long)idle_iterations);
    assert_int_equal(f->wrong_file, 0);
    /* A spinning loop makes hundreds of thousands. */
    assert_true(idle_iterations < 100);
    fixture_loop_free(f->loop);
    free(f->rounds);
}

int run_fd_stress(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fds_closed_under_loop),
    };
    return cmocka_run_group_tests_name("fds", tests, NULL, NULL);
}
