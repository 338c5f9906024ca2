/* SPDX-License-Identifier: Apache-2.0 */
/* kvtest_corrupt.h: damage an index file as a bad disk block would, for the
 * tests of what kvfs does with a damaged index (issue 12: errors must be
 * EIO, never "no such entry" or an empty directory). Header only, like
 * kvtest.h, which a test file includes first.
 *
 *   kvtest_corrupt_pages(db, names)  With no connection open on db: copies
 *       the write-ahead log into the file, then overwrites the root page of
 *       each table or index in names (a NULL-terminated list of
 *       sqlite_master names) with 0xff bytes, an invalid page type. Fails
 *       the test if a name is not in the schema.
 */
#ifndef KVFS_TESTS_UNIT_KVTEST_CORRUPT_H
#define KVFS_TESTS_UNIT_KVTEST_CORRUPT_H

#include <check.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int64_t kvtest_sql_int(sqlite3 *db, const char *text, const char *arg)
{
	sqlite3_stmt *s;
	int64_t v = 0;

	ck_assert_int_eq(sqlite3_prepare_v2(db, text, -1, &s, NULL), SQLITE_OK);
	if (arg)
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static inline void kvtest_corrupt_pages(const char *path, const char *const *names)
{
	int64_t psize, root[16];
	size_t n = 0;
	uint8_t *junk;
	sqlite3 *db;
	int fd;

	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
			 SQLITE_OK);
	psize = kvtest_sql_int(db, "PRAGMA page_size", NULL);
	for (; names[n]; n++) {
		ck_assert_uint_lt(n, 16);
		root[n] = kvtest_sql_int(db, "SELECT rootpage FROM sqlite_master WHERE name=?1",
					 names[n]);
		ck_assert_msg(root[n] > 1, "%s: no root page for %s", path, names[n]);
	}
	sqlite3_close(db);
	ck_assert_int_gt(psize, 0);
	junk = malloc((size_t)psize);
	ck_assert_ptr_nonnull(junk);
	memset(junk, 0xff, (size_t)psize);
	fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(pwrite(fd, junk, (size_t)psize, (off_t)((root[i] - 1) * psize)),
				 psize);
	ck_assert_int_eq(fsync(fd), 0);
	close(fd);
	free(junk);
}

#endif
