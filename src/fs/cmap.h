/* SPDX-License-Identifier: Apache-2.0 */
/* kv_cmap: the chunk map of an open file, from chunk index to the chunk's
 * state, sparse: memory and time grow with the chunks a file has, not with
 * its size (one byte written at offset 2^45 costs one leaf, not 2^25
 * entries). Entries live in leaves of KV_CMAP_LEAF consecutive indexes,
 * found by binary search over the leaves sorted by index; an entry never
 * moves while its leaf exists, so a pointer to it stays valid until
 * kv_cmap_trim or kv_cmap_clear drops the leaf. Not thread-safe: callers
 * hold the inode's lock. */
#ifndef KV_CMAP_H
#define KV_CMAP_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* One chunk of an open file. All zero: no data (a hole). */
struct kv_centry {
	struct kv_loc loc; /* valid when stored */
	uint32_t raw;      /* raw bytes of the stored record */
	uint8_t codec;
	uint8_t stored;    /* loc names a record */
	uint8_t published; /* loc is what the index holds */
	uint8_t changed;   /* loc must be written at the next publish */
	uint8_t inflight;  /* a worker is compressing buf */
	uint8_t *buf;      /* buffered bytes, newer than loc; NULL if none */
	uint32_t fill;     /* bytes of buf that are defined; the rest is zero */
};

#define KV_CMAP_SHIFT 5
#define KV_CMAP_LEAF (1u << KV_CMAP_SHIFT)

struct kv_cmap_leaf;

struct kv_cmap {
	struct kv_cmap_leaf **leaf; /* sorted by first index */
	size_t n, cap;
};

/* The entry of chunk idx, or NULL if its leaf does not exist (a hole). */
struct kv_centry *kv_cmap_get(const struct kv_cmap *m, uint64_t idx);
/* The entry of chunk idx, its leaf added (zeroed) if needed; NULL when
 * out of memory. */
struct kv_centry *kv_cmap_add(struct kv_cmap *m, uint64_t idx);
/* The first entry at an index >= *idx in an existing leaf, with *idx set
 * to its index; NULL when there is none. Entries may be all zero. Walk
 * the map with: for (i = from; (e = kv_cmap_next(m, &i)); i++). */
struct kv_centry *kv_cmap_next(const struct kv_cmap *m, uint64_t *idx);
/* Drop the leaves that hold only indexes >= first and only empty entries
 * (nothing stored, buffered or being compressed). */
void kv_cmap_trim(struct kv_cmap *m, uint64_t first);
/* Drop every leaf. */
void kv_cmap_clear(struct kv_cmap *m);
/* Bytes the map holds (leaves and the leaf array). */
size_t kv_cmap_bytes(const struct kv_cmap *m);

#endif
