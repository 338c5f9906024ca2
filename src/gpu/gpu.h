/* SPDX-License-Identifier: Apache-2.0 */
/* kv_gpu: the GPU backend of the fast path, without knowing about files.
 *
 * Loads a backend plugin (src/gpu/gpu_plugin.h) at the first use, after the
 * daemon has forked; keeps the imported IPC mappings of clients (opening
 * one costs ~0.3-1 ms) until their process exits or they sit idle; hands
 * out lanes (a stream, events and pinned staging buffers on one device);
 * page-locks the chunk buffers so copies from the DRAM tier run at full
 * speed. Thread-safe. */
#ifndef KV_GPU_H
#define KV_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "gpu_plugin.h"

struct kv_gpu;
struct kv_gpu_map;
struct kv_gpu_lane;

/* Imported mappings unused for this long are closed. */
#define KV_GPU_IDLE_SEC 30
/* Pinned staging buffers per lane and their size (GPU -> file). */
#define KV_GPU_NSTAGE 2
#define KV_GPU_STAGE (4u << 20)
/* Event slots per lane (each with one event per stream): pieces a
 * request may have in flight. */
#define KV_GPU_NEV 64
/* Streams per lane: host-to-device copies take turns on them, so one
 * copy's set-up overlaps another's transfer. */
#define KV_GPU_NSTREAM 8

struct kv_gpu_stats {
	uint64_t mappings;      /* imported allocations held now */
	uint64_t opens, closes; /* IPC handles imported / closed since start */
	uint64_t registered;    /* bytes of host memory page-locked */
};

/* spec: "auto", "cuda", "hip", "off" or the absolute path of a plugin.
 * Plugins named by backend are looked for next to the running executable,
 * then in KVFS_PLUGIN_DIR. Nothing is loaded until kv_gpu_start. */
struct kv_gpu *kv_gpu_new(const char *spec);
/* Closes every mapping and stops the backend; call before the memory
 * given to kv_gpu_register is freed. */
void kv_gpu_free(struct kv_gpu *g);

/* The mount lets other users in (allow_other): a plugin marked test-only
 * (KV_GPU_PLUGIN_TEST_ONLY) is then refused. Call before kv_gpu_start. */
void kv_gpu_set_shared(struct kv_gpu *g, int shared);

/* Start the backend once (later calls return the first outcome): 0, or
 * -ENODEV when there is none (spec off, no plugin, no device, a test-only
 * plugin on a shared mount). */
int kv_gpu_start(struct kv_gpu *g);
/* After a successful start: the backend. */
uint32_t kv_gpu_vendor(const struct kv_gpu *g);
const char *kv_gpu_name(const struct kv_gpu *g);
int kv_gpu_ndevices(const struct kv_gpu *g);
void kv_gpu_uuid(const struct kv_gpu *g, int dev, uint8_t uuid[16]);
/* The device with this UUID, or -ENODEV. */
int kv_gpu_device(const struct kv_gpu *g, const uint8_t uuid[16]);
const struct kv_gpu_plugin *kv_gpu_plugin(const struct kv_gpu *g);

/* Page-lock host memory for the backend (now if started, else at start). */
void kv_gpu_register(struct kv_gpu *g, void *p, size_t len);

/* Page-lock memory the device only reads (a read-only file mapping,
 * src/store/segmap.h), starting the backend if needed; counted in registered.
 * kv_gpu_unpin releases it. */
int kv_gpu_pin_ro(struct kv_gpu *g, void *p, size_t len);
void kv_gpu_unpin(struct kv_gpu *g, void *p, size_t len);

/* The mapping of an IPC handle on dev, imported now or found in the
 * cache, referenced. pid (0: unknown) is the client whose exit closes it.
 * -EBADF with a message in err when the handle cannot be opened. */
int kv_gpu_map_get(struct kv_gpu *g, int dev, const uint8_t handle[64], uint32_t pid,
		   struct kv_gpu_map **out, char *err, size_t errlen);
uint8_t *kv_gpu_map_base(const struct kv_gpu_map *m);
uint64_t kv_gpu_map_size(const struct kv_gpu_map *m);
void kv_gpu_map_put(struct kv_gpu *g, struct kv_gpu_map *m);
/* Close the mappings nobody uses whose client has exited or that sat
 * idle longer than idle_sec; returns how many were closed. Run by the
 * backend's own thread every second; callable for tests. */
int kv_gpu_reap(struct kv_gpu *g, int64_t idle_sec);

/* A lane on dev for one request at a time; NULL if it cannot be made. */
struct kv_gpu_lane *kv_gpu_lane_get(struct kv_gpu *g, int dev);
void kv_gpu_lane_put(struct kv_gpu *g, struct kv_gpu_lane *l);
/* Host-to-device and device-to-host copies on stream s
 * (0..KV_GPU_NSTREAM-1). */
int kv_gpu_h2d(struct kv_gpu_lane *l, int s, void *dst, const void *src, size_t n);
int kv_gpu_d2h(struct kv_gpu_lane *l, int s, void *dst, const void *src, size_t n);
/* Record event slot (0..KV_GPU_NEV-1) of stream s after the copies issued
 * so far on s; kv_gpu_wait returns when they have completed. */
int kv_gpu_mark(struct kv_gpu_lane *l, int slot, int s);
int kv_gpu_wait(struct kv_gpu_lane *l, int slot, int s);
/* Wait for every stream of the lane. */
int kv_gpu_sync(struct kv_gpu_lane *l);
/* Pinned staging buffer i (0..KV_GPU_NSTAGE-1) of KV_GPU_STAGE bytes, or NULL. */
void *kv_gpu_staging(struct kv_gpu_lane *l, int i);

void kv_gpu_stats(struct kv_gpu *g, struct kv_gpu_stats *s);

#endif
