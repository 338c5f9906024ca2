/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of inode records (src/store/meta.h) and of kv_rebuild (src/tools/rebuild.h).
 *
 * kv_meta: payloads encode and decode back to the same structure and the
 * same bytes (names, symlink target, binary xattr values, context
 * settings, many chunks); the layout is checked against a payload built by
 * hand from the field list below; decoding rejects every truncation,
 * trailing bytes, other versions, bad names, chunks out of order and
 * counts that cannot fit, and leaves the structure empty when it does.
 *
 * kv_rebuild: a store is built through kv_fs over two runs (files of odd
 * sizes, sparse, overwritten, truncated, renamed and removed files, a
 * context renamed across namespaces, symlinks, modes, owners, times,
 * xattrs, pins and TTLs), its index deleted and rebuilt from the segments,
 * and the tree compared with what it was, byte for byte. Then: a second
 * rebuild, a garbage kvfs.db kept aside, a damaged chunk (the file is cut
 * before it), a directory whose inode record is gone (its files go to
 * /lost+found), a second loss with /lost+found already there, contexts at
 * depth 3 some of which went to /lost+found (the index keeps depth 3), an
 * empty xattr value, a store in use or not a store (left as it was), and
 * inode numbers not being reused.
 *
 * Payload layout (version 1, little-endian), as src/store/meta.c writes it:
 *   u16 version, u16 reserved, u32 flags, u64 ino, u32 mode, uid, gid,
 *   nlink, u64 size, stored, rdev, atime, mtime, ctime, u8 pin,
 *   u8 reserved, u64 ttl, u64 hwm (highest inode number handed out),
 *   u32 nlinks, { u64 parent, u16 len, name[len] } * nlinks,
 *   u32 target length, target bytes,
 *   u32 nx, { u16 len, name[len], u32 vlen, value[vlen] } * nx,
 *   u32 nchunks, { u64 idx, u32 seg, u64 off, u32 len, u32 raw, u8 codec } * nchunks */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_int.h"
#include "meta.h"
#include "rebuild.h"
#include "kvtest.h"
#include "kvtest_fs.h"

/* ==== kv_meta ==== */

#define FIXED 114 /* fixed fields and four zero counts */
#define OFF_NLINKS 98

/* A payload built by hand, to check the layout and to craft bad ones. */
struct pb {
	uint8_t p[8192];
	size_t n;
};

static void pb8(struct pb *b, uint8_t v)
{
	ck_assert_uint_lt(b->n, sizeof(b->p));
	b->p[b->n++] = v;
}
static void pb16(struct pb *b, uint16_t v)
{
	pb8(b, v & 0xff);
	pb8(b, v >> 8);
}
static void pb32(struct pb *b, uint32_t v)
{
	pb16(b, v & 0xffff);
	pb16(b, v >> 16);
}
static void pb64(struct pb *b, uint64_t v)
{
	pb32(b, (uint32_t)v);
	pb32(b, (uint32_t)(v >> 32));
}
static void pbb(struct pb *b, const void *v, size_t n)
{
	ck_assert_uint_le(b->n + n, sizeof(b->p));
	memcpy(b->p + b->n, v, n);
	b->n += n;
}

/* The fixed part of a payload, up to and without the link count. */
static void pb_fixed(struct pb *b, uint16_t version)
{
	b->n = 0;
	pb16(b, version);
	pb16(b, 0);
	pb32(b, KV_META_HAS_CTX); /* flags */
	pb64(b, 42);              /* ino */
	pb32(b, S_IFREG | 0640);
	pb32(b, 1000);
	pb32(b, 100);
	pb32(b, 1);      /* nlink */
	pb64(b, 123456); /* size */
	pb64(b, 7000);   /* stored */
	pb64(b, 0);      /* rdev */
	pb64(b, 1);      /* atime */
	pb64(b, 2);      /* mtime */
	pb64(b, 3);      /* ctime */
	pb8(b, 1);       /* pin */
	pb8(b, 0);
	pb64(b, 3600); /* ttl */
	pb64(b, 99);   /* hwm */
}

static void pb_link(struct pb *b, uint64_t parent, const void *name, uint16_t len)
{
	pb64(b, parent);
	pb16(b, len);
	pbb(b, name, len);
}

static void pb_xattr(struct pb *b, const void *name, uint16_t len, const void *v, uint32_t vlen)
{
	pb16(b, len);
	pbb(b, name, len);
	pb32(b, vlen);
	pbb(b, v, vlen);
}

static void pb_chunk(struct pb *b, uint64_t idx)
{
	pb64(b, idx);
	pb32(b, 1);               /* seg */
	pb64(b, 64 + idx * 1000); /* off */
	pb32(b, 900);             /* len */
	pb32(b, 65536);           /* raw */
	pb8(b, 1);                /* codec */
}

static int is_empty(const struct kv_meta *m)
{
	static const struct kv_meta zero;

	return !memcmp(m, &zero, sizeof(zero));
}

/* Decoding p must fail with -EINVAL and leave m empty. */
static void expect_bad(const uint8_t *p, size_t len, const char *what)
{
	struct kv_meta m;
	int rc;

	memset(&m, 0xa5, sizeof(m));
	rc = kv_meta_decode(p, len, &m);
	ck_assert_msg(rc == -EINVAL, "%s: decode gave %d, expected -EINVAL", what, rc);
	ck_assert_msg(is_empty(&m), "%s: the structure is not left empty", what);
	kv_meta_free(&m);
}

static void expect_good(const uint8_t *p, size_t len, const char *what)
{
	struct kv_meta m;
	uint8_t *again;
	size_t n = 0;
	int rc = kv_meta_decode(p, len, &m);

	ck_assert_msg(rc == 0, "%s: decode gave %d, expected 0", what, rc);
	again = kv_meta_encode(&m, &n);
	ck_assert_ptr_nonnull(again);
	ck_assert_msg(n == len && !memcmp(again, p, n), "%s: encodes back to other bytes", what);
	free(again);
	kv_meta_free(&m);
}

/* A record with a bit of everything; big: large values and many chunks. */
static void sample(struct kv_meta *m, int big)
{
	char longname[256];
	uint8_t bin[5] = { 0, 1, 0, 0xff, 0 };
	size_t vlen = big ? 65536 : 300, nchunks = big ? 20000 : 40;
	uint8_t *v = malloc(vlen);

	ck_assert_ptr_nonnull(v);
	memset(m, 0, sizeof(*m));
	m->attr = (struct kv_attr){ .ino = 0x0102030405060708ULL,
				    .mode = S_IFREG | 04751,
				    .uid = 4000000000u,
				    .gid = 65534,
				    .nlink = 3,
				    .size = 0x123456789aULL,
				    .stored = 987654321,
				    .rdev = 77,
				    .atime = -5,
				    .mtime = 1700000000123456789LL,
				    .ctime = INT64_MAX };
	m->flags = KV_META_HAS_CTX;
	m->pin = 1;
	m->ttl = 86400;
	m->target = strdup("../some/where/a target");
	ck_assert_ptr_nonnull(m->target);
	memset(longname, 'x', 255);
	longname[255] = 0;
	ck_assert_int_eq(kv_meta_add_link(m, 2, "layer0.k.f16", 12), 0);
	ck_assert_int_eq(kv_meta_add_link(m, 0xfffffffffffffULL, longname, 255), 0);
	ck_assert_int_eq(kv_meta_add_link(m, 9, "\xff\xfe\x01 sp\\ce", 9), 0);
	ck_assert_int_eq(kv_meta_add_xattr(m, "user.bin", bin, sizeof(bin)), 0);
	ck_assert_int_eq(kv_meta_add_xattr(m, "user.empty", "", 0), 0);
	for (size_t i = 0; i < vlen; i++)
		v[i] = (uint8_t)(i * 7);
	ck_assert_int_eq(kv_meta_add_xattr(m, "user.big", v, (uint32_t)vlen), 0);
	for (int i = 0; i < 6; i++) {
		char nm[32];
		snprintf(nm, sizeof(nm), "user.n%d", i);
		ck_assert_int_eq(kv_meta_add_xattr(m, nm, nm, (uint32_t)strlen(nm)), 0);
	}
	for (size_t i = 0; i < nchunks; i++) {
		struct kv_chunk c = { .idx = 3 * i + (i > 5),
				      .loc = { (uint32_t)(1 + i / 1000), (uint32_t)(64 + i % 4096),
					       64 + 1000 * (uint64_t)i },
				      .raw = (uint32_t)(i * 13),
				      .codec = (uint8_t)(i % 3) };
		ck_assert_int_eq(kv_meta_add_chunk(m, &c), 0);
	}
	free(v);
}

static void same_meta(const struct kv_meta *a, const struct kv_meta *b)
{
	ck_assert(!memcmp(&a->attr, &b->attr, sizeof(a->attr)));
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->pin, b->pin);
	ck_assert_int_eq(a->ttl, b->ttl);
	ck_assert_int_eq(!a->target, !b->target);
	if (a->target)
		ck_assert_str_eq(a->target, b->target);
	ck_assert_uint_eq(a->nlinks, b->nlinks);
	for (size_t i = 0; i < a->nlinks; i++) {
		ck_assert_uint_eq(a->links[i].parent, b->links[i].parent);
		ck_assert_uint_eq(a->links[i].len, b->links[i].len);
		ck_assert(!memcmp(a->links[i].name, b->links[i].name, a->links[i].len));
		ck_assert_uint_eq(b->links[i].name[b->links[i].len], 0);
	}
	ck_assert_uint_eq(a->nx, b->nx);
	for (size_t i = 0; i < a->nx; i++) {
		ck_assert_str_eq(a->x[i].name, b->x[i].name);
		ck_assert_uint_eq(a->x[i].len, b->x[i].len);
		ck_assert(!a->x[i].len || !memcmp(a->x[i].value, b->x[i].value, a->x[i].len));
	}
	ck_assert_uint_eq(a->nchunks, b->nchunks);
	for (size_t i = 0; i < a->nchunks; i++) {
		ck_assert_uint_eq(a->chunks[i].idx, b->chunks[i].idx);
		ck_assert_uint_eq(a->chunks[i].loc.seg, b->chunks[i].loc.seg);
		ck_assert_uint_eq(a->chunks[i].loc.off, b->chunks[i].loc.off);
		ck_assert_uint_eq(a->chunks[i].loc.len, b->chunks[i].loc.len);
		ck_assert_uint_eq(a->chunks[i].raw, b->chunks[i].raw);
		ck_assert_uint_eq(a->chunks[i].codec, b->chunks[i].codec);
	}
}

START_TEST(test_roundtrip)
{
	for (int big = 0; big <= 1; big++) {
		struct kv_meta m, d;
		size_t len = 0, len2 = 0;
		uint8_t *p, *p2;

		sample(&m, big);
		p = kv_meta_encode(&m, &len);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq(kv_meta_decode(p, len, &d), 0);
		same_meta(&m, &d);
		p2 = kv_meta_encode(&d, &len2);
		ck_assert_ptr_nonnull(p2);
		ck_assert_uint_eq(len, len2);
		ck_assert(!memcmp(p, p2, len));
		free(p);
		free(p2);
		kv_meta_free(&m);
		kv_meta_free(&d);
	}
}
END_TEST

START_TEST(test_roundtrip_minimal)
{
	struct kv_meta m, d;
	size_t len = 0;
	uint8_t *p;

	/* A directory: no names, target, xattrs or chunks; ttl the default. */
	memset(&m, 0, sizeof(m));
	m.attr = (struct kv_attr){ .ino = 1, .mode = S_IFDIR | 0755, .nlink = 2 };
	m.ttl = -1;
	p = kv_meta_encode(&m, &len);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(len, FIXED);
	ck_assert_uint_eq(kv_meta_decode(p, len, &d), 0);
	same_meta(&m, &d);
	ck_assert_ptr_null(d.target);
	ck_assert_ptr_null(d.links);
	ck_assert_ptr_null(d.x);
	ck_assert_ptr_null(d.chunks);
	ck_assert_int_eq(d.ttl, -1);
	kv_meta_free(&d);
	free(p);
}
END_TEST

/* kv_meta_encode writes exactly the layout in the comment at the top. */
START_TEST(test_layout)
{
	static const uint8_t bin[3] = { 0, 0xff, 0 };
	struct kv_meta m;
	struct pb b;
	uint8_t *p;
	size_t len = 0;

	pb_fixed(&b, 1);
	pb32(&b, 2);
	pb_link(&b, 5, "ctx", 3);
	pb_link(&b, 6, "other", 5);
	pb32(&b, 4);
	pbb(&b, "a/b\xff", 4);
	pb32(&b, 2);
	pb_xattr(&b, "user.v", 6, bin, 3);
	pb_xattr(&b, "user.z", 6, "", 0);
	pb32(&b, 3);
	pb_chunk(&b, 0);
	pb_chunk(&b, 1);
	pb_chunk(&b, 9);
	ck_assert_int_eq(kv_meta_decode(b.p, b.n, &m), 0);
	ck_assert_uint_eq(m.attr.ino, 42);
	ck_assert_uint_eq(m.attr.mode, S_IFREG | 0640);
	ck_assert_uint_eq(m.attr.uid, 1000);
	ck_assert_uint_eq(m.attr.gid, 100);
	ck_assert_uint_eq(m.attr.nlink, 1);
	ck_assert_uint_eq(m.attr.size, 123456);
	ck_assert_uint_eq(m.attr.stored, 7000);
	ck_assert_int_eq(m.attr.atime, 1);
	ck_assert_int_eq(m.attr.mtime, 2);
	ck_assert_int_eq(m.attr.ctime, 3);
	ck_assert_uint_eq(m.flags, KV_META_HAS_CTX);
	ck_assert_uint_eq(m.pin, 1);
	ck_assert_int_eq(m.ttl, 3600);
	ck_assert_uint_eq(m.hwm, 99);
	ck_assert_uint_eq(m.nlinks, 2);
	ck_assert_uint_eq(m.links[1].parent, 6);
	ck_assert_str_eq(m.links[1].name, "other");
	ck_assert_str_eq(m.target, "a/b\xff");
	ck_assert_uint_eq(m.nx, 2);
	ck_assert_uint_eq(m.x[0].len, 3);
	ck_assert(!memcmp(m.x[0].value, bin, 3));
	ck_assert_uint_eq(m.x[1].len, 0);
	ck_assert_uint_eq(m.nchunks, 3);
	ck_assert_uint_eq(m.chunks[2].idx, 9);
	ck_assert_uint_eq(m.chunks[2].loc.off, 9064);
	ck_assert_uint_eq(m.chunks[2].loc.len, 900);
	ck_assert_uint_eq(m.chunks[2].raw, 65536);
	ck_assert_uint_eq(m.chunks[2].codec, 1);
	p = kv_meta_encode(&m, &len);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(len, b.n);
	ck_assert(!memcmp(p, b.p, len));
	free(p);
	kv_meta_free(&m);
}
END_TEST

START_TEST(test_truncations)
{
	struct kv_meta m;
	size_t len = 0;
	uint8_t *p, *q;

	sample(&m, 0);
	p = kv_meta_encode(&m, &len);
	ck_assert_ptr_nonnull(p);
	kv_meta_free(&m);
	ck_assert_uint_gt(len, 1000);
	/* Each prefix in a buffer of its own size, so ASan sees any overread. */
	for (size_t n = 0; n < len; n++) {
		char what[64];
		q = malloc(n ? n : 1);
		ck_assert_ptr_nonnull(q);
		memcpy(q, p, n);
		snprintf(what, sizeof(what), "prefix of %zu of %zu bytes", n, len);
		expect_bad(q, n, what);
		free(q);
	}
	/* Trailing bytes, zero or not. */
	q = malloc(len + 8);
	ck_assert_ptr_nonnull(q);
	memcpy(q, p, len);
	memset(q + len, 0, 8);
	expect_bad(q, len + 1, "one trailing zero byte");
	expect_bad(q, len + 8, "eight trailing zero bytes");
	q[len] = 0x5a;
	expect_bad(q, len + 1, "a trailing byte");
	/* Versions other than 1. */
	memcpy(q, p, len);
	for (unsigned v = 0; v < 4; v++) {
		if (v == KV_META_VERSION)
			continue;
		q[0] = (uint8_t)v;
		q[1] = 0;
		expect_bad(q, len, "another version");
	}
	q[0] = 1;
	q[1] = 1; /* 257 */
	expect_bad(q, len, "version 257");
	q[1] = 0;
	expect_good(q, len, "the payload, restored");
	free(q);
	free(p);
}
END_TEST

/* A payload of the fixed part, one link (parent, name of len bytes), no
 * target, no xattrs, no chunks. */
/* A payload with one xattr (and no names, target or chunks). */
static void one_xattr(struct pb *b, const void *name, uint16_t len, const void *v, uint32_t vlen)
{
	pb_fixed(b, 1);
	pb32(b, 0);
	pb32(b, 0);
	pb32(b, 1);
	pb_xattr(b, name, len, v, vlen);
	pb32(b, 0);
}

static void one_link(struct pb *b, const void *name, uint16_t len)
{
	pb_fixed(b, 1);
	pb32(b, 1);
	pb_link(b, 7, name, len);
	pb32(b, 0);
	pb32(b, 0);
	pb32(b, 0);
}

START_TEST(test_bad_names)
{
	char name[300];
	struct pb b;

	one_link(&b, "ok", 2);
	expect_good(b.p, b.n, "a plain name");
	one_link(&b, "a/b", 3);
	expect_bad(b.p, b.n, "a name with '/'");
	one_link(&b, "/", 1);
	expect_bad(b.p, b.n, "the name '/'");
	one_link(&b, "ab\0", 3);
	expect_bad(b.p, b.n, "a name with a NUL at its end");
	one_link(&b, "\0ab", 3);
	expect_bad(b.p, b.n, "a name with a NUL");
	one_link(&b, "", 0);
	expect_bad(b.p, b.n, "a zero-length name");
	memset(name, 'n', sizeof(name));
	one_link(&b, name, 255);
	expect_good(b.p, b.n, "a name of 255 bytes");
	one_link(&b, name, 256);
	expect_bad(b.p, b.n, "a name of 256 bytes");
	/* A name length past the end. */
	one_link(&b, "abc", 3);
	b.p[OFF_NLINKS + 4 + 8] = 200;
	expect_bad(b.p, b.n, "a name length past the end");

	/* xattr names: not empty, no NUL, at most 255 bytes. */
	one_xattr(&b, "", 0, "v", 1);
	expect_bad(b.p, b.n, "a zero-length xattr name");
	one_xattr(&b, "user.a\0b", 8, "v", 1);
	expect_bad(b.p, b.n, "an xattr name with a NUL");
	one_xattr(&b, name, 256, "v", 1);
	expect_bad(b.p, b.n, "an xattr name of 256 bytes");
	one_xattr(&b, name, 255, "\0\0", 2);
	expect_good(b.p, b.n, "an xattr name of 255 bytes, value of zeros");
	/* A value length past the end. */
	one_xattr(&b, "user.v", 6, "abc", 3);
	b.p[b.n - 4 - 3 - 4] = 4; /* vlen 3 -> 4 */
	expect_bad(b.p, b.n, "an xattr value one byte past the end");

	/* Symlink targets: no NUL, below 4096 bytes. */
	{
		static char t[4100];
		memset(t, 't', sizeof(t));
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, 4095);
		pbb(&b, t, 4095);
		pb32(&b, 0);
		pb32(&b, 0);
		expect_good(b.p, b.n, "a target of 4095 bytes");
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, 4096);
		pbb(&b, t, 4096);
		pb32(&b, 0);
		pb32(&b, 0);
		expect_bad(b.p, b.n, "a target of 4096 bytes");
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, 3);
		pbb(&b, "a\0b", 3);
		pb32(&b, 0);
		pb32(&b, 0);
		expect_bad(b.p, b.n, "a target with a NUL");
	}
}
END_TEST

START_TEST(test_bad_chunks)
{
	struct pb b;
	static const uint64_t orders[][3] = {
		{ 0, 1, 2 }, { 0, 2, 1 }, { 1, 1, 2 }, { 5, 3, 4 }, { 0, 7, 7 },
	};

	for (size_t k = 0; k < sizeof(orders) / sizeof(orders[0]); k++) {
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, 0);
		pb32(&b, 0);
		pb32(&b, 3);
		for (int i = 0; i < 3; i++)
			pb_chunk(&b, orders[k][i]);
		if (k == 0)
			expect_good(b.p, b.n, "chunks 0 1 2");
		else
			expect_bad(b.p, b.n, "chunks not strictly ascending");
	}
	/* Chunk indexes are below 2^63 (the index keeps them as int64, -1 is
	 * the inode record). */
	pb_fixed(&b, 1);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 2);
	pb_chunk(&b, 0);
	pb_chunk(&b, (uint64_t)INT64_MAX);
	expect_good(b.p, b.n, "chunk index 2^63-1");
	pb_fixed(&b, 1);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 1);
	pb_chunk(&b, (uint64_t)INT64_MAX + 1);
	expect_bad(b.p, b.n, "chunk index 2^63");
	pb_fixed(&b, 1);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 1);
	pb_chunk(&b, UINT64_MAX);
	expect_bad(b.p, b.n, "chunk index -1");
}
END_TEST

START_TEST(test_bad_counts)
{
	static const uint32_t counts[] = { 1, 2, 1000, 0x10000, 0x7fffffff, 0x80000000u, 0xffffffffu };
	struct pb b;

	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		uint32_t n = counts[k];
		/* nlinks */
		pb_fixed(&b, 1);
		pb32(&b, n);
		pb32(&b, 0);
		pb32(&b, 0);
		pb32(&b, 0);
		expect_bad(b.p, b.n, "a link count larger than the payload");
		/* target length */
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, n);
		pb32(&b, 0);
		pb32(&b, 0);
		expect_bad(b.p, b.n, "a target length larger than the payload");
		/* xattrs */
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, 0);
		pb32(&b, n);
		pb32(&b, 0);
		expect_bad(b.p, b.n, "an xattr count larger than the payload");
		/* chunks: one there, n claimed */
		pb_fixed(&b, 1);
		pb32(&b, 0);
		pb32(&b, 0);
		pb32(&b, 0);
		pb32(&b, n + 1);
		pb_chunk(&b, 0);
		expect_bad(b.p, b.n, "a chunk count larger than the payload");
		/* a value length */
		one_xattr(&b, "user.v", 6, "", 0);
		b.p[b.n - 8] = (uint8_t)n;
		b.p[b.n - 7] = (uint8_t)(n >> 8);
		b.p[b.n - 6] = (uint8_t)(n >> 16);
		b.p[b.n - 5] = (uint8_t)(n >> 24);
		expect_bad(b.p, b.n, "a value length larger than the payload");
	}
	/* Fewer items than counted, with room for the rest as garbage. */
	pb_fixed(&b, 1);
	pb32(&b, 2);
	pb_link(&b, 1, "a", 1);
	pb32(&b, 0);
	pb32(&b, 0);
	pb32(&b, 0);
	for (int i = 0; i < 40; i++)
		pb8(&b, 0);
	expect_bad(b.p, b.n, "a link count one too many");
	/* The smallest payload, and one byte less. */
	pb_fixed(&b, 1);
	for (int i = 0; i < 4; i++)
		pb32(&b, 0);
	ck_assert_uint_eq(b.n, FIXED);
	expect_good(b.p, b.n, "the smallest payload");
	expect_bad(b.p, b.n - 1, "one byte short of the smallest payload");
	expect_bad(NULL, 0, "nothing");
}
END_TEST

/* An empty value, as the index hands it over: SQLite gives NULL for a
 * zero-length blob. */
START_TEST(test_empty_value)
{
	struct kv_meta m, d;
	size_t len = 0;
	uint8_t *p;

	memset(&m, 0, sizeof(m));
	m.attr = (struct kv_attr){ .ino = 5, .mode = S_IFREG | 0644, .nlink = 1 };
	m.ttl = -1;
	ck_assert_int_eq(kv_meta_add_xattr(&m, "user.empty", NULL, 0), 0);
	ck_assert_uint_eq(m.x[0].len, 0);
	ck_assert_ptr_nonnull(m.x[0].value);
	p = kv_meta_encode(&m, &len);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(kv_meta_decode(p, len, &d), 0);
	same_meta(&m, &d);
	free(p);
	kv_meta_free(&d);
	kv_meta_free(&m);
}
END_TEST

START_TEST(test_free_zeroed)
{
	struct kv_meta m;

	memset(&m, 0, sizeof(m));
	kv_meta_free(&m);
	kv_meta_free(&m);
	ck_assert(is_empty(&m));
	sample(&m, 0);
	kv_meta_free(&m);
	ck_assert(is_empty(&m));
	kv_meta_free(&m); /* freeing leaves it zeroed: twice is safe */
}
END_TEST

/* ==== kv_rebuild ==== */

#define CHUNK (64u << 10)
#define MAXE 64

static struct kv_fs *open_existing(const char *store)
{
	struct kv_fs *fs = NULL;
	char err[512] = "";

	ck_assert_msg(kv_fs_open_existing(store, &fs, err, sizeof(err)) == 0,
		      "kv_fs_open_existing: %s", err);
	return fs;
}

/* Inode numbers handed out so far, removed ones included. */
static uint64_t max_ino;

static uint64_t mknode(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		       const char *target)
{
	struct kv_attr a;
	int rc = kv_fs_mknod(fs, parent, name, mode, &kvtest_root_cred, target, &a);

	ck_assert_msg(rc == 0, "mknod %s: %d", name, rc);
	if (a.ino > max_ino)
		max_ino = a.ino;
	return a.ino;
}

static void write_at(struct kv_fs *fs, uint64_t ino, const uint8_t *p, size_t n, uint64_t off)
{
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	for (size_t done = 0; done < n;) {
		size_t k = n - done < CHUNK ? n - done : CHUNK;
		ck_assert_int_eq(kv_file_write(fs, ino, p + done, k, (off_t)(off + done)),
				 (ssize_t)k);
		done += k;
	}
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
}

static uint64_t new_file(struct kv_fs *fs, uint64_t dir, const char *name, const uint8_t *p,
			 size_t n)
{
	uint64_t ino = mknode(fs, dir, name, S_IFREG | 0644, NULL);

	if (n)
		write_at(fs, ino, p, n, 0);
	return ino;
}

static void set_attr(struct kv_fs *fs, uint64_t ino, struct kv_attr in, unsigned mask)
{
	struct kv_attr out;
	int rc = kv_fs_setattr(fs, ino, &in, mask, &out);

	ck_assert_msg(rc == 0, "setattr of inode %llu: %d", (unsigned long long)ino, rc);
}

static void set_size(struct kv_fs *fs, uint64_t ino, uint64_t size)
{
	struct kv_attr a = { .size = size };

	set_attr(fs, ino, a, KV_SET_SIZE);
}

static uint8_t *rand_bytes(size_t n, int fp16)
{
	uint8_t *p = malloc(n + 1);

	ck_assert_ptr_nonnull(p);
	if (fp16)
		fill_fp16like(p, n);
	else
		fill_random(p, n);
	return p;
}

/* The store of the rebuild tests: two runs, so two segments.
 *   /ns/ctxA          pinned, ttl 3600, user.dir xattr; mode 0750
 *       empty one chunk chunk1 big kv sparse link moved2 late
 *   /ns2/ctxB         renamed from /ns/ctxB in run 2; ttl 60
 *       over trunc
 *   /emptydir
 * Removed: /ns/ctxB/gone, /ns/ctxC (and its file), /ns/ctxA/last (the
 * last inode handed out). */
static void build_store(char *store, size_t len)
{
	struct kv_fs *fs;
	uint64_t ns, ns2, a, b, c, f;
	uint8_t *p, bin[6] = { 0, 0xff, 0, 1, 0, 0 };
	size_t kvn = 0;
	uint8_t *kv = kvtest_load_kv("gpl3/layer0.k.f16", &kvn);

	rng_state = 0x243f6a8885a308d3ULL;
	max_ino = 0;
	kvtest_new_path(store, len, "store");
	fs = kvtest_open_fs(store, NULL);
	ns = mknode(fs, KV_ROOT_INO, "ns", S_IFDIR | 0755, NULL);
	ns2 = mknode(fs, KV_ROOT_INO, "ns2", S_IFDIR | 0755, NULL);
	a = mknode(fs, ns, "ctxA", S_IFDIR | 0755, NULL);
	b = mknode(fs, ns, "ctxB", S_IFDIR | 0755, NULL);
	mknode(fs, KV_ROOT_INO, "emptydir", S_IFDIR | 0700, NULL);
	new_file(fs, a, "empty", NULL, 0);
	p = rand_bytes(1, 0);
	new_file(fs, a, "one", p, 1);
	free(p);
	p = rand_bytes(CHUNK, 1);
	new_file(fs, a, "chunk", p, CHUNK);
	free(p);
	p = rand_bytes(CHUNK + 1, 0);
	new_file(fs, a, "chunk1", p, CHUNK + 1);
	free(p);
	p = rand_bytes(5 * CHUNK + 7, 1);
	f = new_file(fs, a, "big", p, 5 * CHUNK + 7);
	free(p);
	set_attr(fs, f, (struct kv_attr){ .mode = S_IFREG | 0600, .uid = 1000, .gid = 1000 },
		 KV_SET_MODE | KV_SET_UID | KV_SET_GID);
	set_attr(fs, f, (struct kv_attr){ .mtime = 981173106500000000LL }, KV_SET_MTIME);
	if (kv) {
		f = new_file(fs, a, "kv", kv, kvn);
		free(kv);
	} else {
		p = rand_bytes(131072, 1);
		f = new_file(fs, a, "kv", p, 131072);
		free(p);
	}
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "user.bin", bin, sizeof(bin), 0), 0);
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "user.gone", "x", 1, 0), 0);
	ck_assert_int_eq(kv_fs_removexattr(fs, f, "user.gone"), 0);
	/* Sparse: chunks 0 and 4 written, then extended past them. */
	p = rand_bytes(CHUNK, 1);
	f = new_file(fs, a, "sparse", p, 1000);
	write_at(fs, f, p, 3000, 4 * (uint64_t)CHUNK + 10);
	free(p);
	set_size(fs, f, 7 * (uint64_t)CHUNK + 3);
	mknode(fs, a, "link", S_IFLNK | 0777, "big");
	ck_assert_int_eq(kv_fs_setxattr(fs, a, "user.dir", "ctx", 3, 0), 0);
	ck_assert_int_eq(kv_fs_setxattr(fs, a, "user.kvfs.pin", "1", 1, 0), 0);
	ck_assert_int_eq(kv_fs_setxattr(fs, a, "user.kvfs.ttl", "3600", 4, 0), 0);
	set_attr(fs, a, (struct kv_attr){ .mode = S_IFDIR | 0750 }, KV_SET_MODE);
	ck_assert_int_eq(kv_fs_setxattr(fs, b, "user.kvfs.ttl", "60", 2, 0), 0);
	/* Overwritten in the middle and extended. */
	p = rand_bytes(3 * CHUNK, 0);
	f = new_file(fs, b, "over", p, 3 * CHUNK);
	free(p);
	p = rand_bytes(CHUNK + 999, 1);
	write_at(fs, f, p, CHUNK + 999, CHUNK + 500);
	write_at(fs, f, p, 10, 3 * (uint64_t)CHUNK + 100);
	free(p);
	/* Truncated into its second chunk. */
	p = rand_bytes(4 * CHUNK, 1);
	f = new_file(fs, b, "trunc", p, 4 * CHUNK);
	free(p);
	set_size(fs, f, CHUNK + CHUNK / 2);
	p = rand_bytes(2 * CHUNK, 0);
	new_file(fs, b, "gone", p, 2 * CHUNK);
	new_file(fs, b, "moved", p, CHUNK + 5);
	free(p);
	ck_assert_int_eq(kv_fs_remove(fs, b, "gone", 0), 0);
	ck_assert_int_eq(kv_fs_rename(fs, b, "moved", a, "moved2", 0), 0);
	kv_fs_close(fs);

	/* Run 2: segment 2. */
	fs = kvtest_open_fs(store, NULL);
	ck_assert_int_eq(kv_fs_rename(fs, ns, "ctxB", ns2, "ctxB", 0), 0);
	c = mknode(fs, ns, "ctxC", S_IFDIR | 0755, NULL);
	p = rand_bytes(2 * CHUNK, 1);
	new_file(fs, c, "f", p, 2 * CHUNK);
	new_file(fs, a, "late", p, 2 * CHUNK - 3);
	free(p);
	ck_assert_int_eq(kv_fs_remove(fs, c, "f", 0), 0);
	ck_assert_int_eq(kv_fs_remove(fs, ns, "ctxC", 1), 0);
	new_file(fs, a, "last", (const uint8_t *)"bye", 3);
	ck_assert_int_eq(kv_fs_remove(fs, a, "last", 0), 0);
	kv_fs_close(fs);
}

/* ---- the tree as kv_fs shows it ---- */

struct ent {
	char path[512];
	struct kv_attr a;
	char target[256];
	char xattrs[2048]; /* "name=hex;..." in listxattr order */
	char pin[64], ttl[64];
	int pin_rc, ttl_rc;
	uint8_t *data;
};

struct tree {
	struct ent e[MAXE];
	int n;
};

struct dirlist {
	char names[MAXE][256];
	uint64_t inos[MAXE];
	int n;
};

static int dir_cb(void *arg, const char *name, size_t len, const struct kv_attr *a, uint64_t next)
{
	struct dirlist *l = arg;

	(void)next;
	ck_assert_int_lt(l->n, MAXE);
	ck_assert_uint_lt(len, 256);
	memcpy(l->names[l->n], name, len);
	l->names[l->n][len] = 0;
	l->inos[l->n++] = a->ino;
	return 0;
}

static uint8_t *read_all(struct kv_fs *fs, uint64_t ino, size_t size)
{
	uint8_t *buf = malloc(size + 1);
	size_t done = 0;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	while (done < size) {
		size_t n = size - done < CHUNK ? size - done : CHUNK, got = 0;
		struct kv_readv rv;
		int rc = kv_file_read(fs, ino, (off_t)done, n, &rv);
		ck_assert_msg(rc == (int)n, "inode %llu: read at %zu: %d", (unsigned long long)ino,
			      done, rc);
		for (int i = 0; i < rv.n; i++) {
			memcpy(buf + done + got, rv.iov[i].iov_base, rv.iov[i].iov_len);
			got += rv.iov[i].iov_len;
		}
		kv_file_read_done(fs, &rv);
		ck_assert_uint_eq(got, n);
		done += got;
	}
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	return buf;
}

static void walk(struct kv_fs *fs, uint64_t dir, const char *path, struct tree *t, int with_dir)
{
	struct dirlist *l = calloc(1, sizeof(*l));
	struct ent *e;

	ck_assert_ptr_nonnull(l);
	if (with_dir) {
		ck_assert_int_lt(t->n, MAXE);
		e = &t->e[t->n++];
		memset(e, 0, sizeof(*e));
		snprintf(e->path, sizeof(e->path), "%s", *path ? path : "/");
		ck_assert_int_eq(kv_index_getattr(fs->ix, dir, &e->a), 0);
	}
	ck_assert_int_eq(kv_fs_readdir(fs, dir, 0, dir_cb, l), 0);
	for (int i = 0; i < l->n; i++) {
		char xl[1024];
		int xn;
		ck_assert_int_lt(t->n, MAXE);
		e = &t->e[t->n++];
		memset(e, 0, sizeof(*e));
		snprintf(e->path, sizeof(e->path), "%s/%s", path, l->names[i]);
		ck_assert_int_eq(kv_index_getattr(fs->ix, l->inos[i], &e->a), 0);
		if (S_ISLNK(e->a.mode)) {
			ck_assert_int_eq(kv_fs_readlink(fs, e->a.ino, e->target, sizeof(e->target)),
					 0);
			ck_assert_uint_gt(strlen(e->target), 0);
		}
		xn = kv_index_listxattr(fs->ix, e->a.ino, xl, sizeof(xl));
		ck_assert_int_ge(xn, 0);
		for (int k = 0; k < xn; k += (int)strlen(xl + k) + 1) {
			uint8_t v[256];
			int vn = kv_index_getxattr(fs->ix, e->a.ino, xl + k, v, sizeof(v));
			size_t at = strlen(e->xattrs);
			ck_assert_int_ge(vn, 0);
			at += (size_t)snprintf(e->xattrs + at, sizeof(e->xattrs) - at,
					       "%s=", xl + k);
			for (int j = 0; j < vn; j++)
				at += (size_t)snprintf(e->xattrs + at, sizeof(e->xattrs) - at,
						       "%02x", v[j]);
			snprintf(e->xattrs + at, sizeof(e->xattrs) - at, ";");
		}
		e->pin_rc = kv_fs_getxattr(fs, e->a.ino, "user.kvfs.pin", e->pin,
					   sizeof(e->pin) - 1);
		e->ttl_rc = kv_fs_getxattr(fs, e->a.ino, "user.kvfs.ttl", e->ttl,
					   sizeof(e->ttl) - 1);
		if (S_ISREG(e->a.mode))
			e->data = read_all(fs, e->a.ino, e->a.size);
		if (S_ISDIR(e->a.mode))
			walk(fs, l->inos[i], e->path, t, 0);
	}
	free(l);
}

static struct tree *snapshot(const char *store)
{
	struct tree *t = calloc(1, sizeof(*t));
	struct kv_fs *fs = open_existing(store);

	ck_assert_ptr_nonnull(t);
	walk(fs, KV_ROOT_INO, "", t, 1);
	kv_fs_close(fs);
	return t;
}

static void free_tree(struct tree *t)
{
	for (int i = 0; i < t->n; i++)
		free(t->e[i].data);
	free(t);
}

static struct ent *find(struct tree *t, const char *path)
{
	for (int i = 0; i < t->n; i++)
		if (!strcmp(t->e[i].path, path))
			return &t->e[i];
	return NULL;
}

/* Everything the same, but the times of directories, which the daemon
 * records only when the directory itself changes (mkdir, rename, chmod,
 * xattrs, pin, ttl), not when entries come and go in it: those may be
 * older, never newer. */
static void same_ent(const struct ent *x, const struct ent *y)
{
	const char *p = x->path;

	ck_assert_msg(x->a.ino == y->a.ino, "%s: inode %llu, was %llu", p,
		      (unsigned long long)y->a.ino, (unsigned long long)x->a.ino);
	ck_assert_msg(x->a.mode == y->a.mode, "%s: mode %o, was %o", p, y->a.mode, x->a.mode);
	ck_assert_msg(x->a.uid == y->a.uid && x->a.gid == y->a.gid, "%s: owner", p);
	ck_assert_msg(x->a.size == y->a.size, "%s: size %llu, was %llu", p,
		      (unsigned long long)y->a.size, (unsigned long long)x->a.size);
	ck_assert_msg(x->a.nlink == y->a.nlink, "%s: nlink %u, was %u", p, y->a.nlink, x->a.nlink);
	if (S_ISDIR(x->a.mode)) {
		/* The root of a store no mount opened has no record: made anew. */
		ck_assert_msg(y->a.mtime <= x->a.mtime || !strcmp(p, "/"),
			      "%s: directory mtime newer than it was", p);
	} else {
		ck_assert_msg(x->a.mtime == y->a.mtime, "%s: mtime %lld, was %lld", p,
			      (long long)y->a.mtime, (long long)x->a.mtime);
		ck_assert_msg(x->a.ctime == y->a.ctime, "%s: ctime %lld, was %lld", p,
			      (long long)y->a.ctime, (long long)x->a.ctime);
	}
	if (S_ISREG(x->a.mode))
		ck_assert_msg(x->a.stored == y->a.stored, "%s: stored %llu, was %llu", p,
			      (unsigned long long)y->a.stored, (unsigned long long)x->a.stored);
	ck_assert_msg(!strcmp(x->target, y->target), "%s: target '%s', was '%s'", p, y->target,
		      x->target);
	ck_assert_msg(!strcmp(x->xattrs, y->xattrs), "%s: xattrs '%s', were '%s'", p, y->xattrs,
		      x->xattrs);
	ck_assert_msg(x->pin_rc == y->pin_rc && !strcmp(x->pin, y->pin),
		      "%s: pin '%s' (%d), was '%s' (%d)", p, y->pin, y->pin_rc, x->pin, x->pin_rc);
	ck_assert_msg(x->ttl_rc == y->ttl_rc && !strcmp(x->ttl, y->ttl),
		      "%s: ttl '%s' (%d), was '%s' (%d)", p, y->ttl, y->ttl_rc, x->ttl, x->ttl_rc);
	if (S_ISREG(x->a.mode))
		ck_assert_msg(!memcmp(x->data, y->data, x->a.size), "%s: bytes differ", p);
}

/* Whether path is one of skip (an entry ending in '*' is a prefix). */
static int skipped(const char *const *skip, const char *path)
{
	for (int k = 0; skip && skip[k]; k++) {
		size_t n = strlen(skip[k]);
		if (n && skip[k][n - 1] == '*' ? !strncmp(skip[k], path, n - 1)
					       : !strcmp(skip[k], path))
			return 1;
	}
	return 0;
}

/* before and after hold the same paths, all alike but those in skip. */
static void same_tree(struct tree *before, struct tree *after, const char *const *skip)
{
	for (int i = 0; i < before->n; i++) {
		const struct ent *x = &before->e[i];
		struct ent *y = find(after, x->path);
		if (skipped(skip, x->path))
			continue;
		ck_assert_msg(y != NULL, "%s is missing after the rebuild", x->path);
		same_ent(x, y);
	}
	for (int i = 0; i < after->n; i++)
		ck_assert_msg(skipped(skip, after->e[i].path) || find(before, after->e[i].path),
			      "%s appeared after the rebuild", after->e[i].path);
}

static void rm_db(const char *store)
{
	static const char *const sfx[] = { "", "-wal", "-shm" };
	char p[1200];

	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/kvfs.db%s", store, sfx[i]);
		ck_assert(!unlink(p) || errno == ENOENT);
	}
}

static int exists(const char *store, const char *leaf)
{
	char p[1200];

	snprintf(p, sizeof(p), "%s/%s", store, leaf);
	return !access(p, F_OK);
}

/* kv_rebuild with its lines in *lines (malloc()ed). */
static int rebuild(const char *store, struct kv_rebuild_report *rep, char **lines)
{
	char err[512] = "", *buf = NULL;
	size_t blen = 0;
	FILE *out = open_memstream(&buf, &blen);
	int rc;

	ck_assert_ptr_nonnull(out);
	rc = kv_rebuild(store, out, rep, err, sizeof(err));
	fclose(out);
	if (rc)
		fprintf(stderr, "kv_rebuild: %s\n", err);
	if (lines)
		*lines = buf;
	else
		free(buf);
	return rc;
}

static void expect_clean_rebuild(const char *store, struct kv_rebuild_report *rep,
				 const struct tree *before)
{
	char *lines = NULL;
	uint64_t files = 0, dirs = 0, others = 0, bytes = 0;
	int rc = rebuild(store, rep, &lines);

	ck_assert_msg(rc == 0, "kv_rebuild: %d", rc);
	ck_assert_msg(!*lines, "kv_rebuild reported: %s", lines);
	free(lines);
	for (int i = 0; i < before->n; i++) {
		const struct kv_attr *a = &before->e[i].a;
		files += S_ISREG(a->mode);
		dirs += S_ISDIR(a->mode);
		others += !S_ISREG(a->mode) && !S_ISDIR(a->mode);
		bytes += S_ISREG(a->mode) ? a->size : 0;
	}
	ck_assert_uint_eq(rep->files, files);
	ck_assert_uint_eq(rep->dirs, dirs);
	ck_assert_uint_eq(rep->others, others);
	ck_assert_uint_eq(rep->bytes, bytes);
	ck_assert_uint_eq(rep->damaged, 0);
	ck_assert_uint_eq(rep->lost, 0);
	ck_assert_uint_eq(rep->bad_records, 0);
	ck_assert_uint_eq(rep->chunk_size, CHUNK);
	ck_assert_uint_ge(rep->segments, 2);
	/* The root has a record only once a mount wrote one (kv_fs_open
	 * without cfg.mount does not): rebuilt from nothing if need be. */
	ck_assert_uint_ge(rep->inode_records, files + dirs + others - 1);
	ck_assert_uint_ge(rep->chunk_records, rep->chunks);
}

START_TEST(test_rebuild_exact)
{
	char store[600];
	struct kv_rebuild_report rep;
	struct tree *before, *after;

	build_store(store, sizeof(store));
	before = snapshot(store);
	ck_assert_ptr_nonnull(find(before, "/ns2/ctxB/over"));
	ck_assert_ptr_null(find(before, "/ns/ctxB"));
	ck_assert_ptr_null(find(before, "/ns/ctxA/last"));
	ck_assert_str_eq(find(before, "/ns/ctxA")->pin, "1");
	rm_db(store);
	expect_clean_rebuild(store, &rep, before);
	ck_assert_str_eq(rep.old_db, "");
	ck_assert(!exists(store, "kvfs.db.lost-"));
	after = snapshot(store);
	same_tree(before, after, NULL);
	ck_assert_ptr_null(find(after, "/lost+found"));
	free_tree(after);

	/* A second rebuild, the index now present: moved aside, same tree. */
	expect_clean_rebuild(store, &rep, before);
	ck_assert_msg(!strncmp(rep.old_db, store, strlen(store)) &&
			      strstr(rep.old_db, "/kvfs.db.lost-"),
		      "old index went to '%s'", rep.old_db);
	ck_assert_int_eq(access(rep.old_db, F_OK), 0);
	after = snapshot(store);
	same_tree(before, after, NULL);
	free_tree(after);
	free_tree(before);
}
END_TEST

START_TEST(test_rebuild_garbage_db)
{
	char store[600], p[1200], first[sizeof(((struct kv_rebuild_report *)0)->old_db)];
	struct kv_rebuild_report rep;
	struct tree *before, *after;
	uint8_t junk[20000];
	size_t n = 0;
	uint8_t *kept;
	time_t t0;
	FILE *f;

	build_store(store, sizeof(store));
	before = snapshot(store);
	rm_db(store);
	fill_random(junk, sizeof(junk));
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);
	/* Two rebuilds in a row, just after the clock's second turned (so
	 * within one second, as a script or an operator retrying may do). */
	t0 = time(NULL);
	while (time(NULL) == t0)
		usleep(1000);
	expect_clean_rebuild(store, &rep, before);
	snprintf(first, sizeof(first), "%s", rep.old_db);
	expect_clean_rebuild(store, &rep, before);
	/* The garbage is kept aside byte for byte, and the second rebuild's
	 * old index too: "moved aside, never deleted". */
	ck_assert_msg(strcmp(first, rep.old_db),
		      "the second rebuild moved the index to %s "
		      "too, over the garbage the first kept there",
		      first);
	kept = kvtest_slurp(first, &n);
	ck_assert_uint_eq(n, sizeof(junk));
	ck_assert(!memcmp(kept, junk, n));
	free(kept);
	ck_assert_int_eq(access(rep.old_db, F_OK), 0);
	after = snapshot(store);
	same_tree(before, after, NULL);
	free_tree(after);
	free_tree(before);
}
END_TEST

/* A new inode after a rebuild gets a number never handed out before,
 * even when the inodes with the highest numbers were removed. */
START_TEST(test_rebuild_no_ino_reuse)
{
	char store[600];
	struct kv_rebuild_report rep;
	struct kv_fs *fs;
	uint64_t before = 0, ino;

	build_store(store, sizeof(store));
	before = max_ino; /* /ns/ctxA/last, removed */
	rm_db(store);
	ck_assert_int_eq(rebuild(store, &rep, NULL), 0);
	fs = open_existing(store);
	ino = mknode(fs, KV_ROOT_INO, "new", S_IFREG | 0644, NULL);
	kv_fs_close(fs);
	ck_assert_msg(ino > before,
		      "the new file got inode %llu, but inodes up to %llu were "
		      "handed out before the rebuild (format.md: never reused)",
		      (unsigned long long)ino, (unsigned long long)before);
}
END_TEST

/* The inode record of ino and the chunk records of its chunks, from the
 * index of a closed store. */
static void locate(const char *store, uint64_t ino, struct kv_loc *irec, struct kv_meta *m)
{
	char db[1200], err[256];
	struct kv_index *ix = NULL;

	snprintf(db, sizeof(db), "%s/kvfs.db", store);
	ck_assert_msg(kv_index_open(db, 0, &ix, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(kv_index_meta(ix, ino, 1, m, irec), 0);
	ck_assert_uint_gt(irec->len, KV_REC_HDR);
	kv_index_close(ix);
}

static void patch_seg(const char *store, uint32_t seg, uint64_t off, uint8_t xor_mask, size_t n)
{
	char p[1200];
	uint8_t b[64];
	FILE *f;

	ck_assert_uint_le(n, sizeof(b));
	snprintf(p, sizeof(p), "%s/segments/%08x.seg", store, seg);
	f = fopen(p, "r+b");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, (long)off, SEEK_SET), 0);
	ck_assert_uint_eq(fread(b, 1, n, f), n);
	for (size_t i = 0; i < n; i++)
		b[i] = xor_mask ? b[i] ^ xor_mask : 0;
	ck_assert_int_eq(fseek(f, (long)off, SEEK_SET), 0);
	ck_assert_uint_eq(fwrite(b, 1, n, f), n);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_rebuild_damaged_chunk)
{
	char store[600], *lines = NULL, want[128];
	struct kv_rebuild_report rep;
	struct tree *before, *after;
	struct kv_loc irec;
	struct kv_meta m;
	struct ent *x, *y;
	const char *skip[] = { "/ns/ctxA/big", NULL };
	const struct kv_chunk *c = NULL;

	build_store(store, sizeof(store));
	before = snapshot(store);
	x = find(before, "/ns/ctxA/big");
	locate(store, x->a.ino, &irec, &m);
	ck_assert_uint_eq(m.nchunks, 6);
	for (size_t i = 0; i < m.nchunks; i++)
		if (m.chunks[i].idx == 3)
			c = &m.chunks[i];
	ck_assert_ptr_nonnull(c);
	/* A payload byte of chunk 3. */
	patch_seg(store, c->loc.seg, c->loc.off + KV_REC_HDR + (c->loc.len - KV_REC_HDR) / 2, 0x40,
		  1);
	kv_meta_free(&m);
	rm_db(store);
	ck_assert_int_eq(rebuild(store, &rep, &lines), 0);
	snprintf(want, sizeof(want), "inode %llu: chunk 3 missing or damaged, cut to %u bytes\n",
		 (unsigned long long)x->a.ino, 3 * CHUNK);
	ck_assert_msg(!strcmp(lines, want), "kv_rebuild reported '%s', expected '%s'", lines, want);
	free(lines);
	ck_assert_uint_eq(rep.damaged, 1);
	ck_assert_uint_eq(rep.lost, 0);
	ck_assert_uint_eq(rep.bad_records, 1);
	after = snapshot(store);
	same_tree(before, after, skip);
	y = find(after, "/ns/ctxA/big");
	ck_assert_ptr_nonnull(y);
	ck_assert_uint_eq(y->a.size, 3 * CHUNK);
	ck_assert(!memcmp(x->data, y->data, 3 * CHUNK));
	ck_assert_uint_eq(y->a.mode, x->a.mode);
	ck_assert_uint_eq(y->a.uid, x->a.uid);
	ck_assert_uint_lt(y->a.stored, x->a.stored);
	free_tree(after);
	free_tree(before);
}
END_TEST

/* The inode record of /ns/ctxA is destroyed: its entries go to
 * /lost+found/<their inode number>, with their content and attributes. */
START_TEST(test_rebuild_lost_dir)
{
	char store[600], *lines = NULL, p[64];
	struct kv_rebuild_report rep;
	struct tree *before, *after;
	struct kv_loc irec;
	struct kv_meta m;
	struct ent *ctx, *lf;
	const char *skip[MAXE + 3];
	int nskip = 0, nchild = 0;

	build_store(store, sizeof(store));
	before = snapshot(store);
	ctx = find(before, "/ns/ctxA");
	locate(store, ctx->a.ino, &irec, &m);
	kv_meta_free(&m);
	patch_seg(store, irec.seg, irec.off, 0, KV_REC_HDR);
	rm_db(store);
	ck_assert_int_eq(rebuild(store, &rep, &lines), 0);
	for (int i = 0; i < before->n; i++)
		if (!strncmp(before->e[i].path, "/ns/ctxA", 8)) {
			skip[nskip++] = before->e[i].path;
			nchild += before->e[i].path[8] == '/';
		}
	skip[nskip++] = "/lost+found*";
	skip[nskip++] = "/";
	skip[nskip++] = "/ns";
	skip[nskip] = NULL;
	ck_assert_uint_eq(rep.lost, (uint64_t)nchild);
	ck_assert_uint_eq(rep.damaged, 0);
	after = snapshot(store);
	/* The rest as it was (/ and /ns: their link counts and times aside). */
	same_tree(before, after, skip);
	lf = find(after, "/lost+found");
	ck_assert_ptr_nonnull(lf);
	ck_assert(S_ISDIR(lf->a.mode));
	ck_assert_uint_eq(lf->a.mode & 07777, 0700);
	for (int i = 0; i < before->n; i++)
		ck_assert_uint_ne(lf->a.ino, before->e[i].a.ino);
	for (int i = 0; i < before->n; i++) {
		struct ent *x = &before->e[i], *y, moved;
		char line[128];
		if (strncmp(x->path, "/ns/ctxA/", 9))
			continue;
		snprintf(p, sizeof(p), "/lost+found/%llu", (unsigned long long)x->a.ino);
		y = find(after, p);
		ck_assert_msg(y != NULL, "%s is not %s", x->path, p);
		moved = *x;
		snprintf(moved.path, sizeof(moved.path), "%s", p);
		/* Out of its context: no pin or ttl of its own. */
		moved.pin_rc = y->pin_rc;
		moved.ttl_rc = y->ttl_rc;
		memcpy(moved.pin, y->pin, sizeof(moved.pin));
		memcpy(moved.ttl, y->ttl, sizeof(moved.ttl));
		same_ent(&moved, y);
		snprintf(line, sizeof(line),
			 "inode %llu: its directory is gone, now /lost+found/%llu\n",
			 (unsigned long long)x->a.ino, (unsigned long long)x->a.ino);
		ck_assert_msg(strstr(lines, line), "no line '%s' in '%s'", line, lines);
	}
	free(lines);
	ck_assert_ptr_null(find(after, "/ns/ctxA"));
	free_tree(after);
	free_tree(before);
}
END_TEST

/* A second loss after a first rebuild made /lost+found: the rebuild must
 * still succeed, and a rebuild that fails must not leave an empty index
 * behind (any later open would give back every record as unnamed space). */
START_TEST(test_rebuild_lost_twice)
{
	char store[600], *lines = NULL, p[1200];
	struct kv_rebuild_report rep;
	struct tree *before, *after;
	struct kv_loc irec;
	struct kv_meta m;
	struct kv_fs *fs;
	uint64_t ctxb;
	int rc;

	build_store(store, sizeof(store));
	before = snapshot(store);
	/* A /lost+found as a first rebuild leaves it (here: made by hand). */
	fs = open_existing(store);
	mknode(fs, KV_ROOT_INO, "lost+found", S_IFDIR | 0700, NULL);
	kv_fs_close(fs);
	ctxb = find(before, "/ns2/ctxB")->a.ino;
	locate(store, ctxb, &irec, &m);
	kv_meta_free(&m);
	patch_seg(store, irec.seg, irec.off, 0, KV_REC_HDR);
	rm_db(store);
	rc = rebuild(store, &rep, &lines);
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	ck_assert_msg(rc == 0 || access(p, F_OK),
		      "kv_rebuild failed (%d) and left a new, empty kvfs.db behind", rc);
	ck_assert_msg(rc == 0, "kv_rebuild failed (%d) with a /lost+found already there", rc);
	ck_assert_uint_eq(rep.lost, 2);
	after = snapshot(store);
	ck_assert_ptr_nonnull(find(after, "/ns/ctxA/big"));
	free(lines);
	free_tree(after);
	free_tree(before);
}
END_TEST

/* An xattr with an empty value comes back (the index reads it as a NULL
 * blob when it writes the inode record). */
START_TEST(test_rebuild_empty_xattr)
{
	char store[600], v[8];
	struct kv_rebuild_report rep;
	struct kv_fs *fs;
	uint64_t f;

	max_ino = 0;
	kvtest_new_path(store, sizeof(store), "store");
	fs = kvtest_open_fs(store, NULL);
	f = new_file(fs, KV_ROOT_INO, "f", (const uint8_t *)"abc", 3);
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "user.empty", "", 0, 0), 0);
	ck_assert_int_eq(kv_fs_setxattr(fs, f, "user.after", "1", 1, 0), 0);
	kv_fs_close(fs);
	rm_db(store);
	ck_assert_int_eq(rebuild(store, &rep, NULL), 0);
	fs = open_existing(store);
	ck_assert_int_eq(kv_fs_getxattr(fs, f, "user.empty", v, sizeof(v)), 0);
	ck_assert_int_eq(kv_fs_getxattr(fs, f, "user.after", v, sizeof(v)), 1);
	kv_fs_close(fs);
}
END_TEST

/* Context depth 3, a namespace's record destroyed: its contexts go to
 * /lost+found (depth 2 there). The new index must keep the depth of the
 * contexts that kept their place, so that a mount at that depth keeps
 * their pins. */
START_TEST(test_rebuild_depth3_lost)
{
	char store[600], err[256], db[1200], name[16];
	struct kv_config cfg = kvtest_small_config();
	struct kv_rebuild_report rep;
	struct kv_fs *fs = NULL;
	struct kv_index *ix = NULL;
	struct kv_loc irec;
	struct kv_meta m;
	uint64_t mdl, ns, keep, kctx, lostns;
	int64_t depth = -1;
	char v[16] = "";

	ck_assert_int_eq(kv_opt_set(&cfg, "context_depth", "3", err, sizeof(err)), 0);
	kvtest_new_path(store, sizeof(store), "store");
	ck_assert_msg(kv_fs_open(store, &cfg, &fs, err, sizeof(err)) == 0, "%s", err);
	mdl = mknode(fs, KV_ROOT_INO, "model", S_IFDIR | 0755, NULL);
	keep = mknode(fs, mdl, "keep", S_IFDIR | 0755, NULL);
	kctx = mknode(fs, keep, "ctx", S_IFDIR | 0755, NULL);
	new_file(fs, kctx, "f", (const uint8_t *)"data", 4);
	ck_assert_int_eq(kv_fs_setxattr(fs, kctx, "user.kvfs.pin", "1", 1, 0), 0);
	lostns = ns = mknode(fs, mdl, "ns", S_IFDIR | 0755, NULL);
	for (int i = 0; i < 12; i++) {
		uint64_t c;
		snprintf(name, sizeof(name), "c%d", i);
		c = mknode(fs, ns, name, S_IFDIR | 0755, NULL);
		new_file(fs, c, "f", (const uint8_t *)name, (uint32_t)strlen(name));
		ck_assert_int_eq(kv_fs_setxattr(fs, c, "user.kvfs.pin", "1", 1, 0), 0);
	}
	kv_fs_close(fs);
	locate(store, lostns, &irec, &m);
	kv_meta_free(&m);
	patch_seg(store, irec.seg, irec.off, 0, KV_REC_HDR);
	rm_db(store);
	ck_assert_int_eq(rebuild(store, &rep, NULL), 0);
	ck_assert_uint_eq(rep.lost, 12);
	snprintf(db, sizeof(db), "%s/kvfs.db", store);
	ck_assert_int_eq(kv_index_open(db, 0, &ix, err, sizeof(err)), 0);
	ck_assert_int_eq(kv_index_meta_get(ix, "context_depth", &depth), 0);
	kv_index_close(ix);
	ck_assert_msg(depth == 3,
		      "the rebuilt index says context_depth %lld, the store's "
		      "contexts are at depth 3",
		      (long long)depth);
	fs = open_existing(store);
	ck_assert_int_eq(kv_fs_getxattr(fs, kctx, "user.kvfs.pin", v, sizeof(v) - 1), 1);
	ck_assert_str_eq(v, "1");
	kv_fs_close(fs);
}
END_TEST

START_TEST(test_rebuild_refused)
{
	char store[600], err[512], p[1200], dir[600];
	struct kv_rebuild_report rep;
	struct tree *before, *after;
	struct stat st1, st2;
	int fd;

	build_store(store, sizeof(store));
	before = snapshot(store);
	/* In use: the lock is held. */
	snprintf(p, sizeof(p), "%s/kvfs.lock", store);
	fd = open(p, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	snprintf(p, sizeof(p), "%s/kvfs.db", store);
	ck_assert_int_eq(stat(p, &st1), 0);
	ck_assert_int_eq(kv_rebuild(store, NULL, &rep, err, sizeof(err)), -EBUSY);
	ck_assert_msg(strstr(err, "in use"), "error: %s", err);
	ck_assert_int_eq(stat(p, &st2), 0);
	ck_assert_uint_eq(st1.st_ino, st2.st_ino);
	ck_assert_uint_eq(st1.st_size, st2.st_size);
	ck_assert_str_eq(rep.old_db, "");
	close(fd);
	after = snapshot(store);
	same_tree(before, after, NULL);
	free_tree(after);
	free_tree(before);

	/* No store: a missing directory, an empty one, one with an empty
	 * segments directory. Nothing is created in them. */
	kvtest_new_dir(dir, sizeof(dir));
	snprintf(p, sizeof(p), "%s/none", dir);
	ck_assert_int_lt(kv_rebuild(p, NULL, &rep, err, sizeof(err)), 0);
	ck_assert_int_ne(access(p, F_OK), 0);
	ck_assert_int_lt(kv_rebuild(dir, NULL, &rep, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/segments", dir);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	ck_assert_int_lt(kv_rebuild(dir, NULL, &rep, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "no segments"), "error: %s", err);
	ck_assert(!exists(dir, "kvfs.db"));
	ck_assert_int_eq(kvtest_count_entries(dir, NULL), 1 + exists(dir, "kvfs.lock"));
}
END_TEST

/* A directory that is not a kvfs store is left as it was. */
START_TEST(test_rebuild_foreign_dir)
{
	char dir[600], err[512];
	struct kv_rebuild_report rep;

	kvtest_new_dir(dir, sizeof(dir));
	ck_assert_int_lt(kv_rebuild(dir, NULL, &rep, err, sizeof(err)), 0);
	ck_assert_msg(kvtest_count_entries(dir, NULL) == 0,
		      "kv_rebuild left %d entries (kvfs.lock: %d) in a directory that is not a store",
		      kvtest_count_entries(dir, NULL), exists(dir, "kvfs.lock"));
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("meta");
	TCase *tc = kvtest_tcase(s, "meta", 60);

	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_roundtrip_minimal);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_truncations);
	tcase_add_test(tc, test_bad_names);
	tcase_add_test(tc, test_bad_chunks);
	tcase_add_test(tc, test_bad_counts);
	tcase_add_test(tc, test_empty_value);
	tcase_add_test(tc, test_free_zeroed);
	tc = kvtest_tcase(s, "rebuild", 120);
	tcase_add_test(tc, test_rebuild_exact);
	tcase_add_test(tc, test_rebuild_garbage_db);
	tcase_add_test(tc, test_rebuild_no_ino_reuse);
	tcase_add_test(tc, test_rebuild_damaged_chunk);
	tcase_add_test(tc, test_rebuild_lost_dir);
	tcase_add_test(tc, test_rebuild_lost_twice);
	tcase_add_test(tc, test_rebuild_depth3_lost);
	tcase_add_test(tc, test_rebuild_empty_xattr);
	tcase_add_test(tc, test_rebuild_refused);
	tcase_add_test(tc, test_rebuild_foreign_dir);
	return s;
}

int main(void) { return kvtest_run(make_suite, "meta"); }
