/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_tier (src/store/tier.h): the DRAM tier of decompressed chunks,
 * its LRU budget, references, forgetting freed records, and hash growth. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtest.h"
#include "pool.h"
#include "tier.h"

#define LEN 4096u

static struct kv_loc L(uint32_t seg, uint64_t off) {
	return (struct kv_loc){ seg, LEN + 64, off };
}

/* A buffer from bufs filled with a pattern derived from tag. */
static void *
filled(struct kv_bufs *b, unsigned tag)
{
	uint8_t *p = kv_buf_get(b);

	ck_assert_ptr_nonnull(p);
	for (unsigned i = 0; i < LEN; i++)
		p[i] = (uint8_t)(tag * 131 + i);
	return p;
}

static int holds(const struct kv_tier_ent *e, unsigned tag)
{
	const uint8_t *p = kv_tier_data(e);

	for (unsigned i = 0; i < LEN; i++)
		if (p[i] != (uint8_t)(tag * 131 + i))
			return 0;
	return kv_tier_len(e) == LEN;
}

/* Put loc with tag's data and drop the reference. */
static void add(struct kv_tier *t, struct kv_bufs *b, struct kv_loc loc, unsigned tag)
{
	struct kv_tier_ent *e = kv_tier_put(t, &loc, filled(b, tag), LEN);

	ck_assert_ptr_nonnull(e);
	ck_assert(holds(e, tag));
	kv_tier_release(t, e);
}

/* Is loc cached with tag's data? (counts as a hit or miss) */
static int cached(struct kv_tier *t, struct kv_loc loc, unsigned tag)
{
	struct kv_tier_ent *e = kv_tier_get(t, &loc);
	int ok;

	if (!e)
		return 0;
	ok = holds(e, tag);
	kv_tier_release(t, e);
	ck_assert_msg(ok, "wrong data for seg %u off %llu", loc.seg, (unsigned long long)loc.off);
	return 1;
}

START_TEST(test_put_get)
{
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, 1 << 20);
	struct kv_tier_stats s;

	ck_assert_ptr_nonnull(t);
	ck_assert(!cached(t, L(1, 64), 1));
	add(t, b, L(1, 64), 1);
	ck_assert(cached(t, L(1, 64), 1));
	ck_assert(!cached(t, L(1, 128), 1)); /* other offset */
	ck_assert(!cached(t, L(2, 64), 1));  /* other segment */
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.hits, 1);
	ck_assert_uint_eq(s.misses, 3);
	ck_assert_uint_eq(s.bytes, LEN);
	ck_assert_uint_eq(s.entries, 1);
	ck_assert_uint_eq(kv_bufs_in_use(b), 1);
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

START_TEST(test_lru_budget)
{
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, 3 * LEN);
	struct kv_tier_stats s;

	add(t, b, L(1, 100), 1);
	add(t, b, L(1, 200), 2);
	add(t, b, L(1, 300), 3);
	ck_assert(cached(t, L(1, 100), 1)); /* now the most recent */
	add(t, b, L(1, 400), 4);            /* over budget: 200 goes */
	ck_assert(!cached(t, L(1, 200), 2));
	ck_assert(cached(t, L(1, 100), 1));
	ck_assert(cached(t, L(1, 300), 3));
	ck_assert(cached(t, L(1, 400), 4));
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.bytes, 3 * LEN);
	ck_assert_uint_eq(s.entries, 3);
	ck_assert_uint_eq(kv_bufs_in_use(b), 3); /* the evicted buffer came back */
	/* Order now (old -> new): 100, 300, 400 after the gets above. */
	add(t, b, L(1, 500), 5);
	add(t, b, L(1, 600), 6);
	ck_assert(!cached(t, L(1, 100), 1));
	ck_assert(!cached(t, L(1, 300), 3));
	ck_assert(cached(t, L(1, 400), 4));
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

START_TEST(test_referenced_stay)
{
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, LEN);
	struct kv_loc la = L(1, 64), lb = L(1, 4224);
	struct kv_tier_ent *a = kv_tier_put(t, &la, filled(b, 1), LEN);
	struct kv_tier_ent *e = kv_tier_put(t, &lb, filled(b, 2), LEN);
	struct kv_tier_stats s;

	/* Over budget, but both are in use. */
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.entries, 2);
	ck_assert(holds(a, 1));
	ck_assert(holds(e, 2));
	kv_tier_release(t, a); /* now a may go */
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.entries, 1);
	ck_assert_uint_le(s.bytes, LEN);
	ck_assert(holds(e, 2));
	ck_assert(!cached(t, la, 1));
	kv_tier_release(t, e);
	ck_assert(cached(t, lb, 2));
	ck_assert_uint_eq(kv_bufs_in_use(b), 1);
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

START_TEST(test_forget)
{
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, 1 << 20);
	struct kv_loc la = L(3, 64), lb = L(3, 8000);
	struct kv_tier_ent *a;
	struct kv_tier_stats s;

	add(t, b, lb, 2);
	a = kv_tier_put(t, &la, filled(b, 1), LEN);
	ck_assert_uint_eq(kv_bufs_in_use(b), 2);

	/* Forgetting an unreferenced entry frees it at once. */
	kv_tier_forget(t, &lb);
	ck_assert(!cached(t, lb, 2));
	ck_assert_uint_eq(kv_bufs_in_use(b), 1);

	/* A referenced one disappears from lookups but stays readable. */
	kv_tier_forget(t, &la);
	ck_assert(!cached(t, la, 1));
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.entries, 0);
	ck_assert_uint_eq(s.bytes, 0);
	ck_assert(holds(a, 1));
	ck_assert_uint_eq(kv_bufs_in_use(b), 1);
	kv_tier_release(t, a);
	ck_assert_uint_eq(kv_bufs_in_use(b), 0);

	/* The location can be cached again (a new record there). */
	add(t, b, la, 7);
	ck_assert(cached(t, la, 7));
	{
		struct kv_loc u = L(9, 9);
		kv_tier_forget(t, &u); /* unknown: no effect */
	}
	ck_assert(cached(t, la, 7));
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

START_TEST(test_put_twice)
{
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, 1 << 20);
	struct kv_loc l = L(1, 64);
	struct kv_tier_ent *e1 = kv_tier_put(t, &l, filled(b, 1), LEN);
	struct kv_tier_ent *e2 = kv_tier_put(t, &l, filled(b, 2), LEN);
	struct kv_tier_stats s;

	ck_assert_ptr_eq(e1, e2);
	ck_assert(holds(e2, 1)); /* the first one wins */
	ck_assert_uint_eq(kv_bufs_in_use(b), 1);
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.entries, 1);
	ck_assert_uint_eq(s.bytes, LEN);
	kv_tier_release(t, e1);
	kv_tier_release(t, e2);
	ck_assert(cached(t, l, 1));
	kv_tier_release(t, NULL); /* allowed */
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

START_TEST(test_many_entries)
{
	enum { N = 5000 };
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, (size_t)N * LEN);
	struct kv_tier_stats s;

	for (unsigned i = 0; i < N; i++)
		add(t, b, L(1 + i % 7, 64 + (uint64_t)i * 4160), i);
	for (unsigned i = 0; i < N; i++)
		ck_assert_msg(cached(t, L(1 + i % 7, 64 + (uint64_t)i * 4160), i), "entry %u lost",
			      i);
	kv_tier_stats(t, &s);
	ck_assert_uint_eq(s.entries, N);
	ck_assert_uint_eq(s.hits, N);
	for (unsigned i = 0; i < N; i += 2) {
		struct kv_loc l = L(1 + i % 7, 64 + (uint64_t)i * 4160);
		kv_tier_forget(t, &l);
	}
	for (unsigned i = 0; i < N; i++)
		ck_assert_int_eq(cached(t, L(1 + i % 7, 64 + (uint64_t)i * 4160), i), i % 2);
	ck_assert_uint_eq(kv_bufs_in_use(b), N / 2);
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

struct thr {
	struct kv_tier *t;
	struct kv_bufs *b;
	unsigned seed;
	int bad;
};

static void *hammer(void *arg)
{
	struct thr *h = arg;
	unsigned s = h->seed;

	for (int i = 0; i < 20000; i++) {
		struct kv_loc l;
		struct kv_tier_ent *e;
		unsigned k;
		s = s * 1103515245u + 12345u;
		k = (s >> 16) % 64;
		l = L(1, 64 + (uint64_t)k * 8192);
		switch ((s >> 8) % 4) {
		case 0:
		case 1:
			e = kv_tier_get(h->t, &l);
			if (e && !holds(e, k))
				h->bad++;
			kv_tier_release(h->t, e);
			break;
		case 2: {
			uint8_t *p = kv_buf_get(h->b);
			if (!p) {
				h->bad++;
				break;
			}
			for (unsigned j = 0; j < LEN; j++)
				p[j] = (uint8_t)(k * 131 + j);
			e = kv_tier_put(h->t, &l, p, LEN);
			if (!e || !holds(e, k))
				h->bad++;
			kv_tier_release(h->t, e);
			break;
		}
		default: kv_tier_forget(h->t, &l);
		}
	}
	return NULL;
}

START_TEST(test_threads)
{
	enum { T = 4 };
	struct kv_bufs *b = kv_bufs_new(LEN, 8);
	struct kv_tier *t = kv_tier_new(b, 16 * LEN);
	struct thr h[T];
	pthread_t th[T];
	struct kv_tier_stats s;

	for (int i = 0; i < T; i++) {
		h[i] = (struct thr){ t, b, 77u + (unsigned)i, 0 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &h[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < T; i++)
		ck_assert_int_eq(h[i].bad, 0);
	kv_tier_stats(t, &s);
	ck_assert_uint_le(s.bytes, 16 * LEN);
	ck_assert_uint_eq(s.bytes, s.entries * LEN);
	/* Every buffer out there belongs to an entry. */
	ck_assert_uint_eq(kv_bufs_in_use(b), s.entries);
	kv_tier_free(t);
	kv_bufs_free(b);
}
END_TEST

static Suite *tier_suite(void)
{
	Suite *s = suite_create("tier");
	TCase *tc = kvtest_tcase(s, "tier", 60);

	tcase_add_test(tc, test_put_get);
	tcase_add_test(tc, test_lru_budget);
	tcase_add_test(tc, test_referenced_stay);
	tcase_add_test(tc, test_forget);
	tcase_add_test(tc, test_put_twice);
	tcase_add_test(tc, test_many_entries);
	tcase_add_test(tc, test_threads);
	return s;
}

int main(void) { return kvtest_run(tier_suite, NULL); }
