/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_inomap (src/base/inomap.h): lookups against a reference
 * through random adds and deletes while the buckets grow, iteration (each
 * object once, and freeing while walking), take, chain lengths for dense
 * and strided keys, and the object found again from its node. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inomap.h"
#include "kvtest.h"

struct obj {
	char pad[24]; /* the node is not the first member */
	struct kv_inomap_node node;
	uint64_t key;
	int in;
	int seen;
};

static struct obj *obj_of(struct kv_inomap_node *node)
{
	return node ? kv_inomap_entry(node, struct obj, node) : NULL;
}

/* Objects seen by a walk; each must be marked in and seen once. */
static size_t walk(const struct kv_inomap *m, struct obj *v, size_t nv)
{
	size_t n = 0;

	for (size_t i = 0; i < nv; i++)
		v[i].seen = 0;
	for (struct kv_inomap_node *node = kv_inomap_next(m, NULL); node;
	     node = kv_inomap_next(m, node)) {
		struct obj *o = obj_of(node);
		ck_assert_int_eq(o->in, 1);
		ck_assert_int_eq(o->seen, 0);
		ck_assert_uint_eq(node->key, o->key);
		o->seen = 1;
		n++;
	}
	return n;
}

START_TEST(test_random_against_reference)
{
	enum { RANGE = 5000, STEPS = 200000 };
	static struct obj v[RANGE];
	struct kv_inomap m;
	size_t n = 0;

	memset(v, 0, sizeof(v));
	for (size_t i = 0; i < RANGE; i++)
		v[i].key = i; /* key 0 is an ordinary key */
	ck_assert_int_eq(kv_inomap_init(&m, 16), 0);
	srand(4242);
	for (int step = 0; step < STEPS; step++) {
		struct obj *o = &v[rand() % RANGE];
		if (rand() % 3) {
			if (!o->in) {
				kv_inomap_add(&m, &o->node, o->key);
				o->in = 1;
				n++;
			}
		} else {
			ck_assert_int_eq(kv_inomap_del(&m, &o->node), o->in);
			n -= o->in;
			o->in = 0;
		}
		ck_assert_uint_eq(m.n, n);
		if (step % 10000 == 0) {
			for (size_t i = 0; i < RANGE; i++)
				ck_assert_ptr_eq(obj_of(kv_inomap_find(&m, v[i].key)),
						 v[i].in ? &v[i] : NULL);
			ck_assert_uint_eq(walk(&m, v, RANGE), n);
		}
	}
	for (size_t i = 0; i < RANGE; i++)
		ck_assert_ptr_eq(obj_of(kv_inomap_find(&m, v[i].key)), v[i].in ? &v[i] : NULL);
	ck_assert_uint_eq(walk(&m, v, RANGE), n);
	ck_assert_uint_le(n, m.nbucket); /* grown from 16 */
	ck_assert_ptr_null(kv_inomap_find(&m, RANGE + 7));
	kv_inomap_free(&m);
	ck_assert_ptr_null(m.bucket);
	ck_assert_uint_eq(m.nbucket, 0);
}
END_TEST

/* Take the next object before freeing the current one: every object is
 * freed once (ASan checks the rest). */
START_TEST(test_free_while_walking)
{
	struct kv_inomap m;
	size_t freed = 0;

	ck_assert_int_eq(kv_inomap_init(&m, 1), 0); /* one bucket, grown */
	for (uint64_t k = 1; k <= 3000; k++) {
		struct obj *o = calloc(1, sizeof(*o));
		ck_assert_ptr_nonnull(o);
		o->key = k * 7919;
		kv_inomap_add(&m, &o->node, o->key);
	}
	ck_assert_uint_eq(m.n, 3000);
	for (struct kv_inomap_node *node = kv_inomap_next(&m, NULL), *next; node; node = next) {
		next = kv_inomap_next(&m, node);
		free(obj_of(node));
		freed++;
	}
	ck_assert_uint_eq(freed, 3000);
	kv_inomap_free(&m);
	/* A map never made has nothing to find or walk, and frees. */
	ck_assert_ptr_null(kv_inomap_find(&m, 1));
	ck_assert_ptr_null(kv_inomap_next(&m, NULL));
	kv_inomap_free(&m);
}
END_TEST

START_TEST(test_take)
{
	static struct obj a[100], b[10];
	struct kv_inomap m, out;

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	ck_assert_int_eq(kv_inomap_init(&m, 8), 0);
	ck_assert_int_eq(kv_inomap_init(&out, 8), 0);
	for (size_t i = 0; i < 100; i++) {
		a[i].key = 1000 + i;
		a[i].in = 1;
		kv_inomap_add(&m, &a[i].node, a[i].key);
	}
	for (size_t i = 0; i < 10; i++)
		kv_inomap_add(&out, &b[i].node, 5 + i);
	kv_inomap_take(&m, &out); /* out's own objects are the caller's: b is static */
	ck_assert_uint_eq(m.n, 0);
	ck_assert_uint_eq(m.nbucket, 0);
	ck_assert_ptr_null(kv_inomap_find(&m, 1000));
	ck_assert_uint_eq(out.n, 100);
	ck_assert_ptr_null(kv_inomap_find(&out, 5));
	ck_assert_uint_eq(walk(&out, a, 100), 100);
	for (size_t i = 0; i < 100; i++)
		ck_assert_ptr_eq(obj_of(kv_inomap_find(&out, 1000 + i)), &a[i]);
	/* The emptied map works again once made again. */
	ck_assert_int_eq(kv_inomap_init(&m, 4), 0);
	kv_inomap_add(&m, &b[0].node, 77);
	ck_assert_ptr_eq(obj_of(kv_inomap_find(&m, 77)), &b[0]);
	kv_inomap_free(&m);
	kv_inomap_free(&out);
}
END_TEST

/* Dense inode numbers and strided keys (multiples of 2^12, 2^32, 2^48)
 * spread: no chain is long. */
START_TEST(test_spread)
{
	enum { N = 1 << 14 };
	static const unsigned stride[] = { 0, 12, 32, 48 };
	struct obj *v = calloc(N, sizeof(*v));

	ck_assert_ptr_nonnull(v);
	for (size_t s = 0; s < sizeof(stride) / sizeof(stride[0]); s++) {
		struct kv_inomap m;
		size_t longest = 0;

		ck_assert_int_eq(kv_inomap_init(&m, 1024), 0);
		for (uint64_t i = 0; i < N; i++)
			kv_inomap_add(&m, &v[i].node, (i + 1) << stride[s]);
		ck_assert_uint_eq(m.nbucket, N);
		for (size_t b = 0; b < m.nbucket; b++) {
			size_t len = 0;
			for (struct kv_inomap_node *node = m.bucket[b]; node; node = node->next)
				len++;
			if (len > longest)
				longest = len;
		}
		ck_assert_msg(longest <= 8, "stride 2^%u: a chain of %zu", stride[s], longest);
		kv_inomap_free(&m);
	}
	free(v);
}
END_TEST

static Suite *inomap_suite(void)
{
	Suite *s = suite_create("inomap");
	TCase *tc = kvtest_tcase(s, "inomap", 30);

	tcase_add_test(tc, test_random_against_reference);
	tcase_add_test(tc, test_free_while_walking);
	tcase_add_test(tc, test_take);
	tcase_add_test(tc, test_spread);
	return s;
}

int main(void) { return kvtest_run(inomap_suite, NULL); }
