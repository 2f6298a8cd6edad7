/* SPDX-License-Identifier: MIT */
/* A fiber that runs off the end of its stack hits the guard below it;
 * the SIGSEGV handler (on an alternate signal stack, since the fiber's
 * own is exhausted) recognises the guard, names the task and lets the
 * process die of the signal as before. Any other fault goes to the
 * handler that was installed before ours. An overflow that faulted
 * nowhere (a frame larger than the guard, or no guard) is found at the
 * next switch away from the stack, reported the same way, and aborts. */
#include "stack.h"

#include "../alloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Slabs, newest first, read by the handler without a lock. A slab is
 * marked dead before it is unlinked and unmapped; a fault on one thread
 * racing the unmapping of a slab on another is not guarded against (the
 * process is dying of that fault anyway). */
static lb__stack_slab *_Atomic registered;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

void lb__overflow_register(lb__stack_slab *slab) {
    pthread_mutex_lock(&registry_lock);
    atomic_store(&slab->next_registered, atomic_load(&registered));
    atomic_store(&registered, slab);
    pthread_mutex_unlock(&registry_lock);
}

void lb__overflow_unregister(lb__stack_slab *slab) {
    atomic_store(&slab->live, 0);
    pthread_mutex_lock(&registry_lock);
    lb__stack_slab *_Atomic *link = &registered;
    while (atomic_load(link) && atomic_load(link) != slab)
        link = &atomic_load(link)->next_registered;
    if (atomic_load(link))
        atomic_store(link, atomic_load(&slab->next_registered));
    pthread_mutex_unlock(&registry_lock);
}

/* "task NAME overflowed its N KiB stack" and then detail. */
static size_t format_message(char *buf, size_t cap, const char *name, size_t kib,
                             const char *detail) {
    /* No stdio in a signal handler. */
    size_t n = 0;
    const char *parts[] = {"task ", name ? name : "(unnamed)", " overflowed its "};
    for (size_t p = 0; p < 3; p++)
        for (const char *c = parts[p]; *c && n < cap - 1; c++)
            buf[n++] = *c;
    char digits[24];
    size_t d = 0;
    do {
        digits[d++] = (char)('0' + kib % 10);
        kib /= 10;
    } while (kib && d < sizeof digits);
    while (d > 0 && n < cap - 1)
        buf[n++] = digits[--d];
    for (const char *c = " KiB stack"; *c && n < cap - 1; c++)
        buf[n++] = *c;
    for (const char *c = detail; *c && n < cap - 1; c++)
        buf[n++] = *c;
    return n;
}

static void report(const lb__stack *stack, const char *detail) {
    char msg[256];
    size_t n = format_message(msg, sizeof msg, stack->owner, stack->size / 1024, detail);
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
}

/* The registered stack at address addr (in its guard or in it), or
 * NULL. */
static const lb__stack *stack_at(const char *addr, bool *in_guard) {
    for (lb__stack_slab *s = atomic_load(&registered); s; s = atomic_load(&s->next_registered)) {
        if (!atomic_load(&s->live) || addr < s->base || addr >= s->base + s->length)
            continue;
        size_t off = (size_t)(addr - s->base);
        *in_guard = off % s->stride < s->guard;
        return &s->stacks[off / s->stride];
    }
    return NULL;
}

void lb__overflow_found_at_switch(uintptr_t lo, uintptr_t sp) {
    const char *detail = sp < lo
                             ? " (found at a switch: its stack pointer was below the stack)\n"
                             : " (found at a switch: the canary below the stack was overwritten)\n";
    bool in_guard;
    const lb__stack *stack = stack_at((const char *)lo, &in_guard);
    static const lb__stack unknown; /* not expected: every stack's slab is registered */
    report(stack ? stack : &unknown, detail);
    /* Whatever the overflow wrote below the stack (another task's frames,
     * perhaps) must not run: end here. */
    abort();
}

static void on_segv(int signo, siginfo_t *info, void *uctx) {
    /* A guard hit (the gap of an unguarded stack does not fault). */
    bool in_guard;
    const lb__stack *stack = stack_at(info->si_addr, &in_guard);
    if (stack && in_guard) {
        report(stack, "\n");
        signal(SIGSEGV, SIG_DFL);
        return; /* the fault repeats and the default action ends the process */
    }
    /* Not ours: whoever handled SIGSEGV before (a sanitizer, the
     * application) gets it, or the default action. */
    if (previous.sa_flags & SA_SIGINFO && previous.sa_sigaction) {
        previous.sa_sigaction(signo, info, uctx);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(signo);
    } else {
        signal(SIGSEGV, SIG_DFL);
    }
}

static void install(void) {
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous);
}

void lb__overflow_install(void) {
    pthread_once(&install_once, install);
}

/* Every thread that runs fibers gets an alternate signal stack (the
 * overflowing fiber's own stack cannot run the handler), freed when the
 * thread exits. */
static pthread_key_t altstack_key;
static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;

static void altstack_free(void *mem) {
    stack_t none = {.ss_flags = SS_DISABLE};
    sigaltstack(&none, NULL);
    lb__free(mem);
}

static void altstack_key_init(void) {
    pthread_key_create(&altstack_key, altstack_free);
}

void lb__overflow_thread_init(void) {
    pthread_once(&altstack_once, altstack_key_init);
    if (pthread_getspecific(altstack_key))
        return;
    stack_t current;
    if (sigaltstack(NULL, &current) == 0 && !(current.ss_flags & SS_DISABLE))
        return; /* the thread has one already (a sanitizer's, say) */
    size_t size = 64 * 1024;
    void *mem = lb__malloc(size);
    if (!mem)
        return;
    stack_t ss = {.ss_sp = mem, .ss_size = size};
    if (sigaltstack(&ss, NULL) != 0) {
        lb__free(mem);
        return;
    }
    pthread_setspecific(altstack_key, mem);
}
