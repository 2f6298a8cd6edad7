/* SPDX-License-Identifier: MIT */
/* The GLib driver: one GSource per loop.
 *
 * The core's backend fd (its epoll instance, which holds every watched
 * fd, the wakeup eventfd and the signal pipe) is the source's only poll
 * fd, and the core's next timer deadline is the source's poll timeout, so
 * GLib never sees loopbridge's timers one by one and an idle loop costs
 * nothing. A post from another thread writes the core's eventfd, which
 * makes the backend fd readable and so wakes a context asleep in poll().
 *
 * Dispatch runs within a time budget. When work is left after it, the
 * source steps aside: it reports itself not ready until a second source,
 * at a priority just below GTK's redraw, has been dispatched. GLib only
 * dispatches that one when nothing of higher priority is ready, i.e. once
 * the toolkit has handled its input and painted its frame.
 *
 * The source may recurse, so a callback or task that runs a nested main
 * loop (a modal dialog) keeps the loop running inside it. */
#include "glib_internal.h"

#include <errno.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

/* Just below GTK's redraw priority (GDK_PRIORITY_REDRAW is
 * G_PRIORITY_HIGH_IDLE + 20): pending input and a due frame go first. */
#define RESUME_PRIORITY (G_PRIORITY_HIGH_IDLE + 21)

/* One budget is the most any other source of the context waits for the
 * loop, so it bounds how late a frame or a g_timeout can be while the
 * loop is flooded (docs/performance.md, "Figures behind the code"). */
#define DEFAULT_BUDGET_NS (1000 * 1000)

typedef struct bridge_source {
    GSource base;
    lb__glib_state *st;
} bridge_source;

static gint64 clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (gint64)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static lb__glib_state *state_of_source(GSource *s) {
    return ((bridge_source *)s)->st;
}

/* ------------------------------------------------------------------ */
/* The loop's source                                                   */
/* ------------------------------------------------------------------ */

/* The deadline goes to GLib as this source's poll timeout, not through
 * g_source_set_ready_time(): every change of a ready time signals the
 * context's own wakeup fd, which would cost a write and a spurious extra
 * iteration each time the next timer changes. GLib polls in whole
 * milliseconds either way; the timeout is rounded up, since waking before
 * the deadline would only find nothing due and spin.
 *
 * A deadline less than a millisecond away is not slept for: the sleep
 * would last a whole millisecond, and on a virtual machine a wakeup is
 * now and then milliseconds late besides (docs/performance.md, W3). The
 * context polls without blocking instead, and check() sees the deadline
 * pass; the source is not ready meanwhile, so sources of lower priority
 * (GTK's redraw) still run. */
static gboolean bridge_prepare(GSource *s, gint *timeout) {
    lb__glib_state *st = state_of_source(s);
    *timeout = -1;
    st->deadline_ns = -1;
    if (st->stepped_aside)
        return FALSE;
    gint64 ns = lb_driver_prepare(st->loop);
    if (ns == 0)
        return TRUE;
    if (ns > 0) {
        st->deadline_ns = clock_ns() + ns;
        gint64 ms = ns < 1000000 ? 0 : (ns + 999999) / 1000000;
        *timeout = ms > G_MAXINT ? G_MAXINT : (gint)ms;
    }
    return FALSE;
}

static gboolean bridge_check(GSource *s) {
    lb__glib_state *st = state_of_source(s);
    if (st->stepped_aside)
        return FALSE;
    if (g_source_query_unix_fd(s, st->fd_tag) & (G_IO_IN | G_IO_ERR | G_IO_HUP))
        return TRUE;
    return st->deadline_ns >= 0 && clock_ns() >= st->deadline_ns;
}

static gboolean bridge_dispatch(GSource *s, GSourceFunc cb, gpointer data) {
    lb__glib_state *st = state_of_source(s);
    (void)cb;
    (void)data;
    /* GIO operations a callback or task starts call back to the
     * thread-default context: make that the loop's own while it runs,
     * unless it is already (the usual case: GTK's default context). */
    GMainContext *def = g_main_context_get_thread_default();
    gboolean push = st->context != (def ? def : g_main_context_default());
    if (push)
        g_main_context_push_thread_default(st->context);
    /* Iterations of the core until the budget is spent, so that a chain
     * of callbacks (each scheduling the next) does not cost a context
     * iteration per link. The core polls its fds between them while
     * callbacks keep coming (see docs/design.md). The clock is read every
     * CLOCK_EVERY iterations: an iteration that runs a single callback
     * costs a few tens of ns, a clock read about 24. */
    enum { CLOCK_EVERY = 8 };
    gint64 budget = st->budget_ns;
    gint64 end = budget == G_MAXINT64 ? G_MAXINT64 : clock_ns() + budget;
    int r;
    for (unsigned n = 1;; n++) {
        r = lb_driver_dispatch(st->loop, 0, budget);
        if (r <= 0 || lb_driver_stop_requested(st->loop) || budget == G_MAXINT64)
            break;
        if (n % CLOCK_EVERY == 0) {
            budget = end - clock_ns();
            if (budget <= 0)
                break;
        }
    }
    if (push)
        g_main_context_pop_thread_default(st->context);
    /* Work left after the budget: let the host have its turn first. Not
     * when a stop is pending, which the run entry must see at once, nor
     * without a budget, where the source stays ready as any other. */
    if (r > 0 && st->budget_ns != G_MAXINT64 && !st->stepped_aside &&
        !lb_driver_stop_requested(st->loop))
        st->stepped_aside = TRUE; /* the resume source's prepare sees it */
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs bridge_funcs = {
    .prepare = bridge_prepare,
    .check = bridge_check,
    .dispatch = bridge_dispatch,
};

/* ------------------------------------------------------------------ */
/* The resume source: ready while the loop steps aside                 */
/* ------------------------------------------------------------------ */

/* A flag read in prepare rather than a ready time, for the same reason as
 * above: no wakeup write each time the loop steps aside. */
static gboolean resume_prepare(GSource *s, gint *timeout) {
    *timeout = -1;
    return state_of_source(s)->stepped_aside;
}

static gboolean resume_check(GSource *s) {
    return state_of_source(s)->stepped_aside;
}

static gboolean resume_dispatch(GSource *s, GSourceFunc cb, gpointer data) {
    (void)cb;
    (void)data;
    state_of_source(s)->stepped_aside = FALSE;
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs resume_funcs = {
    .prepare = resume_prepare,
    .check = resume_check,
    .dispatch = resume_dispatch,
};

/* ------------------------------------------------------------------ */
/* The driver                                                          */
/* ------------------------------------------------------------------ */

static GSource *new_source(GSourceFuncs *funcs, lb__glib_state *st, const char *name,
                           int priority) {
    GSource *s = g_source_new(funcs, sizeof(bridge_source));
    ((bridge_source *)s)->st = st;
    g_source_set_name(s, name);
    g_source_set_priority(s, priority);
    return s;
}

/* The context a loop made with no context gets: the thread-default one;
 * else, on the process's main thread, the global default context (GTK's);
 * else a new context for this loop alone. Taking the global default on
 * another thread would let both threads iterate it, and GLib would then
 * dispatch either thread's sources on either thread. */
static GMainContext *pick_context(gboolean *own) {
    GMainContext *ctx = g_main_context_get_thread_default();
    *own = FALSE;
    if (ctx)
        return g_main_context_ref(ctx);
    if (gettid() == getpid())
        return g_main_context_ref(g_main_context_default());
    *own = TRUE;
    return g_main_context_new();
}

static int glib_attach(lb_loop *loop, void *arg, void **state) {
    int fd = lb_driver_backend_fd(loop);
    if (fd < 0)
        return fd;
    lb__glib_state *st = g_new0(lb__glib_state, 1);
    st->loop = loop;
    st->budget_ns = DEFAULT_BUDGET_NS;
    st->deadline_ns = -1;
    if (arg)
        st->context = g_main_context_ref(arg);
    else
        st->context = pick_context(&st->own_context);

    st->source = new_source(&bridge_funcs, st, "loopbridge", G_PRIORITY_DEFAULT);
    st->fd_tag = g_source_add_unix_fd(st->source, fd, G_IO_IN);
    g_source_set_can_recurse(st->source, TRUE);
    st->resume = new_source(&resume_funcs, st, "loopbridge resume", RESUME_PRIORITY);
    g_source_attach(st->resume, st->context);
    g_source_attach(st->source, st->context);
    *state = st;
    return 0;
}

static void glib_detach(lb_loop *loop, void *state) {
    lb__glib_state *st = state;
    (void)loop;
    g_source_destroy(st->source);
    g_source_unref(st->source);
    g_source_destroy(st->resume);
    g_source_unref(st->resume);
    g_main_context_unref(st->context);
    g_free(st);
}

static int glib_run(lb_loop *loop, void *state) {
    lb__glib_state *st = state;
    /* One iteration at least: a stop requested before the run still lets
     * what is ready run, as asyncio does. */
    do
        g_main_context_iteration(st->context, TRUE);
    while (!lb_driver_stop_requested(loop));
    return 0;
}

static const lb_driver glib_driver = {
    .abi_version = LB_DRIVER_ABI_VERSION,
    .name = "glib",
    .caps = LB_DRIVER_CAP_HOSTED | LB_DRIVER_CAP_NESTED,
    .attach = glib_attach,
    .detach = glib_detach,
    .run = glib_run,
    /* None: the core's eventfd is in the source's poll fd, so a post
     * wakes the context by itself; g_main_context_wakeup() on top only
     * added a second write per wakeup. */
    .wakeup = NULL,
};

const lb_driver *lb_driver_glib(void) {
    return &glib_driver;
}

/* Loading the library makes LB_DRIVER=glib work for lb_loop_new(NULL). */
__attribute__((constructor)) static void register_glib_driver(void) {
    (void)lb_driver_register(&glib_driver);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

lb__glib_state *lb__glib_state_of(const lb_loop *loop) {
    if (!loop || lb_loop_is_closed(loop))
        return NULL;
    if (lb_loop_driver(loop) != &glib_driver)
        return NULL;
    return lb_driver_state(loop);
}

int lb_glib_loop_new(lb_loop **ret, GMainContext *context) {
    if (!ret)
        return lb_driver_fail(-EINVAL, "lb_glib_loop_new: ret is NULL");
    lb_glib_install_log_handler();
    return lb_loop_new_full(ret, &glib_driver, context);
}

GMainContext *lb_glib_loop_get_context(const lb_loop *loop) {
    lb__glib_state *st = lb__glib_state_of(loop);
    return st ? st->context : NULL;
}

/* The core's checks (open, the thread rule), then the driver's. */
lb__glib_state *lb__glib_loop(const lb_loop *loop, const char *func, int *error) {
    int r = lb_driver_check_loop(loop, func);
    if (r < 0) {
        *error = r;
        return NULL;
    }
    lb__glib_state *st = lb__glib_state_of(loop);
    if (!st)
        *error = lb_driver_fail(-EINVAL, "%s: the loop runs on the %s driver, not glib", func,
                                lb_loop_driver_name(loop));
    return st;
}

int lb_glib_loop_set_priority(lb_loop *loop, int priority) {
    int r = 0;
    lb__glib_state *st = lb__glib_loop(loop, __func__, &r);
    if (!st)
        return r;
    g_source_set_priority(st->source, priority);
    return 0;
}

int lb_glib_loop_get_priority(const lb_loop *loop) {
    int r = 0;
    lb__glib_state *st = lb__glib_loop(loop, __func__, &r);
    if (!st)
        return r;
    return g_source_get_priority(st->source);
}

int lb_glib_loop_set_budget(lb_loop *loop, double seconds) {
    int r = 0;
    lb__glib_state *st = lb__glib_loop(loop, __func__, &r);
    if (!st)
        return r;
    if (isnan(seconds) || seconds <= 0)
        return lb_driver_fail(-EINVAL, "%s: the budget must be positive", __func__);
    /* Anything beyond a day is "no budget": the loop never steps aside. */
    st->budget_ns = seconds >= 86400.0 ? G_MAXINT64 : (gint64)ceil(seconds * 1e9);
    return 0;
}

double lb_glib_loop_get_budget(const lb_loop *loop) {
    lb__glib_state *st = lb__glib_state_of(loop);
    if (!st)
        return NAN;
    return st->budget_ns == G_MAXINT64 ? INFINITY : st->budget_ns / 1e9;
}

static void log_to_glib(lb_log_level level, const char *message, void *data) {
    GLogLevelFlags flags;
    (void)data;
    switch (level) {
    case LB_LOG_ERROR:
        /* Not G_LOG_LEVEL_ERROR, which aborts: an unretrieved error or a
         * misuse report is a programmer error, GLib's "critical". */
        flags = G_LOG_LEVEL_CRITICAL;
        break;
    case LB_LOG_WARNING:
        flags = G_LOG_LEVEL_WARNING;
        break;
    case LB_LOG_INFO:
        flags = G_LOG_LEVEL_INFO;
        break;
    default:
        flags = G_LOG_LEVEL_DEBUG;
        break;
    }
    g_log("loopbridge", flags, "%s", message);
}

void lb_glib_install_log_handler(void) {
    lb_set_log_handler(log_to_glib, NULL);
}
