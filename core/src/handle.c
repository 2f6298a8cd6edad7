/* SPDX-License-Identifier: MIT */
#include "error.h"
#include "loop_internal.h"

lb_handle *lb__handle_new(lb_loop *loop, lb_callback cb, void *data) {
    lb_handle *h = lb__slab_alloc(&loop->handle_slab);
    if (!h)
        return NULL;
    h->next = NULL;
    h->cb = cb;
    h->data = data;
    h->loop = loop;
    h->aux = NULL;
    h->when = 0;
    h->refs = 1;
    h->flags = 0;
    return h;
}

/* Drops one reference; the last one returns the handle to the slab. A
 * handle the user held keeps the loop alive (lb_loop_ref), so the slab
 * is still there when the user's reference goes last. */
void lb__handle_release(lb_handle *h) {
    if (--h->refs > 0)
        return;
    lb_loop *loop = h->loop;
    bool held = h->flags & LB__HANDLE_HELD;
    lb__slab_free(&loop->handle_slab, h);
    if (held)
        lb_loop_unref(loop);
}

int lb_handle_cancel(lb_handle *handle) {
    lb_assert_return(handle, -EINVAL);
    if (handle->flags & (LB__HANDLE_CANCELLED | LB__HANDLE_DONE))
        return 0;
    handle->flags |= LB__HANDLE_CANCELLED;
    if (handle->flags & LB__HANDLE_TIMER)
        handle->loop->timers.dead++;
    return 1;
}

bool lb_handle_is_cancelled(const lb_handle *handle) {
    return handle && (handle->flags & LB__HANDLE_CANCELLED);
}

double lb_handle_when(const lb_handle *handle) {
    if (!handle || !(handle->flags & LB__HANDLE_TIMER))
        return 0.0;
    return (double)handle->when / 1e9;
}

lb_handle *lb_handle_ref(lb_handle *handle) {
    if (handle)
        handle->refs++;
    return handle;
}

lb_handle *lb_handle_unref(lb_handle *handle) {
    if (handle) {
        if (handle->refs == 0) {
            lb__log(LB_LOG_ERROR, "lb_handle_unref: handle %p has no reference left", (void *)handle);
            return NULL;
        }
        lb__handle_release(handle);
    }
    return NULL;
}
