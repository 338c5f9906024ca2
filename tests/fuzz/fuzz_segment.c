/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the segment scanner, kv_seg_scan_buf (store.h), which
 * rebuild and fsck use to find records in a segment without the index.
 *
 * The input is a segment file; the seeds in corpus/segment/ are segments
 * kvfs wrote. It is scanned as it is, then with the header hash of every
 * record magic recomputed (random bytes almost never pass xxh3), and that
 * again with the callback stopping the scan part way. The callback reads
 * every payload byte and checks what the scanner promises: records in
 * order, inside the buffer, not overlapping, with the header the bytes
 * hold, and none missed between them. */
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#include "endian.h"
#include "fuzz.h"
#include "store.h"

#define STOP_RC 0x5eed

static const uint8_t magic[4] = { 'K', 'V', 'R', '1' }; /* KV_REC_MAGIC */
/* Where the payload bytes read end up, so that the reads stay. */
static volatile uint8_t sink;

struct scan {
	const uint8_t *buf;
	size_t len;
	uint32_t seg;
	size_t end;     /* end of the last record handed over */
	size_t n;       /* records handed over */
	size_t stop_at; /* return STOP_RC from record stop_at (1-based), 0: never */
	uint8_t sum;    /* xor of every payload byte */
};

/* Reads every byte of p[0..n) where ASan checks it, without the
 * coverage hooks that would make a byte loop the fuzzer's hot spot (and
 * not inlined, which would bring them back). */
__attribute__((noinline, no_sanitize("coverage"))) static uint8_t touch(const uint8_t *p, size_t n)
{
	uint8_t x = 0;

	for (size_t i = 0; i < n; i++)
		x ^= p[i];
	return x;
}

/* Whether a record starting at at would have been taken. */
static int is_record(const struct scan *s, size_t at)
{
	struct kv_rec r;

	return at + KV_REC_HDR <= s->len && kv_rec_decode(s->buf + at, &r) == 0 &&
	       r.stored_len <= s->len - at - KV_REC_HDR;
}

/* The scanner moves on one byte at a time after garbage, so no record
 * may start in [from, to). */
static void check_gap(const struct scan *s, size_t from, size_t to)
{
	while (from < to) {
		const uint8_t *p = memmem(s->buf + from, s->len - from, magic, sizeof(magic));
		size_t at;

		if (!p)
			return;
		at = (size_t)(p - s->buf);
		if (at >= to)
			return;
		CHECK(!is_record(s, at));
		from = at + 1;
	}
}

static int on_record(void *arg, const struct kv_loc *loc, const struct kv_rec *r,
		     const uint8_t *payload, int payload_ok)
{
	struct scan *s = arg;
	struct kv_rec again;

	CHECK(loc->seg == s->seg);
	CHECK(loc->off >= s->end && loc->off <= s->len);
	CHECK(loc->len == (uint64_t)KV_REC_HDR + r->stored_len);
	CHECK(loc->len <= s->len - loc->off);
	CHECK(payload == s->buf + loc->off + KV_REC_HDR);
	CHECK(kv_rec_decode(s->buf + loc->off, &again) == 0);
	CHECK(memcmp(&again, r, sizeof(again)) == 0);
	CHECK(!payload_ok == (XXH3_64bits(payload, r->stored_len) != r->payload_hash));
	s->sum ^= touch(payload, r->stored_len);
	check_gap(s, s->end, (size_t)loc->off);
	s->end = (size_t)(loc->off + loc->len);
	return ++s->n == s->stop_at ? STOP_RC : 0;
}

/* Scans buf; returns the number of records found. */
static size_t scan(const uint8_t *buf, size_t len, size_t stop_at)
{
	struct scan s = { .buf = buf, .len = len, .stop_at = stop_at };
	int rc;

	/* The segment's own id where the input has a segment header. */
	if (len >= KV_SEG_HDR && memcmp(buf, KV_SEG_MAGIC, 8) == 0)
		s.seg = kv_get32(buf + 12);
	rc = kv_seg_scan_buf(buf, len, s.seg, on_record, &s);
	sink = s.sum;
	if (stop_at && s.n == stop_at) {
		CHECK(rc == STOP_RC);
	} else {
		CHECK(rc == 0 && (!stop_at || s.n < stop_at));
		check_gap(&s, s.end, len);
	}
	return s.n;
}

/* Give every record magic in buf a right header hash. */
static void fix_hashes(uint8_t *buf, size_t len)
{
	for (size_t at = 0; at + KV_REC_HDR <= len; at++) {
		const uint8_t *p = memmem(buf + at, len - at, magic, sizeof(magic));
		if (!p)
			return;
		at = (size_t)(p - buf);
		if (at + KV_REC_HDR > len)
			return;
		kv_put64(buf + at + 56, XXH3_64bits(buf + at, 56));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;
	size_t n;

	scan(data, size, 0);
	if (size < KV_REC_HDR)
		return 0;
	fixed = fuzz_copy(data, size);
	fix_hashes(fixed, size);
	n = scan(fixed, size, 0);
	if (n)
		scan(fixed, size, 1 + XXH3_64bits(data, size) % n);
	return 0;
}
