/* The threads that share a product's rows: a small pool that never waits for a late thread
   (pool.c says how). fn(job, u) runs for every u < units, on up to `threads` threads, the
   caller being one of them; it returns when all have run. */

#ifndef GPT2_POOL_H
#define GPT2_POOL_H

#include <stdint.h>

typedef void (*unit_fn)(void *job, int64_t unit);

void gpt2_run_units(unit_fn fn, void *job, int64_t units, int threads);

#endif
