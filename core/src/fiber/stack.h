/* SPDX-License-Identifier: MIT */
#ifndef LB_STACK_H
#define LB_STACK_H

/* Fiber stacks: address space reserved with mmap and committed lazily by
 * the kernel as the fiber touches it, carved from slabs of many stacks
 * so 100,000 of them fit in the kernel's map count, each with a guard
 * page below it, pooled for reuse. */

#include <stdbool.h>
#include <stddef.h>

typedef struct lb__stack_slab lb__stack_slab;

typedef struct lb__stack {
    void *lo;          /* lowest usable byte (just above the guard) */
    size_t size;       /* usable bytes */
    const char *owner; /* the name an overflow report shows; may be NULL */
    /* private */
    lb__stack_slab *slab;
    struct lb__stack *next_free;
    unsigned valgrind_id;
    bool warm; /* its pages may still be committed */
} lb__stack;

typedef struct lb__stack_pool lb__stack_pool;

/* The default usable size of a stack. */
#define LB__STACK_DEFAULT_SIZE (256 * 1024)

int lb__stack_pool_new(lb__stack_pool **ret);

/* Frees the pool; every stack must have been released. */
void lb__stack_pool_free(lb__stack_pool *pool);

/* Gives a stack of at least size bytes (0: the default; rounded up to
 * pages). Returns 0, -EINVAL (under 16 KiB or over 64 MiB), -ENOMEM. */
int lb__stack_acquire(lb__stack_pool *pool, size_t size, lb__stack **ret);

/* Returns a stack to the pool. */
void lb__stack_release(lb__stack_pool *pool, lb__stack *stack);

/* Stacks acquired and not released. */
size_t lb__stack_pool_count(const lb__stack_pool *pool);

/* Overflow reporting (overflow.c): slabs are registered so the SIGSEGV
 * handler can tell a guard-page hit and name the task. */
void lb__overflow_register(lb__stack_slab *slab);
void lb__overflow_unregister(lb__stack_slab *slab);
void lb__overflow_install(void);

/* Gives the calling thread an alternate signal stack, so that the
 * overflow reporter can run when a fiber overflowed its stack. */
void lb__overflow_thread_init(void);

/* What overflow.c needs to know of a slab. */
struct lb__stack_slab {
    char *base;        /* first byte of the mapping */
    size_t length;     /* bytes mapped */
    size_t stride;     /* guard + stack */
    size_t guard;      /* guard bytes at the bottom of each stride */
    size_t count;      /* stacks in the slab */
    bool guarded;      /* false when no guard could be installed */
    lb__stack *stacks; /* count entries */
    lb__stack_slab *next_in_pool;
    lb__stack_slab *_Atomic next_registered;
    _Atomic int live;  /* 0 once unmapped */
};

#endif
