/* SPDX-License-Identifier: MIT */
/* Seed section "Event loop monitoring": debug mode reports every callback
 * that holds the loop longer than slow_callback_duration, by function
 * name, and lb_loop_get_stats() gives the counters asyncio leaves to the
 * caller. The monitor catches the reports through the log handler. A
 * callback that blocks for 0.15 s stands in for a synchronous call that
 * slipped into async code. --scale S multiplies the 1 s wait. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double scale = 1.0;

typedef struct monitor {
    lb_loop *loop;
    int slow_callbacks;
} monitor;

static void monitor_log(lb_log_level level, const char *message, void *data) {
    monitor *m = data;
    if (level == LB_LOG_WARNING && strncmp(message, "slow callback:", 14) == 0)
        m->slow_callbacks++;
    printf("Monitor: %s\n", message);
}

static int monitor_start(monitor *m, lb_loop *loop) {
    m->loop = loop;
    m->slow_callbacks = 0;
    int r = lb_loop_set_slow_callback_duration(loop, 0.1);
    if (r == 0)
        r = lb_loop_set_debug(loop, true);
    if (r < 0)
        return r;
    lb_set_log_handler(monitor_log, m);
    return 0;
}

static void monitor_stop(monitor *m) {
    (void)m;
    lb_set_log_handler(NULL, NULL);
}

static void monitor_print_stats(const monitor *m) {
    lb_loop_stats st;
    if (lb_loop_get_stats(m->loop, &st) < 0) {
        fprintf(stderr, "lb_loop_get_stats: %s\n", lb_error_detail());
        return;
    }
    printf("is_running: %s, is_closed: %s, time: %.2f\n",
           lb_loop_is_running(m->loop) ? "true" : "false",
           lb_loop_is_closed(m->loop) ? "true" : "false", lb_loop_time(m->loop));
    printf("iterations: %llu, callbacks run: %llu, tasks alive: %zu\n",
           (unsigned long long)st.iterations, (unsigned long long)st.callbacks_run,
           st.tasks_alive);
    printf("slowest callback: %s (%.2f s), slow callbacks reported: %d\n",
           st.slowest_callback_name ? st.slowest_callback_name : "none", st.slowest_callback,
           m->slow_callbacks);
}

/* Not static, and visible: debug mode names a callback after its entry
 * in the dynamic symbol table (the demos link with -rdynamic). */
__attribute__((visibility("default"))) void blocking_callback(lb_loop *loop, void *data);
void blocking_callback(lb_loop *loop, void *data) {
    (void)loop;
    (void)data;
    struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int monitored_operation(lb_task *task, void *data) {
    (void)task;
    (void)data;
    monitor m;
    int r = monitor_start(&m, lb_loop_get_running());
    if (r < 0) {
        fprintf(stderr, "monitor_start: %s\n", lb_error_detail());
        return r;
    }
    r = lb_loop_call_soon(m.loop, blocking_callback, NULL, NULL);
    if (r == 0)
        r = lb_sleep(1.0 * scale);
    if (r == 0)
        monitor_print_stats(&m);
    monitor_stop(&m);
    return r;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--scale") == 0)
        scale = atof(argv[2]);
    int r = lb_run(monitored_operation, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "lb_run: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return 1;
    }
    return 0;
}
