/* SPDX-License-Identifier: Apache-2.0 */
/* kv_inoset: a set of inode numbers, for the inodes whose inode records
 * are due: a kv_inomap (inomap.h) of one small node per member. Not
 * thread-safe: callers lock. */
#ifndef KV_INOSET_H
#define KV_INOSET_H

#include <stddef.h>
#include <stdint.h>

#include "inomap.h"

struct kv_inoset {
	struct kv_inomap m; /* its buckets made at the first add */
};

/* 0, or -ENOMEM (the set is unchanged). Adding 0 or a member does nothing. */
int kv_inoset_add(struct kv_inoset *s, uint64_t ino);
/* 1 if ino was in the set (and is not now), else 0. */
int kv_inoset_del(struct kv_inoset *s, uint64_t ino);
int kv_inoset_has(const struct kv_inoset *s, uint64_t ino);
/* How many members. */
static inline size_t kv_inoset_count(const struct kv_inoset *s) { return s->m.n; }
/* The first member (prev 0) or the one after member prev; 0 after the
 * last. In no particular order; the set must not change meanwhile. */
uint64_t kv_inoset_next(const struct kv_inoset *s, uint64_t prev);
/* Moves every member into out (emptied first) and leaves s empty. */
void kv_inoset_take(struct kv_inoset *s, struct kv_inoset *out);
void kv_inoset_free(struct kv_inoset *s);

#endif
