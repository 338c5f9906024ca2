/* SPDX-License-Identifier: Apache-2.0 */
/* A kvfs GPU backend plugin (src/gpu/gpu_plugin.h), written once against the
 * HIP runtime API and built twice: by hipcc with KVFS_PLUGIN_HIP into
 * libkvfs-gpu-hip.so, and by nvcc with KVFS_PLUGIN_CUDA into
 * libkvfs-gpu-cuda.so, where hip_cuda.h maps the HIP names onto CUDA.
 *
 * Plain C in C++ clothing (C++20 only for the designated initializers):
 * no exceptions, no RTTI, no static constructors of its own, so nothing can
 * throw across the C table. Every runtime error becomes a negative errno,
 * with the runtime's message kept per thread for last_error(). */
#if defined(KVFS_PLUGIN_HIP)
#include <hip/hip_runtime_api.h>
#define KV_GPU_VENDOR KVFS_GPU_HIP
#define KV_GPU_NAME "hip"
#elif defined(KVFS_PLUGIN_CUDA)
#include "hip_cuda.h"
#define KV_GPU_VENDOR KVFS_GPU_CUDA
#define KV_GPU_NAME "cuda"
#else
#error "build with -DKVFS_PLUGIN_HIP or -DKVFS_PLUGIN_CUDA"
#endif

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gpu_plugin.h"
#include "kvfs/ioctl.h"

static_assert(sizeof(hipIpcMemHandle_t) == KVFS_IPC_HANDLE_SIZE, "IPC handle size");
static_assert(sizeof(hipUUID) == 16, "device UUID size");

static thread_local char kv_gpu_errbuf[256];
/* The device this thread last selected. Only this plugin touches the
 * runtime in the daemon, so nothing else can change it behind our back. */
static thread_local int kv_gpu_curdev = -1;

static int kv_gpu_errno(hipError_t e)
{
	switch (e) {
	case hipErrorInvalidValue:
		return -EINVAL;
	case hipErrorOutOfMemory:
		return -ENOMEM;
	case hipErrorNoDevice:
	case hipErrorInvalidDevice:
	case hipErrorInsufficientDriver:
		return -ENODEV;
	case hipErrorNotSupported:
		return -EOPNOTSUPP;
	case hipErrorHostMemoryAlreadyRegistered:
		return -EEXIST;
	case hipErrorHostMemoryNotRegistered:
		return -ENOENT;
	default:
		return -EIO;
	}
}

/* Records a failed call for last_error() and returns its errno. */
static int kv_gpu_fail(hipError_t e, const char *call)
{
	snprintf(kv_gpu_errbuf, sizeof(kv_gpu_errbuf), "%s: %s (%d)", call,
		 hipGetErrorString(e), (int)e);
	return kv_gpu_errno(e);
}

static int kv_gpu_check(hipError_t e, const char *call)
{
	return e == hipSuccess ? 0 : kv_gpu_fail(e, call);
}

static int kv_gpu_select(int dev)
{
	if (dev == kv_gpu_curdev)
		return 0;
	int rc = kv_gpu_check(hipSetDevice(dev), "hipSetDevice");
	if (rc == 0)
		kv_gpu_curdev = dev;
	return rc;
}

static void kv_gpu_copy_err(char *err, size_t errlen)
{
	if (errlen)
		snprintf(err, errlen, "%s", kv_gpu_errbuf);
}

static int kv_gpu_init(char *err, size_t errlen)
{
	int n = 0;
	int rc = kv_gpu_check(hipGetDeviceCount(&n), "hipGetDeviceCount");

	if (rc < 0) {
		kv_gpu_copy_err(err, errlen);
		return rc;
	}
	return n;
}

static int kv_gpu_device_uuid(int dev, uint8_t uuid[16])
{
	hipDevice_t d = 0;
	hipUUID u;
	int rc = kv_gpu_select(dev);

	if (rc == 0)
		rc = kv_gpu_check(hipDeviceGet(&d, dev), "hipDeviceGet");
	if (rc == 0)
		rc = kv_gpu_check(hipDeviceGetUuid(&u, d), "hipDeviceGetUuid");
	if (rc == 0)
		memcpy(uuid, u.bytes, 16);
	return rc;
}

static int kv_gpu_host_register(void *p, size_t len)
{
	return kv_gpu_check(hipHostRegister(p, len, hipHostRegisterDefault),
			    "hipHostRegister");
}

/* A read-only file mapping: without the flag the runtime asks for write
 * access, which a PROT_READ mapping refuses (and which would dirty the
 * file's pages). */
#ifndef hipHostRegisterReadOnly
#define hipHostRegisterReadOnly 0x08
#endif
static int kv_gpu_host_register_ro(void *p, size_t len)
{
	return kv_gpu_check(hipHostRegister(p, len, hipHostRegisterReadOnly),
			    "hipHostRegister(ReadOnly)");
}

static void kv_gpu_host_unregister(void *p)
{
	kv_gpu_check(hipHostUnregister(p), "hipHostUnregister");
}

static void *kv_gpu_host_alloc(size_t len)
{
	void *p = NULL;

	if (kv_gpu_check(hipHostMalloc(&p, len, hipHostMallocDefault), "hipHostMalloc") < 0)
		return NULL;
	return p;
}

static void kv_gpu_host_free(void *p)
{
	kv_gpu_check(hipHostFree(p), "hipHostFree");
}

/* The size returned is what lies between the mapped pointer and the end
 * of the allocation the runtime reports, so it stays right even if a
 * runtime maps a handle at an offset into its allocation. */
static int kv_gpu_ipc_open(int dev, const uint8_t handle[64], void **base, uint64_t *size,
			   char *err, size_t errlen)
{
	hipIpcMemHandle_t h;
	hipDeviceptr_t p = NULL, rbase = NULL;
	size_t rsize = 0;
	int rc = kv_gpu_select(dev);

	if (rc < 0) {
		kv_gpu_copy_err(err, errlen);
		return rc;
	}
	memcpy(&h, handle, sizeof(h));
	rc = kv_gpu_check(hipIpcOpenMemHandle(&p, h, hipIpcMemLazyEnablePeerAccess),
			  "hipIpcOpenMemHandle");
	if (rc == 0) {
		rc = kv_gpu_check(hipMemGetAddressRange(&rbase, &rsize, p),
				  "hipMemGetAddressRange");
		if (rc < 0)
			(void)hipIpcCloseMemHandle(p);
	}
	if (rc < 0) {
		kv_gpu_copy_err(err, errlen);
		return -EBADF;
	}
	*base = p;
	*size = rsize - (uint64_t)((char *)p - (char *)rbase);
	return 0;
}

static int kv_gpu_ipc_close(int dev, void *base)
{
	int rc = kv_gpu_select(dev);

	return rc < 0 ? rc : kv_gpu_check(hipIpcCloseMemHandle(base), "hipIpcCloseMemHandle");
}

static int kv_gpu_stream_new(int dev, void **stream)
{
	hipStream_t s;
	int rc = kv_gpu_select(dev);

	if (rc == 0)
		rc = kv_gpu_check(hipStreamCreateWithFlags(&s, hipStreamNonBlocking),
				  "hipStreamCreateWithFlags");
	if (rc == 0)
		*stream = s;
	return rc;
}

static void kv_gpu_stream_free(int dev, void *stream)
{
	if (kv_gpu_select(dev) == 0)
		kv_gpu_check(hipStreamDestroy((hipStream_t)stream), "hipStreamDestroy");
}

static int kv_gpu_event_new(int dev, void **event)
{
	hipEvent_t e;
	int rc = kv_gpu_select(dev);

	if (rc == 0)
		rc = kv_gpu_check(hipEventCreateWithFlags(&e, hipEventDisableTiming),
				  "hipEventCreateWithFlags");
	if (rc == 0)
		*event = e;
	return rc;
}

static void kv_gpu_event_free(int dev, void *event)
{
	if (kv_gpu_select(dev) == 0)
		kv_gpu_check(hipEventDestroy((hipEvent_t)event), "hipEventDestroy");
}

static int kv_gpu_event_record(int dev, void *event, void *stream)
{
	int rc = kv_gpu_select(dev);

	return rc < 0 ? rc : kv_gpu_check(hipEventRecord((hipEvent_t)event, (hipStream_t)stream),
					  "hipEventRecord");
}

static int kv_gpu_event_sync(int dev, void *event)
{
	int rc = kv_gpu_select(dev);

	return rc < 0 ? rc : kv_gpu_check(hipEventSynchronize((hipEvent_t)event),
					  "hipEventSynchronize");
}

static int kv_gpu_copy_h2d(int dev, void *stream, void *dst, const void *src, size_t n)
{
	int rc = kv_gpu_select(dev);

	return rc < 0 ? rc : kv_gpu_check(hipMemcpyAsync(dst, src, n, hipMemcpyHostToDevice,
							 (hipStream_t)stream),
					  "hipMemcpyAsync(H2D)");
}

static int kv_gpu_copy_d2h(int dev, void *stream, void *dst, const void *src, size_t n)
{
	int rc = kv_gpu_select(dev);

	return rc < 0 ? rc : kv_gpu_check(hipMemcpyAsync(dst, src, n, hipMemcpyDeviceToHost,
							 (hipStream_t)stream),
					  "hipMemcpyAsync(D2H)");
}

static int kv_gpu_stream_sync(int dev, void *stream)
{
	int rc = kv_gpu_select(dev);

	return rc < 0 ? rc : kv_gpu_check(hipStreamSynchronize((hipStream_t)stream),
					  "hipStreamSynchronize");
}

static const char *kv_gpu_last_error(void)
{
	return kv_gpu_errbuf;
}

static const struct kv_gpu_plugin kv_gpu_table = {
	.abi = KV_GPU_PLUGIN_ABI,
	.vendor = KV_GPU_VENDOR,
	.name = KV_GPU_NAME,
	.init = kv_gpu_init,
	.device_uuid = kv_gpu_device_uuid,
	.host_register = kv_gpu_host_register,
	.host_unregister = kv_gpu_host_unregister,
	.host_register_ro = kv_gpu_host_register_ro,
	.host_alloc = kv_gpu_host_alloc,
	.host_free = kv_gpu_host_free,
	.ipc_open = kv_gpu_ipc_open,
	.ipc_close = kv_gpu_ipc_close,
	.stream_new = kv_gpu_stream_new,
	.stream_free = kv_gpu_stream_free,
	.event_new = kv_gpu_event_new,
	.event_free = kv_gpu_event_free,
	.event_record = kv_gpu_event_record,
	.event_sync = kv_gpu_event_sync,
	.copy_h2d = kv_gpu_copy_h2d,
	.copy_d2h = kv_gpu_copy_d2h,
	.stream_sync = kv_gpu_stream_sync,
	.last_error = kv_gpu_last_error,
};

extern "C" __attribute__((visibility("default"))) const struct kv_gpu_plugin *
kvfs_gpu_plugin_v1(void)
{
	return &kv_gpu_table;
}
