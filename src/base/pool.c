/* SPDX-License-Identifier: Apache-2.0 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "grow.h"

struct kv_job {
	kv_job_fn fn;
	void *arg;
};

struct kv_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct kv_job *q;
	int qmax, head, count, stopping, nthreads;
	pthread_t *threads;
};

static void *worker(void *arg)
{
	struct kv_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct kv_job job;
		while (!p->count && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->count)
			break;
		job = p->q[p->head];
		p->head = (p->head + 1) % p->qmax;
		p->count--;
		pthread_mutex_unlock(&p->lock);
		job.fn(job.arg);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int kv_pool_start(int nthreads, int qmax, struct kv_pool **out)
{
	struct kv_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->q = calloc((size_t)qmax, sizeof(*p->q));
	p->threads = calloc((size_t)nthreads, sizeof(*p->threads));
	if (!p->q || !p->threads) {
		free(p->q);
		free(p->threads);
		free(p);
		return -ENOMEM;
	}
	p->qmax = qmax;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	for (; p->nthreads < nthreads; p->nthreads++)
		if (pthread_create(&p->threads[p->nthreads], NULL, worker, p))
			break;
	if (!p->nthreads) {
		kv_pool_stop(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void kv_pool_stop(struct kv_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	free(p->threads);
	free(p->q);
	free(p);
}

/* The ring grows instead of blocking: a submitter may hold an inode lock
 * that a running job waits for. Callers bound their own jobs in flight. */
static int ring_grow(struct kv_pool *p)
{
	int n = p->qmax * 2;
	struct kv_job *q = malloc((size_t)n * sizeof(*q));

	if (!q)
		return -ENOMEM;
	for (int i = 0; i < p->count; i++)
		q[i] = p->q[(p->head + i) % p->qmax];
	free(p->q);
	p->q = q;
	p->qmax = n;
	p->head = 0;
	return 0;
}

int kv_pool_submit(struct kv_pool *p, kv_job_fn fn, void *arg)
{
	pthread_mutex_lock(&p->lock);
	if (p->stopping || (p->count == p->qmax && ring_grow(p))) {
		pthread_mutex_unlock(&p->lock);
		return p->stopping ? -ESHUTDOWN : -ENOMEM;
	}
	p->q[(p->head + p->count) % p->qmax] = (struct kv_job){ fn, arg };
	p->count++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* Buffers are carved from 2 MiB-aligned slabs that ask for transparent
 * huge pages: faulting memory in 4 KiB pages costs more here than the data
 * copies themselves. Free buffers are kept for reuse; how many exist at
 * once is bounded by the tier budget and the writers' limits. */
#define KV_SLAB (32u << 20)
#define KV_HUGE (2u << 20)

struct kv_bufs {
	pthread_mutex_t lock;
	size_t size, used, nfree, cap;
	void **free;   /* a stack: the most recently freed on top */
	size_t warm;   /* free buffers kept with their memory */
	size_t ntrim;  /* free[0..ntrim) have given their memory back */
	uint8_t *slab; /* current slab, carved from the front */
	size_t slab_left;
	struct slab {
		void *map;
		size_t len;
		void *data;
		size_t dlen;
	} * slabs;
	size_t nslabs, slabs_cap;
	kv_bufs_slab_fn on_slab; /* told of every slab (GPU page-locking) */
	void *on_slab_arg;
};

struct kv_bufs *kv_bufs_new(size_t size, size_t keep)
{
	struct kv_bufs *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->size = (size + 4095) & ~(size_t)4095;
	b->cap = keep ? keep : 16;
	b->warm = b->cap;
	b->free = calloc(b->cap, sizeof(void *));
	if (!b->free) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	return b;
}

void kv_bufs_free(struct kv_bufs *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nslabs; i++)
		munmap(b->slabs[i].map, b->slabs[i].len);
	free(b->slabs);
	free(b->free);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void *carve(struct kv_bufs *b)
{
	void *p;

	if (b->slab_left < b->size) {
		size_t len = b->size > KV_SLAB ? b->size : KV_SLAB;
		uint8_t *m = mmap(NULL, len + KV_HUGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uintptr_t aligned;
		if (m == MAP_FAILED ||
		    kv_grow(&b->slabs, &b->slabs_cap, b->nslabs + 1, sizeof(*b->slabs))) {
			if (m != MAP_FAILED)
				munmap(m, len + KV_HUGE);
			return NULL;
		}
		aligned = ((uintptr_t)m + KV_HUGE - 1) & ~(uintptr_t)(KV_HUGE - 1);
		b->slabs[b->nslabs++] = (struct slab){ m, len + KV_HUGE, (void *)aligned, len };
		madvise((void *)aligned, len, MADV_HUGEPAGE);
		if (b->on_slab)
			b->on_slab(b->on_slab_arg, (void *)aligned, len);
		b->slab = (uint8_t *)aligned;
		b->slab_left = len;
	}
	p = b->slab;
	b->slab += b->size;
	b->slab_left -= b->size;
	return p;
}

void *kv_buf_get(struct kv_bufs *b)
{
	void *buf;

	pthread_mutex_lock(&b->lock);
	buf = b->nfree ? b->free[--b->nfree] : carve(b);
	if (b->ntrim > b->nfree)
		b->ntrim = b->nfree;
	if (buf)
		b->used++;
	pthread_mutex_unlock(&b->lock);
	return buf;
}

void kv_buf_put(struct kv_bufs *b, void *buf)
{
	if (!buf)
		return;
	pthread_mutex_lock(&b->lock);
	/* Without room to remember it the buffer stays unused until exit. */
	if (!kv_grow(&b->free, &b->cap, b->nfree + 1, sizeof(*b->free)))
		b->free[b->nfree++] = buf;
	b->used--;
	pthread_mutex_unlock(&b->lock);
}

size_t kv_bufs_size(const struct kv_bufs *b) { return b->size; }

void kv_bufs_trim(struct kv_bufs *b)
{
	pthread_mutex_lock(&b->lock);
	/* Page-locked slabs (the GPU backend's) keep their pages: the device
	 * copies from the physical pages locked at registration. */
	if (!b->on_slab) {
		for (; b->ntrim + b->warm < b->nfree; b->ntrim++)
			madvise(b->free[b->ntrim], b->size, MADV_DONTNEED);
	}
	pthread_mutex_unlock(&b->lock);
}

void kv_bufs_on_slab(struct kv_bufs *b, kv_bufs_slab_fn fn, void *arg)
{
	pthread_mutex_lock(&b->lock);
	b->on_slab = fn;
	b->on_slab_arg = arg;
	for (size_t i = 0; fn && i < b->nslabs; i++)
		fn(arg, b->slabs[i].data, b->slabs[i].dlen);
	pthread_mutex_unlock(&b->lock);
}

size_t kv_bufs_in_use(struct kv_bufs *b)
{
	size_t n;

	pthread_mutex_lock(&b->lock);
	n = b->used;
	pthread_mutex_unlock(&b->lock);
	return n;
}

void kv_deadline(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void kv_thread_stop(pthread_mutex_t *lock, pthread_cond_t *cond, int *stop, pthread_t t)
{
	pthread_mutex_lock(lock);
	*stop = 1;
	pthread_cond_broadcast(cond);
	pthread_mutex_unlock(lock);
	pthread_join(t, NULL);
}
