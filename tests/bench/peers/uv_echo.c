/* SPDX-License-Identifier: MIT */
/* W11 (TCP echo) in plain libuv, the peer loopbridge's W11 is measured
 * against: a server on 127.0.0.1 and 100 client connections in one
 * process and one loop; each client sends 64 bytes, waits for the echo,
 * and again, for n milliseconds. The usual libuv way: uv_read_start on
 * every stream, uv_write of the bytes read.
 *
 * Usage: uv_echo W11 [milliseconds] | uv_echo version
 * Build: cc -O2 uv_echo.c $(pkg-config --cflags --libs libuv) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define CLIENTS 100
#define MSG 64

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    char buf[MSG];
    size_t have;
    uint64_t sent_at;
    int done;
} client;

typedef struct echo_write {
    uv_write_t req;
    char data[];
} echo_write;

static uv_loop_t *loop;
static uv_tcp_t server;
static client clients[CLIENTS];
static uint64_t end_at;
static int64_t *rtt;
static long nrtt, cap;
static int clients_left, errors;
static const char message[MSG] = {[0 ... MSG - 1] = 'e'};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

/* A server-side connection is gone. */
static void on_closed(uv_handle_t *h) {
    free(h);
}

/* ---------------- server ---------------- */

static void on_echoed(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static void on_server_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    if (n > 0) {
        echo_write *w = malloc(sizeof *w + (size_t)n);
        memcpy(w->data, buf->base, (size_t)n);
        uv_buf_t out = uv_buf_init(w->data, (unsigned)n);
        uv_write(&w->req, s, &out, 1, on_echoed);
    } else if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed);
    }
    free(buf->base);
}

static void on_connection(uv_stream_t *srv, int status) {
    if (status < 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(loop, c);
    c->data = NULL;
    if (uv_accept(srv, (uv_stream_t *)c) == 0) {
        uv_tcp_nodelay(c, 1);
        uv_read_start((uv_stream_t *)c, on_alloc, on_server_read);
    } else {
        uv_close((uv_handle_t *)c, on_closed);
    }
}

/* ---------------- clients ---------------- */

static void client_closed(uv_handle_t *h) {
    (void)h;
    if (--clients_left == 0)
        uv_close((uv_handle_t *)&server, NULL);
}

static void send_message(client *c);

static void on_sent(uv_write_t *req, int status) {
    if (status < 0)
        errors++;
    free(req);
}

static void send_message(client *c) {
    uv_write_t *req = malloc(sizeof *req);
    uv_buf_t b = uv_buf_init((char *)message, MSG);
    c->have = 0;
    c->sent_at = uv_hrtime();
    uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_sent);
}

static void finish_client(client *c) {
    if (!c->done) {
        c->done = 1;
        uv_close((uv_handle_t *)&c->tcp, client_closed);
    }
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    client *c = s->data;
    if (n < 0) {
        errors++;
        finish_client(c);
    } else if (n > 0) {
        c->have += (size_t)n;
        if (c->have >= MSG) {
            uint64_t now = uv_hrtime();
            if (nrtt == cap) {
                cap = cap ? cap * 2 : 1 << 16;
                rtt = realloc(rtt, (size_t)cap * sizeof *rtt);
            }
            rtt[nrtt++] = (int64_t)(now - c->sent_at);
            if (now >= end_at)
                finish_client(c);
            else
                send_message(c);
        }
    }
    free(buf->base);
}

static void on_connected(uv_connect_t *req, int status) {
    client *c = req->data;
    if (status < 0) {
        errors++;
        finish_client(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_client_read);
    send_message(c);
}

static int cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "W11";
    if (!strcmp(what, "version")) {
        printf("{\"libuv\": \"%s\"}\n", uv_version_string());
        return 0;
    }
    if (strcmp(what, "W11") != 0) {
        printf("{\"peer\": \"libuv\", \"workload\": \"%s\", \"error\": \"unknown workload\"}\n",
               what);
        return 0;
    }
    long ms = argc > 2 ? atol(argv[2]) : 10000;
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&server, (struct sockaddr *)&addr, 0) ||
        uv_listen((uv_stream_t *)&server, 128, on_connection)) {
        fprintf(stderr, "uv_echo: cannot listen\n");
        return 1;
    }
    int len = sizeof addr;
    uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
    uint64_t t0 = uv_hrtime();
    end_at = t0 + (uint64_t)ms * 1000000;
    clients_left = CLIENTS;
    for (int i = 0; i < CLIENTS; i++) {
        client *c = &clients[i];
        uv_tcp_init(loop, &c->tcp);
        uv_tcp_nodelay(&c->tcp, 1);
        c->tcp.data = c;
        c->connect.data = c;
        uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr, on_connected);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    double dt = (uv_hrtime() - t0) / 1e9;
    qsort(rtt, (size_t)nrtt, sizeof *rtt, cmp);
    double median = nrtt ? (nrtt % 2 ? rtt[nrtt / 2] : (rtt[nrtt / 2 - 1] + rtt[nrtt / 2]) / 2.0)
                         : 0;
    long k = (99 * nrtt + 99) / 100 - 1;
    double p99 = nrtt ? (double)rtt[k < 0 ? 0 : k] : 0;
    printf("{\"peer\": \"libuv\", \"workload\": \"W11_echo\", \"n\": %ld, \"seconds\": %.4f, "
           "\"msgs_per_s\": %.1f, \"median_us\": %.3f, \"p99_us\": %.3f, \"connections\": %d, "
           "\"message_bytes\": %d, \"errors\": %d, \"maxrss_kb\": %ld, "
           "\"impl\": \"uv_tcp server (uv_read_start, uv_write of what was read) + 100 uv_tcp "
           "clients in one uv_default_loop\"}\n",
           nrtt, dt, nrtt / dt, median / 1e3, p99 / 1e3, CLIENTS, MSG, errors, maxrss_kb());
    free(rtt);
    uv_loop_close(loop);
    return 0;
}
