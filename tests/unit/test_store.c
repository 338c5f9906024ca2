/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_store (src/store/store.h): appending and reading records,
 * detection of mismatched or damaged records, hole punching, segment
 * rolling and deletion, and the record header format. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "codec.h"
#include "kvtest.h"
#include "store.h"

#define MAX_CHUNK (1u << 20)

/* A fresh directory under the run's temporary root; the store goes in
 * its "segments" subdirectory (created by kv_store_open). */
static void new_store_dir(char *dir, size_t len) { kvtest_new_path(dir, len, "segments"); }

static const uint8_t store_id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static struct kv_store *open_store(const char *dir, size_t seg_size)
{
	struct kv_store *st = NULL;

	ck_assert_int_eq(kv_store_open(dir, store_id, seg_size, MAX_CHUNK, &st), 0);
	ck_assert_ptr_nonnull(st);
	return st;
}

static void seg_path(char *buf, size_t len, const char *dir, uint32_t seg)
{
	if (snprintf(buf, len, "%s/%08x.seg", dir, seg) >= (int)len)
		ck_abort_msg("path too long");
}

static int seg_exists(const char *dir, uint32_t seg)
{
	char p[600];
	struct stat sb;

	seg_path(p, sizeof(p), dir, seg);
	return stat(p, &sb) == 0;
}

static struct stat seg_stat(const char *dir, uint32_t seg)
{
	char p[600];
	struct stat sb;

	seg_path(p, sizeof(p), dir, seg);
	ck_assert_msg(stat(p, &sb) == 0, "%s missing", p);
	return sb;
}

static int is_seg(const char *name) { return strstr(name, ".seg") != NULL; }

static int count_segs(const char *dir) { return kvtest_count_entries(dir, is_seg); }

/* Overwrite one byte of a segment file; returns the old value. */
static uint8_t poke(const char *dir, uint32_t seg, uint64_t off, uint8_t v)
{
	char p[600];
	uint8_t old;
	int fd;

	seg_path(p, sizeof(p), dir, seg);
	fd = open(p, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &old, 1, (off_t)off), 1);
	ck_assert_int_eq(pwrite(fd, &v, 1, (off_t)off), 1);
	close(fd);
	return old;
}

/* Encode and append; returns the location. */
static struct kv_loc put(struct kv_store *st, struct kv_codec_ctx *cc, enum kv_codec_id codec,
			 int shuffle, uint64_t ino, uint64_t idx, const uint8_t *data, size_t n,
			 struct kv_encoded *out)
{
	struct kv_codec_params p = { codec, 1, shuffle };
	struct kv_encoded e;
	struct kv_loc loc;

	ck_assert_int_eq(kv_codec_encode(cc, &p, data, n, &e), 0);
	ck_assert_int_eq(kv_store_append(st, ino, idx, &e, (uint32_t)n, &loc), 0);
	ck_assert_uint_eq(loc.len, KV_REC_HDR + e.len);
	if (out)
		*out = e;
	return loc;
}

static void expect_read(struct kv_store *st, const struct kv_loc *loc, uint64_t ino, uint64_t idx,
			const uint8_t *want, size_t n)
{
	uint8_t *got = malloc(n ? n : 1);

	memset(got, 0xcc, n);
	ck_assert_msg(kv_store_read(st, loc, ino, idx, got, (uint32_t)n) == 0,
		      "read of ino %llu idx %llu (seg %u off %llu len %u) failed",
		      (unsigned long long)ino, (unsigned long long)idx, loc->seg,
		      (unsigned long long)loc->off, loc->len);
	ck_assert(n == 0 || memcmp(got, want, n) == 0);
	free(got);
}

static int try_read(struct kv_store *st, const struct kv_loc *loc, uint64_t ino, uint64_t idx,
		    size_t n)
{
	uint8_t *got = malloc(MAX_CHUNK);
	int rc = kv_store_read(st, loc, ino, idx, got, (uint32_t)n);

	free(got);
	return rc;
}

/* Test payloads: kind 0 random, 1 zeros, 2 fp16-like (compressible). */
static uint8_t *payload(int kind, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	if (kind == 0)
		fill_random(p, n);
	else if (kind == 1)
		memset(p, 0, n);
	else
		fill_fp16like(p, n);
	return p;
}

/* ---- append / read ---- */

START_TEST(test_append_read_sizes)
{
	static const struct {
		size_t n;
		int kind;
		enum kv_codec_id codec;
		int shuffle;
	} recs[] = {
		{ 0, 0, KV_CODEC_LZ4, 0 },
		{ 1, 0, KV_CODEC_LZ4, 0 },
		{ 4096, 0, KV_CODEC_ZSTD, 0 },
		{ 4096, 2, KV_CODEC_LZ4, 2 },
		{ 65536, 1, KV_CODEC_LZ4, 0 },
		{ 65536, 2, KV_CODEC_ZSTD, 2 },
		{ 100001, 2, KV_CODEC_ZSTD, 4 },
		{ 100001, 2, KV_CODEC_NONE, 0 },
		{ 262144, 2, KV_CODEC_LZ4, KV_SHUFFLE_AUTO },
		{ MAX_CHUNK, 0, KV_CODEC_ZSTD, 2 },
		{ MAX_CHUNK, 1, KV_CODEC_ZSTD, 0 },
		{ 777, 2, KV_CODEC_ZSTD, KV_SHUFFLE_AUTO },
	};
	enum { N = sizeof(recs) / sizeof(recs[0]) };
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	struct kv_loc locs[N];
	uint8_t *data[N];
	int compressed = 0;
	uint64_t end = KV_SEG_HDR;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	for (int i = 0; i < N; i++) {
		struct kv_encoded e;
		data[i] = payload(recs[i].kind, recs[i].n);
		locs[i] = put(st, cc, recs[i].codec, recs[i].shuffle, 100 + i, 7 * i, data[i],
			      recs[i].n, &e);
		compressed += e.codec != KV_CODEC_NONE;
		/* Records follow one another in the first segment. */
		ck_assert_uint_eq(locs[i].seg, 1);
		ck_assert_uint_eq(locs[i].off, end);
		end += locs[i].len;
	}
	ck_assert_int_ge(compressed, 6);
	ck_assert_uint_eq((uint64_t)seg_stat(dir, 1).st_size, end);
	/* Read back in a different order than written. */
	for (int i = N - 1; i >= 0; i--)
		expect_read(st, &locs[i], 100 + i, 7 * i, data[i], recs[i].n);
	ck_assert_int_eq(kv_store_sync(st), 0);
	kv_store_close(st);

	/* Another run appends to a new segment and reads the same records.
	 * (test_reopen_read_then_append reads before appending.) */
	st = open_store(dir, 64u << 20);
	{
		struct kv_loc l = put(st, cc, KV_CODEC_LZ4, 0, 5, 5, data[4], recs[4].n, NULL);
		ck_assert_uint_eq(l.seg, 2);
		ck_assert_uint_eq(l.off, KV_SEG_HDR);
		expect_read(st, &l, 5, 5, data[4], recs[4].n);
	}
	for (int i = 0; i < N; i++)
		expect_read(st, &locs[i], 100 + i, 7 * i, data[i], recs[i].n);
	ck_assert_uint_eq((uint64_t)seg_stat(dir, 1).st_size, end);
	kv_store_close(st);
	for (int i = 0; i < N; i++)
		free(data[i]);
	kv_codec_ctx_free(cc);
}
END_TEST

/* Lanes: 8 threads appending at once to a store of 4 lanes spread over
 * several segments, and every record reads back whole; the live bytes add
 * up, and freeing them all leaves only the lanes' segments. */
#define LANE_THREADS 8
#define LANE_RECS 300

struct lane_arg {
	struct kv_store *st;
	int t;
	struct kv_loc loc[LANE_RECS];
};

static void lane_bytes(uint8_t *p, size_t n, int t, int i)
{
	for (size_t k = 0; k < n; k++)
		p[k] = (uint8_t)(t * 31 + i * 7 + k);
}

static void *lane_writer(void *p)
{
	struct lane_arg *a = p;
	static __thread uint8_t buf[8192];

	for (int i = 0; i < LANE_RECS; i++) {
		size_t n = 1000 + (size_t)((i * 37 + a->t) % 7000);
		struct kv_encoded e = { KV_CODEC_NONE, 0, (uint32_t)n, buf };
		lane_bytes(buf, n, a->t, i);
		if (kv_store_append(a->st, (uint64_t)a->t + 10, (uint64_t)i, &e, (uint32_t)n,
				    &a->loc[i]))
			return p;
	}
	return NULL;
}

START_TEST(test_lanes_parallel)
{
	static struct lane_arg a[LANE_THREADS];
	pthread_t th[LANE_THREADS];
	uint8_t want[8192], got[8192];
	uint64_t live = 0;
	uint32_t segs = 0;
	char dir[600];
	struct kv_store *st;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 1 << 20);
	kv_store_set_lanes(st, 4);
	for (int t = 0; t < LANE_THREADS; t++) {
		a[t].st = st;
		a[t].t = t;
		ck_assert_int_eq(pthread_create(&th[t], NULL, lane_writer, &a[t]), 0);
	}
	for (int t = 0; t < LANE_THREADS; t++) {
		void *rc;
		pthread_join(th[t], &rc);
		ck_assert_ptr_null(rc);
	}
	for (int t = 0; t < LANE_THREADS; t++) {
		for (int i = 0; i < LANE_RECS; i++) {
			size_t n = 1000 + (size_t)((i * 37 + t) % 7000);
			lane_bytes(want, n, t, i);
			ck_assert_int_eq(kv_store_read(st, &a[t].loc[i], (uint64_t)t + 10,
						       (uint64_t)i, got, (uint32_t)n),
					 0);
			ck_assert(!memcmp(got, want, n));
			live += a[t].loc[i].len;
		}
	}
	ck_assert_uint_eq(kv_store_live(st), live);
	for (uint32_t s = 1; s <= kv_store_highest(st); s++)
		segs += (uint32_t)seg_exists(dir, s);
	ck_assert_uint_gt(segs, 4);
	for (int t = 0; t < LANE_THREADS; t++)
		for (int i = 0; i < LANE_RECS; i++)
			kv_store_free(st, &a[t].loc[i]);
	ck_assert_uint_eq(kv_store_live(st), 0);
	segs = 0;
	for (uint32_t s = 1; s <= kv_store_highest(st); s++)
		segs += (uint32_t)seg_exists(dir, s);
	ck_assert_uint_le(segs, 4);
	kv_store_close(st);
}
END_TEST

START_TEST(test_segment_header)
{
	char dir[600], p[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t *d = payload(0, 100), h[KV_SEG_HDR];
	int fd;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	put(st, cc, KV_CODEC_NONE, 0, 1, 0, d, 100, NULL);
	kv_store_close(st);
	seg_path(p, sizeof(p), dir, 1);
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, h, sizeof(h), 0), sizeof(h));
	close(fd);
	ck_assert_mem_eq(h, KV_SEG_MAGIC, 8); /* "KVFSSEG" and its NUL */
	ck_assert_uint_eq(h[8], KV_SEG_VERSION);
	ck_assert_uint_eq(h[12], 1); /* segment number */
	ck_assert_mem_eq(h + 16, store_id, 16);
	free(d);
	kv_codec_ctx_free(cc);
}
END_TEST

/* A file's last chunk can be a handful of bytes; whatever the codec makes
 * of it must read back. 17 zero bytes are what zstd turns into a 17-byte
 * frame. */
START_TEST(test_short_chunks_read_back)
{
	static const enum kv_codec_id codecs[] = { KV_CODEC_LZ4, KV_CODEC_ZSTD };
	static const int shuffles[] = { 0, 2, 4 };
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t src[64];
	int bad = 0;
	char first[160] = "";

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	for (int c = 0; c < 2; c++) {
		for (int s = 0; s < 3; s++) {
			for (int pat = 0; pat < 3; pat++) {
				for (size_t n = 1; n <= sizeof(src); n++) {
					struct kv_encoded e;
					struct kv_loc loc;
					uint8_t got[64];
					for (size_t i = 0; i < n; i++)
						src[i] = pat == 0   ? 0
							 : pat == 1 ? (uint8_t)(i % 3)
								    : (uint8_t)(i / 4);
					loc = put(st, cc, codecs[c], shuffles[s], 9, n, src, n, &e);
					if (kv_store_read(st, &loc, 9, n, got, (uint32_t)n) ||
					    memcmp(got, src, n)) {
						if (!bad++)
							snprintf(first, sizeof(first),
								 "%s shuffle %d pattern %d: %zu bytes "
								 "stored as %u bytes (%s)",
								 kv_codec_name(codecs[c]),
								 shuffles[s], pat, n, e.len,
								 kv_codec_name(e.codec));
					}
				}
			}
		}
	}
	ck_assert_msg(bad == 0, "%d short records unreadable, first: %s", bad, first);
	kv_store_close(st);
	kv_codec_ctx_free(cc);
}
END_TEST

START_TEST(test_read_mismatch)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	size_t n = 65536;
	uint8_t *raw = payload(0, n), *zip = payload(2, n);
	struct kv_loc lr, lz, l;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	lr = put(st, cc, KV_CODEC_LZ4, 0, 42, 3, raw, n, NULL);
	lz = put(st, cc, KV_CODEC_ZSTD, 2, 42, 4, zip, n, NULL);
	ck_assert_uint_eq(lr.len, KV_REC_HDR + n);
	ck_assert_uint_lt(lz.len, KV_REC_HDR + n);

	for (int k = 0; k < 2; k++) {
		const struct kv_loc *good = k ? &lz : &lr;
		uint64_t idx = k ? 4 : 3;
		ck_assert_int_eq(try_read(st, good, 42, idx, n), 0);
		ck_assert_int_eq(try_read(st, good, 43, idx, n), -EIO);     /* ino */
		ck_assert_int_eq(try_read(st, good, 42, idx + 1, n), -EIO); /* idx */
		ck_assert_int_eq(try_read(st, good, 42, idx, n - 1), -EIO); /* raw_len */
		ck_assert_int_eq(try_read(st, good, 42, idx, n + 1), -EIO);
		ck_assert_int_eq(try_read(st, good, 42, idx, 0), -EIO);
		ck_assert_int_eq(try_read(st, good, 42, idx, MAX_CHUNK + 1), -EIO);
		l = *good;
		l.len -= 1;
		ck_assert_int_eq(try_read(st, &l, 42, idx, n), -EIO);
		l.len += 2;
		ck_assert_int_eq(try_read(st, &l, 42, idx, n), -EIO);
		l = *good;
		l.len = KV_REC_HDR - 1;
		ck_assert_int_eq(try_read(st, &l, 42, idx, n), -EIO);
		l.len = 0;
		ck_assert_int_eq(try_read(st, &l, 42, idx, n), -EIO);
		l = *good;
		l.off += 1;
		ck_assert_int_eq(try_read(st, &l, 42, idx, n), -EIO);
		l = *good;
		l.seg = 7; /* no such segment */
		ck_assert_int_eq(try_read(st, &l, 42, idx, n), -EIO);
	}
	/* The other record's location with this record's identity. */
	l = lz;
	ck_assert_int_eq(try_read(st, &l, 42, 3, n), -EIO);
	/* Past the end of the segment. */
	l = lz;
	l.off = lz.off + lz.len;
	ck_assert_int_eq(try_read(st, &l, 42, 4, n), -EIO);
	expect_read(st, &lr, 42, 3, raw, n);
	expect_read(st, &lz, 42, 4, zip, n);
	kv_store_close(st);
	free(raw);
	free(zip);
	kv_codec_ctx_free(cc);
}
END_TEST

/* One flipped byte anywhere in a record, header or payload, is caught. */
START_TEST(test_damage_detected)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	size_t n = 16384;
	uint8_t *raw = payload(0, n), *zip = payload(2, n);
	struct kv_loc locs[2];
	int compressed = _i;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	locs[0] = put(st, cc, KV_CODEC_LZ4, 0, 1, 0, raw, n, NULL);
	locs[1] = put(st, cc, KV_CODEC_ZSTD, 2, 1, 1, zip, n, NULL);
	{
		const struct kv_loc *l = &locs[compressed];
		const uint8_t *want = compressed ? zip : raw;
		/* Every header byte, and a sample of payload bytes. */
		for (uint32_t at = 0; at < l->len; at += at < KV_REC_HDR ? 1 : 1 + l->len / 97) {
			uint8_t old = poke(dir, l->seg, l->off + at, 0);
			if (old == 0)
				poke(dir, l->seg, l->off + at, 0x80);
			ck_assert_msg(try_read(st, l, 1, compressed, n) == -EIO,
				      "damage at byte %u of the record not detected", at);
			poke(dir, l->seg, l->off + at, old);
		}
		/* Last payload byte too. */
		{
			uint8_t old = poke(dir, l->seg, l->off + l->len - 1, 0);
			if (old == 0)
				poke(dir, l->seg, l->off + l->len - 1, 1);
			ck_assert_int_eq(try_read(st, l, 1, compressed, n), -EIO);
			poke(dir, l->seg, l->off + l->len - 1, old);
		}
		expect_read(st, l, 1, compressed, want, n);
	}
	/* The neighbour was never affected. */
	expect_read(st, &locs[!compressed], 1, !compressed, compressed ? raw : zip, n);
	kv_store_close(st);
	free(raw);
	free(zip);
	kv_codec_ctx_free(cc);
}
END_TEST

/* A record whose header and checksums are valid but whose compressed
 * payload is not (written by a buggy encoder) is still refused. */
START_TEST(test_valid_hash_bad_payload)
{
	char dir[600];
	struct kv_store *st;
	uint8_t junk[1000], out[4000];
	struct kv_encoded e = { KV_CODEC_ZSTD, 0, sizeof(junk), junk };
	struct kv_loc loc;

	memset(junk, 0x77, sizeof(junk));
	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	ck_assert_int_eq(kv_store_append(st, 3, 0, &e, sizeof(out), &loc), 0);
	ck_assert_int_eq(kv_store_read(st, &loc, 3, 0, out, sizeof(out)), -EIO);
	/* A raw-length payload labelled as compressed. */
	e.len = sizeof(out);
	e.data = out;
	memset(out, 1, sizeof(out));
	ck_assert_int_eq(kv_store_append(st, 3, 1, &e, sizeof(out), &loc), 0);
	ck_assert_int_eq(kv_store_read(st, &loc, 3, 1, out, sizeof(out)), -EIO);
	kv_store_close(st);
}
END_TEST

/* ---- freeing ---- */

START_TEST(test_free_punches_hole)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	size_t n = 256 << 10;
	uint8_t *d[8];
	struct kv_loc l[8];
	struct stat before, after;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	for (int i = 0; i < 8; i++) {
		d[i] = payload(0, n);
		l[i] = put(st, cc, KV_CODEC_LZ4, 0, 11, i, d[i], n, NULL);
		ck_assert_uint_eq(l[i].seg, 1);
	}
	ck_assert_int_eq(kv_store_sync(st), 0);
	before = seg_stat(dir, 1);
	for (int i = 0; i < 8; i += 2)
		kv_store_free(st, &l[i]);
	after = seg_stat(dir, 1);
	ck_assert_int_eq(after.st_size, before.st_size); /* holes keep the size */
	/* Four 256 KiB records (minus partial blocks at their edges) are gone. */
	ck_assert_msg(before.st_blocks - after.st_blocks >= (blkcnt_t)(4 * (n - 8192) / 512),
		      "st_blocks %lld -> %lld", (long long)before.st_blocks,
		      (long long)after.st_blocks);
	for (int i = 0; i < 8; i++) {
		if (i % 2)
			expect_read(st, &l[i], 11, i, d[i], n);
		else
			ck_assert_int_eq(try_read(st, &l[i], 11, i, n), -EIO);
	}
	/* Freeing everything in the active segment keeps the file (appends go on
	 * there), punched. */
	for (int i = 1; i < 8; i += 2)
		kv_store_free(st, &l[i]);
	ck_assert(seg_exists(dir, 1));
	ck_assert_int_lt(seg_stat(dir, 1).st_blocks, 200);
	{
		struct kv_loc x = put(st, cc, KV_CODEC_LZ4, 0, 11, 9, d[0], n, NULL);
		ck_assert_uint_eq(x.seg, 1);
		expect_read(st, &x, 11, 9, d[0], n);
	}
	kv_store_close(st);
	for (int i = 0; i < 8; i++)
		free(d[i]);
	kv_codec_ctx_free(cc);
}
END_TEST

/* segment=1M with 256 KiB records: three records per segment. */
START_TEST(test_roll_and_delete)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	size_t n = 256 << 10, seg_size = 1 << 20;
	uint8_t *d[7], *big = payload(0, 900 << 10);
	struct kv_loc l[7];
	static const uint32_t want_seg[7] = { 1, 1, 1, 2, 2, 2, 3 };

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, seg_size);
	for (int i = 0; i < 7; i++) {
		d[i] = payload(0, n);
		l[i] = put(st, cc, KV_CODEC_ZSTD, 0, 5, i, d[i], n, NULL);
		ck_assert_msg(l[i].seg == want_seg[i], "record %d in segment %u", i, l[i].seg);
		ck_assert_uint_le(l[i].off + l[i].len, seg_size);
	}
	ck_assert_int_eq(count_segs(dir), 3);
	for (uint32_t s = 1; s <= 3; s++)
		ck_assert_int_le(seg_stat(dir, s).st_size, (off_t)seg_size);
	for (int i = 0; i < 7; i++)
		expect_read(st, &l[i], 5, i, d[i], n);

	/* Segment 1 goes when its last record does. */
	kv_store_free(st, &l[0]);
	kv_store_free(st, &l[2]);
	ck_assert(seg_exists(dir, 1));
	expect_read(st, &l[1], 5, 1, d[1], n);
	kv_store_free(st, &l[1]);
	ck_assert(!seg_exists(dir, 1));
	ck_assert(seg_exists(dir, 2));
	ck_assert_int_eq(try_read(st, &l[1], 5, 1, n), -EIO);

	/* The active segment 3 stays when emptied... */
	kv_store_free(st, &l[6]);
	ck_assert(seg_exists(dir, 3));
	/* ...and is dropped when appends roll on to segment 4. */
	{
		struct kv_loc x = put(st, cc, KV_CODEC_NONE, 0, 6, 0, big, 900 << 10, NULL);
		ck_assert_uint_eq(x.seg, 4);
		ck_assert(!seg_exists(dir, 3));
		expect_read(st, &x, 6, 0, big, 900 << 10);
	}
	for (int i = 3; i < 6; i++)
		expect_read(st, &l[i], 5, i, d[i], n);
	ck_assert_int_eq(count_segs(dir), 2);
	kv_store_close(st);
	for (int i = 0; i < 7; i++)
		free(d[i]);
	free(big);
	kv_codec_ctx_free(cc);
}
END_TEST

/* A record too large for an empty segment still gets written (a segment of
 * its own) rather than failing or looping. */
START_TEST(test_record_larger_than_segment)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t *d = payload(0, MAX_CHUNK), *s = payload(0, 1000);
	struct kv_loc a, b, c;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 512 << 10);
	a = put(st, cc, KV_CODEC_NONE, 0, 1, 0, s, 1000, NULL);
	b = put(st, cc, KV_CODEC_NONE, 0, 1, 1, d, MAX_CHUNK, NULL);
	c = put(st, cc, KV_CODEC_NONE, 0, 1, 2, s, 1000, NULL);
	ck_assert_uint_ne(a.seg, b.seg);
	ck_assert_uint_ne(b.seg, c.seg);
	expect_read(st, &a, 1, 0, s, 1000);
	expect_read(st, &b, 1, 1, d, MAX_CHUNK);
	expect_read(st, &c, 1, 2, s, 1000);
	kv_store_close(st);
	free(d);
	free(s);
	kv_codec_ctx_free(cc);
}
END_TEST

/* On reopen the index reports live bytes per segment; segments it does not
 * mention are deleted by kv_store_drop_empty. */
START_TEST(test_reopen_account_drop_empty)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	size_t n = 256 << 10;
	uint8_t *d[6];
	struct kv_loc l[6];
	uint64_t live2 = 0;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 1 << 20);
	for (int i = 0; i < 6; i++) {
		d[i] = payload(0, n);
		l[i] = put(st, cc, KV_CODEC_LZ4, 0, 8, i, d[i], n, NULL);
	}
	ck_assert_uint_eq(l[5].seg, 2);
	kv_store_close(st);

	st = open_store(dir, 1 << 20);
	for (int i = 3; i < 6; i++)
		live2 += l[i].len;
	kv_store_account(st, 2, live2);
	kv_store_drop_empty(st);
	ck_assert(!seg_exists(dir, 1));
	ck_assert(seg_exists(dir, 2));
	{
		/* Never appended to the tail of an old segment. */
		struct kv_loc x = put(st, cc, KV_CODEC_LZ4, 0, 8, 6, d[0], n, NULL);
		ck_assert_uint_eq(x.seg, 3);
		ck_assert_uint_eq(x.off, KV_SEG_HDR);
	}
	for (int i = 3; i < 6; i++)
		expect_read(st, &l[i], 8, i, d[i], n);
	/* The accounting counts: freeing segment 2's records deletes it. */
	for (int i = 3; i < 6; i++)
		kv_store_free(st, &l[i]);
	ck_assert(!seg_exists(dir, 2));
	ck_assert(seg_exists(dir, 3));
	kv_store_close(st);
	for (int i = 0; i < 6; i++)
		free(d[i]);
	kv_codec_ctx_free(cc);
}
END_TEST

/* kv_store_open: "Appends always go to a fresh segment, so the tail of a
 * segment left by an earlier run is never written again." That must hold
 * when the new run reads records of the last segment before its first
 * append, as a filesystem does after a remount. */
START_TEST(test_reopen_read_then_append)
{
	char dir[600];
	struct kv_store *st;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	size_t n = 10000;
	uint8_t *a = payload(2, n), *b = payload(0, n);
	struct kv_loc la, lb;

	new_store_dir(dir, sizeof(dir));
	st = open_store(dir, 64u << 20);
	la = put(st, cc, KV_CODEC_LZ4, 0, 2, 0, a, n, NULL);
	kv_store_close(st);

	st = open_store(dir, 64u << 20);
	kv_store_account(st, la.seg, la.len); /* as the index does on open */
	kv_store_drop_empty(st);
	expect_read(st, &la, 2, 0, a, n);
	lb = put(st, cc, KV_CODEC_LZ4, 0, 3, 0, b, n, NULL);
	ck_assert_msg(lb.seg == 2 && lb.off == KV_SEG_HDR,
		      "append after reopen+read went to segment %u offset %llu", lb.seg,
		      (unsigned long long)lb.off);
	expect_read(st, &lb, 3, 0, b, n);
	expect_read(st, &la, 2, 0, a, n);
	kv_store_close(st);
	free(a);
	free(b);
	kv_codec_ctx_free(cc);
}
END_TEST

START_TEST(test_open_errors)
{
	char dir[600], file[700], deep[700];
	struct kv_store *st = NULL;
	int fd;

	new_store_dir(dir, sizeof(dir));
	snprintf(deep, sizeof(deep), "%s/no/such/dir", dir);
	ck_assert_int_lt(kv_store_open(deep, store_id, 1 << 20, MAX_CHUNK, &st), 0);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(file, sizeof(file), "%s/plain", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_lt(kv_store_open(file, store_id, 1 << 20, MAX_CHUNK, &st), 0);
}
END_TEST

/* Files in segments/ named like segments beyond the last number a store
 * can have are not its own: the open neither hangs on them (the table of
 * segments grew by doubling a 32-bit count, which wraps) nor tries to
 * allocate a table that large; they are left alone. */
START_TEST(test_stray_segment_names)
{
	static const uint32_t stray[] = { KV_SEG_ID_MAX + 1, 0x80000000u, 0xfffffff0u, 0xffffffffu };
	char dir[600], path[700];
	struct kv_store *st;
	struct kv_encoded enc;
	struct kv_loc loc;
	uint8_t data[100] = { 7 };
	struct stat sb;
	int fd;

	new_store_dir(dir, sizeof(dir));
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	for (size_t i = 0; i < sizeof(stray) / sizeof(stray[0]); i++) {
		seg_path(path, sizeof(path), dir, stray[i]);
		fd = open(path, O_CREAT | O_WRONLY, 0600);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	st = open_store(dir, 1 << 20);
	enc = (struct kv_encoded){ .data = data, .len = sizeof(data), .codec = KV_CODEC_NONE };
	ck_assert_int_eq(kv_store_append(st, 1, 0, &enc, sizeof(data), &loc), 0);
	ck_assert_uint_eq(loc.seg, 1);
	kv_store_close(st);
	for (size_t i = 0; i < sizeof(stray) / sizeof(stray[0]); i++) {
		seg_path(path, sizeof(path), dir, stray[i]);
		ck_assert_int_eq(stat(path, &sb), 0);
	}
}
END_TEST

/* ---- concurrency ---- */

struct worker_arg {
	struct kv_store *st;
	uint64_t ino;
	int n;
	struct kv_loc *locs;
	int errors;
};

static void fill_record(uint8_t *p, size_t n, uint64_t ino, int i)
{
	for (size_t k = 0; k < n; k++)
		p[k] = (uint8_t)(ino * 31 + (uint64_t)i * 7 + k / 16);
}

static void *append_worker(void *arg)
{
	struct worker_arg *w = arg;
	struct kv_codec_ctx *cc = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t buf[8192], got[8192];

	for (int i = 0; i < w->n; i++) {
		struct kv_codec_params p = { i % 2 ? KV_CODEC_LZ4 : KV_CODEC_NONE, 1, 0 };
		struct kv_encoded e;
		size_t n = 1000 + (size_t)i * 37 % 7000;
		fill_record(buf, n, w->ino, i);
		if (kv_codec_encode(cc, &p, buf, n, &e) ||
		    kv_store_append(w->st, w->ino, (uint64_t)i, &e, (uint32_t)n, &w->locs[i]))
			w->errors++;
		/* Read an earlier record back while others append. */
		if (i > 3 && kv_store_read(w->st, &w->locs[i / 2], w->ino, (uint64_t)(i / 2), got,
					   (uint32_t)(1000 + (size_t)(i / 2) * 37 % 7000)))
			w->errors++;
	}
	kv_codec_ctx_free(cc);
	return NULL;
}

START_TEST(test_concurrent_appends)
{
	enum { T = 4, N = 300 };
	char dir[600];
	struct kv_store *st;
	pthread_t th[T];
	struct worker_arg w[T];
	uint8_t want[8192];

	new_store_dir(dir, sizeof(dir));
	/* Small segments, so threads race on rolling too. */
	st = open_store(dir, 256 << 10);
	for (int t = 0; t < T; t++) {
		w[t] = (struct worker_arg){ st, 1000 + t, N, calloc(N, sizeof(struct kv_loc)), 0 };
		ck_assert_int_eq(pthread_create(&th[t], NULL, append_worker, &w[t]), 0);
	}
	for (int t = 0; t < T; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < T; t++) {
		ck_assert_int_eq(w[t].errors, 0);
		for (int i = 0; i < N; i++) {
			size_t n = 1000 + (size_t)i * 37 % 7000;
			fill_record(want, n, w[t].ino, i);
			expect_read(st, &w[t].locs[i], w[t].ino, i, want, n);
			ck_assert_uint_le(w[t].locs[i].off + w[t].locs[i].len, 256 << 10);
		}
	}
	/* No two records overlap. */
	for (int t = 0; t < T; t++)
		for (int i = 0; i < N; i++)
			for (int u = t; u < T; u++)
				for (int j = u == t ? i + 1 : 0; j < N; j++) {
					const struct kv_loc *a = &w[t].locs[i], *b = &w[u].locs[j];
					ck_assert(a->seg != b->seg || a->off + a->len <= b->off ||
						  b->off + b->len <= a->off);
				}
	kv_store_close(st);
	for (int t = 0; t < T; t++)
		free(w[t].locs);
}
END_TEST

/* ---- record header ---- */

static struct kv_rec sample_rec(void)
{
	struct kv_rec r = {
		.type = KV_REC_TYPE_CHUNK,
		.codec = KV_CODEC_ZSTD,
		.elem = 4,
		.flags = 0x5a,
		.raw_len = 0x00123456,
		.stored_len = 0x00065432,
		.seg = 0xabcdef01,
		.ino = 0x0102030405060708ULL,
		.idx = 0xfedcba9876543210ULL,
		.payload_hash = 0x1122334455667788ULL,
	};
	return r;
}

START_TEST(test_rec_roundtrip)
{
	struct kv_rec r = sample_rec(), back;
	uint8_t h[KV_REC_HDR], h2[KV_REC_HDR];

	memset(h, 0xee, sizeof(h));
	kv_rec_encode(h, &r);
	kv_rec_encode(h2, &r);
	ck_assert_mem_eq(h, h2, KV_REC_HDR); /* deterministic, no stray bytes */
	ck_assert_mem_eq(h, "KVR1", 4);
	memset(&back, 0, sizeof(back));
	ck_assert_int_eq(kv_rec_decode(h, &back), 0);
	ck_assert_uint_eq(back.type, r.type);
	ck_assert_uint_eq(back.codec, r.codec);
	ck_assert_uint_eq(back.elem, r.elem);
	ck_assert_uint_eq(back.flags, r.flags);
	ck_assert_uint_eq(back.raw_len, r.raw_len);
	ck_assert_uint_eq(back.stored_len, r.stored_len);
	ck_assert_uint_eq(back.seg, r.seg);
	ck_assert_uint_eq(back.ino, r.ino);
	ck_assert_uint_eq(back.idx, r.idx);
	ck_assert_uint_eq(back.payload_hash, r.payload_hash);
	/* Different records give different headers. */
	r.idx++;
	kv_rec_encode(h2, &r);
	ck_assert(memcmp(h, h2, KV_REC_HDR) != 0);
}
END_TEST

/* Rewrite the trailing header hash so only the field under test is wrong. */
static void rehash(uint8_t h[KV_REC_HDR])
{
	uint64_t v = XXH3_64bits(h, 56);

	for (int i = 0; i < 8; i++)
		h[56 + i] = (uint8_t)(v >> (8 * i));
}

START_TEST(test_rec_rejects)
{
	struct kv_rec r = sample_rec(), back;
	uint8_t good[KV_REC_HDR], h[KV_REC_HDR];

	kv_rec_encode(good, &r);
	/* rehash really rebuilds a valid header. */
	memcpy(h, good, sizeof(h));
	rehash(h);
	ck_assert_int_eq(kv_rec_decode(h, &back), 0);

	/* Bad magic (with a valid hash). */
	memcpy(h, good, sizeof(h));
	h[3] = '2';
	rehash(h);
	ck_assert_int_eq(kv_rec_decode(h, &back), -EIO);
	/* Bad version. */
	memcpy(h, good, sizeof(h));
	h[4] = KV_REC_VERSION + 1;
	rehash(h);
	ck_assert_int_eq(kv_rec_decode(h, &back), -EIO);
	memcpy(h, good, sizeof(h));
	h[4] = 0;
	rehash(h);
	ck_assert_int_eq(kv_rec_decode(h, &back), -EIO);
	/* Bad header length field. */
	memcpy(h, good, sizeof(h));
	h[6] = KV_REC_HDR * 2;
	rehash(h);
	ck_assert_int_eq(kv_rec_decode(h, &back), -EIO);
	/* Bad header hash, and any single damaged byte. */
	for (int i = 0; i < KV_REC_HDR; i++) {
		memcpy(h, good, sizeof(h));
		h[i] ^= 0x10;
		ck_assert_msg(kv_rec_decode(h, &back) == -EIO, "flip of byte %d accepted", i);
	}
	/* All zeros (a punched hole) is not a record. */
	memset(h, 0, sizeof(h));
	ck_assert_int_eq(kv_rec_decode(h, &back), -EIO);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = kvtest_tcase(s, "records", 60);

	tcase_add_test(tc, test_append_read_sizes);
	tcase_add_test(tc, test_segment_header);
	tcase_add_test(tc, test_short_chunks_read_back);
	tcase_add_test(tc, test_read_mismatch);
	tcase_add_loop_test(tc, test_damage_detected, 0, 2);
	tcase_add_test(tc, test_valid_hash_bad_payload);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_stray_segment_names);
	tcase_add_test(tc, test_concurrent_appends);

	tc = kvtest_tcase(s, "segments", 60);
	tcase_add_test(tc, test_free_punches_hole);
	tcase_add_test(tc, test_roll_and_delete);
	tcase_add_test(tc, test_record_larger_than_segment);
	tcase_add_test(tc, test_reopen_account_drop_empty);
	tcase_add_test(tc, test_reopen_read_then_append);
	tcase_add_test(tc, test_lanes_parallel);

	tc = kvtest_tcase(s, "header", 0);
	tcase_add_test(tc, test_rec_roundtrip);
	tcase_add_test(tc, test_rec_rejects);
	return s;
}

int main(void)
{
	rng_state = 0x2545f4914f6cdd1dULL; /* where rnd() starts, the same every run */
	return kvtest_run(store_suite, "store");
}
