/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_pool (src/base/pool.h): worker threads running queued jobs in
 * order, the queue growing instead of blocking, stop draining the queue,
 * and the chunk buffer cache. */
#include <check.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtest.h"
#include "lock.h"
#include "pool.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int ran;
static int order[64], norder;

static void count_job(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	ran++;
	pthread_mutex_unlock(&mu);
}

START_TEST(test_all_jobs_run)
{
	struct kv_pool *p = NULL;

	ran = 0;
	ck_assert_int_eq(kv_pool_start(2, 4, &p), 0);
	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(kv_pool_submit(p, count_job, NULL), 0);
	kv_pool_stop(p);
	ck_assert_int_eq(ran, 1000);
}
END_TEST

static sem_t gate;

static void blocking_job(void *arg)
{
	sem_wait(&gate);
	pthread_mutex_lock(&mu);
	order[norder++] = (int)(intptr_t)arg;
	pthread_mutex_unlock(&mu);
}

static void order_job(void *arg)
{
	pthread_mutex_lock(&mu);
	order[norder++] = (int)(intptr_t)arg;
	pthread_mutex_unlock(&mu);
}

/* One worker: jobs run in submission order, also when the ring wraps and
 * grows while the worker is busy; stop runs what is still queued. */
START_TEST(test_fifo_wrap_grow)
{
	struct kv_pool *p = NULL;
	int want = 0;

	norder = 0;
	sem_init(&gate, 0, 0);
	ck_assert_int_eq(kv_pool_start(1, 4, &p), 0);
	/* The first job occupies the worker; ring slots are then reused. */
	ck_assert_int_eq(kv_pool_submit(p, blocking_job, (void *)(intptr_t)0), 0);
	for (int i = 1; i < 3; i++)
		ck_assert_int_eq(kv_pool_submit(p, order_job, (void *)(intptr_t)i), 0);
	sem_post(&gate);
	while (1) {
		pthread_mutex_lock(&mu);
		want = norder;
		pthread_mutex_unlock(&mu);
		if (want == 3)
			break;
		sched_yield();
	}
	/* Head is now in the middle of the ring: block again and overfill. */
	ck_assert_int_eq(kv_pool_submit(p, blocking_job, (void *)(intptr_t)3), 0);
	for (int i = 4; i < 40; i++)
		ck_assert_int_eq(kv_pool_submit(p, order_job, (void *)(intptr_t)i), 0);
	sem_post(&gate);
	kv_pool_stop(p);
	ck_assert_int_eq(norder, 40);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(order[i], i);
	sem_destroy(&gate);
}
END_TEST

struct resubmit {
	struct kv_pool *p;
	int left;
};

static void chain_job(void *arg)
{
	struct resubmit *r = arg;

	pthread_mutex_lock(&mu);
	ran++;
	pthread_mutex_unlock(&mu);
	if (__atomic_sub_fetch(&r->left, 1, __ATOMIC_SEQ_CST) > 0)
		kv_pool_submit(r->p, chain_job, r);
}

START_TEST(test_jobs_submit_jobs)
{
	struct kv_pool *p = NULL;
	struct resubmit r;

	ran = 0;
	ck_assert_int_eq(kv_pool_start(3, 2, &p), 0);
	r.p = p;
	r.left = 500;
	ck_assert_int_eq(kv_pool_submit(p, chain_job, &r), 0);
	while (__atomic_load_n(&r.left, __ATOMIC_SEQ_CST) > 0)
		sched_yield();
	kv_pool_stop(p);
	ck_assert_int_eq(ran, 500);
}
END_TEST

START_TEST(test_bufs)
{
	enum { N = 600 };
	struct kv_bufs *b = kv_bufs_new(65536, 4);
	uint8_t **v = calloc(N, sizeof(*v)), *returned[100];
	uint8_t *again;

	ck_assert_ptr_nonnull(b);
	ck_assert_uint_ge(kv_bufs_size(b), 65536);
	ck_assert_uint_eq(kv_bufs_in_use(b), 0);
	/* Distinct, non-overlapping, fully writable buffers (more than one
	 * slab's worth). */
	for (int i = 0; i < N; i++) {
		v[i] = kv_buf_get(b);
		ck_assert_ptr_nonnull(v[i]);
		memset(v[i], i & 0xff, 65536);
	}
	ck_assert_uint_eq(kv_bufs_in_use(b), N);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < 65536; k += 4096)
			ck_assert_uint_eq(v[i][k] | v[i][k + 4095] << 8, (i & 0xff) * 0x101u);
	/* Returned buffers are reused, beyond the initial keep. */
	for (int i = 0; i < 100; i++) {
		returned[i] = v[i];
		kv_buf_put(b, v[i]);
	}
	ck_assert_uint_eq(kv_bufs_in_use(b), N - 100);
	for (int i = 0; i < 100; i++) {
		int known = 0;
		again = kv_buf_get(b);
		for (int j = 0; j < 100; j++)
			known |= again == returned[j];
		for (int j = 0; j < i; j++)
			ck_assert_ptr_ne(again, v[j]); /* not handed out twice */
		ck_assert_msg(known, "buffer %d after returns was not a returned one", i);
		v[i] = again;
	}
	ck_assert_uint_eq(kv_bufs_in_use(b), N);
	for (int i = 0; i < N; i++)
		kv_buf_put(b, v[i]);
	kv_buf_put(b, NULL);
	ck_assert_uint_eq(kv_bufs_in_use(b), 0);
	kv_bufs_free(b);
	free(v);
}
END_TEST

START_TEST(test_bufs_odd_size)
{
	struct kv_bufs *b = kv_bufs_new(1000, 0);
	uint8_t *x = kv_buf_get(b), *y = kv_buf_get(b);

	ck_assert_uint_ge(kv_bufs_size(b), 1000);
	ck_assert_ptr_nonnull(x);
	ck_assert_ptr_nonnull(y);
	memset(x, 1, kv_bufs_size(b));
	memset(y, 2, kv_bufs_size(b));
	ck_assert_uint_eq(x[kv_bufs_size(b) - 1], 1);
	ck_assert_uint_eq(y[0], 2);
	kv_buf_put(b, x);
	kv_buf_put(b, y);
	ck_assert_uint_eq(kv_bufs_in_use(b), 0);
	kv_bufs_free(b);
}
END_TEST

/* kv_held, behind KV_ASSERT_HELD (src/base/lock.h): true only in the
 * thread that holds the mutex. */
static void *held_elsewhere(void *arg) { return (void *)(intptr_t)kv_held(arg); }

START_TEST(test_lock_held)
{
#ifdef KV_LOCK_CHECKED
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_t t;
	void *other;

	ck_assert(!kv_held(&m));
	pthread_mutex_lock(&m);
	ck_assert(kv_held(&m));
	ck_assert_int_eq(pthread_create(&t, NULL, held_elsewhere, &m), 0);
	pthread_join(t, &other);
	ck_assert_ptr_null(other);
	pthread_mutex_unlock(&m);
	ck_assert(!kv_held(&m));
#endif
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = kvtest_tcase(s, "pool", 30);

	tcase_add_test(tc, test_all_jobs_run);
	tcase_add_test(tc, test_fifo_wrap_grow);
	tcase_add_test(tc, test_jobs_submit_jobs);
	tcase_add_test(tc, test_bufs);
	tcase_add_test(tc, test_bufs_odd_size);
	tcase_add_test(tc, test_lock_held);
	return s;
}

int main(void) { return kvtest_run(pool_suite, NULL); }
