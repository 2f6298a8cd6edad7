/* SPDX-License-Identifier: MIT */
#ifndef DEMO_DOWNLOAD_SERVER_H
#define DEMO_DOWNLOAD_SERVER_H

/* The "network" behind the GUI demos' Fetch button: a server the demo
 * runs itself, in the same loop, on a loopback port the kernel picks. A
 * client sends "GET\n" and gets "SIZE n\n" followed by n bytes, sent in
 * DOWNLOAD_CHUNK pieces DOWNLOAD_PACE seconds apart (about a second for
 * the whole DOWNLOAD_SIZE), like a slow network. Each connection is served
 * by a task of its own. */

#include <loopbridge/loopbridge.h>

#define DOWNLOAD_SIZE (1024 * 1024)
#define DOWNLOAD_CHUNK (16 * 1024)
#define DOWNLOAD_PACE 0.015

/* Starts the server on 127.0.0.1; lb_server_port() tells where. Returns 0
 * or a negative errno (lb_error_detail() says why). */
int download_server_start(lb_loop *loop, lb_server **ret);

#endif
