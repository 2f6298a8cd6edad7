/* SPDX-License-Identifier: MIT */
#include "download-server.h"

#include <stdio.h>
#include <string.h>

static int serve_download(lb_stream *s, void *data) {
    (void)data;
    char request[64];
    ssize_t n = lb_stream_readline(s, request, sizeof request);
    if (n <= 0)
        return (int)n;
    char header[32];
    int len = snprintf(header, sizeof header, "SIZE %d\n", DOWNLOAD_SIZE);
    int r = lb_stream_write(s, header, (size_t)len);
    static char chunk[DOWNLOAD_CHUNK];
    for (size_t sent = 0; r == 0 && sent < DOWNLOAD_SIZE; sent += DOWNLOAD_CHUNK) {
        memset(chunk, 'a' + (int)(sent / DOWNLOAD_CHUNK) % 26, sizeof chunk);
        r = lb_stream_write(s, chunk, sizeof chunk);
        if (r == 0)
            r = lb_stream_drain(s); /* backpressure: wait while the client lags */
        if (r == 0)
            r = lb_sleep(DOWNLOAD_PACE);
    }
    return r;
}

int download_server_start(lb_loop *loop, lb_server **ret) {
    return lb_start_server(loop, "127.0.0.1", 0, serve_download, NULL, NULL, ret);
}
