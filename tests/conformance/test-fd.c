/* SPDX-License-Identifier: MIT */
/* add_reader / add_writer through the driver. */
#include "fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct pair {
    int fd[2];
    int reads;
    int writes;
    char got[64];
    int got_n;
    int stop_after_reads;
} pair;

static void make_pair(pair *p) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->fd), 0);
}

static void on_readable(lb_loop *loop, void *data) {
    pair *p = data;
    char buf[16];
    ssize_t n = read(p->fd[0], buf, sizeof buf);
    if (n > 0) {
        memcpy(p->got + p->got_n, buf, (size_t)n);
        p->got_n += (int)n;
    }
    if (++p->reads == p->stop_after_reads)
        lb_loop_stop(loop);
}

static void write_later(lb_loop *loop, void *data) {
    pair *p = data;
    (void)loop;
    assert_int_equal(write(p->fd[1], "hi", 2), 2);
}

static void test_fd_socketpair_readable(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    pair p = {.stop_after_reads = 1};
    make_pair(&p);
    assert_int_equal(lb_loop_add_reader(loop, p.fd[0], on_readable, &p), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, write_later, &p, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(p.got_n, 2);
    assert_memory_equal(p.got, "hi", 2);
    assert_int_equal(lb_loop_remove_reader(loop, p.fd[0]), 1);
    assert_int_equal(lb_loop_remove_reader(loop, p.fd[0]), 0);
    close(p.fd[0]);
    close(p.fd[1]);
    fixture_loop_free(loop);
}

static void on_writable(lb_loop *loop, void *data) {
    pair *p = data;
    p->writes++;
    assert_int_equal(lb_loop_remove_writer(loop, p->fd[1]), 1);
    lb_loop_stop(loop);
}

static void test_fd_writable(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    pair p = {0};
    make_pair(&p);
    assert_int_equal(lb_loop_add_writer(loop, p.fd[1], on_writable, &p), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(p.writes, 1);
    close(p.fd[0]);
    close(p.fd[1]);
    fixture_loop_free(loop);
}

static void replaced(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("the replaced reader ran");
}

static void test_fd_add_again_replaces(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    pair p = {.stop_after_reads = 1};
    make_pair(&p);
    assert_int_equal(lb_loop_add_reader(loop, p.fd[0], replaced, NULL), 0);
    assert_int_equal(lb_loop_add_reader(loop, p.fd[0], on_readable, &p), 0);
    assert_int_equal(write(p.fd[1], "x", 1), 1);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(p.reads, 1);
    assert_int_equal(lb_loop_remove_reader(loop, p.fd[0]), 1);
    close(p.fd[0]);
    close(p.fd[1]);
    fixture_loop_free(loop);
}

static void nop(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
}

static void test_fd_invalid(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_add_reader(loop, -1, nop, NULL), -EBADF);
    assert_int_equal(lb_loop_add_reader(loop, 100000, nop, NULL), -EBADF);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(lb_loop_add_writer(loop, fds[1], nop, NULL), -EBADF);
    assert_int_equal(lb_loop_add_reader(loop, 0, NULL, NULL), -EINVAL);
    /* A regular file is always ready; epoll refuses it, and so do we. */
    char path[] = "/tmp/lb-fd-XXXXXX";
    int file = mkstemp(path);
    assert_true(file >= 0);
    unlink(path);
    assert_int_equal(lb_loop_add_reader(loop, file, nop, NULL), -EPERM);
    assert_int_equal(lb_loop_remove_reader(loop, file), 0);
    close(file);
    fixture_loop_free(loop);
}

typedef struct closer {
    int ticks;
} closer;

static void tick(lb_loop *loop, void *data) {
    closer *c = data;
    if (++c->ticks == 5)
        lb_loop_stop(loop);
    else
        assert_int_equal(lb_loop_call_later(loop, 0.005, tick, c, NULL), 0);
}

/* The caller closes a watched fd without removing the watch first: the
 * loop keeps running its timers and the late removal is harmless. */
static void test_fd_closed_under_loop(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    pair p = {0};
    make_pair(&p);
    assert_int_equal(lb_loop_add_reader(loop, p.fd[0], on_readable, &p), 0);
    assert_int_equal(lb_loop_add_writer(loop, p.fd[0], nop, NULL), 0);
    int watched = p.fd[0];
    close(p.fd[0]);
    close(p.fd[1]);
    closer c = {0};
    assert_int_equal(lb_loop_call_soon(loop, tick, &c, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.ticks, 5);
    /* The number may be reused: watching the new fd works. */
    pair q = {.stop_after_reads = 1};
    make_pair(&q);
    assert_int_equal(lb_loop_add_reader(loop, q.fd[0], on_readable, &q), 0);
    assert_int_equal(write(q.fd[1], "z", 1), 1);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(q.reads, 1);
    assert_int_equal(lb_loop_remove_reader(loop, q.fd[0]), 1);
    /* The writer watch of the old fd stays under its number until
     * removed, unless the number was reused and watched again: the new
     * file never inherits the old file's watch. */
    assert_int_equal(lb_loop_remove_writer(loop, watched), q.fd[0] == watched ? 0 : 1);
    close(q.fd[0]);
    close(q.fd[1]);
    fixture_loop_free(loop);
}

static void on_hangup(lb_loop *loop, void *data) {
    pair *p = data;
    char buf[4];
    ssize_t n = read(p->fd[0], buf, sizeof buf);
    assert_int_equal(n, 0); /* EOF */
    p->reads++;
    assert_int_equal(lb_loop_remove_reader(loop, p->fd[0]), 1);
    lb_loop_stop(loop);
}

static void test_fd_hangup_is_readable(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    pair p = {0};
    make_pair(&p);
    assert_int_equal(lb_loop_add_reader(loop, p.fd[0], on_hangup, &p), 0);
    close(p.fd[1]);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(p.reads, 1);
    close(p.fd[0]);
    fixture_loop_free(loop);
}

/* Watches left in place at close are removed by it. */
static void test_fd_close_removes_watches(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    pair p[8];
    for (int i = 0; i < 8; i++) {
        make_pair(&p[i]);
        assert_int_equal(lb_loop_add_reader(loop, p[i].fd[0], nop, NULL), 0);
        assert_int_equal(lb_loop_add_writer(loop, p[i].fd[1], nop, NULL), 0);
    }
    fixture_loop_free(loop);
    for (int i = 0; i < 8; i++) {
        close(p[i].fd[0]);
        close(p[i].fd[1]);
    }
}

int run_fd_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_socketpair_readable),
        cmocka_unit_test(test_fd_writable),
        cmocka_unit_test(test_fd_add_again_replaces),
        cmocka_unit_test(test_fd_invalid),
        cmocka_unit_test(test_fd_closed_under_loop),
        cmocka_unit_test(test_fd_hangup_is_readable),
        cmocka_unit_test(test_fd_close_removes_watches),
    };
    return cmocka_run_group_tests_name("fd", tests, NULL, NULL);
}
