/* SPDX-License-Identifier: Apache-2.0 */
/* kv_policy: the cache policy. Keeps the state of contexts (last access,
 * hits, pins, TTLs, open files) in memory, writes it to the index in
 * batches, decides which contexts to evict, and runs the background
 * evictor. The deletion itself is the filesystem's (a callback), so this
 * module holds decisions only and can be tested without a mount.
 *
 * Lock order: the policy lock is taken with no other kvfs lock held, and
 * released before the evict callback runs. */
#ifndef KV_POLICY_H
#define KV_POLICY_H

#include <stdint.h>

#include "index.h"
#include "opt.h"
#include "stats.h"

struct kv_policy;

struct kv_policy_hooks {
	void *arg;
	/* Delete context ino and all below it; 0 or a negative errno. */
	int (*evict)(void *arg, uint64_t ino);
	/* Bytes stored now (records in segments). */
	uint64_t (*stored)(void *arg);
	/* Bytes free on the backing filesystem, and its size. */
	int (*space)(void *arg, uint64_t *avail, uint64_t *total);
	/* Runs on the evictor thread after each pass (every second and after
	 * evictions): tell the kernel, and whatever else waits for a tick. */
	void (*flushed)(void *arg);
	/* Bytes context ino holds; LRU eviction for room skips empty ones (a
	 * context just made, whose files are not open yet, frees nothing);
	 * manual and TTL eviction do not. NULL: no such check. */
	uint64_t (*bytes)(void *arg, uint64_t ino);
	/* Contexts are inodes of the index: a row is made only for one that
	 * exists (an open racing an eviction gets ENOENT). */
	int inodes;
};

int kv_policy_new(const struct kv_config *cfg, struct kv_index *ix, struct kv_stats *stats,
		  const struct kv_policy_hooks *hooks, struct kv_policy **out);
/* Start the background evictor (after any fork). */
int kv_policy_start(struct kv_policy *p);
/* Stop the evictor. */
void kv_policy_stop(struct kv_policy *p);
/* Stop it and write the state of every context to the index. */
void kv_policy_free(struct kv_policy *p);

/* A file of context ctx is opened (-ENOENT: the context is being
 * evicted), read, or closed. */
int kv_policy_open(struct kv_policy *p, uint64_t ctx);
void kv_policy_read(struct kv_policy *p, uint64_t ctx);
void kv_policy_close(struct kv_policy *p, uint64_t ctx);
/* A context was created (mkdir at the context depth). */
void kv_policy_created(struct kv_policy *p, uint64_t ctx);
/* A context was deleted by rmdir/unlink, or moved away from the context
 * depth (not by eviction): forget its state. Its index row is the
 * caller's. */
void kv_policy_removed(struct kv_policy *p, uint64_t ctx);

int kv_policy_get(struct kv_policy *p, uint64_t ctx, struct kv_ctx_row *r);
int kv_policy_set_pin(struct kv_policy *p, uint64_t ctx, int pin);
int kv_policy_set_ttl(struct kv_policy *p, uint64_t ctx, int64_t ttl);

/* The longest TTL, in seconds (about 31 years); longer ones are refused. */
#define KV_TTL_MAX INT64_C(1000000000)

/* Make room for bytes more before they are stored: evict least recently
 * used contexts if that would pass the cap or the free-space floor.
 * -ENOSPC (counted) when not enough can be evicted. */
int kv_policy_admit(struct kv_policy *p, uint64_t bytes);
/* Evict until stored bytes are at most target. -ENOSPC when what is left
 * is pinned or open, -EIO when an eviction failed (logged). */
int kv_policy_evict_to(struct kv_policy *p, uint64_t target, enum kv_evict_reason why);
/* Write dirty context state to the index now. */
int kv_policy_flush(struct kv_policy *p);
/* The effective cap: capacity and free-space floor together (UINT64_MAX: none). */
uint64_t kv_policy_limit(struct kv_policy *p);

#endif
