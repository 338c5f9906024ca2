/* SPDX-License-Identifier: Apache-2.0 */
/* kvtest.h: helpers shared by the Check unit tests in tests/unit.
 *
 * Header only: everything here is a static inline function or a static
 * variable, so each test binary compiles what it uses and needs no extra
 * source file. A test file includes it after <check.h> and keeps only its
 * own tests and the helpers no other file needs.
 *
 * Running a suite
 *   kvtest_run(make_suite, name)   The whole of main(): builds the suite,
 *       runs it (CK_NORMAL) and returns EXIT_SUCCESS or EXIT_FAILURE. With
 *       a name ("store"), it first creates the temporary root
 *       /tmp/kvfs-unit-<name>-XXXXXX and, unless KVFS_TEST_VERBOSE is set,
 *       sends stderr (kvfs's log) to <root>/kvfs.log: these tests provoke
 *       many errors on purpose. Sanitizer reports go to stdout. After
 *       the run, lines of the log that are not kvfs's (an
 *       UndefinedBehaviorSanitizer report, say) are shown, the number of
 *       hidden kvfs lines is told if a test failed, and the root is
 *       removed. With name NULL there is no root and stderr is left alone.
 *   kvtest_tcase(s, name, timeout) A new test case, already added to s;
 *       timeout in seconds, 0 for Check's default.
 *
 * Temporary files (only with a named kvtest_run)
 *   kvtest_root                     The run's temporary root.
 *   kvtest_new_dir(buf, len)        Creates a fresh directory under the
 *       root and writes its path to buf; fails the test if it cannot.
 *   kvtest_new_path(buf, len, leaf) "<fresh directory>/<leaf>"; leaf itself
 *       is not created.
 *   kvtest_count_entries(dir, keep) Entries of dir other than "." and ".."
 *       whose name keep() accepts (all with keep NULL); fails the test if
 *       dir cannot be opened.
 *
 * Test data
 *   rng_state, rnd()                Deterministic PRNG (xorshift64*), so
 *       failures reproduce. One state per binary, 0 until seeded: main()
 *       or a test assigns rng_state before the first rnd(). (Short names,
 *       as test bodies call them a lot.)
 *   fill_random(p, n)               n random bytes (incompressible).
 *   fill_fp16like(p, n)             n compressible bytes shaped like fp16
 *       values: small random low bytes, high bytes 0x38..0x3b.
 *   kvtest_read_file(path, &n)      The whole file in a malloc'd buffer
 *       (one spare byte, so an empty file works too), or NULL.
 *   kvtest_slurp(path, &n)          The same, failing the test if it
 *       cannot be read.
 *   kvtest_load_kv(rel, &n)         A file of the real fp16 KV data set,
 *       rel relative to the data set (e.g. "gpl3/layer0.v.f16"), from
 *       $KV_DATA, tests/data/kv next to this header, or the shared copy;
 *       NULL if none is readable.
 */
#ifndef KVFS_TESTS_UNIT_KVTEST_H
#define KVFS_TESTS_UNIT_KVTEST_H

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- PRNG and payloads ---- */

static uint64_t rng_state;

static inline uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static inline void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rnd() >> 56);
}

static inline void fill_fp16like(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = i & 1 ? (uint8_t)(0x38 + (rnd() >> 62)) : (uint8_t)(rnd() >> 60);
}

/* ---- files ---- */

static inline uint8_t *kvtest_read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = len < 0 ? NULL : malloc((size_t)len + 1);
	if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
		fclose(f);
		*n = (size_t)len;
		return buf;
	}
	free(buf);
	fclose(f);
	return NULL;
}

static inline uint8_t *kvtest_slurp(const char *path, size_t *n)
{
	uint8_t *buf = kvtest_read_file(path, n);

	ck_assert_msg(buf != NULL, "cannot read %s", path);
	return buf;
}

static inline uint8_t *kvtest_load_kv(const char *rel, size_t *n)
{
	char paths[3][4352], here[4096];
	const char *env = getenv("KV_DATA");
	int np = 0;

	if (env)
		snprintf(paths[np++], sizeof(paths[0]), "%s/%s", env, rel);
	snprintf(here, sizeof(here), "%s", __FILE__);
	snprintf(paths[np++], sizeof(paths[0]), "%s/../data/kv/%s", dirname(here), rel);
	snprintf(paths[np++], sizeof(paths[0]), "/work/shared/data/kv/stories260k/%s", rel);
	for (int i = 0; i < np; i++) {
		uint8_t *buf = kvtest_read_file(paths[i], n);
		if (buf)
			return buf;
	}
	return NULL;
}

/* ---- temporary root ---- */

static char kvtest_root[64];

static inline void kvtest_new_dir(char *buf, size_t len)
{
	ck_assert_msg(kvtest_root[0], "no temporary root: kvtest_run was given no name");
	snprintf(buf, len, "%s/XXXXXX", kvtest_root);
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

static inline void kvtest_new_path(char *buf, size_t len, const char *leaf)
{
	char dir[512];

	kvtest_new_dir(dir, sizeof(dir));
	snprintf(buf, len, "%s/%s", dir, leaf);
}

static inline int kvtest_count_entries(const char *dir, int (*keep)(const char *name))
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!keep || keep(e->d_name));
	closedir(d);
	return n;
}

static inline int kvtest_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void kvtest_rm_rf(const char *path)
{
	nftw(path, kvtest_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- kvfs log to a file ---- */

extern void __sanitizer_set_report_fd(void *fd) __attribute__((weak));
static int kvtest_quiet_fd; /* the real stderr while quiet, else 0 */

static inline void kvtest_quiet_stderr(void)
{
	char path[600];
	int keep, fd;

	if (getenv("KVFS_TEST_VERBOSE"))
		return;
	snprintf(path, sizeof(path), "%s/kvfs.log", kvtest_root);
	keep = dup(2);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (keep < 0 || fd < 0)
		return;
	fflush(stderr);
	dup2(fd, 2);
	dup2(keep, fd); /* fd now names the real stderr */
	close(keep);
	/* Sanitizer reports go to stdout: in a forked child (Check runs each
	 * test in one) a sanitizer replaces any descriptor but 1 and 2 with a
	 * file named .PID in the working directory. */
	if (__sanitizer_set_report_fd)
		__sanitizer_set_report_fd((void *)(intptr_t)1);
	kvtest_quiet_fd = fd;
}

static inline void kvtest_show_log(int failed)
{
	char path[600], line[2048];
	FILE *f, *out;
	int hidden = 0;

	if (!kvtest_quiet_fd)
		return;
	fflush(stderr);
	dup2(kvtest_quiet_fd, 2);
	if (__sanitizer_set_report_fd) /* reports at exit (leaks) */
		__sanitizer_set_report_fd((void *)(intptr_t)2);
	close(kvtest_quiet_fd);
	snprintf(path, sizeof(path), "%s/kvfs.log", kvtest_root);
	f = fopen(path, "r");
	if (!f)
		return;
	out = failed ? stdout : stderr;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "kvfs: ", 6))
			hidden++;
		else
			fputs(line, stderr);
	}
	fclose(f);
	if (failed && hidden)
		fprintf(out, "(%d kvfs log lines hidden; KVFS_TEST_VERBOSE=1 shows them)\n", hidden);
}

/* ---- running ---- */

static inline TCase *kvtest_tcase(Suite *s, const char *name, int timeout)
{
	TCase *tc = tcase_create(name);

	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	suite_add_tcase(s, tc);
	return tc;
}

static inline int kvtest_run(Suite *(*make_suite)(void), const char *name)
{
	SRunner *sr;
	int failed;

	if (name) {
		snprintf(kvtest_root, sizeof(kvtest_root), "/tmp/kvfs-unit-%s-XXXXXX", name);
		if (!mkdtemp(kvtest_root)) {
			perror("mkdtemp");
			return EXIT_FAILURE;
		}
		kvtest_quiet_stderr();
	}
	sr = srunner_create(make_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (name) {
		kvtest_show_log(failed);
		kvtest_rm_rf(kvtest_root);
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
