/* SPDX-License-Identifier: MIT */
/* What the GLib driver and the GIO helpers share. Not installed. */
#ifndef LB_GLIB_INTERNAL_H
#define LB_GLIB_INTERNAL_H

#include <loopbridge/glib.h>

typedef struct lb__glib_state lb__glib_state;

/* The per-loop state of the GLib driver (the driver's attach makes it). */
struct lb__glib_state {
    lb_loop *loop;
    GMainContext *context;  /* one reference */
    gboolean own_context;   /* made for a loop on a thread without one */
    GSource *source;        /* the loop's source; one reference */
    GSource *resume;        /* ends a step aside; one reference */
    gpointer fd_tag;        /* the backend fd in source */
    gint64 budget_ns;       /* per dispatch; G_MAXINT64: none */
    gint64 deadline_ns;     /* next timer (CLOCK_MONOTONIC), or -1 */
    gboolean stepped_aside; /* waiting for resume to run */
};

/* The GLib driver's state of loop, or NULL if loop is not a GLib loop
 * (or is closed). */
lb__glib_state *lb__glib_state_of(const lb_loop *loop);

/* lb__glib_state_of(), or NULL with *error set to -EINVAL (NULL loop, not
 * a glib loop) or -EBADF (closed) and a message naming func. */
lb__glib_state *lb__glib_loop(const lb_loop *loop, const char *func, int *error);

#endif
