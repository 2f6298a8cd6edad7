/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_GTK_H
#define LOOPBRIDGE_GTK_H

/* GTK 4 one-liners over <loopbridge/glib.h>. Header only: the GLib
 * bridge does not link GTK, the application does.
 *
 * int lb_glib_window_close_after(GtkWindow *window, lb_group *group):
 * window's close waits until group's tasks unwound
 * (lb_glib_close_after() with "close-request" and gtk_window_close()). */

/* GTK itself where its headers are on the include path, as in a GTK
 * program; without them (loopbridge-glib's flags alone) the header still
 * compiles, from the two names below. */
#if defined(__has_include)
#if __has_include(<gtk/gtk.h>)
#include <gtk/gtk.h>
#endif
#endif
#include <loopbridge/glib.h>

G_BEGIN_DECLS

/* The two names of GTK 4 this header uses, declared as <gtk/gtk.h>
 * declares them (a repeated identical declaration is valid C and C++). */
typedef struct _GtkWindow GtkWindow;
void gtk_window_close(GtkWindow *window);

/* Not API: lb_glib_window_close_after()'s close function. */
static inline void lb__gtk_window_close(gpointer window) {
    gtk_window_close((GtkWindow *)window);
}

/* Makes window's close wait until group's tasks unwound:
 *
 *     lb_glib_window_close_after(GTK_WINDOW(window), jobs);
 *
 * The first "close-request" (the window manager's close button,
 * gtk_window_close() from a callback or a task) cancels group and keeps
 * the window; once every task of the group ended, the window is closed
 * (and destroyed, unless another handler vetoes it). The tasks' cleanup
 * may still update the window's widgets. See lb_glib_close_after().
 * Returns 0, -EINVAL, -EPERM as lb_glib_close_after(). GTK's thread. */
static inline int lb_glib_window_close_after(GtkWindow *window, lb_group *group) {
    return lb_glib_close_after(window, "close-request", group, lb__gtk_window_close);
}

G_END_DECLS

#endif
