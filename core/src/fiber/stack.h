/* SPDX-License-Identifier: MIT */
#ifndef LB_STACK_H
#define LB_STACK_H

/* Fiber stacks: address space reserved with mmap and committed lazily by
 * the kernel as the fiber touches it, carved from slabs of many stacks
 * so 100,000 of them fit in the kernel's map count, each with a guard
 * below it, pooled for reuse.
 *
 * The guard is as large as the stack, and at least LB__STACK_GUARD_MIN:
 * a frame that does not fit in what is left of the stack skips pages
 * (without -fstack-clash-protection nothing probes them), and a guard of
 * one page let a large one land in the stack below, another task's. Up to
 * the guard's size, a frame's lowest byte can only be in the guard. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lb__stack_slab lb__stack_slab;

typedef struct lb__stack {
    void *lo;          /* lowest usable byte (just above the guard) */
    size_t size;       /* usable bytes */
    const char *owner; /* the name an overflow report shows; may be NULL */
    /* The word just below lo that a switch away from the stack checks,
     * where no guard could be installed (NULL where one is). */
    uint64_t *canary;
    /* private */
    lb__stack_slab *slab;
    struct lb__stack *next_free; /* the next older in the pool's warm or cold list */
    struct lb__stack *newer;     /* the next newer in the warm list */
    unsigned valgrind_id;
    bool warm; /* its pages may still be committed */
} lb__stack;

typedef struct lb__stack_pool lb__stack_pool;

/* The default usable size of a stack. */
#define LB__STACK_DEFAULT_SIZE (256 * 1024)

/* The smallest guard below a stack (a larger stack gets a guard of its own
 * size). It costs address space and, with MADV_GUARD_INSTALL, a page
 * table entry a page; no memory is committed for it. */
#define LB__STACK_GUARD_MIN (256 * 1024)

/* What the canary of a stack holds: its address (so another stack's
 * value does not pass) scrambled with a key drawn at random once per
 * process (by lb__stack_pool_new). */
extern uint64_t lb__stack_canary_key;
static inline uint64_t lb__stack_canary_value(const uint64_t *canary) {
    return (uint64_t)(uintptr_t)canary ^ lb__stack_canary_key;
}

int lb__stack_pool_new(lb__stack_pool **ret);

/* Frees the pool; every stack must have been released. */
void lb__stack_pool_free(lb__stack_pool *pool);

/* Gives a stack of at least size bytes (0: the default; rounded up to
 * pages). Returns 0, -EINVAL (under 16 KiB or over 64 MiB), -ENOMEM. */
int lb__stack_acquire(lb__stack_pool *pool, size_t size, lb__stack **ret);

/* Returns a stack to the pool. */
void lb__stack_release(lb__stack_pool *pool, lb__stack *stack);

/* Gives the pages of up to 64 of the oldest released stacks back to the
 * system, in one call, keeping 64 warm for reuse; the loop calls it when
 * an iteration ends with nothing ready. Returns true while more are left
 * to give back. */
bool lb__stack_pool_give_back(lb__stack_pool *pool);

/* Stacks acquired and not released. */
size_t lb__stack_pool_count(const lb__stack_pool *pool);

/* How the guards are made: MADV_GUARD_INSTALL (Linux 6.13+), mprotect
 * (earlier kernels; a VMA each), or none (when the kernel's map count ran
 * out: the canaries are the only check). */
typedef enum { LB__GUARD_MADVISE, LB__GUARD_MPROTECT, LB__GUARD_NONE } lb__guard_mode;

/* For tests: makes the slabs mapped from now on guarded as mode says, as
 * an older kernel or an exhausted map count would. */
void lb__stack_force_guard_mode(lb__guard_mode mode);

/* Overflow reporting (overflow.c): slabs are registered so the SIGSEGV
 * handler can tell a guard-page hit and name the task. */
void lb__overflow_register(lb__stack_slab *slab);
void lb__overflow_unregister(lb__stack_slab *slab);
void lb__overflow_install(void);

/* Gives the calling thread an alternate signal stack, so that the
 * overflow reporter can run when a fiber overflowed its stack. */
void lb__overflow_thread_init(void);

/* A switch away from the stack whose lowest byte is lo found it
 * overflowed: its stack pointer (sp) below the stack, or its canary
 * overwritten. Reports it as a guard hit is reported, by the owner's
 * name, and aborts. */
__attribute__((noreturn, cold)) void lb__overflow_found_at_switch(uintptr_t lo, uintptr_t sp);

/* What overflow.c needs to know of a slab. */
struct lb__stack_slab {
    char *base;        /* first byte of the mapping */
    size_t length;     /* bytes mapped */
    size_t stride;     /* guard + stack */
    size_t guard;      /* guard bytes at the bottom of each stride */
    size_t count;      /* stacks in the slab */
    size_t guarded;    /* the first stacks, up to this count, have a guard */
    lb__stack *stacks; /* count entries */
    lb__stack_slab *next_in_pool;
    lb__stack_slab *_Atomic next_registered;
    _Atomic int live;  /* 0 once unmapped */
};

#endif
