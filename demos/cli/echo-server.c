/* SPDX-License-Identifier: MIT */
/* A TCP echo server (asyncio's streams example): every connection gets a
 * task of its own that sends each line it reads back. SIGINT or SIGTERM
 * stops it gracefully: the server stops accepting, the connections still
 * open are cancelled, and it waits for them to end.
 *
 *   echo-server [--port N]            listen on 127.0.0.1:N (default 8888;
 *                                     0 picks a free port)
 *               [--quit-after SECONDS] stop on its own (as SIGTERM would)
 *
 * Try it with demos/cli/echo-client, or `nc 127.0.0.1 8888`. */
#include <loopbridge/loopbridge.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct server_state {
    uint16_t port;
    double quit_after;
    lb_future *stop; /* completed by SIGINT, SIGTERM or --quit-after */
} server_state;

/* Serves one connection: lines in, the same lines out. */
static int handle_client(lb_stream *stream, void *data) {
    (void)data;
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    char who[INET_ADDRSTRLEN + 8] = "?";
    if (getpeername(lb_stream_fd(stream), (struct sockaddr *)&peer, &len) == 0) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        snprintf(who, sizeof who, "%s:%u", ip, (unsigned)ntohs(peer.sin_port));
    }
    printf("Connection from %s\n", who);
    char line[1024];
    ssize_t n;
    int lines = 0;
    while ((n = lb_stream_readline(stream, line, sizeof line)) > 0) {
        printf("Echoing %zd bytes to %s\n", n, who);
        int r = lb_stream_write(stream, line, (size_t)n);
        if (r == 0)
            r = lb_stream_drain(stream); /* a slow reader slows us down */
        if (r < 0)
            return r;
        lines++;
    }
    if (n == -ECANCELED)
        printf("Connection from %s cancelled\n", who);
    else
        printf("Connection from %s closed after %d line(s)\n", who, lines);
    return n < 0 ? (int)n : 0;
}

static void request_stop(lb_loop *loop, void *data) {
    server_state *st = data;
    (void)loop;
    if (!lb_future_is_done(st->stop))
        lb_future_set_result(st->stop, NULL, NULL);
}

static int serve(lb_task *task, void *data) {
    server_state *st = data;
    lb_loop *loop = lb_loop_get_running();
    (void)task;
    int r = lb_future_new(loop, &st->stop);
    if (r < 0)
        return r;
    lb_server *server = NULL;
    r = lb_start_server(loop, "127.0.0.1", st->port, handle_client, NULL, NULL, &server);
    if (r < 0) {
        fprintf(stderr, "Cannot listen on 127.0.0.1:%u: %s\n", (unsigned)st->port,
                lb_error_detail());
        lb_future_unref(st->stop);
        return r;
    }
    printf("Serving on 127.0.0.1:%d\n", lb_server_port(server));
    lb_loop_add_signal_handler(loop, SIGINT, request_stop, st);
    lb_loop_add_signal_handler(loop, SIGTERM, request_stop, st);
    if (st->quit_after > 0)
        lb_loop_call_later(loop, st->quit_after, request_stop, st, NULL);

    r = lb_await(st->stop, NULL);
    printf("Shutting down (%zu connection(s) open)\n", lb_server_connections(server));
    lb_server_close(server, true); /* stop accepting, cancel the connections */
    lb_server_wait_closed(server);
    lb_server_unref(server);
    lb_future_unref(st->stop);
    printf("Server closed\n");
    return r;
}

int main(int argc, char **argv) {
    server_state st = {.port = 8888};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            st.port = (uint16_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--quit-after") == 0)
            st.quit_after = atof(argv[i + 1]);
    }
    /* Line by line even into a pipe, so that a parent reading our output
     * (echo-client --spawn-server) sees each line as it is printed. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int r = lb_run(serve, &st, NULL);
    if (r < 0 && r != -ECANCELED)
        fprintf(stderr, "echo-server: %s\n", lb_strerror(r));
    return r < 0 && r != -ECANCELED;
}
