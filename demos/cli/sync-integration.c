/* SPDX-License-Identifier: MIT */
/* Seed section "Integration with synchronous code": a plain function
 * calls asynchronous code and gets its result. The seed writes a context
 * manager that makes a loop, cancels what is left and closes the loop;
 * lb_run is that whole context manager in one call, so sync_function
 * stays a few lines. The async operation leaves a background task
 * behind, to show that lb_run cancels it and lets it clean up. --scale S
 * multiplies the 1 s sleep. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0;

static int background(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(3600);
    printf("Background task: %s, cleaning up\n", lb_strerror(r));
    return r;
}

static int async_operation(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_task_spawn(lb_loop_get_running(), background, NULL, NULL, NULL);
    if (r < 0)
        return r;
    r = lb_sleep(1.0 * scale);
    if (r < 0)
        return r;
    return lb_task_return("async result", NULL);
}

/* A synchronous function that wants the async operation's result. */
static const char *sync_function(void) {
    void *result = NULL;
    int r = lb_run(async_operation, NULL, &result);
    if (r < 0) {
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return NULL;
    }
    return result;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        scale = atof(argv[2]);
    const char *result = sync_function();
    if (!result)
        return 1;
    printf("%s\n", result);
    return 0;
}
