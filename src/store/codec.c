/* SPDX-License-Identifier: Apache-2.0 */
#include "codec.h"

#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Bytes of a chunk compressed both ways when shuffle=auto picks a filter. */
#define KV_CODEC_SAMPLE (64u << 10)

struct kv_codec_ctx {
	size_t max_chunk;
	size_t cap;     /* size of out and tmp */
	uint8_t *out;   /* compressed output */
	uint8_t *tmp;   /* shuffled input / decompressed planes */
	uint8_t *plain; /* a chunk compressed unshuffled, when both ways are tried */
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
};

const char *kv_codec_name(uint8_t codec)
{
	switch (codec) {
	case KV_CODEC_NONE: return "none";
	case KV_CODEC_LZ4: return "lz4";
	case KV_CODEC_ZSTD: return "zstd";
	}
	return "unknown";
}

struct kv_codec_ctx *kv_codec_ctx_new(size_t max_chunk)
{
	struct kv_codec_ctx *ctx = calloc(1, sizeof(*ctx));
	size_t bound = ZSTD_compressBound(max_chunk);

	if (!ctx)
		return NULL;
	if ((size_t)LZ4_compressBound((int)max_chunk) > bound)
		bound = LZ4_compressBound((int)max_chunk);
	ctx->max_chunk = max_chunk;
	ctx->cap = bound;
	ctx->out = malloc(bound);
	ctx->tmp = malloc(bound);
	/* Touched only as far as used: up to 64 KiB but for zstd's choices. */
	ctx->plain = malloc(bound);
	ctx->zc = ZSTD_createCCtx();
	ctx->zd = ZSTD_createDCtx();
	if (!ctx->out || !ctx->tmp || !ctx->plain || !ctx->zc || !ctx->zd) {
		kv_codec_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

void kv_codec_ctx_free(struct kv_codec_ctx *ctx)
{
	if (!ctx)
		return;
	free(ctx->out);
	free(ctx->tmp);
	free(ctx->plain);
	ZSTD_freeCCtx(ctx->zc);
	ZSTD_freeDCtx(ctx->zd);
	free(ctx);
}

static pthread_key_t kv_codec_key;
static pthread_once_t kv_codec_once = PTHREAD_ONCE_INIT;

static void kv_codec_tls_free(void *p) { kv_codec_ctx_free(p); }
static void kv_codec_key_init(void) { pthread_key_create(&kv_codec_key, kv_codec_tls_free); }

struct kv_codec_ctx *kv_codec_tls(size_t max_chunk)
{
	struct kv_codec_ctx *ctx;

	pthread_once(&kv_codec_once, kv_codec_key_init);
	ctx = pthread_getspecific(kv_codec_key);
	if (ctx && ctx->max_chunk >= max_chunk)
		return ctx;
	kv_codec_ctx_free(ctx);
	ctx = kv_codec_ctx_new(max_chunk);
	pthread_setspecific(kv_codec_key, ctx);
	return ctx;
}

void *kv_codec_inbuf(struct kv_codec_ctx *ctx, size_t *cap)
{
	*cap = ctx->cap;
	return ctx->out;
}

/* Element size 2 is the fp16/bf16 case and the hot one: 16 elements per
 * step with SSE2 where the compiler targets it. */
static void shuffle2(const uint8_t *src, uint8_t *lo, uint8_t *hi, size_t count)
{
	size_t i = 0;
#ifdef __SSE2__
	const __m128i mask = _mm_set1_epi16(0x00ff);
	for (; i + 16 <= count; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(src + 2 * i));
		__m128i b = _mm_loadu_si128((const __m128i *)(src + 2 * i + 16));
		__m128i l = _mm_packus_epi16(_mm_and_si128(a, mask), _mm_and_si128(b, mask));
		__m128i h = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
		_mm_storeu_si128((__m128i *)(lo + i), l);
		_mm_storeu_si128((__m128i *)(hi + i), h);
	}
#endif
	for (; i < count; i++) {
		lo[i] = src[2 * i];
		hi[i] = src[2 * i + 1];
	}
}

static void unshuffle2(const uint8_t *lo, const uint8_t *hi, uint8_t *dst, size_t count)
{
	size_t i = 0;
#ifdef __SSE2__
	for (; i + 16 <= count; i += 16) {
		__m128i l = _mm_loadu_si128((const __m128i *)(lo + i));
		__m128i h = _mm_loadu_si128((const __m128i *)(hi + i));
		_mm_storeu_si128((__m128i *)(dst + 2 * i), _mm_unpacklo_epi8(l, h));
		_mm_storeu_si128((__m128i *)(dst + 2 * i + 16), _mm_unpackhi_epi8(l, h));
	}
#endif
	for (; i < count; i++) {
		dst[2 * i] = lo[i];
		dst[2 * i + 1] = hi[i];
	}
}

void kv_codec_shuffle(const uint8_t *src, uint8_t *dst, size_t n, unsigned elem)
{
	size_t count = n / elem;

	if (elem == 2) {
		shuffle2(src, dst, dst + count, count);
	} else {
		for (unsigned b = 0; b < elem; b++)
			for (size_t i = 0; i < count; i++)
				dst[b * count + i] = src[i * elem + b];
	}
	memcpy(dst + count * elem, src + count * elem, n - count * elem);
}

void kv_codec_unshuffle(const uint8_t *src, uint8_t *dst, size_t n, unsigned elem)
{
	size_t count = n / elem;

	if (elem == 2) {
		unshuffle2(src, src + count, dst, count);
	} else {
		for (unsigned b = 0; b < elem; b++)
			for (size_t i = 0; i < count; i++)
				dst[i * elem + b] = src[b * count + i];
	}
	memcpy(dst + count * elem, src + count * elem, n - count * elem);
}

/* Compress n bytes into dst (capacity cap). Returns the length, or 0 when
 * the codec failed or did not fit. */
static size_t compress(struct kv_codec_ctx *ctx, const struct kv_codec_params *p, const void *src,
		       size_t n, void *dst, size_t cap)
{
	if (p->codec == KV_CODEC_LZ4) {
		int r = LZ4_compress_default(src, dst, (int)n, (int)cap);
		return r > 0 ? (size_t)r : 0;
	}
	size_t r = ZSTD_compressCCtx(ctx->zc, dst, cap, src, n, p->level);
	return ZSTD_isError(r) ? 0 : r;
}

/* Stored compressed only when strictly shorter (readers tell raw records
 * by their length) and at least 1/KV_CODEC_MARGIN shorter. */
static int saves_enough(size_t len, size_t n)
{
	return len && len < n && (n - len) * KV_CODEC_MARGIN >= n;
}

/* Of a chunk's (or sample's) n bytes compressed plain and shuffled (0: not
 * tried), the one to keep: KV_FILTER_SHUFFLE, KV_FILTER_NONE, or
 * KV_FILTER_RAW when neither saves enough. */
static enum kv_filter pick(size_t plain, size_t shuffled, size_t n)
{
	if (saves_enough(shuffled, n) && (!saves_enough(plain, n) || shuffled < plain))
		return KV_FILTER_SHUFFLE;
	return saves_enough(plain, n) ? KV_FILTER_NONE : KV_FILTER_RAW;
}

/* The element size a shuffle uses: 2 under shuffle=auto, else the
 * option's (0: shuffle=off). */
static unsigned shuffle_elem(const struct kv_codec_params *p)
{
	return p->shuffle == KV_SHUFFLE_AUTO ? 2 : (unsigned)p->shuffle;
}

/* Compress a sample of the chunk, plain and/or shuffled as p->shuffle asks,
 * to pick the filter and to skip chunks that will not shrink (random data,
 * fp16 mantissas under lz4) at a fraction of the cost. */
static enum kv_filter probe(struct kv_codec_ctx *ctx, const struct kv_codec_params *p,
			    const uint8_t *src, size_t n)
{
	size_t s = n < KV_CODEC_SAMPLE ? n : KV_CODEC_SAMPLE;
	size_t plain = 0, shuffled = 0;
	unsigned elem = shuffle_elem(p);

	if (n <= KV_CODEC_SAMPLE && p->shuffle != KV_SHUFFLE_AUTO)
		/* the whole chunk is no dearer than a sample */
		return elem ? KV_FILTER_SHUFFLE : KV_FILTER_NONE;
	if (p->shuffle == KV_SHUFFLE_AUTO || !elem)
		plain = compress(ctx, p, src, s, ctx->out, ctx->cap);
	if (elem) {
		kv_codec_shuffle(src, ctx->tmp, s, elem);
		shuffled = compress(ctx, p, ctx->tmp, s, ctx->out, ctx->cap);
	}
	/* With a fixed filter only one of the two was tried (the other is 0). */
	return pick(plain, shuffled, s);
}

/* shuffle=auto on a whole chunk: compressed both ways, the shorter kept.
 * For a chunk no larger than the sample (a probe would compress it three
 * times) and for zstd's choice of a file's filter (zstd finds the byte
 * split's gain only over a whole chunk, not in a sample). Returns the
 * filter chosen (KV_FILTER_RAW: stored raw). */
static enum kv_filter encode_both(struct kv_codec_ctx *ctx, const struct kv_codec_params *p,
				  const uint8_t *src, size_t n, struct kv_encoded *out)
{
	size_t plain = compress(ctx, p, src, n, ctx->plain, ctx->cap), shuffled;

	kv_codec_shuffle(src, ctx->tmp, n, 2);
	shuffled = compress(ctx, p, ctx->tmp, n, ctx->out, ctx->cap);
	enum kv_filter f = pick(plain, shuffled, n);

	if (f == KV_FILTER_RAW)
		return f;
	out->codec = (uint8_t)p->codec;
	out->elem = f == KV_FILTER_SHUFFLE ? 2 : 0;
	out->len = (uint32_t)(f == KV_FILTER_SHUFFLE ? shuffled : plain);
	out->data = f == KV_FILTER_SHUFFLE ? ctx->out : ctx->plain;
	return f;
}

int kv_codec_encode_hinted(struct kv_codec_ctx *ctx, const struct kv_codec_params *p,
			   const void *src, size_t n, enum kv_filter *filter, struct kv_encoded *out)
{
	const uint8_t *in = src;
	enum kv_filter f;
	unsigned elem;
	int hinted = 0;
	size_t len;

	if (n > ctx->max_chunk)
		return -EINVAL;
	out->codec = KV_CODEC_NONE;
	out->elem = 0;
	out->len = (uint32_t)n;
	out->data = src;
	if (p->codec == KV_CODEC_NONE || n == 0)
		return 0;
	if (p->shuffle == KV_SHUFFLE_AUTO && n <= KV_CODEC_SAMPLE) {
		encode_both(ctx, p, src, n, out);
		return 0;
	}
	if (p->shuffle == KV_SHUFFLE_AUTO && p->codec == KV_CODEC_ZSTD &&
	    *filter == KV_FILTER_PROBE) {
		*filter = encode_both(ctx, p, src, n, out);
		return 0;
	}
	if (p->shuffle == KV_SHUFFLE_AUTO && *filter != KV_FILTER_PROBE) {
		f = *filter;
		hinted = 1;
	} else {
		f = probe(ctx, p, src, n);
		if (p->shuffle == KV_SHUFFLE_AUTO)
			*filter = f;
	}
	if (f == KV_FILTER_RAW)
		return 0;
	elem = f == KV_FILTER_SHUFFLE ? shuffle_elem(p) : 0;
	if (elem > 1) {
		kv_codec_shuffle(src, ctx->tmp, n, elem);
		in = ctx->tmp;
	}
	len = compress(ctx, p, in, n, ctx->out, ctx->cap);
	if (!saves_enough(len, n)) {
		if (hinted)
			*filter = KV_FILTER_PROBE;
		return 0;
	}
	out->codec = (uint8_t)p->codec;
	out->elem = (uint8_t)elem;
	out->len = (uint32_t)len;
	out->data = ctx->out;
	return 0;
}

int kv_codec_encode(struct kv_codec_ctx *ctx, const struct kv_codec_params *p, const void *src,
		    size_t n, struct kv_encoded *out)
{
	enum kv_filter filter = KV_FILTER_PROBE;

	return kv_codec_encode_hinted(ctx, p, src, n, &filter, out);
}

int kv_codec_decode(struct kv_codec_ctx *ctx, uint8_t codec, uint8_t elem, const void *src,
		    size_t len, void *dst, size_t raw_len)
{
	uint8_t *to = elem > 1 ? ctx->tmp : dst;

	if (raw_len > ctx->max_chunk || (elem != 0 && elem != 2 && elem != 4))
		return -EIO;
	switch (codec) {
	case KV_CODEC_NONE:
		if (len != raw_len || elem)
			return -EIO;
		memcpy(dst, src, len);
		return 0;
	case KV_CODEC_LZ4: {
		int r = LZ4_decompress_safe(src, (char *)to, (int)len, (int)raw_len);
		if (r < 0 || (size_t)r != raw_len)
			return -EIO;
		break;
	}
	case KV_CODEC_ZSTD: {
		size_t r = ZSTD_decompressDCtx(ctx->zd, to, raw_len, src, len);
		if (ZSTD_isError(r) || r != raw_len)
			return -EIO;
		break;
	}
	default: return -EIO;
	}
	if (elem > 1)
		kv_codec_unshuffle(ctx->tmp, dst, raw_len, elem);
	return 0;
}
