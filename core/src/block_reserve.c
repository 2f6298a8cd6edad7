/* SPDX-License-Identifier: MIT */
/* The reserve of committed large blocks (block_reserve.h). All state is
 * under one lock, held to move a pointer or a flag and around the
 * helper's mmap() (so that a fork never finds a block mapped and not yet
 * marked MADV_DONTFORK): pages are written, and blocks unmapped, without
 * it. */
#include "block_reserve.h"

#include "alloc.h"
#include "asan.h"
#include "clock.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake; /* on CLOCK_MONOTONIC, set up once */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *ready[LB__RESERVE_BLOCKS];
static size_t nready;
static unsigned holders;    /* loops alive that this process made */
static unsigned generation; /* one more in each forked child */
static bool wanted;         /* a block was taken or asked for since the last fill */
static bool running;
static atomic_bool stopping; /* read by the helper between pages */
static pthread_t helper;

/* Empties the reserve into blocks (room for LB__RESERVE_BLOCKS), to be
 * unmapped once the lock is let go. Returns how many. */
static size_t take_ready_locked(void **blocks) {
    size_t n = nready;
    for (size_t i = 0; i < n; i++)
        blocks[i] = ready[i];
    nready = 0;
    return n;
}

static void unmap_blocks(void **blocks, size_t n) {
    for (size_t i = 0; i < n; i++)
        munmap(blocks[i], LB__LARGE_BLOCK);
}

/* Maps an aligned block, under the lock; NULL when out of memory. The
 * helper's own mapping: not counted or failed by the test hooks of
 * alloc.c, which plan the allocations of the thread under test. */
static void *map_block_locked(void) {
    void *block = lb__map_large_unplanned(LB__LARGE_BLOCK);
    if (block)
        (void)madvise(block, LB__LARGE_BLOCK, MADV_DONTFORK);
    return block;
}

/* Writes a page of each, so its memory is committed; nothing else can
 * see the block yet. False if a stop came first (the block is then
 * unmapped). */
static bool commit_block(char *block) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < LB__LARGE_BLOCK; off += page) {
        if (atomic_load_explicit(&stopping, memory_order_relaxed)) {
            munmap(block, LB__LARGE_BLOCK);
            return false;
        }
        ((volatile char *)block)[off] = 0;
    }
    return true;
}

static void *helper_main(void *arg) {
    (void)arg;
    /* Background work: a full share of the CPU, but it does not preempt
     * the thread it wakes beside (an unprivileged thread can always
     * return to SCHED_OTHER from it). Refused, it runs as it is. */
    struct sched_param batch = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    pthread_mutex_lock(&lock);
    while (!atomic_load(&stopping)) {
        if (wanted && nready < LB__RESERVE_BLOCKS) {
            char *block = map_block_locked();
            if (!block) {
                wanted = false; /* out of memory: the loops map their own */
                continue;
            }
            pthread_mutex_unlock(&lock);
            bool done = commit_block(block);
            pthread_mutex_lock(&lock);
            if (done && !atomic_load(&stopping))
                ready[nready++] = block; /* only the helper adds: room is left */
            else if (done)
                munmap(block, LB__LARGE_BLOCK);
            continue;
        }
        if (!wanted) { /* no demand: sleep until there is */
            pthread_cond_wait(&wake, &lock);
            continue;
        }
        /* Full. Blocks not taken within the idle time go back. */
        wanted = false;
        struct timespec until = lb__monotonic_deadline(LB__RESERVE_IDLE_NS);
        int r = 0;
        while (!wanted && !atomic_load(&stopping) && r == 0)
            r = pthread_cond_timedwait(&wake, &lock, &until);
        if (!wanted && !atomic_load(&stopping)) {
            void *idle[LB__RESERVE_BLOCKS];
            size_t n = take_ready_locked(idle);
            pthread_mutex_unlock(&lock);
            unmap_blocks(idle, n);
            pthread_mutex_lock(&lock);
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void init_wake(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attr);
    pthread_condattr_destroy(&attr);
}

/* fork(): the lock is held across it, so the child's copy of the state is
 * consistent; the reserve's blocks, and a block the helper is writing,
 * are not in the child (MADV_DONTFORK). The child has no helper and no
 * holder yet; its condition variable is made anew, as the copy still
 * counts the parent's helper among its waiters. */
static void before_fork(void) {
    pthread_mutex_lock(&lock);
}

static void after_fork_parent(void) {
    pthread_mutex_unlock(&lock);
}

static void after_fork_child(void) {
    nready = 0;
    holders = 0;
    generation++;
    wanted = running = false;
    atomic_store(&stopping, false);
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
    if (holders > 0 && !atomic_load(&stopping)) {
        if (nready > 0) {
            block = ready[--nready];
            /* Handed out, it is the loop's memory: a child must have it.
             * Under the lock, which a fork waits for. */
            (void)madvise(block, LB__LARGE_BLOCK, MADV_DOFORK);
        }
        wanted = true;
        if (running)
            pthread_cond_signal(&wake);
        else
            running = start_helper_locked(); /* else the loops map their own */
    }
    pthread_mutex_unlock(&lock);
    return block;
}

lb__reserve_hold_t lb__reserve_hold(void) {
    pthread_once(&once, set_up);
    pthread_mutex_lock(&lock);
    holders++;
    lb__reserve_hold_t hold = generation;
    pthread_mutex_unlock(&lock);
    return hold;
}

void lb__reserve_release(lb__reserve_hold_t hold) {
    pthread_mutex_lock(&lock);
    if (hold != generation || --holders > 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    bool join = running && !atomic_load(&stopping);
    if (join) {
        atomic_store(&stopping, true);
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        pthread_join(helper, NULL);
        pthread_mutex_lock(&lock);
        running = wanted = false;
        atomic_store(&stopping, false);
    }
    void *blocks[LB__RESERVE_BLOCKS];
    size_t n = take_ready_locked(blocks);
    pthread_mutex_unlock(&lock);
    unmap_blocks(blocks, n);
}

bool lb__reserve_test_state(size_t *nready_ret) {
    pthread_mutex_lock(&lock);
    bool r = running;
    if (nready_ret)
        *nready_ret = nready;
    pthread_mutex_unlock(&lock);
    return r;
}
