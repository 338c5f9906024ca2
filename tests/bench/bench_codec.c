/* SPDX-License-Identifier: Apache-2.0 */
/* Codec benchmark: ratio and single-core speed of each codec, with and
 * without byte shuffle, on the files given. Each file is cut into chunks
 * of its own, as the chunk store does. Usage: kvfs-bench-codec [-c CHUNK] FILE... */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t *slurp(const char *path, size_t *len, uint8_t *data, size_t *total)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "bench_codec: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	data = realloc(data, *total + (size_t)n);
	if (!data || fread(data + *total, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "bench_codec: %s: read failed\n", path);
		exit(1);
	}
	fclose(f);
	*len = (size_t)n;
	*total += (size_t)n;
	return data;
}

struct variant {
	const char *name;
	struct kv_codec_params p;
};

int main(int argc, char *argv[])
{
	static const struct variant v[] = {
		{ "lz4", { KV_CODEC_LZ4, 0, 0 } },
		{ "lz4+shuffle2", { KV_CODEC_LZ4, 0, 2 } },
		{ "zstd:1", { KV_CODEC_ZSTD, 1, 0 } },
		{ "zstd:1+shuffle2", { KV_CODEC_ZSTD, 1, 2 } },
		{ "zstd:3", { KV_CODEC_ZSTD, 3, 0 } },
		{ "zstd:3+shuffle2", { KV_CODEC_ZSTD, 3, 2 } },
		{ "lz4+auto", { KV_CODEC_LZ4, 0, KV_SHUFFLE_AUTO } },
		{ "zstd:1+auto", { KV_CODEC_ZSTD, 1, KV_SHUFFLE_AUTO } },
	};
	size_t chunk = 1 << 20, total = 0, len, nfiles;
	size_t *ends;
	uint8_t *data = NULL, *out;
	struct kv_codec_ctx *ctx;
	int opt;

	while ((opt = getopt(argc, argv, "c:")) != -1)
		chunk = (size_t)strtoul(optarg, NULL, 0);
	if (optind >= argc) {
		fprintf(stderr, "usage: kvfs-bench-codec [-c CHUNK] FILE...\n");
		return 2;
	}
	nfiles = (size_t)(argc - optind);
	ends = calloc(nfiles, sizeof(*ends));
	if (!ends)
		return 1;
	for (int i = optind; i < argc; i++) {
		data = slurp(argv[i], &len, data, &total);
		ends[i - optind] = total;
	}
	ctx = kv_codec_ctx_new(chunk);
	out = malloc(chunk);
	if (!ctx || !out)
		return 1;
	printf("%zu bytes in %d files, chunk %zu\n\n", total, argc - optind, chunk);
	printf("| variant | ratio | compress MB/s | decompress MB/s |\n|---|---:|---:|---:|\n");
	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		size_t stored = 0, reps = 0;
		double tc = 0, td = 0;
		/* Repeat until about 0.3 s of compression has been timed. */
		while (tc < 0.3 || reps < 3) {
			stored = 0;
			size_t n, nth = 0, fcur = 0;
			int filter = KV_FILTER_PROBE, hint = KV_FILTER_PROBE;
			for (size_t off = 0, f = 0; off < total; off += n) {
				while (ends[f] <= off)
					f++;
				n = ends[f] - off < chunk ? ends[f] - off : chunk;
				/* As the store does: a file's filter choice holds for
				 * its next chunks, sampled again every KV_FILTER_EVERY. */
				if (f != fcur || off == 0) {
					fcur = f;
					nth = 0;
					hint = KV_FILTER_PROBE;
				}
				filter = nth++ % KV_FILTER_EVERY ? hint : KV_FILTER_PROBE;
				struct kv_encoded e;
				uint8_t *copy = malloc(n ? n : 1);
				double t0 = now();
				kv_codec_encode_hinted(ctx, &v[k].p, data + off, n, &filter, &e);
				hint = filter;
				double t1 = now();
				memcpy(copy, e.data, e.len);
				double t2 = now();
				if (kv_codec_decode(ctx, e.codec, e.elem, copy, e.len, out, n) ||
				    memcmp(out, data + off, n)) {
					fprintf(stderr, "bench_codec: %s: round trip failed\n",
						v[k].name);
					return 1;
				}
				td += now() - t2;
				tc += t1 - t0;
				stored += e.len;
				free(copy);
			}
			reps++;
		}
		printf("| %s | %.3f | %.0f | %.0f |\n", v[k].name, (double)total / (double)stored,
		       (double)total * (double)reps / tc / 1e6,
		       (double)total * (double)reps / td / 1e6);
	}
	kv_codec_ctx_free(ctx);
	free(out);
	free(data);
	free(ends);
	return 0;
}
