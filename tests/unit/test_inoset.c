/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_inoset (src/base/inoset.h): membership against a reference
 * bitmap through random adds and deletes (every member stays reachable as
 * the buckets grow), iteration, take, and inode 0. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inoset.h"
#include "kvtest.h"

/* Members seen by iteration, each checked to be a member. */
static size_t members(const struct kv_inoset *s)
{
	size_t n = 0;

	for (uint64_t i = kv_inoset_next(s, 0); i; i = kv_inoset_next(s, i)) {
		ck_assert_int_eq(kv_inoset_has(s, i), 1);
		n++;
	}
	return n;
}

START_TEST(test_random_against_bitmap)
{
	enum { RANGE = 5000, STEPS = 200000 };
	static uint8_t ref[RANGE + 1];
	struct kv_inoset s = { 0 };
	size_t n = 0;

	memset(ref, 0, sizeof(ref));
	srand(12345);
	for (int step = 0; step < STEPS; step++) {
		/* Dense small numbers collide in runs, as inode numbers do. */
		uint64_t ino = 1 + (uint64_t)(rand() % RANGE);
		if (rand() % 3) {
			ck_assert_int_eq(kv_inoset_add(&s, ino), 0);
			n += !ref[ino];
			ref[ino] = 1;
		} else {
			ck_assert_int_eq(kv_inoset_del(&s, ino), ref[ino]);
			n -= ref[ino];
			ref[ino] = 0;
		}
		ck_assert_uint_eq(kv_inoset_count(&s), n);
		if (step % 10000 == 0)
			for (uint64_t i = 1; i <= RANGE; i++)
				ck_assert_int_eq(kv_inoset_has(&s, i), ref[i]);
	}
	for (uint64_t i = 1; i <= RANGE; i++)
		ck_assert_int_eq(kv_inoset_has(&s, i), ref[i]);
	ck_assert_uint_eq(members(&s), n);
	ck_assert_uint_le(kv_inoset_count(&s), s.m.nbucket); /* the buckets grew */
	kv_inoset_free(&s);
}
END_TEST

START_TEST(test_take_and_zero)
{
	struct kv_inoset s = { 0 }, out = { 0 };

	ck_assert_int_eq(kv_inoset_has(&s, 7), 0);
	ck_assert_int_eq(kv_inoset_del(&s, 7), 0);
	ck_assert_int_eq(kv_inoset_add(&s, 0), 0);
	ck_assert_uint_eq(kv_inoset_count(&s), 0);
	ck_assert_uint_eq(kv_inoset_next(&s, 0), 0);
	for (uint64_t i = 1; i <= 1000; i++)
		ck_assert_int_eq(kv_inoset_add(&s, i * 1000003), 0);
	ck_assert_int_eq(kv_inoset_add(&s, 5 * 1000003), 0); /* already in */
	ck_assert_uint_eq(kv_inoset_count(&s), 1000);
	ck_assert_int_eq(kv_inoset_add(&out, 42), 0);
	kv_inoset_take(&s, &out);
	ck_assert_uint_eq(kv_inoset_count(&s), 0);
	ck_assert_int_eq(kv_inoset_has(&s, 1000003), 0);
	ck_assert_uint_eq(kv_inoset_count(&out), 1000);
	ck_assert_int_eq(kv_inoset_has(&out, 42), 0); /* out was emptied first */
	ck_assert_uint_eq(members(&out), 1000);
	for (uint64_t i = 1; i <= 1000; i++)
		ck_assert_int_eq(kv_inoset_has(&out, i * 1000003), 1);
	/* The emptied set works again. */
	ck_assert_int_eq(kv_inoset_add(&s, 3), 0);
	ck_assert_int_eq(kv_inoset_has(&s, 3), 1);
	kv_inoset_free(&s);
	kv_inoset_free(&out);
}
END_TEST

static Suite *inoset_suite(void)
{
	Suite *s = suite_create("inoset");
	TCase *tc = kvtest_tcase(s, "inoset", 30);

	tcase_add_test(tc, test_random_against_bitmap);
	tcase_add_test(tc, test_take_and_zero);
	return s;
}

int main(void) { return kvtest_run(inoset_suite, NULL); }
