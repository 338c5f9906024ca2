/* Unit tests of the small utilities of src/base/ that have no test file of
 * their own: the clocks (clock.h). */
#include <check.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
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

static Suite *base_suite(void)
{
	Suite *s = suite_create("base");
	TCase *tc = kvtest_tcase(s, "base", 30);

	tcase_add_test(tc, test_clocks);
	return s;
}

int main(void)
{
	return kvtest_run(base_suite, NULL);
}
