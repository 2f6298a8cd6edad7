/* SPDX-License-Identifier: MIT */
/* A task that overflows its stack is reported by name, in a child
 * process that then dies of a signal: deep recursion into the guard, a
 * frame larger than the guard touched at its low end, a task that
 * suspends with its stack pointer below its stack, a write just below the
 * stack; on a stack of its own and on the shared stack; with each way of
 * guarding stacks (MADV_GUARD_INSTALL, mprotect, none: canaries only). A
 * neighbouring task, whose stack lies right below, must never run on with
 * its stack silently overwritten.
 *
 * Built without -fstack-clash-protection: the frames here must skip
 * pages the way an unprobed frame does. */
#include <loopbridge/loopbridge.h>

#include "task_internal.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

/* Runs body in a child process, its stderr captured in out; returns the
 * child's wait status. A child that hangs dies of SIGALRM. */
static int run_child(void (*body)(void), char *out, size_t cap) {
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The faults are the library's to report, not the test
         * runner's (whose handler would resume the runner in the child). */
        static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            signal(fatal[i], SIG_DFL);
        alarm(60);
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        body();
        _exit(5); /* the tasks ended: nothing overflowed, or nothing saw it */
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = read(pipefd[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pipefd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    printf("# child stderr: %.300s\n", out);
    if (WIFSIGNALED(status))
        printf("# child died of signal %d\n", WTERMSIG(status));
    else
        printf("# child exited with %d\n", WEXITSTATUS(status));
    return status;
}

/* ---------------- deep recursion ---------------- */

static int depth(volatile char *prev, int n) {
    volatile char frame[512];
    frame[0] = (char)n;
    frame[511] = prev ? prev[0] : 0;
    return n > 0 ? depth(frame, n + 1) + frame[3] : 0; /* never ends */
}

static int deep(lb_task *t, void *data) {
    (void)t;
    (void)data;
    return depth(NULL, 1);
}

static void deep_child(void) {
    lb_loop *loop;
    if (lb_loop_new(&loop, NULL) < 0)
        _exit(3);
    lb_task_options o = {.name = "deep", .stack_size = 64 * 1024};
    lb_task *t;
    if (lb_task_spawn(loop, deep, NULL, &o, &t) < 0)
        _exit(4);
    lb_loop_run_until_complete(loop, lb_task_future(t));
}

static void test_overflow_reported(void **state) {
    (void)state;
    char out[4096];
    int status = run_child(deep_child, out, sizeof out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_non_null(strstr(out, "task deep overflowed its 64 KiB stack"));
}

/* ---------------- a frame larger than the stack ---------------- */

/* The neighbour: a task spawned first, so its stack lies right below the
 * stack of the task spawned next. It fills much of its stack with a
 * pattern, waits, and checks the pattern when it runs again. */
enum { MARKED = 160 * 1024 };
static lb_future *gate;

/* How the child's stacks are guarded, and the offender's spawn flags. */
static lb__guard_mode mode;
static unsigned flags;

static int neighbour(lb_task *t, void *data) {
    (void)t;
    (void)data;
    volatile unsigned char marked[MARKED];
    for (size_t i = 0; i < MARKED; i++)
        marked[i] = (unsigned char)(0xa5 ^ i);
    lb_await(gate, NULL);
    for (size_t i = 0; i < MARKED; i++)
        if (marked[i] != (unsigned char)(0xa5 ^ i)) {
            static const char msg[] = "the neighbour's stack was overwritten\n";
            ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
            (void)w;
            _exit(7);
        }
    return 0;
}

/* A server handler's line buffer, larger than the whole stack, written at
 * its low end first (as read() into it would). */
__attribute__((noinline)) static int big_frame(void) {
    volatile char line[300 * 1024];
    line[0] = 'x';
    return line[0];
}

static int big(lb_task *t, void *data) {
    (void)t;
    (void)data;
    big_frame();
    lb_future_set_result(gate, NULL, NULL);
    return 0;
}

/* A frame deeper than the stack and its guard together, touched only at
 * its top, still live when the task suspends: nothing faults, and the
 * frames of the suspension land in the neighbour's stack. */
__attribute__((noinline)) static int huge_frame_then_yield(void) {
    volatile char huge[640 * 1024];
    huge[sizeof huge - 1] = 'x';
    lb_yield();
    return huge[sizeof huge - 1];
}

static int huge(lb_task *t, void *data) {
    (void)t;
    (void)data;
    huge_frame_then_yield();
    lb_future_set_result(gate, NULL, NULL);
    return 0;
}

/* A write through a pointer just below the task's stack, then a switch.
 * The byte written differs from the one there: a fixed 'x' matched the
 * random canary's byte once in 256 runs, and the overflow went unseen. */
static int scribble(lb_task *t, void *data) {
    (void)data;
    volatile char *below = (char *)t->fiber.stack_lo - 3;
    *below = (char)~*below;
    lb_yield();
    lb_future_set_result(gate, NULL, NULL);
    return 0;
}

/* The neighbour on a stack of its own, then the offender (on a stack of
 * its own, or on the shared stack: either comes next in the pool). */
static void run_neighbours(lb_task_fn offender) {
    lb__stack_force_guard_mode(mode);
    lb_loop *loop;
    if (lb_loop_new(&loop, NULL) < 0 || lb_future_new(loop, &gate) < 0)
        _exit(3);
    lb_task_options n = {.name = "neighbour"};
    lb_task_options o = {.name = "big", .flags = flags};
    lb_task *t;
    if (lb_task_spawn(loop, neighbour, NULL, &n, &t) < 0 ||
        lb_task_spawn(loop, offender, NULL, &o, NULL) < 0)
        _exit(4);
    lb_loop_run_until_complete(loop, lb_task_future(t));
}

static void big_child(void) {
    run_neighbours(big);
}

static void huge_child(void) {
    run_neighbours(huge);
}

static void scribble_child(void) {
    run_neighbours(scribble);
}

/* Runs body with each guard mode given (a list ended by -1), the offender
 * on a stack of its own and then on the shared stack: the child must die
 * of a signal after naming the offender (what), and the neighbour must
 * never run on a stack overwritten. */
static void assert_reported(void (*body)(void), const char *what, const int *modes) {
    for (; *modes >= 0; modes++) {
        for (int shared = 0; shared < 2; shared++) {
            mode = (lb__guard_mode)*modes;
            flags = shared ? LB_TASK_SHARED_STACK : 0;
            printf("# guard mode %d, %s\n", *modes, shared ? "shared stack" : "own stack");
            char out[4096];
            int status = run_child(body, out, sizeof out);
            assert_null(strstr(out, "the neighbour's stack was overwritten"));
            assert_true(WIFSIGNALED(status));
            assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT);
            assert_non_null(strstr(out, what));
        }
    }
}

static const int guarded[] = {LB__GUARD_MADVISE, LB__GUARD_MPROTECT, -1};
static const int all_modes[] = {LB__GUARD_MADVISE, LB__GUARD_MPROTECT, LB__GUARD_NONE, -1};
static const int unguarded[] = {LB__GUARD_NONE, -1};

/* Larger than the guard's 256 KiB, but the task is shallow: the guard. */
static void test_overflow_big_frame_hits_the_guard(void **state) {
    (void)state;
    assert_reported(big_child, "task big overflowed its 256 KiB stack\n", guarded);
}

/* Without a guard the frame lands in the gap a guard would take: nobody's
 * stack, and nothing to report. */
static void test_overflow_big_frame_without_guard_spares_the_neighbour(void **state) {
    (void)state;
    for (int shared = 0; shared < 2; shared++) {
        mode = LB__GUARD_NONE;
        flags = shared ? LB_TASK_SHARED_STACK : 0;
        char out[4096];
        int status = run_child(big_child, out, sizeof out);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 5); /* the neighbour finished */
        assert_null(strstr(out, "overwritten"));
    }
}

/* Past the guard, into the neighbour: the switch, before it runs. */
static void test_overflow_suspended_below_the_stack(void **state) {
    (void)state;
    assert_reported(huge_child,
                    "task big overflowed its 256 KiB stack (found at a switch: its stack "
                    "pointer was below the stack)",
                    all_modes);
}

/* Just below the stack: the guard, and where there is none, the canary
 * at the next switch. */
static void test_overflow_write_below_the_stack(void **state) {
    (void)state;
    assert_reported(scribble_child, "task big overflowed its 256 KiB stack\n", guarded);
    assert_reported(scribble_child,
                    "task big overflowed its 256 KiB stack (found at a switch: the canary "
                    "below the stack was overwritten)",
                    unguarded);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_reported),
        cmocka_unit_test(test_overflow_big_frame_hits_the_guard),
        cmocka_unit_test(test_overflow_big_frame_without_guard_spares_the_neighbour),
        cmocka_unit_test(test_overflow_suspended_below_the_stack),
        cmocka_unit_test(test_overflow_write_below_the_stack),
    };
    return cmocka_run_group_tests_name("overflow", tests, NULL, NULL);
}
