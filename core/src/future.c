/* SPDX-License-Identifier: MIT */
#include "future_internal.h"

#include "alloc.h"
#include "clock.h"
#include "error.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define FUTURES_PER_CHUNK 128

static void release_future(void *future) {
    lb_future_unref(future);
}

void lb__futures_init(lb_loop *loop) {
    lb__slab_init(&loop->future_slab, sizeof(lb_future), FUTURES_PER_CHUNK);
    loop->release_aux = release_future;
}

/* ------------------------------------------------------------------ */
/* Cross-thread waiting                                                */
/* ------------------------------------------------------------------ */

/* Threads blocked in lb_future_wait sleep on one of a fixed set of
 * condition variables picked by the future's address, so futures carry
 * no lock of their own and completing one that nobody waits for costs a
 * single atomic load. */
#define WAIT_STRIPES 64

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
} stripes[WAIT_STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    for (int i = 0; i < WAIT_STRIPES; i++) {
        pthread_mutex_init(&stripes[i].lock, NULL);
        pthread_cond_init(&stripes[i].cond, &attr);
    }
    pthread_condattr_destroy(&attr);
}

static unsigned stripe_of(const lb_future *f) {
    uintptr_t p = (uintptr_t)f;
    return (unsigned)((p >> 6) ^ (p >> 12)) % WAIT_STRIPES;
}

static void wake_waiters(lb_future *f) {
    if (atomic_load(&f->waiters) == 0)
        return;
    unsigned s = stripe_of(f);
    pthread_mutex_lock(&stripes[s].lock);
    pthread_cond_broadcast(&stripes[s].cond);
    pthread_mutex_unlock(&stripes[s].lock);
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                            */
/* ------------------------------------------------------------------ */

int lb_future_new(lb_loop *loop, lb_future **ret) {
    lb_assert_return(ret, -EINVAL);
    /* Allowed while closing: cancelled tasks may await their cleanup. */
    LB__CHECK_LOOP(loop);
    lb_future *f = lb__slab_alloc(&loop->future_slab);
    if (!f)
        return lb__fail(loop, -ENOMEM, "lb_future_new: out of memory");
    *f = (lb_future){.loop = loop};
    atomic_init(&f->refs, 1);
    f->live_next = loop->futures;
    if (loop->futures)
        loop->futures->live_prev = f;
    loop->futures = f;
    lb__loop_hold(loop);
    *ret = f;
    return 0;
}

lb_future *lb_future_ref(lb_future *future) {
    if (future)
        atomic_fetch_add_explicit(&future->refs, 1, memory_order_relaxed);
    return future;
}

/* Drops a detached list of done callbacks: each destroy runs once. */
static void drop_list(lb_handle *h) {
    while (h) {
        lb_handle *next = h->next;
        h->flags |= LB__HANDLE_DONE;
        lb__handle_unqueue(h);
        h = next;
    }
}

/* The list is detached first, so destroy notifies may add callbacks to
 * the future: those are dropped too, on the next turn. */
static void drop_callbacks(lb_future *f) {
    while (f->cb_head) {
        lb_handle *h = f->cb_head;
        f->cb_head = f->cb_tail = NULL;
        drop_list(h);
    }
}

static void future_free(lb_future *f) {
    lb_loop *loop = f->loop;
    if (atomic_load(&f->state) == LB__FUTURE_ERROR && !atomic_load(&f->retrieved))
        lb__report_unretrieved(loop, f, NULL, NULL, NULL);
    drop_callbacks(f);
    if (f->destroy)
        f->destroy(f->value);
    if (f->hooks && f->hooks->free)
        f->hooks->free(f, f->hooks_data);
    drop_callbacks(f); /* added by the destroy notifies above */
    if (f->live_prev)
        f->live_prev->live_next = f->live_next;
    else
        loop->futures = f->live_next;
    if (f->live_next)
        f->live_next->live_prev = f->live_prev;
    lb__slab_free(&loop->future_slab, f);
    lb__loop_unhold(loop);
}

static void free_released(void *future) {
    future_free(future);
}

static void free_on_loop(lb_loop *loop, void *data) {
    (void)loop;
    future_free(data);
}

/* Hands a future whose last reference went on another thread to its
 * loop's home thread; false if it was handed over, true once the caller
 * may free it itself (the loop's close returned). */
static bool free_on_home_thread(lb_future *future) {
    lb_loop *loop = future->loop;
    int r;
    /* Freeing it here would race with the loop: when memory is short,
     * wait for it rather (as finished executor jobs do). */
    while ((r = lb__post_internal(loop, free_on_loop, future, free_on_loop)) == -ENOMEM) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (r == 0)
        return false;
    /* -EBADF: the home thread is in the last steps of the close, which
     * walk the futures; they wait for no other thread, so wait for them
     * to end before freeing this one. */
    while (!lb__loop_released(loop))
        sched_yield();
    return true;
}

lb_future *lb_future_unref(lb_future *future) {
    if (!future)
        return NULL;
    unsigned old = atomic_fetch_sub_explicit(&future->refs, 1, memory_order_acq_rel);
    if (old == 1) {
        /* The last reference may go on another thread (a future handed
         * out by lb_loop_thread_submit): the loop's home thread frees
         * it, whether the loop runs, idles or closes; once the close
         * returned, the thread dropping it does, one at a time. */
        lb_loop *loop = future->loop;
        if (__builtin_expect(lb__loop_thread(loop) == lb__thread_self(), 1))
            future_free(future);
        else if (lb__loop_released(loop) || free_on_home_thread(future))
            lb__loop_release_serialised(loop, free_released, future);
    }
    else if (old == 0) {
        /* Unref once too often: undo, so that every later call is
         * reported too instead of counting down from UINT_MAX. */
        atomic_fetch_add_explicit(&future->refs, 1, memory_order_relaxed);
        lb__log(LB_LOG_ERROR, "lb_future_unref: future %p has no reference left",
                (void *)future);
    }
    return NULL;
}

lb_loop *lb_future_get_loop(const lb_future *future) {
    return future ? future->loop : NULL;
}

/* ------------------------------------------------------------------ */
/* Completion                                                          */
/* ------------------------------------------------------------------ */

static void run_done_callback(lb_loop *loop, void *data) {
    lb_handle *h = lb__current(loop);
    h->done_cb(h->aux, data);
}

/* Queues a done callback. It holds a reference to the future until it ran
 * or was dropped (at close): the handle lets go of it. */
static void queue_callback(lb_future *f, lb_handle *h) {
    lb_future_ref(f);
    h->flags |= LB__HANDLE_AUX_REF;
    lb__ready_push_handle(&f->loop->ready, h);
}

/* Moves the done callbacks to the ready queue. */
static void schedule_callbacks(lb_future *f) {
    lb_handle *h = f->cb_head;
    f->cb_head = f->cb_tail = NULL;
    while (h) {
        lb_handle *next = h->next;
        queue_callback(f, h);
        h = next;
    }
}

/* Runs the done callbacks at once. While the loop closes its resources
 * and cancels its futures, no queue runs any more, and what a callback
 * does for the library (a shield letting go of its outer future) must not
 * be lost with it; the caller holds f. */
static void run_callbacks_now(lb_future *f) {
    lb_handle *h = f->cb_head;
    f->cb_head = f->cb_tail = NULL;
    while (h) {
        lb_handle *next = h->next;
        lb_future_ref(f);
        h->flags |= LB__HANDLE_AUX_REF;
        lb__run_handle(f->loop, h);
        h = next;
    }
}

int lb__future_complete(lb_future *f, int state, void *value, lb_destroy_fn destroy, int error) {
    if (atomic_load_explicit(&f->state, memory_order_relaxed) != LB__FUTURE_PENDING)
        return -EALREADY;
    f->value = value;
    f->destroy = destroy;
    f->error = error;
    /* seq_cst: pairs with lb_future_wait (see there). */
    atomic_store(&f->state, state);
    if (lb__loop_closed(f->loop)) {
        drop_callbacks(f);
    } else if (f->loop->settling) {
        wake_waiters(f);
        run_callbacks_now(f);
        return 0;
    } else {
        schedule_callbacks(f);
    }
    wake_waiters(f);
    return 0;
}

static bool owner_completes(const lb_future *f) {
    return f->hooks && f->hooks->owner_completes;
}

static int check_settable(lb_future *f, const char *func) {
    if (!f)
        return lb__fail(NULL, -EINVAL, "%s: future is NULL", func);
    int r = lb__loop_check_fast(f->loop, func);
    if (r < 0)
        return r;
    if (atomic_load_explicit(&f->state, memory_order_relaxed) != LB__FUTURE_PENDING)
        return lb__fail(f->loop, -EALREADY, "%s: future %p is already done", func, (void *)f);
    if (owner_completes(f))
        return lb__fail(f->loop, -EPERM,
                        "%s: future %p belongs to a task and completes when the task ends", func,
                        (void *)f);
    return 0;
}

int lb_future_set_result(lb_future *future, void *value, lb_destroy_fn destroy) {
    int r = check_settable(future, __func__);
    if (r < 0) {
        if (destroy)
            destroy(value);
        return r;
    }
    return lb__future_complete(future, LB__FUTURE_RESULT, value, destroy, 0);
}

int lb_future_set_error(lb_future *future, int error) {
    lb_assert_return(error < 0 && error != -ECANCELED, -EINVAL);
    int r = check_settable(future, __func__);
    if (r < 0)
        return r;
    return lb__future_complete(future, LB__FUTURE_ERROR, NULL, NULL, error);
}

int lb__future_cancel_plain(lb_future *f) {
    return lb__future_complete(f, LB__FUTURE_CANCELLED, NULL, NULL, -ECANCELED) == 0 ? 1 : 0;
}

int lb_future_cancel(lb_future *future) {
    lb_assert_return(future, -EINVAL);
    int r = lb__loop_check_fast(future->loop, __func__);
    if (r < 0)
        return r;
    if (atomic_load_explicit(&future->state, memory_order_relaxed) != LB__FUTURE_PENDING)
        return 0;
    if (future->hooks && future->hooks->cancel)
        return future->hooks->cancel(future, future->hooks_data);
    return lb__future_cancel_plain(future);
}

/* Takes a reference of a listed future for the walk below, unless its
 * last one went already: its free was then handed to the loop's thread
 * (lb_future_unref on another thread), and only that post frees it. */
static bool pin(lb_future *f) {
    unsigned n = atomic_load_explicit(&f->refs, memory_order_relaxed);
    while (n != 0)
        if (atomic_compare_exchange_weak_explicit(&f->refs, &n, n + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

void lb__futures_cancel_all(lb_loop *loop) {
    /* Cancel hooks run arbitrary code, which may free any future, the one
     * being cancelled included: the walk holds a reference of the entry
     * it is at, and takes one of the next before it lets go of it (freeing
     * the current entry may free others, never a pinned one). */
    lb_future *f = loop->futures;
    bool pinned = f && pin(f);
    while (f) {
        /* Not pinned: its free is posted and drops its callbacks;
         * completing it would queue them with a reference its free
         * ignores. */
        if (pinned && atomic_load_explicit(&f->state, memory_order_relaxed) == LB__FUTURE_PENDING) {
            /* Through the hooks first, so the work behind a future (an
             * executor job, a gather's children) is withdrawn too. */
            if (f->hooks && f->hooks->cancel)
                f->hooks->cancel(f, f->hooks_data);
            if (atomic_load_explicit(&f->state, memory_order_relaxed) == LB__FUTURE_PENDING)
                lb__future_complete(f, LB__FUTURE_CANCELLED, NULL, NULL, -ECANCELED);
        }
        lb_future *next = f->live_next;
        bool next_pinned = next && pin(next);
        if (pinned)
            lb_future_unref(f);
        f = next;
        pinned = next_pinned;
    }
}

/* ------------------------------------------------------------------ */
/* Cross-thread completion                                             */
/* ------------------------------------------------------------------ */

typedef struct threadsafe_set {
    lb_future *future;
    void *value;
    lb_destroy_fn destroy;
    int error;
} threadsafe_set;

static void threadsafe_apply(lb_loop *loop, void *data) {
    threadsafe_set *req = data;
    lb_future *f = req->future;
    int r;
    if (owner_completes(f))
        r = -EPERM; /* dropped as a late result would be */
    else if (req->error)
        r = lb__future_complete(f, LB__FUTURE_ERROR, NULL, NULL, req->error);
    else
        r = lb__future_complete(f, LB__FUTURE_RESULT, req->value, req->destroy, 0);
    if (r < 0 && !req->error && req->destroy)
        req->destroy(req->value); /* the future was done already */
    lb_future_unref(f);
    lb__free(req);
    (void)loop;
}

static void threadsafe_drop(lb_loop *loop, void *data) {
    threadsafe_set *req = data;
    if (!req->error && req->destroy)
        req->destroy(req->value);
    lb_future_unref(req->future);
    lb__free(req);
    (void)loop;
}

static int post_set(lb_future *f, void *value, lb_destroy_fn destroy, int error,
                    const char *func) {
    threadsafe_set *req = lb__malloc(sizeof *req);
    if (!req) {
        if (!error && destroy)
            destroy(value);
        return lb__fail(f->loop, -ENOMEM, "%s: out of memory", func);
    }
    *req = (threadsafe_set){f, value, destroy, error};
    lb_future_ref(f);
    int r = lb__post_internal(f->loop, threadsafe_apply, req, threadsafe_drop);
    if (r < 0) {
        /* Not accepted: undo here. The reference drop cannot be the
         * last one, the caller holds its own. */
        atomic_fetch_sub(&f->refs, 1);
        if (!error && destroy)
            destroy(value);
        lb__free(req);
        return lb__fail(f->loop, r, "%s: %s", func,
                        r == -EBADF ? "loop is closed" : "out of memory");
    }
    return 0;
}

int lb_future_set_result_threadsafe(lb_future *future, void *value, lb_destroy_fn destroy) {
    if (!future) {
        if (destroy)
            destroy(value);
        return lb__fail(NULL, -EINVAL, "%s: future is NULL", __func__);
    }
    return post_set(future, value, destroy, 0, __func__);
}

int lb_future_set_error_threadsafe(lb_future *future, int error) {
    lb_assert_return(future, -EINVAL);
    lb_assert_return(error < 0 && error != -ECANCELED, -EINVAL);
    return post_set(future, NULL, NULL, error, __func__);
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */
/* ------------------------------------------------------------------ */

bool lb_future_is_done(const lb_future *future) {
    return future && atomic_load(&future->state) != LB__FUTURE_PENDING;
}

bool lb_future_is_cancelled(const lb_future *future) {
    return future && atomic_load(&future->state) == LB__FUTURE_CANCELLED;
}

int lb_future_result(lb_future *future, void **value) {
    lb_assert_return(future, -EINVAL);
    switch (atomic_load_explicit(&future->state, memory_order_acquire)) {
    case LB__FUTURE_PENDING:
        return -EAGAIN;
    case LB__FUTURE_CANCELLED:
        return -ECANCELED;
    case LB__FUTURE_ERROR:
        atomic_store_explicit(&future->retrieved, true, memory_order_relaxed);
        return future->error;
    default:
        if (value)
            *value = future->value;
        return 0;
    }
}

int lb__future_take_result(lb_future *future, void **value) {
    int r = lb_future_result(future, value);
    if (r == 0)
        future->destroy = NULL;
    return r;
}

/* ------------------------------------------------------------------ */
/* Done callbacks                                                      */
/* ------------------------------------------------------------------ */

/* Adds a done callback; destroy (NULL: none) runs once, after it ran or
 * when it is dropped. */
static int add_done_callback(lb_future *future, lb_future_callback cb, void *data,
                             lb_destroy_fn destroy, const char *func) {
    lb_assert_return(future, -EINVAL);
    lb_assert_return(cb, -EINVAL);
    lb_loop *loop = future->loop;
    int r = lb__loop_check_fast(loop, func);
    if (r < 0)
        return r;
    lb_handle *h = lb__handle_new(loop, run_done_callback, data);
    if (!h)
        return lb__fail(loop, -ENOMEM, "%s: out of memory", func);
    h->aux = future;
    h->done_cb = cb;
    lb__handle_set_destroy(h, destroy);
    if (atomic_load_explicit(&future->state, memory_order_relaxed) != LB__FUTURE_PENDING) {
        /* From a destroy notify of the future being freed: no run can
         * come, the callback is dropped at once. */
        if (atomic_load_explicit(&future->refs, memory_order_relaxed) == 0)
            drop_list(h);
        else
            queue_callback(future, h);
        return 0;
    }
    h->next = NULL;
    if (future->cb_tail)
        future->cb_tail->next = h;
    else
        future->cb_head = h;
    future->cb_tail = h;
    return 0;
}

int lb_future_add_done_callback(lb_future *future, lb_future_callback cb, void *data) {
    return add_done_callback(future, cb, data, NULL, __func__);
}

int lb_future_add_done_callback_full(lb_future *future, lb_future_callback cb, void *data,
                                     lb_destroy_fn destroy) {
    return lb__destroy_if_refused(add_done_callback(future, cb, data, destroy, __func__),
                                  destroy, data);
}

int lb_future_remove_done_callback(lb_future *future, lb_future_callback cb, void *data) {
    lb_assert_return(future, -EINVAL);
    lb_assert_return(cb, -EINVAL);
    /* The matches are unlinked first and dropped after the walk: their
     * destroy notifies may add or remove callbacks of this future. */
    int removed = 0;
    lb_handle **link = &future->cb_head;
    lb_handle *prev = NULL;
    lb_handle *matches = NULL, **matches_tail = &matches;
    while (*link) {
        lb_handle *h = *link;
        if (h->done_cb == cb && h->data == data) {
            *link = h->next;
            h->next = NULL;
            *matches_tail = h;
            matches_tail = &h->next;
            removed++;
        } else {
            prev = h;
            link = &h->next;
        }
    }
    future->cb_tail = prev;
    drop_list(matches);
    return removed;
}

/* ------------------------------------------------------------------ */
/* Blocking wait from another thread                                   */
/* ------------------------------------------------------------------ */

int lb_future_wait(lb_future *future, double timeout, void **value) {
    lb_assert_return(future, -EINVAL);
    lb_assert_return(!isnan(timeout), -EINVAL);
    /* The thread running the loop would wait for itself, and so would
     * a host's thread (it dispatches the loop between its own events). */
    lb_loop *loop = future->loop;
    bool runs_it = lb_loop_get_running() == loop ||
                   (loop->thread_pinned && lb__loop_may_touch(loop));
    if (runs_it && !lb_future_is_done(future))
        return lb__fail(future->loop, -EDEADLK,
                        "lb_future_wait: called on the thread that runs the future's loop");
    pthread_once(&stripes_once, stripes_init);

    /* Negative or infinite: no limit (the deadline of an infinite one
     * was garbage, and the wait timed out at once). */
    bool forever = timeout < 0 || isinf(timeout);
    struct timespec deadline = {0, 0};
    if (!forever) /* beyond 1e9 s (31 years), 1e9 s */
        deadline = lb__monotonic_deadline(timeout > 1e9 ? (int64_t)1e18 : (int64_t)(timeout * 1e9));

    /* The increment is ordered before the state check (both seq_cst), and
     * completion stores the state before reading waiters: either this
     * thread sees the future done, or the completer sees a waiter. */
    atomic_fetch_add(&future->waiters, 1);
    unsigned s = stripe_of(future);
    int r = 0;
    pthread_mutex_lock(&stripes[s].lock);
    while (atomic_load(&future->state) == LB__FUTURE_PENDING && r == 0) {
        if (forever)
            r = pthread_cond_wait(&stripes[s].cond, &stripes[s].lock);
        else
            r = pthread_cond_timedwait(&stripes[s].cond, &stripes[s].lock, &deadline);
    }
    pthread_mutex_unlock(&stripes[s].lock);
    atomic_fetch_sub(&future->waiters, 1);

    if (!lb_future_is_done(future))
        return lb__fail(NULL, -ETIMEDOUT, "lb_future_wait: timed out after %.3f s", timeout);
    return lb_future_result(future, value);
}
