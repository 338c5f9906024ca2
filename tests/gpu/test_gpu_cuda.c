/* SPDX-License-Identifier: Apache-2.0 */
/* kvfs-test-gpu-cuda: the GPU fast path on a real NVIDIA GPU, through
 * libkvfs, on a mounted kvfs.
 *
 *   kvfs-test-gpu-cuda MOUNT KV_DATA_DIR      the whole test
 *   kvfs-test-gpu-cuda client FILE N          (internal) a second process
 *   kvfs-test-gpu-cuda leaver FILE            (internal) exits with a mapping cached
 *
 * Exits 77 when there is no GPU or the daemon runs no GPU backend. */
#include <cuda_runtime_api.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvfs/kvfs.h"

static int failures;

#define CK(x) \
	do { \
		cudaError_t e_ = (x); \
		if (e_ != cudaSuccess) { \
			fprintf(stderr, "FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #x, \
				cudaGetErrorString(e_)); \
			exit(1); \
		} \
	} while (0)

#define EXPECT(cond, ...) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__); \
			fprintf(stderr, " (%s)\n", kvfs_last_error()); \
			failures++; \
		} \
	} while (0)

/* Real KV tensors, repeated with each copy's bytes perturbed, to size bytes. */
static unsigned char *kv_bytes(const char *dir, size_t size)
{
	unsigned char *buf = malloc(size), *src = NULL;
	size_t have = 0;
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!buf || !d) {
		perror(dir);
		exit(2);
	}
	while ((e = readdir(d))) {
		char path[4096];
		struct stat st;
		int fd;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		src = realloc(src, have + (size_t)st.st_size);
		if (read(fd, src + have, (size_t)st.st_size) != st.st_size)
			exit(2);
		have += (size_t)st.st_size;
		close(fd);
	}
	closedir(d);
	if (!have) {
		fprintf(stderr, "no KV files in %s\n", dir);
		exit(2);
	}
	for (size_t i = 0; i < size; i++)
		buf[i] = (unsigned char)(src[i % have] ^ (i / have * 0x3b & 0x0f));
	free(src);
	return buf;
}

/* Clear device memory before a load into it. The fast path copies on the
 * daemon's stream: the caller must finish its own work on the buffer
 * first, as libkvfs's header says. */
static void zero(void *dev, size_t n)
{
	CK(cudaMemset(dev, 0, n));
	CK(cudaDeviceSynchronize());
}

static int check_dev(const void *dev, const unsigned char *want, size_t n, const char *what)
{
	unsigned char *got = malloc(n);
	int ok;

	CK(cudaMemcpy(got, dev, n, cudaMemcpyDeviceToHost));
	ok = !memcmp(got, want, n);
	if (!ok) {
		size_t i = 0;
		while (got[i] == want[i])
			i++;
		fprintf(stderr, "FAIL %s: device bytes differ from the file at byte %zu\n", what, i);
		failures++;
	}
	free(got);
	return ok;
}

static unsigned char *read_file(const char *path, size_t *n)
{
	struct stat st;
	unsigned char *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st))
		return NULL;
	b = malloc((size_t)st.st_size + 1);
	if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*n = (size_t)st.st_size;
	return b;
}

/* A second client process: reads FILE n times into its own allocation. */
static int client(const char *file, int n)
{
	size_t size;
	unsigned char *want = read_file(file, &size);
	void *dev;
	int fd = open(file, O_RDONLY);

	if (!want || fd < 0)
		return 2;
	CK(cudaMalloc(&dev, size + 8192));
	for (int i = 0; i < n; i++) {
		size_t off = (size_t)(i * 257) % 8192;
		zero(dev, size + 8192);
		EXPECT(kvfs_gpu_read(fd, (char *)dev + off, size, 0) == (ssize_t)size,
		       "client read %d: %s", i, strerror(errno));
		check_dev((char *)dev + off, want, size, "client read");
	}
	return failures ? 1 : 0;
}

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	return pid;
}

static int waitok(pid_t pid)
{
	int st;
	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static long stat_value(const char *mnt, const char *name)
{
	char path[4096], line[512];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/.kvfs/stats", mnt);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, name, strlen(name)) && line[strlen(name)] == ' ')
			v = atol(line + strlen(name) + 1);
	if (f)
		fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	const size_t size = (13u << 20) + 12345; /* 13+ chunks, a partial last one */
	char dir[4096], plain[4200], viagpu[4200];
	struct kvfs_query q;
	unsigned char *host;
	void *src, *dst;
	int fd, ndev = 0;

	if (argc == 4 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "leaver")) {
		/* Read once, then exit without freeing: the daemon holds a mapping. */
		void *dev;
		int f = open(argv[2], O_RDONLY);
		CK(cudaMalloc(&dev, 1 << 20));
		return f >= 0 && kvfs_gpu_read(f, dev, 1 << 20, 0) == 1 << 20 ? 0 : 1;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: kvfs-test-gpu-cuda MOUNT KV_DATA_DIR\n");
		return 2;
	}
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		printf("SKIP: no CUDA device\n");
		return 77;
	}
	fd = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (fd < 0 || kvfs_query(fd, &q)) {
		fprintf(stderr, "FAIL: QUERY on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	close(fd);
	if (q.backend != KVFS_GPU_CUDA) {
		printf("SKIP: the daemon runs no CUDA backend (backend %s)\n", q.backend_name);
		return 77;
	}
	printf("daemon: backend %s, %u device(s), chunk %llu\n", q.backend_name, q.ndevices,
	       (unsigned long long)q.chunk_size);

	snprintf(dir, sizeof(dir), "%s/gputest", argv[1]);
	mkdir(dir, 0755);
	snprintf(dir, sizeof(dir), "%s/gputest/ctx-%d", argv[1], (int)getpid());
	if (mkdir(dir, 0755)) {
		perror(dir);
		return 1;
	}
	snprintf(plain, sizeof(plain), "%s/plain.kv", dir);
	snprintf(viagpu, sizeof(viagpu), "%s/gpu_write.kv", dir);
	host = kv_bytes(argv[2], size);

	/* 1. A plain write, loaded with GPU_READ at an odd device offset. */
	fd = open(plain, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || write(fd, host, size) != (ssize_t)size || close(fd)) {
		perror(plain);
		return 1;
	}
	CK(cudaMalloc(&dst, 2 * size + (1 << 20)));
	zero(dst, 2 * size + (1 << 20));
	fd = open(plain, O_RDONLY);
	EXPECT(kvfs_gpu_read(fd, (char *)dst + 12345, size, 0) == (ssize_t)size, "GPU_READ %s",
	       strerror(errno));
	check_dev((char *)dst + 12345, host, size, "GPU_READ of a plain write");

	/* 2. A vector of segments, last half first, into another offset. */
	{
		size_t h = size / 2 + 1000;
		struct kvfs_gpu_vec v[3] = {
			{ (char *)dst + size + 777 + h, h, size - h },
			{ (char *)dst + size + 777, 0, 4096 },
			{ (char *)dst + size + 777 + 4096, 4096, h - 4096 },
		};
		EXPECT(kvfs_gpu_readv(fd, v, 3) == (ssize_t)size, "GPU_READ vector %s",
		       strerror(errno));
		check_dev((char *)dst + size + 777, host, size, "GPU_READ vector");
	}
	close(fd);

	/* 3. GPU_WRITE from an odd offset, read back with read() and GPU_READ. */
	CK(cudaMalloc(&src, size + 8192));
	CK(cudaMemcpy((char *)src + 4097, host, size, cudaMemcpyHostToDevice));
	fd = open(viagpu, O_CREAT | O_TRUNC | O_RDWR, 0644);
	EXPECT(kvfs_gpu_write(fd, (char *)src + 4097, size, 0) == (ssize_t)size, "GPU_WRITE %s",
	       strerror(errno));
	{
		struct stat st;
		EXPECT(fstat(fd, &st) == 0 && (size_t)st.st_size == size,
		       "size after GPU_WRITE: %lld", (long long)st.st_size);
	}
	zero(dst, size);
	EXPECT(kvfs_gpu_read(fd, dst, size, 0) == (ssize_t)size, "GPU_READ after GPU_WRITE %s",
	       strerror(errno));
	check_dev(dst, host, size, "GPU_READ of a GPU_WRITE (same fd)");
	close(fd);
	{
		size_t n;
		unsigned char *back = read_file(viagpu, &n);
		EXPECT(back && n == size && !memcmp(back, host, size),
		       "read() of a GPU_WRITE file differs");
		free(back);
	}

	/* 4. Errors on a real GPU: a range past the allocation, a bogus handle;
	 * the daemon keeps serving. */
	{
		struct kvfs_gpu_io io;
		cudaIpcMemHandle_t h;
		struct cudaDeviceProp p;
		int d;
		memset(&io, 0, sizeof(io));
		io.abi_version = KVFS_ABI_VERSION;
		io.struct_size = sizeof(io);
		io.vendor = KVFS_GPU_CUDA;
		CK(cudaIpcGetMemHandle(&h, src));
		memcpy(io.handle, &h, sizeof(h));
		CK(cudaGetDevice(&d));
		CK(cudaGetDeviceProperties(&p, d));
		memcpy(io.device_uuid, &p.uuid, 16);
		io.nseg = 1;
		io.seg[0] = (struct kvfs_gpu_seg){ 0, size + 4096, 8192 };
		fd = open(plain, O_RDONLY);
		errno = 0;
		EXPECT(ioctl(fd, KVFS_IOC_GPU_READ, &io) == -1 && errno == EFAULT &&
			       io.detail == KVFS_E_DEV_RANGE,
		       "past the allocation: errno %d detail %u", errno, io.detail);
		memset(io.handle, 0x5a, sizeof(io.handle));
		io.seg[0] = (struct kvfs_gpu_seg){ 0, 0, 4096 };
		errno = 0;
		EXPECT(ioctl(fd, KVFS_IOC_GPU_READ, &io) == -1 && errno == EBADF &&
			       io.detail == KVFS_E_HANDLE,
		       "bogus handle: errno %d detail %u", errno, io.detail);
		zero(dst, size);
		EXPECT(kvfs_gpu_read(fd, dst, size, 0) == (ssize_t)size, "GPU_READ after errors %s",
		       strerror(errno));
		check_dev(dst, host, size, "GPU_READ after errors");
		close(fd);
	}

	/* 5. Two client processes at once, while this one reads too. */
	{
		char n[] = "20";
		char *a1[] = { argv[0], "client", plain, n, NULL };
		char *a2[] = { argv[0], "client", viagpu, n, NULL };
		pid_t p1 = spawn(a1), p2 = spawn(a2);
		fd = open(plain, O_RDONLY);
		for (int i = 0; i < 10; i++)
			EXPECT(kvfs_gpu_read(fd, dst, size, 0) == (ssize_t)size, "concurrent read");
		check_dev(dst, host, size, "GPU_READ while other clients read");
		close(fd);
		EXPECT(waitok(p1), "client 1 failed");
		EXPECT(waitok(p2), "client 2 failed");
	}

	/* 6. A client that exits with its mapping cached: the daemon closes
	 * the mapping and keeps serving. Of the mappings, only this process's
	 * two allocations (src, dst) may stay once the other clients are gone. */
	{
		char *a[] = { argv[0], "leaver", plain, NULL };
		long opens = stat_value(argv[1], "kvfs_gpu_ipc_opens_total"), now = -1;
		EXPECT(waitok(spawn(a)), "leaving client failed");
		EXPECT(stat_value(argv[1], "kvfs_gpu_ipc_opens_total") > opens,
		       "the leaving client's allocation was not imported");
		for (int i = 0; i < 50; i++) {
			now = stat_value(argv[1], "kvfs_gpu_mappings");
			if (now >= 0 && now <= 2)
				break;
			usleep(100000);
		}
		printf("mappings after the other clients exited: %ld\n", now);
		EXPECT(now >= 0 && now <= 2, "exited clients' mappings were not closed: %ld", now);
		fd = open(plain, O_RDONLY);
		zero(dst, size);
		EXPECT(kvfs_gpu_read(fd, dst, size, 0) == (ssize_t)size, "read after a client left");
		check_dev(dst, host, size, "GPU_READ after a client left");
		close(fd);
	}

	CK(cudaFree(src));
	CK(cudaFree(dst));
	free(host);
	if (failures) {
		printf("FAILED: %d check(s)\n", failures);
		return 1;
	}
	printf("PASS: kvfs GPU fast path on %s\n", q.backend_name);
	return 0;
}
