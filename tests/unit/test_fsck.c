/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_fsck (src/tools/fsck.h): a store is built through kv_fs over
 * three runs (so three segments), damaged by editing its segment files
 * (payload and header bytes, a zeroed range, a torn segment tail, a
 * deleted segment), then checked and repaired. Which chunks are damaged is
 * worked out independently of fsck: a record is damaged when any of its
 * bytes changed, lie past the end of its segment, or its segment is gone. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_int.h"
#include "fsck.h"
#include "kvtest.h"
#include "kvtest_corrupt.h"
#include "kvtest_fs.h"

#define CHUNK (64u << 10)
#define NSEG 3

static struct kv_fs *fsck_open(const char *store)
{
	struct kv_fs *fs = NULL;
	char err[512] = "";

	ck_assert_msg(kv_fs_open_existing(store, &fs, err, sizeof(err)) == 0,
		      "kv_fs_open_existing: %s", err);
	return fs;
}

static uint64_t mknode(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode)
{
	struct kv_attr a;

	ck_assert_int_eq(kv_fs_mknod(fs, parent, name, mode, &kvtest_root_cred, NULL, &a), 0);
	return a.ino;
}

/* ---- the store: files with their content, written over NSEG runs ---- */

#define MAXF 16

struct tfile {
	const char *name;
	int run; /* the run (so the segment) that writes it */
	size_t size;
	int kind; /* 0 random, 1 fp16-like, 2 runs, 3 sparse, 4 real KV */
	uint64_t ino;
	uint8_t *data;
};

struct tstore {
	char path[1024];
	uint64_t ctx;
	struct tfile f[MAXF];
	int n;
};

static void fill(struct tfile *f)
{
	f->data = calloc(1, f->size + 1);
	ck_assert_ptr_nonnull(f->data);
	if (f->kind == 0)
		fill_random(f->data, f->size);
	else if (f->kind == 1)
		fill_fp16like(f->data, f->size);
	else if (f->kind == 2)
		for (size_t i = 0; i < f->size; i++)
			f->data[i] = (uint8_t)(i / 512);
	else if (f->kind == 3) /* chunks 0 and 4 only; 1..3 are holes */
		for (size_t c = 0; c < f->size / CHUNK; c += 4)
			fill_fp16like(f->data + c * CHUNK, CHUNK);
}

static void write_file(struct kv_fs *fs, uint64_t dir, struct tfile *f)
{
	f->ino = mknode(fs, dir, f->name, S_IFREG | 0644);
	ck_assert_int_eq(kv_file_open(fs, f->ino, 0), 0);
	for (size_t off = 0; off < f->size; off += CHUNK) {
		size_t n = f->size - off < CHUNK ? f->size - off : CHUNK;
		if (f->kind == 3 && (off / CHUNK) % 4)
			continue;
		ck_assert_int_eq(kv_file_write(fs, f->ino, f->data + off, n, (off_t)off),
				 (ssize_t)n);
	}
	ck_assert_int_eq(kv_file_release(fs, f->ino), 0);
}

static void add(struct tstore *s, const char *name, int run, size_t size, int kind)
{
	ck_assert_int_lt(s->n, MAXF);
	s->f[s->n++] = (struct tfile){ name, run, size, kind, 0, NULL };
}

/* Files go into /ns/ctx; run r writes segment r + 1, the files in the
 * order given, each published before the next. */
static void build(struct tstore *s)
{
	struct kv_config cfg = kvtest_small_config();
	size_t kvn = 0;
	uint8_t *kv = kvtest_load_kv("gpl3/layer0.k.f16", &kvn);

	memset(s, 0, sizeof(*s));
	rng_state = 0x9e3779b97f4a7c15ULL;
	kvtest_new_path(s->path, sizeof(s->path), "store");
	add(s, "fp16", 0, 5 * CHUNK + 1000, 1); /* payload byte flipped in chunk 2 */
	add(s, "random", 0, 3 * CHUNK, 0);      /* header byte flipped in chunk 0 */
	add(s, "small", 0, 1000, 1);            /* intact */
	add(s, "intact", 0, 6 * CHUNK, 1);      /* intact */
	add(s, "sparse", 0, 5 * CHUNK, 3);      /* payload byte flipped in chunk 4 */
	add(s, "gone1", 1, 3 * CHUNK + 5, 1);   /* segment 2 deleted */
	add(s, "gone2", 1, 2 * CHUNK, 0);
	add(s, "torn1", 2, 4 * CHUNK, 1); /* segment 3 torn in chunk 1 */
	add(s, "torn2", 2, 3 * CHUNK, 2);
	if (kv) {
		add(s, "kv", 0, kvn, 4); /* real fp16 KV, intact */
		s->f[s->n - 1].data = kv;
	}
	/* Last in its segment, so that the zeroed range hits nothing else. */
	add(s, "runs", 0, 4 * CHUNK + 17, 2); /* zeroed range from chunk 1 */
	for (int i = 0; i < s->n; i++)
		if (!s->f[i].data)
			fill(&s->f[i]);
	for (int run = 0; run < NSEG; run++) {
		struct kv_fs *fs = kvtest_open_fs(s->path, &cfg);
		if (run == 0) {
			uint64_t ns = mknode(fs, KV_ROOT_INO, "ns", S_IFDIR | 0755);
			s->ctx = mknode(fs, ns, "ctx", S_IFDIR | 0755);
		}
		for (int i = 0; i < s->n; i++)
			if (s->f[i].run == run)
				write_file(fs, s->ctx, &s->f[i]);
		kv_fs_close(fs);
	}
}

static void free_store(struct tstore *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->f[i].data);
}

static struct tfile *by_name(struct tstore *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->f[i].name, name))
			return &s->f[i];
	ck_abort_msg("no file %s", name);
	return NULL;
}

/* ---- chunk records, from the index ---- */

struct rec {
	uint64_t ino, idx;
	struct kv_loc loc;
	int damaged;
};

struct recs {
	struct rec v[512];
	int n;
	uint64_t cur;
};

static int add_rec(void *arg, const struct kv_chunk *c)
{
	struct recs *r = arg;

	ck_assert_int_lt(r->n, 512);
	r->v[r->n++] = (struct rec){ r->cur, c->idx, c->loc, 0 };
	return 0;
}

static void load_recs(struct kv_fs *fs, struct tstore *s, struct recs *r)
{
	r->n = 0;
	for (int i = 0; i < s->n; i++) {
		r->cur = s->f[i].ino;
		ck_assert_int_eq(kv_index_chunks(fs->ix, r->cur, add_rec, r), 0);
	}
}

static struct rec *rec_of(struct recs *r, uint64_t ino, uint64_t idx)
{
	for (int i = 0; i < r->n; i++)
		if (r->v[i].ino == ino && r->v[i].idx == idx)
			return &r->v[i];
	ck_abort_msg("no record for inode %llu chunk %llu", (unsigned long long)ino,
		     (unsigned long long)idx);
	return NULL;
}

/* ---- damage ---- */

static void seg_path(const struct tstore *s, uint32_t seg, char *buf, size_t len)
{
	snprintf(buf, len, "%s/segments/%08x.seg", s->path, seg);
}

struct segs {
	uint8_t *data[NSEG + 1];
	size_t len[NSEG + 1];
};

static void snapshot(const struct tstore *s, struct segs *g)
{
	memset(g, 0, sizeof(*g));
	for (uint32_t seg = 1; seg <= NSEG; seg++) {
		char p[1100];
		seg_path(s, seg, p, sizeof(p));
		g->data[seg] = kvtest_read_file(p, &g->len[seg]);
		if (!g->data[seg])
			g->len[seg] = 0;
	}
}

static void free_snapshot(struct segs *g)
{
	for (int i = 0; i <= NSEG; i++)
		free(g->data[i]);
}

static void patch(const struct tstore *s, uint32_t seg, uint64_t off, const void *bytes, size_t n)
{
	char p[1100];
	FILE *f;

	seg_path(s, seg, p, sizeof(p));
	f = fopen(p, "r+b");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, (long)off, SEEK_SET), 0);
	ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
	ck_assert_int_eq(fclose(f), 0);
}

static void flip(const struct tstore *s, const struct kv_loc *l, uint64_t at, uint8_t mask)
{
	char p[1100];
	size_t n;
	uint8_t *d;

	seg_path(s, l->seg, p, sizeof(p));
	d = kvtest_slurp(p, &n);
	ck_assert_uint_lt(l->off + at, n);
	d[l->off + at] ^= mask;
	patch(s, l->seg, l->off + at, d + l->off + at, 1);
	free(d);
}

/* The oracle: mark every record whose bytes are not what they were. */
static int mark_damaged(struct recs *r, const struct segs *before, const struct segs *after)
{
	int n = 0;

	for (int i = 0; i < r->n; i++) {
		struct rec *x = &r->v[i];
		uint32_t seg = x->loc.seg;
		ck_assert_uint_le(seg, NSEG);
		ck_assert_uint_le(x->loc.off + x->loc.len, before->len[seg]);
		x->damaged = !after->data[seg] || x->loc.off + x->loc.len > after->len[seg] ||
			     memcmp(before->data[seg] + x->loc.off, after->data[seg] + x->loc.off,
				    x->loc.len) != 0;
		n += x->damaged;
	}
	return n;
}

/* The report names exactly the damaged records of r, by file. */
static void expect_report(const struct kv_fsck_report *rep, struct recs *r)
{
	uint64_t bad = 0;

	for (int i = 0; i < r->n; i++) {
		const struct rec *x = &r->v[i];
		const struct kv_fsck_file *f = NULL;
		int found = 0;
		for (size_t k = 0; k < rep->nbad; k++)
			if (rep->bad[k].ino == x->ino)
				f = &rep->bad[k];
		for (size_t k = 0; f && k < f->nbad; k++)
			found |= f->bad[k] == x->idx;
		ck_assert_msg(found == x->damaged, "inode %llu chunk %llu: damaged %d, reported %d",
			      (unsigned long long)x->ino, (unsigned long long)x->idx, x->damaged,
			      found);
		bad += x->damaged;
	}
	ck_assert_uint_eq(rep->bad_chunks, bad);
	for (size_t k = 0; k < rep->nbad; k++) {
		ck_assert_uint_gt(rep->bad[k].nbad, 0);
		for (size_t j = 1; j < rep->bad[k].nbad; j++)
			ck_assert_uint_lt(rep->bad[k].bad[j - 1], rep->bad[k].bad[j]);
		if (k)
			ck_assert_uint_lt(rep->bad[k - 1].ino, rep->bad[k].ino);
	}
}

/* Reads [0, size) of ino and compares it with want. */
static void expect_content(struct kv_fs *fs, uint64_t ino, const uint8_t *want, size_t size)
{
	size_t done = 0;

	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	while (done < size) {
		size_t n = size - done < CHUNK ? size - done : CHUNK, got = 0;
		struct kv_readv rv;
		int rc = kv_file_read(fs, ino, (off_t)done, n, &rv);
		ck_assert_msg(rc == (int)n, "inode %llu: read at %zu: %d", (unsigned long long)ino,
			      done, rc);
		for (int i = 0; i < rv.n; i++) {
			ck_assert_msg(
				!memcmp(want + done + got, rv.iov[i].iov_base, rv.iov[i].iov_len),
				"inode %llu: bytes differ near %zu", (unsigned long long)ino,
				done + got);
			got += rv.iov[i].iov_len;
		}
		kv_file_read_done(fs, &rv);
		done += got;
	}
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
}

/* ---- tests ---- */

START_TEST(test_clean)
{
	struct tstore s;
	struct kv_fsck_report rep;
	struct recs *r = calloc(1, sizeof(*r));
	struct kv_fs *fs;
	uint64_t bytes = 0, stored = 0;

	build(&s);
	fs = fsck_open(s.path);
	load_recs(fs, &s, r);
	for (int threads = 0; threads <= 4; threads += 2) {
		ck_assert_int_eq(kv_fsck_check(fs, threads, &rep), 0);
		ck_assert_uint_eq(rep.files, (uint64_t)s.n);
		ck_assert_uint_eq(rep.chunks, (uint64_t)r->n);
		ck_assert_uint_eq(rep.nbad, 0);
		ck_assert_uint_eq(rep.bad_chunks, 0);
		ck_assert_uint_eq(rep.nsegs, 0);
		if (!threads) {
			bytes = rep.bytes;
			stored = rep.stored;
		}
		ck_assert_uint_eq(rep.bytes, bytes);
		ck_assert_uint_eq(rep.stored, stored);
		kv_fsck_report_free(&rep);
	}
	/* Every byte of every file, less the sparse file's three holes. */
	for (int i = 0; i < s.n; i++)
		bytes -= s.f[i].size;
	ck_assert_uint_eq(bytes, -(uint64_t)(3 * CHUNK));
	kv_fs_close(fs);
	free(r);
	free_store(&s);
}
END_TEST

START_TEST(test_damage_and_repair)
{
	static const uint8_t zeros[3000];
	struct tstore s;
	struct segs before, after;
	struct kv_fsck_report rep, rep1;
	struct recs *r = calloc(1, sizeof(*r)), *left = calloc(1, sizeof(*r));
	struct kv_fs *fs;
	struct rec *x;
	char p[1100];
	int ndamaged, removed = 0, truncated = 0;

	build(&s);
	fs = fsck_open(s.path);
	load_recs(fs, &s, r);
	kv_fs_close(fs);
	snapshot(&s, &before);

	/* A payload byte, in the middle of a compressed chunk. */
	x = rec_of(r, by_name(&s, "fp16")->ino, 2);
	flip(&s, &x->loc, KV_REC_HDR + (x->loc.len - KV_REC_HDR) / 2, 0x10);
	/* A header byte (the owner inode) of chunk 0: the file goes. */
	x = rec_of(r, by_name(&s, "random")->ino, 0);
	flip(&s, &x->loc, 24, 0x01);
	/* A zeroed range from inside chunk 1 on, into what follows. */
	x = rec_of(r, by_name(&s, "runs")->ino, 1);
	patch(&s, x->loc.seg, x->loc.off + x->loc.len / 2, zeros, sizeof(zeros));
	/* The last byte of the sparse file's last chunk. */
	x = rec_of(r, by_name(&s, "sparse")->ino, 4);
	flip(&s, &x->loc, x->loc.len - 1, 0x80);
	/* Segment 2 deleted; segment 3 torn inside torn1's chunk 1. */
	seg_path(&s, 2, p, sizeof(p));
	ck_assert_int_eq(unlink(p), 0);
	x = rec_of(r, by_name(&s, "torn1")->ino, 1);
	ck_assert_uint_eq(x->loc.seg, 3);
	seg_path(&s, 3, p, sizeof(p));
	ck_assert_int_eq(truncate(p, (off_t)(x->loc.off + 100)), 0);

	snapshot(&s, &after);
	ndamaged = mark_damaged(r, &before, &after);
	ck_assert_int_ge(ndamaged, 1 + 1 + 1 + 1 + 5 + 2);

	fs = fsck_open(s.path);
	ck_assert_int_eq(kv_fsck_check(fs, 1, &rep1), 0);
	ck_assert_int_eq(kv_fsck_check(fs, 4, &rep), 0);
	expect_report(&rep1, r);
	expect_report(&rep, r);
	ck_assert_uint_eq(rep.nbad, rep1.nbad);
	ck_assert_uint_eq(rep.files, (uint64_t)s.n);
	ck_assert_uint_eq(rep.chunks, (uint64_t)r->n);
	ck_assert_uint_eq(rep.nsegs, 2);
	ck_assert_uint_eq(rep.segs[0].seg, 2);
	ck_assert_int_eq(rep.segs[0].missing, 1);
	ck_assert_uint_eq(rep.segs[1].seg, 3);
	ck_assert_int_eq(rep.segs[1].missing, 0);
	ck_assert_uint_eq(rep.segs[1].size, x->loc.off + 100);
	kv_fsck_report_free(&rep1);

	for (size_t k = 0; k < rep.nbad; k++) {
		const struct kv_fsck_file *f = &rep.bad[k];
		uint64_t size = 1;
		int rc = kv_fsck_repair(fs, f, &size);
		if (f->bad[0] == 0) {
			ck_assert_int_eq(rc, KV_FSCK_REMOVED);
			removed++;
		} else {
			ck_assert_int_eq(rc, KV_FSCK_TRUNCATED);
			ck_assert_uint_eq(size, f->bad[0] * CHUNK < f->size ? f->bad[0] * CHUNK
									    : f->size);
			truncated++;
		}
	}
	/* Others depend on the order of records within a segment. */
	ck_assert_int_ge(removed, 3);   /* random, gone1, gone2 */
	ck_assert_int_ge(truncated, 2); /* fp16, sparse */
	ck_assert_uint_eq((size_t)(removed + truncated), rep.nbad);
	kv_fs_close(fs);

	/* A second check is clean; every surviving byte reads as written. */
	fs = fsck_open(s.path);
	ck_assert_int_eq(kv_fsck_check(fs, 0, &rep1), 0);
	ck_assert_uint_eq(rep1.nbad, 0);
	ck_assert_uint_eq(rep1.nsegs, 0);
	ck_assert_uint_eq(rep1.files, (uint64_t)(s.n - removed));
	for (int i = 0; i < s.n; i++) {
		struct tfile *f = &s.f[i];
		struct kv_attr a;
		size_t keep = f->size;
		int gone = 0;
		for (size_t k = 0; k < rep.nbad; k++)
			if (rep.bad[k].ino == f->ino) {
				gone = rep.bad[k].bad[0] == 0;
				if (rep.bad[k].bad[0] * CHUNK < keep)
					keep = rep.bad[k].bad[0] * CHUNK;
			}
		if (gone) {
			ck_assert_int_eq(kv_fs_lookup(fs, s.ctx, f->name, &a), -ENOENT);
			continue;
		}
		ck_assert_int_eq(kv_fs_lookup(fs, s.ctx, f->name, &a), 0);
		ck_assert_uint_eq(a.size, keep);
		expect_content(fs, f->ino, f->data, keep);
		kv_fs_forget(fs, f->ino, 1);
	}
	/* No index row names a damaged record any more. */
	load_recs(fs, &s, left);
	for (int i = 0; i < left->n; i++)
		for (int k = 0; k < r->n; k++)
			ck_assert(!(r->v[k].damaged && r->v[k].loc.seg == left->v[i].loc.seg &&
				    r->v[k].loc.off == left->v[i].loc.off));
	kv_fsck_report_free(&rep1);
	kv_fsck_report_free(&rep);
	kv_fs_close(fs);
	free_snapshot(&before);
	free_snapshot(&after);
	free(r);
	free(left);
	free_store(&s);
}
END_TEST

/* A damaged index is reported as such (issue 12: fsck said "clean"), and
 * the chunk check, which walks it, is not run. */
START_TEST(test_damaged_index)
{
	static const char *const pages[] = { "dentry_by_ino", NULL };
	struct kv_config cfg = kvtest_small_config();
	struct kv_fsck_report rep;
	struct kv_fs *fs;
	char store[1024], db[1100];

	kvtest_new_path(store, sizeof(store), "store");
	fs = kvtest_open_fs(store, &cfg);
	mknode(fs, mknode(fs, KV_ROOT_INO, "ns", S_IFDIR | 0755), "f", S_IFREG | 0644);
	kv_fs_close(fs);
	fs = fsck_open(store);
	ck_assert_int_eq(kv_fsck_check(fs, 1, &rep), 0);
	ck_assert_int_eq(rep.index_problems, 0);
	ck_assert_uint_eq(rep.files, 1);
	kv_fsck_report_free(&rep);
	kv_fs_close(fs);

	snprintf(db, sizeof(db), "%s/kvfs.db", store);
	kvtest_corrupt_pages(db, pages);
	fs = fsck_open(store);
	ck_assert_int_eq(kv_fsck_check(fs, 1, &rep), 0);
	ck_assert_int_gt(rep.index_problems, 0);
	ck_assert_str_ne(rep.index_msg, "");
	ck_assert_uint_eq(rep.files, 0);
	kv_fsck_report_free(&rep);
	kv_fs_close(fs);
}
END_TEST

START_TEST(test_refuses_mounted_and_foreign)
{
	struct kv_config cfg = kvtest_small_config();
	struct kv_fs *fs, *other = NULL;
	char store[1024], empty[1024], err[512] = "";
	struct stat sb;

	kvtest_new_path(store, sizeof(store), "store");
	fs = kvtest_open_fs(store, &cfg);
	ck_assert_int_eq(kv_fs_open_existing(store, &other, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_null(other);
	ck_assert_msg(strstr(err, "in use") != NULL, "message: %s", err);
	kv_fs_close(fs);

	kvtest_new_path(store, sizeof(store), "none");
	ck_assert_int_eq(kv_fs_open_existing(store, &other, err, sizeof(err)), -ENOENT);
	ck_assert_int_ne(stat(store, &sb), 0); /* nothing created */
	kvtest_new_dir(empty, sizeof(empty));
	ck_assert_int_eq(kv_fs_open_existing(empty, &other, err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(kvtest_count_entries(empty, NULL), 0);
}
END_TEST

/* fsck opens a store at the context depth of its last mount: at another
 * one the policy rows would be rebuilt, and pins lost. */
START_TEST(test_keeps_context_depth)
{
	struct kv_config cfg = kvtest_small_config();
	struct kv_fsck_report rep;
	struct kv_fs *fs;
	char store[1024], err[256], pin[8];
	uint64_t ctx;

	kvtest_new_path(store, sizeof(store), "store");
	ck_assert_int_eq(kv_opt_set(&cfg, "context_depth", "1", err, sizeof(err)), 0);
	fs = kvtest_open_fs(store, &cfg);
	ctx = mknode(fs, KV_ROOT_INO, "ctx", S_IFDIR | 0755);
	ck_assert_int_eq(kv_fs_setxattr(fs, ctx, "user.kvfs.pin", "1", 1, 0), 0);
	kv_fs_close(fs);

	fs = fsck_open(store);
	ck_assert_int_eq(kv_fsck_check(fs, 0, &rep), 0);
	ck_assert_uint_eq(rep.nbad, 0);
	kv_fsck_report_free(&rep);
	kv_fs_close(fs);

	fs = kvtest_open_fs(store, &cfg);
	memset(pin, 0, sizeof(pin));
	ck_assert_int_eq(kv_fs_getxattr(fs, ctx, "user.kvfs.pin", pin, sizeof(pin) - 1), 1);
	ck_assert_str_eq(pin, "1");
	kv_fs_close(fs);
}
END_TEST

static Suite *fsck_suite(void)
{
	Suite *s = suite_create("fsck");
	TCase *tc = kvtest_tcase(s, "fsck", 120);

	tcase_add_test(tc, test_clean);
	tcase_add_test(tc, test_damage_and_repair);
	tcase_add_test(tc, test_damaged_index);
	tcase_add_test(tc, test_refuses_mounted_and_foreign);
	tcase_add_test(tc, test_keeps_context_depth);
	return s;
}

int main(void) { return kvtest_run(fsck_suite, "fsck"); }
