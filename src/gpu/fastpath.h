/* SPDX-License-Identifier: Apache-2.0 */
/* kv_fast: the GPU fast path of a mount (ioctls of include/kvfs/ioctl.h).
 *
 * Checks a request, then moves file bytes between the file's chunks and an
 * imported GPU allocation: reads load the file's chunks on the worker pool
 * (decoding in parallel) while earlier chunks are copied to the device
 * straight from the DRAM tier's page-locked buffers; writes copy from the
 * device into pinned staging buffers and write through the normal data
 * path, the next copy running while the last one is written. Requests run
 * on the fast path's own threads, so FUSE's threads stay free for
 * metadata. */
#ifndef KV_FASTPATH_H
#define KV_FASTPATH_H

#include <stddef.h>
#include <stdint.h>

#include "kvfs/ioctl.h"

struct kv_fs;
struct kv_gpu;
struct kv_fast;

/* How the request's file was opened, and what is asked. */
#define KV_FAST_WRITE 1u /* GPU_WRITE (else GPU_READ) */
#define KV_FAST_CAN_READ 2u
#define KV_FAST_CAN_WRITE 4u

/* Concurrent requests; more wait in a queue. */
#define KV_FAST_THREADS 8
/* Chunks one read has loading ahead of the copies. */
#ifndef KV_FAST_AHEAD /* a build may set it, for measuring */
#define KV_FAST_AHEAD 32
#endif
/* Chunks already in the DRAM tier are taken this many at a time. */
#define KV_FAST_BATCH 16
/* Reads up to this many bytes run in the submitting thread. */
#define KV_FAST_INLINE (8u << 20)

/* An ioctl command as FUSE hands it over: KV_FAST_QUERY, KV_FAST_READ or
 * KV_FAST_WRITE_CMD, -ENOTTY for a command that is not ours, -EINVAL for
 * one of ours with another size (an ABI mismatch). */
enum { KV_FAST_QUERY = 1, KV_FAST_READ = 2, KV_FAST_WRITE_CMD = 3 };
int kv_fast_cmd(unsigned cmd, size_t in_size, size_t out_size);
/* The checks of a GPU request that need neither the GPU nor the file but
 * its size: version, size, flags, segment count, vendor, fd mode, ranges.
 * 0, or a negative errno with io's error, detail and error_seg set. */
int kv_fast_validate(struct kvfs_gpu_io *io, unsigned mode, uint64_t file_size);

struct kv_fast *kv_fast_new(struct kv_fs *fs, struct kv_gpu *g);
/* Finishes the queued requests, then stops. */
void kv_fast_free(struct kv_fast *f);
/* The fast path of a mount: its backend (the mount's gpu= plugin, shared
 * between users with allow_other; started at first use), the fast path on
 * it, and its gauges in the mount's stats. Stop it before kv_fs_close: the
 * backend lets go of the chunk buffers before they are unmapped.
 * 0 or -ENOMEM. */
int kv_fast_start(struct kv_fs *fs, struct kv_fast **out);
void kv_fast_stop(struct kv_fast *f);
/* Its backend. */
struct kv_gpu *kv_fast_gpu(struct kv_fast *f);

/* Fill a QUERY reply (starts the backend). 0 or -EINVAL (version, size). */
int kv_fast_query(struct kv_fast *f, struct kvfs_query *q);

/* Run a GPU_READ or GPU_WRITE on inode ino in this thread. pid: the
 * client (0: unknown). Returns 0 or a negative errno, with io's output
 * fields (bytes_done, error, error_seg, detail) set either way. */
int kv_fast_run(struct kv_fast *f, uint64_t ino, unsigned mode, uint32_t pid,
		struct kvfs_gpu_io *io);

/* Run it on the fast path's threads (reads up to KV_FAST_INLINE bytes: in
 * this one, before returning); done gets kv_fast_run's result and io,
 * which it owns from then on. Returns 0 or -ENOMEM (io not taken). */
typedef void (*kv_fast_done_fn)(void *arg, int rc, struct kvfs_gpu_io *io);
int kv_fast_submit(struct kv_fast *f, uint64_t ino, unsigned mode, uint32_t pid,
		   struct kvfs_gpu_io *io, kv_fast_done_fn done, void *arg);

struct kv_fast_stats {
	uint64_t requests, errors, read_bytes, write_bytes;
	uint64_t load_wait_ns, copy_wait_ns; /* GPU_READs waiting on chunk loads / copies */
	uint64_t load_ns, loads;             /* chunk loads run on the worker pool */
	uint64_t direct;                     /* ... of them copied from a segment window */
	uint64_t pinned_windows;             /* bytes of segment windows page-locked now */
};
void kv_fast_stats(struct kv_fast *f, struct kv_fast_stats *s);

#endif
