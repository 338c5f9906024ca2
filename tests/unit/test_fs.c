/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_fs / kv_file (src/fs/fs.h, src/fs/fs_int.h): the filesystem
 * driven without a mount. Files are checked against a shadow buffer through
 * writes across chunk boundaries, holes, truncation, release, close and
 * reopen of the store. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ctl.h"
#include "fs_int.h"
#include "rebuild.h"
#include "kvtest.h"
#include "kvtest_fs.h"

#define CHUNK (64u << 10)
#define READ_MAX (512u << 10) /* per kv_file_read call, like a FUSE read */

/* Random-ish bytes: incompressible (kind 0), fp16-like (1) or runs of 512
 * equal bytes (2). */
static void fill(uint8_t *p, size_t n, int kind)
{
	if (kind == 0)
		fill_random(p, n);
	else if (kind == 1)
		fill_fp16like(p, n);
	else
		for (size_t i = 0; i < n; i++)
			p[i] = (uint8_t)(i / 512);
}

/* A path for a new store (not created yet) under the run's root. */
static void new_store_path(char *buf, size_t len) { kvtest_new_path(buf, len, "store"); }

static uint64_t mkfile(struct kv_fs *fs, uint64_t parent, const char *name)
{
	struct kv_attr a;

	ck_assert_int_eq(kv_fs_mknod(fs, parent, name, S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
			 0);
	ck_assert(S_ISREG(a.mode));
	return a.ino;
}

static uint64_t mkdir_fs(struct kv_fs *fs, uint64_t parent, const char *name)
{
	struct kv_attr a;

	ck_assert_int_eq(kv_fs_mknod(fs, parent, name, S_IFDIR | 0755, &kvtest_root_cred, NULL, &a),
			 0);
	ck_assert(S_ISDIR(a.mode));
	return a.ino;
}

static uint64_t lookup(struct kv_fs *fs, uint64_t parent, const char *name)
{
	struct kv_attr a;

	ck_assert_msg(kv_fs_lookup(fs, parent, name, &a) == 0, "lookup %s", name);
	return a.ino;
}

static void wr(struct kv_fs *fs, uint64_t ino, const uint8_t *buf, size_t n, uint64_t off)
{
	ssize_t rc = kv_file_write(fs, ino, buf, n, (off_t)off);

	ck_assert_msg(rc == (ssize_t)n, "write of %zu at %llu: %zd", n, (unsigned long long)off, rc);
}

/* Read [off, off+size) into out by FUSE-sized calls; returns the bytes read
 * (short at EOF). */
static size_t rd(struct kv_fs *fs, uint64_t ino, uint64_t off, size_t size, uint8_t *out)
{
	size_t done = 0;

	while (done < size) {
		size_t n = size - done > READ_MAX ? READ_MAX : size - done, got = 0;
		struct kv_readv rv;
		int rc = kv_file_read(fs, ino, (off_t)(off + done), n, &rv);

		ck_assert_msg(rc >= 0, "read of %zu at %llu: %d", n,
			      (unsigned long long)(off + done), rc);
		ck_assert_uint_le((size_t)rc, n);
		for (int i = 0; i < rv.n; i++) {
			ck_assert_uint_le(got + rv.iov[i].iov_len, n);
			memcpy(out + done + got, rv.iov[i].iov_base, rv.iov[i].iov_len);
			got += rv.iov[i].iov_len;
		}
		ck_assert_uint_eq(got, (size_t)rc);
		ck_assert_uint_eq(rv.bytes, got);
		kv_file_read_done(fs, &rv);
		done += got;
		if (got < n)
			break;
	}
	return done;
}

static uint64_t size_of(struct kv_fs *fs, uint64_t ino)
{
	struct kv_attr a;

	ck_assert_int_eq(kv_fs_getattr(fs, ino, &a), 0);
	return a.size;
}

/* The whole file equals shadow[0, size). */
static void expect_content(struct kv_fs *fs, uint64_t ino, const uint8_t *shadow, size_t size)
{
	uint8_t *got = malloc(size + CHUNK);
	size_t n;

	ck_assert_uint_eq(size_of(fs, ino), size);
	n = rd(fs, ino, 0, size + CHUNK, got);
	ck_assert_uint_eq(n, size);
	for (size_t i = 0; i < size; i++)
		if (got[i] != shadow[i])
			ck_abort_msg("byte %zu: got 0x%02x, want 0x%02x (file size %zu)", i, got[i],
				     shadow[i], size);
	free(got);
}

/* Opens ino, checks that the whole file equals shadow[0, size), releases. */
static void expect_file(struct kv_fs *fs, uint64_t ino, const uint8_t *shadow, size_t size)
{
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	expect_content(fs, ino, shadow, size);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
}

/* Mounts store again and checks that name (in the root) equals
 * shadow[0, size). */
static void expect_after_remount(const char *store, const struct kv_config *cfg, const char *name,
				 const uint8_t *shadow, size_t size)
{
	struct kv_fs *fs = kvtest_open_fs(store, cfg);

	expect_file(fs, lookup(fs, KV_ROOT_INO, name), shadow, size);
	kv_fs_close(fs);
}

/* A new store (path written to store), mounted, with a new file name in
 * the root already open; its inode goes to *ino. */
static struct kv_fs *new_fs_open_file(char *store, size_t len, const struct kv_config *cfg,
				      const char *name, uint64_t *ino)
{
	struct kv_fs *fs;

	new_store_path(store, len);
	fs = kvtest_open_fs(store, cfg);
	*ino = mkfile(fs, KV_ROOT_INO, name);
	ck_assert_int_eq(kv_file_open(fs, *ino, 0), 0);
	return fs;
}

/* Creates name in parent, writes data[0, n) to it and releases it. */
static uint64_t write_file(struct kv_fs *fs, uint64_t parent, const char *name, const uint8_t *data,
			   size_t n)
{
	uint64_t ino = mkfile(fs, parent, name);

	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	wr(fs, ino, data, n, 0);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	return ino;
}

static void set_size(struct kv_fs *fs, uint64_t ino, uint64_t size)
{
	struct kv_attr in, out;

	memset(&in, 0, sizeof(in));
	in.size = size;
	ck_assert_int_eq(kv_fs_setattr(fs, ino, &in, KV_SET_SIZE, &out), 0);
	ck_assert_uint_eq(out.size, size);
}

static struct kv_index_stats stats(struct kv_fs *fs)
{
	struct kv_index_stats s;

	ck_assert_int_eq(kv_index_stats(fs->ix, &s), 0);
	return s;
}

static int count_entries(const char *dir) { return kvtest_count_entries(dir, NULL); }

static blkcnt_t seg_blocks(const char *store)
{
	char path[700];
	DIR *d;
	struct dirent *e;
	blkcnt_t total = 0;

	snprintf(path, sizeof(path), "%s/segments", store);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char p[1000];
		struct stat sb;
		if (!strstr(e->d_name, ".seg"))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (!stat(p, &sb))
			total += sb.st_blocks;
	}
	closedir(d);
	return total;
}

/* ---- opening ---- */

START_TEST(test_open_new_store)
{
	char store[600], p[700];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	struct kv_attr r;
	struct stat sb;
	struct statvfs sv;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	ck_assert_uint_eq(kv_fs_config(fs)->chunk, CHUNK);
	ck_assert_int_eq(kv_fs_getattr(fs, KV_ROOT_INO, &r), 0);
	ck_assert(S_ISDIR(r.mode));
	ck_assert_uint_eq(r.nlink, 2);
	ck_assert_int_eq(kv_fs_statfs(fs, &sv), 0);
	ck_assert_uint_eq(sv.f_namemax, 255);
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	ck_assert_int_eq(stat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/kvfs.lock", store);
	ck_assert_int_eq(stat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/segments", store);
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));
	kv_fs_close(fs);
	/* An empty existing directory is fine too, and so is reopening. */
	fs = kvtest_open_fs(store, &cfg);
	kv_fs_close(fs);
	snprintf(p, sizeof(p), "%s.empty", store);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	fs = kvtest_open_fs(p, &cfg);
	kv_fs_close(fs);
}
END_TEST

START_TEST(test_foreign_dir_refused)
{
	char store[600], p[800], err[512] = "";
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs = NULL;
	const char text[] = "my notes, not a store\n";
	char back[64] = "";
	FILE *f;

	new_store_path(store, sizeof(store));
	ck_assert_int_eq(mkdir(store, 0700), 0);
	snprintf(p, sizeof(p), "%s/notes.txt", store);
	f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/photos", store);
	ck_assert_int_eq(mkdir(p, 0700), 0);

	ck_assert_int_eq(kv_fs_open(store, &cfg, &fs, err, sizeof(err)), -EINVAL);
	ck_assert(err[0] != 0);
	/* Untouched: nothing created, the file as it was. */
	ck_assert_int_eq(count_entries(store), 2);
	snprintf(p, sizeof(p), "%s/notes.txt", store);
	f = fopen(p, "r");
	ck_assert_ptr_nonnull(fgets(back, sizeof(back), f));
	fclose(f);
	ck_assert_str_eq(back, text);
	snprintf(p, sizeof(p), "%s/photos", store);
	ck_assert_int_eq(count_entries(p), 0);

	/* A kvfs.db that is not an index: refused, bytes unchanged. */
	{
		char d2[700];
		snprintf(d2, sizeof(d2), "%s2", store);
		ck_assert_int_eq(mkdir(d2, 0700), 0);
		snprintf(p, sizeof(p), "%s/kvfs.db", d2);
		f = fopen(p, "w");
		fputs(text, f);
		fclose(f);
		err[0] = 0;
		ck_assert_int_lt(kv_fs_open(d2, &cfg, &fs, err, sizeof(err)), 0);
		ck_assert(err[0] != 0);
		f = fopen(p, "r");
		ck_assert_ptr_nonnull(fgets(back, sizeof(back), f));
		fclose(f);
		ck_assert_str_eq(back, text);
		ck_assert_int_eq(count_entries(d2), 1);
	}
	/* A regular file is not a store. */
	snprintf(p, sizeof(p), "%s/notes.txt", store);
	ck_assert_int_lt(kv_fs_open(p, &cfg, &fs, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_second_open_busy)
{
	char store[600], err[512] = "";
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs = NULL, *fs2 = NULL;
	uint8_t data[1000], back[1000];
	uint64_t ino;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	ck_assert_int_eq(kv_fs_open(store, &cfg, &fs2, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_null(fs2);
	ck_assert_msg(strstr(err, "in use") != NULL, "message: %s", err);
	/* The first one is unaffected. */
	ino = mkfile(fs, KV_ROOT_INO, "f");
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	rng_state = 1;
	fill(data, sizeof(data), 0);
	wr(fs, ino, data, sizeof(data), 0);
	ck_assert_uint_eq(rd(fs, ino, 0, sizeof(back), back), sizeof(back));
	ck_assert_mem_eq(back, data, sizeof(data));
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);
	/* Free again once closed. */
	expect_after_remount(store, &cfg, "f", data, sizeof(data));
}
END_TEST

/* The bytes of store's segment 1 (malloc()ed; *len gets their count). */
static uint8_t *seg1(const char *store, size_t *len)
{
	char p[700];
	FILE *f;
	uint8_t *buf = malloc(64 << 20);

	snprintf(p, sizeof(p), "%s/segments/00000001.seg", store);
	f = fopen(p, "rb");
	ck_assert_ptr_nonnull(f);
	*len = fread(buf, 1, 64 << 20, f);
	fclose(f);
	return buf;
}

static void rm_index(const char *store)
{
	char p[700];

	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	unlink(p);
	snprintf(p, sizeof(p), "%s/kvfs.db-wal", store);
	unlink(p);
	snprintf(p, sizeof(p), "%s/kvfs.db-shm", store);
	unlink(p);
}

/* Issue 12, defect 1: a store whose index is gone was opened with a new
 * one, whose recovery freed every record and deleted the segments. Now
 * it is refused (and so is an index from another store) with nothing
 * changed, and the rebuild brings the data back. */
START_TEST(test_lost_index_refused)
{
	char store[600], other[700], p[700], q[800], err[512] = "";
	struct kv_config cfg = kvtest_small_config();
	struct kv_rebuild_report rep;
	struct kv_fs *fs = NULL;
	size_t size = 3 * CHUNK + 5, n0, n1;
	uint8_t *data = malloc(size), *before, *after;
	struct stat sb;

	cfg.mount = 1; /* as the daemon: recovery runs */
	rng_state = 12;
	fill(data, size, 0);
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	write_file(fs, KV_ROOT_INO, "f", data, size);
	kv_fs_close(fs);
	before = seg1(store, &n0);
	rm_index(store);

	ck_assert_int_eq(kv_fs_open(store, &cfg, &fs, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "kvfsctl rebuild") != NULL, "message: %s", err);
	/* An empty kvfs.db is no index either. */
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	fclose(fopen(p, "w"));
	ck_assert_int_eq(kv_fs_open(store, &cfg, &fs, err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_lt(kv_fs_open_existing(store, &fs, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "kvfsctl rebuild") != NULL, "message: %s", err);
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	ck_assert_int_ne(stat(p, &sb), 0);

	/* Another store's index: not the one the segments name. */
	snprintf(other, sizeof(other), "%s.other", store);
	fs = kvtest_open_fs(other, &cfg);
	kv_fs_close(fs);
	snprintf(q, sizeof(q), "%s/kvfs.db", other);
	ck_assert_int_eq(rename(q, p), 0);
	ck_assert_int_eq(kv_fs_open(store, &cfg, &fs, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "kvfsctl rebuild") != NULL, "message: %s", err);
	rm_index(store);

	after = seg1(store, &n1);
	ck_assert_uint_eq(n1, n0);
	ck_assert_mem_eq(after, before, n0);
	ck_assert_int_eq(kv_rebuild(store, NULL, &rep, err, sizeof(err)), 0);
	expect_after_remount(store, &cfg, "f", data, size);
	free(before);
	free(after);
	free(data);
}
END_TEST

/* A store opened and never served (the mount failed) is removed again if
 * this open made it; an existing store is kept. */
START_TEST(test_abandon)
{
	char store[600], p[700];
	struct kv_config cfg = kvtest_small_config();
	struct stat sb;

	new_store_path(store, sizeof(store));
	kv_fs_abandon(kvtest_open_fs(store, &cfg));
	ck_assert_int_ne(stat(store, &sb), 0);
	ck_assert_int_eq(mkdir(store, 0755), 0);
	kv_fs_abandon(kvtest_open_fs(store, &cfg));
	ck_assert_int_eq(count_entries(store), 0);
	kv_fs_close(kvtest_open_fs(store, &cfg));
	kv_fs_abandon(kvtest_open_fs(store, &cfg));
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	ck_assert_int_eq(stat(p, &sb), 0);
	/* Names and xattrs are the owner's, like segments/. */
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	/* A first open killed before the index was written left it empty:
	 * still a new store. */
	snprintf(p, sizeof(p), "%s.killed", store);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s.killed/kvfs.db", store);
	fclose(fopen(p, "w"));
	snprintf(p, sizeof(p), "%s.killed", store);
	kv_fs_close(kvtest_open_fs(p, &cfg));
}
END_TEST

/* Issue 12, defect 7: a mount at another context_depth rescanned the
 * contexts and lost every pin. The depth is the store's now. */
START_TEST(test_context_depth_kept)
{
	char store[600], err[512] = "", v[8] = "";
	struct kv_config cfg = kvtest_small_config(), two = kvtest_small_config();
	struct kv_config plain = kvtest_small_config();
	struct kv_fs *fs = NULL;
	uint64_t ctx;

	ck_assert_int_eq(kv_opt_set(&cfg, "context_depth", "1", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&two, "context_depth", "2", err, sizeof(err)), 0);
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	ctx = mkdir_fs(fs, KV_ROOT_INO, "ctx");
	ck_assert_int_eq(kv_fs_setxattr(fs, ctx, "user.kvfs.pin", "1", 1, 0), 0);
	kv_fs_close(fs);
	ck_assert_int_eq(kv_fs_open(store, &two, &fs, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "context_depth=1") != NULL, "message: %s", err);
	fs = kvtest_open_fs(store, &plain);
	ck_assert_int_eq(kv_fs_config(fs)->context_depth, 1);
	ck_assert_int_eq(kv_fs_getxattr(fs, ctx, "user.kvfs.pin", v, sizeof(v) - 1), 1);
	ck_assert_str_eq(v, "1");
	kv_fs_close(fs);
}
END_TEST

/* ---- data path ---- */

START_TEST(test_write_read)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t cap = 6 * CHUNK;
	uint8_t *shadow = calloc(1, cap), *buf = malloc(cap), *got = malloc(cap);
	size_t size = 0;
	uint64_t dir, ino;
	static const struct {
		uint64_t off;
		size_t len;
		int kind;
	} ops[] = {
		{ 0, 1000, 0 },             /* start of chunk 0 */
		{ CHUNK - 6000, 10000, 1 }, /* across the 0/1 boundary */
		{ 2 * CHUNK, CHUNK, 1 },    /* exactly chunk 2 */
		{ 5 * CHUNK - 5, 5, 0 },    /* past a hole (chunks 3, 4) */
		{ 500, 1000, 2 },           /* overwrite inside chunk 0 */
		{ 2 * CHUNK + 100, 50, 0 }, /* overwrite inside a full chunk */
		{ CHUNK - 1, 2, 0 },        /* two bytes across a boundary */
		{ 4 * CHUNK + 7, 3, 1 },    /* into the hole */
	};

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	dir = mkdir_fs(fs, KV_ROOT_INO, "model");
	ino = mkfile(fs, dir, "layer0.k");
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	rng_state = 42;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		fill(buf, ops[i].len, ops[i].kind);
		wr(fs, ino, buf, ops[i].len, ops[i].off);
		memcpy(shadow + ops[i].off, buf, ops[i].len);
		if (ops[i].off + ops[i].len > size)
			size = ops[i].off + ops[i].len;
		expect_content(fs, ino, shadow, size);
	}
	ck_assert_uint_eq(size, 5 * CHUNK);
	/* Reads at odd places, and at and past EOF. */
	ck_assert_uint_eq(rd(fs, ino, CHUNK - 3, 7, got), 7);
	ck_assert_mem_eq(got, shadow + CHUNK - 3, 7);
	ck_assert_uint_eq(rd(fs, ino, 3 * CHUNK + 11, 100, got), 100);
	ck_assert_mem_eq(got, shadow + 3 * CHUNK + 11, 100);
	ck_assert_uint_eq(rd(fs, ino, size - 10, 100, got), 10);
	ck_assert_mem_eq(got, shadow + size - 10, 10);
	ck_assert_uint_eq(rd(fs, ino, size, 100, got), 0);
	ck_assert_uint_eq(rd(fs, ino, size + 5 * CHUNK, 100, got), 0);
	/* Flushed: the same through stored records. */
	ck_assert_int_eq(kv_file_flush(fs, ino), 0);
	expect_content(fs, ino, shadow, size);
	ck_assert_int_eq(kv_file_fsync(fs, ino), 0);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	/* Released: read through a new open. */
	expect_file(fs, ino, shadow, size);
	kv_fs_close(fs);

	fs = kvtest_open_fs(store, &cfg);
	dir = lookup(fs, KV_ROOT_INO, "model");
	ino = lookup(fs, dir, "layer0.k");
	expect_file(fs, ino, shadow, size);
	{
		struct kv_index_stats s = stats(fs);
		ck_assert_uint_eq(s.files, 1);
		ck_assert_uint_eq(s.logical, size);
		ck_assert_uint_gt(s.stored, 0);
	}
	kv_fs_close(fs);
	free(shadow);
	free(buf);
	free(got);
}
END_TEST

/* Shrinking within a chunk and extending again: the bytes in between read
 * as zeros, whether the file is open or not, before and after a remount. */
START_TEST(test_truncate)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t cap = 8 * CHUNK;
	uint8_t *shadow = calloc(1, cap);
	uint64_t ino;
	int open_during = _i;

	fs = new_fs_open_file(store, sizeof(store), &cfg, "f", &ino);
	rng_state = 7;
	fill(shadow, 200000, 1);
	wr(fs, ino, shadow, 200000, 0);
	if (!open_during)
		ck_assert_int_eq(kv_file_release(fs, ino), 0);
	else
		ck_assert_int_eq(kv_file_flush(fs, ino), 0);

	/* Shrink inside chunk 1, extend past it. */
	set_size(fs, ino, 100000);
	memset(shadow + 100000, 0, cap - 100000);
	if (!open_during)
		ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	expect_content(fs, ino, shadow, 100000);
	if (!open_during)
		ck_assert_int_eq(kv_file_release(fs, ino), 0);
	set_size(fs, ino, 250000);
	if (!open_during)
		ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	expect_content(fs, ino, shadow, 250000);

	/* Shrink to a chunk boundary, extend, write past the old end. */
	set_size(fs, ino, CHUNK);
	memset(shadow + CHUNK, 0, cap - CHUNK);
	set_size(fs, ino, 3 * CHUNK + 10);
	expect_content(fs, ino, shadow, 3 * CHUNK + 10);
	fill(shadow + 4 * CHUNK, 1000, 0);
	wr(fs, ino, shadow + 4 * CHUNK, 1000, 4 * CHUNK);
	expect_content(fs, ino, shadow, 4 * CHUNK + 1000);
	/* Shrink in the middle of buffered, unflushed data. */
	wr(fs, ino, shadow + 10, 5000, 10); /* same bytes again: chunk 0 buffered */
	set_size(fs, ino, 3000);
	memset(shadow + 3000, 0, cap - 3000);
	set_size(fs, ino, 7000);
	expect_content(fs, ino, shadow, 7000);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);

	fs = kvtest_open_fs(store, &cfg);
	ino = lookup(fs, KV_ROOT_INO, "f");
	ck_assert_uint_eq(size_of(fs, ino), 7000);
	expect_file(fs, ino, shadow, 7000);
	/* O_TRUNC. */
	ck_assert_int_eq(kv_file_open(fs, ino, 1), 0);
	ck_assert_uint_eq(size_of(fs, ino), 0);
	expect_content(fs, ino, shadow, 0);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);
	fs = kvtest_open_fs(store, &cfg);
	ino = lookup(fs, KV_ROOT_INO, "f");
	ck_assert_uint_eq(size_of(fs, ino), 0);
	ck_assert_uint_eq(stats(fs).stored, 0);
	kv_fs_close(fs);
	free(shadow);
}
END_TEST

/* Rewriting part of a file whose chunks are already published must keep
 * the other chunks, in this run and the next. */
START_TEST(test_partial_rewrite_persists)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t size = 4 * CHUNK;
	uint8_t *shadow = malloc(size);
	uint64_t ino;
	int flush = _i; /* 0: release between, 1: flush between */

	fs = new_fs_open_file(store, sizeof(store), &cfg, "f", &ino);
	rng_state = 99;
	fill(shadow, size, 1);
	wr(fs, ino, shadow, size, 0);
	if (flush) {
		ck_assert_int_eq(kv_file_flush(fs, ino), 0);
	} else {
		ck_assert_int_eq(kv_file_release(fs, ino), 0);
		ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	}
	memset(shadow + 2 * CHUNK + 100, 0xab, 10);
	wr(fs, ino, shadow + 2 * CHUNK + 100, 10, 2 * CHUNK + 100);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	/* Same run, through the published chunk list. */
	expect_file(fs, ino, shadow, size);
	kv_fs_close(fs);
	expect_after_remount(store, &cfg, "f", shadow, size);
	free(shadow);
}
END_TEST

/* After a remount, reading a file (which opens the last segment) and then
 * writing another must not damage the first. */
START_TEST(test_remount_read_then_write)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t size = 3 * CHUNK + 123;
	uint8_t *a = malloc(size), *b = malloc(size), *got = malloc(size);
	uint64_t ia, ib;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	rng_state = 5;
	fill(a, size, 1);
	fill(b, size, 0);
	write_file(fs, KV_ROOT_INO, "a", a, size);
	kv_fs_close(fs);

	fs = kvtest_open_fs(store, &cfg);
	ia = lookup(fs, KV_ROOT_INO, "a");
	ck_assert_int_eq(kv_file_open(fs, ia, 0), 0);
	ck_assert_uint_eq(rd(fs, ia, 0, 10, got), 10);
	ck_assert_int_eq(kv_file_release(fs, ia), 0);
	write_file(fs, KV_ROOT_INO, "b", b, size);
	kv_fs_close(fs);

	fs = kvtest_open_fs(store, &cfg);
	ia = lookup(fs, KV_ROOT_INO, "a");
	ib = lookup(fs, KV_ROOT_INO, "b");
	ck_assert_int_eq(kv_file_open(fs, ia, 0), 0);
	ck_assert_int_eq(kv_file_open(fs, ib, 0), 0);
	expect_content(fs, ib, b, size);
	expect_content(fs, ia, a, size);
	ck_assert_int_eq(kv_file_release(fs, ia), 0);
	ck_assert_int_eq(kv_file_release(fs, ib), 0);
	kv_fs_close(fs);
	free(a);
	free(b);
	free(got);
}
END_TEST

/* Small files (a last chunk of a few bytes) read back after a remount,
 * with every codec. */
START_TEST(test_small_files_persist)
{
	static const char *const codecs[] = { "lz4", "zstd", "zstd:3", "none" };
	char store[600], err[128], name[32];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint8_t data[64];
	int bad = 0;
	char first[128] = "";

	ck_assert_int_eq(kv_opt_set(&cfg, "codec", codecs[_i], err, sizeof(err)), 0);
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	for (int pat = 0; pat < 2; pat++) {
		for (size_t n = 1; n <= sizeof(data); n++) {
			snprintf(name, sizeof(name), "f%d-%zu", pat, n);
			for (size_t i = 0; i < n; i++)
				data[i] = pat ? (uint8_t)(i % 3) : 0;
			write_file(fs, KV_ROOT_INO, name, data, n);
		}
	}
	kv_fs_close(fs);
	fs = kvtest_open_fs(store, &cfg);
	for (int pat = 0; pat < 2; pat++) {
		for (size_t n = 1; n <= sizeof(data); n++) {
			uint64_t ino;
			uint8_t got[64];
			struct kv_readv rv;
			int rc;
			snprintf(name, sizeof(name), "f%d-%zu", pat, n);
			ino = lookup(fs, KV_ROOT_INO, name);
			ck_assert_uint_eq(size_of(fs, ino), n);
			for (size_t i = 0; i < n; i++)
				data[i] = pat ? (uint8_t)(i % 3) : 0;
			ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
			rc = kv_file_read(fs, ino, 0, n, &rv);
			if (rc == (int)n) {
				size_t got_n = 0;
				for (int i = 0; i < rv.n; i++) {
					memcpy(got + got_n, rv.iov[i].iov_base, rv.iov[i].iov_len);
					got_n += rv.iov[i].iov_len;
				}
				kv_file_read_done(fs, &rv);
				if (memcmp(got, data, n))
					rc = -1000;
			}
			if (rc != (int)n && !bad++)
				snprintf(first, sizeof(first),
					 "%zu-byte file (pattern %d): read %d", n, pat, rc);
			ck_assert_int_eq(kv_file_release(fs, ino), 0);
		}
	}
	ck_assert_msg(bad == 0, "codec=%s: %d small files unreadable after remount, first: %s",
		      codecs[_i], bad, first);
	kv_fs_close(fs);
}
END_TEST

/* A 1 MiB read (the largest FUSE read) over chunks that each need data
 * plus zero fill. */
START_TEST(test_large_read_short_chunks)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t size = 20 * CHUNK;
	uint8_t *shadow = calloc(1, size), *got = malloc(1 << 20);
	uint64_t ino;
	struct kv_readv rv;
	size_t n = 0;
	int rc;

	fs = new_fs_open_file(store, sizeof(store), &cfg, "f", &ino);
	rng_state = 3;
	for (int k = 0; k < 20; k++) {
		fill(shadow + (size_t)k * CHUNK, 100, 0);
		wr(fs, ino, shadow + (size_t)k * CHUNK, 100, (uint64_t)k * CHUNK);
		ck_assert_int_eq(kv_file_flush(fs, ino), 0); /* stored with raw 100 */
	}
	set_size(fs, ino, size);
	rc = kv_file_read(fs, ino, 50, 1 << 20, &rv);
	ck_assert_int_eq(rc, 1 << 20);
	for (int i = 0; i < rv.n; i++) {
		memcpy(got + n, rv.iov[i].iov_base, rv.iov[i].iov_len);
		n += rv.iov[i].iov_len;
	}
	kv_file_read_done(fs, &rv);
	ck_assert_uint_eq(n, 1 << 20);
	ck_assert_mem_eq(got, shadow + 50, 1 << 20);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);
	free(shadow);
	free(got);
}
END_TEST

/* Closing the filesystem with files still open publishes them. */
START_TEST(test_close_with_open_file)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t size = 2 * CHUNK + CHUNK / 2;
	uint8_t *data = malloc(size);
	uint64_t ino;

	fs = new_fs_open_file(store, sizeof(store), &cfg, "f", &ino);
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0); /* twice */
	rng_state = 17;
	fill(data, size, 1);
	wr(fs, ino, data, size, 0);
	kv_fs_close(fs);
	expect_after_remount(store, &cfg, "f", data, size);
	free(data);
}
END_TEST

/* ---- unlink ---- */

START_TEST(test_remove_open_file)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t size = 5 * CHUNK + 77;
	uint8_t *data = malloc(size);
	uint64_t ino, keep;
	struct kv_index_stats s;
	struct kv_attr a;
	blkcnt_t full, after;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	keep = mkfile(fs, KV_ROOT_INO, "keep");
	ino = mkfile(fs, KV_ROOT_INO, "doomed");
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	rng_state = 11;
	fill(data, size, 0); /* incompressible: records are big */
	wr(fs, ino, data, size, 0);
	ck_assert_int_eq(kv_file_fsync(fs, ino), 0);
	s = stats(fs);
	ck_assert_uint_eq(s.files, 2);
	ck_assert_uint_ge(s.stored, size);
	full = seg_blocks(store);
	ck_assert_int_ge(full, (blkcnt_t)(size / 512));

	ck_assert_int_eq(kv_fs_remove(fs, KV_ROOT_INO, "doomed", 0), 0);
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, "doomed", &a), -ENOENT);
	/* Still readable and writable while open. */
	ck_assert_int_eq(kv_fs_getattr(fs, ino, &a), 0);
	ck_assert_uint_eq(a.nlink, 0);
	expect_content(fs, ino, data, size);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	/* The kernel still holds its lookup reference: not gone yet. */
	ck_assert_uint_gt(stats(fs).stored, 0);
	kv_fs_forget(fs, ino, 1);
	s = stats(fs);
	ck_assert_uint_eq(s.files, 1);
	ck_assert_uint_eq(s.stored, 0);
	ck_assert_uint_eq(s.logical, 0);
	ck_assert_int_eq(kv_index_getattr(fs->ix, ino, &a), -ENOENT);
	after = seg_blocks(store);
	ck_assert_msg(after < full - (blkcnt_t)(size / 512) + 64, "segment blocks %lld -> %lld",
		      (long long)full, (long long)after);
	ck_assert_uint_eq(lookup(fs, KV_ROOT_INO, "keep"), keep);
	kv_fs_close(fs);

	/* The space stays free after a remount. */
	fs = kvtest_open_fs(store, &cfg);
	ck_assert_uint_eq(stats(fs).stored, 0);
	ck_assert_int_le(seg_blocks(store), after);
	kv_fs_close(fs);
	free(data);
}
END_TEST

/* Removed while open and never released: the store is cleaned up when the
 * filesystem closes, or on the next open after a crash. */
START_TEST(test_remove_open_then_close)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint8_t data[3000];
	uint64_t ino;

	fs = new_fs_open_file(store, sizeof(store), &cfg, "f", &ino);
	rng_state = 12;
	fill(data, sizeof(data), 0);
	wr(fs, ino, data, sizeof(data), 0);
	ck_assert_int_eq(kv_file_flush(fs, ino), 0);
	ck_assert_int_eq(kv_fs_remove(fs, KV_ROOT_INO, "f", 0), 0);
	kv_fs_close(fs);
	fs = kvtest_open_fs(store, &cfg);
	ck_assert_uint_eq(stats(fs).files, 0);
	ck_assert_uint_eq(stats(fs).stored, 0);
	kv_fs_close(fs);
}
END_TEST

START_TEST(test_remove_closed_file)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint8_t data[CHUNK * 2];
	uint64_t ino;

	fs = new_fs_open_file(store, sizeof(store), &cfg, "f", &ino);
	rng_state = 13;
	fill(data, sizeof(data), 1);
	wr(fs, ino, data, sizeof(data), 0);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_forget(fs, ino, 1); /* no references left */
	ck_assert_uint_gt(stats(fs).stored, 0);
	ck_assert_int_eq(kv_fs_remove(fs, KV_ROOT_INO, "f", 0), 0);
	ck_assert_uint_eq(stats(fs).stored, 0);
	ck_assert_uint_eq(stats(fs).files, 0);
	kv_fs_close(fs);
}
END_TEST

/* ---- namespace through kv_fs ---- */

struct names {
	int n;
	char v[16][32];
};

static int name_cb(void *arg, const char *name, size_t len, const struct kv_attr *a, uint64_t next)
{
	struct names *l = arg;

	(void)a;
	(void)next;
	if (l->n < 16 && len < 32) {
		memcpy(l->v[l->n], name, len);
		l->v[l->n][len] = 0;
	}
	l->n++;
	return 0;
}

START_TEST(test_namespace)
{
	char store[600], buf[64], longname[300];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	struct kv_attr a, in, out;
	uint64_t d, f, parent;
	struct names l;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	d = mkdir_fs(fs, KV_ROOT_INO, "d");
	f = mkfile(fs, d, "f");
	ck_assert_int_eq(
		kv_fs_mknod(fs, KV_ROOT_INO, "l", S_IFLNK | 0777, &kvtest_root_cred, "d/f", &a), 0);
	ck_assert_int_eq(kv_fs_readlink(fs, a.ino, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "d/f");
	ck_assert_int_eq(
		kv_fs_mknod(fs, KV_ROOT_INO, "d", S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
		-EEXIST);
	ck_assert_int_eq(kv_fs_mknod(fs, f, "x", S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
			 -ENOTDIR);
	memset(longname, 'n', 256);
	longname[256] = 0;
	ck_assert_int_eq(
		kv_fs_mknod(fs, KV_ROOT_INO, longname, S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
		-ENAMETOOLONG);
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, longname, &a), -ENAMETOOLONG);
	longname[255] = 0;
	ck_assert_int_eq(
		kv_fs_mknod(fs, KV_ROOT_INO, longname, S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
		0);
	ck_assert_int_eq(kv_fs_getattr(fs, KV_ROOT_INO, &a), 0);
	ck_assert_uint_eq(a.nlink, 3);

	/* Directories refuse data operations. */
	ck_assert_int_eq(kv_file_open(fs, d, 0), -EISDIR);
	memset(&in, 0, sizeof(in));
	ck_assert_int_eq(kv_fs_setattr(fs, d, &in, KV_SET_SIZE, &out), -EISDIR);

	/* Attributes. */
	in.mode = 0600;
	in.uid = 5;
	in.gid = 6;
	ck_assert_int_eq(kv_fs_setattr(fs, f, &in, KV_SET_MODE | KV_SET_UID | KV_SET_GID, &out), 0);
	ck_assert_uint_eq(out.mode, S_IFREG | 0600);
	ck_assert_uint_eq(out.uid, 5);
	ck_assert_uint_eq(out.gid, 6);
	ck_assert_int_eq(kv_fs_getattr(fs, f, &a), 0);
	ck_assert_uint_eq(a.mode, S_IFREG | 0600);

	/* Rename, and the parent follows. */
	ck_assert_int_eq(kv_fs_rename(fs, d, "f", KV_ROOT_INO, "g", 0), 0);
	ck_assert_uint_eq(lookup(fs, KV_ROOT_INO, "g"), f);
	ck_assert_int_eq(kv_fs_lookup(fs, d, "f", &a), -ENOENT);
	ck_assert_int_eq(kv_fs_rename(fs, KV_ROOT_INO, "d", d, "x", 0), -EINVAL);
	ck_assert_int_eq(kv_fs_parent(fs, d, &parent), 0);
	ck_assert_uint_eq(parent, KV_ROOT_INO);

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(kv_fs_readdir(fs, KV_ROOT_INO, 0, name_cb, &l), 0);
	/* Creation order of the entries; a renamed entry keeps its place. */
	ck_assert_int_eq(l.n, 4);
	ck_assert_str_eq(l.v[0], "d");
	ck_assert_str_eq(l.v[1], "g");
	ck_assert_str_eq(l.v[2], "l");
	ck_assert_uint_eq(strlen(l.v[3]), 0); /* the 255-byte name did not fit */

	/* xattrs: the user namespace only. */
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "user.k", "v", 1, 0), 0);
	ck_assert_int_eq(kv_fs_getxattr(fs, f, "user.k", buf, sizeof(buf)), 1);
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "trusted.k", "v", 1, 0), -EOPNOTSUPP);
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "user.", "v", 1, 0), -ERANGE);
	ck_assert_int_eq(kv_fs_getxattr(fs, f, "security.selinux", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_eq(kv_fs_listxattr(fs, f, NULL, 0), (int)sizeof("user.k"));
	ck_assert_int_eq(kv_fs_removexattr(fs, f, "user.k"), 0);
	ck_assert_int_eq(kv_fs_removexattr(fs, f, "user.k"), -ENODATA);

	/* Set-group-ID directories pass their group on, and the bit to
	 * subdirectories. */
	{
		struct kv_cred user = { 1000, 1000 };
		uint64_t sg = mkdir_fs(fs, KV_ROOT_INO, "sgid");
		memset(&in, 0, sizeof(in));
		in.mode = 02775;
		in.gid = 77;
		ck_assert_int_eq(kv_fs_setattr(fs, sg, &in, KV_SET_MODE | KV_SET_GID, &out), 0);
		ck_assert_int_eq(kv_fs_mknod(fs, sg, "f", S_IFREG | 0644, &user, NULL, &a), 0);
		ck_assert_uint_eq(a.gid, 77);
		ck_assert_uint_eq(a.uid, 1000);
		ck_assert_uint_eq(a.mode & S_ISGID, 0);
		ck_assert_int_eq(kv_fs_mknod(fs, sg, "d", S_IFDIR | 0755, &user, NULL, &a), 0);
		ck_assert_uint_eq(a.gid, 77);
		ck_assert_uint_ne(a.mode & S_ISGID, 0);
		ck_assert_int_eq(
			kv_fs_mknod(fs, KV_ROOT_INO, "plain", S_IFREG | 0644, &user, NULL, &a), 0);
		ck_assert_uint_eq(a.gid, 1000);
	}

	/* A removed directory takes no new entries. */
	ck_assert_int_eq(kv_fs_remove(fs, KV_ROOT_INO, "d", 1), 0);
	ck_assert_int_eq(kv_fs_mknod(fs, d, "late", S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
			 -ENOENT);
	ck_assert_int_eq(kv_fs_getattr(fs, KV_ROOT_INO, &a), 0);
	ck_assert_uint_eq(a.nlink, 3); /* sgid is left */
	kv_fs_close(fs);
}
END_TEST

/* ---- the rules a mount keeps (fs.h), which the FUSE layer only passes on ---- */

/* No hard links, no device nodes, symlink targets up to KV_LINK_MAX bytes,
 * only the rename flags kvfs knows. */
START_TEST(test_mount_rules)
{
	char store[600], *target, buf[KV_LINK_MAX + 2];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	struct kv_attr a;
	uint64_t d, f;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	d = mkdir_fs(fs, KV_ROOT_INO, "d");
	f = mkfile(fs, d, "f");

	/* A file belongs to exactly one context: hard links are refused. */
	ck_assert_int_eq(kv_fs_link(fs, f, KV_ROOT_INO, "h", &a), -EPERM);
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, "h", &a), -ENOENT);

	/* Device nodes are refused; FIFOs and sockets are made. */
	ck_assert_int_eq(kv_fs_mknod(fs, d, "c", S_IFCHR | 0644, &kvtest_root_cred, NULL, &a),
			 -EPERM);
	ck_assert_int_eq(kv_fs_mknod(fs, d, "b", S_IFBLK | 0644, &kvtest_root_cred, NULL, &a),
			 -EPERM);
	ck_assert_int_eq(kv_fs_lookup(fs, d, "c", &a), -ENOENT);
	ck_assert_int_eq(kv_fs_lookup(fs, d, "b", &a), -ENOENT);
	ck_assert_int_eq(kv_fs_mknod(fs, d, "p", S_IFIFO | 0600, &kvtest_root_cred, NULL, &a), 0);
	ck_assert_uint_eq(a.mode, S_IFIFO | 0600);
	ck_assert_int_eq(kv_fs_mknod(fs, d, "s", S_IFSOCK | 0600, &kvtest_root_cred, NULL, &a), 0);
	ck_assert_uint_eq(a.mode, S_IFSOCK | 0600);

	/* Symlink targets: KV_LINK_MAX bytes, not one more. */
	target = malloc(KV_LINK_MAX + 2);
	ck_assert_ptr_nonnull(target);
	memset(target, 't', KV_LINK_MAX + 1);
	target[KV_LINK_MAX + 1] = 0;
	ck_assert_int_eq(kv_fs_mknod(fs, d, "long", S_IFLNK | 0777, &kvtest_root_cred, target, &a),
			 -ENAMETOOLONG);
	ck_assert_int_eq(kv_fs_lookup(fs, d, "long", &a), -ENOENT);
	target[KV_LINK_MAX] = 0;
	ck_assert_int_eq(kv_fs_mknod(fs, d, "max", S_IFLNK | 0777, &kvtest_root_cred, target, &a),
			 0);
	ck_assert_int_eq(kv_fs_readlink(fs, a.ino, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, target);
	free(target);

	/* Rename flags other than RENAME_NOREPLACE and RENAME_EXCHANGE. */
	ck_assert_int_eq(kv_fs_rename(fs, d, "f", d, "g", RENAME_WHITEOUT), -EINVAL);
	ck_assert_int_eq(kv_fs_rename(fs, d, "f", d, "g", 1u << 7), -EINVAL);
	ck_assert_uint_eq(lookup(fs, d, "f"), f);
	ck_assert_int_eq(kv_fs_rename(fs, d, "f", d, "g", RENAME_NOREPLACE), 0);
	kv_fs_close(fs);
}
END_TEST

/* What a handle lets the GPU ioctls do, and whose errors a close takes. */
START_TEST(test_handle_rights)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint64_t d, f;

	ck_assert_uint_eq(kv_fs_handle_rights(kv_fs_handle(O_RDONLY)), KV_FH_READ);
	ck_assert_uint_eq(kv_fs_handle_rights(kv_fs_handle(O_WRONLY)), KV_FH_WRITE);
	ck_assert_uint_eq(kv_fs_handle_rights(kv_fs_handle(O_RDWR)), KV_FH_READ | KV_FH_WRITE);
	ck_assert_uint_eq(kv_fs_handle_rights(kv_fs_handle(O_RDONLY | O_TRUNC | O_APPEND)),
			  KV_FH_READ);
	ck_assert_uint_eq(kv_fs_handle_rights(kv_fs_handle(O_WRONLY | O_CREAT | O_EXCL)),
			  KV_FH_WRITE);
	/* No handle (a directory's): nothing. */
	ck_assert_uint_eq(kv_fs_handle_rights(0), 0);

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	d = mkdir_fs(fs, KV_ROOT_INO, "d");
	f = mkfile(fs, d, "f");
	ck_assert_int_eq(kv_file_open(fs, f, 0), 0);
	ck_assert_int_eq(kv_fs_flush(fs, f, kv_fs_handle(O_RDONLY)), 0);
	ck_assert_int_eq(kv_fs_flush(fs, f, kv_fs_handle(O_WRONLY)), 0);
	ck_assert_int_eq(kv_file_release(fs, f), 0);
	/* A flush error (any will do: a directory's) reaches a writer's close,
	 * not a reader's. */
	ck_assert_int_eq(kv_file_flush(fs, d), -EISDIR);
	ck_assert_int_eq(kv_fs_flush(fs, d, kv_fs_handle(O_RDONLY)), 0);
	ck_assert_int_eq(kv_fs_flush(fs, d, kv_fs_handle(O_WRONLY)), -EISDIR);
	ck_assert_int_eq(kv_fs_flush(fs, d, kv_fs_handle(O_RDWR)), -EISDIR);
	kv_fs_close(fs);
}
END_TEST

/* The text a control file gives to a read from offset 0 (at most len - 1
 * bytes), through its table as a mount reads it. */
static size_t ctl_text(struct kv_fs *fs, uint64_t ino, char *out, size_t len)
{
	const struct kv_ops *o = kv_ops_of(ino);
	unsigned cache = 0;
	struct kv_readv rv;
	uint64_t fh;
	int n;

	ck_assert_int_eq(o->open(fs, ino, O_RDONLY, &fh, &cache), 0);
	ck_assert_uint_eq(cache, KV_OPEN_DIRECT_IO);
	n = o->read(fs, ino, fh, 0, len - 1, &rv);
	ck_assert_int_ge(n, 0);
	ck_assert_int_eq(rv.n, 1);
	ck_assert_uint_eq(rv.iov[0].iov_len, (size_t)n);
	memcpy(out, rv.iov[0].iov_base, (size_t)n);
	out[n] = 0;
	kv_file_read_done(fs, &rv);
	ck_assert_int_eq(o->release(fs, ino, fh), 0);
	return (size_t)n;
}

/* The one dispatch point: control inodes, the root's .kvfs and the entries
 * in it go to kv_ctl_ops, everything else to kv_fs_ops. */
START_TEST(test_ctl_dispatch)
{
	ck_assert_ptr_eq(kv_ops_of(KV_ROOT_INO), &kv_fs_ops);
	ck_assert_ptr_eq(kv_ops_of(KV_ROOT_INO + 1), &kv_fs_ops);
	ck_assert_ptr_eq(kv_ops_of(KV_CTL_DIR - 1), &kv_fs_ops);
	for (uint64_t i = 0; i <= 3; i++)
		ck_assert_ptr_eq(kv_ops_of(KV_CTL_DIR + i), &kv_ctl_ops);
	ck_assert_ptr_eq(kv_ops_of(KV_CTL_DIR + 4), &kv_fs_ops);

	ck_assert_ptr_eq(kv_ops_of_entry(KV_ROOT_INO, KV_CTL_NAME), &kv_ctl_ops);
	ck_assert_ptr_eq(kv_ops_of_entry(KV_ROOT_INO, "ns"), &kv_fs_ops);
	ck_assert_ptr_eq(kv_ops_of_entry(KV_ROOT_INO, ".kvfsx"), &kv_fs_ops);
	ck_assert_ptr_eq(kv_ops_of_entry(KV_ROOT_INO + 1, KV_CTL_NAME), &kv_fs_ops);
	ck_assert_ptr_eq(kv_ops_of_entry(KV_CTL_DIR, "stats"), &kv_ctl_ops);
	ck_assert_ptr_eq(kv_ops_of_entry(KV_CTL_DIR, "x"), &kv_ctl_ops);

	ck_assert_ptr_eq(kv_ops_of_rename(KV_ROOT_INO, "a", KV_ROOT_INO, "b"), &kv_fs_ops);
	ck_assert_ptr_eq(kv_ops_of_rename(KV_ROOT_INO, KV_CTL_NAME, KV_ROOT_INO, "b"), &kv_ctl_ops);
	ck_assert_ptr_eq(kv_ops_of_rename(KV_ROOT_INO, "a", KV_ROOT_INO, KV_CTL_NAME), &kv_ctl_ops);
	ck_assert_ptr_eq(kv_ops_of_rename(KV_ROOT_INO, "a", KV_CTL_DIR, "b"), &kv_ctl_ops);
	ck_assert_ptr_eq(kv_ops_of_rename(KV_CTL_DIR, "stats", KV_ROOT_INO, "b"), &kv_ctl_ops);
}
END_TEST

/* .kvfs through the requests of a mount: reserved in the root, its files
 * read (stats, config) or written (evict), nothing else. */
START_TEST(test_ctl_requests)
{
	char store[600], text[16384], buf[64];
	struct kv_config cfg = kvtest_small_config();
	const struct kv_ops *o;
	struct kv_fs *fs;
	struct kv_attr a, in;
	struct names l;
	enum kv_neg neg = KV_NEG_KEEP;
	unsigned cache = 0, rights = 0;
	uint64_t f, pino, fh;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	f = mkfile(fs, KV_ROOT_INO, "f");

	/* Lookups: no kernel references, and a miss is an error. */
	o = kv_ops_of_entry(KV_ROOT_INO, KV_CTL_NAME);
	ck_assert_int_eq(o->lookup(fs, KV_ROOT_INO, KV_CTL_NAME, &a, &neg), 0);
	ck_assert_uint_eq(a.ino, KV_CTL_DIR);
	ck_assert_uint_eq(a.mode, S_IFDIR | 0755);
	ck_assert_int_eq(kv_ops_of(a.ino)->ref(fs, &a), 0);
	o = kv_ops_of_entry(KV_CTL_DIR, "stats");
	ck_assert_int_eq(o->lookup(fs, KV_CTL_DIR, "stats", &a, &neg), 0);
	ck_assert_uint_eq(a.ino, KV_CTL_DIR + 1);
	ck_assert_uint_eq(a.mode, S_IFREG | 0444);
	ck_assert_int_eq(o->lookup(fs, KV_CTL_DIR, "evict", &a, &neg), 0);
	ck_assert_uint_eq(a.mode, S_IFREG | 0200);
	ck_assert_int_eq(o->lookup(fs, KV_CTL_DIR, "nope", &a, &neg), -ENOENT);
	ck_assert_int_eq(neg, KV_NEG_NONE);
	/* The namespace never holds the name. */
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, KV_CTL_NAME, &a), -ENOENT);

	/* Reserved: .kvfs cannot be made, removed or renamed, nor anything
	 * in it. */
	o = kv_ops_of_entry(KV_ROOT_INO, KV_CTL_NAME);
	ck_assert_int_eq(
		o->mknod(fs, KV_ROOT_INO, KV_CTL_NAME, S_IFDIR | 0755, &kvtest_root_cred, NULL, &a),
		-EEXIST);
	ck_assert_int_eq(o->create(fs, KV_ROOT_INO, KV_CTL_NAME, 0644, &kvtest_root_cred,
				   O_WRONLY | O_CREAT, &a, &fh, &cache),
			 -EEXIST);
	ck_assert_int_eq(o->remove(fs, KV_ROOT_INO, KV_CTL_NAME, 1), -EPERM);
	ck_assert_int_eq(o->remove(fs, KV_ROOT_INO, KV_CTL_NAME, 0), -EPERM);
	o = kv_ops_of_entry(KV_CTL_DIR, "x");
	ck_assert_int_eq(o->mknod(fs, KV_CTL_DIR, "x", S_IFREG | 0644, &kvtest_root_cred, NULL, &a),
			 -EPERM);
	ck_assert_int_eq(o->mknod(fs, KV_CTL_DIR, "l", S_IFLNK | 0777, &kvtest_root_cred, "f", &a),
			 -EPERM);
	ck_assert_int_eq(
		o->create(fs, KV_CTL_DIR, "x", 0644, &kvtest_root_cred, O_WRONLY, &a, &fh, &cache),
		-EPERM);
	ck_assert_int_eq(o->remove(fs, KV_CTL_DIR, "stats", 0), -EPERM);
	ck_assert_int_eq(kv_ops_of_entry(KV_CTL_DIR, "h")->link(fs, f, KV_CTL_DIR, "h", &a), -EPERM);
	o = kv_ops_of_rename(KV_ROOT_INO, KV_CTL_NAME, KV_ROOT_INO, "y");
	ck_assert_int_eq(o->rename(fs, KV_ROOT_INO, KV_CTL_NAME, KV_ROOT_INO, "y", 0), -EPERM);
	ck_assert_int_eq(o->rename(fs, KV_ROOT_INO, KV_CTL_NAME, KV_ROOT_INO, "y", RENAME_WHITEOUT),
			 -EINVAL);
	o = kv_ops_of_rename(KV_ROOT_INO, "f", KV_ROOT_INO, KV_CTL_NAME);
	ck_assert_int_eq(o->rename(fs, KV_ROOT_INO, "f", KV_ROOT_INO, KV_CTL_NAME, 0), -EPERM);
	ck_assert_int_eq(o->rename(fs, KV_ROOT_INO, "f", KV_ROOT_INO, KV_CTL_NAME, RENAME_EXCHANGE),
			 -EPERM);
	o = kv_ops_of_rename(KV_ROOT_INO, "f", KV_CTL_DIR, "f");
	ck_assert_int_eq(o->rename(fs, KV_ROOT_INO, "f", KV_CTL_DIR, "f", 0), -EPERM);
	o = kv_ops_of_rename(KV_CTL_DIR, "stats", KV_ROOT_INO, "s");
	ck_assert_int_eq(o->rename(fs, KV_CTL_DIR, "stats", KV_ROOT_INO, "s", 0), -EPERM);
	ck_assert_uint_eq(lookup(fs, KV_ROOT_INO, "f"), f);
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, KV_CTL_NAME, &a), -ENOENT);
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, "s", &a), -ENOENT);
	ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, "y", &a), -ENOENT);

	/* Attributes: only a size (a truncate before writing evict), which
	 * changes nothing. */
	o = kv_ops_of(KV_CTL_DIR + 3);
	memset(&in, 0, sizeof(in));
	in.mode = 0777;
	ck_assert_int_eq(o->setattr(fs, KV_CTL_DIR + 3, &in, KV_SET_SIZE, &a), 0);
	ck_assert_uint_eq(a.mode, S_IFREG | 0200);
	ck_assert_uint_eq(a.size, 0);
	ck_assert_int_eq(o->setattr(fs, KV_CTL_DIR + 3, &in, KV_SET_MODE, &a), -EPERM);
	ck_assert_int_eq(o->setattr(fs, KV_CTL_DIR, &in, KV_SET_MTIME | KV_SET_SIZE, &a), -EPERM);
	ck_assert_int_eq(o->getattr(fs, KV_CTL_DIR + 3, &a), 0);
	ck_assert_uint_eq(a.mode, S_IFREG | 0200);

	/* The directory: its three files, and the root above it. */
	o = kv_ops_of(KV_CTL_DIR);
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(o->readdir(fs, KV_CTL_DIR, 0, name_cb, &l), 0);
	ck_assert_int_eq(l.n, 3);
	ck_assert_str_eq(l.v[0], "stats");
	ck_assert_str_eq(l.v[1], "config");
	ck_assert_str_eq(l.v[2], "evict");
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(o->readdir(fs, KV_CTL_DIR, 2, name_cb, &l), 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.v[0], "evict");
	ck_assert_int_eq(o->parent(fs, KV_CTL_DIR, &pino), 0);
	ck_assert_uint_eq(pino, KV_ROOT_INO);
	/* ... which does not list it. */
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(kv_ops_of(KV_ROOT_INO)->readdir(fs, KV_ROOT_INO, 0, name_cb, &l), 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.v[0], "f");

	/* Open files: stats and config are read, evict written. */
	ctl_text(fs, KV_CTL_DIR + 1, text, sizeof(text));
	ck_assert_ptr_nonnull(strstr(text, "\nkvfs_files 1\n"));
	ctl_text(fs, KV_CTL_DIR + 2, text, sizeof(text));
	ck_assert_ptr_nonnull(strstr(text, "chunk=65536\n"));
	o = kv_ops_of(KV_CTL_DIR + 1);
	ck_assert_int_eq(o->open(fs, KV_CTL_DIR + 1, O_WRONLY, &fh, &cache), -EACCES);
	ck_assert_int_eq(o->open(fs, KV_CTL_DIR + 1, O_RDWR, &fh, &cache), -EACCES);
	ck_assert_int_eq(o->open(fs, KV_CTL_DIR + 3, O_RDONLY, &fh, &cache), -EACCES);
	ck_assert_int_eq(o->open(fs, KV_CTL_DIR + 3, O_WRONLY | O_TRUNC, &fh, &cache), 0);
	ck_assert_int_eq(o->write(fs, KV_CTL_DIR + 3, fh, "1G\n", 3, 0), 3);
	ck_assert_int_eq(o->write(fs, KV_CTL_DIR + 3, fh, "lots", 4, 0), -EINVAL);
	ck_assert_int_eq(o->write(fs, KV_CTL_DIR + 3, fh, "", 0, 0), -EINVAL);
	ck_assert_int_eq(o->write(fs, KV_CTL_DIR + 1, fh, "1G", 2, 0), -EACCES);
	ck_assert_int_eq(o->flush(fs, KV_CTL_DIR + 3, fh), 0);
	ck_assert_int_eq(o->fsync(fs, KV_CTL_DIR + 3, fh), 0);
	ck_assert_int_eq(o->release(fs, KV_CTL_DIR + 3, fh), 0);

	/* No xattrs, and no ioctls, not even a QUERY. */
	ck_assert_int_eq(o->setxattr(fs, KV_CTL_DIR + 1, "user.k", "v", 1, 0), -EPERM);
	ck_assert_int_eq(o->getxattr(fs, KV_CTL_DIR + 1, "user.k", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_eq(o->listxattr(fs, KV_CTL_DIR, buf, sizeof(buf)), 0);
	ck_assert_int_eq(o->removexattr(fs, KV_CTL_DIR + 1, "user.k"), -EPERM);
	ck_assert_int_eq(o->gpu(fs, KV_CTL_DIR + 1, 0, 0, KV_GPU_QUERY, &rights), -ENOTTY);
	ck_assert_int_eq(o->gpu(fs, KV_CTL_DIR + 1, 0, 0, KV_GPU_IO, &rights), -ENOTTY);
	ck_assert_int_eq(o->gpu(fs, KV_CTL_DIR, 0, 1, -EINVAL, &rights), -ENOTTY);
	kv_fs_close(fs);
}
END_TEST

/* The namespace's table: how misses may be remembered, what create makes,
 * the sizes setattr takes, what a handle lets the GPU ioctls do. */
START_TEST(test_fs_requests)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	const struct kv_ops *o = &kv_fs_ops;
	struct kv_fs *fs;
	struct kv_attr a, in, out;
	enum kv_neg neg;
	unsigned cache = 0, rights;
	uint8_t data[100] = { 7 };
	uint64_t ns, ctx, fh;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg); /* context_depth 2: <ns>/<context>/ */
	ns = mkdir_fs(fs, KV_ROOT_INO, "ns");
	ctx = mkdir_fs(fs, ns, "ctx");

	/* A miss below a context is remembered; a namespace's or a
	 * context's name is asked about again. */
	neg = KV_NEG_NONE;
	ck_assert_int_eq(o->lookup(fs, KV_ROOT_INO, "none", &a, &neg), -ENOENT);
	ck_assert_int_eq(neg, KV_NEG_ASK);
	neg = KV_NEG_NONE;
	ck_assert_int_eq(o->lookup(fs, ns, "none", &a, &neg), -ENOENT);
	ck_assert_int_eq(neg, KV_NEG_ASK);
	ck_assert_int_eq(o->lookup(fs, ctx, "layer0", &a, &neg), -ENOENT);
	ck_assert_int_eq(neg, KV_NEG_KEEP);
	ck_assert_int_eq(o->lookup(fs, ns, "ctx", &a, &neg), 0);
	ck_assert_uint_eq(a.ino, ctx);
	ck_assert_int_eq(o->ref(fs, &a), 1);
	o->forget(fs, ctx, 2);

	/* create: a regular file with the mode's permission bits, open. */
	ck_assert_int_eq(o->create(fs, ctx, "layer0", S_IFCHR | 02640, &kvtest_root_cred,
				   O_WRONLY | O_CREAT | O_TRUNC, &a, &fh, &cache),
			 0);
	ck_assert_uint_eq(a.mode, S_IFREG | 02640);
	ck_assert_uint_eq(cache, KV_OPEN_KEEP_CACHE);
	ck_assert_int_eq(o->write(fs, a.ino, fh, data, sizeof(data), 0), (ssize_t)sizeof(data));
	ck_assert_int_eq(o->flush(fs, a.ino, fh), 0);
	ck_assert_int_eq(o->fsync(fs, a.ino, fh), 0);
	ck_assert_int_eq(o->gpu(fs, a.ino, fh, 0, KV_GPU_IO, &rights), 0);
	ck_assert_uint_eq(rights, KV_FH_WRITE);
	ck_assert_int_eq(o->release(fs, a.ino, fh), 0);
	ck_assert_uint_eq(size_of(fs, a.ino), sizeof(data));
	o->forget(fs, a.ino, 1);

	/* open: O_TRUNC truncates; the access mode makes the rights. */
	ck_assert_int_eq(o->open(fs, a.ino, O_RDWR, &fh, &cache), 0);
	ck_assert_int_eq(o->gpu(fs, a.ino, fh, 0, KV_GPU_IO, &rights), 0);
	ck_assert_uint_eq(rights, KV_FH_READ | KV_FH_WRITE);
	ck_assert_int_eq(o->release(fs, a.ino, fh), 0);
	ck_assert_uint_eq(size_of(fs, a.ino), sizeof(data));
	ck_assert_int_eq(o->open(fs, a.ino, O_RDONLY, &fh, &cache), 0);
	ck_assert_int_eq(o->gpu(fs, a.ino, fh, 0, KV_GPU_IO, &rights), 0);
	ck_assert_uint_eq(rights, KV_FH_READ);
	ck_assert_int_eq(o->release(fs, a.ino, fh), 0);
	ck_assert_int_eq(o->open(fs, a.ino, O_WRONLY | O_TRUNC, &fh, &cache), 0);
	ck_assert_uint_eq(size_of(fs, a.ino), 0);
	ck_assert_int_eq(o->release(fs, a.ino, fh), 0);

	/* GPU ioctls: a command that did not decode keeps its error; a QUERY
	 * needs no file; reads and writes need one. */
	ck_assert_int_eq(o->gpu(fs, ctx, 0, 1, -ENOTTY, &rights), -ENOTTY);
	ck_assert_int_eq(o->gpu(fs, ctx, 0, 1, -EINVAL, &rights), -EINVAL);
	ck_assert_int_eq(o->gpu(fs, ctx, 0, 1, KV_GPU_QUERY, &rights), 0);
	ck_assert_int_eq(o->gpu(fs, ctx, 0, 1, KV_GPU_IO, &rights), -EISDIR);

	/* A size from a negative off_t; the core alone calls it too large. */
	memset(&in, 0, sizeof(in));
	in.size = (uint64_t)INT64_MAX + 1;
	ck_assert_int_eq(o->setattr(fs, a.ino, &in, KV_SET_SIZE, &out), -EINVAL);
	in.size = UINT64_MAX;
	ck_assert_int_eq(o->setattr(fs, a.ino, &in, KV_SET_SIZE, &out), -EINVAL);
	ck_assert_int_eq(kv_fs_setattr(fs, a.ino, &in, KV_SET_SIZE, &out), -EFBIG);
	in.size = 5;
	ck_assert_int_eq(o->setattr(fs, a.ino, &in, KV_SET_SIZE, &out), 0);
	ck_assert_uint_eq(out.size, 5);
	kv_fs_close(fs);
}
END_TEST

/* Renaming over an open file: it stays usable until released, then its
 * records are freed. */
START_TEST(test_rename_over_open_file)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint8_t a[3000], b[CHUNK + 500];
	uint64_t ia, ib;
	struct kv_attr at;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	ia = mkfile(fs, KV_ROOT_INO, "a");
	ib = mkfile(fs, KV_ROOT_INO, "b");
	rng_state = 21;
	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 0);
	ck_assert_int_eq(kv_file_open(fs, ia, 0), 0);
	wr(fs, ia, a, sizeof(a), 0);
	ck_assert_int_eq(kv_file_release(fs, ia), 0);
	ck_assert_int_eq(kv_file_open(fs, ib, 0), 0);
	wr(fs, ib, b, sizeof(b), 0);
	ck_assert_int_eq(kv_file_flush(fs, ib), 0);

	ck_assert_int_eq(kv_fs_rename(fs, KV_ROOT_INO, "a", KV_ROOT_INO, "b", 0), 0);
	ck_assert_uint_eq(lookup(fs, KV_ROOT_INO, "b"), ia);
	ck_assert_int_eq(kv_fs_getattr(fs, ib, &at), 0);
	ck_assert_uint_eq(at.nlink, 0);
	expect_content(fs, ib, b, sizeof(b));
	ck_assert_int_eq(kv_file_release(fs, ib), 0);
	kv_fs_forget(fs, ib, 1);
	ck_assert_int_eq(kv_index_getattr(fs->ix, ib, &at), -ENOENT);
	ck_assert_uint_eq(stats(fs).files, 1);
	ck_assert_uint_eq(stats(fs).logical, sizeof(a));
	expect_file(fs, ia, a, sizeof(a));
	kv_fs_close(fs);
}
END_TEST

/* A process that dies with files open: what it made durable is there, a
 * file it had unlinked while open is deleted by the next open, records and
 * all. */
START_TEST(test_crash_recovery)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	size_t size = 3 * CHUNK + 10;
	uint8_t *keep = malloc(size), *gone = malloc(size);
	uint64_t ino;
	blkcnt_t before;
	pid_t pid;
	int status;

	new_store_path(store, sizeof(store));
	rng_state = 31;
	fill(keep, size, 1);
	fill(gone, size, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child must not report to Check: plain exit codes. */
		char err[256];
		struct kv_fs *c = NULL;
		struct kv_attr a;
		if (kv_fs_open(store, &cfg, &c, err, sizeof(err)))
			_exit(10);
		if (kv_fs_mknod(c, KV_ROOT_INO, "keep", S_IFREG | 0644, &kvtest_root_cred, NULL, &a) ||
		    kv_file_open(c, a.ino, 0) ||
		    kv_file_write(c, a.ino, keep, size, 0) != (ssize_t)size ||
		    kv_file_fsync(c, a.ino))
			_exit(11);
		if (kv_fs_mknod(c, KV_ROOT_INO, "gone", S_IFREG | 0644, &kvtest_root_cred, NULL, &a) ||
		    kv_file_open(c, a.ino, 0) ||
		    kv_file_write(c, a.ino, gone, size, 0) != (ssize_t)size ||
		    kv_file_fsync(c, a.ino) || kv_fs_remove(c, KV_ROOT_INO, "gone", 0))
			_exit(12);
		_exit(0); /* no close, no release */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);

	before = seg_blocks(store);
	fs = kvtest_open_fs(store, &cfg);
	/* The orphan is gone: its row, and its records' space. */
	ck_assert_uint_eq(stats(fs).files, 1);
	ck_assert_msg(seg_blocks(store) <= before - (blkcnt_t)(size / 512) + 64,
		      "segment blocks %lld -> %lld", (long long)before,
		      (long long)seg_blocks(store));
	ino = lookup(fs, KV_ROOT_INO, "keep");
	{
		struct kv_attr a;
		ck_assert_int_eq(kv_fs_getattr(fs, ino, &a), 0);
		ck_assert_uint_eq(a.size, size);
		ck_assert_uint_eq(stats(fs).stored, a.stored);
		ck_assert_int_eq(kv_fs_lookup(fs, KV_ROOT_INO, "gone", &a), -ENOENT);
	}
	/* Life goes on after the recovery (which freed records in the last
	 * segment): the first write of this run must not hurt the old data. */
	write_file(fs, KV_ROOT_INO, "after", gone, size);
	expect_file(fs, ino, keep, size);
	kv_fs_close(fs);

	fs = kvtest_open_fs(store, &cfg);
	ino = lookup(fs, KV_ROOT_INO, "keep");
	expect_file(fs, ino, keep, size);
	ino = lookup(fs, KV_ROOT_INO, "after");
	expect_file(fs, ino, gone, size);
	kv_fs_close(fs);
	free(keep);
	free(gone);
}
END_TEST

START_TEST(test_write_limits)
{
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint8_t b[100] = { 1 };
	uint64_t ino, d;
	struct kv_attr in, out;
	struct kv_readv rv;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	ino = mkfile(fs, KV_ROOT_INO, "f");
	d = mkdir_fs(fs, KV_ROOT_INO, "d");
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	ck_assert_int_eq(kv_file_write(fs, ino, b, sizeof(b), -1), -EFBIG);
	ck_assert_int_eq(kv_file_write(fs, ino, b, sizeof(b), INT64_MAX - 10), -EFBIG);
	ck_assert_int_eq(kv_file_write(fs, ino, b, 0, 5), 0);
	ck_assert_uint_eq(size_of(fs, ino), 0);
	memset(&in, 0, sizeof(in));
	in.size = (uint64_t)INT64_MAX + 1;
	ck_assert_int_eq(kv_fs_setattr(fs, ino, &in, KV_SET_SIZE, &out), -EFBIG);
	ck_assert_uint_eq(size_of(fs, ino), 0);
	ck_assert_int_eq(kv_file_read(fs, ino, 0, 0, &rv), 0);
	kv_file_read_done(fs, &rv);
	ck_assert_int_eq(kv_file_write(fs, d, b, sizeof(b), 0), -EISDIR);
	ck_assert_int_eq(kv_file_read(fs, d, 0, 10, &rv), -EISDIR);
	ck_assert_int_eq(kv_file_read(fs, 999, 0, 10, &rv), -ENOENT);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);
}
END_TEST

/* One writer and two readers on the same file. Every 4 KiB block is always
 * written whole with words naming the block and a version, so any block a
 * reader sees must be zeros or one version of the right block. */
#define BLK 4096u
#define NBLK 256u

struct race {
	struct kv_fs *fs;
	uint64_t ino;
	atomic_int stop; /* the writer is done */
	atomic_int errors;
	char what[160];
};

static void *race_writer(void *arg)
{
	struct race *r = arg;
	uint64_t s = 99, version = 0;
	uint64_t *buf = malloc(8 * BLK);

	for (int op = 0; op < 1500 && !r->errors; op++) {
		uint64_t first, n;
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		first = (s >> 33) % NBLK;
		n = 1 + (s >> 20) % 8;
		if (first + n > NBLK)
			n = NBLK - first;
		version++;
		for (uint64_t k = 0; k < n; k++)
			for (unsigned w = 0; w < BLK / 8; w++)
				buf[k * BLK / 8 + w] = (first + k) << 32 | version;
		if (kv_file_write(r->fs, r->ino, buf, n * BLK, (off_t)(first * BLK)) !=
		    (ssize_t)(n * BLK)) {
			snprintf(r->what, sizeof(r->what), "write failed at op %d", op);
			r->errors++;
		}
		/* Each flush frees the records the writes since replaced,
		 * under readers that may be loading them. */
		if (op % 10 == 9 && kv_file_flush(r->fs, r->ino)) {
			snprintf(r->what, sizeof(r->what), "flush failed at op %d", op);
			r->errors++;
		}
	}
	r->stop = 1;
	free(buf);
	return NULL;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	uint64_t s = (uint64_t)(uintptr_t)&s;
	uint8_t *buf = malloc(32 * BLK);

	while (!r->stop && !r->errors) {
		uint64_t first, n, got = 0;
		struct kv_readv rv;
		int rc;
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		first = (s >> 33) % NBLK;
		n = 1 + (s >> 20) % 32;
		rc = kv_file_read(r->fs, r->ino, (off_t)(first * BLK), n * BLK, &rv);
		if (rc < 0) {
			snprintf(r->what, sizeof(r->what), "read failed: %d", rc);
			r->errors++;
			break;
		}
		if ((uint64_t)rc > n * BLK) {
			snprintf(r->what, sizeof(r->what), "read of %llu bytes returned %d",
				 (unsigned long long)(n * BLK), rc);
			r->errors++;
			kv_file_read_done(r->fs, &rv);
			break;
		}
		for (int i = 0; i < rv.n && got + rv.iov[i].iov_len <= n * BLK; i++) {
			memcpy(buf + got, rv.iov[i].iov_base, rv.iov[i].iov_len);
			got += rv.iov[i].iov_len;
		}
		kv_file_read_done(r->fs, &rv);
		if (got != (uint64_t)rc) {
			snprintf(r->what, sizeof(r->what), "read returned %d but iovecs hold %llu",
				 rc, (unsigned long long)got);
			r->errors++;
			break;
		}
		for (uint64_t k = 0; k < got / BLK; k++) {
			const uint64_t *w = (const uint64_t *)(buf + k * BLK);
			for (unsigned j = 1; j < BLK / 8; j++)
				if (w[j] != w[0])
					goto torn;
			if (w[0] && w[0] >> 32 != first + k)
				goto torn;
			continue;
torn:
			snprintf(r->what, sizeof(r->what), "block %llu torn or misplaced",
				 (unsigned long long)(first + k));
			r->errors++;
			break;
		}
	}
	free(buf);
	return NULL;
}

START_TEST(test_concurrent_read_write)
{
	char store[600], err[64];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	struct race r;
	pthread_t w, rd1, rd2;
	uint64_t damaged;

	/* A tiny tier, so that readers go to the store. */
	ck_assert_int_eq(kv_opt_set(&cfg, "ram", "256K", err, sizeof(err)), 0);
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	memset(&r, 0, sizeof(r));
	r.fs = fs;
	r.ino = mkfile(fs, KV_ROOT_INO, "shared");
	ck_assert_int_eq(kv_file_open(fs, r.ino, 0), 0);
	ck_assert_int_eq(pthread_create(&w, NULL, race_writer, &r), 0);
	ck_assert_int_eq(pthread_create(&rd1, NULL, race_reader, &r), 0);
	ck_assert_int_eq(pthread_create(&rd2, NULL, race_reader, &r), 0);
	pthread_join(w, NULL);
	pthread_join(rd1, NULL);
	pthread_join(rd2, NULL);
	ck_assert_msg(r.errors == 0, "%s", r.what);
	/* A reader that found its record freed meanwhile read again: that
	 * is no damage (issue 12, defect 8). */
	damaged = atomic_load(&fs->stats.checksum_errors);
	ck_assert_msg(damaged == 0, "%llu records counted as damaged", (unsigned long long)damaged);
	ck_assert_int_eq(kv_file_release(fs, r.ino), 0);
	kv_fs_close(fs);
}
END_TEST

/* A store that fails leaves its bytes buffered; its error is reported once,
 * to whichever call comes first. A close that waited for that store must
 * fail, even when a write took the error meanwhile: publishing the size
 * without the chunk made files that read zeros where data had been
 * written (seen by the crash test under a 1.5 MiB cap). Here every store
 * of the victim fails for lack of room while zero-length writes take the
 * error as often as they can. */
struct enospc_race {
	struct kv_fs *fs;
	uint64_t ino;
	atomic_int stop;
	atomic_int taken; /* writes that got the error */
};

static void *enospc_taker(void *arg)
{
	struct enospc_race *r = arg;
	uint8_t b = 0;

	while (!atomic_load(&r->stop))
		if (kv_file_write(r->fs, r->ino, &b, 0, 0) == -ENOSPC)
			atomic_fetch_add(&r->taken, 1);
	return NULL;
}

START_TEST(test_failed_store_never_published)
{
	enum { FLUSHES = 3000, PART = 1000 };
	char store[600], err[64], cap[32];
	struct kv_config cfg = kvtest_small_config();
	static uint8_t data[3 * CHUNK];
	struct enospc_race r = { 0 };
	struct kv_attr a;
	struct kv_fs *fs;
	uint64_t filler;
	pthread_t t;
	int zero = 0;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	/* Room for the filler's three records and half a victim record. */
	snprintf(cap, sizeof(cap), "%d", 3 * (CHUNK + KV_REC_HDR) + (PART + KV_REC_HDR) / 2);
	ck_assert_int_eq(kv_opt_set(&cfg, "codec", "none", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&cfg, "capacity", cap, err, sizeof(err)), 0);
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	r.fs = fs;
	r.ino = mkfile(fs, KV_ROOT_INO, "victim");
	ck_assert_int_eq(kv_file_open(fs, r.ino, 0), 0);
	/* Two partial chunks, so that a close hands both to the workers and
	 * waits for them with the lock dropped. */
	wr(fs, r.ino, data, PART, 0);
	wr(fs, r.ino, data, PART, CHUNK);
	filler = mkfile(fs, KV_ROOT_INO, "filler");
	ck_assert_int_eq(kv_file_open(fs, filler, 0), 0);
	wr(fs, filler, data, sizeof(data), 0);
	ck_assert_int_eq(kv_file_flush(fs, filler), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, enospc_taker, &r), 0);
	for (int i = 0; i < FLUSHES; i++) {
		int rc = kv_file_flush(fs, r.ino);
		if (rc == 0)
			zero++;
		else
			ck_assert_msg(rc == -ENOSPC, "flush %d: %s", i, strerror(-rc));
	}
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
	ck_assert_msg(zero == 0,
		      "%d of %d closes reported success for bytes never stored "
		      "(%d writes took the error)",
		      zero, FLUSHES, atomic_load(&r.taken));
	ck_assert_int_eq(kv_index_getattr(fs->ix, r.ino, &a), 0);
	ck_assert_uint_eq(a.size, 0);
	ck_assert_int_eq(kv_file_release(fs, r.ino), -ENOSPC);
	ck_assert_int_eq(kv_file_release(fs, filler), 0);
	kv_fs_close(fs);
}
END_TEST

static size_t rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &pages, &resident), 2);
	fclose(f);
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* One byte at a huge offset costs the chunks written, not the offset:
 * memory and time stay small from 2^45 to the last byte a file can have
 * (2^63 - 2), which is written, read back, kept across a remount and
 * truncated away; one byte further is EFBIG. */
START_TEST(test_sparse_offsets)
{
	static const uint64_t offs[] = { (uint64_t)1 << 45, (uint64_t)1 << 62, KV_FILE_MAX - 1 };
	char store[600];
	struct kv_fs *fs;
	struct kv_attr in, out;
	uint8_t b;
	uint64_t ino;
	size_t before;

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, NULL);
	ino = mkfile(fs, KV_ROOT_INO, "sparse");
	before = rss_bytes();
	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
		for (size_t i = 0; i < sizeof(offs) / sizeof(*offs); i++) {
			b = (uint8_t)(0x41 + i);
			if (!round)
				wr(fs, ino, &b, 1, offs[i]);
			ck_assert_uint_eq(rd(fs, ino, offs[i], 1, &b), 1);
			ck_assert_uint_eq(b, 0x41 + i);
			ck_assert_uint_eq(rd(fs, ino, offs[i] - 4096, 1, &b), 1);
			ck_assert_uint_eq(b, 0);
		}
		ck_assert_int_eq(kv_file_write(fs, ino, &b, 1, (off_t)KV_FILE_MAX), -EFBIG);
		ck_assert_uint_eq(size_of(fs, ino), KV_FILE_MAX);
		ck_assert_int_eq(kv_file_release(fs, ino), 0);
		if (!round) {
			kv_fs_close(fs);
			fs = kvtest_open_fs(store, NULL);
		}
	}
	ck_assert_msg(rss_bytes() < before + (64u << 20), "RSS grew from %zu to %zu bytes", before,
		      rss_bytes());
	memset(&in, 0, sizeof(in));
	in.size = ((uint64_t)1 << 45) + 1;
	ck_assert_int_eq(kv_fs_setattr(fs, ino, &in, KV_SET_SIZE, &out), 0);
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	ck_assert_uint_eq(rd(fs, ino, (uint64_t)1 << 45, 8, &b), 1);
	ck_assert_uint_eq(b, 0x41);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);
}
END_TEST

/* wbuf=: 2,000 open files each holding a few unwritten bytes keep at most
 * wbuf of buffers together; the chunks stored early take later writes
 * (read, changed, stored again) and every file reads back whole. */
START_TEST(test_write_buffer_budget)
{
	enum { NFILES = 2000 };
	char store[600], err[128], name[32];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	static uint64_t ino[NFILES];
	uint64_t max, most = 0;
	uint8_t got[64];

	ck_assert_int_eq(kv_opt_set(&cfg, "wbuf", "16M", err, sizeof(err)), 0);
	max = cfg.wbuf / cfg.chunk;
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < NFILES; i++) {
			char text[32];
			int n = snprintf(text, sizeof(text), "%c%07d", pass ? 'b' : 'a', i);
			if (!pass) {
				snprintf(name, sizeof(name), "f%d", i);
				ino[i] = mkfile(fs, KV_ROOT_INO, name);
				ck_assert_int_eq(kv_file_open(fs, ino[i], 0), 0);
			}
			wr(fs, ino[i], (const uint8_t *)text, (size_t)n, (uint64_t)pass * 8);
			n = (int)__atomic_load_n(&fs->wb_n, __ATOMIC_RELAXED); /* workers too */
			if ((uint64_t)n > most)
				most = (uint64_t)n;
		}
	}
	ck_assert_msg(most <= max + 2, "%llu buffers held, wbuf allows %llu",
		      (unsigned long long)most, (unsigned long long)max);
	for (int i = 0; i < NFILES; i++) {
		char want[32];
		snprintf(want, sizeof(want), "a%07db%07d", i, i);
		ck_assert_uint_eq(rd(fs, ino[i], 0, sizeof(got), got), 16);
		ck_assert_msg(!memcmp(got, want, 16), "file %d reads %.16s", i, (char *)got);
		ck_assert_int_eq(kv_file_release(fs, ino[i]), 0);
	}
	ck_assert_uint_eq(fs->wb_n, 0);
	kv_fs_close(fs);
	fs = kvtest_open_fs(store, &cfg);
	for (int i = 0; i < NFILES; i += 97) {
		char want[32];
		snprintf(want, sizeof(want), "a%07db%07d", i, i);
		ck_assert_int_eq(kv_file_open(fs, ino[i], 0), 0);
		ck_assert_uint_eq(rd(fs, ino[i], 0, sizeof(got), got), 16);
		ck_assert(!memcmp(got, want, 16));
		ck_assert_int_eq(kv_file_release(fs, ino[i]), 0);
	}
	kv_fs_close(fs);
}
END_TEST

/* ---- randomized ---- */

/* ~2000 mixed writes, truncates and reads of one file against a shadow
 * buffer, with chunk=64K. Variant 0 keeps the file open throughout;
 * variant 1 also flushes and releases/reopens it; variant 2 also closes
 * and reopens the whole store now and then; variant 3 is variant 2 with
 * ram=0, codec=zstd:3 and shuffle=4. */
START_TEST(test_random_ops)
{
	enum { OPS = 2000 };
	const size_t max_size = 20 * CHUNK + 1000;
	char store[600];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	uint8_t *shadow = calloc(1, max_size + 2 * CHUNK), *buf = malloc(3 * CHUNK),
		*got = malloc(max_size + 2 * CHUNK);
	size_t size = 0;
	uint64_t ino;
	int variant = _i;
	int counts[8] = { 0 };

	if (variant == 3) {
		/* No DRAM tier to hide the store; zstd with a 4-byte shuffle. */
		char err[128];
		ck_assert_int_eq(kv_opt_set(&cfg, "ram", "0", err, sizeof(err)), 0);
		ck_assert_int_eq(kv_opt_set(&cfg, "codec", "zstd:3", err, sizeof(err)), 0);
		ck_assert_int_eq(kv_opt_set(&cfg, "shuffle", "4", err, sizeof(err)), 0);
	}
	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	ino = mkfile(fs, KV_ROOT_INO, "rand");
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	rng_state = 0x1234567 + (uint64_t)variant;
	for (int op = 0; op < OPS; op++) {
		unsigned r = (unsigned)(rnd() % 100);
		if (r < 45) { /* write */
			uint64_t off = rnd() % max_size;
			size_t len = rnd() % 4 ? 1 + rnd() % 5000 : 1 + rnd() % (2 * CHUNK + 100);
			if (off + len > max_size)
				len = max_size - off;
			if (!len)
				continue;
			if (rnd() % 3 == 0)
				off -= off % CHUNK; /* chunk aligned */
			fill(buf, len, (int)(rnd() % 3));
			wr(fs, ino, buf, len, off);
			memcpy(shadow + off, buf, len);
			if (off + len > size)
				size = off + len;
			counts[0]++;
		} else if (r < 55) { /* truncate */
			uint64_t ns = rnd() % 2 ? rnd() % (size + 1) : rnd() % max_size;
			if (rnd() % 4 == 0)
				ns -= ns % CHUNK;
			set_size(fs, ino, ns);
			if (ns < size)
				memset(shadow + ns, 0, size - ns);
			size = ns;
			counts[1]++;
		} else if (r < 90) { /* read */
			uint64_t off = rnd() % (size + CHUNK);
			size_t len = 1 + rnd() % (3 * CHUNK);
			size_t want = off >= size ? 0 : off + len > size ? size - off : len;
			size_t n = rd(fs, ino, off, len, got);
			ck_assert_msg(n == want, "op %d: read %zu at %llu gave %zu, want %zu", op,
				      len, (unsigned long long)off, n, want);
			if (n && memcmp(got, shadow + off, n)) {
				size_t i = 0;
				while (got[i] == shadow[off + i])
					i++;
				ck_abort_msg("op %d: read %zu at %llu differs at file offset %llu "
					     "(size %zu)",
					     op, len, (unsigned long long)off,
					     (unsigned long long)(off + i), size);
			}
			counts[2]++;
		} else if (r < 95) {
			ck_assert_uint_eq(size_of(fs, ino), size);
			if (variant >= 1) {
				ck_assert_int_eq(rnd() % 2 ? kv_file_flush(fs, ino)
							   : kv_file_fsync(fs, ino),
						 0);
				counts[3]++;
			}
		} else if (variant >= 1) { /* release and reopen */
			ck_assert_int_eq(kv_file_release(fs, ino), 0);
			if (variant >= 2 && rnd() % 3 == 0) {
				kv_fs_close(fs);
				fs = kvtest_open_fs(store, &cfg);
				ino = lookup(fs, KV_ROOT_INO, "rand");
				counts[5]++;
			}
			ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
			ck_assert_uint_eq(size_of(fs, ino), size);
			counts[4]++;
		}
	}
	expect_content(fs, ino, shadow, size);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	kv_fs_close(fs);
	expect_after_remount(store, &cfg, "rand", shadow, size);
	/* The mix really happened. */
	ck_assert_int_gt(counts[0], 500);
	ck_assert_int_gt(counts[1], 100);
	ck_assert_int_gt(counts[2], 400);
	if (variant >= 1)
		ck_assert_int_gt(counts[4], 20);
	if (variant >= 2)
		ck_assert_int_gt(counts[5], 5);
	free(shadow);
	free(buf);
	free(got);
}
END_TEST

/* ---- threads ---- */

struct thr {
	struct kv_fs *fs;
	uint64_t ino;
	uint64_t seed;
	int errors;
	char what[128];
};

static void *writer_thread(void *arg)
{
	struct thr *t = arg;
	size_t size = 6 * CHUNK;
	uint8_t *shadow = calloc(1, size), *got = malloc(size), *buf = malloc(CHUNK + 1000);
	uint64_t s = t->seed;

	for (int op = 0; op < 300 && !t->errors; op++) {
		uint64_t off;
		size_t len;
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (s >> 20) % (size - 1);
		len = 1 + (s >> 40) % (CHUNK + 1000);
		if (off + len > size)
			len = size - off;
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(s >> (8 * (i % 8))) ^ (uint8_t)i;
		if (kv_file_write(t->fs, t->ino, buf, len, (off_t)off) != (ssize_t)len) {
			snprintf(t->what, sizeof(t->what), "write failed at op %d", op);
			t->errors++;
			break;
		}
		memcpy(shadow + off, buf, len);
		if (op % 10 == 0) {
			struct kv_readv rv;
			size_t n = 0;
			int rc = kv_file_read(t->fs, t->ino, 0, size, &rv);
			if (rc < 0) {
				snprintf(t->what, sizeof(t->what), "read failed at op %d: %d", op,
					 rc);
				t->errors++;
				break;
			}
			for (int i = 0; i < rv.n; i++) {
				memcpy(got + n, rv.iov[i].iov_base, rv.iov[i].iov_len);
				n += rv.iov[i].iov_len;
			}
			kv_file_read_done(t->fs, &rv);
			if (memcmp(got, shadow, n)) {
				snprintf(t->what, sizeof(t->what), "content differs at op %d", op);
				t->errors++;
			}
		}
		if (op % 50 == 0 && kv_file_flush(t->fs, t->ino)) {
			snprintf(t->what, sizeof(t->what), "flush failed at op %d", op);
			t->errors++;
		}
	}
	free(shadow);
	free(got);
	free(buf);
	return NULL;
}

START_TEST(test_threads)
{
	enum { T = 3 };
	char store[600], name[16];
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs;
	pthread_t th[T];
	struct thr t[T];

	new_store_path(store, sizeof(store));
	fs = kvtest_open_fs(store, &cfg);
	for (int i = 0; i < T; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		memset(&t[i], 0, sizeof(t[i]));
		t[i].fs = fs;
		t[i].ino = mkfile(fs, KV_ROOT_INO, name);
		t[i].seed = 1000 + (uint64_t)i;
		ck_assert_int_eq(kv_file_open(fs, t[i].ino, 0), 0);
	}
	for (int i = 0; i < T; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, writer_thread, &t[i]), 0);
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < T; i++) {
		ck_assert_msg(t[i].errors == 0, "thread %d: %s", i, t[i].what);
		ck_assert_int_eq(kv_file_release(fs, t[i].ino), 0);
	}
	kv_fs_close(fs);
}
END_TEST

static Suite *fs_suite(void)
{
	Suite *s = suite_create("fs");
	TCase *tc = kvtest_tcase(s, "open", 60);

	tcase_add_test(tc, test_open_new_store);
	tcase_add_test(tc, test_foreign_dir_refused);
	tcase_add_test(tc, test_second_open_busy);
	tcase_add_test(tc, test_lost_index_refused);
	tcase_add_test(tc, test_abandon);
	tcase_add_test(tc, test_context_depth_kept);
	tcase_add_test(tc, test_namespace);

	tc = kvtest_tcase(s, "rules", 60);
	tcase_add_test(tc, test_mount_rules);
	tcase_add_test(tc, test_handle_rights);
	tcase_add_test(tc, test_ctl_dispatch);
	tcase_add_test(tc, test_ctl_requests);
	tcase_add_test(tc, test_fs_requests);

	tc = kvtest_tcase(s, "data", 120);
	tcase_add_test(tc, test_write_read);
	tcase_add_loop_test(tc, test_truncate, 0, 2);
	tcase_add_loop_test(tc, test_partial_rewrite_persists, 0, 2);
	tcase_add_test(tc, test_remount_read_then_write);
	tcase_add_loop_test(tc, test_small_files_persist, 0, 4);
	tcase_add_test(tc, test_large_read_short_chunks);
	tcase_add_test(tc, test_close_with_open_file);
	tcase_add_test(tc, test_remove_open_file);
	tcase_add_test(tc, test_remove_open_then_close);
	tcase_add_test(tc, test_remove_closed_file);
	tcase_add_test(tc, test_rename_over_open_file);
	tcase_add_test(tc, test_crash_recovery);
	tcase_add_test(tc, test_write_limits);
	tcase_add_test(tc, test_threads);
	tcase_add_loop_test(tc, test_concurrent_read_write, 0, 3);
	tcase_add_test(tc, test_sparse_offsets);
	tcase_add_test(tc, test_write_buffer_budget);
	tcase_add_test(tc, test_failed_store_never_published);

	tc = kvtest_tcase(s, "random", 120);
	tcase_add_loop_test(tc, test_random_ops, 0, 4);
	return s;
}

int main(void) { return kvtest_run(fs_suite, "fs"); }
