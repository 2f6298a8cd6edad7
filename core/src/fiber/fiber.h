/* SPDX-License-Identifier: MIT */
#ifndef LB_FIBER_H
#define LB_FIBER_H

/* Stackful fibers: a context switch that saves only what the ABI says a
 * callee must preserve (assembly on x86_64 and aarch64; ucontext
 * elsewhere), with AddressSanitizer told about every switch. Fibers never
 * migrate between threads. Internal to the task layer. */

#include "stack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(LB_FIBER_UCONTEXT)
#include <ucontext.h>
#endif

typedef struct lb__fiber {
#if defined(LB_FIBER_UCONTEXT)
    ucontext_t uc;
#else
    void *sp; /* the saved stack pointer */
#endif
    /* The bounds of the stack this context runs on (ASan wants them to
     * switch to it); the thread's own stack for lb__fiber_init_thread. */
    const void *stack_lo;
    size_t stack_size;
    /* What a switch away from this context checks: the stack's lowest
     * byte, which the stack pointer must not be below (0 on a thread's
     * own stack: nothing to check), with bit 0 set when a canary lies
     * just below it (the stack is page-aligned). One word: every task
     * holds two fibers. */
    uintptr_t limit;
    void *asan_fake_stack;
    void *tsan_fiber; /* ThreadSanitizer's handle for this context */
    void (*entry)(void *arg);
    void *arg;
} lb__fiber;

/* Describes the calling thread's own stack, so fibers can switch back to
 * it, and gives the thread an alternate signal stack so a fiber's stack
 * overflow can be reported. */
void lb__fiber_init_thread(lb__fiber *self);

/* Prepares f to run entry(arg) on stack when first switched to. entry
 * must never return: it ends with lb__fiber_switch_final(). */
void lb__fiber_init(lb__fiber *f, lb__stack *stack, void (*entry)(void *arg), void *arg);

/* Saves the current context in from and resumes to. Leaving a fiber's
 * stack, it checks that the fiber stayed within it (stack pointer and
 * canary): one that did not is reported by its owner's name and the
 * process aborts, before anything else runs. */
void lb__fiber_switch(lb__fiber *from, lb__fiber *to);

/* The last switch out of a finished fiber. Never returns. */
__attribute__((noreturn)) void lb__fiber_switch_final(lb__fiber *from, lb__fiber *to);

/* Releases what sanitizers keep for a fiber that ended (or will never
 * run again). Call it from another context. */
void lb__fiber_destroy(lb__fiber *f);

/* Fibers whose frames can be moved: a suspended fiber's live frames are
 * the bytes from its saved stack pointer to the top of its stack, and
 * copied back to the same addresses they run again. True with the
 * assembly switch; the ucontext one keeps its stack pointer out of
 * reach. */
bool lb__fiber_frames_movable(void);

/* The lowest address of a suspended fiber's live frames (its saved stack
 * pointer), or NULL when frames are not movable. */
void *lb__fiber_frames_start(const lb__fiber *f);

/* Copies len bytes of frames between a stack and a save area, below the
 * sanitizers' notice (the frames of one fiber carry the redzones of
 * another), and makes the destination addressable when it is a stack. */
void lb__fiber_copy_frames(void *dst, const void *src, size_t len, bool to_stack);

#endif
