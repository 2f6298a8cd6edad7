/* SPDX-License-Identifier: MIT */
/* Closing a Tk toplevel after its tasks unwound (lb_tk_close_after).
 *
 * A Tcl command stands for the close: `wm protocol TOP WM_DELETE_WINDOW`
 * runs it, and so may a Quit button, a script or a task. Its first call
 * cancels the group and keeps the toplevel; lb_group_cancel_then() calls
 * back from the loop once every task ended, and the toplevel is
 * destroyed then. No loop runs inside the command, so it works wherever
 * the close starts. Only Tcl is linked: Tk is reached through scripts. */
#include <loopbridge/tk.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tk_close {
    unsigned refs;          /* the command's, and a pending callback's */
    Tcl_Interp *interp;     /* Tcl_Preserve'd */
    Tcl_Obj *toplevel;      /* its path name; one reference */
    Tcl_Command token;      /* NULL once the command is deleted */
    lb_group *group;        /* one reference */
    bool unwinding;         /* the group was cancelled; waiting for it */
} tk_close;

static void tk_close_unref(void *data) {
    tk_close *c = data;
    if (--c->refs > 0)
        return;
    Tcl_DecrRefCount(c->toplevel);
    lb_group_unref(c->group);
    Tcl_Release(c->interp);
    free(c);
}

/* Evaluates words as one command; an error goes to bgerror. */
static void eval_words(Tcl_Interp *interp, int n, Tcl_Obj *const words[]) {
    if (Tcl_EvalObjv(interp, n, words, TCL_EVAL_GLOBAL) != TCL_OK)
        Tcl_BackgroundException(interp, TCL_ERROR);
}

/* Every task of the group ended: the toplevel goes now. */
static void tk_close_unwound(lb_loop *loop, void *data) {
    (void)loop;
    tk_close *c = data;
    c->unwinding = false;
    if (!c->token || Tcl_InterpDeleted(c->interp))
        return; /* the toplevel went by other means */
    Tcl_Obj *words[2] = {Tcl_NewStringObj("destroy", -1), c->toplevel};
    Tcl_IncrRefCount(words[0]);
    eval_words(c->interp, 2, words);
    Tcl_DecrRefCount(words[0]);
}

/* CMD: requests the close. CMD destroyed: the toplevel is being destroyed
 * by other means (its <Destroy> binding): the group is cancelled, and the
 * command goes. */
static int tk_close_cmd(ClientData data, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]) {
    tk_close *c = data;
    if (objc == 2 && strcmp(Tcl_GetString(objv[1]), "destroyed") == 0) {
        lb_group_cancel(c->group);
        if (c->token)
            Tcl_DeleteCommandFromToken(interp, c->token);
        return TCL_OK;
    }
    if (objc != 1) {
        Tcl_WrongNumArgs(interp, 1, objv, "?destroyed?");
        return TCL_ERROR;
    }
    if (c->unwinding)
        return TCL_OK; /* asked again while the tasks unwind */
    c->refs++;
    int r = lb_group_cancel_then(c->group, tk_close_unwound, c, tk_close_unref);
    if (r < 0) {
        c->refs--;
        Tcl_SetObjResult(interp, Tcl_ObjPrintf("cannot wait for the tasks of %s: %s",
                                               Tcl_GetString(c->toplevel), lb_error_detail()));
        Tcl_SetErrorCode(interp, "LOOPBRIDGE", lb_strerror(r), NULL);
        return TCL_ERROR;
    }
    c->unwinding = true;
    return TCL_OK;
}

static void tk_close_cmd_deleted(ClientData data) {
    tk_close *c = data;
    c->token = NULL;
    tk_close_unref(c);
}

int lb_tk_close_after(Tcl_Interp *interp, const char *toplevel, lb_group *group,
                      const char *command) {
    static const char func[] = "lb_tk_close_after";
    if (!interp || !toplevel || toplevel[0] != '.' || !group || !command || !command[0])
        return lb_driver_fail(-EINVAL, "%s: interp, group, command and a toplevel's path "
                                       "name (\".top\") are needed", func);
    lb_group *held = lb_group_ref(group);
    if (!held)
        return lb_driver_fail(-EPERM, "%s: called on a thread that does not run the group's loop",
                              func);
    tk_close *c = calloc(1, sizeof *c);
    if (!c) {
        lb_group_unref(held);
        return lb_driver_fail(-ENOMEM, "%s: out of memory", func);
    }
    c->refs = 1;
    c->interp = interp;
    Tcl_Preserve(interp);
    c->toplevel = Tcl_NewStringObj(toplevel, -1);
    Tcl_IncrRefCount(c->toplevel);
    c->group = held;
    c->token = Tcl_CreateObjCommand(interp, command, tk_close_cmd, c, tk_close_cmd_deleted);
    /* The window manager's close runs the command; so does a destroy of
     * the toplevel from elsewhere, with "destroyed". The binding tag of a
     * toplevel is on its children too: %W tells the toplevel apart. */
    Tcl_Obj *name = Tcl_NewStringObj(command, -1);
    Tcl_Obj *protocol[] = {Tcl_NewStringObj("wm", -1), Tcl_NewStringObj("protocol", -1),
                           c->toplevel, Tcl_NewStringObj("WM_DELETE_WINDOW", -1), name};
    Tcl_Obj *apply[] = {Tcl_NewStringObj("apply", -1),
                        Tcl_NewStringObj("{w top cmd} {if {$w eq $top && "
                                         "[llength [info commands $cmd]]} {$cmd destroyed}}",
                                         -1),
                        Tcl_NewStringObj("%W", -1), c->toplevel, name};
    Tcl_Obj *binding = Tcl_NewStringObj("+", 1);
    Tcl_AppendObjToObj(binding, Tcl_NewListObj(5, apply));
    Tcl_Obj *bind[] = {Tcl_NewStringObj("bind", -1), c->toplevel,
                       Tcl_NewStringObj("<Destroy>", -1), binding};
    Tcl_Obj *scripts[] = {Tcl_NewListObj(5, protocol), Tcl_NewListObj(4, bind)};
    int st = TCL_OK;
    for (int i = 0; i < 2; i++) {
        Tcl_IncrRefCount(scripts[i]);
        if (st == TCL_OK)
            st = Tcl_EvalObjEx(interp, scripts[i], TCL_EVAL_GLOBAL);
        Tcl_DecrRefCount(scripts[i]);
    }
    if (st != TCL_OK) {
        int r = lb_driver_fail(-EINVAL, "%s: %s", func, Tcl_GetStringResult(interp));
        Tcl_DeleteCommandFromToken(interp, c->token);
        return r;
    }
    return 0;
}
