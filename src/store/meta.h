/* SPDX-License-Identifier: Apache-2.0 */
/* kv_meta: inode records, the metadata that makes segments self-describing.
 *
 * Whenever an inode's metadata changes (create, rename, link, unlink of one
 * of several links, setattr, xattrs, a context's pin or TTL) or a file is
 * published, the daemon appends a record of type 2 (KV_REC_TYPE_INODE) to
 * the segments holding the inode's whole state: attributes, every name it
 * has, symlink target, xattrs, the policy settings of a context, and for a
 * regular file where each chunk's record is. The index names the newest one
 * as the inode's chunk row with idx -1, so it is freed (punched) like any
 * record once superseded or deleted. `kvfsctl rebuild` recreates a lost
 * index from these records (src/tools/rebuild.h). Payload layout: docs/format.md. */
#ifndef KV_META_H
#define KV_META_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"

#define KV_META_VERSION 1
#define KV_META_HAS_CTX 1u /* flags: pin and ttl are a context's settings */

struct kv_meta_link {
	uint64_t parent;
	uint16_t len;
	char name[256];
};

struct kv_meta_xattr {
	char name[256];
	uint32_t len;
	uint8_t *value;
};

struct kv_meta {
	struct kv_attr attr; /* stored included: bytes of the chunk records */
	uint32_t flags;
	uint8_t pin;
	int64_t ttl;  /* -1: the mount's default */
	uint64_t hwm; /* highest inode number the store had handed out */
	char *target; /* symlink target, NUL-terminated; NULL if none */
	struct kv_meta_link *links;
	size_t nlinks, links_cap;
	struct kv_meta_xattr *x;
	size_t nx, x_cap;
	struct kv_chunk *chunks; /* idx >= 0 only, ascending */
	size_t nchunks, chunks_cap;
};

/* Serialise m into a malloc()ed buffer; *len gets its length. NULL on ENOMEM. */
uint8_t *kv_meta_encode(const struct kv_meta *m, size_t *len);
/* Parse a payload; every field bounds-checked. 0, -EINVAL (malformed or an
 * unknown version) or -ENOMEM. Free with kv_meta_free. */
int kv_meta_decode(const uint8_t *p, size_t len, struct kv_meta *m);
void kv_meta_free(struct kv_meta *m);

/* Helpers that build a kv_meta piece by piece (the index fills one). */
int kv_meta_add_link(struct kv_meta *m, uint64_t parent, const char *name, size_t len);
int kv_meta_add_xattr(struct kv_meta *m, const char *name, const void *value, uint32_t len);
int kv_meta_add_chunk(struct kv_meta *m, const struct kv_chunk *c);

#endif
