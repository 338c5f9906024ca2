/* SPDX-License-Identifier: Apache-2.0 */
/* Store a whole KV context from GPU memory on a kvfs mount and load it back
 * into GPU memory, the way an engine would, with libkvfs and the CUDA
 * runtime:
 *
 *     kvfs-example-gpu MOUNT [NAMESPACE [LAYERS]]
 *
 * Each layer's K and V tensors (separate cudaMalloc allocations) go to one
 * file MOUNT/NAMESPACE/<prefix-hash>/layer_NN.kv, K then V, written into a
 * temporary directory that is renamed into place. They are then read back
 * into one large buffer, at offsets inside it, and compared with what was
 * written. A context already cached is only loaded and checked. Exits 77
 * (skip) without a CUDA device or when the daemon has no GPU backend. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cuda_runtime_api.h>
#include <kvfs/kvfs.h>

#define TOKENS 256
#define KV_HEADS 8
#define HEAD_DIM 128
#define TENSOR_BYTES ((size_t)TOKENS * KV_HEADS * HEAD_DIM * 2) /* fp16 */
#define LOAD_GAP 4096 /* where tensors sit in the load buffer: not at its base */

static void die(const char *what, const char *why)
{
	fprintf(stderr, "gpu_context: %s: %s\n", what, why);
	exit(1);
}

static void cuda_check(cudaError_t e, const char *what)
{
	if (e != cudaSuccess)
		die(what, cudaGetErrorString(e));
}

static void path_fmt(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void path_fmt(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		die(fmt, "path too long");
}

/* The bytes of layer's K (kv 0) or V (kv 1), reproducible across runs so a
 * context cached by an earlier run can be checked too. */
static void fill(uint8_t *p, int layer, int kv)
{
	for (size_t i = 0; i < TENSOR_BYTES; i++)
		p[i] = (uint8_t)((i * 31 + (size_t)layer * 7 + (size_t)kv * 101) ^ (i >> 9));
}

/* The engine's name for the context: a hash of the prompt's token ids
 * (here made up) and of what shapes the cache (FNV-1a, 64 bits). */
static uint64_t prefix_hash(int layers)
{
	uint64_t h = 1469598103934665603ull;
	const uint64_t words[] = { TOKENS, KV_HEADS, HEAD_DIM, (uint64_t)layers };

	for (size_t i = 0; i < TOKENS + 4; i++) {
		uint64_t w = i < 4 ? words[i] : (i * 2654435761u) % 128256; /* token ids */

		for (int b = 0; b < 8; b++) {
			h ^= (w >> (8 * b)) & 0xff;
			h *= 1099511628211ull;
		}
	}
	return h;
}

static void store_layer(const char *dir, int layer, uint8_t *host)
{
	char path[4096];
	void *k, *v;
	int fd;

	cuda_check(cudaMalloc(&k, TENSOR_BYTES), "cudaMalloc");
	cuda_check(cudaMalloc(&v, TENSOR_BYTES), "cudaMalloc");
	fill(host, layer, 0);
	cuda_check(cudaMemcpy(k, host, TENSOR_BYTES, cudaMemcpyHostToDevice), "cudaMemcpy");
	fill(host, layer, 1);
	cuda_check(cudaMemcpy(v, host, TENSOR_BYTES, cudaMemcpyHostToDevice), "cudaMemcpy");
	/* The daemon copies on its own stream: the bytes must be in place. */
	cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");

	path_fmt(path, sizeof(path), "%s/layer_%02d.kv", dir, layer);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		die(path, strerror(errno));
	const struct kvfs_gpu_vec vec[] = {
		{ k, 0, TENSOR_BYTES },
		{ v, TENSOR_BYTES, TENSOR_BYTES },
	};
	if (kvfs_gpu_writev(fd, vec, 2) != (ssize_t)(2 * TENSOR_BYTES))
		die(path, kvfs_last_error());
	if (fsync(fd) < 0 || close(fd) < 0)
		die(path, strerror(errno));
	cuda_check(cudaFree(k), "cudaFree");
	cuda_check(cudaFree(v), "cudaFree");
}

/* Write every layer into a temporary directory, then publish it whole. */
static void store(const char *ctx, const char *tmp, int layers)
{
	uint8_t *host = malloc(TENSOR_BYTES);

	if (!host)
		die("malloc", strerror(ENOMEM));
	if (mkdir(tmp, 0755) < 0)
		die(tmp, strerror(errno));
	for (int l = 0; l < layers; l++)
		store_layer(tmp, l, host);
	if (rename(tmp, ctx) < 0)
		die(ctx, strerror(errno));
	free(host);
}

/* Where layer l's K (kv 0) or V (kv 1) sits in the load buffer. */
static size_t load_offset(int l, int kv)
{
	return LOAD_GAP + ((size_t)l * 2 + (size_t)kv) * (TENSOR_BYTES + LOAD_GAP);
}

static void load_and_check(const char *ctx, int layers)
{
	size_t size = load_offset(layers, 0);
	uint8_t *big, *host = malloc(size), *want = malloc(TENSOR_BYTES);
	char path[4096];

	if (!host || !want)
		die("malloc", strerror(ENOMEM));
	cuda_check(cudaMalloc((void **)&big, size), "cudaMalloc");
	cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
	for (int l = 0; l < layers; l++) {
		const struct kvfs_gpu_vec vec[] = {
			{ big + load_offset(l, 0), 0, TENSOR_BYTES },
			{ big + load_offset(l, 1), TENSOR_BYTES, TENSOR_BYTES },
		};
		int fd;

		path_fmt(path, sizeof(path), "%s/layer_%02d.kv", ctx, l);
		if ((fd = open(path, O_RDONLY)) < 0)
			die(path, strerror(errno));
		if (kvfs_gpu_readv(fd, vec, 2) != (ssize_t)(2 * TENSOR_BYTES))
			die(path, kvfs_last_error());
		close(fd);
	}
	cuda_check(cudaMemcpy(host, big, size, cudaMemcpyDeviceToHost), "cudaMemcpy");
	for (int l = 0; l < layers; l++)
		for (int kv = 0; kv < 2; kv++) {
			fill(want, l, kv);
			if (memcmp(host + load_offset(l, kv), want, TENSOR_BYTES) != 0) {
				fprintf(stderr,
					"gpu_context: layer %d %s differs after the round trip\n",
					l, kv ? "V" : "K");
				exit(1);
			}
		}
	cuda_check(cudaFree(big), "cudaFree");
	free(host);
	free(want);
}

int main(int argc, char **argv)
{
	const char *mount = argc > 1 ? argv[1] : NULL;
	const char *ns = argc > 2 ? argv[2] : "gpu-example";
	int layers = argc > 3 ? atoi(argv[3]) : 4, ndev = 0, fd;
	char nsdir[4096], ctx[4096], tmp[4096];
	struct kvfs_query q;
	struct stat st;

	if (!mount || layers < 1 || layers > 99) {
		fprintf(stderr, "usage: %s MOUNT [NAMESPACE [LAYERS (1..99)]]\n", argv[0]);
		return 2;
	}
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		printf("gpu_context: no CUDA device: skipped\n");
		return 77;
	}
	if ((fd = open(mount, O_RDONLY | O_DIRECTORY)) < 0)
		die(mount, strerror(errno));
	if (kvfs_query(fd, &q) < 0)
		die(mount, kvfs_last_error());
	close(fd);
	if (q.backend == KVFS_GPU_NONE) {
		printf("gpu_context: the kvfs daemon has no GPU backend (%s): skipped\n",
		       q.backend_name);
		return 77;
	}

	path_fmt(nsdir, sizeof(nsdir), "%s/%s", mount, ns);
	path_fmt(ctx, sizeof(ctx), "%s/%016" PRIx64, nsdir, prefix_hash(layers));
	path_fmt(tmp, sizeof(tmp), "%s/.tmp-%016" PRIx64 "-%d", nsdir, prefix_hash(layers),
		 (int)getpid());
	if (mkdir(nsdir, 0755) < 0 && errno != EEXIST)
		die(nsdir, strerror(errno));
	if (stat(ctx, &st) == 0) {
		printf("%s: already cached\n", ctx);
	} else {
		store(ctx, tmp, layers);
		printf("%s: stored %d layers from the GPU (%zu bytes)\n", ctx, layers,
		       (size_t)layers * 2 * TENSOR_BYTES);
	}
	load_and_check(ctx, layers);
	printf("%s: loaded %d layers into the GPU and checked them\n", ctx, layers);
	return 0;
}
