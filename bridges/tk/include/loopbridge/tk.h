/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_TK_H
#define LOOPBRIDGE_TK_H

/* The Tcl/Tk bridge: a loopbridge loop running as a Tcl event source
 * inside the Tcl notifier of the calling thread, so a Tk application
 * keeps calling Tk_MainLoop() (or Tcl_DoOneEvent()) and loopbridge
 * callbacks, timers, fds and tasks run between window events. It needs
 * only Tcl's notifier: Tcl-only programs can use it too. Link with
 * libloopbridge-tk (pkg-config loopbridge-tk); loading it also makes
 * LB_DRIVER=tk available. Everything here runs on the Tcl thread. */

#include <loopbridge/loopbridge.h>

#include <tcl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The Tk driver, for lb_loop_new_full(&loop, lb_driver_tk(), interp)
 * (interp may be NULL). */
LB_EXPORT const lb_driver *lb_driver_tk(void);

/* Creates a loop in the calling thread's Tcl notifier. With an interp,
 * errors reported to the loop's exception handler go to Tcl's
 * background error handler (Tcl_BackgroundException, i.e. bgerror).
 * Returns 0 or a negative errno (see lb_loop_new; -EMFILE when no file
 * descriptor below 1024 is free for Tcl 8.6's select-based notifier). */
LB_EXPORT int lb_tk_loop_new(lb_loop **ret, Tcl_Interp *interp);

/* How long one dispatch may run callbacks before the loop lets Tk's
 * idle work (redraws) run; default 1 ms. Returns 0, -EINVAL, -EBADF. */
LB_EXPORT int lb_tk_loop_set_budget(lb_loop *loop, double seconds);

#ifdef __cplusplus
}
#endif

#endif
