/* SPDX-License-Identifier: MIT */
/* The GLib driver: one GSource per loop. The core's backend fd is the
 * source's only poll fd, its next deadline the source's ready time;
 * cross-thread wakeups write the core's eventfd, which is in that fd, so
 * a sleeping context wakes by itself. Dispatch runs within a time budget
 * and then steps aside until a source below GTK's redraw priority ran,
 * so a flooded loop still lets the toolkit paint and take input. */
#include <loopbridge/glib.h>

#include <errno.h>
#include <math.h>

/* Just below GTK's redraw priority (G_PRIORITY_HIGH_IDLE + 20), so a
 * frame gets painted before loopbridge resumes after stepping aside. */
#define YIELD_PRIORITY (G_PRIORITY_HIGH_IDLE + 21)
#define DEFAULT_BUDGET_NS (1000 * 1000)

typedef struct bridge_source {
    GSource source;
    lb_loop *loop;
    gpointer fd_tag;
    gint64 budget_ns;
    gboolean stepped_aside;
    GSource *resume; /* the low-priority idle that ends a step aside */
} bridge_source;

typedef struct glib_state {
    GMainContext *context;
    bridge_source *source;
} glib_state;

static gboolean bridge_prepare(GSource *s, gint *timeout) {
    bridge_source *b = (bridge_source *)s;
    *timeout = -1;
    if (b->stepped_aside)
        return FALSE;
    gint64 ns = lb_driver_prepare(b->loop);
    if (ns == 0)
        return TRUE;
    if (ns < 0) {
        g_source_set_ready_time(s, -1);
    } else {
        /* Round up to the microsecond: waking before the core's deadline
         * would only find nothing due and spin. */
        g_source_set_ready_time(s, g_source_get_time(s) + (ns + 999) / 1000);
    }
    return FALSE;
}

static gboolean bridge_check(GSource *s) {
    bridge_source *b = (bridge_source *)s;
    if (b->stepped_aside)
        return FALSE;
    if (g_source_query_unix_fd(s, b->fd_tag) & (G_IO_IN | G_IO_ERR | G_IO_HUP))
        return TRUE;
    return lb_driver_prepare(b->loop) == 0;
}

static gboolean resume_after_step_aside(gpointer data) {
    bridge_source *b = data;
    b->stepped_aside = FALSE;
    g_source_unref(b->resume);
    b->resume = NULL;
    return G_SOURCE_REMOVE;
}

static void step_aside(bridge_source *b) {
    b->stepped_aside = TRUE;
    b->resume = g_idle_source_new();
    g_source_set_priority(b->resume, YIELD_PRIORITY);
    g_source_set_callback(b->resume, resume_after_step_aside, b, NULL);
    g_source_set_name(b->resume, "loopbridge resume");
    g_source_attach(b->resume, g_source_get_context(&b->source));
}

static gboolean bridge_dispatch(GSource *s, GSourceFunc cb, gpointer data) {
    bridge_source *b = (bridge_source *)s;
    (void)cb;
    (void)data;
    g_source_set_ready_time(s, -1);
    int r = lb_driver_dispatch(b->loop, 0, b->budget_ns);
    /* Work left after the budget: let the host paint and take input
     * first. Not inside a nested dispatch, where the outer one decides. */
    if (r > 0 && !b->stepped_aside && !lb_driver_stop_requested(b->loop) &&
        g_main_depth() <= 1)
        step_aside(b);
    return G_SOURCE_CONTINUE;
}

static void bridge_finalize(GSource *s) {
    (void)s;
}

static GSourceFuncs bridge_funcs = {
    .prepare = bridge_prepare,
    .check = bridge_check,
    .dispatch = bridge_dispatch,
    .finalize = bridge_finalize,
};

static int glib_attach(lb_loop *loop, void *arg, void **state) {
    int fd = lb_driver_backend_fd(loop);
    if (fd < 0)
        return fd;
    glib_state *st = g_new0(glib_state, 1);
    GMainContext *ctx = arg;
    if (!ctx)
        ctx = g_main_context_get_thread_default();
    if (!ctx)
        ctx = g_main_context_default();
    st->context = g_main_context_ref(ctx);
    bridge_source *b = (bridge_source *)g_source_new(&bridge_funcs, sizeof *b);
    b->loop = loop;
    b->budget_ns = DEFAULT_BUDGET_NS;
    b->fd_tag = g_source_add_unix_fd(&b->source, fd, G_IO_IN);
    g_source_set_can_recurse(&b->source, TRUE);
    g_source_set_name(&b->source, "loopbridge");
    g_source_attach(&b->source, ctx);
    st->source = b;
    *state = st;
    return 0;
}

static void glib_detach(lb_loop *loop, void *state) {
    glib_state *st = state;
    (void)loop;
    bridge_source *b = st->source;
    if (b->resume) {
        g_source_destroy(b->resume);
        g_source_unref(b->resume);
        b->resume = NULL;
    }
    g_source_destroy(&b->source);
    g_source_unref(&b->source);
    g_main_context_unref(st->context);
    g_free(st);
}

static int glib_run(lb_loop *loop, void *state) {
    glib_state *st = state;
    /* One iteration at least: a stop requested before the run still
     * lets what is ready run, as asyncio does. */
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
    .wakeup = NULL, /* the core's eventfd is in the source's poll fd */
};

const lb_driver *lb_driver_glib(void) {
    return &glib_driver;
}

__attribute__((constructor)) static void register_glib_driver(void) {
    lb_driver_register(&glib_driver);
}

static glib_state *state_of(const lb_loop *loop) {
    if (!loop || lb_loop_driver_name(loop) == NULL ||
        g_strcmp0(lb_loop_driver_name(loop), "glib") != 0)
        return NULL;
    return lb_driver_state(loop);
}

int lb_glib_loop_new(lb_loop **ret, GMainContext *context) {
    if (!ret)
        return -EINVAL;
    lb_glib_install_log_handler();
    return lb_loop_new_full(ret, &glib_driver, context);
}

GMainContext *lb_glib_loop_get_context(const lb_loop *loop) {
    glib_state *st = state_of(loop);
    return st ? st->context : NULL;
}

int lb_glib_loop_set_priority(lb_loop *loop, int priority) {
    if (lb_loop_is_closed(loop))
        return -EBADF;
    glib_state *st = state_of(loop);
    if (!st)
        return -EINVAL;
    g_source_set_priority(&st->source->source, priority);
    return 0;
}

int lb_glib_loop_set_budget(lb_loop *loop, double seconds) {
    if (lb_loop_is_closed(loop))
        return -EBADF;
    glib_state *st = state_of(loop);
    if (!st || isnan(seconds) || seconds <= 0)
        return -EINVAL;
    st->source->budget_ns = (gint64)(seconds * 1e9);
    return 0;
}

static void log_to_glib(lb_log_level level, const char *message, void *data) {
    static const GLogLevelFlags levels[] = {G_LOG_LEVEL_CRITICAL, G_LOG_LEVEL_WARNING,
                                            G_LOG_LEVEL_INFO, G_LOG_LEVEL_DEBUG};
    (void)data;
    g_log("loopbridge", levels[level & 3], "%s", message);
}

void lb_glib_install_log_handler(void) {
    lb_set_log_handler(log_to_glib, NULL);
}
