/* SPDX-License-Identifier: MIT */
/* The reserve of committed large blocks (block_reserve.h). All state is
 * under one lock, held only to move a pointer or a flag: the helper maps
 * and writes its blocks without it. */
#include "block_reserve.h"

#include "alloc.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake; /* on CLOCK_MONOTONIC, set up once */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *ready[LB__RESERVE_BLOCKS];
static size_t nready;
static unsigned holders;    /* loops alive */
static bool wanted;         /* a block was taken or asked for since the last fill */
static bool running, stopping;
static pthread_t helper;

/* The helper's own mapping: not counted or failed by the test hooks of
 * alloc.c, which plan the allocations of the thread under test. */
static void *map_committed_block(void) {
    char *raw = mmap(NULL, 2 * LB__LARGE_BLOCK, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + LB__LARGE_BLOCK - 1) & ~(uintptr_t)(LB__LARGE_BLOCK - 1);
    size_t head = start - (uintptr_t)raw;
    if (head)
        munmap(raw, head);
    munmap((char *)start + LB__LARGE_BLOCK, LB__LARGE_BLOCK - head);
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)start, LB__LARGE_BLOCK, MADV_HUGEPAGE); /* a hint */
#endif
    /* Nothing else can see the block yet, so plain writes commit it. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < LB__LARGE_BLOCK; off += page)
        ((volatile char *)start)[off] = 0;
    return (void *)start;
}

static void unmap_ready_locked(void) {
    while (nready > 0)
        munmap(ready[--nready], LB__LARGE_BLOCK);
}

static void *helper_main(void *arg) {
    (void)arg;
    /* Idle time only: the helper never takes a CPU from another thread,
     * and the scheduler counts a CPU that runs it as free when it places
     * a waking thread, so the kernel's and the program's other threads go
     * there rather than preempt the loop's. Refused, it runs as it is. */
    struct sched_param idle = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    pthread_mutex_lock(&lock);
    while (!stopping) {
        if (wanted && nready < LB__RESERVE_BLOCKS) {
            pthread_mutex_unlock(&lock);
            void *block = map_committed_block();
            pthread_mutex_lock(&lock);
            if (!block)
                wanted = false; /* out of memory: the loops map their own */
            else if (stopping || nready == LB__RESERVE_BLOCKS)
                munmap(block, LB__LARGE_BLOCK);
            else
                ready[nready++] = block;
            continue;
        }
        if (!wanted) { /* no demand: sleep until there is */
            pthread_cond_wait(&wake, &lock);
            continue;
        }
        /* Full. Blocks not taken within the idle time go back. */
        wanted = false;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += LB__RESERVE_IDLE_NS / 1000000000LL;
        until.tv_nsec += LB__RESERVE_IDLE_NS % 1000000000LL;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int r = 0;
        while (!wanted && !stopping && r == 0)
            r = pthread_cond_timedwait(&wake, &lock, &until);
        if (!wanted && !stopping)
            unmap_ready_locked();
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* fork(): the child has no helper, whatever the parent had; the lock is
 * held across the fork so that the child's copy is consistent. The ready
 * blocks stay the child's. */
static void before_fork(void) {
    pthread_mutex_lock(&lock);
}

static void after_fork_parent(void) {
    pthread_mutex_unlock(&lock);
}

static void init_wake(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attr);
    pthread_condattr_destroy(&attr);
}

/* The condition variable is made anew: the copy still counts the
 * parent's helper among its waiters, and would make the child's first
 * signal wait for it. */
static void after_fork_child(void) {
    running = stopping = wanted = false;
    init_wake();
    pthread_mutex_unlock(&lock);
}

static void set_up(void) {
    init_wake();
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* The helper takes no signal: a signal for the process goes to a thread
 * that runs the program's code. */
static bool start_helper_locked(void) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    bool started = pthread_create(&helper, NULL, helper_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started)
        pthread_setname_np(helper, "lb-reserve");
    return started;
}

void *lb__reserve_take_block(void) {
    pthread_once(&once, set_up);
    void *block = NULL;
    pthread_mutex_lock(&lock);
    if (holders > 0 && !stopping) {
        if (nready > 0)
            block = ready[--nready];
        wanted = true;
        if (running)
            pthread_cond_signal(&wake);
        else
            running = start_helper_locked(); /* else the loops map their own */
    }
    pthread_mutex_unlock(&lock);
    return block;
}

void lb__reserve_hold(void) {
    pthread_mutex_lock(&lock);
    holders++;
    pthread_mutex_unlock(&lock);
}

void lb__reserve_release(void) {
    pthread_mutex_lock(&lock);
    if (--holders > 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    bool join = running && !stopping;
    if (join) {
        stopping = true;
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        pthread_join(helper, NULL);
        pthread_mutex_lock(&lock);
        running = stopping = wanted = false;
    }
    unmap_ready_locked();
    pthread_mutex_unlock(&lock);
}

bool lb__reserve_test_state(size_t *nready_ret) {
    pthread_mutex_lock(&lock);
    bool r = running;
    if (nready_ret)
        *nready_ret = nready;
    pthread_mutex_unlock(&lock);
    return r;
}
