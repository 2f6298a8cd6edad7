/* SPDX-License-Identifier: MIT */
/* A task that overflows its stack is reported by name, in a child
 * process that then dies of SIGSEGV as before. */
#include <loopbridge/loopbridge.h>

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

static void child(void) {
    lb_loop *loop;
    if (lb_loop_new(&loop, NULL) < 0)
        _exit(3);
    lb_task_options o = {.name = "deep", .stack_size = 64 * 1024};
    lb_task *t;
    if (lb_task_spawn(loop, deep, NULL, &o, &t) < 0)
        _exit(4);
    lb_loop_run_until_complete(loop, lb_task_future(t));
    _exit(5); /* not reached */
}

static void test_overflow_reported(void **state) {
    (void)state;
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        child();
    }
    close(pipefd[1]);
    char out[4096] = "";
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(pipefd[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    close(pipefd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    printf("# child stderr: %.200s\n", out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_non_null(strstr(out, "task deep overflowed its 64 KiB stack"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_reported),
    };
    return cmocka_run_group_tests_name("overflow", tests, NULL, NULL);
}
