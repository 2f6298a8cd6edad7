/* SPDX-License-Identifier: MIT */
#include "stack.h"

#include "../alloc.h"
#include "../asan.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define LB_HAVE_VALGRIND 1
#endif
#endif

#ifndef MADV_GUARD_INSTALL
/* Linux 6.13+: guard pages that cost no VMA (the headers of Debian 12
 * predate them). */
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14+ */
#endif

/* Default-size stacks come 64 to a slab: one mmap, and with
 * MADV_GUARD_INSTALL a single VMA, for 64 stacks. */
#define STACKS_PER_SLAB 64
/* Released stacks whose pages stay committed for reuse. Beyond that the
 * oldest are given back to the system, TRIM_BATCH at a time in one call,
 * which costs a stack a fraction of a madvise of its own, but only once
 * the loop has nothing ready (lb__stack_pool_give_back): giving pages back
 * flushes the TLB, and where that is slow (a virtual machine with shadow
 * page tables: 40-70 ms in a loop with 100,000 stacks) a call in the
 * middle of a flood was a frame lost (docs/performance.md, "What G1's
 * pause on glib is"). While the loop is busy, released stacks just
 * accumulate, warm, and the next tasks take them first. 64 a call keeps
 * each step short, for little more per stack (docs/performance.md,
 * "Figures behind the code"). */
#define WARM_STACKS 64
#define TRIM_BATCH 64

struct lb__stack_pool {
    lb__stack_slab *slabs;
    size_t default_slabs;
    /* Released default-size stacks: committed ones, linked newest to
     * oldest (taken newest first, given back oldest first), and the ones
     * whose pages went back to the system (LIFO). */
    lb__stack *warm_newest, *warm_oldest; /* linked: no allocation, ever */
    size_t nwarm;
    lb__stack *cold;
    size_t acquired;
    size_t page;
};

/* How guards are installed; decided once per process (or by a test). */
static _Atomic int guard_mode = LB__GUARD_MADVISE;

void lb__stack_force_guard_mode(lb__guard_mode mode) {
    guard_mode = (int)mode;
}

uint64_t lb__stack_canary_key;
static pthread_once_t canary_key_once = PTHREAD_ONCE_INIT;

/* Drawn once per process, before any canary is written: the bytes that
 * overwrite a canary (a client's, say) cannot be chosen to match it. */
static void draw_canary_key(void) {
    uint64_t key;
    if (getrandom(&key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key)
        key = 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)&key; /* at least not 0 */
    lb__stack_canary_key = key;
}

int lb__stack_pool_new(lb__stack_pool **ret) {
    lb__stack_pool *p = lb__calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    pthread_once(&canary_key_once, draw_canary_key);
    lb__overflow_install();
    *ret = p;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Advice on many ranges                                               */
/* ------------------------------------------------------------------ */

/* Advice the kernel refused through process_madvise() (one bit each);
 * those go one madvise() per range from then on. */
static atomic_uint batch_refused;

static unsigned advice_bit(int advice) {
    switch (advice) {
    case MADV_DONTNEED:
        return 1u << 0;
    case MADV_POPULATE_WRITE:
        return 1u << 1;
    default:
        return 1u << 2; /* MADV_GUARD_INSTALL */
    }
}

/* process_madvise() on the calling process: one system call for up to
 * UIO_MAXIOV ranges (Linux 5.10 takes some advice, 6.13 any). Returns the
 * number of ranges advised, or -1 when the kernel refuses the call. */
static long advise_batch(struct iovec *v, size_t n, int advice) {
#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
    /* A pidfd of our own, opened per batch: one cached across fork()
     * would advise the parent. */
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0)
        return -1;
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done > 1024 ? 1024 : n - done;
        long bytes = syscall(SYS_process_madvise, pidfd, v + done, chunk, advice, 0);
        if (bytes <= 0)
            break;
        /* A partial result advised the first ranges in full. */
        size_t end = done + chunk;
        while (done < end && bytes >= (long)v[done].iov_len)
            bytes -= (long)v[done++].iov_len;
        if (done < end)
            break;
    }
    close(pidfd);
    return done ? (long)done : -1;
#else
    (void)v, (void)n, (void)advice;
    return -1;
#endif
}

/* Gives advice on n ranges; returns the number advised (those first). */
static size_t advise_ranges(struct iovec *v, size_t n, int advice) {
    size_t done = 0;
    unsigned bit = advice_bit(advice);
    if (!(atomic_load_explicit(&batch_refused, memory_order_relaxed) & bit)) {
        long r = advise_batch(v, n, advice);
        if (r < 0)
            atomic_fetch_or(&batch_refused, bit);
        else
            done = (size_t)r;
    }
    for (; done < n; done++)
        if (madvise(v[done].iov_base, v[done].iov_len, advice) != 0)
            break;
    return done;
}

/* ------------------------------------------------------------------ */
/* Slabs                                                               */
/* ------------------------------------------------------------------ */

/* Installs the guard below each stack, from the lowest: returns how many
 * stacks got one. */
static size_t install_guards(lb__stack_slab *s) {
    if (guard_mode == LB__GUARD_MADVISE) {
        struct iovec v[STACKS_PER_SLAB];
        size_t n = s->count < STACKS_PER_SLAB ? s->count : STACKS_PER_SLAB;
        for (size_t i = 0; i < n; i++)
            v[i] = (struct iovec){s->base + i * s->stride, s->guard};
        size_t done = advise_ranges(v, n, MADV_GUARD_INSTALL);
        if (done > 0 || errno != EINVAL)
            return done;
        guard_mode = LB__GUARD_MPROTECT; /* a kernel before 6.13 */
    }
    if (guard_mode == LB__GUARD_NONE)
        return 0;
    /* Each mprotect'ed guard splits the mapping: once the kernel's map
     * count runs out, the rest of the slab goes unguarded. */
    size_t i = 0;
    while (i < s->count && mprotect(s->base + i * s->stride, s->guard, PROT_NONE) == 0)
        i++;
    return i;
}

/* The guard below a stack of size bytes: see LB__STACK_GUARD_MIN. */
static size_t guard_size(size_t size) {
    return size > LB__STACK_GUARD_MIN ? size : LB__STACK_GUARD_MIN;
}

static lb__stack_slab *slab_new(lb__stack_pool *p, size_t size, size_t count) {
    lb__stack_slab *s = lb__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->stacks = lb__calloc(count, sizeof *s->stacks);
    if (!s->stacks) {
        lb__free(s);
        return NULL;
    }
    s->guard = guard_size(size);
    s->stride = s->guard + size;
    s->count = count;
    s->length = s->stride * count;
    void *base = mmap(NULL, s->length, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        lb__free(s->stacks);
        lb__free(s);
        return NULL;
    }
    s->base = base;
    s->guarded = install_guards(s);
    for (size_t i = 0; i < count; i++) {
        lb__stack *st = &s->stacks[i];
        st->lo = s->base + i * s->stride + s->guard;
        st->size = size;
        st->slab = s;
        /* Where no guard could be installed, the canary stands in for it
         * (written at each acquire). Its page, below the stack, is one a
         * guarded stack does not commit. */
        if (i >= s->guarded)
            st->canary = (uint64_t *)st->lo - 1;
    }
    s->live = 1;
    s->next_in_pool = p->slabs;
    p->slabs = s;
    lb__overflow_register(s);
    return s;
}

/* Files a stack, its pages committed, as the newest warm one. */
static void push_warm(lb__stack_pool *pool, lb__stack *st) {
    st->warm = true;
    st->newer = NULL;
    st->next_free = pool->warm_newest;
    if (pool->warm_newest)
        pool->warm_newest->newer = st;
    else
        pool->warm_oldest = st;
    pool->warm_newest = st;
    pool->nwarm++;
}

/* A new slab of default stacks. From the second one on the program runs
 * more than a slab's worth of tasks at once, and each stack will be used:
 * their top pages, where a task's first frames go, are committed in one
 * call, which costs less than a page fault each (docs/performance.md,
 * "Figures behind the code"). */
static bool add_default_slab(lb__stack_pool *pool) {
    lb__stack_slab *s = slab_new(pool, LB__STACK_DEFAULT_SIZE, STACKS_PER_SLAB);
    if (!s)
        return false;
    bool populate = pool->default_slabs++ > 0;
    if (populate) {
        struct iovec v[STACKS_PER_SLAB];
        for (size_t i = 0; i < s->count; i++)
            v[i] = (struct iovec){(char *)s->stacks[i].lo + s->stacks[i].size - pool->page,
                                  pool->page};
        populate = advise_ranges(v, s->count, MADV_POPULATE_WRITE) == s->count;
    }
    /* Handed out lowest address first, like the stacks before them. */
    for (size_t i = s->count; i-- > 0;) {
        lb__stack *st = &s->stacks[i];
        if (populate) {
            push_warm(pool, st);
        } else {
            st->next_free = pool->cold;
            pool->cold = st;
        }
    }
    return true;
}

int lb__stack_acquire(lb__stack_pool *pool, size_t size, lb__stack **ret) {
    if (size == 0)
        size = LB__STACK_DEFAULT_SIZE;
    if (size < 16 * 1024 || size > 64 * 1024 * 1024)
        return -EINVAL;
    size = (size + pool->page - 1) & ~(pool->page - 1);
    lb__stack *st;
    if (size == LB__STACK_DEFAULT_SIZE) {
        if (pool->nwarm == 0 && !pool->cold && !add_default_slab(pool))
            return -ENOMEM;
        if (pool->nwarm > 0) {
            st = pool->warm_newest; /* the most recently used: hot in cache */
            pool->warm_newest = st->next_free;
            if (pool->warm_newest)
                pool->warm_newest->newer = NULL;
            else
                pool->warm_oldest = NULL;
            pool->nwarm--;
        } else {
            st = pool->cold;
            pool->cold = st->next_free;
        }
    } else {
        /* Odd sizes get a mapping of their own. */
        lb__stack_slab *s = slab_new(pool, size, 1);
        if (!s)
            return -ENOMEM;
        st = &s->stacks[0];
    }
    st->next_free = NULL;
    st->owner = NULL;
    if (st->canary)
        *st->canary = lb__stack_canary_value(st->canary);
#ifdef LB_HAVE_VALGRIND
    st->valgrind_id = VALGRIND_STACK_REGISTER(st->lo, (char *)st->lo + st->size);
#endif
    pool->acquired++;
    *ret = st;
    return 0;
}

static void slab_unmap(lb__stack_pool *pool, lb__stack_slab *s) {
    lb__stack_slab **link = &pool->slabs;
    while (*link != s)
        link = &(*link)->next_in_pool;
    *link = s->next_in_pool;
    lb__overflow_unregister(s);
    /* The frames' redzones would outlive the mapping in ASan's shadow. */
    LB__ASAN_UNPOISON(s->base, s->length);
    munmap(s->base, s->length);
    lb__free(s->stacks);
    lb__free(s);
}

/* Gives the pages of the n (at most TRIM_BATCH) oldest warm stacks back
 * to the system, in one call, and files them as cold. */
static void trim_warm(lb__stack_pool *pool, size_t n) {
    struct iovec v[TRIM_BATCH];
    lb__stack *st = pool->warm_oldest;
    for (size_t i = 0; i < n; i++, st = st->newer) {
        /* A canary's page goes too: it is written again at acquire. */
        size_t below = st->canary ? pool->page : 0;
        v[i] = (struct iovec){(char *)st->lo - below, st->size + below};
    }
    advise_ranges(v, n, MADV_DONTNEED);
    for (size_t i = 0; i < n; i++) {
        st = pool->warm_oldest;
        pool->warm_oldest = st->newer;
        st->warm = false;
        st->next_free = pool->cold;
        pool->cold = st;
    }
    if (pool->warm_oldest)
        pool->warm_oldest->next_free = NULL;
    else
        pool->warm_newest = NULL;
    pool->nwarm -= n;
}

bool lb__stack_pool_give_back(lb__stack_pool *pool) {
    if (!pool || pool->nwarm <= WARM_STACKS)
        return false;
    size_t n = pool->nwarm - WARM_STACKS;
    trim_warm(pool, n < TRIM_BATCH ? n : TRIM_BATCH);
    return pool->nwarm > WARM_STACKS;
}

void lb__stack_release(lb__stack_pool *pool, lb__stack *stack) {
#ifdef LB_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(stack->valgrind_id);
#endif
    pool->acquired--;
    lb__stack_slab *s = stack->slab;
    if (s->count == 1) {
        slab_unmap(pool, s);
        return;
    }
    push_warm(pool, stack);
}

size_t lb__stack_pool_count(const lb__stack_pool *pool) {
    return pool ? pool->acquired : 0;
}

void lb__stack_pool_free(lb__stack_pool *pool) {
    if (!pool)
        return;
    while (pool->slabs)
        slab_unmap(pool, pool->slabs);
    lb__free(pool);
}
