/* SPDX-License-Identifier: Apache-2.0 */
/* libkvfs-gpu-fake.so: a GPU backend plugin for tests on machines without a
 * GPU. "Device memory" is a shared file: the IPC handle holds its path
 * (NUL-terminated), importing it maps the file, and copies are memcpy.
 * It exercises everything of the fast path but the DMA itself.
 *
 * KVFS_FAKE_GPU_FAIL_COPY=1 in the daemon's environment makes every copy
 * fail (the error path of a broken device).
 *
 * For tests only: any client names any file as its allocation, and the
 * daemon, often root, maps it read-write. It is marked test-only
 * (KV_GPU_PLUGIN_TEST_ONLY), and kvfs refuses to load it on a mount with
 * allow_other, where clients are other users. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu_plugin.h"
#include "kvfs/ioctl.h"

#define FAKE_UUID "kvfs-fake-gpu-00"

static __thread char last[256];

struct fmap {
	void *base;
	size_t len;
	struct fmap *next;
};
static struct fmap *maps;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int fail_copies(void)
{
	const char *e = getenv("KVFS_FAKE_GPU_FAIL_COPY");
	return e && *e == '1';
}

static int fake_init(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return 1;
}

static int fake_uuid(int dev, uint8_t uuid[16])
{
	if (dev != 0)
		return -ENODEV;
	memcpy(uuid, FAKE_UUID, 16);
	return 0;
}

static int fake_register(void *p, size_t len)
{
	(void)p;
	(void)len;
	return 0;
}

static void fake_unregister(void *p) { (void)p; }
static void *fake_alloc(size_t len) { return malloc(len); }
static void fake_free(void *p) { free(p); }

static int fake_open(int dev, const uint8_t handle[64], void **base, uint64_t *size, char *err,
		     size_t errlen)
{
	char path[65];
	struct stat st;
	struct fmap *m;
	int fd;

	(void)dev;
	memcpy(path, handle, 64);
	path[64] = 0;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || st.st_size == 0) {
		snprintf(err, errlen, "fake IPC handle %.64s: %s", path,
			 fd < 0 ? strerror(errno) : "empty");
		if (fd >= 0)
			close(fd);
		return -EBADF;
	}
	*base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	m = malloc(sizeof(*m));
	if (*base == MAP_FAILED || !m) {
		snprintf(err, errlen, "fake IPC handle %.64s: cannot map", path);
		if (*base != MAP_FAILED)
			munmap(*base, (size_t)st.st_size);
		free(m);
		return -EBADF;
	}
	*size = (uint64_t)st.st_size;
	pthread_mutex_lock(&lock);
	*m = (struct fmap){ *base, (size_t)st.st_size, maps };
	maps = m;
	pthread_mutex_unlock(&lock);
	return 0;
}

static int fake_close(int dev, void *base)
{
	struct fmap **pp, *m = NULL;

	(void)dev;
	pthread_mutex_lock(&lock);
	for (pp = &maps; *pp; pp = &(*pp)->next)
		if ((*pp)->base == base) {
			m = *pp;
			*pp = m->next;
			break;
		}
	pthread_mutex_unlock(&lock);
	if (!m)
		return -EINVAL;
	munmap(m->base, m->len);
	free(m);
	return 0;
}

static int fake_obj_new(int dev, void **obj)
{
	(void)dev;
	*obj = malloc(1);
	return *obj ? 0 : -ENOMEM;
}

static void fake_obj_free(int dev, void *obj)
{
	(void)dev;
	free(obj);
}

static int fake_record(int dev, void *ev, void *stream)
{
	(void)dev;
	(void)ev;
	(void)stream;
	return 0;
}

static int fake_sync(int dev, void *obj)
{
	(void)dev;
	(void)obj;
	return 0;
}

static int fake_copy(int dev, void *stream, void *dst, const void *src, size_t n)
{
	(void)dev;
	(void)stream;
	if (fail_copies()) {
		snprintf(last, sizeof(last), "fake copy failure (KVFS_FAKE_GPU_FAIL_COPY)");
		return -EIO;
	}
	memcpy(dst, src, n);
	return 0;
}

static const char *fake_last(void) { return last; }

static const struct kv_gpu_plugin fake = {
	.abi = KV_GPU_PLUGIN_ABI,
	.vendor = KVFS_GPU_CUDA,
	.name = "fake",
	.init = fake_init,
	.device_uuid = fake_uuid,
	.host_register = fake_register,
	.host_unregister = fake_unregister,
	.host_register_ro = fake_register,
	.host_alloc = fake_alloc,
	.host_free = fake_free,
	.ipc_open = fake_open,
	.ipc_close = fake_close,
	.stream_new = fake_obj_new,
	.stream_free = fake_obj_free,
	.event_new = fake_obj_new,
	.event_free = fake_obj_free,
	.event_record = fake_record,
	.event_sync = fake_sync,
	.copy_h2d = fake_copy,
	.copy_d2h = fake_copy,
	.stream_sync = fake_sync,
	.last_error = fake_last,
};

extern const int kvfs_gpu_plugin_test_only;
__attribute__((visibility("default"))) const int kvfs_gpu_plugin_test_only = 1;

const struct kv_gpu_plugin *kvfs_gpu_plugin_v1(void);
__attribute__((visibility("default"))) const struct kv_gpu_plugin *kvfs_gpu_plugin_v1(void)
{
	return &fake;
}
