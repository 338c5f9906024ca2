/* SPDX-License-Identifier: Apache-2.0 */
/* kv_inomap: a hash table keyed by a uint64_t (an inode number), chained
 * and intrusive like the kernel's hlist: an object embeds a struct
 * kv_inomap_node and is found again from it with kv_inomap_entry, so adding
 * one allocates nothing and cannot fail. The bucket array doubles when the
 * map holds as many objects as it has buckets; when it cannot, the chains
 * just grow longer. The inode table (src/fs/inode.c), the policy's table of
 * contexts (src/fs/policy.c) and kv_inoset are built on it.
 *
 * Not thread-safe: each user holds its own lock, which it names where it
 * declares its map. */
#ifndef KV_INOMAP_H
#define KV_INOMAP_H

#include <stddef.h>
#include <stdint.h>

struct kv_inomap_node {
	struct kv_inomap_node *next;
	uint64_t key;
};

struct kv_inomap {
	struct kv_inomap_node **bucket;
	size_t nbucket; /* a power of two; 0 before kv_inomap_init */
	size_t n;       /* objects in the map */
};

/* The object of type type whose member member is node. */
#define kv_inomap_entry(node, type, member) \
	((type *)(void *)((char *)(node)-offsetof(type, member)))

/* An empty map of nbucket buckets (a power of two): 0, or -ENOMEM. */
int kv_inomap_init(struct kv_inomap *m, size_t nbucket);
/* Free the bucket array and leave the map as before kv_inomap_init. The
 * objects are the caller's: free them first (kv_inomap_next). */
void kv_inomap_free(struct kv_inomap *m);

/* The object with key, or NULL. */
struct kv_inomap_node *kv_inomap_find(const struct kv_inomap *m, uint64_t key);
/* Add node under key, which the map must not hold yet. The map must have
 * been made with kv_inomap_init. */
void kv_inomap_add(struct kv_inomap *m, struct kv_inomap_node *node, uint64_t key);
/* Remove node: 1 if the map held it, else 0. */
int kv_inomap_del(struct kv_inomap *m, struct kv_inomap_node *node);

/* The first object (prev NULL) or the one after prev, which the map must
 * still hold; NULL after the last. In no particular order; adding or
 * removing objects other than prev meanwhile may skip some. To free every
 * object, take the next one before freeing prev. */
struct kv_inomap_node *kv_inomap_next(const struct kv_inomap *m, const struct kv_inomap_node *prev);

/* Move every object into out (whose bucket array is freed first; its
 * objects must be gone) and leave m as before kv_inomap_init. */
void kv_inomap_take(struct kv_inomap *m, struct kv_inomap *out);

#endif
