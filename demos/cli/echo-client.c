/* SPDX-License-Identifier: MIT */
/* A TCP echo client (asyncio's streams example): connects, sends each
 * message as a line, prints what comes back.
 *
 *   echo-client [--host H] [--port N] [MESSAGE...]
 *       talk to a running echo-server (default 127.0.0.1:8888; the
 *       messages default to "hello", "world")
 *   echo-client --spawn-server PATH [MESSAGE...]
 *       start the echo-server at PATH as a subprocess on a free port
 *       (read from its output), talk to it, stop it with SIGTERM and show
 *       what it printed and how it exited: a subprocess, its output
 *       pipe, a TCP connection and a server, all in one loop. */
#include <loopbridge/loopbridge.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client_args {
    const char *host;
    uint16_t port;
    const char *server_path;
    const char *const *messages;
    int n_messages;
} client_args;

/* Sends each message and prints its echo. */
static int talk(const char *host, uint16_t port, const client_args *a) {
    lb_stream *s = NULL;
    int r = lb_open_connection(host, port, NULL, 5.0, &s);
    if (r < 0) {
        fprintf(stderr, "Cannot connect to %s:%u: %s\n", host, (unsigned)port, lb_error_detail());
        return r;
    }
    printf("Connected to %s:%u\n", host, (unsigned)port);
    for (int i = 0; i < a->n_messages && r == 0; i++) {
        char line[1024];
        int len = snprintf(line, sizeof line, "%s\n", a->messages[i]);
        printf("Sent: %s\n", a->messages[i]);
        r = lb_stream_write(s, line, (size_t)len);
        ssize_t n = r < 0 ? r : lb_stream_readline(s, line, sizeof line - 1);
        if (n <= 0) {
            r = n < 0 ? (int)n : -ECONNRESET;
            break;
        }
        line[n - (line[n - 1] == '\n')] = '\0';
        printf("Received: %s\n", line);
    }
    lb_stream_close(s);
    int c = lb_stream_wait_closed(s);
    lb_stream_unref(s);
    printf("Connection closed\n");
    return r < 0 ? r : c;
}

/* Reads one line of the server's output into line (without newline). */
static ssize_t server_line(lb_process *server, char *line, size_t cap) {
    ssize_t n = lb_stream_readline(lb_process_stdout(server), line, cap - 1);
    if (n > 0)
        line[n - (line[n - 1] == '\n')] = '\0';
    return n;
}

static int with_spawned_server(const client_args *a) {
    lb_loop *loop = lb_loop_get_running();
    const char *argv[] = {a->server_path, "--port", "0", NULL};
    lb_process_options o = {.out = LB_STDIO_PIPE};
    lb_process *server = NULL;
    int r = lb_process_spawn(loop, argv, &o, &server);
    if (r < 0) {
        fprintf(stderr, "Cannot start the server: %s\n", lb_error_detail());
        return r;
    }
    printf("Started the server (pid %d)\n", (int)lb_process_pid(server));

    /* Its first line says where it listens. */
    char line[256];
    unsigned port = 0;
    lb_stream_set_timeout(lb_process_stdout(server), 10.0);
    if (server_line(server, line, sizeof line) > 0) {
        printf("Server: %s\n", line);
        sscanf(line, "Serving on 127.0.0.1:%u", &port);
    }
    r = port ? talk("127.0.0.1", (uint16_t)port, a) : -EPROTO;

    /* Stop it as Ctrl+C would, and show the rest of what it said. */
    lb_process_terminate(server);
    while (server_line(server, line, sizeof line) > 0)
        printf("Server: %s\n", line);
    int code = -1;
    int w = lb_process_wait(server, 10.0, &code);
    if (w == 0)
        printf("Server exited with code %d\n", code);
    else
        fprintf(stderr, "Waiting for the server: %s\n", lb_strerror(w));
    lb_process_unref(server);
    return r < 0 ? r : w;
}

static int client_main(lb_task *task, void *data) {
    const client_args *a = data;
    (void)task;
    if (a->server_path)
        return with_spawned_server(a);
    return talk(a->host, a->port, a);
}

int main(int argc, char **argv) {
    static const char *const defaults[] = {"hello", "world"};
    client_args a = {.host = "127.0.0.1", .port = 8888, .messages = defaults, .n_messages = 2};
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--host") == 0)
            a.host = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0)
            a.port = (uint16_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--spawn-server") == 0)
            a.server_path = argv[i + 1];
    }
    if (i < argc) {
        a.messages = (const char *const *)argv + i;
        a.n_messages = argc - i;
    }
    int r = lb_run(client_main, &a, NULL);
    if (r < 0)
        fprintf(stderr, "echo-client: %s\n", lb_strerror(r));
    return r < 0;
}
