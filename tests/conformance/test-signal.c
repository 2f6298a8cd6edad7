/* SPDX-License-Identifier: MIT */
/* Signal handlers through the driver. */
#include "fixture.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct caught {
    int count;
} caught;

static void on_usr1(lb_loop *loop, void *data) {
    caught *c = data;
    c->count++;
    lb_loop_stop(loop);
}

static void raise_usr1(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    kill(getpid(), SIGUSR1);
}

static void test_signal_delivered(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    caught c = {0};
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGUSR1, on_usr1, &c), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, raise_usr1, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(lb_loop_remove_signal_handler(loop, SIGUSR1), 1);
    assert_int_equal(lb_loop_remove_signal_handler(loop, SIGUSR1), 0);
    fixture_loop_free(loop);
}

static void never_called(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    fail_msg("a reader on the loop's signal pipe ran");
}

/* The signal pipe is one of the loop's fd watches: a caller's stale fd
 * number that the pipe reuses must neither replace nor remove it. */
static void test_signal_pipe_not_the_callers(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    caught c = {0};
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe); /* the pipe's read end takes this number */
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGUSR1, on_usr1, &c), 0);
    int pipe_fd = probe;
    assert_int_equal(lb_loop_add_reader(loop, pipe_fd, never_called, NULL), -EBUSY);
    assert_int_equal(lb_loop_add_writer(loop, pipe_fd, never_called, NULL), -EBUSY);
    assert_int_equal(lb_loop_remove_reader(loop, pipe_fd), 0);
    assert_int_equal(lb_loop_call_later(loop, 0.01, raise_usr1, NULL, NULL), 0);
    assert_int_equal(lb_loop_run_forever(loop), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(lb_loop_remove_signal_handler(loop, SIGUSR1), 1);
    fixture_loop_free(loop);
}

static void test_signal_invalid(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGKILL, on_usr1, NULL), -EINVAL);
    assert_non_null(strstr(lb_error_detail(), "cannot be caught"));
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGSTOP, on_usr1, NULL), -EINVAL);
    assert_int_equal(lb_loop_add_signal_handler(loop, 0, on_usr1, NULL), -EINVAL);
    assert_int_equal(lb_loop_add_signal_handler(loop, 100000, on_usr1, NULL), -EINVAL);
    assert_int_equal(lb_loop_add_signal_handler(loop, -3, on_usr1, NULL), -EINVAL);
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGUSR2, NULL, NULL), -EINVAL);
    fixture_loop_free(loop);
}

static volatile sig_atomic_t previous_ran;
static void previous_handler(int signo) {
    (void)signo;
    previous_ran = 1;
}

/* The previous disposition comes back on removal and on close. */
static void test_signal_restores_previous(void **state) {
    (void)state;
    struct sigaction sa = {.sa_handler = previous_handler}, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
    for (int via_close = 0; via_close < 2; via_close++) {
        lb_loop *loop = fixture_loop_new();
        assert_int_equal(lb_loop_add_signal_handler(loop, SIGUSR2, on_usr1, NULL), 0);
        if (via_close)
            fixture_loop_free(loop);
        else
            assert_int_equal(lb_loop_remove_signal_handler(loop, SIGUSR2), 1);
        struct sigaction now;
        assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
        assert_ptr_equal(now.sa_handler, previous_handler);
        previous_ran = 0;
        kill(getpid(), SIGUSR2);
        /* Delivery may lag (valgrind delivers at its own pace). */
        for (int i = 0; i < 500 && !previous_ran; i++) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(previous_ran, 1);
        if (!via_close)
            fixture_loop_free(loop);
    }
    sigaction(SIGUSR2, &old, NULL);
}

/* The signals a faulting instruction raises (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL) are refused: a loop callback runs after the handler returned,
 * and the instruction faults again at once, forever. Their disposition
 * (the default, or a stack overflow reporter) is left alone. */
static void test_signal_synchronous_refused(void **state) {
    (void)state;
    lb_loop *loop = fixture_loop_new();
    const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        struct sigaction before, after;
        assert_int_equal(sigaction(faults[i], NULL, &before), 0);
        assert_int_equal(lb_loop_add_signal_handler(loop, faults[i], on_usr1, NULL), -EINVAL);
        assert_non_null(strstr(lb_error_detail(), "raised by a faulting instruction"));
        assert_int_equal(sigaction(faults[i], NULL, &after), 0);
        assert_ptr_equal(after.sa_handler, before.sa_handler);
        assert_int_equal(lb_loop_remove_signal_handler(loop, faults[i]), -EINVAL);
    }
    /* A trap resumes after the trapping instruction: it may be caught. */
    assert_int_equal(lb_loop_add_signal_handler(loop, SIGTRAP, on_usr1, NULL), 0);
    assert_int_equal(lb_loop_remove_signal_handler(loop, SIGTRAP), 1);
    fixture_loop_free(loop);
}

int run_signal_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_delivered),
        cmocka_unit_test(test_signal_pipe_not_the_callers),
        cmocka_unit_test(test_signal_invalid),
        cmocka_unit_test(test_signal_restores_previous),
        cmocka_unit_test(test_signal_synchronous_refused),
    };
    return cmocka_run_group_tests_name("signal", tests, NULL, NULL);
}
