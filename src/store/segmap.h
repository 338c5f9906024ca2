/* SPDX-License-Identifier: Apache-2.0 */
/* kv_segmap: windows of segment files mapped read-only and page-locked
 * for the GPU backend, so that a load of a chunk stored raw copies from
 * the page cache straight to the device: no read into a buffer first (a
 * pread from the page cache runs at about 3.5 GB/s a thread, the copy to
 * the device at 55 GB/s; docs/gpu-bench.md).
 *
 * A window is an aligned KV_SEGMAP_WINDOW bytes of one segment, mapped up
 * to the page that holds the file's end when it is mapped: a record is
 * served only from a window that holds all of it, so one appended further
 * on has its window mapped again once idle. Page-locking pins the page-cache pages, which the kernel can then
 * not reclaim, so the windows held are bounded by a budget (-o gpu_pin),
 * least recently used first out; windows of deleted segments are let go
 * within a second, so their space comes back. Freed records are punched
 * out of the file; a pinned page keeps its old bytes for the device while
 * the mapping reads zeros, so a caller verifies a record through the
 * mapping and treats a mismatch as "freed meanwhile, read again" before
 * calling it damage. Thread-safe. */
#ifndef KV_SEGMAP_H
#define KV_SEGMAP_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define KV_SEGMAP_WINDOW (64u << 20)

struct kv_segmap;
struct kv_segwin;

/* How windows are page-locked (0 or -errno) and released. */
struct kv_segmap_pin {
	int (*pin)(void *arg, void *p, size_t len);
	void (*unpin)(void *arg, void *p, size_t len);
	void *arg;
};

struct kv_segmap_stats {
	uint64_t bytes;   /* mapped and page-locked now */
	uint64_t windows; /* windows held now */
	uint64_t maps;    /* windows mapped since start */
	uint64_t misses;  /* records no window could serve */
};

/* budget: bytes of windows held at most (0: none, kv_segmap_get always
 * misses). */
struct kv_segmap *kv_segmap_new(struct kv_store *st, uint64_t budget,
				const struct kv_segmap_pin *pin);
/* Every window must have been put back. */
void kv_segmap_free(struct kv_segmap *m);
/* The record at loc (header first, loc->len bytes) in a page-locked
 * window, which *w holds until kv_segmap_put; NULL when none can serve it
 * (over budget with every window in use, the record straddles windows,
 * mapping or page-locking failed). */
const uint8_t *kv_segmap_get(struct kv_segmap *m, const struct kv_loc *loc, struct kv_segwin **w);
void kv_segmap_put(struct kv_segmap *m, struct kv_segwin *w);
void kv_segmap_stats(struct kv_segmap *m, struct kv_segmap_stats *s);

#endif
