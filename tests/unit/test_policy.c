/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_policy (src/fs/policy.h) without a mount: LRU order of
 * evict_to, open and pinned contexts kept, admit (ENOSPC, low watermark,
 * min_free), TTL expiry by the evictor thread, persistence of the state
 * through flush, and a context being evicted refusing opens.
 *
 * The filesystem is replaced by fake hooks: a "stored" counter that the
 * fake evict callback decreases by a per-context size (and that deletes
 * the context's row, as the real one does), and a fake free-space figure.
 * The index is real (a temporary SQLite file); context rows are keyed by
 * inode number only, so arbitrary numbers serve as contexts. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "index.h"
#include "kvtest.h"
#include "opt.h"
#include "policy.h"
#include "stats.h"

#define MAXINO 4096

struct fake {
	struct kv_index *ix;
	struct kv_policy *p;
	pthread_mutex_t lock; /* sizes, order, stored updates */
	_Atomic uint64_t stored;
	uint64_t size[MAXINO];
	int fail[MAXINO];       /* evict returns -EIO for these */
	uint64_t order[MAXINO]; /* evicted, in order */
	size_t norder;
	int open_in_evict; /* the hook tries kv_policy_open on its ino */
	int open_rc[MAXINO];
	atomic_int flushed;
	/* fake backing filesystem: avail = fs_size - other - stored */
	uint64_t fs_size, other;
	int space_rc;
};

static int no_chunk(void *arg, const struct kv_chunk *c)
{
	(void)arg;
	(void)c;
	return 0;
}

static int f_evict(void *arg, uint64_t ino)
{
	struct fake *f = arg;
	int rc;

	ck_assert_uint_lt(ino, MAXINO);
	if (f->open_in_evict) {
		f->open_rc[ino] = kv_policy_open(f->p, ino);
		if (!f->open_rc[ino])
			kv_policy_close(f->p, ino);
	}
	if (f->fail[ino])
		return -EIO;
	rc = kv_index_drop(f->ix, ino, no_chunk, NULL); /* deletes the context row */
	if (rc)
		return rc;
	pthread_mutex_lock(&f->lock);
	f->stored -= f->size[ino];
	f->size[ino] = 0;
	f->order[f->norder++] = ino;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static uint64_t f_stored(void *arg) { return ((struct fake *)arg)->stored; }

static int f_space(void *arg, uint64_t *avail, uint64_t *total)
{
	struct fake *f = arg;

	if (f->space_rc)
		return f->space_rc;
	*total = f->fs_size;
	*avail = f->fs_size - f->other - f->stored;
	return 0;
}

static void f_flushed(void *arg) { ((struct fake *)arg)->flushed++; }

static uint64_t f_bytes(void *arg, uint64_t ino)
{
	struct fake *f = arg;
	uint64_t n;

	pthread_mutex_lock(&f->lock);
	n = f->size[ino];
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* Per-test state. */
static struct fake F;
static struct kv_stats S;
static struct kv_config C;
static char T_db[600];

static struct kv_index *open_ix(void)
{
	struct kv_index *ix = NULL;
	char err[512] = "";

	ck_assert_msg(kv_index_open(T_db, 1, &ix, err, sizeof(err)) == 0, "open: %s", err);
	return ix;
}

/* A fresh index and fake; the config starts from the defaults. */
static void setup(void)
{
	char dir[512];

	kvtest_new_dir(dir, sizeof(dir));
	snprintf(T_db, sizeof(T_db), "%s/kvfs.db", dir);
	memset(&F, 0, sizeof(F));
	pthread_mutex_init(&F.lock, NULL);
	memset(&S, 0, sizeof(S));
	kv_opt_defaults(&C);
	F.ix = open_ix();
}

static struct kv_policy *start_policy(void)
{
	/* Contexts here are bare numbers, not inodes of the index. */
	struct kv_policy_hooks h = { &F, f_evict, f_stored, f_space, f_flushed, f_bytes, 0 };

	ck_assert_int_eq(kv_policy_new(&C, F.ix, &S, &h, &F.p), 0);
	return F.p;
}

static void teardown(void)
{
	kv_policy_free(F.p);
	F.p = NULL;
	kv_index_close(F.ix);
	F.ix = NULL;
}

/* A context row with the given age (seconds before now, ns apart by ino)
 * holding size stored bytes. */
static void ctx_old(uint64_t ino, int64_t age_s, uint64_t size)
{
	struct kv_ctx_row r = { .ino = ino,
				.last_access = kv_now_ns() - age_s * 1000000000 + (int64_t)ino,
				.ttl = -1 };

	ck_assert_int_eq(kv_index_ctx_add(F.ix, &r), 0);
	F.size[ino] = size;
	F.stored += size;
}

/* Contexts first..last, oldest first, 100 s old, size each. */
static void ctx_range(uint64_t first, uint64_t last, uint64_t size)
{
	for (uint64_t i = first; i <= last; i++)
		ctx_old(i, 100, size);
}

/* setup(), contexts first..last of size each (as ctx_range), and a policy
 * over them. */
static struct kv_policy *start_range(uint64_t first, uint64_t last, uint64_t size)
{
	setup();
	ctx_range(first, last, size);
	return start_policy();
}

/* setup() with a filesystem of fs_size bytes, other of them used by other
 * files and stored by kvfs. */
static void setup_space(uint64_t fs_size, uint64_t other, uint64_t stored)
{
	setup();
	F.fs_size = fs_size;
	F.other = other;
	F.stored = stored;
}

/* An open and a close of ino: it becomes the most recently used. */
static void open_close(struct kv_policy *p, uint64_t ino)
{
	ck_assert_int_eq(kv_policy_open(p, ino), 0);
	kv_policy_close(p, ino);
}

static int evicted(uint64_t ino)
{
	int hit = 0;

	pthread_mutex_lock(&F.lock);
	for (size_t i = 0; i < F.norder; i++)
		hit |= F.order[i] == ino;
	pthread_mutex_unlock(&F.lock);
	return hit;
}

static size_t nevicted(void)
{
	size_t n;

	pthread_mutex_lock(&F.lock);
	n = F.norder;
	pthread_mutex_unlock(&F.lock);
	return n;
}

/* Under F.lock: an evictor thread may still be running. */
static void assert_order(const uint64_t *want, size_t n)
{
	uint64_t order[MAXINO];
	char got[512] = "";
	size_t used = 0, norder;

	pthread_mutex_lock(&F.lock);
	norder = F.norder;
	memcpy(order, F.order, norder * sizeof(order[0]));
	pthread_mutex_unlock(&F.lock);
	for (size_t i = 0; i < norder && used < sizeof(got) - 24; i++)
		used += (size_t)snprintf(got + used, sizeof(got) - used, " %llu",
					 (unsigned long long)order[i]);
	ck_assert_msg(norder == n, "evicted %zu contexts (%s), expected %zu", norder, got, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(order[i] == want[i], "eviction %zu was %llu, expected %llu (order:%s)",
			      i, (unsigned long long)order[i], (unsigned long long)want[i], got);
}

static uint64_t ev(enum kv_evict_reason why) { return atomic_load(&S.evictions[why]); }

static int has_row(uint64_t ino)
{
	struct kv_ctx_row r;
	int rc = kv_index_ctx_get(F.ix, ino, &r);

	ck_assert_msg(rc == 0 || rc == -ENOENT, "kv_index_ctx_get: %d", rc);
	return rc == 0;
}

/* ---- evict_to ---- */

START_TEST(test_evict_lru_order)
{
	struct kv_policy *p;

	p = start_range(10, 15, 100);
	/* an open (and close) makes 11 the most recently used */
	open_close(p, 11);
	ck_assert_int_eq(kv_policy_evict_to(p, 250, KV_EVICT_MANUAL), 0);
	assert_order((uint64_t[]){ 10, 12, 13, 14 }, 4);
	ck_assert_uint_eq(F.stored, 200);
	ck_assert_uint_eq(ev(KV_EVICT_MANUAL), 4);
	ck_assert_uint_eq(ev(KV_EVICT_LRU), 0);
	ck_assert(!has_row(10) && !has_row(14));
	ck_assert(has_row(11) && has_row(15));
	/* nothing to do: no eviction */
	ck_assert_int_eq(kv_policy_evict_to(p, 200, KV_EVICT_MANUAL), 0);
	ck_assert_uint_eq(F.norder, 4);
	ck_assert_int_eq(kv_policy_evict_to(p, 0, KV_EVICT_LRU), 0);
	assert_order((uint64_t[]){ 10, 12, 13, 14, 15, 11 }, 6);
	ck_assert_uint_eq(ev(KV_EVICT_LRU), 2);
	ck_assert_uint_eq(F.stored, 0);
	teardown();
}
END_TEST

START_TEST(test_read_bumps)
{
	struct kv_policy *p;

	p = start_range(10, 12, 100);
	/* a read after an open moves a context to the back even when the open
	 * itself was long ago (its state is then in memory) */
	open_close(p, 10);
	open_close(p, 11);
	kv_policy_read(p, 10);
	ck_assert_int_eq(kv_policy_evict_to(p, 100, KV_EVICT_MANUAL), 0);
	assert_order((uint64_t[]){ 12, 11 }, 2);
	teardown();
}
END_TEST

START_TEST(test_skip_open_and_pinned)
{
	struct kv_policy *p;

	p = start_range(20, 24, 100);
	ck_assert_int_eq(kv_policy_open(p, 20), 0);
	ck_assert_int_eq(kv_policy_open(p, 20), 0); /* two opens ... */
	kv_policy_close(p, 20);                     /* ... one close: still open */
	ck_assert_int_eq(kv_policy_set_pin(p, 21, 1), 0);
	ck_assert_int_eq(kv_policy_evict_to(p, 0, KV_EVICT_MANUAL), -ENOSPC);
	assert_order((uint64_t[]){ 22, 23, 24 }, 3);
	ck_assert_uint_eq(F.stored, 200);
	ck_assert(has_row(20) && has_row(21));
	kv_policy_close(p, 20);
	ck_assert_int_eq(kv_policy_evict_to(p, 100, KV_EVICT_MANUAL), 0);
	assert_order((uint64_t[]){ 22, 23, 24, 20 }, 4);
	ck_assert_int_eq(kv_policy_evict_to(p, 0, KV_EVICT_MANUAL), -ENOSPC);
	ck_assert(!evicted(21));
	ck_assert_int_eq(kv_policy_set_pin(p, 21, 0), 0);
	ck_assert_int_eq(kv_policy_evict_to(p, 0, KV_EVICT_MANUAL), 0);
	assert_order((uint64_t[]){ 22, 23, 24, 20, 21 }, 5);
	ck_assert_uint_eq(ev(KV_EVICT_MANUAL), 5);
	teardown();
}
END_TEST

/* More contexts than one batch of the LRU query that cannot be evicted
 * come first: the younger ones behind them are still found. */
START_TEST(test_skip_many)
{
	struct kv_policy *p;

	setup();
	ctx_range(100, 399, 10);
	for (uint64_t i = 100; i < 350; i++)
		F.fail[i] = 1;
	p = start_policy();
	ck_assert_int_eq(kv_policy_evict_to(p, F.stored - 100, KV_EVICT_MANUAL), 0);
	assert_order((uint64_t[]){ 350, 351, 352, 353, 354, 355, 356, 357, 358, 359 }, 10);
	ck_assert_uint_eq(ev(KV_EVICT_MANUAL), 10);
	/* failed ones are not counted, and are not stuck: no longer "being evicted" */
	open_close(p, 100);
	teardown();
}
END_TEST

/* With contexts that are inodes of the index: no row is made for one that
 * does not exist (an open racing an eviction gets ENOENT), and one removed
 * while files of it are open keeps their opens and closes working. */
START_TEST(test_contexts_are_inodes)
{
	struct kv_policy_hooks h = { &F, f_evict, f_stored, f_space, f_flushed, f_bytes, 1 };
	struct kv_attr a = { .mode = S_IFDIR | 0755, .nlink = 2 };
	struct kv_ctx_row r;
	uint64_t ino, gone;
	uint32_t nlink;
	struct kv_policy *p;

	setup();
	ck_assert_int_eq(kv_index_create(F.ix, 1, "c", 1, &a, NULL), 0);
	ino = a.ino;
	ck_assert_int_eq(kv_policy_new(&C, F.ix, &S, &h, &F.p), 0);
	p = F.p;
	ck_assert_int_eq(kv_policy_open(p, 999999), -ENOENT);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 999999, &r), -ENOENT);
	ck_assert_int_eq(kv_policy_get(p, 999999, &r), -ENOENT);
	ck_assert_int_eq(kv_policy_set_pin(p, 999999, 1), -ENOENT);

	ck_assert_int_eq(kv_policy_open(p, ino), 0);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, ino, &r), 0);
	ck_assert_int_eq(kv_index_remove(F.ix, 1, "c", 1, 1, 1, &gone, &nlink), 0);
	ck_assert_int_eq(kv_index_ctx_del(F.ix, ino), 0);
	kv_policy_removed(p, ino);
	/* a file of it still open: opened again and closed */
	ck_assert_int_eq(kv_policy_open(p, ino), 0);
	kv_policy_close(p, ino);
	kv_policy_close(p, ino);
	/* closed: gone for good, and no row comes back */
	ck_assert_int_eq(kv_policy_open(p, ino), -ENOENT);
	ck_assert_int_eq(kv_policy_flush(p), 0);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, ino, &r), -ENOENT);
	teardown();
}
END_TEST

START_TEST(test_dead_refuses_open)
{
	struct kv_policy *p;

	setup();
	ctx_range(30, 32, 100);
	F.fail[31] = 1;
	F.open_in_evict = 1;
	for (int i = 0; i < MAXINO; i++)
		F.open_rc[i] = 12345;
	p = start_policy();
	/* 31's eviction fails: EIO, not the ENOSPC of "all pinned or open"
	 * (kvfsctl evict blamed pinned contexts for a full index) */
	ck_assert_int_eq(kv_policy_evict_to(p, 0, KV_EVICT_MANUAL), -EIO);
	/* during its eviction a context refuses opens */
	ck_assert_int_eq(F.open_rc[30], -ENOENT);
	ck_assert_int_eq(F.open_rc[31], -ENOENT);
	ck_assert_int_eq(F.open_rc[32], -ENOENT);
	assert_order((uint64_t[]){ 30, 32 }, 2);
	ck_assert_uint_eq(ev(KV_EVICT_MANUAL), 2);
	ck_assert_uint_eq(F.stored, 100);
	/* a failed eviction gives the context back */
	open_close(p, 31);
	F.fail[31] = 0;
	F.open_in_evict = 0;
	ck_assert_int_eq(kv_policy_evict_to(p, 0, KV_EVICT_MANUAL), 0);
	ck_assert(evicted(31));
	teardown();
}
END_TEST

/* ---- admit ---- */

START_TEST(test_admit_enospc)
{
	struct kv_policy *p;

	setup();
	C.capacity = 1000;
	ctx_range(40, 43, 200);
	p = start_policy();
	for (uint64_t i = 40; i <= 43; i++)
		ck_assert_int_eq(kv_policy_set_pin(p, i, 1), 0);
	ck_assert_int_eq(kv_policy_admit(p, 300), -ENOSPC);
	ck_assert_uint_eq(atomic_load(&S.enospc), 1);
	ck_assert_uint_eq(F.norder, 0);
	ck_assert_int_eq(kv_policy_admit(p, 200), 0); /* 800 + 200 fits the cap exactly */
	ck_assert_uint_eq(atomic_load(&S.enospc), 1);
	/* an open context is no better */
	ck_assert_int_eq(kv_policy_set_pin(p, 40, 0), 0);
	ck_assert_int_eq(kv_policy_open(p, 40), 0);
	ck_assert_int_eq(kv_policy_admit(p, 300), -ENOSPC);
	ck_assert_uint_eq(atomic_load(&S.enospc), 2);
	ck_assert_uint_eq(F.norder, 0);
	/* once closed it makes room */
	kv_policy_close(p, 40);
	ck_assert_int_eq(kv_policy_admit(p, 300), 0);
	assert_order((uint64_t[]){ 40 }, 1);
	ck_assert_uint_eq(ev(KV_EVICT_LRU), 1);
	ck_assert_uint_eq(atomic_load(&S.enospc), 2);
	teardown();
}
END_TEST

START_TEST(test_admit_low_watermark)
{
	struct kv_policy *p;

	setup();
	C.capacity = 1000;
	C.high = 60;
	C.low = 50;
	ctx_range(50, 59, 100);
	p = start_policy();
	/* at the cap: a small write evicts down to low (50%), not just 10 bytes */
	ck_assert_int_eq(kv_policy_admit(p, 10), 0);
	assert_order((uint64_t[]){ 50, 51, 52, 53, 54 }, 5);
	ck_assert_uint_eq(F.stored, 500);
	ck_assert_uint_eq(ev(KV_EVICT_LRU), 5);
	/* above high but within the cap: admitted without synchronous eviction
	 * (the background evictor, not started here, would do it) */
	ck_assert_int_eq(kv_policy_admit(p, 200), 0);
	ck_assert_uint_eq(F.norder, 5);
	/* a write bigger than low's room: evicts down to cap - bytes */
	ck_assert_int_eq(kv_policy_admit(p, 900), 0);
	ck_assert_uint_le(F.stored, 100);
	ck_assert_uint_eq(F.stored, 100);
	ck_assert_uint_eq(ev(KV_EVICT_LRU), 9);
	/* a write that cannot fit even in an empty store */
	ck_assert_int_eq(kv_policy_admit(p, 1001), -ENOSPC);
	ck_assert_uint_eq(atomic_load(&S.enospc), 1);
	/* no cap: always admitted */
	teardown();
	p = start_range(50, 59, 100);
	ck_assert_uint_eq(kv_policy_limit(p), UINT64_MAX);
	ck_assert_int_eq(kv_policy_admit(p, UINT64_MAX / 2), 0);
	ck_assert_uint_eq(F.norder, 0);
	teardown();
}
END_TEST

START_TEST(test_limit_min_free)
{
	struct kv_policy *p;

	setup_space(10000, 8500, 500); /* avail 1000 */
	C.min_free = 300;
	p = start_policy();
	ck_assert_uint_eq(kv_policy_limit(p), 500 + 700);
	teardown();

	setup_space(10000, 8500, 500);
	C.min_free = 300;
	C.capacity = 1000;
	p = start_policy();
	ck_assert_uint_eq(kv_policy_limit(p), 1000); /* the tighter one */
	teardown();

	setup_space(10000, 8500, 500);
	C.min_free_pct = 5; /* floor 500 */
	p = start_policy();
	ck_assert_uint_eq(kv_policy_limit(p), 500 + 500);
	teardown();

	setup_space(10000, 9300, 500); /* avail 200, below the floor 300 */
	C.min_free = 300;
	p = start_policy();
	ck_assert_uint_eq(kv_policy_limit(p), 400);
	F.space_rc = -EIO; /* unknown free space: the capacity alone */
	ck_assert_uint_eq(kv_policy_limit(p), UINT64_MAX);
	teardown();

	/* admit under a floor: fs of 2000, floor 1200 -> 800 may be stored */
	setup();
	F.fs_size = 2000;
	C.min_free = 1200;
	ctx_range(60, 64, 200);
	p = start_policy();
	ck_assert_uint_eq(kv_policy_limit(p), 800);
	ck_assert_int_eq(kv_policy_admit(p, 100), 0);
	/* down to min(low = 90% of 800, 800 - 100) = 700 */
	assert_order((uint64_t[]){ 60, 61 }, 2);
	ck_assert_uint_eq(F.stored, 600);
	teardown();
}
END_TEST

/* Writers that each hold their context open, admit a record and then
 * store it, all at once: with plenty of evictable contexts, admit must
 * never refuse, and stored stays within the cap plus one record per writer. */
#define W_THREADS 4
#define W_ITERS 300
#define W_REC 100
static atomic_uint_least64_t w_next, w_refused, w_max;

static void *w_writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < W_ITERS; i++) {
		uint64_t ino = atomic_fetch_add(&w_next, 1), s;
		if (ino >= MAXINO)
			break;
		kv_policy_created(F.p, ino);
		ck_assert_int_eq(kv_policy_open(F.p, ino), 0);
		if (kv_policy_admit(F.p, W_REC)) {
			atomic_fetch_add(&w_refused, 1);
		} else {
			pthread_mutex_lock(&F.lock);
			F.size[ino] += W_REC;
			s = atomic_fetch_add(&F.stored, W_REC) + W_REC;
			pthread_mutex_unlock(&F.lock);
			for (uint64_t m = atomic_load(&w_max);
			     s > m && !atomic_compare_exchange_weak(&w_max, &m, s);)
				;
		}
		kv_policy_close(F.p, ino);
	}
	return NULL;
}

START_TEST(test_admit_concurrent)
{
	pthread_t t[W_THREADS];

	setup();
	C.capacity = 20 * W_REC;
	ctx_range(1, 19, W_REC);
	start_policy();
	atomic_store(&w_next, 100);
	atomic_store(&w_refused, 0);
	atomic_store(&w_max, 0);
	for (int i = 0; i < W_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, w_writer, NULL), 0);
	for (int i = 0; i < W_THREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_le(atomic_load(&w_max), C.capacity + W_THREADS * W_REC);
	ck_assert_msg(atomic_load(&w_refused) == 0,
		      "%llu of %d admits refused with ENOSPC although every other context "
		      "could be evicted (enospc counter %llu)",
		      (unsigned long long)atomic_load(&w_refused), W_THREADS * W_ITERS,
		      (unsigned long long)atomic_load(&S.enospc));
	teardown();
}
END_TEST

/* ---- the evictor thread ---- */

/* Wait up to ms for cond (an expression). */
#define WAIT_FOR(cond, ms) \
	do { \
		for (int w_ = 0; w_ < (ms) / 20 && !(cond); w_++) \
			usleep(20000); \
	} while (0)

START_TEST(test_ttl_expiry)
{
	struct kv_policy *p;
	int64_t t0 = kv_now_ns();

	setup();
	p = start_policy();
	for (uint64_t i = 70; i <= 74; i++) {
		kv_policy_created(p, i);
		F.size[i] = 10;
		F.stored += 10;
	}
	ck_assert_int_eq(kv_policy_set_ttl(p, 70, 1), 0); /* expires */
	ck_assert_int_eq(kv_policy_set_ttl(p, 71, 0), 0); /* never */
	ck_assert_int_eq(kv_policy_set_ttl(p, 72, 1), 0); /* pinned */
	ck_assert_int_eq(kv_policy_set_pin(p, 72, 1), 0);
	ck_assert_int_eq(kv_policy_set_ttl(p, 73, 1), 0); /* open */
	ck_assert_int_eq(kv_policy_open(p, 73), 0);
	/* 74: no ttl, and no default ttl */
	ck_assert_int_eq(kv_policy_start(p), 0);
	WAIT_FOR(evicted(70), 3000);
	ck_assert_msg(evicted(70), "context with ttl 1 s not evicted after %.1f s",
		      (kv_now_ns() - t0) / 1e9);
	ck_assert_uint_eq(ev(KV_EVICT_TTL), 1);
	usleep(1200000);
	ck_assert_msg(nevicted() == 1, "%zu contexts evicted; only the one with ttl 1 s should be",
		      nevicted());
	ck_assert(has_row(71) && has_row(72) && has_row(73) && has_row(74));
	ck_assert_int_gt(atomic_load(&F.flushed), 0);
	/* once closed, the expired one goes; unpinned, the other too */
	kv_policy_close(p, 73);
	ck_assert_int_eq(kv_policy_set_pin(p, 72, 0), 0);
	WAIT_FOR(evicted(73) && evicted(72), 2500);
	ck_assert(evicted(73) && evicted(72));
	ck_assert_uint_eq(ev(KV_EVICT_TTL), 3);
	ck_assert(!evicted(71) && !evicted(74));
	ck_assert_uint_eq(ev(KV_EVICT_LRU) + ev(KV_EVICT_MANUAL), 0);
	teardown();
}
END_TEST

START_TEST(test_ttl_default)
{
	struct kv_policy *p;

	setup();
	C.ttl = 1;
	ctx_old(80, 5, 10); /* idle for 5 s: expired by the default ttl */
	ctx_old(81, 5, 10); /* its own ttl 0 overrides */
	ctx_old(82, 5, 10); /* its own ttl 3600 overrides */
	p = start_policy();
	ck_assert_int_eq(kv_policy_set_ttl(p, 81, 0), 0);
	ck_assert_int_eq(kv_policy_set_ttl(p, 82, 3600), 0);
	ck_assert_int_eq(kv_policy_start(p), 0);
	WAIT_FOR(evicted(80), 2500);
	ck_assert(evicted(80));
	usleep(1100000);
	ck_assert(!evicted(81) && !evicted(82));
	ck_assert_uint_eq(ev(KV_EVICT_TTL), 1);
	teardown();
}
END_TEST

/* A ttl saved in the index by an earlier mount is enforced although the
 * new mount has no default ttl. */
START_TEST(test_ttl_from_index)
{
	struct kv_ctx_row r;
	struct kv_policy *p;

	setup();
	ctx_old(90, 10, 10);
	ctx_old(91, 10, 10);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 90, &r), 0);
	r.ttl = 2;
	ck_assert_int_eq(kv_index_ctx_save(F.ix, &r, 1), 0);
	p = start_policy();
	ck_assert_int_eq(kv_policy_start(p), 0);
	WAIT_FOR(evicted(90), 2500);
	ck_assert_msg(evicted(90), "a ttl from the index was not enforced");
	ck_assert(!evicted(91));
	teardown();
}
END_TEST

/* Above high% of the cap the evictor thread evicts down to low%. */
START_TEST(test_background_watermarks)
{
	struct kv_policy *p;

	setup();
	C.capacity = 1000;
	C.high = 80;
	C.low = 50;
	ctx_range(100, 107, 100); /* 800: not above high */
	p = start_policy();
	ck_assert_int_eq(kv_policy_start(p), 0);
	usleep(1300000);
	ck_assert_uint_eq(nevicted(), 0);
	ctx_old(108, 1, 100); /* 900 > 800 */
	WAIT_FOR(F.stored <= 500, 2500);
	ck_assert_uint_eq(F.stored, 500);
	assert_order((uint64_t[]){ 100, 101, 102, 103 }, 4);
	ck_assert_uint_eq(ev(KV_EVICT_LRU), 4);
	teardown();
}
END_TEST

/* ---- persistence ---- */

START_TEST(test_flush_persists)
{
	struct kv_ctx_row r, mem80, mem81;
	struct kv_policy *p;

	setup();
	p = start_policy();
	kv_policy_created(p, 200);
	kv_policy_created(p, 201);
	for (int i = 0; i < 3; i++) {
		open_close(p, 200);
	}
	ck_assert_int_eq(kv_policy_set_pin(p, 201, 1), 0);
	ck_assert_int_eq(kv_policy_set_ttl(p, 201, 42), 0);
	/* settings reach the index at once */
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 201, &r), 0);
	ck_assert_int_eq(r.pin, 1);
	ck_assert_int_eq(r.ttl, 42);
	ck_assert_int_eq(kv_policy_open(p, 200), 0);
	usleep(2000);
	kv_policy_read(p, 200);
	kv_policy_close(p, 200);
	ck_assert_int_eq(kv_policy_get(p, 200, &mem80), 0);
	ck_assert_uint_eq(mem80.hits, 4);
	ck_assert_int_eq(kv_policy_flush(p), 0);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 200, &r), 0);
	ck_assert_uint_eq(r.hits, 4);
	ck_assert_int_eq(r.last_access, mem80.last_access);
	ck_assert_int_eq(r.pin, 0);
	ck_assert_int_eq(r.ttl, -1);
	/* more accesses, then free (which flushes), close and reopen the index */
	open_close(p, 200);
	ck_assert_int_eq(kv_policy_get(p, 200, &mem80), 0);
	ck_assert_int_eq(kv_policy_get(p, 201, &mem81), 0);
	kv_policy_free(p);
	F.p = NULL;
	kv_index_close(F.ix);
	F.ix = open_ix();
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 200, &r), 0);
	ck_assert_uint_eq(r.hits, 5);
	ck_assert_int_eq(r.last_access, mem80.last_access);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 201, &r), 0);
	ck_assert_int_eq(r.pin, 1);
	ck_assert_int_eq(r.ttl, 42);
	ck_assert_int_eq(r.last_access, mem81.last_access);
	/* a new policy on the reopened index sees the same state */
	p = start_policy();
	ck_assert_int_eq(kv_policy_get(p, 200, &r), 0);
	ck_assert_uint_eq(r.hits, 5);
	ck_assert_int_eq(r.last_access, mem80.last_access);
	teardown();
}
END_TEST

/* The evictor thread writes dirty state about every second. */
START_TEST(test_periodic_flush)
{
	struct kv_ctx_row r = { 0 };
	struct kv_policy *p;

	setup();
	p = start_policy();
	ck_assert_int_eq(kv_policy_start(p), 0);
	kv_policy_created(p, 300);
	open_close(p, 300);
	open_close(p, 300);
	WAIT_FOR(!kv_index_ctx_get(F.ix, 300, &r) && r.hits == 2, 2500);
	ck_assert_int_eq(kv_index_ctx_get(F.ix, 300, &r), 0);
	ck_assert_uint_eq(r.hits, 2);
	teardown();
}
END_TEST

/* An unknown context gets a row with the defaults, in memory and index. */
START_TEST(test_new_context_row)
{
	struct kv_ctx_row r;
	struct kv_policy *p;
	int64_t t0 = kv_now_ns();

	setup();
	p = start_policy();
	ck_assert_int_eq(kv_policy_get(p, 400, &r), 0);
	ck_assert_uint_eq(r.ino, 400);
	ck_assert_uint_eq(r.hits, 0);
	ck_assert_int_eq(r.pin, 0);
	ck_assert_int_eq(r.ttl, -1);
	ck_assert_int_ge(r.last_access, t0);
	ck_assert_int_le(r.last_access, kv_now_ns());
	ck_assert(has_row(400));
	/* removed (rmdir) contexts are forgotten by the policy */
	kv_policy_removed(p, 400);
	teardown();
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = kvtest_tcase(s, "evict", 30);

	tcase_add_test(tc, test_evict_lru_order);
	tcase_add_test(tc, test_read_bumps);
	tcase_add_test(tc, test_skip_open_and_pinned);
	tcase_add_test(tc, test_skip_many);
	tcase_add_test(tc, test_dead_refuses_open);
	tcase_add_test(tc, test_contexts_are_inodes);

	tc = kvtest_tcase(s, "admit", 30);
	tcase_add_test(tc, test_admit_enospc);
	tcase_add_test(tc, test_admit_low_watermark);
	tcase_add_test(tc, test_limit_min_free);
	tcase_add_test(tc, test_admit_concurrent);

	tc = kvtest_tcase(s, "evictor", 30);
	tcase_add_test(tc, test_ttl_expiry);
	tcase_add_test(tc, test_ttl_default);
	tcase_add_test(tc, test_ttl_from_index);
	tcase_add_test(tc, test_background_watermarks);

	tc = kvtest_tcase(s, "state", 30);
	tcase_add_test(tc, test_flush_persists);
	tcase_add_test(tc, test_periodic_flush);
	tcase_add_test(tc, test_new_context_row);
	return s;
}

int main(void)
{
	rng_state = 0x9e3779b97f4a7c15ULL;
	return kvtest_run(policy_suite, "policy");
}
