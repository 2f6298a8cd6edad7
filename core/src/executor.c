/* SPDX-License-Identifier: MIT */
/* Thread pools. Jobs queue under one mutex; idle workers sleep on a
 * condition variable and are woken one per job; a finished job travels
 * back to its loop through the loop's inbox (one wakeup per batch), where
 * its future completes. Threads start lazily, up to the pool's size.
 *
 * Slow jobs (name lookups, which can hang for as long as the resolver's
 * timeout) wait in a queue of their own and hold at most half of the
 * threads, so that they cannot take every thread from the other jobs
 * (libuv caps its slow work the same way). The two queues are served in
 * submission order.
 *
 * The default pool has more threads than CPUs, for jobs that wait; but a
 * burst of short jobs spread over more threads than CPUs runs slower, the
 * threads taking the CPUs from each other and from the loop. So past the
 * CPU count, its threads start only once the queue stalls because its
 * workers wait: a "gate" thread, which sleeps while there is no such
 * need, starts one more each GATE_NS during which no job left the queue
 * and no worker was running or ready to run (each one sleeping in the
 * kernel, in a lookup, a read, a lock). A worker that the machine's load
 * keeps from its CPU does not count as waiting: another thread would only
 * add to the load. */
#include <loopbridge/executor.h>

#include "alloc.h"
#include "clock.h"
#include "error.h"
#include "executor_internal.h"
#include "future_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED };

typedef struct lb__job {
    struct lb__job *next, *prev; /* in its queue or the loop's held list */
    uint64_t seq;            /* submission order across both queues */
    lb_executor *executor;
    lb_loop *loop;
    lb_future *future;
    lb_work_fn fn;
    void *data;
    lb_destroy_fn data_destroy; /* the job owns data (may be NULL) */
    lb_destroy_fn result_destroy; /* frees a result nobody took (may be NULL) */
    void *result;
    int status;
    int state; /* under the executor's lock */
    /* Its future was cancelled while it ran: read by lb_job_cancelled()
     * with relaxed loads (a hint to stop early, which orders nothing). */
    atomic_bool cancelled;
    bool slow;
    bool held; /* on its loop's list of jobs to submit: the loop's thread only */
    lb_resource resource; /* on its loop until freed: close withdraws or waits for it */
} job;

/* A queue of jobs, doubly linked: a pool's, or a loop's held jobs. */
typedef struct lb__job_list job_queue;

struct lb_executor {
    /* Taken and dropped for each job by the thread that submits it: a
     * cache line apart from the lock that the workers take for each job
     * (docs/performance.md, "W9: false sharing"). */
    atomic_uint refs;
    char refs_line_after[64];
    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_cond_t ended; /* threads_ended became true */
    pthread_cond_t gate;  /* gate_armed became true, or shutdown */
    job_queue jobs;
    job_queue slow_jobs;
    size_t slow_queued;
    size_t slow_running;
    size_t max_slow; /* half the threads, at least one */
    uint64_t next_seq;
    size_t max_threads;
    size_t idle;
    size_t waking;   /* idle workers signalled and not yet awake */
    size_t spinning; /* workers watching for work before they sleep */
    atomic_size_t queued; /* jobs in the queue (not the slow ones), for spinning workers */
    atomic_size_t posting; /* jobs being posted to their loops: by a worker, or chained */
    size_t nworkers;      /* workers started */
    size_t eager_workers; /* how many start as soon as work finds the others busy */
    size_t nthreads;      /* started, the gate included */
    size_t live_threads;  /* started and not returned yet */
    pthread_t *threads;   /* max_threads workers, and the gate */
    pid_t *worker_tids;   /* as each worker found it, for the gate */
    size_t known_tids;
    uint64_t jobs_taken;  /* out of the queues, for the gate */
    bool gate_started;
    bool gate_armed; /* the gate watches the queue */
    bool shutdown;
    atomic_bool refusing; /* shutdown, as a submission reads it without the lock */
    bool cancel_pending;
    bool joined;        /* a shutdown joins the threads (or they were detached) */
    bool threads_ended; /* that shutdown joined them all */
    bool detached; /* the last thread to return frees the pool */
};

static _Thread_local const lb_executor *worker_of;
static _Thread_local const job *current_job; /* the job this thread runs */

int lb_executor_new(lb_executor **ret, size_t threads) {
    lb_assert_return(ret, -EINVAL);
    lb_assert_return(threads <= 1024, -EINVAL);
    size_t eager = threads;
    if (threads == 0) {
        /* asyncio's size: jobs often wait (for a disk, a resolver, a
         * lock), so a few more threads than CPUs pay; idle, they cost
         * nothing, as they start only when work finds every thread busy,
         * and past the CPU count only when the queue stalls. */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (cpus < 1)
            cpus = 1;
        threads = cpus + 4 > 32 ? 32 : (size_t)cpus + 4;
        eager = cpus < 2 ? 2 : (size_t)cpus;
        if (eager > threads)
            eager = threads; /* more CPUs than the pool's 32 threads */
    }
    lb_executor *e = lb__calloc(1, sizeof *e);
    if (!e)
        return lb__fail(NULL, -ENOMEM, "lb_executor_new: out of memory");
    e->threads = lb__calloc(threads + 1, sizeof *e->threads);
    e->worker_tids = lb__calloc(threads, sizeof *e->worker_tids);
    if (!e->threads || !e->worker_tids) {
        lb__free(e->threads);
        lb__free(e->worker_tids);
        lb__free(e);
        return lb__fail(NULL, -ENOMEM, "lb_executor_new: out of memory");
    }
    atomic_init(&e->refs, 1);
    atomic_init(&e->queued, 0);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->ended, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&e->gate, &monotonic);
    pthread_condattr_destroy(&monotonic);
    e->max_threads = threads;
    e->eager_workers = eager;
    e->max_slow = threads < 2 ? 1 : threads / 2;
    *ret = e;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Completion on the loop's thread                                     */
/* ------------------------------------------------------------------ */

static void executor_free(lb_executor *e) {
    pthread_cond_destroy(&e->gate);
    pthread_cond_destroy(&e->ended);
    pthread_cond_destroy(&e->work);
    pthread_mutex_destroy(&e->lock);
    lb__free(e->worker_tids);
    lb__free(e->threads);
    lb__free(e);
}

/* Drops a reference without waiting for anything: the last one shuts the
 * pool down and frees it, at once if no thread of it runs, else through
 * its last thread to return (the threads are detached). Any thread,
 * the pool's own included. */
static void executor_release(lb_executor *e) {
    if (atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    pthread_mutex_lock(&e->lock);
    e->shutdown = true;
    atomic_store_explicit(&e->refusing, true, memory_order_relaxed);
    pthread_cond_broadcast(&e->work);
    pthread_cond_signal(&e->gate);
    bool free_now = e->live_threads == 0;
    if (!free_now) {
        e->detached = true;
        if (!e->joined)
            for (size_t i = 0; i < e->nthreads; i++)
                pthread_detach(e->threads[i]);
        e->joined = true; /* nobody may join them now */
    }
    pthread_mutex_unlock(&e->lock);
    if (free_now) {
        if (!e->joined)
            for (size_t i = 0; i < e->nthreads; i++)
                pthread_join(e->threads[i], NULL); /* returned already */
        executor_free(e);
    }
}

static void job_free(job *j) {
    lb_loop *loop = j->loop;
    lb_executor *e = j->executor;
    /* A result its future did not take: cancelled while the job ran, or
     * the loop closed before the completion was delivered. */
    if (j->status == 0 && j->result_destroy)
        j->result_destroy(j->result);
    if (j->data_destroy)
        j->data_destroy(j->data);
    if (j->future) {
        j->future->hooks = NULL;
        lb_future_unref(j->future);
    }
    lb_driver_resource_remove(&j->resource);
    lb__free(j);
    lb__loop_unhold(loop);
    /* Last, and never waiting: this may run under the inbox's lock (a
     * post dropped at close), which a worker of the pool can be waiting
     * for. */
    executor_release(e);
}

static void job_complete(lb_loop *loop, void *data) {
    job *j = data;
    lb_future *f = j->future;
    (void)loop;
    if (!lb_future_is_done(f)) {
        if (j->status == 0) {
            lb__future_complete(f, LB__FUTURE_RESULT, j->result, j->result_destroy, 0);
            j->result_destroy = NULL; /* the future's now */
        }
        else if (j->status == -ECANCELED)
            lb__future_cancel_plain(f);
        else {
            if (j->status > 0) {
                char name[128];
                lb__report(loop, -EINVAL, f, NULL,
                           "executor job %s returned %d; a job returns 0 or a negative errno",
                           lb__symbol_name((const void *)j->fn, name, sizeof name), j->status);
                j->status = -EINVAL;
            }
            lb__future_complete(f, LB__FUTURE_ERROR, NULL, NULL, j->status);
        }
    }
    job_free(j);
}

/* The loop closed before it ran the completion: nothing to deliver. */
static void job_dropped(lb_loop *loop, void *data) {
    (void)loop;
    job_free(data);
}

/* Worker side: hands the finished job to its loop. The loop waits for its
 * jobs at close, so the post is accepted; if memory is short, retry. */
static void job_post(job *j) {
    for (;;) {
        int r = lb__post_internal(j->loop, job_complete, j, job_dropped);
        if (r == 0)
            return;
        if (r == -EBADF) {
            lb__log(LB_LOG_ERROR, "executor: a job finished after its loop closed; its future "
                                  "is leaked");
            executor_release(j->executor); /* the pool still goes when it is let go */
            return;
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Posts each job of a chain linked through next, built under the pool's
 * lock and posted once it is released. Each counted among its pool's
 * posts in flight when it was chained, so that its loop, closing
 * meanwhile on another thread, waits for it (job_close) instead of
 * refusing the completion and leaking the job. The caller holds a
 * reference to each pool. */
static void job_post_chain(job *j) {
    while (j) {
        job *next = j->next;
        lb_executor *e = j->executor;
        job_post(j);
        atomic_fetch_sub(&e->posting, 1);
        j = next;
    }
}

/* ------------------------------------------------------------------ */
/* Queues (under the executor's lock)                                  */
/* ------------------------------------------------------------------ */

static void queue_push(job_queue *q, job *j) {
    j->next = NULL;
    j->prev = q->tail;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static void queue_remove(job_queue *q, job *j) {
    if (j->prev)
        j->prev->next = j->next;
    else
        q->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        q->tail = j->prev;
}

/* Withdraws a queued job from its queue. */
static void unqueue(lb_executor *e, job *j) {
    if (j->slow) {
        queue_remove(&e->slow_jobs, j);
        e->slow_queued--;
    } else {
        queue_remove(&e->jobs, j);
        atomic_fetch_sub_explicit(&e->queued, 1, memory_order_relaxed);
    }
}

/* The slow queue's first job, if a thread may take it now. */
static job *runnable_slow_job(const lb_executor *e) {
    return e->slow_running < e->max_slow ? e->slow_jobs.head : NULL;
}

static bool has_work(const lb_executor *e) {
    return e->jobs.head || runnable_slow_job(e);
}

/* The oldest job a thread may take now, out of its queue; NULL if none. */
static job *take_job(lb_executor *e) {
    job *j = e->jobs.head;
    job *slow = runnable_slow_job(e);
    if (slow && (!j || slow->seq < j->seq))
        j = slow;
    if (j) {
        unqueue(e, j);
        e->jobs_taken++;
    }
    return j;
}

/* ------------------------------------------------------------------ */
/* Workers                                                             */
/* ------------------------------------------------------------------ */

/* How long a worker that ran out of work watches for more before it
 * sleeps. A loop that submits jobs one by one about as fast as they run
 * would otherwise fall into waking a sleeping worker for each (a futex
 * call on each side, many times a job's cost: docs/performance.md,
 * "Figures behind the code"); a few times one such wakeup. */
#define SPIN_NS 20000

/* Yields rather than spins: on two cores the thread that submits the
 * jobs needs the CPU more than a watcher does. */
static void watch_for_work(lb_executor *e) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&e->queued, memory_order_relaxed) > 0)
            return;
        sched_yield();
        if (i % 4 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > SPIN_NS)
                return;
        }
    }
}

/* The last thing a thread of the pool does, under the lock, which it
 * releases: the last thread to return frees a pool nobody holds. */
static void thread_return_locked(lb_executor *e) {
    bool last = --e->live_threads == 0 && e->detached;
    pthread_mutex_unlock(&e->lock);
    if (last)
        executor_free(e);
}

/* A worker takes the lock once per job: to mark the job it ran finished
 * and take the next one together. Out of work right after a job, one
 * worker at a time watches the queue for a moment before it sleeps, so
 * that a steady trickle of jobs needs no wakeups. */
static void *worker_main(void *arg) {
    lb_executor *e = arg;
    worker_of = e;
    /* Found once: each job sets it (a thread-local's address costs a
     * call in a shared library). */
    const job **running = &current_job;
    job *done = NULL; /* finished, to be posted once the lock is released */
    bool may_watch = false;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&e->lock);
    e->worker_tids[e->known_tids++] = tid;
    for (;;) {
        if (done) {
            done->state = JOB_FINISHED;
            atomic_fetch_add(&e->posting, 1);
            if (done->slow)
                e->slow_running--; /* this worker takes the next slow job */
        }
        while (!has_work(e) && !e->shutdown) {
            if (done) {
                /* Post before sleeping: its loop may be waiting for it. */
                pthread_mutex_unlock(&e->lock);
                job_post(done);
                atomic_fetch_sub(&e->posting, 1);
                done = NULL;
                pthread_mutex_lock(&e->lock);
                continue;
            }
            if (may_watch && e->spinning == 0) {
                may_watch = false;
                e->spinning++;
                pthread_mutex_unlock(&e->lock);
                watch_for_work(e);
                pthread_mutex_lock(&e->lock);
                e->spinning--;
                continue;
            }
            e->idle++;
            pthread_cond_wait(&e->work, &e->lock);
            e->idle--;
            if (e->waking > 0)
                e->waking--;
        }
        job *j = take_job(e);
        bool cancelled = false;
        if (j) {
            may_watch = true;
            cancelled = e->shutdown && e->cancel_pending;
            j->state = cancelled ? JOB_FINISHED : JOB_RUNNING;
            if (cancelled)
                atomic_fetch_add(&e->posting, 1);
            if (j->slow && !cancelled)
                e->slow_running++;
        }
        pthread_mutex_unlock(&e->lock);
        if (done) {
            job_post(done);
            atomic_fetch_sub(&e->posting, 1);
        }
        done = NULL;
        if (!j) {
            /* Shut down and drained: slow jobs still queued are left to
             * the threads that run slow jobs now, which take them in
             * turn. */
            pthread_mutex_lock(&e->lock);
            thread_return_locked(e);
            return NULL;
        }
        if (cancelled) {
            j->status = -ECANCELED;
            job_post(j);
            atomic_fetch_sub(&e->posting, 1);
        } else {
            j->result = NULL;
            *running = j;
            j->status = j->fn(j->data, &j->result);
            *running = NULL;
            done = j;
        }
        pthread_mutex_lock(&e->lock);
    }
}

static int start_thread_locked(lb_executor *e, void *(*main)(void *)) {
    int r = pthread_create(&e->threads[e->nthreads], NULL, main, e);
    if (r != 0)
        return -r;
    e->nthreads++;
    e->live_threads++;
    return 0;
}

/* How long the queue may stall, every worker busy, before the gate
 * starts one more: longer than a busy machine keeps a running thread
 * from its CPU, short next to a job that waits for a resolver or a disk. */
#define GATE_NS (10 * 1000 * 1000)

/* Whether the thread tid of this process is running or ready to run (its
 * state in /proc is R). Not known (no /proc): taken as waiting. */
static bool thread_runnable(pid_t tid) {
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", (long)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (n <= 0)
        return false;
    stat[n] = '\0';
    /* "tid (name) S ...": the name may hold spaces and parentheses. */
    const char *end = strrchr(stat, ')');
    return end && end[1] == ' ' && end[2] == 'R';
}

/* Under the lock, which it drops meanwhile: whether every worker waits in
 * the kernel. The workers' ids are only ever added, so those read before
 * the lock was dropped stay valid. */
static bool workers_all_wait(lb_executor *e) {
    size_t n = e->known_tids;
    pthread_mutex_unlock(&e->lock);
    bool all_wait = true;
    for (size_t i = 0; i < n && all_wait; i++)
        all_wait = !thread_runnable(e->worker_tids[i]);
    pthread_mutex_lock(&e->lock);
    return all_wait;
}

/* The gate: armed when a job found every worker busy and only the lazy
 * ones left to start; it then checks the queue each GATE_NS, starts a
 * worker if no job left it meanwhile and every worker waits, and disarms
 * once the queue is empty or a worker idle. */
static void *gate_main(void *arg) {
    lb_executor *e = arg;
    worker_of = e;
    pthread_mutex_lock(&e->lock);
    while (!e->shutdown) {
        if (!e->gate_armed) {
            pthread_cond_wait(&e->gate, &e->lock);
            continue;
        }
        uint64_t taken = e->jobs_taken;
        struct timespec until = lb__monotonic_deadline(GATE_NS);
        while (!e->shutdown && pthread_cond_timedwait(&e->gate, &e->lock, &until) == 0)
            ;
        if (e->shutdown)
            break;
        if (!has_work(e) || e->idle > 0 || e->nworkers == e->max_threads) {
            e->gate_armed = false;
            continue;
        }
        if (e->jobs_taken == taken && workers_all_wait(e) && !e->shutdown &&
            e->jobs_taken == taken && start_thread_locked(e, worker_main) == 0)
            e->nworkers++;
    }
    thread_return_locked(e);
    return NULL;
}

/* Under the lock, before a job is queued: wakes an idle worker or starts
 * one, unless a watching worker will take the job (watchers look for
 * ordinary jobs only). A burst of jobs signals each idle worker once, not
 * once per job (a signal to a sleeping worker is a system call). A slow
 * job that would exceed its share waits for a thread that runs one.
 * Past the eager workers, the gate starts more if the queue stalls. */
static int dispatch_locked(lb_executor *e, bool slow) {
    if (slow) {
        if (e->slow_running + e->slow_queued >= e->max_slow)
            return 0;
    } else if (atomic_load_explicit(&e->queued, memory_order_relaxed) < e->spinning) {
        return 0;
    }
    if (e->idle > e->waking) {
        e->waking++;
        pthread_cond_signal(&e->work);
        return 0;
    }
    if (e->idle > 0)
        return 0; /* a worker is on its way */
    if (e->nworkers < e->eager_workers) {
        int r = start_thread_locked(e, worker_main);
        if (r == 0) {
            e->nworkers++;
            return 0;
        }
        if (e->nworkers == 0)
            return r;
    } else if (e->nworkers < e->max_threads && !e->gate_armed) {
        e->gate_armed = true;
        if (e->gate_started)
            pthread_cond_signal(&e->gate);
        else /* without a gate, the pool keeps the threads it has */
            e->gate_armed = e->gate_started = start_thread_locked(e, gate_main) == 0;
    }
    return 0; /* a busy worker will take it */
}

/* ------------------------------------------------------------------ */
/* Submission                                                          */
/* ------------------------------------------------------------------ */

/* Under the pool's lock: queues a job, waking or starting a worker for
 * it. Returns 0, or a negative errno, the job not queued: -ECANCELED
 * (the pool was shut down cancelling what was pending), -EBADF (shut
 * down), or why no worker could start. */
static int enqueue_locked(lb_executor *e, job *j) {
    if (e->shutdown)
        return e->cancel_pending ? -ECANCELED : -EBADF;
    int r = dispatch_locked(e, j->slow);
    if (r < 0)
        return r;
    j->state = JOB_QUEUED;
    j->seq = e->next_seq++;
    if (j->slow) {
        queue_push(&e->slow_jobs, j);
        e->slow_queued++;
    } else {
        queue_push(&e->jobs, j);
        atomic_fetch_add_explicit(&e->queued, 1, memory_order_relaxed);
    }
    return 0;
}

/* The loops of this thread that hold jobs, so that a shutdown on the
 * thread hands all of them over (a loop dispatched inside another one's
 * callback may be the one that shuts the pool down). */
static _Thread_local lb_loop *holding_loops;

static void forget_holding(lb_loop *loop) {
    for (lb_loop **p = &holding_loops; *p; p = &(*p)->next_holding) {
        if (*p == loop) {
            *p = loop->next_holding;
            break;
        }
    }
    loop->next_holding = NULL;
}

/* The loop's held jobs, in submission order (the loop's thread only). */
static void hold(lb_loop *loop, job *j) {
    if (!loop->jobs_to_submit.head) {
        loop->next_holding = holding_loops;
        holding_loops = loop;
    }
    j->held = true;
    queue_push(&loop->jobs_to_submit, j);
}

static void unhold(job *j) {
    j->held = false;
    queue_remove(&j->loop->jobs_to_submit, j);
    if (!j->loop->jobs_to_submit.head)
        forget_holding(j->loop);
}

/* Each pool's lock is taken once for a run of its jobs. A job its pool
 * refuses now fails through its future: cancelled if another thread shut
 * the pool down cancelling what was pending, -EBADF if it shut it down
 * otherwise, or the error that kept a worker from starting. */
void lb__executor_submit_held(lb_loop *loop) {
    job *j = loop->jobs_to_submit.head, *refused = NULL, **refused_tail = &refused;
    loop->jobs_to_submit = (job_queue){0};
    forget_holding(loop);
    lb_executor *locked = NULL;
    while (j) {
        job *next = j->next;
        j->held = false;
        if (j->executor != locked) {
            if (locked)
                pthread_mutex_unlock(&locked->lock);
            locked = j->executor;
            pthread_mutex_lock(&locked->lock);
        }
        int r = enqueue_locked(locked, j);
        if (r < 0) {
            j->state = JOB_FINISHED;
            j->status = r;
            j->next = NULL;
            atomic_fetch_add(&locked->posting, 1);
            *refused_tail = j;
            refused_tail = &j->next;
        }
        j = next;
    }
    if (locked)
        pthread_mutex_unlock(&locked->lock);
    job_post_chain(refused);
}

/* A job not started yet leaves its queue at once, so that it holds
 * neither its pool nor its loop until a worker would have come to it
 * (with every worker busy, the loop's close would wait for it); it goes
 * through the inbox like a finished job, which frees it on the loop's
 * thread once the caller's cancel is over. */
static int job_cancel_hook(lb_future *f, void *data) {
    job *j = data;
    lb_executor *e = j->executor;
    bool withdrawn = j->held; /* only the loop's thread sees a held job */
    if (withdrawn) {
        unhold(j);
        j->state = JOB_FINISHED;
        j->status = -ECANCELED;
    } else {
        pthread_mutex_lock(&e->lock);
        withdrawn = j->state == JOB_QUEUED;
        if (withdrawn) {
            unqueue(e, j);
            j->state = JOB_FINISHED;
            j->status = -ECANCELED;
        } else if (j->state == JOB_RUNNING) {
            atomic_store_explicit(&j->cancelled, true, memory_order_relaxed);
        }
        pthread_mutex_unlock(&e->lock);
    }
    int r = lb__future_cancel_plain(f);
    if (withdrawn)
        job_post(j);
    return r;
}

static const lb__future_hooks job_hooks = {.cancel = job_cancel_hook};

/* The loop closes with the job not over: its future is cancelled as any
 * cancel does it (a queued job is withdrawn, its completion posted and
 * dropped with the inbox; a running one sees lb_job_cancelled()), then a
 * running job is waited for, as long as it runs, until its completion is
 * in the inbox (or in flight to it: the pool's count of posts in flight),
 * since no thread may touch the loop once it is closed. */
static void job_close(lb_resource *resource) {
    job *j = (job *)((char *)resource - offsetof(job, resource));
    lb_executor *e = j->executor;
    if (!lb_future_is_done(j->future))
        job_cancel_hook(j->future, j);
    pthread_mutex_lock(&e->lock);
    while (j->state == JOB_RUNNING || atomic_load(&e->posting) > 0) {
        pthread_mutex_unlock(&e->lock);
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
}

static const lb_resource_ops job_resource_ops = {.name = "executor job", .close = job_close};

static int submit(lb_loop *loop, lb_executor *executor, lb_work_fn fn, void *data,
                  lb_destroy_fn data_destroy, lb_destroy_fn result_destroy, bool slow,
                  lb_future **ret);

int lb_loop_run_in_executor(lb_loop *loop, lb_executor *executor, lb_work_fn fn, void *data,
                            lb_future **ret) {
    return submit(loop, executor, fn, data, NULL, NULL, false, ret);
}

int lb_loop_run_in_executor_full(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                 void *data, lb_destroy_fn result_destroy, lb_future **ret) {
    return submit(loop, executor, fn, data, NULL, result_destroy, false, ret);
}

int lb_loop_run_in_executor_owned(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                  void *data, lb_destroy_fn data_destroy,
                                  lb_destroy_fn result_destroy, lb_future **ret) {
    return lb__destroy_if_refused(
        submit(loop, executor, fn, data, data_destroy, result_destroy, false, ret), data_destroy,
        data);
}

int lb__loop_run_in_executor_owned(lb_loop *loop, lb_executor *executor, lb_work_fn fn,
                                   void *data, lb_destroy_fn data_destroy, bool slow,
                                   lb_future **ret) {
    return submit(loop, executor, fn, data, data_destroy, NULL, slow, ret);
}

static int submit(lb_loop *loop, lb_executor *executor, lb_work_fn fn, void *data,
                  lb_destroy_fn data_destroy, lb_destroy_fn result_destroy, bool slow,
                  lb_future **ret) {
    LB__CHECK_LOOP(loop);
    lb_assert_return(fn, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    if (lb__loop_closing(loop))
        return lb__fail(loop, -EBADF, "lb_loop_run_in_executor: loop is closing");
    if (!executor) {
        int r = 0;
        executor = lb__loop_default_executor(loop, &r);
        if (!executor)
            return r;
    }
    job *j = lb__calloc(1, sizeof *j);
    if (!j)
        return lb__fail(loop, -ENOMEM, "lb_loop_run_in_executor: out of memory");
    int r = lb_future_new(loop, &j->future);
    if (r < 0) {
        lb__free(j);
        return r;
    }
    j->executor = executor;
    j->loop = loop;
    lb__loop_hold(loop);
    j->fn = fn;
    j->data = data;
    j->data_destroy = data_destroy; /* not called on the failure paths below */
    j->result_destroy = result_destroy;
    j->slow = slow;

    if (atomic_load_explicit(&executor->refusing, memory_order_relaxed)) {
        r = lb__fail(loop, -EBADF, "lb_loop_run_in_executor: the executor is shut down");
        goto fail;
    }
    /* A job keeps its pool alive until its future let go of it: the
     * future's cancel hook takes the pool's lock, and dropping the pool
     * meanwhile (lb_loop_set_default_executor) must neither free that
     * lock nor wait for the job on the loop's thread. */
    atomic_fetch_add(&executor->refs, 1);
    bool in_callback = loop->dispatch_depth > 0;
    if (in_callback &&
        (loop->jobs_to_submit.head || loop->job_sent_at == loop->callbacks_run + 1)) {
        /* A callback's jobs after its first: held until it returns, and
         * handed to the pool together, under one lock (docs/performance.md,
         * W9). The first goes at once, so that a callback that waits for
         * the job it submitted (on a condition, in a host's modal loop
         * that never dispatches this loop) still sees it start. */
        hold(loop, j);
    } else {
        if (in_callback)
            loop->job_sent_at = loop->callbacks_run + 1;
        pthread_mutex_lock(&executor->lock);
        r = enqueue_locked(executor, j);
        pthread_mutex_unlock(&executor->lock);
        if (r < 0) {
            executor_release(executor); /* the caller holds a reference too */
            if (r == -EBADF || r == -ECANCELED)
                r = lb__fail(loop, -EBADF, "lb_loop_run_in_executor: the executor is shut down");
            else
                r = lb__fail(loop, r, "lb_loop_run_in_executor: cannot start a worker thread: %s",
                             lb_strerror(r));
            goto fail;
        }
    }

    j->future->hooks = &job_hooks;
    j->future->hooks_data = j;
    lb_driver_resource_add(loop, &j->resource, &job_resource_ops); /* cannot fail here */
    *ret = lb_future_ref(j->future);
    return 0;

fail:
    lb_future_unref(j->future);
    lb__free(j);
    lb__loop_unhold(loop);
    return r;
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                            */
/* ------------------------------------------------------------------ */

/* Under the lock: empties the queues, the jobs marked cancelled and
 * chained through next, for the caller to post once the lock is released
 * (job_post_chain). */
static job *withdraw_all_locked(lb_executor *e) {
    job *withdrawn = NULL;
    job_queue *queues[] = {&e->jobs, &e->slow_jobs};
    for (size_t q = 0; q < 2; q++) {
        job *j;
        while ((j = queues[q]->head)) {
            unqueue(e, j);
            j->state = JOB_FINISHED;
            j->status = -ECANCELED;
            j->next = withdrawn;
            withdrawn = j;
            atomic_fetch_add(&e->posting, 1);
        }
    }
    return withdrawn;
}

int lb_executor_shutdown(lb_executor *executor, bool wait, bool cancel_pending) {
    lb_assert_return(executor, -EINVAL);
    if (wait && worker_of == executor)
        return lb__fail(NULL, -EDEADLK, "lb_executor_shutdown: a pool thread cannot wait for "
                                        "its own pool");
    /* Jobs this thread's loops still hold were submitted before: they
     * reach their pools first. */
    while (holding_loops)
        lb__executor_submit_held(holding_loops);
    pthread_mutex_lock(&executor->lock);
    executor->shutdown = true;
    atomic_store_explicit(&executor->refusing, true, memory_order_relaxed);
    executor->cancel_pending |= cancel_pending;
    /* Cancelled at once, not when a worker would come to them: the
     * workers may all be busy for long (slow jobs wait for their share). */
    job *withdrawn = cancel_pending ? withdraw_all_locked(executor) : NULL;
    pthread_cond_broadcast(&executor->work);
    pthread_cond_signal(&executor->gate);
    bool join = wait && !executor->joined;
    if (join)
        executor->joined = true;
    size_t n = executor->nthreads;
    pthread_mutex_unlock(&executor->lock);
    job_post_chain(withdrawn);
    if (join) {
        for (size_t i = 0; i < n; i++)
            pthread_join(executor->threads[i], NULL);
        pthread_mutex_lock(&executor->lock);
        executor->threads_ended = true;
        pthread_cond_broadcast(&executor->ended);
        pthread_mutex_unlock(&executor->lock);
    } else if (wait) {
        /* Another thread joins them: wait until it is done. */
        pthread_mutex_lock(&executor->lock);
        while (!executor->threads_ended)
            pthread_cond_wait(&executor->ended, &executor->lock);
        pthread_mutex_unlock(&executor->lock);
    }
    return 0;
}

lb_executor *lb_executor_unref(lb_executor *executor) {
    if (!executor)
        return NULL;
    if (atomic_fetch_sub(&executor->refs, 1) != 1)
        return NULL;
    /* Never on one of the pool's threads: whatever runs there is a job,
     * which holds a reference until its completion reached its loop. */
    lb_executor_shutdown(executor, true, false);
    executor_free(executor);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The loop's default executor                                         */
/* ------------------------------------------------------------------ */

lb_executor *lb__loop_default_executor(lb_loop *loop, int *error) {
    if (!loop->default_executor) {
        int r = lb_executor_new(&loop->default_executor, 0);
        if (r < 0) {
            *error = r;
            return NULL;
        }
    }
    return loop->default_executor;
}

int lb_loop_set_default_executor(lb_loop *loop, lb_executor *executor) {
    LB__CHECK_LOOP(loop);
    if (executor == loop->default_executor)
        return 0; /* not shut down for being set again */
    if (executor)
        atomic_fetch_add(&executor->refs, 1);
    lb_executor *old = loop->default_executor;
    loop->default_executor = executor;
    if (old) {
        lb_executor_shutdown(old, false, false);
        lb_executor_unref(old);
    }
    return 0;
}

/* Called by close once its jobs were closed (queued ones withdrawn,
 * running ones waited for): the pool stops and its threads are joined. */
void lb__loop_executor_close(lb_loop *loop) {
    lb_executor *e = loop->default_executor;
    loop->default_executor = NULL;
    if (e) {
        lb_executor_shutdown(e, true, true);
        lb_executor_unref(e);
    }
}

bool lb_job_cancelled(void) {
    const job *j = current_job;
    return j && atomic_load_explicit(&j->cancelled, memory_order_relaxed);
}
