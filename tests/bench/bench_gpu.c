/* SPDX-License-Identifier: Apache-2.0 */
/* kvfs-bench-gpu: loads a file into GPU memory and reports the speed.
 *
 *   kvfs-bench-gpu MODE FILE REQ_SIZE RUNS
 *
 * MODE:
 *   limit        in-process cudaMemcpy from pinned host memory (the bound)
 *   limit-d2h    in-process cudaMemcpy to pinned host memory (GPU_WRITE's bound)
 *   pread        pread() through the mount into pageable memory + cudaMemcpy
 *   pread-pinned pread() into pinned memory + cudaMemcpy
 *   ioctl        KVFS_IOC_GPU_READ straight into the device buffer
 *   ioctl-write  KVFS_IOC_GPU_WRITE of the device buffer (first filled with
 *                FILE's bytes) into FILE, and a close() of another
 *                descriptor of FILE at the end of each run (timed: the bytes
 *                are compressed, stored and published, as at any close)
 *   dma-chunks   in-process async copies of 1 MiB pieces from a page-locked
 *                huge-page region on KVFS_BENCH_STREAMS streams (default 8),
 *                synchronised per request: the bound for chunked copies
 *   query        KVFS_IOC_QUERY round trips (the ioctl path's fixed cost)
 * The whole file is moved in requests of REQ_SIZE bytes, RUNS times; one
 * line per run ("run N GB/s X us/req Y"), then "median GB/s X us/req Y".
 * The device buffer is checked against the file after the first ioctl run
 * (a bench that copies wrong bytes measures nothing). */
#include <cuda_runtime_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvfs/ioctl.h"

#define CK(x) \
	do { \
		cudaError_t e_ = (x); \
		if (e_ != cudaSuccess) { \
			fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_)); \
			exit(1); \
		} \
	} while (0)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmpd);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void prep_io(struct kvfs_gpu_io *io, void *dev)
{
	cudaIpcMemHandle_t h;
	struct cudaDeviceProp p;
	int d;

	memset(io, 0, sizeof(*io));
	io->abi_version = KVFS_ABI_VERSION;
	io->struct_size = sizeof(*io);
	io->vendor = KVFS_GPU_CUDA;
	CK(cudaIpcGetMemHandle(&h, dev));
	memcpy(io->handle, &h, sizeof(h));
	CK(cudaGetDevice(&d));
	CK(cudaGetDeviceProperties(&p, d));
	memcpy(io->device_uuid, &p.uuid, 16);
	io->nseg = 1;
}

int main(int argc, char **argv)
{
	const char *mode, *file;
	size_t req, size;
	int runs, fd;
	struct stat st;
	void *dev, *host = NULL;
	double *gbs, *lat;
	struct kvfs_gpu_io io;

	if (argc != 5) {
		fprintf(stderr,
			"usage: kvfs-bench-gpu limit|limit-d2h|pread|pread-pinned|ioctl|ioctl-write|dma-chunks|query "
			"FILE REQ_SIZE RUNS\n");
		return 2;
	}
	mode = argv[1];
	file = argv[2];
	req = strtoull(argv[3], NULL, 0);
	runs = atoi(argv[4]);
	fd = open(file, !strcmp(mode, "ioctl-write") ? O_RDWR : O_RDONLY);
	if (fd < 0 || fstat(fd, &st) || !req || runs < 1) {
		perror(file);
		return 2;
	}
	size = (size_t)st.st_size;
	CK(cudaMalloc(&dev, size));
	gbs = calloc((size_t)runs, sizeof(double));
	lat = calloc((size_t)runs, sizeof(double));
	if (!strcmp(mode, "limit-d2h")) {
		CK(cudaMallocHost(&host, size));
	} else if (!strcmp(mode, "ioctl-write")) {
		char *b = malloc(size);
		if (!b || pread(fd, b, size, 0) != (ssize_t)size) {
			perror("pread");
			return 1;
		}
		CK(cudaMemcpy(dev, b, size, cudaMemcpyHostToDevice));
		free(b);
	} else if (!strcmp(mode, "limit") || !strcmp(mode, "pread-pinned")) {
		CK(cudaMallocHost(&host, !strcmp(mode, "limit") ? size : req));
		if (!strcmp(mode, "limit") && pread(fd, host, size, 0) != (ssize_t)size) {
			perror("pread");
			return 1;
		}
	} else if (!strcmp(mode, "pread")) {
		host = malloc(req);
	}
	prep_io(&io, dev);
	if (!strcmp(mode, "dma-chunks")) {
		/* 256 MiB of 2 MiB-aligned, huge-page, registered memory, read
		 * in 1 MiB pieces round-robin, as the daemon's chunk buffers are. */
		size_t region = 256u << 20;
		char *m = mmap(NULL, region + (2u << 20), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		host = (void *)(((uintptr_t)m + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1));
		madvise(host, region, MADV_HUGEPAGE);
		memset(host, 1, region);
		CK(cudaHostRegister(host, region, cudaHostRegisterDefault));
	}

	for (int r = 0; r < runs; r++) {
		double t0 = now();
		size_t nreq = 0;
		for (size_t off = 0; off < size; off += req, nreq++) {
			size_t n = size - off < req ? size - off : req;
			if (!strcmp(mode, "query")) {
				struct kvfs_query q;
				memset(&q, 0, sizeof(q));
				q.abi_version = KVFS_ABI_VERSION;
				q.struct_size = sizeof(q);
				if (ioctl(fd, KVFS_IOC_QUERY, &q)) {
					perror("QUERY");
					return 1;
				}
				continue;
			}
			if (!strcmp(mode, "dma-chunks")) {
				static cudaStream_t strm[64];
				static int ns;
				if (!ns) {
					const char *e = getenv("KVFS_BENCH_STREAMS");
					ns = e ? atoi(e) : 8;
					ns = ns < 1 ? 1 : ns > 64 ? 64 : ns;
					for (int i = 0; i < ns; i++)
						CK(cudaStreamCreateWithFlags(
							&strm[i], cudaStreamNonBlocking));
				}
				for (size_t k = 0; k < n; k += 1u << 20) {
					size_t m = n - k < (1u << 20) ? n - k : 1u << 20;
					size_t piece = (off + k) >> 20;
					CK(cudaMemcpyAsync(
						(char *)dev + off + k,
						(char *)host + ((piece * (1u << 20)) % (256u << 20)),
						m, cudaMemcpyHostToDevice, strm[piece % (size_t)ns]));
				}
				for (int i = 0; i < ns; i++)
					CK(cudaStreamSynchronize(strm[i]));
				continue;
			}
			if (!strcmp(mode, "limit")) {
				CK(cudaMemcpy((char *)dev + off, (char *)host + off, n,
					      cudaMemcpyHostToDevice));
			} else if (!strcmp(mode, "limit-d2h")) {
				CK(cudaMemcpy((char *)host + off, (char *)dev + off, n,
					      cudaMemcpyDeviceToHost));
			} else if (!strncmp(mode, "pread", 5)) {
				if (pread(fd, host, n, (off_t)off) != (ssize_t)n) {
					perror("pread");
					return 1;
				}
				CK(cudaMemcpy((char *)dev + off, host, n, cudaMemcpyHostToDevice));
			} else {
				int w = !strcmp(mode, "ioctl-write");
				io.seg[0] = (struct kvfs_gpu_seg){ off, off, n };
				if (ioctl(fd, w ? KVFS_IOC_GPU_WRITE : KVFS_IOC_GPU_READ, &io)) {
					fprintf(stderr, "ioctl at %zu: %s (detail %u)\n", off,
						strerror(errno), io.detail);
					return 1;
				}
			}
		}
		CK(cudaDeviceSynchronize());
		if (!strcmp(mode, "ioctl-write") && close(open(file, O_RDONLY))) {
			perror("close");
			return 1;
		}
		{
			double t = now() - t0;
			gbs[r] = (double)size / t / 1e9;
			lat[r] = t / (double)nreq * 1e6;
			printf("run %d GB/s %.2f us/req %.1f\n", r, gbs[r], lat[r]);
		}
		if (r == 0 && !strcmp(mode, "ioctl")) {
			/* Check the bytes: device -> host, compared with the file. */
			char *a = malloc(size), *b = malloc(size);
			CK(cudaMemcpy(a, dev, size, cudaMemcpyDeviceToHost));
			if (pread(fd, b, size, 0) != (ssize_t)size || memcmp(a, b, size)) {
				fprintf(stderr,
					"MISMATCH: the device buffer differs from the file\n");
				return 1;
			}
			free(a);
			free(b);
		}
	}
	printf("median GB/s %.2f us/req %.1f\n", median(gbs, runs), median(lat, runs));
	return 0;
}
