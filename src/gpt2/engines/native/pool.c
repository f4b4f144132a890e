/* The threads that share a product's rows: a small pool that never waits for a late thread.

   A product is cut into units (a few tiles of rows each). The caller and the pool's workers
   take units from one counter until none is left; the caller then waits only for the units
   a worker has taken and not finished. A worker that the operating system has not scheduled
   yet (on a machine whose cores are busy: a server's own threads, a test suite, a browser)
   finds nothing left and goes back to waiting: the product never waits for it. (OpenMP's
   parallel loops wait at their end for every thread of the team, so one descheduled thread
   held every product up by a scheduler tick: 4x slower decoding on a busy machine.)

   The counter holds the job's generation in its top 32 bits, so a worker can take a unit
   only of the job it read: a unit is claimed by compare-and-swap of (generation, next unit).
   Between jobs a worker spins a little (the next product follows within microseconds while
   decoding), then sleeps on a condition variable. One job runs at a time (`job_lock`): the
   Python side may call from several threads, since ctypes releases the GIL; each caller brings
   its own scratch memory (products.py keeps one buffer a thread). A finished job's ticket is
   closed before the lock is let go (see the end of gpt2_run_units). */

#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RELAX() _mm_pause()
#else
#define RELAX() ((void)0)
#endif

#define MAX_WORKERS 255
#define CLOSED 0xFFFFFFFFu /* the low half of a finished job's ticket: no unit is left */
#define SPINS 100000 /* about 50-100 microseconds of pause instructions before sleeping */


static struct {
    pthread_mutex_t job_lock, sleep_lock;
    pthread_cond_t wake;
    _Atomic uint64_t ticket; /* generation << 32 | next unit */
    _Atomic int64_t finished; /* units finished by workers in this generation */
    _Atomic int sleepers;
    _Atomic int64_t units;
    _Atomic int helpers; /* workers this job may use: threads - 1 (fewer than started, if asked) */
    int workers;
    unit_fn fn;
    void *job;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0};

/* A child process (fork) has none of its parent's threads: it starts its own. */
static void forget_workers(void) {
    pthread_mutex_init(&pool.job_lock, NULL);
    pthread_mutex_init(&pool.sleep_lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_store(&pool.sleepers, 0);
    pool.workers = 0;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_init(void) { pthread_atfork(NULL, NULL, forget_workers); }

/* Take units of generation gen while there are any; returns how many were run. */
static int64_t take_units(uint32_t gen) {
    int64_t ran = 0;
    for (;;) {
        uint64_t seen = atomic_load(&pool.ticket);
        if ((uint32_t)(seen >> 32) != gen || (int64_t)(seen & 0xFFFFFFFFu) >= atomic_load(&pool.units)) return ran;
        if (atomic_compare_exchange_weak(&pool.ticket, &seen, seen + 1)) {
            pool.fn(pool.job, (int64_t)(seen & 0xFFFFFFFFu));
            ran++;
        }
    }
}

static void *worker(void *arg) {
    const int index = (int)(intptr_t)arg; /* 0, 1, ...: in the order started */
    uint32_t done_gen = (uint32_t)(atomic_load(&pool.ticket) >> 32);
    for (;;) {
        uint32_t gen = done_gen;
        for (int spin = 0; spin < SPINS && gen == done_gen; spin++) {
            RELAX();
            gen = (uint32_t)(atomic_load(&pool.ticket) >> 32);
        }
        if (gen == done_gen) {
            pthread_mutex_lock(&pool.sleep_lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((gen = (uint32_t)(atomic_load(&pool.ticket) >> 32)) == done_gen)
                pthread_cond_wait(&pool.wake, &pool.sleep_lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.sleep_lock);
        }
        int64_t ran = index < atomic_load(&pool.helpers) ? take_units(gen) : 0;
        if (ran) atomic_fetch_add(&pool.finished, ran);
        done_gen = gen;
    }
    return NULL;
}

/* Run fn(job, u) for u < units on up to `threads` threads (the caller is one of them). */
void gpt2_run_units(unit_fn fn, void *job, int64_t units, int threads) {
    if (threads <= 1 || units <= 1 || units >= (int64_t)CLOSED) {
        for (int64_t u = 0; u < units; u++) fn(job, u);
        return;
    }
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.job_lock);
    while (pool.workers < threads - 1 && pool.workers < MAX_WORKERS) { /* started once, kept */
        pthread_t thread;
        if (pthread_create(&thread, NULL, worker, (void *)(intptr_t)pool.workers) != 0) break; /* fewer: still right */
        pthread_detach(thread);
        pool.workers++;
    }
    pool.fn = fn;
    pool.job = job;
    atomic_store(&pool.units, units);
    atomic_store(&pool.helpers, threads - 1);
    atomic_store(&pool.finished, 0);
    uint32_t gen = (uint32_t)(atomic_load(&pool.ticket) >> 32) + 1;
    atomic_store(&pool.ticket, (uint64_t)gen << 32); /* publishes the job: workers may start */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
    int64_t mine = take_units(gen);
    while (atomic_load(&pool.finished) + mine < units) RELAX(); /* units a worker is running */
    /* Close the generation before the next job's fields are written: a late worker that read
       (gen, next unit) of this job and then the next job's larger `units` would otherwise claim
       a unit by compare-and-swap while the ticket still reads (gen, next unit), run one of the
       next job's units twice (wrong where a product accumulates) and count it in the next
       job's `finished`. No claim succeeds against CLOSED, and every unit index is below it. */
    atomic_store(&pool.ticket, (uint64_t)gen << 32 | CLOSED);
    pthread_mutex_unlock(&pool.job_lock);
}
