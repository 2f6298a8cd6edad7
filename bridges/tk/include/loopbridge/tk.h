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
 * (interp may be NULL). Loading the library also registers it, so
 * LB_DRIVER=tk finds it. Any thread. */
LB_EXPORT const lb_driver *lb_driver_tk(void);

/* Creates a loop in the calling thread's Tcl notifier, bringing that
 * notifier up if the thread has none yet; the loop belongs to this
 * thread for good. Tk_MainLoop(), vwait or Tcl_DoOneEvent() on this
 * thread run it; so does lb_loop_run_forever(). A call with
 * TCL_DONT_WAIT (each pass of `update`) runs one iteration of the loop,
 * what was ready when it began, and while work is left does not count it
 * as an event, so `update` returns however busy the loop is; what the
 * iteration scheduled runs in the next pass or the next blocking call.
 * With an interp (which
 * the loop keeps alive with Tcl_Preserve until it is closed), errors
 * reported to the loop's exception handler go to Tcl's background error
 * handler (bgerror), with the error code {LOOPBRIDGE errno message};
 * interp may be NULL. Close the loop (lb_loop_close) before Tcl_Finalize.
 * Returns 0 and stores the loop in *ret, or a negative errno (see
 * lb_loop_new_full; -EMFILE when no file descriptor below 1024 is free
 * for Tcl 8.6's select-based notifier), leaving *ret untouched. */
LB_EXPORT int lb_tk_loop_new(lb_loop **ret, Tcl_Interp *interp);

/* How long the loop may keep Tcl busy before it lets Tk's idle work
 * (redraws) and Tcl's other events run; default 0.5 ms. A longer budget
 * trades how late a redraw or a Tcl `after` can be for fewer passes
 * through Tcl's notifier while work floods the loop; it also bounds
 * the iteration one pass of `update` runs. Having stepped
 * aside, the loop resumes from a Tcl idle callback: a host that calls
 * Tcl_DoOneEvent() without TCL_IDLE_EVENTS must let idle work run now
 * and then (Tk_MainLoop, vwait and update do).
 * Budgets of a day or more mean none: the loop never steps aside.
 * Returns 0, -EINVAL (seconds not positive, or not a Tk loop), -EBADF
 * (closed loop), -EPERM (called from another thread than the loop's). */
LB_EXPORT int lb_tk_loop_set_budget(lb_loop *loop, double seconds);

/* Makes a Tk toplevel's close wait until group's tasks unwound, so that
 * their cleanup still finds its widgets (`winfo exists` is true; no
 * `closing` flag in every widget update):
 *
 *     lb_tk_close_after(interp, ".", jobs, "app::close");
 *
 * Creates the Tcl command `command` and makes it the toplevel's
 * `wm protocol WM_DELETE_WINDOW` handler; a Quit button, a script or a
 * task may call it too. Its first call cancels group and keeps the
 * toplevel; once every task of the group ended, the loop destroys the
 * toplevel (`destroy`; for "." Tk then ends the application). Further
 * calls while the tasks unwind do nothing. It never runs the loop inside
 * the command, so it works whether the close came from the window
 * manager or from a loopbridge callback or task. If the toplevel is
 * destroyed by other means (`destroy` from a script), a <Destroy>
 * binding cancels the group, but the widgets are gone then. The command
 * goes with the toplevel (or the interp); while it exists it holds the
 * group and the interp (Tcl_Preserve). Needs Tk in interp.
 *
 * interp:   the interp with Tk.
 * toplevel: the toplevel's path name (".", ".editor").
 * group:    the tasks to unwind first.
 * command:  the Tcl command to create (replaced if it exists).
 *
 * Returns 0; -EINVAL (a NULL or empty argument, a path not starting with
 * ".", Tcl refused the `wm protocol` or `bind`, with Tcl's message in
 * lb_error_detail()); -EPERM (not the thread of the group's loop);
 * -ENOMEM. The command returns a Tcl error (code {LOOPBRIDGE ...}) if the
 * group's loop is closed. The Tcl thread. */
LB_EXPORT int lb_tk_close_after(Tcl_Interp *interp, const char *toplevel, lb_group *group,
                                const char *command);

#ifdef __cplusplus
}
#endif

#endif
