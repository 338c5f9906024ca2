/* SPDX-License-Identifier: Apache-2.0 */
/* kvfs ioctl ABI, version 1: the GPU fast path.
 *
 * Issued on an open kvfs file (QUERY also on a directory). Every struct is
 * made of fixed-width little-endian fields, holds no pointers, and starts
 * with the ABI version and its own size, which the daemon checks before
 * anything else. The structs fit FUSE's restricted ioctls (at most 16 KiB,
 * copied in and out whole). docs/ioctl.md is the reference.
 *
 * This header compiles alone as C (C11 or later) and C++ (C++11 or later). */
#ifndef KVFS_IOCTL_H
#define KVFS_IOCTL_H

#include <stdint.h>
#include <sys/ioctl.h>

#define KVFS_ABI_VERSION 1u

/* GPU vendors, the backends a daemon may run. */
#define KVFS_GPU_NONE 0u
#define KVFS_GPU_HIP 1u
#define KVFS_GPU_CUDA 2u

#define KVFS_MAX_DEVICES 16
#define KVFS_GPU_MAX_SEGS 160
#define KVFS_IPC_HANDLE_SIZE 64

/* KVFS_IOC_QUERY: what this daemon is and can do. The caller fills
 * abi_version and struct_size; the daemon fills the rest. Asking starts the
 * GPU backend if it has not started yet. */
struct kvfs_query {
	uint32_t abi_version;  /* in: KVFS_ABI_VERSION; out: the daemon's */
	uint32_t struct_size;  /* in: sizeof(struct kvfs_query) */
	uint32_t kvfs_version; /* major << 16 | minor << 8 | patch */
	uint32_t backend;      /* KVFS_GPU_* the daemon runs (NONE: no fast path) */
	uint32_t ndevices;     /* devices the backend sees, <= KVFS_MAX_DEVICES */
	uint32_t max_segs;     /* KVFS_GPU_MAX_SEGS */
	uint64_t chunk_size;   /* the store's chunk size: the best request alignment */
	char backend_name[32]; /* "cuda", "hip", "none", ...; NUL-terminated */
	uint8_t device_uuid[KVFS_MAX_DEVICES][16];
};

/* One range of a GPU request: file bytes [file_off, file_off + len) and
 * device bytes [dev_off, dev_off + len) from the allocation's base. */
struct kvfs_gpu_seg {
	uint64_t file_off;
	uint64_t dev_off;
	uint64_t len;
};

/* KVFS_IOC_GPU_READ (file -> GPU) and KVFS_IOC_GPU_WRITE (GPU -> file).
 * The handle is the IPC memory handle (cudaIpcMemHandle_t /
 * hipIpcMemHandle_t) of the BASE of the caller's allocation. Segments run
 * in order; a write may extend the file, a read must stay within it. The
 * daemon checks dev_off + len against the size of the allocation it
 * imported, never against alloc_size. On return bytes_done counts the bytes
 * copied by segments that completed, in order; on failure ioctl(2) fails
 * with errno and error/detail/error_seg say why. */
struct kvfs_gpu_io {
	uint32_t abi_version; /* KVFS_ABI_VERSION */
	uint32_t struct_size; /* sizeof(struct kvfs_gpu_io) */
	uint32_t vendor;      /* KVFS_GPU_CUDA or KVFS_GPU_HIP: the handle's kind */
	uint32_t flags;       /* must be 0 */
	uint8_t handle[KVFS_IPC_HANDLE_SIZE];
	uint8_t device_uuid[16]; /* the device holding the allocation */
	uint64_t alloc_size;     /* the caller's idea of the allocation size (advisory) */
	uint32_t nseg;           /* 1..KVFS_GPU_MAX_SEGS */
	uint32_t detail;         /* out: KVFS_E_* */
	uint64_t bytes_done;     /* out */
	int32_t error;           /* out: 0 or the negative errno returned */
	uint32_t error_seg;      /* out: the segment that failed */
	struct kvfs_gpu_seg seg[KVFS_GPU_MAX_SEGS];
};

/* Why a request failed (kvfs_gpu_io.detail). */
enum kvfs_error_detail {
	KVFS_E_OK = 0,
	KVFS_E_VERSION = 1,    /* EINVAL: unknown abi_version */
	KVFS_E_SIZE = 2,       /* EINVAL: struct_size or the command's size */
	KVFS_E_ARG = 3,        /* EINVAL: flags, nseg or vendor out of range */
	KVFS_E_FILE_RANGE = 4, /* EINVAL: beyond EOF (read) or offset overflow */
	KVFS_E_DEV_RANGE = 5,  /* EFAULT: dev_off + len beyond the allocation */
	KVFS_E_NO_BACKEND = 6, /* ENODEV: no GPU backend in the daemon */
	KVFS_E_VENDOR = 7,     /* ENODEV: the handle is for another vendor */
	KVFS_E_DEVICE = 8,     /* ENODEV: no device with that UUID */
	KVFS_E_HANDLE = 9,     /* EBADF: the IPC handle could not be opened */
	KVFS_E_ACCESS = 10,    /* EBADF: the fd is not open for writing (or reading) */
	KVFS_E_COPY = 11,      /* EIO: the GPU copy failed */
	KVFS_E_IO = 12,        /* errno of the file read or write (EIO, ENOSPC, ...) */
};

#define KVFS_IOC_MAGIC 'K'
#define KVFS_IOC_QUERY _IOWR(KVFS_IOC_MAGIC, 1, struct kvfs_query)
#define KVFS_IOC_GPU_READ _IOWR(KVFS_IOC_MAGIC, 2, struct kvfs_gpu_io)
#define KVFS_IOC_GPU_WRITE _IOWR(KVFS_IOC_MAGIC, 3, struct kvfs_gpu_io)

#ifdef __cplusplus
static_assert(sizeof(struct kvfs_query) == 320, "kvfs_query ABI");
static_assert(sizeof(struct kvfs_gpu_io) == 128 + 24 * KVFS_GPU_MAX_SEGS, "kvfs_gpu_io ABI");
#else
_Static_assert(sizeof(struct kvfs_query) == 320, "kvfs_query ABI");
_Static_assert(sizeof(struct kvfs_gpu_io) == 128 + 24 * KVFS_GPU_MAX_SEGS, "kvfs_gpu_io ABI");
#endif

#endif
