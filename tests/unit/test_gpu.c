/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_gpu (src/gpu/gpu.h) and kv_fast (src/gpu/fastpath.h) without a
 * mount or a GPU: the fake backend (tests/gpu/fake_plugin.c) stands in for
 * the runtime, its "device memory" a shared file that the tests map too.
 * Covered: plugin loading, the IPC import cache and its reaping, lanes,
 * GPU_READ / GPU_WRITE on a real kv_fs with their checks and error details,
 * QUERY, and the submission threads. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fastpath.h"
#include "fs_int.h"
#include "gpu.h"
#include "kvtest.h"
#include "kvtest_fs.h"

#ifndef KVFS_FAKE_PLUGIN
#error "KVFS_FAKE_PLUGIN must name libkvfs-gpu-fake.so (see tests/tests.cmake)"
#endif

#define CHUNK (64u << 10)
#define MIB (1u << 20)
#define FAKE_UUID "kvfs-fake-gpu-00"
/* Bigger than KV_FAST_INLINE: runs on the fast path's threads. */
#define BIG (9 * MIB + 4321)

#define RD KV_FAST_CAN_READ
#define WR (KV_FAST_WRITE | KV_FAST_CAN_WRITE)

static const char *const codecs[] = { "lz4", "none", "zstd" };

/* ---- fake device allocations ---- */

/* A shared file: the fake's IPC handle is its path, NUL-terminated. */
struct alloc {
	char path[64];
	uint8_t handle[KVFS_IPC_HANDLE_SIZE];
	uint8_t *p; /* the test's own mapping */
	size_t size;
};

/* A fresh path short enough for a fake IPC handle (NUL included). */
static void handle_path(char out[KVFS_IPC_HANDLE_SIZE], const char *leaf)
{
	char p[600];

	kvtest_new_path(p, sizeof(p), leaf);
	ck_assert_uint_lt(strlen(p), KVFS_IPC_HANDLE_SIZE);
	memcpy(out, p, strlen(p) + 1);
}

static void alloc_new(struct alloc *a, size_t size, int fill)
{
	int fd;

	memset(a, 0, sizeof(*a));
	handle_path(a->path, "dev");
	memcpy(a->handle, a->path, strlen(a->path));
	fd = open(a->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	a->p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert(a->p != MAP_FAILED);
	close(fd);
	a->size = size;
	if (fill < 0)
		fill_random(a->p, size);
	else
		memset(a->p, fill, size);
}

static void alloc_free(struct alloc *a)
{
	munmap(a->p, a->size);
	unlink(a->path);
}

/* How many mappings of path this process has (the fake's and ours). */
static int mapped(const char *path)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[8192];
	size_t pl = strlen(path);
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		size_t l = strcspn(line, "\n");
		line[l] = 0;
		n += l >= pl && !strcmp(line + l - pl, path);
	}
	fclose(f);
	return n;
}

static void expect_bytes(const uint8_t *got, const uint8_t *want, size_t n, const char *what)
{
	if (!memcmp(got, want, n))
		return;
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i])
			ck_abort_msg("%s: byte %zu of %zu: got 0x%02x, want 0x%02x", what, i, n,
				     got[i], want[i]);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* ---- kv_gpu helpers ---- */

static struct kv_gpu *fake_gpu(void)
{
	struct kv_gpu *g = kv_gpu_new(KVFS_FAKE_PLUGIN);

	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(kv_gpu_start(g), 0);
	return g;
}

static struct kv_gpu_stats gstats(struct kv_gpu *g)
{
	struct kv_gpu_stats s;

	kv_gpu_stats(g, &s);
	return s;
}

static struct kv_gpu_map *map_get(struct kv_gpu *g, const uint8_t *handle, uint32_t pid)
{
	struct kv_gpu_map *m = NULL;
	char err[256] = "";
	int rc = kv_gpu_map_get(g, 0, handle, pid, &m, err, sizeof(err));

	ck_assert_msg(rc == 0, "kv_gpu_map_get: %d (%s)", rc, err);
	ck_assert_ptr_nonnull(m);
	return m;
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	uint8_t *buf = kvtest_slurp(from, &n);
	FILE *f = fopen(to, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
	ck_assert_int_eq(fclose(f), 0);
	free(buf);
}

/* ---- kv_fs helpers ---- */

static struct kv_config config(const char *codec, const char *gpu)
{
	struct kv_config c = kvtest_small_config();
	char err[256];

	ck_assert_msg(kv_opt_set(&c, "codec", codec, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(kv_opt_set(&c, "gpu", gpu, err, sizeof(err)) == 0, "%s", err);
	return c;
}

/* The fast path of each store open here, as the daemon starts it. */
static struct {
	struct kv_fs *fs;
	struct kv_fast *fast;
} opened[8];

static struct kv_fast *fast_of(struct kv_fs *fs)
{
	for (size_t i = 0; i < sizeof(opened) / sizeof(opened[0]); i++)
		if (opened[i].fs == fs)
			return opened[i].fast;
	ck_abort_msg("no fast path for this store");
	return NULL;
}

static struct kv_fs *open_fs(const char *store, const struct kv_config *cfg)
{
	struct kv_fs *fs = kvtest_open_fs(store, cfg);
	size_t i = 0;

	while (i < sizeof(opened) / sizeof(opened[0]) && opened[i].fs)
		i++;
	ck_assert_uint_lt(i, sizeof(opened) / sizeof(opened[0]));
	ck_assert_int_eq(kv_fast_start(fs, &opened[i].fast), 0);
	opened[i].fs = fs;
	return fs;
}

/* kv_fs_close after the fast path stopped, as the daemon does. */
static void close_fs(struct kv_fs *fs)
{
	for (size_t i = 0; i < sizeof(opened) / sizeof(opened[0]); i++)
		if (opened[i].fs == fs) {
			kv_fast_stop(opened[i].fast);
			opened[i].fs = NULL;
			opened[i].fast = NULL;
		}
	kv_fs_close(fs);
}

/* A new store under the run's root, opened; its path goes to store. */
static struct kv_fs *new_fs(char *store, size_t len, const struct kv_config *cfg)
{
	kvtest_new_path(store, len, "store");
	return open_fs(store, cfg);
}

static uint64_t mkfile(struct kv_fs *fs, const char *name)
{
	struct kv_attr a;

	ck_assert_int_eq(
		kv_fs_mknod(fs, KV_ROOT_INO, name, S_IFREG | 0644, &kvtest_root_cred, NULL, &a), 0);
	return a.ino;
}

static uint64_t lookup(struct kv_fs *fs, const char *name)
{
	struct kv_attr a;

	ck_assert_msg(kv_fs_lookup(fs, KV_ROOT_INO, name, &a) == 0, "lookup %s", name);
	return a.ino;
}

static void wr(struct kv_fs *fs, uint64_t ino, const uint8_t *buf, size_t n, uint64_t off)
{
	ssize_t rc = kv_file_write(fs, ino, buf, n, (off_t)off);

	ck_assert_msg(rc == (ssize_t)n, "write of %zu at %llu: %zd", n, (unsigned long long)off, rc);
}

/* Creates name in the root holding data[0, n), released. */
static uint64_t write_file(struct kv_fs *fs, const char *name, const uint8_t *data, size_t n)
{
	uint64_t ino = mkfile(fs, name);

	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	wr(fs, ino, data, n, 0);
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	return ino;
}

static uint64_t size_of(struct kv_fs *fs, uint64_t ino)
{
	struct kv_attr a;

	ck_assert_int_eq(kv_fs_getattr(fs, ino, &a), 0);
	return a.size;
}

/* The whole of file ino, through the normal read path, into a malloc'd
 * buffer; its size goes to *n. */
static uint8_t *read_all(struct kv_fs *fs, uint64_t ino, size_t *n)
{
	size_t size = size_of(fs, ino), done = 0;
	uint8_t *out = malloc(size + 1);

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(kv_file_open(fs, ino, 0), 0);
	while (done < size) {
		size_t want = size - done > 512 * 1024 ? 512 * 1024 : size - done;
		struct kv_readv rv;
		int rc = kv_file_read(fs, ino, (off_t)done, want, &rv);
		ck_assert_int_eq(rc, (int)want);
		for (int i = 0; i < rv.n; i++) {
			memcpy(out + done, rv.iov[i].iov_base, rv.iov[i].iov_len);
			done += rv.iov[i].iov_len;
		}
		kv_file_read_done(fs, &rv);
	}
	ck_assert_int_eq(kv_file_release(fs, ino), 0);
	*n = size;
	return out;
}

static void expect_file(struct kv_fs *fs, uint64_t ino, const uint8_t *want, size_t size)
{
	size_t n;
	uint8_t *got = read_all(fs, ino, &n);

	ck_assert_uint_eq(n, size);
	expect_bytes(got, want, size, "file content");
	free(got);
}

/* Metric name of the Prometheus text (kv_fs_stats_text). */
static uint64_t metric(struct kv_fs *fs, const char *name)
{
	size_t len = 1 << 16, nl = strlen(name);
	char *buf = malloc(len);
	uint64_t v = 0;
	int found = 0;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_lt(kv_fs_stats_text(fs, buf, len), (int)len);
	for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, nl) && p[nl] == ' ') {
			v = strtoull(p + nl + 1, NULL, 10);
			found = 1;
			break;
		}
	free(buf);
	ck_assert_msg(found, "no metric %s", name);
	return v;
}

static struct kv_fast_stats fstats(struct kv_fs *fs)
{
	struct kv_fast_stats s;

	kv_fast_stats(fast_of(fs), &s);
	return s;
}

/* ---- requests ---- */

static struct kvfs_gpu_io *io_new(const struct alloc *a)
{
	struct kvfs_gpu_io *io = calloc(1, sizeof(*io));

	ck_assert_ptr_nonnull(io);
	io->abi_version = KVFS_ABI_VERSION;
	io->struct_size = sizeof(*io);
	io->vendor = KVFS_GPU_CUDA;
	memcpy(io->handle, a->handle, sizeof(io->handle));
	memcpy(io->device_uuid, FAKE_UUID, 16);
	io->alloc_size = a->size;
	return io;
}

static void seg_add(struct kvfs_gpu_io *io, uint64_t file_off, uint64_t dev_off, uint64_t len)
{
	ck_assert_uint_lt(io->nseg, KVFS_GPU_MAX_SEGS);
	io->seg[io->nseg++] = (struct kvfs_gpu_seg){ file_off, dev_off, len };
}

static uint64_t io_total(const struct kvfs_gpu_io *io)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < io->nseg; i++)
		t += io->seg[i].len;
	return t;
}

/* Output fields set to junk, so a run that forgets one is caught. */
static void io_dirty(struct kvfs_gpu_io *io)
{
	io->bytes_done = 12345;
	io->error = 77;
	io->error_seg = 99;
	io->detail = 55;
}

static void run_ok(struct kv_fs *fs, uint64_t ino, unsigned mode, struct kvfs_gpu_io *io)
{
	int rc;

	io_dirty(io);
	rc = kv_fast_run(fast_of(fs), ino, mode, (uint32_t)getpid(), io);
	ck_assert_msg(rc == 0, "kv_fast_run: %d (detail %u, seg %u)", rc, io->detail, io->error_seg);
	ck_assert_int_eq(io->error, 0);
	ck_assert_uint_eq(io->detail, KVFS_E_OK);
	ck_assert_uint_eq(io->error_seg, 0);
	ck_assert_uint_eq(io->bytes_done, io_total(io));
}

static void expect_err_at(struct kv_fs *fs, uint64_t ino, unsigned mode, struct kvfs_gpu_io *io,
			  int want, uint32_t detail, uint32_t seg, int line)
{
	int rc;

	io_dirty(io);
	rc = kv_fast_run(fast_of(fs), ino, mode, (uint32_t)getpid(), io);
	ck_assert_msg(rc == want && io->error == want && io->detail == detail &&
			      io->error_seg == seg && io->bytes_done == 0,
		      "line %d: rc %d error %d detail %u seg %u done %llu; want rc %d detail %u "
		      "seg %u done 0",
		      line, rc, io->error, io->detail, io->error_seg,
		      (unsigned long long)io->bytes_done, want, detail, seg);
}
#define expect_err(fs, ino, mode, io, want, detail, seg) \
	expect_err_at(fs, ino, mode, io, want, detail, seg, __LINE__)

/* ==== kv_gpu: the backend ==== */

START_TEST(test_spec_off)
{
	struct kv_gpu *g = kv_gpu_new("off");
	uint8_t uuid[16];

	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(kv_gpu_start(g), -ENODEV);
	ck_assert_int_eq(kv_gpu_start(g), -ENODEV);
	ck_assert_uint_eq(kv_gpu_vendor(g), KVFS_GPU_NONE);
	ck_assert_str_eq(kv_gpu_name(g), "none");
	ck_assert_int_eq(kv_gpu_ndevices(g), 0);
	ck_assert_ptr_null(kv_gpu_plugin(g));
	memcpy(uuid, FAKE_UUID, 16);
	ck_assert_int_eq(kv_gpu_device(g, uuid), -ENODEV);
	kv_gpu_free(g);
	kv_gpu_free(NULL);
}
END_TEST

START_TEST(test_missing_plugin_sticky)
{
	char path[600];
	struct kv_gpu *g;

	kvtest_new_path(path, sizeof(path), "libkvfs-gpu-later.so");
	g = kv_gpu_new(path);
	ck_assert_int_eq(kv_gpu_start(g), -ENODEV);
	/* The plugin appearing later changes nothing: the outcome sticks. */
	copy_file(KVFS_FAKE_PLUGIN, path);
	ck_assert_int_eq(kv_gpu_start(g), -ENODEV);
	ck_assert_str_eq(kv_gpu_name(g), "none");
	ck_assert_uint_eq(kv_gpu_vendor(g), KVFS_GPU_NONE);
	ck_assert_int_eq(kv_gpu_ndevices(g), 0);
	kv_gpu_free(g);
	/* ... though the file is a good plugin, as a new kv_gpu finds. */
	g = kv_gpu_new(path);
	ck_assert_int_eq(kv_gpu_start(g), 0);
	ck_assert_str_eq(kv_gpu_name(g), "fake");
	kv_gpu_free(g);
}
END_TEST

START_TEST(test_not_a_plugin)
{
	char path[600];
	FILE *f;
	struct kv_gpu *g;

	kvtest_new_path(path, sizeof(path), "libkvfs-gpu-text.so");
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("not an ELF object\n", f);
	fclose(f);
	g = kv_gpu_new(path);
	ck_assert_int_eq(kv_gpu_start(g), -ENODEV);
	ck_assert_str_eq(kv_gpu_name(g), "none");
	kv_gpu_free(g);
}
END_TEST

START_TEST(test_fake_start)
{
	struct kv_gpu *g = kv_gpu_new(KVFS_FAKE_PLUGIN);
	uint8_t uuid[16], other[16];

	/* Nothing is loaded before the start. */
	ck_assert_ptr_null(kv_gpu_plugin(g));
	ck_assert_str_eq(kv_gpu_name(g), "none");
	ck_assert_int_eq(kv_gpu_ndevices(g), 0);
	ck_assert_int_eq(kv_gpu_start(g), 0);
	ck_assert_int_eq(kv_gpu_start(g), 0);
	ck_assert_uint_eq(kv_gpu_vendor(g), KVFS_GPU_CUDA);
	ck_assert_str_eq(kv_gpu_name(g), "fake");
	ck_assert_int_eq(kv_gpu_ndevices(g), 1);
	ck_assert_ptr_nonnull(kv_gpu_plugin(g));
	kv_gpu_uuid(g, 0, uuid);
	ck_assert_mem_eq(uuid, FAKE_UUID, 16);
	ck_assert_int_eq(kv_gpu_device(g, uuid), 0);
	memcpy(other, FAKE_UUID, 16);
	other[15] ^= 1;
	ck_assert_int_eq(kv_gpu_device(g, other), -ENODEV);
	memset(other, 0, sizeof(other));
	ck_assert_int_eq(kv_gpu_device(g, other), -ENODEV);
	kv_gpu_free(g);
}
END_TEST

START_TEST(test_register)
{
	static uint8_t a[4096], b[8192], c[4000];
	struct kv_gpu *g = kv_gpu_new(KVFS_FAKE_PLUGIN);

	kv_gpu_register(g, a, sizeof(a));
	ck_assert_uint_eq(gstats(g).registered, 0); /* not started: only remembered */
	ck_assert_int_eq(kv_gpu_start(g), 0);
	ck_assert_uint_eq(gstats(g).registered, sizeof(a));
	kv_gpu_register(g, b, sizeof(b));
	ck_assert_uint_eq(gstats(g).registered, sizeof(a) + sizeof(b));
	/* Enough regions to grow the table. */
	for (int i = 0; i < 40; i++)
		kv_gpu_register(g, c + 100 * i, 100);
	ck_assert_uint_eq(gstats(g).registered, sizeof(a) + sizeof(b) + 4000);
	kv_gpu_free(g);

	/* Without a backend nothing is page-locked, before or after the start. */
	g = kv_gpu_new("off");
	for (int i = 0; i < 20; i++)
		kv_gpu_register(g, c + 100 * i, 100);
	ck_assert_int_eq(kv_gpu_start(g), -ENODEV);
	kv_gpu_register(g, b, sizeof(b));
	ck_assert_uint_eq(gstats(g).registered, 0);
	kv_gpu_free(g);

	/* Regions remembered before the start are page-locked by it. */
	g = kv_gpu_new(KVFS_FAKE_PLUGIN);
	for (int i = 0; i < 20; i++)
		kv_gpu_register(g, c + 100 * i, 100);
	ck_assert_uint_eq(gstats(g).registered, 0);
	ck_assert_int_eq(kv_gpu_start(g), 0);
	ck_assert_uint_eq(gstats(g).registered, 2000);
	kv_gpu_free(g);
}
END_TEST

/* ==== kv_gpu: the import cache ==== */

START_TEST(test_map_cache)
{
	struct alloc a, b;
	struct kv_gpu *g;
	struct kv_gpu_map *m1, *m2, *m3, *m4;
	uint8_t h2[KVFS_IPC_HANDLE_SIZE];
	int base_a, base_b;
	struct kv_gpu_stats s;

	alloc_new(&a, 3 * CHUNK + 5, 0);
	alloc_new(&b, 8192, 0);
	base_a = mapped(a.path);
	base_b = mapped(b.path);
	ck_assert_int_eq(base_a, 1);
	g = fake_gpu();
	m1 = map_get(g, a.handle, (uint32_t)getpid());
	m2 = map_get(g, a.handle, (uint32_t)getpid());
	ck_assert_ptr_eq(m1, m2);
	s = gstats(g);
	ck_assert_uint_eq(s.opens, 1);
	ck_assert_uint_eq(s.mappings, 1);
	ck_assert_uint_eq(s.closes, 0);
	ck_assert_int_eq(mapped(a.path), base_a + 1);
	ck_assert_uint_eq(kv_gpu_map_size(m1), a.size);
	/* The mapping is the allocation, both ways. */
	kv_gpu_map_base(m1)[10] = 0x5a;
	ck_assert_uint_eq(a.p[10], 0x5a);
	a.p[a.size - 1] = 0xc3;
	ck_assert_uint_eq(kv_gpu_map_base(m1)[a.size - 1], 0xc3);

	m3 = map_get(g, b.handle, (uint32_t)getpid());
	ck_assert_ptr_ne(m3, m1);
	ck_assert_ptr_ne(kv_gpu_map_base(m3), kv_gpu_map_base(m1));
	ck_assert_uint_eq(kv_gpu_map_size(m3), b.size);
	ck_assert_int_eq(mapped(b.path), base_b + 1);
	/* Other handle bytes (after the fake's NUL) are another key. */
	memcpy(h2, a.handle, sizeof(h2));
	h2[63] = 1;
	m4 = map_get(g, h2, (uint32_t)getpid());
	ck_assert_ptr_ne(m4, m1);
	s = gstats(g);
	ck_assert_uint_eq(s.opens, 3);
	ck_assert_uint_eq(s.mappings, 3);

	kv_gpu_map_put(g, m1);
	kv_gpu_map_put(g, m2);
	kv_gpu_map_put(g, m3);
	kv_gpu_map_put(g, m4);
	ck_assert_int_eq(kv_gpu_reap(g, 3600), 0);
	ck_assert_uint_eq(gstats(g).mappings, 3);
	ck_assert_int_eq(kv_gpu_reap(g, 0), 3);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 0);
	ck_assert_uint_eq(s.closes, 3);
	ck_assert_int_eq(mapped(a.path), base_a);
	ck_assert_int_eq(mapped(b.path), base_b);
	ck_assert_int_eq(kv_gpu_reap(g, 0), 0);

	/* Imported afresh once closed; kv_gpu_free closes what is left. */
	m1 = map_get(g, a.handle, 0);
	s = gstats(g);
	ck_assert_uint_eq(s.opens, 4);
	ck_assert_uint_eq(s.mappings, 1);
	ck_assert_uint_eq(kv_gpu_map_base(m1)[10], 0x5a);
	kv_gpu_map_put(g, m1);
	ck_assert_int_eq(mapped(a.path), base_a + 1);
	kv_gpu_free(g);
	ck_assert_int_eq(mapped(a.path), base_a);
	alloc_free(&a);
	alloc_free(&b);
}
END_TEST

START_TEST(test_map_bad_handle)
{
	struct kv_gpu *g = fake_gpu();
	struct kv_gpu_map *m = NULL;
	uint8_t h[KVFS_IPC_HANDLE_SIZE] = { 0 };
	char path[64], err[256] = "";
	int fd;

	handle_path(path, "gone");
	memcpy(h, path, strlen(path));
	ck_assert_int_eq(kv_gpu_map_get(g, 0, h, 0, &m, err, sizeof(err)), -EBADF);
	ck_assert_msg(strstr(err, path) != NULL, "message: %s", err);
	/* An empty allocation cannot be imported either. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	err[0] = 0;
	ck_assert_int_eq(kv_gpu_map_get(g, 0, h, 0, &m, err, sizeof(err)), -EBADF);
	ck_assert_msg(err[0] != 0, "no message");
	ck_assert_uint_eq(gstats(g).opens, 0);
	ck_assert_uint_eq(gstats(g).mappings, 0);
	/* Once it exists (and has a size) it is imported. */
	ck_assert_int_eq(truncate(path, 4096), 0);
	m = map_get(g, h, 0);
	ck_assert_uint_eq(kv_gpu_map_size(m), 4096);
	kv_gpu_map_put(g, m);
	kv_gpu_free(g);
}
END_TEST

START_TEST(test_reap_refs_idle)
{
	struct alloc a, b, c;
	struct kv_gpu *g;
	struct kv_gpu_map *ma, *mb, *mc;
	struct kv_gpu_stats s;

	alloc_new(&a, 4096, 0);
	alloc_new(&b, 4096, 0);
	alloc_new(&c, 4096, 0);
	g = fake_gpu();
	ma = map_get(g, a.handle, (uint32_t)getpid());
	/* Referenced: kept however idle. */
	ck_assert_int_eq(kv_gpu_reap(g, 0), 0);
	ck_assert_int_eq(kv_gpu_reap(g, 3600), 0);
	/* Unreferenced, its client alive, recently used: kept. */
	mb = map_get(g, b.handle, (uint32_t)getpid());
	kv_gpu_map_put(g, mb);
	/* Unknown client (pid 0): only idleness closes it. */
	mc = map_get(g, c.handle, 0);
	kv_gpu_map_put(g, mc);
	ck_assert_int_eq(kv_gpu_reap(g, 3600), 0);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 3);
	ck_assert_uint_eq(s.closes, 0);
	/* Idle for >= 0 s: the two unreferenced ones go. */
	ck_assert_int_eq(kv_gpu_reap(g, 0), 2);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 1);
	ck_assert_uint_eq(s.closes, 2);
	ck_assert_int_eq(mapped(b.path), 1);
	ck_assert_int_eq(mapped(a.path), 2);
	/* A second reference keeps it past one put. */
	ck_assert_ptr_eq(map_get(g, a.handle, (uint32_t)getpid()), ma);
	kv_gpu_map_put(g, ma);
	ck_assert_int_eq(kv_gpu_reap(g, 0), 0);
	kv_gpu_map_put(g, ma);
	ck_assert_int_eq(kv_gpu_reap(g, 0), 1);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 0);
	ck_assert_uint_eq(s.closes, 3);
	ck_assert_uint_eq(s.opens, 3);
	ck_assert_int_eq(mapped(a.path), 1);
	kv_gpu_free(g);
	alloc_free(&a);
	alloc_free(&b);
	alloc_free(&c);
}
END_TEST

START_TEST(test_reap_exited_client)
{
	struct alloc a, b;
	struct kv_gpu *g;
	struct kv_gpu_map *m, *mb;
	struct kv_gpu_stats s;
	int fds[2], st;
	pid_t child;
	char c = 0;

	alloc_new(&a, 4096, 0);
	alloc_new(&b, 4096, 0);
	g = fake_gpu();
	ck_assert_int_eq(pipe(fds), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(fds[1]);
		(void)!read(fds[0], &c, 1);
		_exit(0);
	}
	close(fds[0]);
	m = map_get(g, a.handle, (uint32_t)child);
	mb = map_get(g, b.handle, (uint32_t)child);
	kv_gpu_map_put(g, m);
	ck_assert_int_eq(kv_gpu_reap(g, 3600), 0); /* the client still runs */
	ck_assert_uint_eq(gstats(g).mappings, 2);
	ck_assert_int_eq(write(fds[1], &c, 1), 1);
	close(fds[1]);
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	/* The backend's own reaper may have been first; either way it is gone. */
	ck_assert_int_le(kv_gpu_reap(g, 3600), 1);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 1); /* mb is still referenced */
	ck_assert_uint_eq(s.closes, 1);
	/* The reaper thread unmaps after counting: give it a moment. */
	for (int i = 0; i < 100 && mapped(a.path) != 1; i++)
		usleep(10000);
	ck_assert_int_eq(mapped(a.path), 1);
	kv_gpu_map_put(g, mb);
	ck_assert_int_le(kv_gpu_reap(g, 3600), 1);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 0);
	ck_assert_uint_eq(s.closes, 2);

	/* A client that had exited before the import. */
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	m = map_get(g, a.handle, (uint32_t)child);
	ck_assert_int_eq(kv_gpu_reap(g, 3600), 0); /* referenced */
	kv_gpu_map_put(g, m);
	ck_assert_int_le(kv_gpu_reap(g, 3600), 1);
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 0);
	ck_assert_uint_eq(s.closes, 3);
	kv_gpu_free(g);
	alloc_free(&a);
	alloc_free(&b);
}
END_TEST

#define GETTERS 8
#define ROUNDS 100

struct getter {
	struct kv_gpu *g;
	const uint8_t *handle;
	pthread_barrier_t *bar;
	struct kv_gpu_map *got[ROUNDS];
	int bad;
};

/* Each round: all import the same handle at once, then give it back. */
static void *getter_main(void *arg)
{
	struct getter *t = arg;
	char err[256];

	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(t->bar);
		t->bad |= kv_gpu_map_get(t->g, 0, t->handle, 0, &t->got[r], err, sizeof(err)) != 0;
		pthread_barrier_wait(t->bar);
		if (t->got[r])
			kv_gpu_map_put(t->g, t->got[r]);
		pthread_barrier_wait(t->bar);
	}
	return NULL;
}

START_TEST(test_map_concurrent)
{
	struct alloc a;
	struct kv_gpu *g;
	pthread_barrier_t bar;
	struct getter t[GETTERS];
	pthread_t th[GETTERS];
	struct kv_gpu_stats s;

	alloc_new(&a, 4096, 0);
	g = fake_gpu();
	ck_assert_int_eq(pthread_barrier_init(&bar, NULL, GETTERS + 1), 0);
	for (int i = 0; i < GETTERS; i++) {
		t[i] = (struct getter){ .g = g, .handle = a.handle, .bar = &bar };
		ck_assert_int_eq(pthread_create(&th[i], NULL, getter_main, &t[i]), 0);
	}
	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
		/* One import kept, any other made meanwhile closed again. */
		s = gstats(g);
		ck_assert_uint_eq(s.mappings, 1);
		ck_assert_uint_eq(s.opens, (uint64_t)r + 1);
		ck_assert_int_eq(mapped(a.path), 2);
		pthread_barrier_wait(&bar);
		ck_assert_int_eq(kv_gpu_reap(g, 0), 1);
	}
	for (int i = 0; i < GETTERS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < GETTERS; i++) {
		ck_assert_int_eq(t[i].bad, 0);
		for (int r = 0; r < ROUNDS; r++)
			ck_assert_ptr_eq(t[i].got[r], t[0].got[r]);
	}
	s = gstats(g);
	ck_assert_uint_eq(s.mappings, 0);
	ck_assert_uint_eq(s.closes, ROUNDS);
	ck_assert_int_eq(mapped(a.path), 1);
	pthread_barrier_destroy(&bar);
	kv_gpu_free(g);
	alloc_free(&a);
}
END_TEST

/* ==== kv_gpu: lanes ==== */

START_TEST(test_lanes)
{
	struct alloc a;
	struct kv_gpu *g;
	struct kv_gpu_map *m;
	struct kv_gpu_lane *l1, *l2, *l3;
	uint8_t *base, *s0, *s1, *src = malloc(CHUNK);

	alloc_new(&a, 16 * CHUNK, 0);
	g = fake_gpu();
	m = map_get(g, a.handle, 0);
	base = kv_gpu_map_base(m);

	l1 = kv_gpu_lane_get(g, 0);
	ck_assert_ptr_nonnull(l1);
	kv_gpu_lane_put(g, l1);
	l2 = kv_gpu_lane_get(g, 0);
	ck_assert_ptr_eq(l2, l1); /* reused */
	l3 = kv_gpu_lane_get(g, 0);
	ck_assert_ptr_nonnull(l3);
	ck_assert_ptr_ne(l3, l1); /* l1 is taken */

	s0 = kv_gpu_staging(l1, 0);
	s1 = kv_gpu_staging(l1, 1);
	ck_assert_ptr_nonnull(s0);
	ck_assert_ptr_nonnull(s1);
	ck_assert_ptr_ne(s0, s1);
	ck_assert_ptr_eq(kv_gpu_staging(l1, 0), s0);
	memset(s0, 0xab, KV_GPU_STAGE); /* the whole size is there (ASan) */
	memset(s1, 0xcd, KV_GPU_STAGE);

	rng_state = 11;
	fill_random(src, CHUNK);
	for (int s = 0; s < KV_GPU_NSTREAM; s++) {
		ck_assert_int_eq(kv_gpu_h2d(l1, s, base + (size_t)s * CHUNK, src, CHUNK), 0);
		ck_assert_int_eq(kv_gpu_mark(l1, s, s), 0);
		ck_assert_int_eq(kv_gpu_mark(l1, KV_GPU_NEV - 1, s), 0);
	}
	for (int s = 0; s < KV_GPU_NSTREAM; s++) {
		ck_assert_int_eq(kv_gpu_wait(l1, s, s), 0);
		ck_assert_int_eq(kv_gpu_wait(l1, KV_GPU_NEV - 1, s), 0);
	}
	ck_assert_int_eq(kv_gpu_sync(l1), 0);
	for (int s = 0; s < KV_GPU_NSTREAM; s++)
		expect_bytes(a.p + (size_t)s * CHUNK, src, CHUNK, "h2d");
	ck_assert_int_eq(kv_gpu_d2h(l3, 0, kv_gpu_staging(l3, 1), base + 3 * CHUNK, CHUNK), 0);
	ck_assert_int_eq(kv_gpu_mark(l3, 0, 0), 0);
	ck_assert_int_eq(kv_gpu_wait(l3, 0, 0), 0);
	expect_bytes(kv_gpu_staging(l3, 1), src, CHUNK, "d2h");

	/* A failing device: copies report it, nothing lands. */
	ck_assert_int_eq(setenv("KVFS_FAKE_GPU_FAIL_COPY", "1", 1), 0);
	ck_assert_int_lt(kv_gpu_h2d(l1, 0, base + 10 * CHUNK, src, CHUNK), 0);
	ck_assert_int_lt(kv_gpu_d2h(l1, 0, s1, base, CHUNK), 0);
	ck_assert(all_zero(a.p + 10 * CHUNK, CHUNK));
	ck_assert_uint_eq(s1[0], 0xcd);
	ck_assert_int_eq(unsetenv("KVFS_FAKE_GPU_FAIL_COPY"), 0);
	ck_assert_int_eq(kv_gpu_h2d(l1, 0, base + 10 * CHUNK, src, CHUNK), 0);
	ck_assert_int_eq(kv_gpu_sync(l1), 0);
	expect_bytes(a.p + 10 * CHUNK, src, CHUNK, "h2d after recovery");

	kv_gpu_lane_put(g, l1);
	kv_gpu_lane_put(g, l3);
	kv_gpu_lane_put(g, NULL);
	/* Both lanes are idle now: two gets take both, in some order. */
	l1 = kv_gpu_lane_get(g, 0);
	l2 = kv_gpu_lane_get(g, 0);
	ck_assert(l1 != l2 && (l1 == l3 || l2 == l3));
	kv_gpu_lane_put(g, l1);
	kv_gpu_lane_put(g, l2);
	kv_gpu_map_put(g, m);
	kv_gpu_free(g);
	alloc_free(&a);
	free(src);
}
END_TEST

/* ==== kv_fast: GPU_READ / GPU_WRITE ==== */

/* Multi-chunk data of an unaligned size: compressible, then random. */
static uint8_t *make_data(size_t n, uint64_t seed)
{
	uint8_t *d = malloc(n);

	ck_assert_ptr_nonnull(d);
	rng_state = seed;
	fill_fp16like(d, n / 2);
	fill_random(d + n / 2, n - n / 2);
	return d;
}

/* What most fast path tests stand on: a new store opened with cfg, size
 * bytes of make_data(size, seed), and an allocation of alloc_size bytes
 * filled as alloc_new does with a request io for it (none of either for a
 * size of 0). */
struct rig {
	struct kv_config cfg;
	char store[600];
	struct kv_fs *fs;
	uint8_t *data;
	size_t size;
	struct alloc a;
	struct kvfs_gpu_io *io;
};

static void rig_open_cfg(struct rig *r, const struct kv_config *cfg, size_t size, uint64_t seed,
			 size_t alloc_size, int fill)
{
	memset(r, 0, sizeof(*r));
	r->cfg = *cfg;
	r->fs = new_fs(r->store, sizeof(r->store), &r->cfg);
	r->size = size;
	if (size)
		r->data = make_data(size, seed);
	if (alloc_size) {
		alloc_new(&r->a, alloc_size, fill);
		r->io = io_new(&r->a);
	}
}

static void rig_open(struct rig *r, const char *codec, const char *gpu, size_t size, uint64_t seed,
		     size_t alloc_size, int fill)
{
	struct kv_config cfg = config(codec, gpu);

	rig_open_cfg(r, &cfg, size, seed, alloc_size, fill);
}

/* Closes the store and opens it again (its DRAM tier empty). */
static void rig_reopen(struct rig *r)
{
	close_fs(r->fs);
	r->fs = open_fs(r->store, &r->cfg);
}

static void rig_close(struct rig *r)
{
	close_fs(r->fs);
	free(r->io);
	free(r->data);
	if (r->io)
		alloc_free(&r->a);
}

START_TEST(test_read_segments)
{
	const size_t size = 5 * CHUNK + 12345;
	struct rig r;
	uint8_t *want;
	uint64_t ino;

	rig_open(&r, codecs[_i], KVFS_FAKE_PLUGIN, size, 100 + (uint64_t)_i, 2 * MIB, 0xa5);
	ino = write_file(r.fs, "f", r.data, size);
	want = malloc(r.a.size);
	seg_add(r.io, 100, 4096 + 3, 1000);                   /* inside chunk 0 */
	seg_add(r.io, CHUNK - 777, 200000, 2 * CHUNK + 1554); /* across two boundaries */
	seg_add(r.io, 3 * CHUNK, 9, 0);                       /* empty */
	seg_add(r.io, size - 5000, 500001, 5000);             /* up to EOF */
	seg_add(r.io, 0, 600000, size);                       /* all of it */
	seg_add(r.io, size, 7, 0);                            /* empty, at EOF */
	seg_add(r.io, 2 * CHUNK + 1, 1 * MIB + 77, 1);        /* one byte */
	memset(want, 0xa5, r.a.size);
	for (uint32_t i = 0; i < r.io->nseg; i++)
		memcpy(want + r.io->seg[i].dev_off, r.data + r.io->seg[i].file_off,
		       r.io->seg[i].len);
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p, want, r.a.size, "GPU_READ (chunks in the tier)");

	/* Cold: from the segments, decoded on the worker pool. */
	rig_reopen(&r);
	ino = lookup(r.fs, "f");
	memset(r.a.p, 0xa5, r.a.size);
	run_ok(r.fs, ino, RD | KV_FAST_CAN_WRITE, r.io);
	expect_bytes(r.a.p, want, r.a.size, "GPU_READ (cold)");
	ck_assert_uint_eq(fstats(r.fs).read_bytes, io_total(r.io));
	ck_assert_uint_eq(fstats(r.fs).requests, 1);
	ck_assert_uint_eq(fstats(r.fs).errors, 0);
	free(want);
	rig_close(&r);
}
END_TEST

/* Chunks stored raw are copied from page-locked windows of the segments,
 * checked there, without a read into a buffer or the DRAM tier; a record
 * replaced since its window was mapped is read from its new place, and a
 * damaged one is EIO, caught by the usual load. */
START_TEST(test_read_cold_direct)
{
	const size_t size = 70 * CHUNK + 999, nchunks = 71;
	struct rig r;
	uint8_t patch[3000];
	char seg[700];
	uint64_t ino, misses;
	int fd;

	rig_open(&r, "none", KVFS_FAKE_PLUGIN, size, 6, 2 * size, 0);
	write_file(r.fs, "f", r.data, size);
	rig_reopen(&r);
	ino = lookup(r.fs, "f");
	misses = metric(r.fs, "kvfs_tier_misses_total");
	seg_add(r.io, 100, 100, size - 100);
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p + 100, r.data + 100, size - 100, "GPU_READ from segment windows");
	ck_assert_uint_eq(fstats(r.fs).loads, nchunks);
	ck_assert_uint_eq(fstats(r.fs).direct, nchunks);
	ck_assert_uint_eq(metric(r.fs, "kvfs_tier_misses_total"), misses);
	ck_assert_uint_ge(fstats(r.fs).pinned_windows, size);

	/* Chunk 3 rewritten: its new record lies past the window mapped. */
	memset(patch, 0x5a, sizeof(patch));
	ck_assert_int_eq(kv_file_open(r.fs, ino, 0), 0);
	wr(r.fs, ino, patch, sizeof(patch), 3 * CHUNK + 10);
	ck_assert_int_eq(kv_file_release(r.fs, ino), 0);
	memcpy(r.data + 3 * CHUNK + 10, patch, sizeof(patch));
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p + 100, r.data + 100, size - 100, "GPU_READ after a rewrite");
	ck_assert_uint_eq(fstats(r.fs).direct, 2 * nchunks);

	/* A flipped byte in chunk 0's payload (the segment's header and the
	 * record's come first): EIO, and nothing counted as direct. */
	snprintf(seg, sizeof(seg), "%s/segments/00000001.seg", r.store);
	fd = open(seg, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "\xff\x00\xff", 3, KV_SEG_HDR + KV_REC_HDR + 500), 3);
	close(fd);
	expect_err(r.fs, ino, RD, r.io, -EIO, KVFS_E_IO, 0);
	ck_assert_uint_eq(metric(r.fs, "kvfs_checksum_errors_total"), 1);
	rig_close(&r);
}
END_TEST

START_TEST(test_read_cold_then_tier)
{
	/* More chunks than a request keeps in flight (KV_FAST_AHEAD) and than
	 * it has piece slots (KV_GPU_NEV), so both wrap. */
	const size_t size = 70 * CHUNK + 999, nchunks = 71;
	struct rig r;
	uint64_t ino, hits, misses;
	struct kv_config cfg = config("lz4", KVFS_FAKE_PLUGIN);
	char err[128];

	/* Loads through buffers and the DRAM tier: no segment windows. */
	ck_assert_int_eq(kv_opt_set(&cfg, "gpu_pin", "0", err, sizeof(err)), 0);
	rig_open_cfg(&r, &cfg, size, 5, 2 * size + 100, 0);
	write_file(r.fs, "f", r.data, size);
	rig_reopen(&r); /* an empty DRAM tier */
	ino = lookup(r.fs, "f");
	/* From an unaligned offset: still one load (and one tier lookup) per
	 * chunk, as pieces never cross a chunk. */
	seg_add(r.io, 100, 100, size - 100);
	hits = metric(r.fs, "kvfs_tier_hits_total");
	misses = metric(r.fs, "kvfs_tier_misses_total");
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p + 100, r.data + 100, size - 100, "first GPU_READ");
	ck_assert_uint_eq(fstats(r.fs).loads, nchunks);
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_loads_total"), nchunks);
	ck_assert_uint_eq(metric(r.fs, "kvfs_tier_misses_total") - misses, nchunks);
	ck_assert_uint_eq(metric(r.fs, "kvfs_tier_hits_total") - hits, 0);

	/* Again: every chunk from the DRAM tier, nothing loaded. */
	r.io->seg[0] = (struct kvfs_gpu_seg){ 0, size + 100, size };
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p + size + 100, r.data, size, "second GPU_READ");
	ck_assert_uint_eq(fstats(r.fs).loads, nchunks);
	ck_assert_uint_eq(metric(r.fs, "kvfs_tier_misses_total") - misses, nchunks);
	ck_assert_uint_eq(metric(r.fs, "kvfs_tier_hits_total") - hits, nchunks);

	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_requests_total"), 2);
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_errors_total"), 0);
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_read_bytes_total"), 2 * size - 100);
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_written_bytes_total"), 0);
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_mappings"), 1); /* kept for the next request */
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_ipc_opens_total"), 1);
	ck_assert_uint_ge(metric(r.fs, "kvfs_gpu_pinned_bytes"), CHUNK);
	rig_close(&r);
}
END_TEST

START_TEST(test_write_roundtrip)
{
	struct rig r;
	struct alloc b;
	struct kvfs_gpu_io *back;
	uint64_t ino, end, s1 = 4 * MIB + 12345; /* more than a staging buffer */
	uint8_t *want;
	size_t size;

	rig_open(&r, codecs[_i], KVFS_FAKE_PLUGIN, 0, 0, 10 * MIB, 0);
	ino = mkfile(r.fs, "w");
	rng_state = 21 + (uint64_t)_i;
	fill_fp16like(r.a.p, 5 * MIB);
	fill_random(r.a.p + 5 * MIB, 5 * MIB);
	seg_add(r.io, 0, 17, 2 * CHUNK + 5);
	seg_add(r.io, 2 * CHUNK + 5, 5 * MIB + 3, s1);
	end = 2 * CHUNK + 5 + s1;
	seg_add(r.io, end, MIB, 0);
	seg_add(r.io, end, MIB, 3000);
	seg_add(r.io, 100, 2 * MIB, 50); /* segments run in order: this one wins */
	size = end + 3000;
	want = malloc(size);
	for (uint32_t i = 0; i < r.io->nseg; i++)
		memcpy(want + r.io->seg[i].file_off, r.a.p + r.io->seg[i].dev_off, r.io->seg[i].len);
	run_ok(r.fs, ino, WR, r.io);
	ck_assert_uint_eq(size_of(r.fs, ino), size);
	expect_file(r.fs, ino, want, size);
	ck_assert_uint_eq(fstats(r.fs).write_bytes, io_total(r.io));

	/* Durable, and readable back to the device. */
	rig_reopen(&r);
	ino = lookup(r.fs, "w");
	expect_file(r.fs, ino, want, size);
	alloc_new(&b, size, 0);
	back = io_new(&b);
	seg_add(back, 0, 0, size);
	run_ok(r.fs, ino, RD, back);
	expect_bytes(b.p, want, size, "GPU_READ of what GPU_WRITE wrote");
	free(back);
	free(want);
	alloc_free(&b);
	rig_close(&r);
}
END_TEST

START_TEST(test_write_past_eof)
{
	const size_t s0 = CHUNK + 100, off = s0 + 2 * CHUNK + 33, n = 5000;
	struct rig r;
	uint8_t *got;
	uint64_t ino, ino2;
	size_t len;

	rig_open(&r, "lz4", KVFS_FAKE_PLUGIN, s0, 31, MIB, -1);
	ino = write_file(r.fs, "f", r.data, s0);
	seg_add(r.io, off, 4096, n);
	run_ok(r.fs, ino, WR | KV_FAST_CAN_READ, r.io);
	got = read_all(r.fs, ino, &len);
	ck_assert_uint_eq(len, off + n);
	expect_bytes(got, r.data, s0, "old bytes");
	ck_assert_msg(all_zero(got + s0, off - s0), "the hole is not zero");
	expect_bytes(got + off, r.a.p + 4096, n, "new bytes");
	free(got);

	/* A new file written far from its start. */
	ino2 = mkfile(r.fs, "g");
	r.io->seg[0] = (struct kvfs_gpu_seg){ 7 * CHUNK + 1, 0, CHUNK };
	run_ok(r.fs, ino2, WR, r.io);
	got = read_all(r.fs, ino2, &len);
	ck_assert_uint_eq(len, 8 * CHUNK + 1);
	ck_assert(all_zero(got, 7 * CHUNK + 1));
	expect_bytes(got + 7 * CHUNK + 1, r.a.p, CHUNK, "written bytes");
	free(got);
	rig_close(&r);
}
END_TEST

START_TEST(test_read_buffered)
{
	const size_t size = 3 * CHUNK + 777;
	struct rig r;
	uint8_t patch[100];
	uint64_t ino;

	rig_open(&r, "lz4", KVFS_FAKE_PLUGIN, size + CHUNK, 41, MIB, 0);
	ino = mkfile(r.fs, "f");
	ck_assert_int_eq(kv_file_open(r.fs, ino, 0), 0);
	wr(r.fs, ino, r.data, size, 0);
	seg_add(r.io, 0, 0, size);
	seg_add(r.io, CHUNK - 10, 512 * 1024, 20);
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p, r.data, size, "buffered data");
	expect_bytes(r.a.p + 512 * 1024, r.data + CHUNK - 10, 20, "buffered data, segment 1");

	/* Overwritten, still unpublished: the new bytes. */
	memset(patch, 0x3c, sizeof(patch));
	wr(r.fs, ino, patch, sizeof(patch), CHUNK - 50);
	memcpy(r.data + CHUNK - 50, patch, sizeof(patch));
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p, r.data, size, "overwritten buffered data");

	/* Published chunks and newer buffered ones mixed. */
	ck_assert_int_eq(kv_file_flush(r.fs, ino), 0);
	wr(r.fs, ino, r.data + size, CHUNK, size);
	wr(r.fs, ino, patch, 10, 5);
	memcpy(r.data + 5, patch, 10);
	r.io->seg[0].len = size + CHUNK;
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p, r.data, size + CHUNK, "published and buffered data");
	ck_assert_int_eq(kv_file_release(r.fs, ino), 0);
	memset(r.a.p, 0, r.a.size);
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p, r.data, size + CHUNK, "after release");
	rig_close(&r);
}
END_TEST

/* ==== kv_fast: errors ==== */

/* A store with one file, an allocation and a request reading 100 bytes;
 * counts the requests and failures it sends. */
struct efix {
	struct rig r;
	uint64_t ino;
	unsigned nreq, nerr;
	uint64_t read;
};

static void efix_ok(struct efix *x)
{
	run_ok(x->r.fs, x->ino, RD, x->r.io);
	x->nreq++;
	x->read += io_total(x->r.io);
}

static void efix_open(struct efix *x)
{
	memset(x, 0, sizeof(*x));
	rig_open(&x->r, "lz4", KVFS_FAKE_PLUGIN, 3 * CHUNK + 10, 51, MIB, 0);
	x->ino = write_file(x->r.fs, "f", x->r.data, x->r.size);
	seg_add(x->r.io, 0, 0, 100);
	efix_ok(x);
}

static void efix_err_at(struct efix *x, uint64_t ino, unsigned mode, int want, uint32_t detail,
			uint32_t seg, int line)
{
	expect_err_at(x->r.fs, ino, mode, x->r.io, want, detail, seg, line);
	x->nreq++;
	x->nerr++;
}
#define efix_err(x, mode, want, detail, seg) \
	efix_err_at(x, (x)->ino, mode, want, detail, seg, __LINE__)

/* The counters agree, the file is untouched, no mapping is left referenced. */
static void efix_close(struct efix *x)
{
	struct kv_fast_stats st = fstats(x->r.fs);

	ck_assert_uint_eq(st.requests, x->nreq);
	ck_assert_uint_eq(st.errors, x->nerr);
	ck_assert_uint_eq(st.read_bytes, x->read);
	ck_assert_uint_eq(st.write_bytes, 0);
	ck_assert_uint_eq(metric(x->r.fs, "kvfs_gpu_requests_total"), x->nreq);
	ck_assert_uint_eq(metric(x->r.fs, "kvfs_gpu_errors_total"), x->nerr);
	expect_file(x->r.fs, x->ino, x->r.data, x->r.size);
	ck_assert_int_eq(kv_gpu_reap(kv_fast_gpu(fast_of(x->r.fs)), 0), 1);
	ck_assert_uint_eq(metric(x->r.fs, "kvfs_gpu_mappings"), 0);
	rig_close(&x->r);
}

START_TEST(test_errors_header)
{
	struct efix x;
	struct kvfs_gpu_io *io;

	efix_open(&x);
	io = x.r.io;
	io->abi_version = 2;
	efix_err(&x, RD, -EINVAL, KVFS_E_VERSION, 0);
	io->abi_version = 0;
	efix_err(&x, WR, -EINVAL, KVFS_E_VERSION, 0);
	io->abi_version = KVFS_ABI_VERSION;
	io->struct_size = sizeof(*io) - 24;
	efix_err(&x, RD, -EINVAL, KVFS_E_SIZE, 0);
	io->struct_size = sizeof(*io) + 1;
	efix_err(&x, RD, -EINVAL, KVFS_E_SIZE, 0);
	io->struct_size = sizeof(*io);
	io->flags = 1;
	efix_err(&x, RD, -EINVAL, KVFS_E_ARG, 0);
	io->flags = 0x80000000u;
	efix_err(&x, WR, -EINVAL, KVFS_E_ARG, 0);
	io->flags = 0;
	io->nseg = 0;
	efix_err(&x, RD, -EINVAL, KVFS_E_ARG, 0);
	io->nseg = KVFS_GPU_MAX_SEGS + 1;
	efix_err(&x, RD, -EINVAL, KVFS_E_ARG, 0);
	io->nseg = 1;
	io->vendor = 7;
	efix_err(&x, RD, -EINVAL, KVFS_E_ARG, 0);
	io->vendor = KVFS_GPU_NONE;
	efix_err(&x, RD, -EINVAL, KVFS_E_ARG, 0);
	io->vendor = KVFS_GPU_CUDA;
	/* Opened without the right access. */
	efix_err(&x, 0, -EBADF, KVFS_E_ACCESS, 0);
	efix_err(&x, KV_FAST_CAN_WRITE, -EBADF, KVFS_E_ACCESS, 0);
	efix_err(&x, KV_FAST_WRITE | KV_FAST_CAN_READ, -EBADF, KVFS_E_ACCESS, 0);
	efix_err(&x, KV_FAST_WRITE, -EBADF, KVFS_E_ACCESS, 0);
	/* The most segments there may be. */
	io->nseg = 0;
	for (uint32_t i = 0; i < KVFS_GPU_MAX_SEGS; i++)
		seg_add(io, i * 10, 4096 + i * 10, 10);
	efix_ok(&x);
	expect_bytes(x.r.a.p + 4096, x.r.data, 1600, "160 segments");
	efix_close(&x);
}
END_TEST

START_TEST(test_errors_ranges)
{
	struct efix x;
	struct kvfs_gpu_io *io;
	size_t size, asize;

	efix_open(&x);
	io = x.r.io;
	size = x.r.size;
	asize = x.r.a.size;
	/* File ranges: the failing segment is named. */
	seg_add(io, size - 10, 200, 11); /* one byte past EOF */
	efix_err(&x, RD, -EINVAL, KVFS_E_FILE_RANGE, 1);
	io->seg[1] = (struct kvfs_gpu_seg){ size - 10, 200, 10 };
	seg_add(io, size + 1, 300, 0); /* empty, but past EOF */
	efix_err(&x, RD, -EINVAL, KVFS_E_FILE_RANGE, 2);
	io->seg[2] = (struct kvfs_gpu_seg){ UINT64_MAX - 5, 300, 10 }; /* wraps */
	efix_err(&x, RD, -EINVAL, KVFS_E_FILE_RANGE, 2);
	efix_err(&x, WR, -EINVAL, KVFS_E_FILE_RANGE, 2);
	io->seg[2] = (struct kvfs_gpu_seg){ (uint64_t)INT64_MAX, 300, 1 }; /* past off_t */
	efix_err(&x, WR, -EINVAL, KVFS_E_FILE_RANGE, 2);
	io->nseg = 1;
	/* Device ranges. */
	seg_add(io, 0, UINT64_MAX - 50, 100); /* wraps */
	efix_err(&x, RD, -EFAULT, KVFS_E_DEV_RANGE, 1);
	efix_err(&x, WR, -EFAULT, KVFS_E_DEV_RANGE, 1);
	io->seg[1] = (struct kvfs_gpu_seg){ 0, asize - 99, 100 }; /* one byte past the end */
	efix_err(&x, RD, -EFAULT, KVFS_E_DEV_RANGE, 1);
	efix_err(&x, WR, -EFAULT, KVFS_E_DEV_RANGE, 1);
	io->seg[1] = (struct kvfs_gpu_seg){ 0, asize + 1, 0 };
	efix_err(&x, RD, -EFAULT, KVFS_E_DEV_RANGE, 1);
	/* alloc_size is advisory: only the imported size counts. */
	io->alloc_size = 1ull << 40;
	io->seg[1] = (struct kvfs_gpu_seg){ 0, asize, 1 };
	efix_err(&x, RD, -EFAULT, KVFS_E_DEV_RANGE, 1);
	io->alloc_size = 10;
	io->seg[1] = (struct kvfs_gpu_seg){ 0, asize - 100, 100 }; /* exactly the end */
	efix_ok(&x);
	expect_bytes(x.r.a.p + asize - 100, x.r.data, 100, "segment ending at the allocation's end");
	efix_close(&x);
}
END_TEST

START_TEST(test_errors_target)
{
	struct efix x;
	struct kvfs_gpu_io *io;
	char gone[64];

	efix_open(&x);
	io = x.r.io;
	io->vendor = KVFS_GPU_HIP;
	efix_err(&x, RD, -ENODEV, KVFS_E_VENDOR, 0);
	io->vendor = KVFS_GPU_CUDA;
	io->device_uuid[0] ^= 0xff;
	efix_err(&x, RD, -ENODEV, KVFS_E_DEVICE, 0);
	io->device_uuid[0] ^= 0xff;
	handle_path(gone, "gone");
	memset(io->handle, 0, sizeof(io->handle));
	memcpy(io->handle, gone, strlen(gone));
	efix_err(&x, RD, -EBADF, KVFS_E_HANDLE, 0);
	efix_err(&x, WR, -EBADF, KVFS_E_HANDLE, 0);
	memcpy(io->handle, x.r.a.handle, sizeof(io->handle));
	/* Not a regular file; no such inode. */
	io->seg[0] = (struct kvfs_gpu_seg){ 0, 0, 0 };
	efix_err_at(&x, KV_ROOT_INO, WR, -EISDIR, KVFS_E_IO, 0, __LINE__);
	efix_err_at(&x, 1ull << 40, RD, -ENOENT, KVFS_E_IO, 0, __LINE__);
	efix_close(&x);
}
END_TEST

START_TEST(test_errors_no_backend)
{
	const size_t size = 2 * CHUNK;
	struct rig r;
	uint64_t ino;
	struct kvfs_query q = { .abi_version = KVFS_ABI_VERSION, .struct_size = sizeof(q) };

	rig_open(&r, "lz4", "off", size, 61, MIB, -1);
	ino = write_file(r.fs, "f", r.data, size);
	seg_add(r.io, 0, 0, size);
	expect_err(r.fs, ino, RD, r.io, -ENODEV, KVFS_E_NO_BACKEND, 0);
	expect_err(r.fs, ino, WR, r.io, -ENODEV, KVFS_E_NO_BACKEND, 0);
	/* What can be checked without a backend is still checked first. */
	r.io->abi_version = 2;
	expect_err(r.fs, ino, RD, r.io, -EINVAL, KVFS_E_VERSION, 0);
	r.io->abi_version = KVFS_ABI_VERSION;
	r.io->struct_size = 4;
	expect_err(r.fs, ino, RD, r.io, -EINVAL, KVFS_E_SIZE, 0);
	r.io->struct_size = sizeof(*r.io);
	r.io->nseg = 0;
	expect_err(r.fs, ino, RD, r.io, -EINVAL, KVFS_E_ARG, 0);
	r.io->nseg = 1;
	r.io->vendor = 7;
	expect_err(r.fs, ino, RD, r.io, -EINVAL, KVFS_E_ARG, 0);
	r.io->vendor = KVFS_GPU_CUDA;
	expect_err(r.fs, ino, KV_FAST_WRITE, r.io, -EBADF, KVFS_E_ACCESS, 0);
	r.io->seg[0].len = size + 1;
	expect_err(r.fs, ino, RD, r.io, -EINVAL, KVFS_E_FILE_RANGE, 0);
	r.io->seg[0] = (struct kvfs_gpu_seg){ 0, UINT64_MAX, 2 };
	expect_err(r.fs, ino, RD, r.io, -EFAULT, KVFS_E_DEV_RANGE, 0);
	ck_assert_uint_eq(fstats(r.fs).requests, 9);
	ck_assert_uint_eq(fstats(r.fs).errors, 9);
	expect_file(r.fs, ino, r.data, size);

	ck_assert_int_eq(kv_fast_query(fast_of(r.fs), &q), 0);
	ck_assert_uint_eq(q.backend, KVFS_GPU_NONE);
	ck_assert_str_eq(q.backend_name, "none");
	ck_assert_uint_eq(q.ndevices, 0);
	ck_assert_uint_eq(q.max_segs, KVFS_GPU_MAX_SEGS);
	ck_assert_uint_eq(q.chunk_size, CHUNK);
	ck_assert_uint_eq(q.abi_version, KVFS_ABI_VERSION);
	ck_assert_uint_eq(q.struct_size, sizeof(q));
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_pinned_bytes"), 0);
	rig_close(&r);
}
END_TEST

START_TEST(test_copy_failure)
{
	const size_t size = 40 * CHUNK + 10;
	struct rig r;
	uint64_t ino, empty;

	rig_open(&r, "lz4", KVFS_FAKE_PLUGIN, size, 71, 8 * MIB, 0);
	ino = write_file(r.fs, "f", r.data, size);
	empty = mkfile(r.fs, "e");
	seg_add(r.io, 0, 0, 0);
	seg_add(r.io, 0, 0, size);

	ck_assert_int_eq(setenv("KVFS_FAKE_GPU_FAIL_COPY", "1", 1), 0);
	/* From the DRAM tier (the chunks were just written). */
	expect_err(r.fs, ino, RD, r.io, -EIO, KVFS_E_COPY, 1);
	ck_assert(all_zero(r.a.p, size));
	/* Cold: the loads in flight are waited for (ASan would see them
	 * write into a request state given back). */
	rig_reopen(&r);
	ino = lookup(r.fs, "f");
	empty = lookup(r.fs, "e");
	expect_err(r.fs, ino, RD, r.io, -EIO, KVFS_E_COPY, 1);
	ck_assert(all_zero(r.a.p, size));

	/* Writes: nothing reaches the file. */
	fill_random(r.a.p, r.a.size);
	r.io->seg[1] = (struct kvfs_gpu_seg){ 5, 0, 1000 };
	expect_err(r.fs, ino, WR, r.io, -EIO, KVFS_E_COPY, 1);
	r.io->seg[1] = (struct kvfs_gpu_seg){ 0, 0, 6 * MIB }; /* several staging buffers */
	expect_err(r.fs, ino, WR, r.io, -EIO, KVFS_E_COPY, 1);
	expect_err(r.fs, empty, WR, r.io, -EIO, KVFS_E_COPY, 1);
	ck_assert_int_eq(unsetenv("KVFS_FAKE_GPU_FAIL_COPY"), 0);
	ck_assert_uint_eq(size_of(r.fs, empty), 0);
	expect_file(r.fs, ino, r.data, size);
	ck_assert_uint_eq(fstats(r.fs).errors, 4);
	ck_assert_uint_eq(fstats(r.fs).write_bytes, 0);
	ck_assert_uint_eq(fstats(r.fs).read_bytes, 0);

	/* The device works again: so does the fast path. */
	memset(r.a.p, 0, r.a.size);
	r.io->seg[1] = (struct kvfs_gpu_seg){ 0, 0, size };
	run_ok(r.fs, ino, RD, r.io);
	expect_bytes(r.a.p, r.data, size, "GPU_READ after the failures");
	ck_assert_uint_eq(fstats(r.fs).errors, 4);
	ck_assert_uint_eq(fstats(r.fs).requests, 5);
	ck_assert_int_eq(kv_gpu_reap(kv_fast_gpu(fast_of(r.fs)), 0), 1);
	rig_close(&r);
}
END_TEST

START_TEST(test_write_enospc)
{
	struct kv_config cfg = config("none", KVFS_FAKE_PLUGIN);
	char err[256];
	struct rig r;
	uint64_t ino;

	ck_assert_int_eq(kv_opt_set(&cfg, "capacity", "1M", err, sizeof(err)), 0);
	rig_open_cfg(&r, &cfg, 1000, 75, 2 * MIB, -1);
	ino = write_file(r.fs, "f", r.data, 1000);
	seg_add(r.io, 0, 0, 0);
	seg_add(r.io, 0, 0, MIB + MIB / 2); /* more than the capacity */
	expect_err(r.fs, ino, WR, r.io, -ENOSPC, KVFS_E_IO, 1);
	expect_file(r.fs, ino, r.data, 1000);
	/* What fits is written. */
	r.io->seg[1].len = 100 * 1024;
	run_ok(r.fs, ino, WR, r.io);
	expect_file(r.fs, ino, r.a.p, 100 * 1024);
	rig_close(&r);
}
END_TEST

/* ==== kv_fast_query ==== */

START_TEST(test_query)
{
	struct kv_config cfg = config("lz4", KVFS_FAKE_PLUGIN);
	char store[600];
	struct kv_fs *fs = new_fs(store, sizeof(store), &cfg);
	struct kvfs_query q;
	unsigned maj = 0, min = 0, pat = 0;
	uint8_t zero[16] = { 0 };

	memset(&q, 0, sizeof(q));
	q.abi_version = 2;
	q.struct_size = sizeof(q);
	ck_assert_int_eq(kv_fast_query(fast_of(fs), &q), -EINVAL);
	q.abi_version = KVFS_ABI_VERSION;
	q.struct_size = sizeof(q) - 1;
	ck_assert_int_eq(kv_fast_query(fast_of(fs), &q), -EINVAL);
	q.struct_size = 0;
	ck_assert_int_eq(kv_fast_query(fast_of(fs), &q), -EINVAL);

	memset(&q, 0xee, sizeof(q));
	q.abi_version = KVFS_ABI_VERSION;
	q.struct_size = sizeof(q);
	ck_assert_int_eq(kv_fast_query(fast_of(fs), &q), 0);
	ck_assert_uint_eq(q.abi_version, KVFS_ABI_VERSION);
	ck_assert_uint_eq(q.struct_size, sizeof(q));
	ck_assert_int_eq(sscanf(KVFS_VERSION, "%u.%u.%u", &maj, &min, &pat), 3);
	ck_assert_uint_eq(q.kvfs_version, maj << 16 | min << 8 | pat);
	ck_assert_uint_eq(q.backend, KVFS_GPU_CUDA);
	ck_assert_str_eq(q.backend_name, "fake");
	ck_assert_uint_eq(q.ndevices, 1);
	ck_assert_mem_eq(q.device_uuid[0], FAKE_UUID, 16);
	for (int i = 1; i < KVFS_MAX_DEVICES; i++)
		ck_assert_mem_eq(q.device_uuid[i], zero, 16);
	ck_assert_uint_eq(q.max_segs, KVFS_GPU_MAX_SEGS);
	ck_assert_uint_eq(q.chunk_size, CHUNK);
	/* Asking started the backend: the chunk buffers are page-locked. */
	ck_assert_uint_ge(metric(fs, "kvfs_gpu_pinned_bytes"), CHUNK);
	close_fs(fs);

	/* The chunk size is the store's. */
	{
		char err[256];
		ck_assert_int_eq(kv_opt_set(&cfg, "chunk", "1M", err, sizeof(err)), 0);
		fs = new_fs(store, sizeof(store), &cfg);
		memset(&q, 0, sizeof(q));
		q.abi_version = KVFS_ABI_VERSION;
		q.struct_size = sizeof(q);
		ck_assert_int_eq(kv_fast_query(fast_of(fs), &q), 0);
		ck_assert_uint_eq(q.chunk_size, MIB);
		close_fs(fs);
	}
}
END_TEST

/* ==== kv_fast_submit ==== */

struct done_rec {
	pthread_mutex_t lock; /* error-checking: a call from the holder is seen */
	pthread_cond_t cv;
	int calls, rc, returned, after_return;
	pthread_t thread;
	struct kvfs_gpu_io *io;
};

static void done_init(struct done_rec *d)
{
	pthread_mutexattr_t ma;

	memset(d, 0, sizeof(*d));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&d->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_cond_init(&d->cv, NULL);
}

static void done_destroy(struct done_rec *d)
{
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->lock);
}

static void on_done(void *arg, int rc, struct kvfs_gpu_io *io)
{
	struct done_rec *d = arg;
	int held = pthread_mutex_lock(&d->lock) == EDEADLK; /* the submitter holds it */

	d->calls++;
	d->rc = rc;
	d->io = io;
	d->thread = pthread_self();
	d->after_return = d->returned;
	pthread_cond_broadcast(&d->cv);
	if (!held)
		pthread_mutex_unlock(&d->lock);
}

/* Waits up to 30 s for done; returns the calls seen. */
static int done_wait(struct done_rec *d)
{
	struct timespec ts;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 30;
	pthread_mutex_lock(&d->lock);
	while (!d->calls && pthread_cond_timedwait(&d->cv, &d->lock, &ts) != ETIMEDOUT)
		;
	n = d->calls;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* Submits io with d (initialized here), holding d's lock until the call has
 * returned, so that an answer before the return is seen; waits for it. */
static void submit_wait(struct kv_fs *fs, uint64_t ino, unsigned mode, struct kvfs_gpu_io *io,
			struct done_rec *d)
{
	done_init(d);
	pthread_mutex_lock(&d->lock);
	ck_assert_int_eq(kv_fast_submit(fast_of(fs), ino, mode, 0, io, on_done, d), 0);
	d->returned = 1;
	pthread_mutex_unlock(&d->lock);
	ck_assert_int_eq(done_wait(d), 1);
}

START_TEST(test_submit_inline)
{
	struct rig r;
	uint64_t ino;
	struct done_rec d;

	rig_open(&r, "lz4", KVFS_FAKE_PLUGIN, BIG, 81, BIG, 0);
	ino = write_file(r.fs, "f", r.data, BIG);
	seg_add(r.io, 0, 0, MIB);
	done_init(&d);
	ck_assert_int_eq(kv_fast_submit(fast_of(r.fs), ino, RD, 0, r.io, on_done, &d), 0);
	ck_assert_int_eq(d.calls, 1); /* before returning */
	ck_assert(pthread_equal(d.thread, pthread_self()));
	ck_assert_int_eq(d.rc, 0);
	ck_assert_ptr_eq(d.io, r.io);
	ck_assert_uint_eq(r.io->bytes_done, MIB);
	expect_bytes(r.a.p, r.data, MIB, "inline GPU_READ");

	/* Exactly KV_FAST_INLINE bytes, in two segments: still inline. */
	r.io->nseg = 0;
	seg_add(r.io, 0, 0, KV_FAST_INLINE / 2);
	seg_add(r.io, KV_FAST_INLINE / 2, KV_FAST_INLINE / 2, KV_FAST_INLINE / 2);
	done_destroy(&d);
	done_init(&d);
	ck_assert_int_eq(kv_fast_submit(fast_of(r.fs), ino, RD, 0, r.io, on_done, &d), 0);
	ck_assert_int_eq(d.calls, 1);
	ck_assert(pthread_equal(d.thread, pthread_self()));
	ck_assert_int_eq(d.rc, 0);
	ck_assert_uint_eq(r.io->bytes_done, KV_FAST_INLINE);
	expect_bytes(r.a.p, r.data, KV_FAST_INLINE, "inline GPU_READ of KV_FAST_INLINE bytes");

	/* A small write is not: its end drops the kernel's cached pages,
	 * which must not wait in a FUSE thread. */
	{
		uint64_t out = mkfile(r.fs, "small-out");
		r.io->nseg = 0;
		seg_add(r.io, 0, 0, MIB);
		done_destroy(&d);
		submit_wait(r.fs, out, WR, r.io, &d);
		ck_assert(!pthread_equal(d.thread, pthread_self()));
		ck_assert_int_eq(d.after_return, 1);
		ck_assert_int_eq(d.rc, 0);
		expect_file(r.fs, out, r.data, MIB);
	}

	/* A small bad request is answered inline too. */
	r.io->abi_version = 9;
	done_destroy(&d);
	done_init(&d);
	ck_assert_int_eq(kv_fast_submit(fast_of(r.fs), ino, RD, 0, r.io, on_done, &d), 0);
	ck_assert_int_eq(d.calls, 1);
	ck_assert_int_eq(d.rc, -EINVAL);
	ck_assert_uint_eq(r.io->detail, KVFS_E_VERSION);
	done_destroy(&d);
	rig_close(&r);
}
END_TEST

START_TEST(test_submit_async)
{
	struct rig r;
	uint64_t ino, out;
	struct done_rec d;

	rig_open(&r, "lz4", KVFS_FAKE_PLUGIN, BIG, 91, BIG, 0);
	ino = write_file(r.fs, "f", r.data, BIG);
	out = mkfile(r.fs, "out");
	/* KV_FAST_INLINE + 1 bytes: handed to a fast path thread. */
	seg_add(r.io, 0, 0, KV_FAST_INLINE / 2);
	seg_add(r.io, KV_FAST_INLINE / 2, KV_FAST_INLINE / 2, KV_FAST_INLINE / 2 + 1);
	submit_wait(r.fs, ino, RD, r.io, &d);
	ck_assert(!pthread_equal(d.thread, pthread_self()));
	ck_assert_int_eq(d.after_return, 1);
	ck_assert_int_eq(d.rc, 0);
	ck_assert_ptr_eq(d.io, r.io);
	ck_assert_uint_eq(r.io->bytes_done, KV_FAST_INLINE + 1);
	expect_bytes(r.a.p, r.data, KV_FAST_INLINE + 1, "GPU_READ of KV_FAST_INLINE + 1 bytes");

	/* The whole file, then written to another by GPU_WRITE. */
	r.io->nseg = 0;
	seg_add(r.io, 0, 0, BIG);
	memset(r.a.p, 0, r.a.size);
	done_destroy(&d);
	submit_wait(r.fs, ino, RD, r.io, &d);
	ck_assert_int_eq(d.after_return, 1);
	ck_assert_int_eq(d.rc, 0);
	expect_bytes(r.a.p, r.data, BIG, "GPU_READ of a 9 MiB file");

	done_destroy(&d);
	submit_wait(r.fs, out, WR, r.io, &d);
	ck_assert(!pthread_equal(d.thread, pthread_self()));
	ck_assert_int_eq(d.after_return, 1);
	ck_assert_int_eq(d.rc, 0);
	ck_assert_uint_eq(r.io->bytes_done, BIG);
	expect_file(r.fs, out, r.data, BIG);

	/* A large bad request fails on the thread, with its details. */
	r.io->seg[0].len = BIG + 1;
	done_destroy(&d);
	done_init(&d);
	ck_assert_int_eq(kv_fast_submit(fast_of(r.fs), ino, RD, 0, r.io, on_done, &d), 0);
	ck_assert_int_eq(done_wait(&d), 1);
	ck_assert_int_eq(d.rc, -EINVAL);
	ck_assert_uint_eq(r.io->detail, KVFS_E_FILE_RANGE);
	done_destroy(&d);
	rig_close(&r);
}
END_TEST

#define NTHREADS 4

struct worker {
	struct kv_fs *fs;
	uint64_t src, dst;
	struct alloc *a;
	const uint8_t *want;
	char fail[256];
};

/* Reads the source into its allocation and writes it to its own file,
 * twice, through kv_fast_submit; checks are recorded for the main thread. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct kvfs_gpu_io *io = calloc(1, sizeof(*io));

	if (!io) {
		snprintf(w->fail, sizeof(w->fail), "calloc");
		return NULL;
	}
	for (int round = 0; round < 2 && !w->fail[0]; round++) {
		for (int write = 0; write < 2 && !w->fail[0]; write++) {
			struct done_rec d;
			*io = (struct kvfs_gpu_io){ .abi_version = KVFS_ABI_VERSION,
						    .struct_size = sizeof(*io),
						    .vendor = KVFS_GPU_CUDA,
						    .nseg = 1 };
			memcpy(io->handle, w->a->handle, sizeof(io->handle));
			memcpy(io->device_uuid, FAKE_UUID, 16);
			io->seg[0] = (struct kvfs_gpu_seg){ 0, 0, BIG };
			if (!write)
				memset(w->a->p, 0, w->a->size);
			done_init(&d);
			if (kv_fast_submit(fast_of(w->fs), write ? w->dst : w->src, write ? WR : RD,
					   0, io, on_done, &d))
				snprintf(w->fail, sizeof(w->fail), "submit failed");
			else if (done_wait(&d) != 1)
				snprintf(w->fail, sizeof(w->fail), "round %d: no answer", round);
			else if (d.rc || io->bytes_done != BIG)
				snprintf(w->fail, sizeof(w->fail),
					 "round %d write %d: rc %d detail %u", round, write, d.rc,
					 io->detail);
			else if (!write && memcmp(w->a->p, w->want, BIG))
				snprintf(w->fail, sizeof(w->fail), "round %d: wrong bytes", round);
			done_destroy(&d);
		}
	}
	free(io);
	return NULL;
}

START_TEST(test_submit_concurrent)
{
	struct rig r;
	uint64_t src;
	struct alloc a[NTHREADS];
	struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	struct kv_fast_stats st;

	rig_open(&r, "lz4", KVFS_FAKE_PLUGIN, BIG, 101, 0, 0);
	src = write_file(r.fs, "src", r.data, BIG);
	for (int i = 0; i < NTHREADS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "dst%d", i);
		alloc_new(&a[i], BIG, 0);
		w[i] = (struct worker){ r.fs, src, mkfile(r.fs, name), &a[i], r.data, "" };
	}
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_msg(!w[i].fail[0], "worker %d: %s", i, w[i].fail);
	for (int i = 0; i < NTHREADS; i++)
		expect_file(r.fs, w[i].dst, r.data, BIG);
	st = fstats(r.fs);
	ck_assert_uint_eq(st.requests, NTHREADS * 4);
	ck_assert_uint_eq(st.errors, 0);
	ck_assert_uint_eq(st.read_bytes, (uint64_t)NTHREADS * 2 * BIG);
	ck_assert_uint_eq(st.write_bytes, (uint64_t)NTHREADS * 2 * BIG);
	ck_assert_uint_eq(metric(r.fs, "kvfs_gpu_mappings"), NTHREADS);
	rig_close(&r);
	for (int i = 0; i < NTHREADS; i++)
		alloc_free(&a[i]);
}
END_TEST

START_TEST(test_close_finishes_queued)
{
	struct rig r;
	uint64_t src;
	struct alloc a;
	struct kvfs_gpu_io *io[NTHREADS];
	struct done_rec d[NTHREADS];

	rig_open(&r, "none", KVFS_FAKE_PLUGIN, BIG, 111, 0, 0);
	src = write_file(r.fs, "src", r.data, BIG);
	alloc_new(&a, (size_t)NTHREADS * BIG, 0);
	for (int i = 0; i < NTHREADS; i++) {
		io[i] = io_new(&a);
		seg_add(io[i], 0, (uint64_t)i * BIG, BIG);
		done_init(&d[i]);
		ck_assert_int_eq(kv_fast_submit(fast_of(r.fs), src, RD, 0, io[i], on_done, &d[i]),
				 0);
	}
	/* Closing finishes the queued requests first. */
	close_fs(r.fs);
	r.fs = NULL;
	{
		/* A burst is spread over the fast path's threads, not queued
		 * behind one. */
		int distinct = 0;
		for (int i = 0; i < NTHREADS; i++) {
			int seen = 0;
			for (int j = 0; j < i; j++)
				seen |= pthread_equal(d[i].thread, d[j].thread);
			distinct += !seen;
		}
		ck_assert_msg(distinct > 1, "%d requests ran on %d thread(s)", NTHREADS, distinct);
	}
	for (int i = 0; i < NTHREADS; i++) {
		ck_assert_int_eq(d[i].calls, 1);
		ck_assert_int_eq(d[i].rc, 0);
		ck_assert_uint_eq(io[i]->bytes_done, BIG);
		expect_bytes(a.p + (size_t)i * BIG, r.data, BIG, "GPU_READ finished by close");
		done_destroy(&d[i]);
		free(io[i]);
	}
	alloc_free(&a);
	rig_close(&r);
}
END_TEST

static Suite *gpu_suite(void)
{
	Suite *s = suite_create("gpu");
	TCase *tc = kvtest_tcase(s, "backend", 30);

	tcase_add_test(tc, test_spec_off);
	tcase_add_test(tc, test_missing_plugin_sticky);
	tcase_add_test(tc, test_not_a_plugin);
	tcase_add_test(tc, test_fake_start);
	tcase_add_test(tc, test_register);

	tc = kvtest_tcase(s, "maps", 30);
	tcase_add_test(tc, test_map_cache);
	tcase_add_test(tc, test_map_bad_handle);
	tcase_add_test(tc, test_reap_refs_idle);
	tcase_add_test(tc, test_reap_exited_client);
	tcase_add_test(tc, test_map_concurrent);

	tc = kvtest_tcase(s, "lanes", 30);
	tcase_add_test(tc, test_lanes);

	tc = kvtest_tcase(s, "fastpath", 120);
	tcase_add_loop_test(tc, test_read_segments, 0, 3);
	tcase_add_test(tc, test_read_cold_then_tier);
	tcase_add_test(tc, test_read_cold_direct);
	tcase_add_loop_test(tc, test_write_roundtrip, 0, 2);
	tcase_add_test(tc, test_write_past_eof);
	tcase_add_test(tc, test_read_buffered);

	tc = kvtest_tcase(s, "errors", 60);
	tcase_add_test(tc, test_errors_header);
	tcase_add_test(tc, test_errors_ranges);
	tcase_add_test(tc, test_errors_target);
	tcase_add_test(tc, test_errors_no_backend);
	tcase_add_test(tc, test_copy_failure);
	tcase_add_test(tc, test_write_enospc);

	tc = kvtest_tcase(s, "query", 30);
	tcase_add_test(tc, test_query);

	tc = kvtest_tcase(s, "submit", 120);
	tcase_add_test(tc, test_submit_inline);
	tcase_add_test(tc, test_submit_async);
	tcase_add_test(tc, test_submit_concurrent);
	tcase_add_test(tc, test_close_finishes_queued);
	return s;
}

int main(void) { return kvtest_run(gpu_suite, "gpu"); }
