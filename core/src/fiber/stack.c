/* SPDX-License-Identifier: MIT */
#include "stack.h"

#include "../alloc.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
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

/* Default-size stacks come 64 to a slab: one mmap, and with
 * MADV_GUARD_INSTALL a single VMA, for 64 stacks. */
#define STACKS_PER_SLAB 64
/* Released stacks kept committed for reuse; beyond that their memory is
 * given back, so RSS does not stay high after a burst of tasks. */
#define WARM_STACKS 64

struct lb__stack_pool {
    lb__stack_slab *slabs;
    lb__stack *free_default; /* default-size stacks, LIFO */
    size_t warm;             /* free stacks still committed */
    size_t acquired;
    size_t page;
};

/* How guard pages are installed; decided once per process. */
enum { GUARD_MADVISE, GUARD_MPROTECT };
static _Atomic int guard_mode = GUARD_MADVISE;

int lb__stack_pool_new(lb__stack_pool **ret) {
    lb__stack_pool *p = lb__calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    lb__overflow_install();
    *ret = p;
    return 0;
}

/* Installs the guard below each stack: returns false if none could be. */
static bool install_guards(lb__stack_slab *s) {
    for (size_t i = 0; i < s->count; i++) {
        char *g = s->base + i * s->stride;
        if (guard_mode == GUARD_MADVISE) {
            if (madvise(g, s->guard, MADV_GUARD_INSTALL) == 0)
                continue;
            if (errno != EINVAL)
                return false;
            guard_mode = GUARD_MPROTECT; /* older kernel */
        }
        /* Each mprotect'ed guard splits the mapping: once the kernel's
         * map count runs out, the rest of the slab goes unguarded. */
        if (mprotect(g, s->guard, PROT_NONE) != 0)
            return false;
    }
    return true;
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
    s->guard = p->page;
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
    }
    s->live = 1;
    s->next_in_pool = p->slabs;
    p->slabs = s;
    lb__overflow_register(s);
    return s;
}

int lb__stack_acquire(lb__stack_pool *pool, size_t size, lb__stack **ret) {
    if (size == 0)
        size = LB__STACK_DEFAULT_SIZE;
    if (size < 16 * 1024 || size > 64 * 1024 * 1024)
        return -EINVAL;
    size = (size + pool->page - 1) & ~(pool->page - 1);
    lb__stack *st;
    if (size == LB__STACK_DEFAULT_SIZE) {
        if (!pool->free_default) {
            lb__stack_slab *s = slab_new(pool, size, STACKS_PER_SLAB);
            if (!s)
                return -ENOMEM;
            for (size_t i = s->count; i-- > 0;) {
                s->stacks[i].next_free = pool->free_default;
                pool->free_default = &s->stacks[i];
            }
        }
        st = pool->free_default;
        pool->free_default = st->next_free;
        if (st->warm)
            pool->warm--;
    } else {
        /* Odd sizes get a mapping of their own. */
        lb__stack_slab *s = slab_new(pool, size, 1);
        if (!s)
            return -ENOMEM;
        st = &s->stacks[0];
    }
    st->next_free = NULL;
    st->owner = NULL;
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
    munmap(s->base, s->length);
    lb__free(s->stacks);
    lb__free(s);
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
    if (pool->warm < WARM_STACKS) {
        stack->warm = true;
        pool->warm++;
    } else {
        stack->warm = false;
        madvise(stack->lo, stack->size, MADV_DONTNEED);
    }
    stack->next_free = pool->free_default;
    pool->free_default = stack;
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
