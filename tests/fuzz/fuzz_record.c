/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: one chunk record as kv_store_read meets it
 * (docs/format.md, "Chunk records").
 *
 * The input is a record, header and payload, as it lies in a segment; the
 * seeds in corpus/record/ were cut from segments kvfs wrote. It goes
 * through kv_store_read's checks and decode, taking inode, chunk index and
 * raw length from its own header (the index would supply them), twice: as
 * it is, and with the stored length and both hashes made right, because
 * random bytes almost never pass xxh3 and the codecs behind it would go
 * unfuzzed. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sanitizer/asan_interface.h>
#include <xxhash.h>

#include "codec.h"
#include "endian.h"
#include "fuzz.h"
#include "store.h"

/* kvfs's default chunk: raw lengths above it are refused, as above the
 * store's max_chunk in kv_store_read. */
#define MAX_CHUNK (1u << 20)
#define GUARD 64

/* A decode's output: n bytes between two canaries, the one after them
 * also poisoned, so that a write past the output is reported by ASan at
 * once from our code, and by the canary from the system's lz4 and zstd,
 * which ASan does not instrument. */
struct out {
	uint8_t *buf; /* GUARD + MAX_CHUNK + GUARD bytes */
	uint8_t *dst;
	size_t n;
};

static struct kv_codec_ctx *cc;
static struct out out1, out2;

static uint8_t *out_open(struct out *o, size_t n)
{
	o->n = n;
	o->dst = o->buf + GUARD + MAX_CHUNK - n;
	memset(o->dst - GUARD, 0xa5, GUARD);
	memset(o->dst + n, 0xa5, GUARD);
	ASAN_POISON_MEMORY_REGION(o->dst + n, GUARD);
	return o->dst;
}

static void out_close(const struct out *o)
{
	ASAN_UNPOISON_MEMORY_REGION(o->dst + o->n, GUARD);
	for (size_t i = 0; i < GUARD; i++)
		CHECK(o->dst[-1 - (ptrdiff_t)i] == 0xa5 && o->dst[o->n + i] == 0xa5);
}

/* Decoding a header and encoding it again gives the same header, up to
 * the reserved bytes (40..47), which decode ignores. */
static void check_header(const uint8_t *h, const struct kv_rec *r)
{
	static const uint8_t zero[8];
	uint8_t again[KV_REC_HDR];
	struct kv_rec r2;

	kv_rec_encode(again, r);
	CHECK(kv_rec_decode(again, &r2) == 0);
	CHECK(r2.type == r->type && r2.codec == r->codec && r2.elem == r->elem &&
	      r2.flags == r->flags && r2.raw_len == r->raw_len && r2.stored_len == r->stored_len &&
	      r2.seg == r->seg && r2.ino == r->ino && r2.idx == r->idx &&
	      r2.payload_hash == r->payload_hash);
	CHECK(memcmp(again, h, 40) == 0 && memcmp(again + 48, h + 48, 8) == 0);
	if (memcmp(h + 40, zero, 8) == 0)
		CHECK(memcmp(again, h, KV_REC_HDR) == 0);
}

/* What the codec makes of the chunk decoded from a record: a compressed
 * result is strictly shorter (readers tell raw records by their length)
 * and decodes back to the same bytes. */
static void check_roundtrip(const struct kv_rec *r, const uint8_t *raw)
{
	struct kv_codec_params p = { .codec = r->codec, .level = 1, .shuffle = r->elem };
	struct kv_encoded enc;
	uint8_t *back;

	CHECK(kv_codec_encode(cc, &p, raw, r->raw_len, &enc) == 0);
	if (enc.codec == KV_CODEC_NONE) {
		CHECK(enc.elem == 0 && enc.len == r->raw_len && enc.data == raw);
		return;
	}
	CHECK(enc.codec == r->codec && enc.len < r->raw_len);
	back = out_open(&out2, r->raw_len);
	CHECK(kv_codec_decode(cc, enc.codec, enc.elem, enc.data, enc.len, back, r->raw_len) == 0);
	out_close(&out2);
	CHECK(memcmp(back, raw, r->raw_len) == 0);
}

/* kv_store_read's checks and decode (kv_rec_verify) of the record rec (len
 * bytes), expected to be what its own header says it is. */
static void check_record(const uint8_t *rec, size_t len)
{
	const uint8_t *payload = rec + KV_REC_HDR;
	size_t stored;
	struct kv_rec r;
	uint8_t *dst;
	int rc;

	if (len < KV_REC_HDR || kv_rec_decode(rec, &r))
		return;
	check_header(rec, &r);
	stored = len - KV_REC_HDR;
	if (stored > UINT32_MAX || r.raw_len > MAX_CHUNK)
		return;
	dst = out_open(&out1, r.raw_len);
	rc = kv_rec_verify(cc, rec, payload, (uint32_t)stored, r.seg, r.ino, r.idx, dst, r.raw_len);
	out_close(&out1);
	CHECK(rc == 0 || rc == -EIO);
	if (rc == 0) {
		CHECK(r.type == KV_REC_TYPE_CHUNK && r.stored_len == stored);
		CHECK(r.payload_hash == XXH3_64bits(payload, stored));
		if (stored == r.raw_len) {
			CHECK(r.codec == KV_CODEC_NONE && memcmp(dst, payload, stored) == 0);
			return;
		}
		CHECK(r.codec == KV_CODEC_LZ4 || r.codec == KV_CODEC_ZSTD);
		CHECK(r.elem == 0 || r.elem == 2 || r.elem == 4);
		check_roundtrip(&r, dst);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	if (!cc) {
		cc = kv_codec_ctx_new(MAX_CHUNK);
		out1.buf = malloc(GUARD + MAX_CHUNK + GUARD);
		out2.buf = malloc(GUARD + MAX_CHUNK + GUARD);
		CHECK(cc && out1.buf && out2.buf);
	}
	check_record(data, size);
	if (size < KV_REC_HDR || size - KV_REC_HDR > UINT32_MAX)
		return 0;
	fixed = fuzz_copy(data, size);
	kv_put32(fixed + 16, (uint32_t)(size - KV_REC_HDR));
	kv_put64(fixed + 48, XXH3_64bits(fixed + KV_REC_HDR, size - KV_REC_HDR));
	kv_put64(fixed + 56, XXH3_64bits(fixed, 56));
	check_record(fixed, size);
	return 0;
}
