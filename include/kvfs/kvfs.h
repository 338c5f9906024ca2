/* SPDX-License-Identifier: Apache-2.0 */
/* libkvfs: the engine side of the kvfs GPU fast path.
 *
 * An engine hands libkvfs device pointers; libkvfs finds the allocation
 * each lies in, exports it as an IPC memory handle and issues the ioctls of
 * kvfs/ioctl.h, so the daemon copies file bytes straight to or from the
 * engine's GPU memory.
 *
 * libkvfs links no GPU runtime. On first use it asks the daemon which
 * backend it runs (KVFS_IOC_QUERY) and dlopen()s the matching one: the CUDA
 * driver (libcuda.so.1) or the HIP runtime (libamdhip64.so); one vendor per
 * process. Pointers must come from cudaMalloc / hipMalloc (PyTorch's
 * caching allocator qualifies, its expandable segments and cudaMallocAsync
 * pools do not). The calling thread needs no current context: libkvfs
 * works in the context each allocation belongs to.
 *
 * Ordering: the daemon copies on its own stream in its own process. Before
 * a write, finish the work that produces the bytes; before a read, finish
 * the work that still uses the destination (cudaStreamSynchronize). When a
 * call returns, its copies are complete.
 *
 * Every function may be called from any thread. Failures return -1 with
 * errno set; kvfs_last_detail() and kvfs_last_error() then say why, for the
 * calling thread. */
#ifndef KVFS_KVFS_H
#define KVFS_KVFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <kvfs/ioctl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why libkvfs refused a request before the daemon saw it; these extend
 * enum kvfs_error_detail and never come from the daemon. */
enum kvfs_lib_detail {
	KVFS_E_LIB_RUNTIME = 100, /* ENODEV: the GPU runtime library could not be loaded */
	KVFS_E_LIB_POINTER = 101, /* EINVAL: not device memory the runtime knows */
	KVFS_E_LIB_EXPORT = 102, /* EINVAL: the allocation has no IPC handle (not cudaMalloc memory) */
};

/* One range of a vector request: len bytes at dev_ptr <-> the file at
 * file_off. dev_ptr may point anywhere inside an allocation. */
struct kvfs_gpu_vec {
	void *dev_ptr;
	uint64_t file_off;
	size_t len;
};

/* What the daemon is and can do: fills q (abi_version and struct_size are
 * set here). Works on a directory of the mount too. 0 or -1/errno. */
int kvfs_query(int fd, struct kvfs_query *q);

/* Copy len bytes of the file at file_off into the GPU at dev_ptr, or the
 * GPU bytes at dev_ptr into the file at file_off (fd open for writing; a
 * write may extend the file). Returns len or -1/errno. */
ssize_t kvfs_gpu_read(int fd, void *dev_ptr, size_t len, uint64_t file_off);
ssize_t kvfs_gpu_write(int fd, const void *dev_ptr, size_t len, uint64_t file_off);

/* The same for n ranges. Ranges in the same allocation go in one ioctl
 * (KVFS_GPU_MAX_SEGS ranges at most each), allocations in order of first
 * appearance. Returns the total bytes or -1/errno; after a failure, which
 * ranges were copied is unspecified: redo the whole request. */
ssize_t kvfs_gpu_readv(int fd, const struct kvfs_gpu_vec *v, int n);
ssize_t kvfs_gpu_writev(int fd, const struct kvfs_gpu_vec *v, int n);

/* The calling thread's last failure: a KVFS_E_* detail (KVFS_E_OK when
 * the cause has none, as for ENOTTY on a file outside kvfs), and a message
 * naming the detail, the range and any GPU runtime error. */
uint32_t kvfs_last_detail(void);
const char *kvfs_last_error(void);

/* "KVFS_E_DEV_RANGE: range beyond the GPU allocation" and so on; never NULL. */
const char *kvfs_strerror_detail(uint32_t detail);

#ifdef __cplusplus
}
#endif

#endif
