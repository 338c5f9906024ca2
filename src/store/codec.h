/* SPDX-License-Identifier: Apache-2.0 */
/* kv_codec: byte-shuffle filter plus lz4/zstd, one chunk at a time.
 *
 * A context holds the per-thread state (zstd contexts, scratch buffers) and
 * must not be shared between threads; kv_codec_tls() gives each thread one. */
#ifndef KV_CODEC_H
#define KV_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "opt.h"

/* A chunk is stored compressed only when it saves at least 1/KV_CODEC_MARGIN
 * of its size; otherwise decompression would cost more than it saves. */
#define KV_CODEC_MARGIN 32

struct kv_codec_ctx;

struct kv_codec_params {
	enum kv_codec_id codec;
	int level;
	int shuffle; /* KV_SHUFFLE_AUTO, 0, 2, 4 */
};

/* Result of an encode. data points into the context's buffer or at the
 * source itself when the chunk is stored raw; valid until the next call. */
struct kv_encoded {
	uint8_t codec; /* enum kv_codec_id actually used */
	uint8_t elem;  /* shuffle element size, 0 = no shuffle */
	uint32_t len;  /* stored length */
	const void *data;
};

struct kv_codec_ctx *kv_codec_ctx_new(size_t max_chunk);
void kv_codec_ctx_free(struct kv_codec_ctx *ctx);

/* The calling thread's context, created on first use (or again, larger,
 * when max_chunk grows) and freed at thread exit. NULL when out of memory. */
struct kv_codec_ctx *kv_codec_tls(size_t max_chunk);

/* Encode n bytes (n <= max_chunk). Returns 0 or a negative errno. */
int kv_codec_encode(struct kv_codec_ctx *ctx, const struct kv_codec_params *p, const void *src,
		    size_t n, struct kv_encoded *out);

/* What to do with a chunk: the choice a sample makes, and the one
 * shuffle=auto keeps for a file's next chunks. A choice, not a byte width:
 * the element size stored with a chunk is kv_encoded.elem. (The numbers
 * are those of the int this was.) */
enum kv_filter {
	KV_FILTER_PROBE = -2,  /* no choice yet: choose on a sample */
	KV_FILTER_RAW = -1,    /* store the chunk raw: it does not shrink enough */
	KV_FILTER_NONE = 0,    /* compress without a filter */
	KV_FILTER_SHUFFLE = 2, /* byte-shuffle, then compress (2-byte elements
				   under shuffle=auto, else the option's size) */
};

/* The same, with the filter shuffle=auto chose for an earlier chunk of the
 * same file: *filter is KV_FILTER_PROBE (choose on a sample, and store the
 * choice in *filter), or a choice to use without sampling again. A choice
 * that does not pay on this chunk turns back into KV_FILTER_PROBE. Without
 * shuffle=auto, or for a chunk that is its own sample, *filter is neither
 * read nor changed. */
/* How the store uses it: one chunk of a file in this many is sampled. */
#define KV_FILTER_EVERY 16
int kv_codec_encode_hinted(struct kv_codec_ctx *ctx, const struct kv_codec_params *p,
			   const void *src, size_t n, enum kv_filter *filter,
			   struct kv_encoded *out);

/* Decode a stored payload into dst, which must receive exactly raw_len
 * bytes. Returns 0, or -EIO when the payload is not valid for its codec. */
int kv_codec_decode(struct kv_codec_ctx *ctx, uint8_t codec, uint8_t elem, const void *src,
		    size_t len, void *dst, size_t raw_len);

/* A buffer of the context (*cap bytes, at least the compress bound of
 * max_chunk) that may hold a payload passed to kv_codec_decode. */
void *kv_codec_inbuf(struct kv_codec_ctx *ctx, size_t *cap);

/* Byte-shuffle filter: element bytes grouped into planes. Exposed for tests. */
void kv_codec_shuffle(const uint8_t *src, uint8_t *dst, size_t n, unsigned elem);
void kv_codec_unshuffle(const uint8_t *src, uint8_t *dst, size_t n, unsigned elem);

const char *kv_codec_name(uint8_t codec);

#endif
