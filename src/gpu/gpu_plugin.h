/* SPDX-License-Identifier: Apache-2.0 */
/* The interface between kvfs and a GPU backend plugin (libkvfs-gpu-*.so),
 * version 2. The daemon links no GPU runtime: it dlopen()s a plugin and
 * calls kvfs_gpu_plugin_v1() for this table (ABI 2 added host_register_ro;
 * plugins are built with the daemon). Plugins are written against
 * the HIP API (kernels/kvfs_gpu.cpp); the CUDA build maps HIP to CUDA
 * through kernels/hip_cuda.h.
 *
 * Every function returns 0 or a negative errno unless said otherwise, may be
 * called from any thread, and acts on the device named by its dev argument
 * (an index below what init returned). "Async" copies are ordered on their
 * stream; an event recorded after them completes when they have. */
#ifndef KV_GPU_PLUGIN_H
#define KV_GPU_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KV_GPU_PLUGIN_ABI 2u

struct kv_gpu_plugin {
	uint32_t abi;     /* KV_GPU_PLUGIN_ABI */
	uint32_t vendor;  /* KVFS_GPU_HIP or KVFS_GPU_CUDA (kvfs/ioctl.h) */
	const char *name; /* "hip", "cuda" */

	/* Start the runtime: the number of devices (>= 0) or a negative errno,
	 * with a message in err. Called once, after the daemon has forked. */
	int (*init)(char *err, size_t errlen);
	int (*device_uuid)(int dev, uint8_t uuid[16]);

	/* Page-lock host memory the daemon already owns (chunk buffers) so
	 * copies from it run at full speed; failure only costs speed. */
	int (*host_register)(void *p, size_t len);
	void (*host_unregister)(void *p);
	/* Page-lock memory the device only reads: a read-only mapping of a
	 * file (ABI 2), released with host_unregister. */
	int (*host_register_ro)(void *p, size_t len);
	/* Pinned host memory for staging; NULL on failure. */
	void *(*host_alloc)(size_t len);
	void (*host_free)(void *p);

	/* Import a peer's IPC handle on dev: the mapped base of the whole
	 * allocation and its size as the runtime reports it. -EBADF with a
	 * message in err when the handle cannot be opened. */
	int (*ipc_open)(int dev, const uint8_t handle[64], void **base, uint64_t *size, char *err,
			size_t errlen);
	int (*ipc_close)(int dev, void *base);

	int (*stream_new)(int dev, void **stream);
	void (*stream_free)(int dev, void *stream);
	int (*event_new)(int dev, void **event);
	void (*event_free)(int dev, void *event);
	int (*event_record)(int dev, void *event, void *stream);
	int (*event_sync)(int dev, void *event);
	int (*copy_h2d)(int dev, void *stream, void *dst, const void *src, size_t n);
	int (*copy_d2h)(int dev, void *stream, void *dst, const void *src, size_t n);
	int (*stream_sync)(int dev, void *stream);
	/* The last error of this thread, for log lines. */
	const char *(*last_error)(void);
};

typedef const struct kv_gpu_plugin *(*kv_gpu_plugin_fn)(void);
#define KV_GPU_PLUGIN_SYMBOL "kvfs_gpu_plugin_v1"

/* A plugin for tests only exports this symbol (an int): it does what no
 * runtime does, such as open files its clients name with the daemon's
 * rights, so the daemon does not load it for a mount other users reach. */
#define KV_GPU_PLUGIN_TEST_ONLY "kvfs_gpu_plugin_test_only"

#ifdef __cplusplus
}
#endif

#endif
