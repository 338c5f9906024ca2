/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_codec (src/store/codec.h): shuffle filter, encode/decode round
 * trips on real fp16 KV data, incompressible and trivially compressible
 * data, the KV_CODEC_MARGIN rule and rejection of damaged payloads. */
#include <check.h>
#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec.h"
#include "kvtest.h"

#define MAX_CHUNK (1u << 20)

/* Real fp16 KV data (see kvtest_load_kv). Returns a malloc'd buffer of *n
 * bytes, or NULL. */
static uint8_t *load_kv(size_t *n) { return kvtest_load_kv("gpl3/layer0.v.f16", n); }

/* ---- shuffle ---- */

START_TEST(test_shuffle_layout_elem2)
{
	const uint8_t src[9] = { 0x10, 0x11, 0x20, 0x21, 0x30, 0x31, 0x40, 0x41, 0x99 };
	const uint8_t want[9] = { 0x10, 0x20, 0x30, 0x40, 0x11, 0x21, 0x31, 0x41, 0x99 };
	uint8_t dst[9], back[9];

	kv_codec_shuffle(src, dst, sizeof(src), 2);
	ck_assert_mem_eq(dst, want, sizeof(want));
	kv_codec_unshuffle(dst, back, sizeof(dst), 2);
	ck_assert_mem_eq(back, src, sizeof(src));
}
END_TEST

START_TEST(test_shuffle_layout_elem4)
{
	/* 2 elements of 4 bytes, then a 3-byte tail that must stay in place. */
	const uint8_t src[11] = { 'a', 'b', 'c', 'd', 'A', 'B', 'C', 'D', 'x', 'y', 'z' };
	const uint8_t want[11] = { 'a', 'A', 'b', 'B', 'c', 'C', 'd', 'D', 'x', 'y', 'z' };
	uint8_t dst[11], back[11];

	kv_codec_shuffle(src, dst, sizeof(src), 4);
	ck_assert_mem_eq(dst, want, sizeof(want));
	kv_codec_unshuffle(dst, back, sizeof(dst), 4);
	ck_assert_mem_eq(back, src, sizeof(src));
}
END_TEST

static const size_t shuffle_lens[] = { 0, 1,    2,    3,    4,     5,     6,     7,
				       9, 1001, 4097, 4099, 65535, 65537, 131071 };

static void shuffle_case(int _i)
{
	unsigned elem = _i % 2 ? 4 : 2;
	size_t n = shuffle_lens[_i / 2];
	uint8_t *src = calloc(1, n + 1), *mid = calloc(1, n + 1), *back = calloc(1, n + 1);
	size_t count = n / elem;

	fill_random(src, n);
	kv_codec_shuffle(src, mid, n, elem);
	/* Independent check of the planar layout and the untouched tail. */
	for (size_t i = 0; i < count * elem; i++) {
		size_t el = i / elem, b = i % elem;
		if (mid[b * count + el] != src[i])
			ck_abort_msg("elem %u n %zu: element %zu byte %zu misplaced", elem, n, el,
				     b);
	}
	for (size_t i = count * elem; i < n; i++)
		if (mid[i] != src[i])
			ck_abort_msg("elem %u n %zu: tail byte %zu moved", elem, n, i);
	kv_codec_unshuffle(mid, back, n, elem);
	ck_assert_msg(n == 0 || memcmp(back, src, n) == 0, "elem %u n %zu: round trip differs",
		      elem, n);
	free(src);
	free(mid);
	free(back);
}

START_TEST(test_shuffle_roundtrip)
{
	for (int i = 0; i < 2 * (int)(sizeof(shuffle_lens) / sizeof(shuffle_lens[0])); i++)
		shuffle_case(i);
}
END_TEST

/* ---- encode / decode ---- */

struct combo {
	enum kv_codec_id codec;
	int level;
	int shuffle;
};

static const struct combo compressing[] = {
	{ KV_CODEC_LZ4, 0, 0 },  { KV_CODEC_LZ4, 0, 2 },
	{ KV_CODEC_LZ4, 0, 4 },  { KV_CODEC_LZ4, 0, KV_SHUFFLE_AUTO },
	{ KV_CODEC_ZSTD, 1, 0 }, { KV_CODEC_ZSTD, 1, 2 },
	{ KV_CODEC_ZSTD, 1, 4 }, { KV_CODEC_ZSTD, 1, KV_SHUFFLE_AUTO },
	{ KV_CODEC_ZSTD, 3, 0 }, { KV_CODEC_ZSTD, 3, 2 },
	{ KV_CODEC_ZSTD, 3, 4 }, { KV_CODEC_ZSTD, 3, KV_SHUFFLE_AUTO },
};
#define NCOMPRESSING ((int)(sizeof(compressing) / sizeof(compressing[0])))

static const struct combo all_combos[] = {
	{ KV_CODEC_NONE, 0, 0 }, { KV_CODEC_NONE, 0, 2 },
	{ KV_CODEC_NONE, 0, 4 }, { KV_CODEC_NONE, 0, KV_SHUFFLE_AUTO },
	{ KV_CODEC_LZ4, 0, 0 },  { KV_CODEC_LZ4, 0, 2 },
	{ KV_CODEC_LZ4, 0, 4 },  { KV_CODEC_LZ4, 0, KV_SHUFFLE_AUTO },
	{ KV_CODEC_ZSTD, 1, 0 }, { KV_CODEC_ZSTD, 1, 2 },
	{ KV_CODEC_ZSTD, 1, 4 }, { KV_CODEC_ZSTD, 1, KV_SHUFFLE_AUTO },
	{ KV_CODEC_ZSTD, 3, 0 }, { KV_CODEC_ZSTD, 3, 2 },
	{ KV_CODEC_ZSTD, 3, 4 }, { KV_CODEC_ZSTD, 3, KV_SHUFFLE_AUTO },
};
#define NALL ((int)(sizeof(all_combos) / sizeof(all_combos[0])))

/* Encode src, check the result obeys the contract, store a copy of the
 * payload, decode it with a separate context and compare. */
static void roundtrip(const struct combo *c, const uint8_t *src, size_t n, struct kv_encoded *res)
{
	struct kv_codec_ctx *enc = kv_codec_ctx_new(MAX_CHUNK), *dec = kv_codec_ctx_new(MAX_CHUNK);
	struct kv_codec_params p = { c->codec, c->level, c->shuffle };
	struct kv_encoded e;
	uint8_t *stored, *out;

	ck_assert_ptr_nonnull(enc);
	ck_assert_ptr_nonnull(dec);
	char what[96];

	snprintf(what, sizeof(what), "%s level %d shuffle %d, %zu bytes", kv_codec_name(c->codec),
		 c->level, c->shuffle, n);
	ck_assert_msg(kv_codec_encode(enc, &p, src, n, &e) == 0, "%s: encode failed", what);
	if (e.codec == KV_CODEC_NONE) {
		ck_assert_msg(e.len == n && e.elem == 0 && e.data == src,
			      "%s: raw result len %u elem %u", what, e.len, e.elem);
	} else {
		ck_assert_msg(e.codec == c->codec, "%s: used codec %u", what, e.codec);
		ck_assert_msg(e.len <= n - n / KV_CODEC_MARGIN && e.len < n,
			      "%s: compressed to %u bytes, within the margin", what, e.len);
		if (c->shuffle == KV_SHUFFLE_AUTO)
			ck_assert_msg(e.elem == 0 || e.elem == 2, "%s: elem %u", what, e.elem);
		else
			ck_assert_msg(e.elem == (unsigned)c->shuffle, "%s: elem %u", what, e.elem);
	}
	stored = malloc(e.len ? e.len : 1);
	memcpy(stored, e.data, e.len);
	/* An exactly sized destination, so ASan sees any overrun. */
	out = malloc(n ? n : 1);
	memset(out, 0xa5, n);
	ck_assert_msg(kv_codec_decode(dec, e.codec, e.elem, stored, e.len, out, n) == 0,
		      "%s: decode failed", what);
	ck_assert_msg(n == 0 || memcmp(out, src, n) == 0, "%s: decoded bytes differ", what);
	if (res) {
		*res = e;
		res->data = NULL;
	}
	free(stored);
	free(out);
	kv_codec_ctx_free(enc);
	kv_codec_ctx_free(dec);
}

static void kv_case(int _i)
{
	const struct combo *c = &compressing[_i];
	size_t n;
	uint8_t *kv = load_kv(&n);
	/* Whole file, one 64K chunk, a length that is not a multiple of 2 or 4,
	 * and a short tail. */
	size_t lens[] = { n, 65536, 100001, 4097, 63 };
	int compressed = 0;

	ck_assert_msg(kv != NULL, "KV test data not found (tests/data/kv/gpl3/layer0.v.f16)");
	ck_assert_uint_ge(n, 100001);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct kv_encoded e;
		roundtrip(c, kv, lens[i], &e);
		compressed += e.codec != KV_CODEC_NONE;
	}
	/* This data set compresses well with every codec. */
	ck_assert_msg(compressed >= 3, "%s level %d shuffle %d: only %d of 5 compressed",
		      kv_codec_name(c->codec), c->level, c->shuffle, compressed);
	free(kv);
}

/* Every codec and level with every shuffle setting; _i picks the codec. */
START_TEST(test_roundtrip_kv_data)
{
	for (int i = 0; i < 4; i++)
		kv_case(_i * 4 + i);
}
END_TEST

/* shuffle=auto compresses both ways and keeps the smaller (the whole chunk
 * is the sample when it is at most 64K). */
static void auto_case(int _i)
{
	/* compressing[] holds four shuffle settings per codec, auto last. */
	const struct combo *c = &compressing[_i * 4 + 3];
	size_t n = 65536;
	uint8_t *kv, *syn = malloc(n), *text = malloc(n);
	static const char *const words[] = { "kvfs ",      "stores ", "the ", "cache ", "of ",
					     "contexts, ", "layer ",  "by ",  "layer. " };
	size_t kvn;
	struct kv_encoded off, two, aut;
	struct combo co = *c, c2 = *c, ca = *c;

	ck_assert_int_eq(c->shuffle, KV_SHUFFLE_AUTO);
	kv = load_kv(&kvn);
	ck_assert_ptr_nonnull(kv);
	/* fp16-like: constant high byte, random low byte: shuffling wins. */
	for (size_t i = 0; i < n; i += 2) {
		syn[i] = (uint8_t)(rnd() >> 56);
		syn[i + 1] = 0x3c;
	}
	/* Text: the byte split only hurts, the unshuffled result must be kept. */
	for (size_t i = 0; i < n;) {
		const char *w = words[rnd() % (sizeof(words) / sizeof(words[0]))];
		for (size_t k = 0; w[k] && i < n; k++)
			text[i++] = (uint8_t)w[k];
	}
	co.shuffle = 0;
	c2.shuffle = 2;
	ca.shuffle = KV_SHUFFLE_AUTO;
	for (int round = 2; round >= 0; round--) {
		const uint8_t *src = round == 2 ? text : round ? syn : kv;
		roundtrip(&co, src, n, &off);
		roundtrip(&c2, src, n, &two);
		roundtrip(&ca, src, n, &aut);
		ck_assert_uint_ne(two.codec, KV_CODEC_NONE);
		ck_assert_uint_eq(aut.len, two.len < off.len ? two.len : off.len);
		ck_assert_uint_eq(aut.elem, two.len < off.len ? 2 : 0);
		/* The text must really have exercised the unshuffled choice, the
		 * synthetic fp16 the shuffled one. */
		if (round == 2)
			ck_assert_uint_eq(aut.elem, 0);
		if (round == 1)
			ck_assert_uint_eq(aut.elem, 2);
	}
	free(kv);
	free(syn);
	free(text);
}

START_TEST(test_auto_picks_smaller)
{
	for (int i = 0; i < NCOMPRESSING / 4; i++)
		auto_case(i);
}
END_TEST

static void random_case(int _i)
{
	const struct combo *c = &all_combos[_i];
	size_t lens[] = { 1, 31, 64, 4096, 65536, 65537, MAX_CHUNK };
	uint8_t *src = malloc(MAX_CHUNK);
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(MAX_CHUNK);
	struct kv_codec_params p = { c->codec, c->level, c->shuffle };

	fill_random(src, MAX_CHUNK);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct kv_encoded e;
		memset(&e, 0x5a, sizeof(e));
		ck_assert_int_eq(kv_codec_encode(ctx, &p, src, lens[i], &e), 0);
		ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
		ck_assert_uint_eq(e.elem, 0);
		ck_assert_uint_eq(e.len, lens[i]);
		ck_assert(e.data == src);
		roundtrip(c, src, lens[i], NULL);
	}
	kv_codec_ctx_free(ctx);
	free(src);
}

START_TEST(test_random_stays_raw)
{
	for (int i = 0; i < NALL; i++)
		random_case(i);
}
END_TEST

static void zeros_case(int _i)
{
	const struct combo *c = &all_combos[_i];
	size_t lens[] = { 4096, 65536, 65537, MAX_CHUNK };
	uint8_t *src = calloc(1, MAX_CHUNK);

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct kv_encoded e;
		roundtrip(c, src, lens[i], &e);
		if (c->codec == KV_CODEC_NONE) {
			ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
			ck_assert_uint_eq(e.len, lens[i]);
		} else {
			ck_assert_uint_eq(e.codec, c->codec);
			/* At least 50x smaller. */
			ck_assert_uint_lt((size_t)e.len * 50, lens[i]);
		}
	}
	free(src);
}

START_TEST(test_zeros_compress)
{
	for (int i = 0; i < NALL; i++)
		zeros_case(i);
}
END_TEST

START_TEST(test_empty_and_too_big)
{
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(65536);
	struct kv_codec_params p = { KV_CODEC_ZSTD, 1, 2 };
	uint8_t *src = calloc(1, 65537), out[1];
	struct kv_encoded e;

	ck_assert_int_eq(kv_codec_encode(ctx, &p, src, 0, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
	ck_assert_uint_eq(e.len, 0);
	ck_assert_int_eq(kv_codec_decode(ctx, KV_CODEC_NONE, 0, src, 0, out, 0), 0);
	ck_assert_int_eq(kv_codec_encode(ctx, &p, src, 65536, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_ZSTD);
	ck_assert_int_eq(kv_codec_encode(ctx, &p, src, 65537, &e), -EINVAL);
	kv_codec_ctx_free(ctx);
	free(src);
}
END_TEST

/* Chunks saving less than 1/KV_CODEC_MARGIN stay raw, even though the codec
 * did make them smaller; those saving more are compressed. */
START_TEST(test_margin)
{
	size_t n = 65536;
	uint8_t *src = malloc(n), *lz = malloc((size_t)LZ4_compressBound((int)n));
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(n);
	struct kv_codec_params p = { KV_CODEC_LZ4, 0, 0 };
	int saw_raw_smaller = 0, saw_compressed = 0;

	/* Random bytes with a leading run of k zeros: the larger k, the more
	 * lz4 saves. */
	for (size_t k = 0; k <= n / 8; k += 256) {
		struct kv_encoded e;
		int direct;
		rng_state = 12345 + k;
		fill_random(src, n);
		memset(src, 0, k);
		direct = LZ4_compress_default((const char *)src, (char *)lz, (int)n,
					      LZ4_compressBound((int)n));
		ck_assert_int_gt(direct, 0);
		ck_assert_int_eq(kv_codec_encode(ctx, &p, src, n, &e), 0);
		if ((size_t)direct <= n - n / KV_CODEC_MARGIN) {
			ck_assert_msg(e.codec == KV_CODEC_LZ4, "k=%zu lz4=%d stays raw", k, direct);
			ck_assert_int_eq(e.len, direct);
			saw_compressed = 1;
		} else {
			ck_assert_msg(e.codec == KV_CODEC_NONE && e.len == n && e.data == src,
				      "k=%zu lz4=%d: saves < 1/%d but got codec %d len %u", k,
				      direct, KV_CODEC_MARGIN, e.codec, e.len);
			saw_raw_smaller |= (size_t)direct < n;
		}
	}
	ck_assert(saw_raw_smaller);
	ck_assert(saw_compressed);
	kv_codec_ctx_free(ctx);
	free(src);
	free(lz);
}
END_TEST

static void small_pattern(uint8_t *src, size_t n, int pat)
{
	for (size_t i = 0; i < n; i++)
		src[i] = pat == 0   ? 0
			 : pat == 1 ? (uint8_t)(i % 3)
			 : pat == 2 ? (uint8_t)(i / 4)
			 : pat == 3 ? (uint8_t)(i * 7 % 5)
				    : (uint8_t)(i & 1 ? 0x3c : i);
}

/* Runs every compressing codec/shuffle setting over short chunks (1..128
 * bytes, five patterns) and reports how many encodings break rule, with
 * the first one. */
static void small_chunks(int strict)
{
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(4096);
	uint8_t src[128];
	char first[160] = "";
	int bad = 0, compressed = 0;

	for (int c = 0; c < NCOMPRESSING; c++) {
		struct kv_codec_params p = { compressing[c].codec, compressing[c].level,
					     compressing[c].shuffle };
		for (int pat = 0; pat < 5; pat++) {
			for (size_t n = 1; n <= sizeof(src); n++) {
				struct kv_encoded e;
				int ok;
				small_pattern(src, n, pat);
				ck_assert_int_eq(kv_codec_encode(ctx, &p, src, n, &e), 0);
				if (e.codec == KV_CODEC_NONE)
					continue;
				compressed++;
				ok = e.len < n && (!strict || (n - e.len) * KV_CODEC_MARGIN >= n);
				if (!ok && !bad++)
					snprintf(first, sizeof(first),
						 "%s level %d shuffle %d: %zu bytes (pattern %d) "
						 "compressed to %u bytes",
						 kv_codec_name(e.codec), p.level, p.shuffle, n, pat,
						 e.len);
			}
		}
	}
	ck_assert_int_gt(compressed, 100);
	ck_assert_msg(bad == 0, "%d of %d compressed short chunks %s; first: %s", bad, compressed,
		      strict ? "save less than 1/KV_CODEC_MARGIN" : "are not shorter than raw",
		      first);
	kv_codec_ctx_free(ctx);
}

/* A file's last chunk can be a few bytes long. A compressed payload must be
 * shorter than the raw bytes: kv_store tells raw records by stored length
 * == raw length, so an equal-length compressed payload is unreadable. */
START_TEST(test_small_chunks_never_same_length) { small_chunks(0); }
END_TEST

/* codec.h: compressed only when it saves at least 1/KV_CODEC_MARGIN of its
 * size, i.e. (n - len) * KV_CODEC_MARGIN >= n, for short chunks too. */
START_TEST(test_margin_small_chunks) { small_chunks(1); }
END_TEST

/* Compress n bytes of src with the given codec and shuffle (it must
 * compress);
 * returns a malloc'd copy of the payload. */
static uint8_t *encode_copy(struct kv_codec_ctx *ctx, enum kv_codec_id codec, int shuffle,
			    const uint8_t *src, size_t n, struct kv_encoded *e)
{
	struct kv_codec_params p = { codec, 1, shuffle };
	uint8_t *copy;

	ck_assert_int_eq(kv_codec_encode(ctx, &p, src, n, e), 0);
	ck_assert_uint_eq(e->codec, codec);
	copy = malloc(e->len);
	memcpy(copy, e->data, e->len);
	return copy;
}

static uint8_t *kvish(size_t n)
{
	uint8_t *src = malloc(n);

	/* Compressible but not trivial: small random values, fp16-like. */
	fill_fp16like(src, n);
	return src;
}

static void wrong_raw_len_case(int _i)
{
	enum kv_codec_id codec = _i / 3 ? KV_CODEC_ZSTD : KV_CODEC_LZ4;
	int shuffle = (int[]){ 0, 2, 4 }[_i % 3];
	size_t n = 65536;
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t *src = kvish(n), *out = malloc(n + 1);
	struct kv_encoded e;
	uint8_t *pl = encode_copy(ctx, codec, shuffle, src, n, &e);
	size_t wrong[] = { n - 1, n + 1, n / 2, 0, 1 };

	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, e.elem, pl, e.len, out, n), 0);
	ck_assert_mem_eq(out, src, n);
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
		ck_assert_msg(kv_codec_decode(ctx, e.codec, e.elem, pl, e.len, out, wrong[i]) == -EIO,
			      "raw_len %zu accepted", wrong[i]);
	/* raw_len beyond the context's max_chunk. */
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, e.elem, pl, e.len, out, MAX_CHUNK + 1), -EIO);
	free(pl);
	free(src);
	free(out);
	kv_codec_ctx_free(ctx);
}

START_TEST(test_decode_rejects_wrong_raw_len)
{
	for (int i = 0; i < 6; i++)
		wrong_raw_len_case(i);
}
END_TEST

static void bad_payload_case(int _i)
{
	enum kv_codec_id codec = _i ? KV_CODEC_ZSTD : KV_CODEC_LZ4;
	size_t n = 65536;
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t *src = kvish(n), *out = malloc(n);
	struct kv_encoded e;
	uint8_t *pl = encode_copy(ctx, codec, 0, src, n, &e);
	uint8_t *bad = malloc(e.len);

	/* Truncated payloads. */
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 0, pl, e.len / 2, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 0, pl, e.len - 1, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 0, pl, 0, out, n), -EIO);
	/* Garbage of the right length. */
	memset(bad, 0xff, e.len);
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 0, bad, e.len, out, n), -EIO);
	/* Damaged frame header (zstd magic) / first lz4 token. */
	memcpy(bad, pl, e.len);
	bad[0] ^= 0xff;
	bad[1] ^= 0xff;
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 0, bad, e.len, out, n), -EIO);
	/* Another codec's payload. */
	ck_assert_int_eq(kv_codec_decode(ctx, codec == KV_CODEC_LZ4 ? KV_CODEC_ZSTD : KV_CODEC_LZ4,
					 0, pl, e.len, out, n),
			 -EIO);
	/* Unknown codec and element sizes. */
	ck_assert_int_eq(kv_codec_decode(ctx, 3, 0, pl, e.len, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, 0xff, 0, pl, e.len, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 3, pl, e.len, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 8, pl, e.len, out, n), -EIO);
	/* A raw payload must be exactly raw_len bytes and carry no filter. */
	ck_assert_int_eq(kv_codec_decode(ctx, KV_CODEC_NONE, 0, src, n - 1, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, KV_CODEC_NONE, 2, src, n, out, n), -EIO);
	ck_assert_int_eq(kv_codec_decode(ctx, KV_CODEC_NONE, 0, src, n, out, n), 0);
	ck_assert_mem_eq(out, src, n);
	/* The good payload still decodes after all that. */
	ck_assert_int_eq(kv_codec_decode(ctx, e.codec, 0, pl, e.len, out, n), 0);
	ck_assert_mem_eq(out, src, n);
	free(bad);
	free(pl);
	free(src);
	free(out);
	kv_codec_ctx_free(ctx);
}

START_TEST(test_decode_rejects_bad_payload)
{
	for (int i = 0; i < 2; i++)
		bad_payload_case(i);
}
END_TEST

/* Random damage: decode must return 0 or -EIO and stay inside its buffers
 * (the sanitizer build checks the latter). */
START_TEST(test_decode_fuzz)
{
	enum kv_codec_id codec = _i / 2 ? KV_CODEC_ZSTD : KV_CODEC_LZ4;
	int shuffle = _i % 2 ? 2 : 0;
	size_t n = 16384;
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(n);
	uint8_t *src = kvish(n), *out = malloc(n);
	struct kv_encoded e;
	uint8_t *pl = encode_copy(ctx, codec, shuffle, src, n, &e);
	uint8_t *bad = malloc(e.len);
	int fails = 0;

	for (int iter = 0; iter < 1500; iter++) {
		size_t len = e.len;
		memcpy(bad, pl, e.len);
		switch (iter % 3) {
		case 0: /* flip a few bytes */
			for (int k = 0; k < 1 + iter % 4; k++)
				bad[rnd() % e.len] ^= (uint8_t)(1 + rnd() % 255);
			break;
		case 1: /* truncate */ len = rnd() % e.len; break;
		case 2: /* overwrite a run with random bytes */
		{
			size_t at = rnd() % e.len, k = 1 + rnd() % 64;
			for (size_t j = at; j < at + k && j < e.len; j++)
				bad[j] = (uint8_t)rnd();
			break;
		}
		}
		int rc = kv_codec_decode(ctx, e.codec, e.elem, bad, len, out, n);
		ck_assert_msg(rc == 0 || rc == -EIO, "iteration %d: rc %d", iter, rc);
		fails += rc == -EIO;
		if (iter % 3 == 1)
			ck_assert_int_eq(rc, -EIO); /* a truncated frame is never valid */
	}
	ck_assert_int_gt(fails, 500);
	free(bad);
	free(pl);
	free(src);
	free(out);
	kv_codec_ctx_free(ctx);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(kv_codec_name(KV_CODEC_NONE), "none");
	ck_assert_str_eq(kv_codec_name(KV_CODEC_LZ4), "lz4");
	ck_assert_str_eq(kv_codec_name(KV_CODEC_ZSTD), "zstd");
	ck_assert_str_eq(kv_codec_name(7), "unknown");
}
END_TEST

START_TEST(test_inbuf_holds_bound)
{
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(MAX_CHUNK);
	size_t cap = 0;
	uint8_t *b = kv_codec_inbuf(ctx, &cap);

	ck_assert_ptr_nonnull(b);
	ck_assert_uint_ge(cap, ZSTD_compressBound(MAX_CHUNK));
	ck_assert_uint_ge(cap, (size_t)LZ4_compressBound(MAX_CHUNK));
	/* Writable to its full size; decoding from it works. */
	memset(b, 0, cap);
	{
		uint8_t *src = kvish(4096), out[4096];
		struct kv_codec_params p = { KV_CODEC_LZ4, 0, 0 };
		struct kv_codec_ctx *other = kv_codec_ctx_new(MAX_CHUNK);
		struct kv_encoded e;
		ck_assert_int_eq(kv_codec_encode(other, &p, src, 4096, &e), 0);
		memcpy(b, e.data, e.len);
		ck_assert_int_eq(kv_codec_decode(ctx, e.codec, e.elem, b, e.len, out, 4096), 0);
		ck_assert_mem_eq(out, src, 4096);
		kv_codec_ctx_free(other);
		free(src);
	}
	kv_codec_ctx_free(ctx);
}
END_TEST

static void *tls_thread(void *arg) { return kv_codec_tls(*(size_t *)arg); }

START_TEST(test_tls_per_thread)
{
	size_t sz = 65536;
	struct kv_codec_ctx *a = kv_codec_tls(sz), *b = kv_codec_tls(sz),
			    *small = kv_codec_tls(4096);
	pthread_t t;
	void *other;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, b);
	ck_assert_ptr_eq(a, small);
	ck_assert_int_eq(pthread_create(&t, NULL, tls_thread, &sz), 0);
	ck_assert_int_eq(pthread_join(t, &other), 0);
	ck_assert_ptr_nonnull(other);
	ck_assert_ptr_ne(other, a);
}
END_TEST

/* kv_codec_encode_hinted: a file's filter choice reused by its next chunks. */
static void decode_check(const struct kv_encoded *e, const uint8_t *src, size_t n)
{
	struct kv_codec_ctx *dec = kv_codec_ctx_new(MAX_CHUNK);
	uint8_t *out = malloc(n);

	ck_assert_int_eq(kv_codec_decode(dec, e->codec, e->elem, e->data, e->len, out, n), 0);
	ck_assert_mem_eq(out, src, n);
	free(out);
	kv_codec_ctx_free(dec);
}

START_TEST(test_hinted_filter)
{
	size_t n = MAX_CHUNK;
	uint8_t *syn = malloc(n), *rand = malloc(n), *text = malloc(n);
	static const char *const words[] = { "kvfs ",      "stores ", "the ", "cache ", "of ",
					     "contexts, ", "layer ",  "by ",  "layer. " };
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(MAX_CHUNK);
	struct kv_codec_params lz4 = { KV_CODEC_LZ4, 0, KV_SHUFFLE_AUTO };
	struct kv_codec_params two = { KV_CODEC_LZ4, 0, 2 };
	struct kv_encoded e;
	enum kv_filter f;

	/* fp16-like, constant high byte: only the byte split lets lz4 shrink it. */
	for (size_t i = 0; i < n; i += 2) {
		syn[i] = (uint8_t)(rnd() >> 56);
		syn[i + 1] = 0x3c;
	}
	fill_random(rand, n);
	for (size_t i = 0; i < n;) {
		const char *w = words[rnd() % (sizeof(words) / sizeof(words[0]))];
		for (size_t k = 0; w[k] && i < n; k++)
			text[i++] = (uint8_t)w[k];
	}
	/* A probe chooses, and says what it chose. */
	f = KV_FILTER_PROBE;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, syn, n, &f, &e), 0);
	ck_assert_int_eq(f, KV_FILTER_SHUFFLE);
	ck_assert_uint_eq(e.elem, 2);
	decode_check(&e, syn, n);
	f = KV_FILTER_PROBE;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, text, n, &f, &e), 0);
	ck_assert_int_eq(f, KV_FILTER_NONE);
	ck_assert_uint_eq(e.codec, KV_CODEC_LZ4);
	ck_assert_uint_eq(e.elem, 0);
	/* A choice given is followed without sampling: text shuffled, which
	 * a probe would not have chosen. */
	f = KV_FILTER_SHUFFLE;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, text, n, &f, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_LZ4);
	ck_assert_uint_eq(e.elem, 2);
	ck_assert_int_eq(f, KV_FILTER_SHUFFLE);
	decode_check(&e, text, n);
	f = KV_FILTER_RAW;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, syn, n, &f, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
	ck_assert(e.data == syn && e.len == n);
	ck_assert_int_eq(f, KV_FILTER_RAW);
	/* A choice that does not pay here (no split for fp16 under lz4,
	 * shuffled random bytes): stored raw, the next chunk sampled again. */
	f = KV_FILTER_NONE;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, syn, n, &f, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
	ck_assert_int_eq(f, KV_FILTER_PROBE);
	f = KV_FILTER_SHUFFLE;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, rand, n, &f, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
	ck_assert_int_eq(f, KV_FILTER_PROBE);
	/* Random data probed: raw, and remembered as raw. */
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, rand, n, &f, &e), 0);
	ck_assert_uint_eq(e.codec, KV_CODEC_NONE);
	ck_assert_int_eq(f, KV_FILTER_RAW);
	/* Without shuffle=auto the hint is neither read nor changed. */
	f = KV_FILTER_NONE;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &two, syn, n, &f, &e), 0);
	ck_assert_uint_eq(e.elem, 2);
	ck_assert_int_eq(f, KV_FILTER_NONE);
	/* A chunk of at most 64 KiB is its own sample: hint unchanged. */
	f = KV_FILTER_RAW;
	ck_assert_int_eq(kv_codec_encode_hinted(ctx, &lz4, syn, 65536, &f, &e), 0);
	ck_assert_uint_eq(e.elem, 2);
	ck_assert_int_eq(f, KV_FILTER_RAW);
	kv_codec_ctx_free(ctx);
	free(syn);
	free(rand);
	free(text);
}
END_TEST

/* zstd's choice is made on the whole chunk: the shorter of the two whole
 * results, kept without compressing a third time. */
START_TEST(test_hinted_zstd_whole_chunk)
{
	size_t kvn, n = MAX_CHUNK;
	uint8_t *kv = load_kv(&kvn), *src = malloc(n);
	struct kv_codec_ctx *ctx = kv_codec_ctx_new(MAX_CHUNK);
	struct kv_encoded e, off, two;
	enum kv_filter f = KV_FILTER_PROBE;

	ck_assert_ptr_nonnull(kv);
	for (size_t i = 0; i < n; i += kvn)
		memcpy(src + i, kv, n - i < kvn ? n - i : kvn);
	for (int level = 1; level <= 3; level += 2) {
		struct kv_codec_params au = { KV_CODEC_ZSTD, level, KV_SHUFFLE_AUTO };
		struct kv_codec_params p0 = { KV_CODEC_ZSTD, level, 0 };
		struct kv_codec_params p2 = { KV_CODEC_ZSTD, level, 2 };
		size_t l0, l2;

		ck_assert_int_eq(kv_codec_encode(ctx, &p0, src, n, &off), 0);
		l0 = off.codec == KV_CODEC_NONE ? n : off.len;
		ck_assert_int_eq(kv_codec_encode(ctx, &p2, src, n, &two), 0);
		l2 = two.codec == KV_CODEC_NONE ? n : two.len;
		f = KV_FILTER_PROBE;
		ck_assert_int_eq(kv_codec_encode_hinted(ctx, &au, src, n, &f, &e), 0);
		ck_assert_uint_eq(e.len, l2 < l0 ? l2 : l0);
		ck_assert_int_eq(f, l2 < l0 ? KV_FILTER_SHUFFLE : KV_FILTER_NONE);
		decode_check(&e, src, n);
	}
	kv_codec_ctx_free(ctx);
	free(kv);
	free(src);
}
END_TEST

static Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = kvtest_tcase(s, "shuffle", 0);

	tcase_add_test(tc, test_shuffle_layout_elem2);
	tcase_add_test(tc, test_shuffle_layout_elem4);
	tcase_add_test(tc, test_shuffle_roundtrip);

	tc = kvtest_tcase(s, "roundtrip", 60);
	tcase_add_loop_test(tc, test_roundtrip_kv_data, 0, NCOMPRESSING / 4);
	tcase_add_test(tc, test_auto_picks_smaller);
	tcase_add_test(tc, test_hinted_filter);
	tcase_add_test(tc, test_hinted_zstd_whole_chunk);
	tcase_add_test(tc, test_small_chunks_never_same_length);
	tcase_add_test(tc, test_margin_small_chunks);
	tcase_add_test(tc, test_random_stays_raw);
	tcase_add_test(tc, test_zeros_compress);
	tcase_add_test(tc, test_empty_and_too_big);
	tcase_add_test(tc, test_margin);

	tc = kvtest_tcase(s, "decode", 60);
	tcase_add_test(tc, test_decode_rejects_wrong_raw_len);
	tcase_add_test(tc, test_decode_rejects_bad_payload);
	tcase_add_loop_test(tc, test_decode_fuzz, 0, 4);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_inbuf_holds_bound);
	tcase_add_test(tc, test_tls_per_thread);
	return s;
}

int main(void)
{
	rng_state = 0x9e3779b97f4a7c15ULL; /* where rnd() starts, the same every run */
	return kvtest_run(codec_suite, NULL);
}
