/* SPDX-License-Identifier: Apache-2.0 */
#include "stats.h"

#include <stdarg.h>

struct out {
	char *buf;
	size_t len, used;
};

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->buf + (o->used < o->len ? o->used : o->len),
		      o->used < o->len ? o->len - o->used : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

static void metric(struct out *o, const char *name, const char *type, const char *help, uint64_t v)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
	    (unsigned long long)v);
}

static uint64_t get(const atomic_uint_least64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

int kv_stats_format(const struct kv_stats *s, const struct kv_gauges *g, char *buf, size_t len)
{
	static const char *const reasons[KV_EVICT_NREASONS] = { "lru", "ttl", "manual" };
	struct out o = { buf, len, 0 };

	metric(&o, "kvfs_logical_bytes", "gauge", "Bytes of file data as applications see them.",
	       g->logical);
	metric(&o, "kvfs_stored_bytes", "gauge", "Bytes of chunk records in the segment files.",
	       g->stored);
	metric(&o, "kvfs_inode_record_bytes", "gauge",
	       "Bytes of inode records (metadata for kvfsctl rebuild) in the segment files.",
	       g->irec);
	metric(&o, "kvfs_inode_records_due", "gauge",
	       "Inodes changed whose inode records are not written yet (within 0.1 s).",
	       g->irec_due);
	metric(&o, "kvfs_capacity_bytes", "gauge", "Cap on stored bytes (0 = none).", g->capacity);
	metric(&o, "kvfs_contexts", "gauge", "Contexts in the store.", g->contexts);
	metric(&o, "kvfs_files", "gauge", "Regular files in the store.", g->files);
	put(&o, "# HELP kvfs_evictions_total Contexts evicted, by reason.\n"
		"# TYPE kvfs_evictions_total counter\n");
	for (int r = 0; r < KV_EVICT_NREASONS; r++)
		put(&o, "kvfs_evictions_total{reason=\"%s\"} %llu\n", reasons[r],
		    (unsigned long long)get(&s->evictions[r]));
	metric(&o, "kvfs_hits_total", "counter", "Lookups that found a context.", get(&s->hits));
	metric(&o, "kvfs_misses_total", "counter", "Lookups of absent contexts.", get(&s->misses));
	metric(&o, "kvfs_read_bytes_total", "counter", "Bytes read by applications.",
	       get(&s->read_bytes));
	metric(&o, "kvfs_written_bytes_total", "counter", "Bytes written by applications.",
	       get(&s->written_bytes));
	metric(&o, "kvfs_tier_hits_total", "counter", "Chunk reads served by the DRAM tier.",
	       g->tier_hits);
	metric(&o, "kvfs_tier_misses_total", "counter", "Chunk reads that went to the segments.",
	       g->tier_misses);
	metric(&o, "kvfs_tier_bytes", "gauge", "Bytes of decompressed chunks in the DRAM tier.",
	       g->tier_bytes);
	metric(&o, "kvfs_enospc_total", "counter",
	       "Writes refused because nothing could be evicted.", get(&s->enospc));
	metric(&o, "kvfs_checksum_errors_total", "counter",
	       "Chunk records that failed their checksums or owner checks on read (readers got EIO).",
	       get(&s->checksum_errors));
	metric(&o, "kvfs_gpu_requests_total", "counter", "GPU_READ and GPU_WRITE ioctls.",
	       g->gpu_requests);
	metric(&o, "kvfs_gpu_errors_total", "counter", "GPU ioctls that failed.", g->gpu_errors);
	metric(&o, "kvfs_gpu_read_bytes_total", "counter", "Bytes copied from files to GPUs.",
	       g->gpu_read_bytes);
	metric(&o, "kvfs_gpu_written_bytes_total", "counter", "Bytes copied from GPUs to files.",
	       g->gpu_write_bytes);
	metric(&o, "kvfs_gpu_mappings", "gauge", "Client GPU allocations imported now.",
	       g->gpu_mappings);
	metric(&o, "kvfs_gpu_ipc_opens_total", "counter", "IPC handles imported.", g->gpu_ipc_opens);
	metric(&o, "kvfs_gpu_pinned_bytes", "gauge", "Host memory page-locked for GPU copies.",
	       g->gpu_pinned_bytes);
	put(&o,
	    "# HELP kvfs_gpu_load_wait_seconds_total Time GPU reads waited for chunks to be "
	    "loaded and decoded.\n# TYPE kvfs_gpu_load_wait_seconds_total counter\n"
	    "kvfs_gpu_load_wait_seconds_total %.6f\n",
	    (double)g->gpu_load_wait_ns / 1e9);
	put(&o,
	    "# HELP kvfs_gpu_copy_wait_seconds_total Time GPU reads waited for copies to the "
	    "device.\n# TYPE kvfs_gpu_copy_wait_seconds_total counter\n"
	    "kvfs_gpu_copy_wait_seconds_total %.6f\n",
	    (double)g->gpu_copy_wait_ns / 1e9);
	put(&o,
	    "# HELP kvfs_gpu_load_seconds_total Time spent loading and decoding chunks for GPU "
	    "reads, summed over worker threads.\n# TYPE kvfs_gpu_load_seconds_total counter\n"
	    "kvfs_gpu_load_seconds_total %.6f\n",
	    (double)g->gpu_load_ns / 1e9);
	metric(&o, "kvfs_gpu_loads_total", "counter",
	       "Chunks loaded on the worker pool for GPU reads.", g->gpu_loads);
	metric(&o, "kvfs_gpu_direct_loads_total", "counter",
	       "Of those, chunks stored raw copied straight from page-locked segment windows.",
	       g->gpu_direct);
	metric(&o, "kvfs_gpu_window_bytes", "gauge",
	       "Bytes of segment windows page-locked now (at most -o gpu_pin).",
	       g->gpu_window_bytes);
	return (int)o.used;
}
