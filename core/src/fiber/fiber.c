/* SPDX-License-Identifier: MIT */
/* The portable half of the context switch: sanitizer bookkeeping and the
 * first frame of a new fiber. The register save/restore itself is in
 * switch_<cpu>.S (or, built with LB_FIBER_UCONTEXT, swapcontext below). */
#include "fiber.h"
#include "switch.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "../asan.h"
#ifdef LB__ASAN
#define LB_ASAN 1
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define LB_HAVE_MEMCHECK 1
#endif
#endif

#ifdef LB_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* A reused stack still carries the shadow of the frames of the fiber that
 * ran on it last (a fiber ends by switching away, never returning up its
 * frames): clear it, or ASan takes the new frames for bad accesses. */
static inline void unpoison_stack(const lb__stack *stack) {
#ifdef LB_ASAN
    ASAN_UNPOISON_MEMORY_REGION(stack->lo, stack->size);
#else
    (void)stack;
#endif
}

#if defined(__SANITIZE_THREAD__)
#define LB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LB_TSAN 1
#endif
#endif

#ifdef LB_TSAN
/* ThreadSanitizer follows fibers only when told about each switch. */
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

void lb__fiber_init_thread(lb__fiber *self) {
    memset(self, 0, sizeof *self);
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo = NULL;
        size_t size = 0;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            self->stack_lo = lo;
            self->stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
#ifdef LB_TSAN
    self->tsan_fiber = __tsan_get_current_fiber();
#endif
    lb__overflow_thread_init();
}

/* The stack pointer of the caller. The address of a local would not do:
 * under ASan locals may live on a heap-allocated fake stack. */
static inline __attribute__((always_inline)) uintptr_t stack_pointer(void) {
    uintptr_t sp;
#if defined(__x86_64__)
    __asm__("mov %%rsp, %0" : "=r"(sp));
#elif defined(__aarch64__)
    __asm__("mov %0, sp" : "=r"(sp));
#else
    sp = (uintptr_t)__builtin_frame_address(0);
#endif
    return sp;
}

/* The canary below the stack whose lowest byte is lo was overwritten. */
static inline bool canary_broken(uintptr_t lo) {
    const uint64_t *canary = (const uint64_t *)lo - 1;
    return *canary != lb__stack_canary_value(canary);
}

/* Leaving a fiber's stack: a stack pointer below the stack means a frame
 * that skipped the guard is live (its writes may have landed in another
 * task's stack), an overwritten canary an overflow where no guard is.
 * Either is reported now, before any other fiber can run on what it
 * overwrote. On a guarded stack: one load from from and two tests. */
static inline void check_stack(const lb__fiber *from) {
    uintptr_t sp = stack_pointer();
    uintptr_t limit = from->limit, lo = limit & ~(uintptr_t)1;
    if (__builtin_expect(sp < limit || ((limit & 1) && canary_broken(lo)), 0))
        lb__overflow_found_at_switch(lo, sp);
}

static inline void before_switch(lb__fiber *from, const lb__fiber *to, bool final) {
    check_stack(from);
#ifdef LB_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
#ifdef LB_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &from->asan_fake_stack, to->stack_lo,
                                   to->stack_size);
#else
    (void)from;
    (void)to;
    (void)final;
#endif
}

static inline void after_switch(lb__fiber *self) {
#ifdef LB_ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, NULL, NULL);
#else
    (void)self;
#endif
}

static inline void fiber_created(lb__fiber *f) {
#ifdef LB_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#else
    (void)f;
#endif
}

void lb__fiber_destroy(lb__fiber *f) {
#ifdef LB_TSAN
    if (f->tsan_fiber)
        __tsan_destroy_fiber(f->tsan_fiber);
    f->tsan_fiber = NULL;
#else
    (void)f;
#endif
}

/* The first code a new fiber runs. */
static __attribute__((noreturn)) void fiber_start(lb__fiber *f) {
#ifdef LB_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    f->entry(f->arg);
    __builtin_trap(); /* entry must end with lb__fiber_switch_final */
}

/* What every switch implementation records of a new fiber. */
static void init_common(lb__fiber *f, lb__stack *stack, void (*entry)(void *arg), void *arg) {
    memset(f, 0, sizeof *f);
    f->entry = entry;
    f->arg = arg;
    f->stack_lo = stack->lo;
    f->stack_size = stack->size;
    assert(!stack->canary || stack->canary == (uint64_t *)stack->lo - 1);
    f->limit = (uintptr_t)stack->lo | (stack->canary ? 1 : 0);
    unpoison_stack(stack);
    fiber_created(f);
}

#if defined(LB_FIBER_UCONTEXT)

/* makecontext passes ints: the fiber's address travels in two halves. */
static void fiber_start_uc(unsigned hi, unsigned lo) {
    fiber_start((lb__fiber *)(((uintptr_t)hi << 32) | lo));
}

void lb__fiber_init(lb__fiber *f, lb__stack *stack, void (*entry)(void *arg), void *arg) {
    init_common(f, stack, entry, arg);
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = stack->lo;
    f->uc.uc_stack.ss_size = stack->size;
    f->uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)(void))fiber_start_uc, 2, (unsigned)(p >> 32),
                (unsigned)(p & 0xffffffffu));
}

void lb__fiber_switch(lb__fiber *from, lb__fiber *to) {
    before_switch(from, to, false);
    swapcontext(&from->uc, &to->uc);
    after_switch(from);
}

void lb__fiber_switch_final(lb__fiber *from, lb__fiber *to) {
    before_switch(from, to, true);
    setcontext(&to->uc);
    __builtin_trap();
}

#else

void lb__fiber_init(lb__fiber *f, lb__stack *stack, void (*entry)(void *arg), void *arg) {
    init_common(f, stack, entry, arg);
    f->sp = lb__fiber_prepare_stack((char *)stack->lo + stack->size, fiber_start, f);
}

void lb__fiber_switch(lb__fiber *from, lb__fiber *to) {
    before_switch(from, to, false);
    lb__fiber_switch_asm(&from->sp, to->sp);
    after_switch(from);
}

void lb__fiber_switch_final(lb__fiber *from, lb__fiber *to) {
    before_switch(from, to, true);
    void *dead;
    lb__fiber_switch_asm(&dead, to->sp);
    __builtin_trap();
}

#endif

/* ------------------------------------------------------------------ */
/* Movable frames (shared-stack tasks)                                 */
/* ------------------------------------------------------------------ */

bool lb__fiber_frames_movable(void) {
#if defined(LB_FIBER_UCONTEXT)
    return false;
#else
    return true;
#endif
}

void *lb__fiber_frames_start(const lb__fiber *f) {
#if defined(LB_FIBER_UCONTEXT)
    (void)f;
    return NULL;
#else
    return f->sp;
#endif
}

#if defined(LB_ASAN) || defined(LB_TSAN)
/* A plain byte copy the sanitizers do not instrument: the source is a
 * stack whose shadow still describes the frames of whichever fiber ran
 * there last. */
#if defined(LB_ASAN)
__attribute__((no_sanitize_address))
#else
__attribute__((no_sanitize_thread))
#endif
static void copy_unchecked(unsigned char *dst, const unsigned char *src, size_t len) {
    /* volatile: the compiler must not turn this back into a call to the
     * (intercepted) memcpy. */
    for (size_t i = 0; i < len; i++)
        ((volatile unsigned char *)dst)[i] = src[i];
}
#endif

void lb__fiber_copy_frames(void *dst, const void *src, size_t len, bool to_stack) {
#ifdef LB_HAVE_MEMCHECK
    /* Memcheck marks stack memory inaccessible when a stack pointer
     * passes above it (another task's frames returned there): make the
     * frames' place addressable again; the copy brings their definedness. */
    if (to_stack)
        VALGRIND_MAKE_MEM_UNDEFINED(dst, len);
#endif
#ifdef LB_ASAN
    if (to_stack)
        ASAN_UNPOISON_MEMORY_REGION(dst, len);
    copy_unchecked(dst, src, len);
#elif defined(LB_TSAN)
    (void)to_stack;
    copy_unchecked(dst, src, len);
#else
    (void)to_stack;
    memcpy(dst, src, len);
#endif
}
