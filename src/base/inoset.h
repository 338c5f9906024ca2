/* kv_inoset: a set of inode numbers (open addressing, linear probing), for
 * the inodes whose inode records are due. Not thread-safe: callers lock. */
#ifndef KV_INOSET_H
#define KV_INOSET_H

#include <stddef.h>
#include <stdint.h>

struct kv_inoset {
	uint64_t *slot; /* 0: empty (inode 0 does not exist) */
	size_t cap;     /* a power of two, or 0 */
	size_t n;
};

/* 0, or -ENOMEM (the set is unchanged). Adding 0 or a member does nothing. */
int kv_inoset_add(struct kv_inoset *s, uint64_t ino);
/* 1 if ino was in the set (and is not now), else 0. */
int kv_inoset_del(struct kv_inoset *s, uint64_t ino);
int kv_inoset_has(const struct kv_inoset *s, uint64_t ino);
/* Moves every member into out (emptied first) and leaves s empty. */
void kv_inoset_take(struct kv_inoset *s, struct kv_inoset *out);
void kv_inoset_free(struct kv_inoset *s);

#endif
