/* SPDX-License-Identifier: Apache-2.0 */
/* kv_tier: the DRAM tier, decompressed chunks kept in memory under a byte
 * budget, least recently used first out. Keys are record locations, which
 * are never reused while the daemon runs, so entries need no invalidation
 * beyond kv_tier_forget when a record is freed. Thread-safe. */
#ifndef KV_TIER_H
#define KV_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "store.h"

struct kv_tier;
struct kv_tier_ent;

struct kv_tier_stats {
	uint64_t hits, misses, bytes, entries;
};

struct kv_tier *kv_tier_new(struct kv_bufs *bufs, size_t budget);
void kv_tier_free(struct kv_tier *t);

/* A referenced entry for loc, or NULL (counted as a miss). */
struct kv_tier_ent *kv_tier_get(struct kv_tier *t, const struct kv_loc *loc);
/* The same; a miss is counted only if count_miss (a caller that will load
 * the chunk elsewhere and look again). */
struct kv_tier_ent *kv_tier_lookup(struct kv_tier *t, const struct kv_loc *loc, int count_miss);
/* Add buf (from the tier's kv_bufs, holding len bytes) for loc and return
 * it referenced; the tier owns buf from now on (it may keep a right-sized
 * copy instead). The budget is charged the memory held, not len. If
 * another thread added loc first, buf is released and that entry returned. */
struct kv_tier_ent *kv_tier_put(struct kv_tier *t, const struct kv_loc *loc, void *buf,
				uint32_t len);
void kv_tier_release(struct kv_tier *t, struct kv_tier_ent *e);
const uint8_t *kv_tier_data(const struct kv_tier_ent *e);
uint32_t kv_tier_len(const struct kv_tier_ent *e);
/* The record at loc was freed: drop its entry once unreferenced. */
void kv_tier_forget(struct kv_tier *t, const struct kv_loc *loc);
void kv_tier_stats(struct kv_tier *t, struct kv_tier_stats *s);

#endif
