/* SPDX-License-Identifier: Apache-2.0 */
/* kv_stats: counters of a mount, exported as .kvfs/stats in the
 * Prometheus text format. Lock-free; any thread may bump them. */
#ifndef KV_STATS_H
#define KV_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

enum kv_evict_reason { KV_EVICT_LRU, KV_EVICT_TTL, KV_EVICT_MANUAL, KV_EVICT_NREASONS };

struct kv_stats {
	atomic_uint_least64_t evictions[KV_EVICT_NREASONS];
	atomic_uint_least64_t hits, misses;
	atomic_uint_least64_t read_bytes, written_bytes;
	atomic_uint_least64_t enospc;
	atomic_uint_least64_t checksum_errors;
};

/* Gauges sampled when the stats file is opened. */
struct kv_gauges {
	uint64_t logical, stored, irec, irec_due, capacity, contexts, files;
	uint64_t tier_hits, tier_misses, tier_bytes;
	uint64_t gpu_requests, gpu_errors, gpu_read_bytes, gpu_write_bytes;
	uint64_t gpu_mappings, gpu_ipc_opens, gpu_pinned_bytes;
	uint64_t gpu_load_wait_ns, gpu_copy_wait_ns, gpu_load_ns, gpu_loads;
	uint64_t gpu_direct, gpu_window_bytes;
};

static inline void kv_stat_add(atomic_uint_least64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Write the exposition text; returns its length (snprintf convention). */
int kv_stats_format(const struct kv_stats *s, const struct kv_gauges *g, char *buf, size_t len);

#endif
