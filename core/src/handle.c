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
    h->flags = LB__HANDLE_QUEUED;
    h->aux2 = NULL;
    return h;
}

/* Runs a handle the ready queue held: its callback, unless it was
 * cancelled meanwhile, then the queue's reference goes. Internal
 * callbacks find their extra arguments through lb__current(). */
void lb__run_handle(lb_loop *loop, void *handle) {
    lb_handle *h = handle;
    if (!(h->flags & LB__HANDLE_CANCELLED)) {
        /* DONE before the call, so that cancelling itself is a no-op. */
        h->flags |= LB__HANDLE_DONE;
        lb_handle *outer = loop->current; /* nested dispatch */
        loop->current = h;
        lb__run_callback(loop, h->cb, h->data);
        loop->current = outer;
    }
    lb__handle_unqueue(h);
}

__attribute__((cold)) void lb__handle_run_destroy(lb_handle *h) {
    if (h->flags & LB__HANDLE_DESTROY) {
        /* Cleared first: the destroy may cancel or release the handle. */
        h->flags &= ~(uint32_t)LB__HANDLE_DESTROY;
        h->destroy(h->data);
    }
}

/* Drops one reference; the last one returns the handle to the slab. A
 * handle the user held keeps the loop alive (lb__loop_hold), so the slab
 * is still there when the user's reference goes last.
 * The first release once the loop let go of the handle (it ran, or was
 * dropped: lb__handle_unqueue clears QUEUED first) runs its destroy
 * notify, so every way a call leaves the loop runs it exactly once, and
 * a reference the user still holds keeps the handle but not its data. */
static inline __attribute__((always_inline)) void handle_release(lb_handle *h) {
    if (__builtin_expect((h->flags & (LB__HANDLE_DESTROY | LB__HANDLE_QUEUED)) ==
                             LB__HANDLE_DESTROY, 0))
        lb__handle_run_destroy(h);
    if (--h->refs > 0)
        return;
    lb_loop *loop = h->loop;
    bool held = h->flags & LB__HANDLE_HELD;
    void *aux = (h->flags & LB__HANDLE_AUX_REF) ? h->aux : NULL;
    lb__slab_free(&loop->handle_slab, h);
    if (aux)
        loop->release_aux(aux);
    if (held)
        lb__loop_unhold(loop);
}

/* Inlined into lb_handle_unref as well: the destroy check must not cost
 * the unref of a timer handle a call (workload W3). */
void lb__handle_release(lb_handle *h) {
    handle_release(h);
}

int lb_handle_cancel(lb_handle *handle) {
    lb_assert_return(handle, -EINVAL);
    int r = lb__loop_check_thread(handle->loop, __func__);
    if (r < 0)
        return r;
    if (handle->flags & (LB__HANDLE_CANCELLED | LB__HANDLE_DONE))
        return 0;
    handle->flags |= LB__HANDLE_CANCELLED;
    /* A due timer moved to the ready queue is no longer the heap's. */
    if (handle->flags & LB__HANDLE_IN_HEAP)
        handle->loop->timers.dead++;
    /* Its data is released now, not when the lazily cancelled entry
     * surfaces in the heap or the queue. */
    lb__handle_run_destroy(handle);
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

static void handle_ref(void *handle) {
    ((lb_handle *)handle)->refs++;
}

lb_handle *lb_handle_ref(lb_handle *handle) {
    return handle && lb__loop_release_call(handle->loop, __func__, handle_ref, handle) ? handle
                                                                                       : NULL;
}

static void handle_unref(void *handle) {
    lb_handle *h = handle;
    /* The loop's own reference (while the handle is scheduled) is not the
     * caller's to drop: dropping it would free the handle under the timer
     * heap or the ready queue. */
    unsigned loops = (h->flags & LB__HANDLE_QUEUED) ? 1 : 0;
    if (h->refs <= loops) {
        lb__log(LB_LOG_ERROR, "lb_handle_unref: handle %p has no reference left", handle);
        return;
    }
    handle_release(h);
}

lb_handle *lb_handle_unref(lb_handle *handle) {
    if (handle)
        lb__loop_release_call(handle->loop, __func__, handle_unref, handle);
    return NULL;
}
