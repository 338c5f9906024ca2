/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: an inode record's payload through kv_meta_decode
 * (src/store/meta.h), which kvfsctl rebuild runs on every inode record it finds
 * in the segments, trusting nothing but the record's checksums.
 *
 * The input is a payload; the seeds in corpus/meta/ are payloads of
 * inode records a kvfs mount wrote (the root, directories that are
 * contexts with a pin and a TTL, regular files with many chunks and with
 * none, a symlink, binary xattrs), cut out of its segments. Invariants:
 *   - decode returns 0, -EINVAL or -ENOMEM; on failure the structure is
 *     left empty (all zero), so kv_meta_free on it is harmless;
 *   - on success every field is within what the payload can hold: the
 *     counts fit in its length, names are 1..255 bytes without '/' or NUL
 *     and NUL-terminated, xattr names 1..255 bytes, the target under 4096
 *     bytes, chunk indexes strictly ascending and below 2^63;
 *   - the decoded record encodes back to the input bytes, up to the
 *     reserved fields (bytes 2..3 and 81), which decode ignores and encode
 *     writes as zero, and that encoding decodes again to the same record;
 *   - every proper prefix of an accepted payload is refused. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "meta.h"

#define FIXED 106 /* fixed fields and four zero counts */

static int is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

static void check_fields(const struct kv_meta *m, size_t size)
{
	/* Each item takes at least this many bytes of the payload. */
	CHECK(FIXED + 10 * (uint64_t)m->nlinks + 6 * (uint64_t)m->nx + 29 * (uint64_t)m->nchunks <=
	      size);
	CHECK(!m->nlinks == !m->links);
	CHECK(!m->nx == !m->x);
	CHECK(!m->nchunks == !m->chunks);
	for (size_t i = 0; i < m->nlinks; i++) {
		const struct kv_meta_link *l = &m->links[i];
		CHECK(l->len >= 1 && l->len <= 255);
		CHECK(l->name[l->len] == 0);
		CHECK(!memchr(l->name, 0, l->len) && !memchr(l->name, '/', l->len));
	}
	if (m->target) {
		size_t n = strlen(m->target);
		CHECK(n >= 1 && n <= 4095);
	}
	for (size_t i = 0; i < m->nx; i++) {
		size_t n = strnlen(m->x[i].name, sizeof(m->x[i].name));
		CHECK(n >= 1 && n <= 255);
		CHECK(m->x[i].len <= size);
		CHECK(m->x[i].value != NULL);
	}
	for (size_t i = 0; i < m->nchunks; i++) {
		CHECK(m->chunks[i].idx <= (uint64_t)INT64_MAX);
		CHECK(!i || m->chunks[i].idx > m->chunks[i - 1].idx);
	}
}

static void same(const struct kv_meta *a, const struct kv_meta *b)
{
	CHECK(!memcmp(&a->attr, &b->attr, sizeof(a->attr)));
	CHECK(a->flags == b->flags && a->pin == b->pin && a->ttl == b->ttl && a->hwm == b->hwm);
	CHECK(!a->target == !b->target && (!a->target || !strcmp(a->target, b->target)));
	CHECK(a->nlinks == b->nlinks && a->nx == b->nx && a->nchunks == b->nchunks);
	for (size_t i = 0; i < a->nlinks; i++)
		CHECK(a->links[i].parent == b->links[i].parent &&
		      a->links[i].len == b->links[i].len &&
		      !memcmp(a->links[i].name, b->links[i].name, a->links[i].len));
	for (size_t i = 0; i < a->nx; i++)
		CHECK(!strcmp(a->x[i].name, b->x[i].name) && a->x[i].len == b->x[i].len &&
		      (!a->x[i].len || !memcmp(a->x[i].value, b->x[i].value, a->x[i].len)));
	for (size_t i = 0; i < a->nchunks; i++)
		CHECK(!memcmp(&a->chunks[i].idx, &b->chunks[i].idx, sizeof(uint64_t)) &&
		      a->chunks[i].loc.seg == b->chunks[i].loc.seg &&
		      a->chunks[i].loc.off == b->chunks[i].loc.off &&
		      a->chunks[i].loc.len == b->chunks[i].loc.len &&
		      a->chunks[i].raw == b->chunks[i].raw &&
		      a->chunks[i].codec == b->chunks[i].codec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* In a buffer that ends where the input ends, so ASan sees an overread. */
	uint8_t *in = fuzz_copy(data, size);
	struct kv_meta m, again;
	uint8_t *out;
	size_t len = 0;
	int rc;

	memset(&m, 0x5a, sizeof(m));
	rc = kv_meta_decode(in, size, &m);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		CHECK(is_zero(&m, sizeof(m)));
		kv_meta_free(&m);
		return 0;
	}
	check_fields(&m, size);
	out = kv_meta_encode(&m, &len);
	if (!out) { /* ENOMEM */
		kv_meta_free(&m);
		return 0;
	}
	CHECK(len == size);
	CHECK(out[2] == 0 && out[3] == 0 && out[81] == 0);
	/* The reserved bytes aside, the same bytes. */
	CHECK(!memcmp(out, in, 2) && !memcmp(out + 4, in + 4, 77) &&
	      !memcmp(out + 82, in + 82, size - 82));
	rc = kv_meta_decode(out, len, &again);
	CHECK(rc == 0 || rc == -ENOMEM);
	if (!rc) {
		same(&m, &again);
		kv_meta_free(&again);
	}
	/* A proper prefix is never a valid payload (the input's copy is
	 * changed no more: this reads the same bytes). A few lengths only,
	 * to keep each run short. */
	for (size_t cut = 1; cut <= size && cut <= 8; cut++) {
		struct kv_meta p;
		CHECK(kv_meta_decode(in, size - cut, &p) == -EINVAL);
		CHECK(is_zero(&p, sizeof(p)));
	}
	{
		struct kv_meta p;
		CHECK(kv_meta_decode(in, size / 2, &p) == -EINVAL);
		CHECK(kv_meta_decode(in, FIXED - 1 < size ? FIXED - 1 : 0, &p) == -EINVAL);
	}
	free(out);
	kv_meta_free(&m);
	kv_meta_free(&m); /* zeroed by the first: harmless */
	return 0;
}
