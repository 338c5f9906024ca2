/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the small utilities of src/base/ that have no test file of
 * their own: the clocks (clock.h) and kv_grow (grow.h). */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "grow.h"
#include "kvtest.h"

START_TEST(test_clocks)
{
	struct timespec nap = { 0, 20 * 1000000L };
	int64_t before = (int64_t)time(NULL), now = kv_now_ns(), after = (int64_t)time(NULL);
	uint64_t m0, m1, m2;

	/* Wall time in nanoseconds since the epoch. */
	ck_assert_int_ge(now, before * 1000000000);
	ck_assert_int_lt(now, (after + 1) * 1000000000);
	/* Monotonic, and it advances across a sleep. */
	m0 = kv_mono_ns();
	m1 = kv_mono_ns();
	ck_assert_uint_ge(m1, m0);
	nanosleep(&nap, NULL);
	m2 = kv_mono_ns();
	ck_assert_uint_ge(m2 - m1, 20 * 1000000u);
}
END_TEST

struct pair {
	uint64_t a;
	uint32_t b;
};

/* Capacities double from KV_GROW_FIRST; what the array held stays. */
START_TEST(test_grow)
{
	struct pair *v = NULL, *before;
	size_t n = 0, cap = 0;

	ck_assert_int_eq(kv_grow(&v, &cap, 0, sizeof(*v)), 0); /* nothing needed */
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(cap, 0);
	for (; n < 1000; n++) {
		size_t was = cap;
		ck_assert_int_eq(kv_grow(&v, &cap, n + 1, sizeof(*v)), 0);
		ck_assert_uint_ge(cap, n + 1);
		ck_assert_uint_eq(cap, n < was ? was : was ? 2 * was : KV_GROW_FIRST);
		v[n] = (struct pair){ n * 3, (uint32_t)n };
	}
	ck_assert_uint_eq(cap, 1024);
	for (size_t i = 0; i < n; i++)
		ck_assert(v[i].a == i * 3 && v[i].b == i);
	/* Room already there: nothing moves. */
	before = v;
	ck_assert_int_eq(kv_grow(&v, &cap, 1024, sizeof(*v)), 0);
	ck_assert_ptr_eq(v, before);
	ck_assert_uint_eq(cap, 1024);
	/* Far more at once: the first doubling that holds it. */
	ck_assert_int_eq(kv_grow(&v, &cap, 5000, sizeof(*v)), 0);
	ck_assert_uint_eq(cap, 8192);
	for (size_t i = 0; i < n; i++)
		ck_assert(v[i].a == i * 3 && v[i].b == i);
	free(v);
}
END_TEST

/* A size that would overflow is refused with the array unchanged. */
START_TEST(test_grow_overflow)
{
	uint8_t *p = NULL;
	uint64_t *v = NULL;
	size_t cap = 0, pcap = 0;

	ck_assert_int_eq(kv_grow(&v, &cap, 10, sizeof(*v)), 0);
	v[9] = 99;
	ck_assert_int_eq(kv_grow(&v, &cap, SIZE_MAX, sizeof(*v)), -ENOMEM);
	ck_assert_int_eq(kv_grow(&v, &cap, SIZE_MAX / 2 + 2, sizeof(*v)), -ENOMEM);
	ck_assert_int_eq(kv_grow(&v, &cap, SIZE_MAX / 4, sizeof(*v)), -ENOMEM);
	ck_assert_uint_eq(cap, 16);
	ck_assert_uint_eq(v[9], 99);
	/* Bytes: the capacity is in elements of one byte. */
	ck_assert_int_eq(kv_grow(&p, &pcap, 300, 1), 0);
	ck_assert_uint_eq(pcap, 512);
	p[299] = 1;
	free(p);
	free(v);
}
END_TEST

static Suite *base_suite(void)
{
	Suite *s = suite_create("base");
	TCase *tc = kvtest_tcase(s, "base", 30);

	tcase_add_test(tc, test_clocks);
	tcase_add_test(tc, test_grow);
	tcase_add_test(tc, test_grow_overflow);
	return s;
}

int main(void) { return kvtest_run(base_suite, NULL); }
