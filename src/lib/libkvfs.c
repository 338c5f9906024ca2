/* SPDX-License-Identifier: Apache-2.0 */
/* libkvfs: device pointers -> kvfs GPU ioctls (include/kvfs/kvfs.h).
 *
 * Three parts, top to bottom: the GPU runtime, reached through dlopen (one
 * small table per vendor, cu_* and hip_*); the allocation cache, which keeps
 * the IPC handle exported for each allocation; and the request builder,
 * which groups ranges by allocation into ioctls of kvfs/ioctl.h. */
#include <kvfs/kvfs.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* ---- errors ---------------------------------------------------------- */

static __thread uint32_t last_detail;
static __thread char last_msg[320];

static int lib_fail(int err, uint32_t detail, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record why this thread's call failed; returns -1 with errno = err. */
static int lib_fail(int err, uint32_t detail, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	last_detail = detail;
	errno = err;
	return -1;
}

uint32_t kvfs_last_detail(void) { return last_detail; }

const char *kvfs_last_error(void) { return last_msg; }

static const struct {
	uint32_t detail;
	const char *text;
} detail_text[] = {
	{ KVFS_E_OK, "KVFS_E_OK: no detail" },
	{ KVFS_E_VERSION, "KVFS_E_VERSION: the daemon speaks another ioctl ABI version" },
	{ KVFS_E_SIZE, "KVFS_E_SIZE: struct size mismatch between libkvfs and the daemon" },
	{ KVFS_E_ARG, "KVFS_E_ARG: flags, segment count or vendor out of range" },
	{ KVFS_E_FILE_RANGE,
	  "KVFS_E_FILE_RANGE: range beyond the end of the file, or offset overflow" },
	{ KVFS_E_DEV_RANGE, "KVFS_E_DEV_RANGE: range beyond the GPU allocation" },
	{ KVFS_E_NO_BACKEND, "KVFS_E_NO_BACKEND: the daemon runs no GPU backend" },
	{ KVFS_E_VENDOR,
	  "KVFS_E_VENDOR: the memory belongs to another GPU vendor than the daemon's" },
	{ KVFS_E_DEVICE, "KVFS_E_DEVICE: the daemon sees no device with this UUID" },
	{ KVFS_E_HANDLE, "KVFS_E_HANDLE: the daemon could not open the IPC memory handle" },
	{ KVFS_E_ACCESS, "KVFS_E_ACCESS: the file is not open for this direction" },
	{ KVFS_E_COPY, "KVFS_E_COPY: the GPU copy failed in the daemon" },
	{ KVFS_E_IO, "KVFS_E_IO: reading or writing the file failed" },
	{ KVFS_E_LIB_RUNTIME, "KVFS_E_LIB_RUNTIME: the GPU runtime library could not be loaded" },
	{ KVFS_E_LIB_POINTER, "KVFS_E_LIB_POINTER: not device memory the GPU runtime knows" },
	{ KVFS_E_LIB_EXPORT,
	  "KVFS_E_LIB_EXPORT: the allocation cannot be exported as an IPC handle" },
};

const char *kvfs_strerror_detail(uint32_t detail)
{
	for (size_t i = 0; i < sizeof(detail_text) / sizeof(detail_text[0]); i++)
		if (detail_text[i].detail == detail)
			return detail_text[i].text;
	return "unknown kvfs error detail";
}

/* ---- the GPU runtime ------------------------------------------------- */

/* An allocation as the daemon needs it. id is the runtime's buffer id,
 * unique per allocation for the life of the process: an allocation that
 * lands where a freed one was gets a new id, so it never meets the freed
 * one's cache entry. */
struct kv_alloc {
	uint64_t id;
	uint64_t base;
	uint64_t size;
	uint8_t uuid[16];
	uint8_t handle[KVFS_IPC_HANDLE_SIZE];
};

struct kv_runtime {
	uint32_t vendor;   /* KVFS_GPU_* */
	int (*load)(void); /* dlopen, dlsym, init */
	int (*buffer_id)(uint64_t p, uint64_t *id);
	int (*describe)(uint64_t p, struct kv_alloc *a); /* all but id */
};

struct kv_sym {
	void **slot;
	const char *name;
	const char *alt; /* tried when name is missing, or NULL */
};

static int load_syms(void *lib, const char *libname, const struct kv_sym *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		void *f = dlsym(lib, s[i].name);

		if (!f && s[i].alt)
			f = dlsym(lib, s[i].alt);
		if (!f)
			return lib_fail(ENODEV, KVFS_E_LIB_RUNTIME, "%s lacks %s", libname,
					s[i].name);
		*s[i].slot = f;
	}
	return 0;
}

static const char export_hint[] =
	"not cudaMalloc/hipMalloc memory (PyTorch: set PYTORCH_CUDA_ALLOC_CONF="
	"expandable_segments:False and do not use the cudaMallocAsync backend)";

/* The CUDA driver API (cuda.h), declared here so that libkvfs builds and
 * runs without the CUDA toolkit. */
typedef int CUresult;                   /* CUresult; CUDA_SUCCESS is 0 */
typedef unsigned long long CUdeviceptr; /* CUdeviceptr_v2 */
typedef int CUdevice;                   /* CUdevice_v1 */
typedef void *CUcontext;                /* CUcontext */
enum {                                  /* CUpointer_attribute */
       CU_POINTER_ATTRIBUTE_CONTEXT = 1,
       CU_POINTER_ATTRIBUTE_BUFFER_ID = 7,
       CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9,
       CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE = 10,
};

static struct {
	CUresult (*Init)(unsigned int flags); /* cuInit */
	CUresult (*PointerGetAttribute)(void *data, int attr,
					CUdeviceptr p); /* cuPointerGetAttribute */
	CUresult (*MemGetAddressRange)(CUdeviceptr *base, size_t *size,
				       CUdeviceptr p); /* cuMemGetAddressRange_v2 */
	CUresult (*IpcGetMemHandle)(void *handle,
				    CUdeviceptr p); /* cuIpcGetMemHandle (CUipcMemHandle *) */
	CUresult (*DeviceGet)(CUdevice *dev, int ordinal);   /* cuDeviceGet */
	CUresult (*DeviceGetUuid)(void *uuid, CUdevice dev); /* cuDeviceGetUuid_v2 (CUuuid *) */
	CUresult (*CtxPushCurrent)(CUcontext ctx);           /* cuCtxPushCurrent_v2 */
	CUresult (*CtxPopCurrent)(CUcontext *ctx);           /* cuCtxPopCurrent_v2 */
	CUresult (*GetErrorName)(CUresult err, const char **name); /* cuGetErrorName */
} cu;

static int cu_fail(CUresult r, uint32_t detail, const char *call, uint64_t p)
{
	const char *name = NULL;

	if (cu.GetErrorName(r, &name) != 0 || !name)
		name = "unknown CUDA error";
	return lib_fail(EINVAL, detail, "%s(0x%llx): %s%s%s", call, (unsigned long long)p, name,
			detail == KVFS_E_LIB_EXPORT ? "; " : "",
			detail == KVFS_E_LIB_EXPORT ? export_hint : "");
}

static int cu_load(void)
{
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	const struct kv_sym syms[] = {
		{ (void **)&cu.Init, "cuInit", NULL },
		{ (void **)&cu.PointerGetAttribute, "cuPointerGetAttribute", NULL },
		{ (void **)&cu.MemGetAddressRange, "cuMemGetAddressRange_v2", NULL },
		{ (void **)&cu.IpcGetMemHandle, "cuIpcGetMemHandle", NULL },
		{ (void **)&cu.DeviceGet, "cuDeviceGet", NULL },
		{ (void **)&cu.DeviceGetUuid, "cuDeviceGetUuid_v2", "cuDeviceGetUuid" },
		{ (void **)&cu.CtxPushCurrent, "cuCtxPushCurrent_v2", NULL },
		{ (void **)&cu.CtxPopCurrent, "cuCtxPopCurrent_v2", NULL },
		{ (void **)&cu.GetErrorName, "cuGetErrorName", NULL },
	};
	CUresult r;

	if (!lib)
		return lib_fail(ENODEV, KVFS_E_LIB_RUNTIME, "cannot load the CUDA driver: %s",
				dlerror());
	if (load_syms(lib, "libcuda.so.1", syms, sizeof(syms) / sizeof(syms[0])) < 0) {
		dlclose(lib);
		return -1;
	}
	/* The engine's runtime has initialised the driver already; cuInit is
	 * then a no-op, and otherwise it gives the reason CUDA cannot work. */
	r = cu.Init(0);
	if (r != 0) {
		const char *name = NULL;

		cu.GetErrorName(r, &name);
		lib_fail(ENODEV, KVFS_E_LIB_RUNTIME, "cuInit: %s",
			 name ? name : "unknown CUDA error");
		dlclose(lib);
		return -1;
	}
	return 0;
}

static int cu_buffer_id(uint64_t p, uint64_t *id)
{
	unsigned long long v = 0;
	CUresult r = cu.PointerGetAttribute(&v, CU_POINTER_ATTRIBUTE_BUFFER_ID, p);

	if (r != 0)
		return cu_fail(r, KVFS_E_LIB_POINTER, "cuPointerGetAttribute(BUFFER_ID)", p);
	*id = v;
	return 0;
}

static int cu_describe_current(uint64_t p, struct kv_alloc *a)
{
	CUdeviceptr base = 0;
	size_t size = 0;
	int ordinal = -1;
	CUdevice dev;
	CUresult r;

	if ((r = cu.MemGetAddressRange(&base, &size, p)) != 0)
		return cu_fail(r, KVFS_E_LIB_POINTER, "cuMemGetAddressRange", p);
	if ((r = cu.PointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p)) != 0)
		return cu_fail(r, KVFS_E_LIB_POINTER, "cuPointerGetAttribute(DEVICE_ORDINAL)", p);
	if ((r = cu.DeviceGet(&dev, ordinal)) != 0)
		return cu_fail(r, KVFS_E_LIB_POINTER, "cuDeviceGet", p);
	if ((r = cu.DeviceGetUuid(a->uuid, dev)) != 0)
		return cu_fail(r, KVFS_E_LIB_POINTER, "cuDeviceGetUuid", p);
	if ((r = cu.IpcGetMemHandle(a->handle, base)) != 0)
		return cu_fail(r, KVFS_E_LIB_EXPORT, "cuIpcGetMemHandle", base);
	a->base = base;
	a->size = size;
	return 0;
}

static int cu_describe(uint64_t p, struct kv_alloc *a)
{
	CUcontext ctx = NULL;
	int ipc_ok = 0;
	int rc;

	/* Asked first for the clear message; an old driver that does not know
	 * the attribute leaves it to cuIpcGetMemHandle to refuse. */
	if (cu.PointerGetAttribute(&ipc_ok, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, p) == 0 &&
	    !ipc_ok)
		return lib_fail(EINVAL, KVFS_E_LIB_EXPORT, "0x%llx has no CUDA IPC handle: %s",
				(unsigned long long)p, export_hint);
	if (cu.PointerGetAttribute(&ctx, CU_POINTER_ATTRIBUTE_CONTEXT, p) != 0 || !ctx)
		return cu_describe_current(p, a);
	/* Work in the allocation's own context: the thread's current one may
	 * belong to another device. */
	if (cu.CtxPushCurrent(ctx) != 0)
		return cu_describe_current(p, a);
	rc = cu_describe_current(p, a);
	cu.CtxPopCurrent(&ctx);
	return rc;
}

/* The HIP runtime API (hip_runtime_api.h), declared here likewise. */
typedef int hipError_t; /* hipError_t; hipSuccess is 0 */
enum {                  /* hipPointer_attribute: the CUDA numbers */
       HIP_POINTER_ATTRIBUTE_BUFFER_ID = 7,
       HIP_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9,
};

static struct {
	hipError_t (*PointerGetAttribute)(void *data, int attr, void *p); /* hipPointerGetAttribute */
	hipError_t (*MemGetAddressRange)(void **base, size_t *size,
					 void *p); /* hipMemGetAddressRange */
	hipError_t (*IpcGetMemHandle)(void *handle,
				      void *p); /* hipIpcGetMemHandle (hipIpcMemHandle_t *) */
	hipError_t (*DeviceGet)(int *dev, int ordinal);   /* hipDeviceGet */
	hipError_t (*DeviceGetUuid)(void *uuid, int dev); /* hipDeviceGetUuid (hipUUID *) */
	const char *(*GetErrorName)(hipError_t err);      /* hipGetErrorName */
} hip;

static int hip_fail(hipError_t r, uint32_t detail, const char *call, uint64_t p)
{
	const char *name = hip.GetErrorName(r);

	return lib_fail(EINVAL, detail, "%s(0x%llx): %s%s%s", call, (unsigned long long)p,
			name ? name : "unknown HIP error", detail == KVFS_E_LIB_EXPORT ? "; " : "",
			detail == KVFS_E_LIB_EXPORT ? export_hint : "");
}

static int hip_load(void)
{
	/* Prefer a copy the engine has loaded already (PyTorch ships its own):
	 * two HIP runtimes in one process do not share allocations. */
	static const char *const names[] = { "libamdhip64.so", "libamdhip64.so.7",
					     "libamdhip64.so.6", "libamdhip64.so.5" };
	const struct kv_sym syms[] = {
		{ (void **)&hip.PointerGetAttribute, "hipPointerGetAttribute", NULL },
		{ (void **)&hip.MemGetAddressRange, "hipMemGetAddressRange", NULL },
		{ (void **)&hip.IpcGetMemHandle, "hipIpcGetMemHandle", NULL },
		{ (void **)&hip.DeviceGet, "hipDeviceGet", NULL },
		{ (void **)&hip.DeviceGetUuid, "hipDeviceGetUuid", NULL },
		{ (void **)&hip.GetErrorName, "hipGetErrorName", NULL },
	};
	const size_t nnames = sizeof(names) / sizeof(names[0]);
	void *lib = NULL;

	for (size_t i = 0; !lib && i < nnames; i++)
		lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
	for (size_t i = 0; !lib && i < nnames; i++)
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return lib_fail(ENODEV, KVFS_E_LIB_RUNTIME, "cannot load the HIP runtime: %s",
				dlerror());
	if (load_syms(lib, "libamdhip64.so", syms, sizeof(syms) / sizeof(syms[0])) < 0) {
		dlclose(lib);
		return -1;
	}
	return 0;
}

static int hip_buffer_id(uint64_t p, uint64_t *id)
{
	unsigned long long v = 0;
	hipError_t r = hip.PointerGetAttribute(&v, HIP_POINTER_ATTRIBUTE_BUFFER_ID,
					       (void *)(uintptr_t)p);

	if (r != 0)
		return hip_fail(r, KVFS_E_LIB_POINTER, "hipPointerGetAttribute(BUFFER_ID)", p);
	*id = v;
	return 0;
}

static int hip_describe(uint64_t p, struct kv_alloc *a)
{
	void *ptr = (void *)(uintptr_t)p;
	void *base = NULL;
	size_t size = 0;
	int ordinal = -1, dev;
	hipError_t r;

	if ((r = hip.MemGetAddressRange(&base, &size, ptr)) != 0)
		return hip_fail(r, KVFS_E_LIB_POINTER, "hipMemGetAddressRange", p);
	if ((r = hip.PointerGetAttribute(&ordinal, HIP_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr)) != 0)
		return hip_fail(r, KVFS_E_LIB_POINTER, "hipPointerGetAttribute(DEVICE_ORDINAL)", p);
	if ((r = hip.DeviceGet(&dev, ordinal)) != 0)
		return hip_fail(r, KVFS_E_LIB_POINTER, "hipDeviceGet", p);
	if ((r = hip.DeviceGetUuid(a->uuid, dev)) != 0)
		return hip_fail(r, KVFS_E_LIB_POINTER, "hipDeviceGetUuid", p);
	if ((r = hip.IpcGetMemHandle(a->handle, base)) != 0)
		return hip_fail(r, KVFS_E_LIB_EXPORT, "hipIpcGetMemHandle", (uintptr_t)base);
	a->base = (uintptr_t)base;
	a->size = size;
	return 0;
}

static const struct kv_runtime runtimes[] = {
	{ KVFS_GPU_CUDA, cu_load, cu_buffer_id, cu_describe },
	{ KVFS_GPU_HIP, hip_load, hip_buffer_id, hip_describe },
};

/* Loaded once per process, for the backend the first daemon asked reports:
 * a process drives one GPU vendor. */
static const struct kv_runtime *rt_loaded;
static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct kv_runtime *rt_open(int fd)
{
	struct kvfs_query q;

	if (kvfs_query(fd, &q) < 0)
		return NULL;
	if (q.backend == KVFS_GPU_NONE) {
		lib_fail(ENODEV, KVFS_E_NO_BACKEND, "the kvfs daemon runs no GPU backend");
		return NULL;
	}
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++)
		if (runtimes[i].vendor == q.backend)
			return runtimes[i].load() < 0 ? NULL : &runtimes[i];
	lib_fail(ENODEV, KVFS_E_VENDOR, "the kvfs daemon runs GPU backend %u, unknown to libkvfs",
		 q.backend);
	return NULL;
}

static const struct kv_runtime *rt_get(int fd)
{
	const struct kv_runtime *rt;

	pthread_mutex_lock(&rt_lock);
	if (!rt_loaded)
		rt_loaded = rt_open(fd);
	rt = rt_loaded;
	pthread_mutex_unlock(&rt_lock);
	return rt;
}

/* ---- the allocation cache -------------------------------------------- */

/* Exporting a handle costs a driver round trip; engines reuse a few large
 * allocations, so a small table replaced round robin serves them. */
#define KV_CACHE_SLOTS 64

static struct kv_alloc cache[KV_CACHE_SLOTS]; /* id 0: empty */
static unsigned cache_next;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static int cache_get(uint64_t id, struct kv_alloc *a)
{
	int found = 0;

	pthread_mutex_lock(&cache_lock);
	for (unsigned i = 0; i < KV_CACHE_SLOTS && !found; i++)
		if (cache[i].id == id) {
			*a = cache[i];
			found = 1;
		}
	pthread_mutex_unlock(&cache_lock);
	return found;
}

static void cache_put(const struct kv_alloc *a)
{
	pthread_mutex_lock(&cache_lock);
	for (unsigned i = 0; i < KV_CACHE_SLOTS; i++)
		if (cache[i].id == a->id)
			goto out; /* another thread was first */
	cache[cache_next] = *a;
	cache_next = (cache_next + 1) % KV_CACHE_SLOTS;
out:
	pthread_mutex_unlock(&cache_lock);
}

static int kv_resolve(const struct kv_runtime *rt, uint64_t p, struct kv_alloc *a)
{
	uint64_t id;

	if (rt->buffer_id(p, &id) < 0)
		return -1;
	if (id != 0 && cache_get(id, a))
		return 0;
	if (rt->describe(p, a) < 0)
		return -1;
	a->id = id;
	if (id != 0)
		cache_put(a);
	return 0;
}

/* ---- requests -------------------------------------------------------- */

int kvfs_query(int fd, struct kvfs_query *q)
{
	char buf[64];

	memset(q, 0, sizeof(*q));
	q->abi_version = KVFS_ABI_VERSION;
	q->struct_size = sizeof(*q);
	if (ioctl(fd, KVFS_IOC_QUERY, q) < 0) {
		int err = errno;

		return lib_fail(err, KVFS_E_OK, "QUERY: %s%s", strerror_r(err, buf, sizeof(buf)),
				err == ENOTTY ? " (not a file on a kvfs mount)" : "");
	}
	return 0;
}

static int io_fail(unsigned long cmd, const struct kvfs_gpu_io *io, const int *vec_of_seg, int err)
{
	const char *op = cmd == KVFS_IOC_GPU_READ ? "GPU_READ" : "GPU_WRITE";
	char buf[64];

	if (err == ENOTTY)
		return lib_fail(err, KVFS_E_OK, "%s: not a file on a kvfs mount", op);
	/* The daemon copies the struct back on failure; detail 0 means it
	 * did not get that far. */
	if (io->detail == KVFS_E_OK || io->error_seg >= io->nseg)
		return lib_fail(err, io->detail, "%s: %s", op, strerror_r(err, buf, sizeof(buf)));
	return lib_fail(err, io->detail, "%s: %s (range %d): %s", op,
			kvfs_strerror_detail(io->detail), vec_of_seg[io->error_seg],
			strerror_r(err, buf, sizeof(buf)));
}

/* Issue the ranges of v that lie in allocation g, KVFS_GPU_MAX_SEGS per ioctl. */
static int io_send(int fd, unsigned long cmd, uint32_t vendor, const struct kv_alloc *a,
		   const struct kvfs_gpu_vec *v, const int *alloc_of, int n, int g, uint64_t *total)
{
	struct kvfs_gpu_io io;
	int vec_of_seg[KVFS_GPU_MAX_SEGS];
	int i = 0;

	for (;;) {
		memset(&io, 0, sizeof(io));
		io.abi_version = KVFS_ABI_VERSION;
		io.struct_size = sizeof(io);
		io.vendor = vendor;
		memcpy(io.handle, a->handle, sizeof(io.handle));
		memcpy(io.device_uuid, a->uuid, sizeof(io.device_uuid));
		io.alloc_size = a->size;
		for (; i < n && io.nseg < KVFS_GPU_MAX_SEGS; i++) {
			if (alloc_of[i] != g)
				continue;
			vec_of_seg[io.nseg] = i;
			io.seg[io.nseg++] = (struct kvfs_gpu_seg){
				.file_off = v[i].file_off,
				.dev_off = (uintptr_t)v[i].dev_ptr - a->base,
				.len = v[i].len,
			};
		}
		if (io.nseg == 0)
			return 0;
		if (ioctl(fd, cmd, &io) < 0)
			return io_fail(cmd, &io, vec_of_seg, errno);
		*total += io.bytes_done;
	}
}

/* Find each range's allocation, check the range lies in it, then send the
 * ranges allocation by allocation. */
static ssize_t gpu_io(int fd, unsigned long cmd, const struct kvfs_gpu_vec *v, int n)
{
	const struct kv_runtime *rt;
	struct kv_alloc *allocs = NULL, a;
	int *alloc_of = NULL;
	int nallocs = 0, rc = -1;
	uint64_t total = 0;

	if (n < 0 || (n > 0 && !v))
		return lib_fail(EINVAL, KVFS_E_ARG, "bad range vector (n = %d)", n);
	if (n == 0)
		return 0;
	if (!(rt = rt_get(fd)))
		return -1;
	if (!(alloc_of = calloc((size_t)n, sizeof(*alloc_of))))
		return lib_fail(ENOMEM, KVFS_E_OK, "out of memory");
	for (int i = 0; i < n; i++) {
		uint64_t p = (uintptr_t)v[i].dev_ptr;
		int g;

		alloc_of[i] = -1;
		if (v[i].len == 0)
			continue;
		if (kv_resolve(rt, p, &a) < 0)
			goto out;
		if (v[i].len > a.size - (p - a.base)) {
			lib_fail(EFAULT, KVFS_E_DEV_RANGE,
				 "range %d (%zu bytes at 0x%llx) runs past its allocation (%llu bytes at 0x%llx)",
				 i, v[i].len, (unsigned long long)p, (unsigned long long)a.size,
				 (unsigned long long)a.base);
			goto out;
		}
		/* By base too: a runtime without buffer ids gives all id 0. */
		for (g = 0; g < nallocs && (allocs[g].id != a.id || allocs[g].base != a.base); g++)
			;
		if (g == nallocs) {
			struct kv_alloc *more = realloc(allocs,
							(size_t)(nallocs + 1) * sizeof(*allocs));

			if (!more) {
				lib_fail(ENOMEM, KVFS_E_OK, "out of memory");
				goto out;
			}
			allocs = more;
			allocs[nallocs++] = a;
		}
		alloc_of[i] = g;
	}
	for (int g = 0; g < nallocs; g++)
		if (io_send(fd, cmd, rt->vendor, &allocs[g], v, alloc_of, n, g, &total) < 0)
			goto out;
	rc = 0;
out:
	free(alloc_of);
	free(allocs);
	return rc < 0 ? -1 : (ssize_t)total;
}

ssize_t kvfs_gpu_readv(int fd, const struct kvfs_gpu_vec *v, int n)
{
	return gpu_io(fd, KVFS_IOC_GPU_READ, v, n);
}

ssize_t kvfs_gpu_writev(int fd, const struct kvfs_gpu_vec *v, int n)
{
	return gpu_io(fd, KVFS_IOC_GPU_WRITE, v, n);
}

ssize_t kvfs_gpu_read(int fd, void *dev_ptr, size_t len, uint64_t file_off)
{
	struct kvfs_gpu_vec v = { dev_ptr, file_off, len };

	return gpu_io(fd, KVFS_IOC_GPU_READ, &v, 1);
}

ssize_t kvfs_gpu_write(int fd, const void *dev_ptr, size_t len, uint64_t file_off)
{
	/* The vector holds a non-const pointer for both directions. */
	struct kvfs_gpu_vec v = { (void *)(uintptr_t)dev_ptr, file_off, len };

	return gpu_io(fd, KVFS_IOC_GPU_WRITE, &v, 1);
}
