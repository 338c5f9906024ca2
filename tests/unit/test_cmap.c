/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_cmap (src/fs/cmap.h): the sparse chunk map against a
 * reference of (index, value) pairs through random adds, walks and trims,
 * at small indexes and near the top of the range; its memory grows with
 * the chunks present, not with the highest index. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "kvtest.h"

#define NREF 4000

struct ref {
	uint64_t idx[NREF];
	size_t n;
};

static int has(const struct ref *r, uint64_t idx)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->idx[i] == idx)
			return 1;
	return 0;
}

/* Every entry the map has is found by get and by the walk, in order, and
 * holds its index in raw; entries the reference lacks are zero. */
static void check_map(const struct kv_cmap *m, const struct ref *r)
{
	struct kv_centry *e;
	uint64_t i = 0, last = 0, seen = 0;
	int first = 1;

	for (; (e = kv_cmap_next(m, &i)); i++) {
		ck_assert(first || i > last);
		first = 0;
		last = i;
		ck_assert_ptr_eq(kv_cmap_get(m, i), e);
		if (e->stored) {
			ck_assert_uint_eq(e->loc.off, i);
			ck_assert(has(r, i));
			seen++;
		}
		if (i == UINT64_MAX)
			break;
	}
	ck_assert_uint_eq(seen, r->n);
}

static uint64_t pick(unsigned k)
{
	switch (k % 4) {
	case 0: return (uint64_t)(rand() % 300);
	case 1: return (uint64_t)rand() * 977;
	case 2: return ((uint64_t)1 << 43) + (uint64_t)(rand() % 100);
	default: return UINT64_MAX - 1 - (uint64_t)(rand() % 100);
	}
}

START_TEST(test_random_against_reference)
{
	static struct ref r;
	struct kv_cmap m = { 0 };

	srand(777);
	r.n = 0;
	for (unsigned step = 0; step < 20000; step++) {
		uint64_t idx = pick((unsigned)rand());
		struct kv_centry *e;
		if (rand() % 50 == 0) {
			/* Truncate: empty the entries from cut on, then trim. */
			uint64_t cut = pick((unsigned)rand()), i = cut;
			size_t k = 0;
			for (; (e = kv_cmap_next(&m, &i)); i++) {
				memset(e, 0, sizeof(*e));
				if (i == UINT64_MAX)
					break;
			}
			kv_cmap_trim(&m, cut);
			for (size_t j = 0; j < r.n; j++)
				if (r.idx[j] < cut)
					r.idx[k++] = r.idx[j];
			r.n = k;
			/* The leaf after cut's own is gone. */
			if (cut < UINT64_MAX - 2 * KV_CMAP_LEAF)
				ck_assert_ptr_null(kv_cmap_get(&m, cut + KV_CMAP_LEAF));
			continue;
		}
		if (has(&r, idx) || r.n == NREF) {
			ck_assert_ptr_nonnull(kv_cmap_get(&m, idx));
			continue;
		}
		e = kv_cmap_add(&m, idx);
		ck_assert_ptr_nonnull(e);
		ck_assert_int_eq(e->stored, 0);
		e->stored = 1;
		e->loc.off = idx;
		r.idx[r.n++] = idx;
		if (step % 1000 == 0)
			check_map(&m, &r);
	}
	check_map(&m, &r);
	kv_cmap_clear(&m);
	ck_assert_uint_eq(m.n, 0);
	ck_assert_ptr_null(kv_cmap_get(&m, 5));
}
END_TEST

START_TEST(test_sparse_memory)
{
	struct kv_cmap m = { 0 };
	uint64_t i;

	/* One chunk at 2^45 bytes of 1 MiB chunks, one near the top. */
	ck_assert_ptr_nonnull(kv_cmap_add(&m, (uint64_t)1 << 25));
	ck_assert_ptr_nonnull(kv_cmap_add(&m, UINT64_MAX / 2));
	ck_assert_uint_le(kv_cmap_bytes(&m), 8192);
	ck_assert_ptr_null(kv_cmap_get(&m, 0));
	ck_assert_ptr_null(kv_cmap_get(&m, ((uint64_t)1 << 25) + KV_CMAP_LEAF));
	i = 0;
	ck_assert_ptr_nonnull(kv_cmap_next(&m, &i));
	ck_assert_uint_eq(i, ((uint64_t)1 << 25) & ~(uint64_t)(KV_CMAP_LEAF - 1));
	/* A dense file of 10,000 chunks: leaves of KV_CMAP_LEAF entries. */
	for (i = 0; i < 10000; i++)
		ck_assert_ptr_nonnull(kv_cmap_add(&m, i));
	ck_assert_uint_le(kv_cmap_bytes(&m), 10000 * sizeof(struct kv_centry) * 5 / 4 + 65536);
	kv_cmap_trim(&m, 5000);
	ck_assert_ptr_nonnull(kv_cmap_get(&m, 4999));
	ck_assert_ptr_null(kv_cmap_get(&m, (uint64_t)1 << 25));
	ck_assert_ptr_null(kv_cmap_get(&m, 5000 + KV_CMAP_LEAF));
	kv_cmap_clear(&m);
}
END_TEST

static Suite *cmap_suite(void)
{
	Suite *s = suite_create("cmap");
	TCase *tc = kvtest_tcase(s, "cmap", 60);

	tcase_add_test(tc, test_random_against_reference);
	tcase_add_test(tc, test_sparse_memory);
	return s;
}

int main(void) { return kvtest_run(cmap_suite, NULL); }
