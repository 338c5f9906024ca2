/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_index (src/store/index.h): the namespace (create, lookup,
 * remove, rename, readdir), chunk lists, orphans, xattrs, statistics,
 * persistence, and refusal of files that are not kvfs indexes. */
#include <check.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "index.h"
#include "kvtest.h"
#include "kvtest_corrupt.h"

/* A fresh directory; *db gets the index path inside it. */
static void new_dir(char *dir, size_t len, char *db, size_t dblen)
{
	kvtest_new_dir(dir, len);
	snprintf(db, dblen, "%s/kvfs.db", dir);
}

static struct kv_index *open_ix(const char *db)
{
	struct kv_index *ix = NULL;
	char err[512] = "";

	ck_assert_msg(kv_index_open(db, 1, &ix, err, sizeof(err)) == 0, "open: %s", err);
	ck_assert_ptr_nonnull(ix);
	return ix;
}

/* Per-test index in its own directory. */
static char T_dir[512], T_db[600];
static struct kv_index *fresh(void)
{
	new_dir(T_dir, sizeof(T_dir), T_db, sizeof(T_db));
	return open_ix(T_db);
}

static const int64_t T0 = 1700000000000000000LL;

static struct kv_attr mk(struct kv_index *ix, uint64_t parent, const char *name, uint32_t mode,
			 const char *target)
{
	struct kv_attr a;

	memset(&a, 0, sizeof(a));
	a.mode = mode;
	a.uid = 1000;
	a.gid = 100;
	a.atime = a.mtime = a.ctime = T0;
	ck_assert_msg(kv_index_create(ix, parent, name, strlen(name), &a, target) == 0, "create %s",
		      name);
	ck_assert_uint_gt(a.ino, KV_ROOT_INO);
	return a;
}
#define mkfile(ix, p, n) mk(ix, p, n, S_IFREG | 0644, NULL)
#define mkdirx(ix, p, n) mk(ix, p, n, S_IFDIR | 0755, NULL)

static struct kv_attr attr(struct kv_index *ix, uint64_t ino)
{
	struct kv_attr a;

	ck_assert_msg(kv_index_getattr(ix, ino, &a) == 0, "getattr %llu", (unsigned long long)ino);
	return a;
}

static int lookup(struct kv_index *ix, uint64_t parent, const char *name, struct kv_attr *a)
{
	struct kv_attr tmp;

	return kv_index_lookup(ix, parent, name, strlen(name), a ? a : &tmp);
}

static uint64_t ino_of(struct kv_index *ix, uint64_t parent, const char *name)
{
	struct kv_attr a;

	ck_assert_msg(lookup(ix, parent, name, &a) == 0, "lookup %s", name);
	return a.ino;
}

static uint32_t nlink_of(struct kv_index *ix, uint64_t ino) { return attr(ix, ino).nlink; }

static int rm(struct kv_index *ix, uint64_t parent, const char *name, int dir, uint64_t *ino,
	      uint32_t *nlink)
{
	uint64_t i;
	uint32_t n;

	return kv_index_remove(ix, parent, name, strlen(name), dir, T0 + 5, ino ? ino : &i,
			       nlink ? nlink : &n);
}

static int mv(struct kv_index *ix, uint64_t p, const char *name, uint64_t np, const char *newname,
	      unsigned flags, uint64_t *victim, uint32_t *vnlink)
{
	uint64_t v;
	uint32_t n;

	return kv_index_rename(ix, p, name, strlen(name), np, newname, strlen(newname), flags,
			       T0 + 9, victim ? victim : &v, vnlink ? vnlink : &n);
}

/* ---- opening ---- */

START_TEST(test_fresh_root)
{
	struct kv_index *ix = fresh();
	struct kv_attr r = attr(ix, KV_ROOT_INO);
	uint8_t id[16], zero[16] = { 0 };
	uint64_t parent = 0;

	ck_assert_uint_eq(r.ino, KV_ROOT_INO);
	ck_assert(S_ISDIR(r.mode));
	ck_assert_uint_eq(r.mode & 07777, 0755);
	ck_assert_uint_eq(r.nlink, 2);
	ck_assert_uint_eq(r.uid, getuid());
	ck_assert_uint_eq(r.gid, getgid());
	ck_assert_uint_eq(r.size, 0);
	ck_assert_int_gt(r.mtime, 0);
	ck_assert_int_eq(kv_index_user_version(ix),
			 kv_index_migrations[kv_index_nmigrations - 1].version);
	kv_index_store_id(ix, id);
	ck_assert(memcmp(id, zero, 16) != 0);
	ck_assert_int_eq(kv_index_parent(ix, KV_ROOT_INO, &parent), 0);
	ck_assert_uint_eq(parent, KV_ROOT_INO);
	ck_assert_int_eq(kv_index_getattr(ix, 2, &r), -ENOENT);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_store_ids_differ)
{
	struct kv_index *a = fresh(), *b = fresh();
	uint8_t ia[16], ib[16];

	kv_index_store_id(a, ia);
	kv_index_store_id(b, ib);
	ck_assert(memcmp(ia, ib, 16) != 0);
	kv_index_close(a);
	kv_index_close(b);
}
END_TEST

START_TEST(test_open_nocreate)
{
	char dir[512], db[600], err[512] = "";
	struct kv_index *ix = NULL;
	struct stat sb;

	new_dir(dir, sizeof(dir), db, sizeof(db));
	ck_assert_int_lt(kv_index_open(db, 0, &ix, err, sizeof(err)), 0);
	ck_assert(err[0] != 0);
	ck_assert_int_ne(stat(db, &sb), 0);
	ck_assert_int_lt(kv_index_check(db, err, sizeof(err)), 0);
	ck_assert_int_ne(stat(db, &sb), 0);
}
END_TEST

/* ---- create / lookup ---- */

START_TEST(test_create_lookup)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "file"), d = mkdirx(ix, 1, "dir"), l, g, x;
	char buf[64];
	uint64_t parent;

	l = mk(ix, 1, "link", S_IFLNK | 0777, "some/where/else");
	ck_assert_uint_eq(f.nlink, 1);
	ck_assert_uint_eq(d.nlink, 2);
	ck_assert_uint_eq(l.size, strlen("some/where/else"));
	ck_assert(f.ino != d.ino && d.ino != l.ino && f.ino != l.ino);

	ck_assert_int_eq(lookup(ix, 1, "file", &g), 0);
	ck_assert_uint_eq(g.ino, f.ino);
	ck_assert_uint_eq(g.mode, S_IFREG | 0644);
	ck_assert_uint_eq(g.uid, 1000);
	ck_assert_uint_eq(g.gid, 100);
	ck_assert_uint_eq(g.nlink, 1);
	ck_assert_uint_eq(g.size, 0);
	ck_assert_int_eq(g.atime, T0);
	ck_assert_int_eq(g.mtime, T0);
	ck_assert_int_eq(g.ctime, T0);
	ck_assert_int_eq(lookup(ix, 1, "dir", &g), 0);
	ck_assert_uint_eq(g.ino, d.ino);
	ck_assert(S_ISDIR(g.mode));
	ck_assert_uint_eq(g.nlink, 2);
	ck_assert_int_eq(lookup(ix, 1, "link", &g), 0);
	ck_assert(S_ISLNK(g.mode));
	ck_assert_uint_eq(g.size, 15);
	/* getattr agrees with lookup. */
	ck_assert_int_eq(lookup(ix, 1, "file", &g), 0);
	x = attr(ix, f.ino);
	ck_assert_uint_eq(x.ino, g.ino);
	ck_assert_uint_eq(x.mode, g.mode);
	ck_assert_uint_eq(x.nlink, g.nlink);
	ck_assert_int_eq(x.ctime, g.ctime);

	/* Root: one more subdirectory, touched at the child's ctime. */
	x = attr(ix, 1);
	ck_assert_uint_eq(x.nlink, 3);
	ck_assert_int_eq(x.mtime, T0);

	ck_assert_int_eq(kv_index_readlink(ix, l.ino, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "some/where/else");
	ck_assert_int_eq(kv_index_readlink(ix, l.ino, buf, 5), 0);
	ck_assert_str_eq(buf, "some");
	ck_assert_int_eq(kv_index_readlink(ix, f.ino, buf, sizeof(buf)), -EINVAL);

	/* Names are byte strings of the given length. */
	ck_assert_int_eq(kv_index_lookup(ix, 1, "filex", 4, &g), 0);
	ck_assert_uint_eq(g.ino, f.ino);
	ck_assert_int_eq(lookup(ix, 1, "fil", NULL), -ENOENT);
	ck_assert_int_eq(lookup(ix, 1, "File", NULL), -ENOENT);
	ck_assert_int_eq(lookup(ix, d.ino, "file", NULL), -ENOENT);
	{
		struct kv_attr z;
		memset(&z, 0, sizeof(z));
		z.mode = S_IFREG | 0600;
		ck_assert_int_eq(kv_index_create(ix, 1, "a\0b", 3, &z, NULL), 0);
		ck_assert_int_eq(kv_index_lookup(ix, 1, "a\0b", 3, &g), 0);
		ck_assert_uint_eq(g.ino, z.ino);
		ck_assert_int_eq(kv_index_lookup(ix, 1, "a", 1, &g), -ENOENT);
	}

	/* Nested. */
	g = mkfile(ix, d.ino, "inner");
	ck_assert_int_eq(kv_index_parent(ix, d.ino, &parent), 0);
	ck_assert_uint_eq(parent, 1);
	ck_assert_uint_eq(ino_of(ix, d.ino, "inner"), g.ino);
	ck_assert_uint_eq(nlink_of(ix, d.ino), 2); /* files do not count */
	kv_index_close(ix);
}
END_TEST

START_TEST(test_create_eexist)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "x"), a, r0 = attr(ix, 1);
	struct kv_index_stats st;

	memset(&a, 0, sizeof(a));
	a.mode = S_IFDIR | 0755;
	ck_assert_int_eq(kv_index_create(ix, 1, "x", 1, &a, NULL), -EEXIST);
	a.mode = S_IFREG | 0644;
	ck_assert_int_eq(kv_index_create(ix, 1, "x", 1, &a, NULL), -EEXIST);
	a.mode = S_IFLNK | 0777;
	ck_assert_int_eq(kv_index_create(ix, 1, "x", 1, &a, "t"), -EEXIST);
	/* Nothing changed: same inode, no stray inode rows, root untouched. */
	ck_assert_uint_eq(ino_of(ix, 1, "x"), f.ino);
	ck_assert_int_eq(kv_index_stats(ix, &st), 0);
	ck_assert_uint_eq(st.files, 1);
	ck_assert_uint_eq(st.dirs, 1);
	ck_assert_uint_eq(attr(ix, 1).nlink, r0.nlink);
	kv_index_close(ix);
}
END_TEST

/* ---- remove ---- */

START_TEST(test_remove)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f"), d = mkdirx(ix, 1, "d"), e = mkdirx(ix, 1, "e");
	uint64_t ino = 0;
	uint32_t nlink = 99;

	mkfile(ix, d.ino, "child");
	ck_assert_uint_eq(nlink_of(ix, 1), 4);
	ck_assert_int_eq(rm(ix, 1, "f", 1, NULL, NULL), -ENOTDIR);
	ck_assert_int_eq(rm(ix, 1, "d", 0, NULL, NULL), -EISDIR);
	ck_assert_int_eq(rm(ix, 1, "d", 1, NULL, NULL), -ENOTEMPTY);
	ck_assert_int_eq(rm(ix, 1, "nope", 0, NULL, NULL), -ENOENT);
	ck_assert_int_eq(rm(ix, 1, "nope", 1, NULL, NULL), -ENOENT);
	/* Failed removals changed nothing. */
	ck_assert_uint_eq(ino_of(ix, 1, "f"), f.ino);
	ck_assert_uint_eq(ino_of(ix, 1, "d"), d.ino);
	ck_assert_uint_eq(nlink_of(ix, 1), 4);

	ck_assert_int_eq(rm(ix, 1, "f", 0, &ino, &nlink), 0);
	ck_assert_uint_eq(ino, f.ino);
	ck_assert_uint_eq(nlink, 0);
	ck_assert_int_eq(lookup(ix, 1, "f", NULL), -ENOENT);
	ck_assert_uint_eq(nlink_of(ix, f.ino), 0); /* row stays until dropped */
	ck_assert_int_eq(attr(ix, f.ino).ctime, T0 + 5);
	ck_assert_int_eq(attr(ix, 1).mtime, T0 + 5);

	ck_assert_int_eq(rm(ix, 1, "e", 1, &ino, &nlink), 0);
	ck_assert_uint_eq(ino, e.ino);
	ck_assert_uint_eq(nlink, 0);
	ck_assert_uint_eq(nlink_of(ix, e.ino), 0);
	ck_assert_uint_eq(nlink_of(ix, 1), 3);

	ck_assert_int_eq(rm(ix, d.ino, "child", 0, NULL, NULL), 0);
	ck_assert_int_eq(rm(ix, 1, "d", 1, NULL, NULL), 0);
	ck_assert_uint_eq(nlink_of(ix, 1), 2);
	ck_assert_int_eq(rm(ix, 1, "d", 1, NULL, NULL), -ENOENT);
	kv_index_close(ix);
}
END_TEST

/* ---- rename ---- */

START_TEST(test_rename_plain)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "a");
	uint64_t victim = 7;
	uint32_t vn = 7;

	ck_assert_int_eq(mv(ix, 1, "a", 1, "b", 0, &victim, &vn), 0);
	ck_assert_uint_eq(victim, 0);
	ck_assert_uint_eq(vn, 0);
	ck_assert_int_eq(lookup(ix, 1, "a", NULL), -ENOENT);
	ck_assert_uint_eq(ino_of(ix, 1, "b"), f.ino);
	ck_assert_int_eq(attr(ix, f.ino).ctime, T0 + 9);
	ck_assert_int_eq(attr(ix, 1).mtime, T0 + 9);
	ck_assert_uint_eq(nlink_of(ix, 1), 2);
	ck_assert_uint_eq(nlink_of(ix, f.ino), 1);
	ck_assert_int_eq(mv(ix, 1, "a", 1, "c", 0, NULL, NULL), -ENOENT);
	/* Renaming onto itself is a no-op. */
	ck_assert_int_eq(mv(ix, 1, "b", 1, "b", 0, &victim, &vn), 0);
	ck_assert_uint_eq(victim, 0);
	ck_assert_uint_eq(ino_of(ix, 1, "b"), f.ino);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_rename_across_dirs)
{
	struct kv_index *ix = fresh();
	struct kv_attr d1 = mkdirx(ix, 1, "d1"), d2 = mkdirx(ix, 1, "d2");
	struct kv_attr sub = mkdirx(ix, d1.ino, "sub"), f = mkfile(ix, d1.ino, "f");
	uint64_t parent = 0;

	mkfile(ix, sub.ino, "deep");
	ck_assert_uint_eq(nlink_of(ix, d1.ino), 3);
	ck_assert_uint_eq(nlink_of(ix, d2.ino), 2);
	/* A directory moves: the parents' link counts follow. */
	ck_assert_int_eq(mv(ix, d1.ino, "sub", d2.ino, "moved", 0, NULL, NULL), 0);
	ck_assert_uint_eq(nlink_of(ix, d1.ino), 2);
	ck_assert_uint_eq(nlink_of(ix, d2.ino), 3);
	ck_assert_uint_eq(nlink_of(ix, 1), 4);
	ck_assert_uint_eq(nlink_of(ix, sub.ino), 2);
	ck_assert_int_eq(kv_index_parent(ix, sub.ino, &parent), 0);
	ck_assert_uint_eq(parent, d2.ino);
	ck_assert_uint_eq(ino_of(ix, d2.ino, "moved"), sub.ino);
	ck_assert_int_eq(lookup(ix, d1.ino, "sub", NULL), -ENOENT);
	ck_assert_int_ne(ino_of(ix, sub.ino, "deep"), 0);
	ck_assert_int_eq(attr(ix, d1.ino).mtime, T0 + 9);
	ck_assert_int_eq(attr(ix, d2.ino).mtime, T0 + 9);
	/* A file moves: no link count changes. */
	ck_assert_int_eq(mv(ix, d1.ino, "f", d2.ino, "f", 0, NULL, NULL), 0);
	ck_assert_uint_eq(nlink_of(ix, d1.ino), 2);
	ck_assert_uint_eq(nlink_of(ix, d2.ino), 3);
	ck_assert_uint_eq(nlink_of(ix, f.ino), 1);
	ck_assert_uint_eq(ino_of(ix, d2.ino, "f"), f.ino);
	/* Up to the root. */
	ck_assert_int_eq(mv(ix, d2.ino, "moved", 1, "top", 0, NULL, NULL), 0);
	ck_assert_uint_eq(nlink_of(ix, d2.ino), 2);
	ck_assert_uint_eq(nlink_of(ix, 1), 5);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_rename_replace)
{
	struct kv_index *ix = fresh();
	struct kv_attr x = mkfile(ix, 1, "x"), y = mkfile(ix, 1, "y");
	struct kv_attr da = mkdirx(ix, 1, "da"), db = mkdirx(ix, 1, "db"), dc = mkdirx(ix, 1, "dc");
	struct kv_attr p = mkdirx(ix, 1, "p");
	uint64_t victim;
	uint32_t vn;

	mkfile(ix, dc.ino, "keep");
	ck_assert_uint_eq(nlink_of(ix, 1), 6);

	/* File over file. */
	ck_assert_int_eq(mv(ix, 1, "x", 1, "y", 0, &victim, &vn), 0);
	ck_assert_uint_eq(victim, y.ino);
	ck_assert_uint_eq(vn, 0);
	ck_assert_uint_eq(ino_of(ix, 1, "y"), x.ino);
	ck_assert_int_eq(lookup(ix, 1, "x", NULL), -ENOENT);
	ck_assert_uint_eq(nlink_of(ix, y.ino), 0);
	ck_assert_uint_eq(nlink_of(ix, x.ino), 1);

	/* Directory over empty directory. */
	ck_assert_int_eq(mv(ix, 1, "da", 1, "db", 0, &victim, &vn), 0);
	ck_assert_uint_eq(victim, db.ino);
	ck_assert_uint_eq(vn, 0);
	ck_assert_uint_eq(ino_of(ix, 1, "db"), da.ino);
	ck_assert_uint_eq(nlink_of(ix, db.ino), 0);
	ck_assert_uint_eq(nlink_of(ix, 1), 5);

	/* Directory over empty directory in another parent. */
	mkdirx(ix, p.ino, "empty");
	ck_assert_uint_eq(nlink_of(ix, p.ino), 3);
	ck_assert_int_eq(mv(ix, 1, "db", p.ino, "empty", 0, &victim, &vn), 0);
	ck_assert_uint_eq(nlink_of(ix, p.ino), 3);
	ck_assert_uint_eq(nlink_of(ix, 1), 4);
	ck_assert_uint_eq(ino_of(ix, p.ino, "empty"), da.ino);

	/* Non-empty target, and type mismatches: refused, nothing changes. */
	mkfile(ix, 1, "file");
	ck_assert_int_eq(mv(ix, p.ino, "empty", 1, "dc", 0, &victim, &vn), -ENOTEMPTY);
	ck_assert_uint_eq(victim, 0);
	ck_assert_uint_eq(ino_of(ix, 1, "dc"), dc.ino);
	ck_assert_uint_eq(ino_of(ix, p.ino, "empty"), da.ino);
	ck_assert_int_eq(mv(ix, 1, "file", 1, "dc", 0, NULL, NULL), -EISDIR);
	ck_assert_int_eq(mv(ix, 1, "dc", 1, "file", 0, NULL, NULL), -ENOTDIR);
	ck_assert_uint_eq(nlink_of(ix, 1), 4);
	ck_assert_uint_eq(nlink_of(ix, p.ino), 3);
	ck_assert_uint_eq(nlink_of(ix, dc.ino), 2);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_rename_noreplace)
{
	struct kv_index *ix = fresh();
	struct kv_attr a = mkfile(ix, 1, "a"), b = mkfile(ix, 1, "b");

	ck_assert_int_eq(mv(ix, 1, "a", 1, "b", RENAME_NOREPLACE, NULL, NULL), -EEXIST);
	ck_assert_uint_eq(ino_of(ix, 1, "a"), a.ino);
	ck_assert_uint_eq(ino_of(ix, 1, "b"), b.ino);
	ck_assert_int_eq(mv(ix, 1, "a", 1, "c", RENAME_NOREPLACE, NULL, NULL), 0);
	ck_assert_uint_eq(ino_of(ix, 1, "c"), a.ino);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_rename_exchange)
{
	struct kv_index *ix = fresh();
	struct kv_attr p = mkfile(ix, 1, "p"), q = mkfile(ix, 1, "q");
	struct kv_attr A = mkdirx(ix, 1, "A"), B = mkdirx(ix, 1, "B");
	struct kv_attr X = mkdirx(ix, A.ino, "x"), Y = mkfile(ix, B.ino, "y");
	uint64_t victim, parent;
	uint32_t vn;

	ck_assert_int_eq(mv(ix, 1, "p", 1, "q", RENAME_EXCHANGE, &victim, &vn), 0);
	ck_assert_uint_eq(victim, 0);
	ck_assert_uint_eq(ino_of(ix, 1, "p"), q.ino);
	ck_assert_uint_eq(ino_of(ix, 1, "q"), p.ino);
	ck_assert_uint_eq(nlink_of(ix, p.ino), 1);
	ck_assert_uint_eq(nlink_of(ix, q.ino), 1);

	/* Directory A/x <-> file B/y: the directory changes parent. */
	ck_assert_uint_eq(nlink_of(ix, A.ino), 3);
	ck_assert_uint_eq(nlink_of(ix, B.ino), 2);
	ck_assert_int_eq(mv(ix, A.ino, "x", B.ino, "y", RENAME_EXCHANGE, NULL, NULL), 0);
	ck_assert_uint_eq(ino_of(ix, A.ino, "x"), Y.ino);
	ck_assert_uint_eq(ino_of(ix, B.ino, "y"), X.ino);
	ck_assert_uint_eq(nlink_of(ix, A.ino), 2);
	ck_assert_uint_eq(nlink_of(ix, B.ino), 3);
	ck_assert_int_eq(kv_index_parent(ix, X.ino, &parent), 0);
	ck_assert_uint_eq(parent, B.ino);

	/* Exchange with a missing entry. */
	ck_assert_int_eq(mv(ix, 1, "p", 1, "missing", RENAME_EXCHANGE, NULL, NULL), -ENOENT);
	ck_assert_uint_eq(ino_of(ix, 1, "p"), q.ino);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_rename_into_own_subtree)
{
	struct kv_index *ix = fresh();
	struct kv_attr t = mkdirx(ix, 1, "t"), u = mkdirx(ix, t.ino, "u"),
		       v = mkdirx(ix, u.ino, "v");
	struct kv_attr o = mkdirx(ix, 1, "o");

	ck_assert_int_eq(mv(ix, 1, "t", v.ino, "t2", 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mv(ix, 1, "t", u.ino, "t2", 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mv(ix, 1, "t", t.ino, "t2", 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mv(ix, t.ino, "u", v.ino, "u2", 0, NULL, NULL), -EINVAL);
	/* Exchanging a directory with one of its descendants. */
	ck_assert_int_eq(mv(ix, u.ino, "v", 1, "t", RENAME_EXCHANGE, NULL, NULL), -EINVAL);
	ck_assert_int_eq(mv(ix, 1, "t", u.ino, "v", RENAME_EXCHANGE, NULL, NULL), -EINVAL);
	/* Nothing moved. */
	ck_assert_uint_eq(ino_of(ix, 1, "t"), t.ino);
	ck_assert_uint_eq(ino_of(ix, t.ino, "u"), u.ino);
	ck_assert_uint_eq(ino_of(ix, u.ino, "v"), v.ino);
	/* Sideways moves are fine. */
	ck_assert_int_eq(mv(ix, u.ino, "v", o.ino, "v", 0, NULL, NULL), 0);
	ck_assert_int_eq(mv(ix, 1, "t", o.ino, "t", 0, NULL, NULL), 0);
	ck_assert_uint_eq(ino_of(ix, o.ino, "t"), t.ino);
	kv_index_close(ix);
}
END_TEST

/* ---- readdir ---- */

struct listing {
	char names[200][32];
	uint64_t inos[200];
	uint64_t next[200];
	int n, limit;
};

static int collect(void *arg, const char *name, size_t len, const struct kv_attr *a, uint64_t next)
{
	struct listing *l = arg;

	if (l->n >= l->limit)
		return 1; /* full: this entry is not taken */
	ck_assert_uint_lt(len, 32);
	memcpy(l->names[l->n], name, len);
	l->names[l->n][len] = 0;
	l->inos[l->n] = a->ino;
	l->next[l->n] = next;
	l->n++;
	return 0;
}

static void list(struct kv_index *ix, uint64_t dir, uint64_t off, int limit, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	l->limit = limit;
	ck_assert_int_eq(kv_index_readdir(ix, dir, off, collect, l), 0);
}

START_TEST(test_readdir)
{
	struct kv_index *ix = fresh();
	struct kv_attr d = mkdirx(ix, 1, "d"), e = mkdirx(ix, 1, "e");
	uint64_t inos[50];
	struct listing l, all;
	char seen[60] = { 0 };
	uint64_t off = 0;
	int got = 0;

	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%02d", i);
		inos[i] = (i % 5 ? mkfile(ix, d.ino, name) : mkdirx(ix, d.ino, name)).ino;
	}
	list(ix, e.ino, 0, 200, &l);
	ck_assert_int_eq(l.n, 0);

	/* One pass: every entry once, in creation order, with its inode. */
	list(ix, d.ino, 0, 200, &all);
	ck_assert_int_eq(all.n, 50);
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%02d", i);
		ck_assert_str_eq(all.names[i], name);
		ck_assert_uint_eq(all.inos[i], inos[i]);
		ck_assert(all.next[i] != 0);
		ck_assert(i == 0 || all.next[i] > all.next[i - 1]);
	}

	/* Pages of 7, each resumed from the last taken entry's offset. */
	while (got < 50) {
		list(ix, d.ino, off, 7, &l);
		ck_assert_int_gt(l.n, 0);
		for (int i = 0; i < l.n; i++) {
			int k = atoi(l.names[i] + 1);
			ck_assert_int_eq(seen[k], 0);
			seen[k] = 1;
			ck_assert_uint_eq(l.inos[i], inos[k]);
		}
		got += l.n;
		off = l.next[l.n - 1];
	}
	list(ix, d.ino, off, 7, &l);
	ck_assert_int_eq(l.n, 0);

	/* Resuming after entries were removed or added meanwhile: removed ones
	 * are skipped, nothing else is lost or repeated, new ones come last. */
	list(ix, d.ino, 0, 10, &l);
	off = l.next[9];
	ck_assert_int_eq(rm(ix, d.ino, "n05", 1, NULL, NULL), 0); /* already listed */
	ck_assert_int_eq(rm(ix, d.ino, "n11", 0, NULL, NULL), 0); /* not yet */
	mkfile(ix, d.ino, "zz");
	list(ix, d.ino, off, 200, &l);
	ck_assert_int_eq(l.n, 40);
	ck_assert_str_eq(l.names[0], "n10");
	ck_assert_str_eq(l.names[1], "n12");
	ck_assert_str_eq(l.names[39], "zz");
	kv_index_close(ix);
}
END_TEST

/* ---- chunks ---- */

struct chunks {
	struct kv_chunk c[64];
	int n, stop_after;
};

static int chunk_cb(void *arg, const struct kv_chunk *c)
{
	struct chunks *l = arg;

	if (l->n < 64)
		l->c[l->n] = *c;
	l->n++;
	return l->stop_after && l->n >= l->stop_after ? l->stop_after < 0 ? -1 : 1 : 0;
}

static struct chunks get_chunks(struct kv_index *ix, uint64_t ino)
{
	struct chunks l;

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(kv_index_chunks(ix, ino, chunk_cb, &l), 0);
	return l;
}

static struct kv_chunk ch(uint64_t idx, uint32_t seg, uint64_t off, uint32_t len)
{
	return (struct kv_chunk){ idx, { seg, len, off }, 65536, KV_CODEC_LZ4 };
}

static void publish(struct kv_index *ix, struct kv_attr *a, uint64_t keep, const struct kv_chunk *c,
		    size_t n, uint64_t size, uint64_t stored)
{
	a->size = size;
	a->stored = stored;
	a->mtime = a->ctime = T0 + 100;
	ck_assert_int_eq(kv_index_publish(ix, a, keep, c, n, 0, NULL), 0);
}

START_TEST(test_publish_chunks)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f"), g = mkfile(ix, 1, "g"), a;
	struct kv_chunk c[4] = { ch(0, 1, 64, 1000), ch(1, 1, 1064, 2000), ch(2, 2, 64, 3000),
				 ch(3, 2, 3064, 500) };
	struct chunks l;

	publish(ix, &f, 0, c, 4, 4 * 65536 - 100, 6500);
	l = get_chunks(ix, f.ino);
	ck_assert_int_eq(l.n, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(l.c[i].idx, c[i].idx);
		ck_assert_uint_eq(l.c[i].loc.seg, c[i].loc.seg);
		ck_assert_uint_eq(l.c[i].loc.off, c[i].loc.off);
		ck_assert_uint_eq(l.c[i].loc.len, c[i].loc.len);
		ck_assert_uint_eq(l.c[i].raw, c[i].raw);
		ck_assert_uint_eq(l.c[i].codec, c[i].codec);
	}
	a = attr(ix, f.ino);
	ck_assert_uint_eq(a.size, 4 * 65536 - 100);
	ck_assert_uint_eq(a.stored, 6500);
	ck_assert_int_eq(a.mtime, T0 + 100);
	ck_assert_int_eq(get_chunks(ix, g.ino).n, 0);

	/* Replacing chunk 1 keeps the rest; chunks come back in index order. */
	{
		struct kv_chunk r[2] = { ch(5, 3, 64, 700), ch(1, 3, 764, 900) };
		publish(ix, &f, 0 + 6, r, 2, 6 * 65536, 7600);
	}
	l = get_chunks(ix, f.ino);
	ck_assert_int_eq(l.n, 5);
	ck_assert_uint_eq(l.c[0].idx, 0);
	ck_assert_uint_eq(l.c[1].idx, 1);
	ck_assert_uint_eq(l.c[1].loc.seg, 3);
	ck_assert_uint_eq(l.c[1].loc.off, 764);
	ck_assert_uint_eq(l.c[2].idx, 2);
	ck_assert_uint_eq(l.c[3].idx, 3);
	ck_assert_uint_eq(l.c[4].idx, 5);

	/* Truncation: keep=2 drops chunks 2.. before writing new ones. */
	{
		struct kv_chunk r = ch(2, 4, 64, 100);
		publish(ix, &f, 2, &r, 1, 2 * 65536 + 10, 2000);
	}
	l = get_chunks(ix, f.ino);
	ck_assert_int_eq(l.n, 3);
	ck_assert_uint_eq(l.c[2].idx, 2);
	ck_assert_uint_eq(l.c[2].loc.seg, 4);
	publish(ix, &f, 0, NULL, 0, 0, 0);
	ck_assert_int_eq(get_chunks(ix, f.ino).n, 0);
	ck_assert_uint_eq(attr(ix, f.ino).size, 0);

	/* Durable publishing works the same way. */
	f.size = 65536;
	f.stored = 1000;
	ck_assert_int_eq(kv_index_publish(ix, &f, 0, c, 1, 1, NULL), 0);
	ck_assert_int_eq(get_chunks(ix, f.ino).n, 1);

	/* The callback can stop the walk, and its error comes back. */
	publish(ix, &f, 0, c, 4, 4 * 65536, 6500);
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	ck_assert_int_eq(kv_index_chunks(ix, f.ino, chunk_cb, &l), 0);
	ck_assert_int_eq(l.n, 2);
	memset(&l, 0, sizeof(l));
	l.stop_after = -1;
	ck_assert_int_eq(kv_index_chunks(ix, f.ino, chunk_cb, &l), -1);
	kv_index_close(ix);
}
END_TEST

/* file.c publishes with keep == UINT64_MAX when nothing was truncated
 * (kv_inode.keep's "no truncation" value): no chunk may be dropped then. */
START_TEST(test_publish_keep_all)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f");
	struct kv_chunk c[4] = { ch(0, 1, 64, 1000), ch(1, 1, 1064, 2000), ch(2, 1, 3064, 3000),
				 ch(3, 1, 6064, 500) };
	struct kv_chunk r = ch(2, 1, 6564, 800);
	struct chunks l;

	publish(ix, &f, UINT64_MAX, c, 4, 4 * 65536, 6500);
	ck_assert_int_eq(get_chunks(ix, f.ino).n, 4);
	publish(ix, &f, UINT64_MAX, &r, 1, 4 * 65536, 4300);
	l = get_chunks(ix, f.ino);
	ck_assert_msg(l.n == 4, "publish of chunk 2 with keep=UINT64_MAX left %d chunk(s)", l.n);
	ck_assert_uint_eq(l.c[2].loc.off, 6564);
	/* Any keep beyond the last chunk keeps everything too. */
	publish(ix, &f, (uint64_t)INT64_MAX + 1, NULL, 0, 4 * 65536, 4300);
	ck_assert_int_eq(get_chunks(ix, f.ino).n, 4);
	kv_index_close(ix);
}
END_TEST

static void seg_cb(void *arg, uint32_t seg, uint64_t bytes)
{
	uint64_t *b = arg;

	b[seg < 8 ? seg : 0] += seg < 8 ? bytes : 1;
}

START_TEST(test_segments)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f"), g = mkfile(ix, 1, "g");
	struct kv_chunk c[3] = { ch(0, 1, 64, 1000), ch(1, 2, 64, 2000), ch(2, 1, 1064, 300) };
	struct kv_chunk d[2] = { ch(0, 2, 2064, 50), ch(1, 5, 64, 7) };
	uint64_t bytes[8] = { 0 };

	ck_assert_int_eq(kv_index_segments(ix, seg_cb, bytes), 0);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(bytes[i], 0);
	publish(ix, &f, 0, c, 3, 3 * 65536, 3300);
	publish(ix, &g, 0, d, 2, 2 * 65536, 57);
	ck_assert_int_eq(kv_index_segments(ix, seg_cb, bytes), 0);
	ck_assert_uint_eq(bytes[0], 0);
	ck_assert_uint_eq(bytes[1], 1300);
	ck_assert_uint_eq(bytes[2], 2050);
	ck_assert_uint_eq(bytes[3], 0);
	ck_assert_uint_eq(bytes[5], 7);
	kv_index_close(ix);
}
END_TEST

/* ---- orphans / drop ---- */

static void orphan_cb(void *arg, uint64_t ino)
{
	struct chunks *l = arg;

	if (l->n < 64)
		l->c[l->n].idx = ino;
	l->n++;
}

START_TEST(test_orphans_drop)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f"), g = mkfile(ix, 1, "g"), d = mkdirx(ix, 1, "d");
	struct kv_chunk c[3] = { ch(0, 1, 64, 1000), ch(1, 1, 1064, 2000), ch(2, 1, 3064, 3000) };
	struct chunks o, dropped;
	struct kv_index_stats st;
	char v[8];

	publish(ix, &f, 0, c, 3, 3 * 65536, 6000);
	publish(ix, &g, 0, c, 1, 65536, 1000);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.x", "1", 1, 0), 0);

	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(kv_index_orphans(ix, orphan_cb, &o), 0);
	ck_assert_int_eq(o.n, 0);

	ck_assert_int_eq(rm(ix, 1, "f", 0, NULL, NULL), 0);
	ck_assert_int_eq(rm(ix, 1, "d", 1, NULL, NULL), 0);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(kv_index_orphans(ix, orphan_cb, &o), 0);
	ck_assert_int_eq(o.n, 2);
	ck_assert((o.c[0].idx == f.ino && o.c[1].idx == d.ino) ||
		  (o.c[0].idx == d.ino && o.c[1].idx == f.ino));

	/* drop hands every chunk to the callback, then deletes all rows. */
	memset(&dropped, 0, sizeof(dropped));
	ck_assert_int_eq(kv_index_drop(ix, f.ino, chunk_cb, &dropped), 0);
	ck_assert_int_eq(dropped.n, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(dropped.c[i].idx, (uint64_t)i);
		ck_assert_uint_eq(dropped.c[i].loc.off, c[i].loc.off);
	}
	ck_assert_int_eq(kv_index_getattr(ix, f.ino, &g), -ENOENT);
	ck_assert_int_eq(get_chunks(ix, f.ino).n, 0);
	/* A file's chunk list and a new context row need the inode. */
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(kv_index_file_chunks(ix, f.ino, chunk_cb, &o), -ENOENT);
	ck_assert_int_eq(kv_index_file_chunks(ix, ino_of(ix, 1, "g"), chunk_cb, &o), 0);
	ck_assert_int_eq(o.n, 1);
	{
		struct kv_ctx_row r = { .ino = f.ino, .last_access = 1, .ttl = -1 }, back;
		ck_assert_int_eq(kv_index_ctx_new(ix, &r), -ENOENT);
		ck_assert_int_eq(kv_index_ctx_get(ix, f.ino, &back), -ENOENT);
		r.ino = ino_of(ix, 1, "g");
		ck_assert_int_eq(kv_index_ctx_new(ix, &r), 0);
		ck_assert_int_eq(kv_index_ctx_get(ix, r.ino, &back), 0);
		ck_assert_int_eq(kv_index_ctx_del(ix, r.ino), 0);
	}
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.x", v, sizeof(v)), -ENODATA);
	ck_assert_int_eq(kv_index_drop(ix, d.ino, chunk_cb, &dropped), 0);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(kv_index_orphans(ix, orphan_cb, &o), 0);
	ck_assert_int_eq(o.n, 0);
	/* The other file is untouched. */
	ck_assert_int_eq(get_chunks(ix, ino_of(ix, 1, "g")).n, 1);
	ck_assert_int_eq(kv_index_stats(ix, &st), 0);
	ck_assert_uint_eq(st.files, 1);
	ck_assert_uint_eq(st.dirs, 1);
	ck_assert_uint_eq(st.stored, 1000);
	kv_index_close(ix);
}
END_TEST

/* ---- xattrs ---- */

START_TEST(test_xattrs)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f"), g = mkfile(ix, 1, "g");
	char buf[64];
	const char bin[5] = { 'a', 0, 'b', 0, (char)0xff };

	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", NULL, 0), -ENODATA);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.a", "hello", 5, XATTR_REPLACE),
			 -ENODATA);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", NULL, 0), -ENODATA);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.a", "hello", 5, XATTR_CREATE), 0);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.a", "other", 5, XATTR_CREATE), -EEXIST);

	/* Size 0 asks for the length; a short buffer is ERANGE. */
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", NULL, 0), 5);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", buf, 5), 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", buf, 4), -ERANGE);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", buf, sizeof(buf)), 5);

	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.a", "hi", 2, XATTR_REPLACE), 0);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", buf, sizeof(buf)), 2);
	ck_assert_mem_eq(buf, "hi", 2);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.a", "hey", 3, 0), 0);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.a", buf, sizeof(buf)), 3);

	/* Binary values, and values of length 0. */
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.bin", bin, sizeof(bin), 0), 0);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.bin", buf, sizeof(buf)), 5);
	ck_assert_mem_eq(buf, bin, 5);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.empty", NULL, 0, 0), 0);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.empty", NULL, 0), 0);

	/* Per inode. */
	ck_assert_int_eq(kv_index_getxattr(ix, g.ino, "user.a", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_eq(kv_index_listxattr(ix, g.ino, NULL, 0), 0);

	/* List: sorted, NUL-terminated names; size 0 asks for the length. */
	{
		const char want[] = "user.a\0user.bin\0user.empty"; /* + final NUL */
		ck_assert_int_eq(kv_index_listxattr(ix, f.ino, NULL, 0), (int)sizeof(want));
		memset(buf, 'x', sizeof(buf));
		ck_assert_int_eq(kv_index_listxattr(ix, f.ino, buf, sizeof(want)),
				 (int)sizeof(want));
		ck_assert_mem_eq(buf, want, sizeof(want));
		ck_assert_int_eq(kv_index_listxattr(ix, f.ino, buf, sizeof(want) - 1), -ERANGE);
		ck_assert_int_eq(kv_index_listxattr(ix, f.ino, buf, 3), -ERANGE);
	}

	ck_assert_int_eq(kv_index_removexattr(ix, f.ino, "user.bin"), 0);
	ck_assert_int_eq(kv_index_removexattr(ix, f.ino, "user.bin"), -ENODATA);
	ck_assert_int_eq(kv_index_removexattr(ix, g.ino, "user.a"), -ENODATA);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.bin", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_eq(kv_index_listxattr(ix, f.ino, NULL, 0), (int)sizeof("user.a\0user.empty"));
	kv_index_close(ix);
}
END_TEST

/* An empty value read into a buffer (getfattr of an attribute set with
 * an empty value asks with a buffer): 0 bytes, no undefined behaviour. */
START_TEST(test_xattr_empty_value)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f");
	char buf[16];

	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.empty", "", 0, 0), 0);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.empty", NULL, 0), 0);
	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.empty", buf, sizeof(buf)), 0);
	ck_assert_int_eq(buf[0], 'x');
	ck_assert_int_eq(kv_index_listxattr(ix, f.ino, buf, sizeof(buf)), (int)sizeof("user.empty"));
	ck_assert_str_eq(buf, "user.empty");
	kv_index_close(ix);
}
END_TEST

/* ---- setattr / stats ---- */

START_TEST(test_setattr)
{
	struct kv_index *ix = fresh();
	struct kv_attr f = mkfile(ix, 1, "f"), a = f, b;

	a.mode = S_IFREG | 0600;
	a.uid = 7;
	a.gid = 8;
	a.size = 12345;
	a.atime = T0 + 1;
	a.mtime = T0 + 2;
	a.ctime = T0 + 3;
	ck_assert_int_eq(kv_index_setattr(ix, &a, KV_SET_MODE | KV_SET_GID), 0);
	b = attr(ix, f.ino);
	ck_assert_uint_eq(b.mode, S_IFREG | 0600);
	ck_assert_uint_eq(b.uid, 1000);
	ck_assert_uint_eq(b.gid, 8);
	ck_assert_uint_eq(b.size, 0);
	ck_assert_int_eq(b.atime, T0);
	ck_assert_int_eq(kv_index_setattr(ix, &a,
					  KV_SET_UID | KV_SET_SIZE | KV_SET_ATIME | KV_SET_MTIME |
						  KV_SET_CTIME),
			 0);
	b = attr(ix, f.ino);
	ck_assert_uint_eq(b.uid, 7);
	ck_assert_uint_eq(b.size, 12345);
	ck_assert_int_eq(b.atime, T0 + 1);
	ck_assert_int_eq(b.mtime, T0 + 2);
	ck_assert_int_eq(b.ctime, T0 + 3);
	ck_assert_int_eq(kv_index_setattr(ix, &a, 0), 0);
	kv_index_close(ix);
}
END_TEST

START_TEST(test_stats)
{
	struct kv_index *ix = fresh();
	struct kv_index_stats st;
	struct kv_attr m1, m2, c1, f1, f2;

	ck_assert_int_eq(kv_index_stats(ix, &st), 0);
	ck_assert_uint_eq(st.files, 0);
	ck_assert_uint_eq(st.dirs, 1);
	ck_assert_uint_eq(st.contexts, 0);
	ck_assert_uint_eq(st.logical, 0);
	ck_assert_uint_eq(st.stored, 0);

	/* model/context layout: directories two levels down are contexts. */
	m1 = mkdirx(ix, 1, "model1");
	m2 = mkdirx(ix, 1, "model2");
	c1 = mkdirx(ix, m1.ino, "ctx1");
	mkdirx(ix, m1.ino, "ctx2");
	mkdirx(ix, m2.ino, "ctx3");
	mkdirx(ix, c1.ino, "deeper");    /* depth 3: not a context */
	f1 = mkfile(ix, m1.ino, "file"); /* a file at depth 2 */
	f2 = mkfile(ix, c1.ino, "layer0.k");
	mk(ix, 1, "link", S_IFLNK | 0777, "model1");
	publish(ix, &f1, 0, NULL, 0, 1000, 300);
	publish(ix, &f2, 0, NULL, 0, 2000, 700);
	ck_assert_int_eq(kv_index_stats(ix, &st), 0);
	ck_assert_uint_eq(st.files, 2);
	ck_assert_uint_eq(st.dirs, 7);
	ck_assert_uint_eq(st.contexts, 3);
	ck_assert_uint_eq(st.logical, 3000);
	ck_assert_uint_eq(st.stored, 1000);
	kv_index_close(ix);
}
END_TEST

/* ---- persistence ---- */

START_TEST(test_persistence)
{
	struct kv_index *ix = fresh();
	struct kv_attr d = mkdirx(ix, 1, "d"), f = mkfile(ix, d.ino, "f"), l, a;
	struct kv_chunk c[2] = { ch(0, 1, 64, 1000), ch(1, 1, 1064, 2000) };
	uint8_t id1[16], id2[16];
	char buf[32];
	struct chunks cl;

	l = mk(ix, 1, "l", S_IFLNK | 0777, "d/f");
	publish(ix, &f, 0, c, 2, 100000, 3000);
	ck_assert_int_eq(kv_index_setxattr(ix, f.ino, "user.k", "v", 1, 0), 0);
	kv_index_store_id(ix, id1);
	kv_index_close(ix);

	ix = open_ix(T_db);
	kv_index_store_id(ix, id2);
	ck_assert_mem_eq(id1, id2, 16);
	ck_assert_uint_eq(ino_of(ix, 1, "d"), d.ino);
	ck_assert_int_eq(lookup(ix, d.ino, "f", &a), 0);
	ck_assert_uint_eq(a.ino, f.ino);
	ck_assert_uint_eq(a.size, 100000);
	ck_assert_uint_eq(a.stored, 3000);
	cl = get_chunks(ix, f.ino);
	ck_assert_int_eq(cl.n, 2);
	ck_assert_uint_eq(cl.c[1].loc.off, 1064);
	ck_assert_int_eq(kv_index_getxattr(ix, f.ino, "user.k", buf, sizeof(buf)), 1);
	ck_assert_int_eq(kv_index_readlink(ix, l.ino, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "d/f");
	ck_assert_uint_eq(nlink_of(ix, 1), 3);
	/* New inodes never reuse numbers, even of dropped ones. */
	ck_assert_int_eq(rm(ix, 1, "l", 0, NULL, NULL), 0);
	ck_assert_int_eq(kv_index_drop(ix, l.ino, chunk_cb, &cl), 0);
	kv_index_close(ix);
	ix = open_ix(T_db);
	a = mkfile(ix, 1, "new");
	ck_assert_uint_gt(a.ino, l.ino);
	ck_assert_int_eq(kv_index_check(T_db, buf, sizeof(buf)), 0);
	kv_index_close(ix);
	{
		char err[512];
		ck_assert_msg(kv_index_check(T_db, err, sizeof(err)) == 0, "%s", err);
	}
}
END_TEST

/* ---- refusing other files ---- */

static int not_hidden(const char *name) { return name[0] != '.'; }

static int not_hidden_nor_wal(const char *name)
{
	size_t len = strlen(name);

	return not_hidden(name) &&
	       !(len > 4 && (!strcmp(name + len - 4, "-wal") || !strcmp(name + len - 4, "-shm")));
}

/* Files in dir; with wal, SQLite's -wal and -shm companions do not count
 * (reading a WAL-mode database creates them). */
static int count_files(const char *dir, int wal)
{
	return kvtest_count_entries(dir, wal ? not_hidden_nor_wal : not_hidden);
}

static void sqlite_exec(const char *path, const char *sql)
{
	sqlite3 *db;

	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
		      sqlite3_errmsg(db));
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* kv_index_check and kv_index_open both refuse path, with a message, and
 * leave its bytes (and the directory) as they were. */
static void expect_refused(const char *dir, const char *path, int wal)
{
	size_t n0, n1, n2;
	uint8_t *before = kvtest_slurp(path, &n0), *after;
	int files = count_files(dir, wal);
	char err[512] = "";
	struct kv_index *ix = NULL;

	ck_assert_int_eq(kv_index_check(path, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, path) != NULL, "message: %s", err);
	after = kvtest_slurp(path, &n1);
	ck_assert_uint_eq(n1, n0);
	ck_assert(n0 == 0 || memcmp(before, after, n0) == 0);
	ck_assert_int_eq(count_files(dir, wal), files);
	free(after);

	err[0] = 0;
	ck_assert_int_lt(kv_index_open(path, 1, &ix, err, sizeof(err)), 0);
	ck_assert_ptr_null(ix);
	ck_assert(err[0] != 0);
	after = kvtest_slurp(path, &n2);
	ck_assert_uint_eq(n2, n0);
	ck_assert(n0 == 0 || memcmp(before, after, n0) == 0);
	free(after);
	free(before);
}

START_TEST(test_check_garbage)
{
	char dir[512], db[600];
	FILE *f;

	new_dir(dir, sizeof(dir), db, sizeof(db));
	f = fopen(db, "wb");
	for (int i = 0; i < 8192; i++)
		fputc((i * 7919) & 0xff, f);
	fclose(f);
	expect_refused(dir, db, 0);
	/* Text that is not SQLite either. */
	f = fopen(db, "wb");
	fputs("this is not a database\n", f);
	fclose(f);
	expect_refused(dir, db, 0);
}
END_TEST

START_TEST(test_check_empty_db)
{
	char dir[512], db[600], err[512] = "";
	size_t n;
	FILE *f;

	new_dir(dir, sizeof(dir), db, sizeof(db));
	/* An empty file is an empty database: check refuses it (open may take
	 * it as a new index, so only check is tried here). */
	f = fopen(db, "wb");
	fclose(f);
	ck_assert_int_eq(kv_index_check(db, err, sizeof(err)), -EINVAL);
	free(kvtest_slurp(db, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(count_files(dir, 0), 1);

	/* A real SQLite file with no tables. */
	remove(db);
	sqlite_exec(db, "CREATE TABLE t(x); DROP TABLE t;");
	free(kvtest_slurp(db, &n));
	ck_assert_uint_gt(n, 0);
	{
		size_t n0, n1;
		uint8_t *b0 = kvtest_slurp(db, &n0), *b1;
		ck_assert_int_eq(kv_index_check(db, err, sizeof(err)), -EINVAL);
		b1 = kvtest_slurp(db, &n1);
		ck_assert_uint_eq(n0, n1);
		ck_assert_mem_eq(b0, b1, n0);
		free(b0);
		free(b1);
	}
}
END_TEST

START_TEST(test_check_foreign_db)
{
	char dir[512], db[600];

	new_dir(dir, sizeof(dir), db, sizeof(db));
	sqlite_exec(db, "PRAGMA application_id=305419896;"
			"CREATE TABLE photos(id INTEGER PRIMARY KEY, path TEXT);"
			"INSERT INTO photos(path) VALUES('a.jpg'),('b.jpg');");
	expect_refused(dir, db, 0);
	remove(db);
	/* No application id, but tables: somebody else's too. */
	sqlite_exec(db, "CREATE TABLE inode(ino INTEGER PRIMARY KEY); PRAGMA user_version=1;");
	expect_refused(dir, db, 0);
	remove(db);
	/* Another application's WAL-mode database. */
	sqlite_exec(db, "PRAGMA journal_mode=WAL; PRAGMA application_id=1;"
			"CREATE TABLE t(x); INSERT INTO t VALUES(1);");
	expect_refused(dir, db, 1);
}
END_TEST

START_TEST(test_check_newer_version)
{
	char dir[512], db[600], err[512] = "";
	struct kv_index *ix;

	new_dir(dir, sizeof(dir), db, sizeof(db));
	ix = open_ix(db);
	mkfile(ix, 1, "f");
	kv_index_close(ix);
	ck_assert_msg(kv_index_check(db, err, sizeof(err)) == 0, "%s", err);
	sqlite_exec(db, "PRAGMA user_version=99;");
	expect_refused(dir, db, 1);
}
END_TEST

/* ---- a damaged index (issue 12) ---- */

/* /d holding /d/f and /d/sub, and an empty /e; the index is closed. */
static void damaged_tree(struct kv_attr *d, struct kv_attr *e)
{
	struct kv_index *ix = fresh();

	*d = mkdirx(ix, 1, "d");
	*e = mkdirx(ix, 1, "e");
	mkfile(ix, d->ino, "f");
	mkdirx(ix, d->ino, "sub");
	kv_index_close(ix);
}

static int nop_entry(void *arg, const char *name, size_t len, const struct kv_attr *a, uint64_t next)
{
	(void)name, (void)len, (void)a, (void)next;
	++*(int *)arg;
	return 0;
}

/* Every table and index of the directory entries damaged: the namespace
 * operations say EIO, never ENOENT or an empty directory. */
START_TEST(test_damaged_dentry)
{
	static const char *const all[] = { "dentry", "sqlite_autoindex_dentry_1", "dentry_by_ino",
					   "dentry_by_parent", NULL };
	struct kv_attr d, e, a = { .mode = S_IFREG | 0644 };
	struct kv_index *ix;
	uint64_t parent = 0, ino;
	uint32_t nlink;
	char msg[256];
	int n = 0;

	damaged_tree(&d, &e);
	kvtest_corrupt_pages(T_db, all);
	ix = open_ix(T_db);
	ck_assert_int_eq(kv_index_readdir(ix, 1, 0, nop_entry, &n), -EIO);
	ck_assert_int_eq(kv_index_readdir(ix, d.ino, 0, nop_entry, &n), -EIO);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(lookup(ix, 1, "d", NULL), -EIO);
	ck_assert_int_eq(kv_index_parent(ix, d.ino, &parent), -EIO);
	ck_assert_int_eq(rm(ix, 1, "e", 1, &ino, &nlink), -EIO);
	ck_assert_int_eq(kv_index_create(ix, 1, "new", 3, &a, NULL), -EIO);
	ck_assert_int_eq(mv(ix, 1, "d", 1, "d2", 0, NULL, NULL), -EIO);
	ck_assert_int_gt(kv_index_verify(ix, 1, msg, sizeof(msg)), 0);
	ck_assert_int_gt(kv_index_verify(ix, 0, msg, sizeof(msg)), 0);
	ck_assert_str_ne(msg, "");
	kv_index_close(ix);
}
END_TEST

/* Only the index of entries by parent damaged (has_children reads it):
 * rmdir of a directory with entries must fail, never drop it. */
START_TEST(test_damaged_has_children)
{
	static const char *const by_parent[] = { "dentry_by_parent", NULL };
	struct kv_attr d, e;
	struct kv_index *ix;
	uint64_t ino;
	uint32_t nlink;

	damaged_tree(&d, &e);
	kvtest_corrupt_pages(T_db, by_parent);
	ix = open_ix(T_db);
	ck_assert_int_eq(rm(ix, 1, "d", 1, &ino, &nlink), -EIO);
	ck_assert_int_eq(rm(ix, 1, "e", 1, &ino, &nlink), -EIO);
	ck_assert_uint_eq(ino_of(ix, 1, "d"), d.ino);
	ck_assert_uint_gt(ino_of(ix, d.ino, "f"), d.ino);
	kv_index_close(ix);
}
END_TEST

/* Only the index of entries by inode damaged (the parent walk reads it):
 * a directory must not move into its own subtree because the walk failed,
 * and readdir, which names the parent as "..", fails. */
START_TEST(test_damaged_parent_walk)
{
	static const char *const by_ino[] = { "dentry_by_ino", NULL };
	struct kv_attr d, e;
	struct kv_index *ix;
	uint64_t parent, sub;

	damaged_tree(&d, &e);
	kvtest_corrupt_pages(T_db, by_ino);
	ix = open_ix(T_db);
	sub = ino_of(ix, d.ino, "sub");
	ck_assert_int_eq(mv(ix, 1, "d", sub, "d", 0, NULL, NULL), -EIO);
	ck_assert_uint_eq(ino_of(ix, 1, "d"), d.ino);
	ck_assert_int_eq(kv_index_parent(ix, sub, &parent), -EIO);
	kv_index_close(ix);
}
END_TEST

/* A store of schema 2 gets schemas 3 and 4 at its next open, keeps its
 * entries, and readdir then resumes from the index, with no sort. */
START_TEST(test_migrate_dentry_by_parent)
{
	struct kv_index *ix = fresh();
	struct kv_attr d = mkdirx(ix, 1, "d");
	struct listing l;
	sqlite3 *db;
	sqlite3_stmt *s;
	char plan[1024] = "";

	for (int i = 0; i < 150; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%03d", i);
		mkfile(ix, d.ino, name);
	}
	kv_index_close(ix);
	sqlite_exec(T_db, "DROP INDEX dentry_by_parent; DROP INDEX context_ttl_default; "
			  "DROP INDEX context_ttl_own; PRAGMA user_version=2;");
	ix = open_ix(T_db);
	ck_assert_int_eq(kv_index_user_version(ix), 4);
	list(ix, d.ino, 0, 200, &l);
	ck_assert_int_eq(l.n, 150);
	ck_assert_str_eq(l.names[149], "f149");
	kv_index_close(ix);
	/* The query of kv_index_readdir (Q_READDIR in src/store/index.c). */
	ck_assert_int_eq(sqlite3_open(T_db, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "EXPLAIN QUERY PLAN SELECT d.id,d.name,i.ino,"
					    "i.mode FROM dentry d JOIN inode i ON i.ino=d.ino "
					    "WHERE d.parent=?1 AND d.id>?2 ORDER BY d.id",
					    -1, &s, NULL),
			 SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW)
		snprintf(plan + strlen(plan), sizeof(plan) - strlen(plan), "%s; ",
			 (const char *)sqlite3_column_text(s, 3));
	sqlite3_finalize(s);
	sqlite3_close(db);
	ck_assert_msg(strstr(plan, "dentry_by_parent") && !strstr(plan, "TEMP B-TREE"), "%s", plan);
}
END_TEST

/* ---- contexts ---- */

static int has_ino(const uint64_t *v, size_t n, uint64_t ino)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == ino)
			return 1;
	return 0;
}

/* The TTL sweep's query (schema 4's partial indexes): the mount's ttl for
 * rows without one, a row's own ttl, 0 = never, pinned never. */
START_TEST(test_ctx_expired)
{
	struct kv_index *ix = fresh();
	const int64_t s = 1000000000, now = T0 + 1000 * s;
	/* last access (s before now), pin, ttl (s; -1: the mount's) */
	static const struct {
		int64_t age;
		int pin;
		int64_t ttl;
	} c[] = {
		{ 200, 0, -1 },  /* 0: default ttl 100: expired */
		{ 50, 0, -1 },   /* 1: default: not yet */
		{ 200, 0, 300 }, /* 2: own ttl: not yet */
		{ 200, 0, 150 }, /* 3: own ttl: expired */
		{ 900, 0, 0 },   /* 4: never */
		{ 900, 1, -1 },  /* 5: pinned */
		{ 20, 0, 10 },   /* 6: own ttl: expired */
	};
	struct kv_ctx_row r[7];
	uint64_t got[16];
	size_t n;

	for (int i = 0; i < 7; i++) {
		char name[2] = { (char)('a' + i), 0 };
		r[i] = (struct kv_ctx_row){ mkdirx(ix, 1, name).ino, now - c[i].age * s, 0,
					    c[i].pin, c[i].ttl };
		ck_assert_int_eq(kv_index_ctx_add(ix, &r[i]), 0);
	}
	ck_assert_int_eq(kv_index_ctx_save(ix, r, 7), 0);
	ck_assert_int_eq(kv_index_ctx_expired(ix, now, 100, got, 16, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert(has_ino(got, n, r[0].ino) && has_ino(got, n, r[3].ino) &&
		  has_ino(got, n, r[6].ino));
	/* No default ttl: only own ones. */
	ck_assert_int_eq(kv_index_ctx_expired(ix, now, 0, got, 16, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert(has_ino(got, n, r[3].ino) && has_ino(got, n, r[6].ino));
	/* At most max. */
	ck_assert_int_eq(kv_index_ctx_expired(ix, now, 100, got, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	kv_index_close(ix);
}
END_TEST

static Suite *index_suite(void)
{
	Suite *s = suite_create("index");
	TCase *tc = kvtest_tcase(s, "namespace", 30);

	tcase_add_test(tc, test_fresh_root);
	tcase_add_test(tc, test_store_ids_differ);
	tcase_add_test(tc, test_open_nocreate);
	tcase_add_test(tc, test_create_lookup);
	tcase_add_test(tc, test_create_eexist);
	tcase_add_test(tc, test_remove);
	tcase_add_test(tc, test_rename_plain);
	tcase_add_test(tc, test_rename_across_dirs);
	tcase_add_test(tc, test_rename_replace);
	tcase_add_test(tc, test_rename_noreplace);
	tcase_add_test(tc, test_rename_exchange);
	tcase_add_test(tc, test_rename_into_own_subtree);
	tcase_add_test(tc, test_readdir);
	tcase_add_test(tc, test_setattr);

	tc = kvtest_tcase(s, "data", 30);
	tcase_add_test(tc, test_publish_chunks);
	tcase_add_test(tc, test_publish_keep_all);
	tcase_add_test(tc, test_segments);
	tcase_add_test(tc, test_orphans_drop);
	tcase_add_test(tc, test_xattrs);
	tcase_add_test(tc, test_xattr_empty_value);
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_persistence);
	tcase_add_test(tc, test_ctx_expired);

	tc = kvtest_tcase(s, "check", 30);
	tcase_add_test(tc, test_check_garbage);
	tcase_add_test(tc, test_check_empty_db);
	tcase_add_test(tc, test_check_foreign_db);
	tcase_add_test(tc, test_check_newer_version);

	tc = kvtest_tcase(s, "damaged", 30);
	tcase_add_test(tc, test_damaged_dentry);
	tcase_add_test(tc, test_damaged_has_children);
	tcase_add_test(tc, test_damaged_parent_walk);
	tcase_add_test(tc, test_migrate_dentry_by_parent);
	return s;
}

int main(void) { return kvtest_run(index_suite, "index"); }
