/* SPDX-License-Identifier: Apache-2.0 */
/* kv_pool: a fixed set of worker threads running queued jobs, and a free
 * list of chunk buffers, so the data path never maps fresh memory per
 * request. */
#ifndef KV_POOL_H
#define KV_POOL_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

struct kv_pool;

typedef void (*kv_job_fn)(void *arg);

/* nthreads workers; room for qmax queued jobs to start with. Submitting
 * never blocks; callers bound the jobs they have in flight. */
int kv_pool_start(int nthreads, int qmax, struct kv_pool **out);
/* Runs every queued job, then stops the workers. */
void kv_pool_stop(struct kv_pool *p);
int kv_pool_submit(struct kv_pool *p, kv_job_fn fn, void *arg);

/* Chunk buffers of one size, from huge-page slabs. Freed buffers are kept
 * for reuse (room for keep of them to start with), never unmapped. */
struct kv_bufs;
struct kv_bufs *kv_bufs_new(size_t size, size_t keep);
void kv_bufs_free(struct kv_bufs *b);
void *kv_buf_get(struct kv_bufs *b);
void kv_buf_put(struct kv_bufs *b, void *buf);
size_t kv_bufs_size(const struct kv_bufs *b);
/* Give the memory of free buffers beyond the keep most recently freed
 * (kv_bufs_new) back to the system (their addresses stay, faulted in again at reuse): a burst of
 * writers leaves no resident memory behind. Not for page-locked slabs. */
void kv_bufs_trim(struct kv_bufs *b);
/* Call fn for every slab buffers are carved from, now and when one is
 * added (under the buffers' lock): how the GPU backend page-locks them. */
typedef void (*kv_bufs_slab_fn)(void *arg, void *p, size_t len);
void kv_bufs_on_slab(struct kv_bufs *b, kv_bufs_slab_fn fn, void *arg);
/* Buffers handed out now. */
size_t kv_bufs_in_use(struct kv_bufs *b);

/* CLOCK_MONOTONIC now plus ms, for pthread_cond_timedwait on a condition
 * made with that clock. */
void kv_deadline(struct timespec *ts, long ms);

/* How a background thread that sleeps on cond under lock until *stop is
 * set is ended: set it, wake the thread, wait for it to return. */
void kv_thread_stop(pthread_mutex_t *lock, pthread_cond_t *cond, int *stop, pthread_t t);

#endif
