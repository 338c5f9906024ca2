/* SPDX-License-Identifier: Apache-2.0 */
/* kv_index: the SQLite metadata of a store (inodes, directory entries,
 * chunk lists, xattrs). Schema migrations live in schema/NNN_*.sql.
 *
 * One connection, serialised by the index's own mutex; every function is
 * thread-safe and returns 0 or a negative errno. The index mutex is a leaf:
 * callers may hold inode locks while calling in, never the reverse. */
#ifndef KV_INDEX_H
#define KV_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define KV_ROOT_INO 1
#define KV_FORMAT_VERSION 1

struct kv_index_migration {
	int version;
	const char *name;
	const char *sql;
};
extern const struct kv_index_migration kv_index_migrations[];
extern const int kv_index_nmigrations;

struct kv_attr {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink;
	uint64_t size, stored, rdev;
	int64_t atime, mtime, ctime; /* ns */
};

/* A chunk as the index records it. */
struct kv_chunk {
	uint64_t idx;
	struct kv_loc loc;
	uint32_t raw;
	uint8_t codec;
};

/* Cache policy state of one context. ttl < 0: the mount's default. */
struct kv_ctx_row {
	uint64_t ino;
	int64_t last_access;
	uint64_t hits;
	int pin;
	int64_t ttl;
};

/* Sizes of everything below a directory (or of one file). */
struct kv_usage {
	uint64_t logical, stored, files;
};

struct kv_index_stats {
	uint64_t files, dirs, contexts, logical, stored;
};

struct kv_index;

/* Move checkpoints (copying the write-ahead log into the database, with
 * its fsync) off the committing threads: a thread with a connection of its
 * own runs them once the log holds 1000 pages. For the mount. The thread
 * first runs quick_check on the index and logs any damage. */
int kv_index_checkpointer(struct kv_index *ix);

/* Check the index file itself: SQLite's integrity_check (every page, and
 * every index against its table), or quick_check when quick (no index
 * comparison; on a 1M-file index about 0.6 s with the file cached). Returns
 * 0 when sound, the number of problems found (the first in msg), or a
 * negative errno when the check could not run (why in msg). For fsck;
 * a mount runs quick_check in the checkpointer's thread. */
int kv_index_verify(struct kv_index *ix, int quick, char *msg, size_t len);

/* Open (create when create != 0) the index at path. A file that is not a
 * kvfs index, or one from a newer kvfs, is refused without being changed,
 * with the reason in err. */
int kv_index_open(const char *path, int create, struct kv_index **out, char *err, size_t errlen);
void kv_index_close(struct kv_index *ix);
/* Check, read-only, that path is a kvfs index this version can open. */
int kv_index_check(const char *path, char *err, size_t errlen);
void kv_index_store_id(struct kv_index *ix, uint8_t id[16]);
/* Integer settings of the store in the meta table; get gives -ENOENT when
 * key is absent. */
int kv_index_meta_get(struct kv_index *ix, const char *key, int64_t *value);
int kv_index_meta_set(struct kv_index *ix, const char *key, int64_t value);
int kv_index_user_version(struct kv_index *ix);

int kv_index_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a);
int kv_index_lookup(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    struct kv_attr *a);
int kv_index_parent(struct kv_index *ix, uint64_t dir, uint64_t *parent);

/* Create name in parent from a->mode/uid/gid/rdev/times; fills a->ino.
 * target (may be NULL) is a symlink's target. */
int kv_index_create(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    struct kv_attr *a, const char *target);

/* Remove name from parent. dir selects rmdir (the entry must be an empty
 * directory) or unlink (must not be a directory). On success *ino and
 * *nlink say which inode lost a link and how many it has left. */
int kv_index_remove(struct kv_index *ix, uint64_t parent, const char *name, size_t len, int dir,
		    int64_t now, uint64_t *ino, uint32_t *nlink);

/* rename(2) with RENAME_NOREPLACE/RENAME_EXCHANGE flags. When an existing
 * entry is replaced, *victim and *victim_nlink describe it (else 0). */
int kv_index_rename(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    uint64_t newparent, const char *newname, size_t newlen, unsigned flags,
		    int64_t now, uint64_t *victim, uint32_t *victim_nlink);

/* Write the attributes selected by mask (KV_SET_* bits). */
#define KV_SET_MODE (1u << 0)
#define KV_SET_UID (1u << 1)
#define KV_SET_GID (1u << 2)
#define KV_SET_SIZE (1u << 3)
#define KV_SET_ATIME (1u << 4)
#define KV_SET_MTIME (1u << 5)
#define KV_SET_CTIME (1u << 6)
int kv_index_setattr(struct kv_index *ix, const struct kv_attr *a, unsigned mask);

int kv_index_readlink(struct kv_index *ix, uint64_t ino, char *buf, size_t len);

/* Directory listing from offset off (0 = start). cb gets each entry and the
 * offset of the next one, and returns nonzero to stop. cb runs with the
 * index unlocked. Other callbacks in this file run with it locked and must
 * not call back into the index or take other locks than leaves. */
typedef int (*kv_index_dir_cb)(void *arg, const char *name, size_t len, const struct kv_attr *a,
			       uint64_t next);
int kv_index_readdir(struct kv_index *ix, uint64_t dir, uint64_t off, kv_index_dir_cb cb, void *arg);

/* All chunks of ino, in index order. */
typedef int (*kv_index_chunk_cb)(void *arg, const struct kv_chunk *c);
int kv_index_chunks(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg);
/* The same for a file that must exist: -ENOENT if the inode is gone. */
int kv_index_file_chunks(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg);

/* Publish a file in one transaction: drop chunks with idx >= keep, write
 * the n chunks given (one of them may be the inode record, idx
 * KV_REC_IDX_INODE), set size/stored/mtime/ctime. durable: commit with a
 * full sync of the WAL. old_rec (may be NULL) gets the inode record the
 * index named before (len 0: none). */
int kv_index_publish(struct kv_index *ix, const struct kv_attr *a, uint64_t keep,
		     const struct kv_chunk *c, size_t n, int durable, struct kv_loc *old_rec);

/* ---- inode records (src/store/meta.h) ---- */
struct kv_meta;
/* Everything an inode record of ino holds, read in one go: attributes,
 * names, target, xattrs, context settings and (with chunks) the chunk
 * list; *cur gets the inode record the index names now (len 0: none).
 * -ENOENT if ino is gone. */
int kv_index_meta(struct kv_index *ix, uint64_t ino, int chunks, struct kv_meta *m,
		  struct kv_loc *cur);
/* Name r[i].loc as r[i].ino's inode record, for each i, in one transaction:
 * each where the index still names r[i].expect (len 0: none) and the inode
 * exists; r[i].rc says 0, -ESTALE or -ENOENT (the caller frees the records
 * not named). Returns 0, or the failure of the transaction (then none is
 * named, and every r[i].rc holds it). */
struct kv_irec_set {
	uint64_t ino;
	struct kv_loc expect, loc;
	int rc;
};
int kv_index_set_irecs(struct kv_index *ix, struct kv_irec_set *r, size_t n);
/* Rebuild: insert inode m->attr.ino as it is (rows of inode, names,
 * xattrs, chunks, context) with rec as its inode record. In the caller's
 * transaction (kv_index_begin / kv_index_commit). */
int kv_index_restore(struct kv_index *ix, const struct kv_meta *m, const struct kv_loc *rec);
int kv_index_begin(struct kv_index *ix);
int kv_index_commit(struct kv_index *ix, int rc);
/* Inode numbers handed out from now on are at least next (in the caller's
 * transaction), and the store's identity is id (a rebuilt index). */
int kv_index_set_next_ino(struct kv_index *ix, uint64_t next);
int kv_index_set_store_id(struct kv_index *ix, const uint8_t id[16]);
/* Bytes of the inode records the index names. */
int kv_index_irec_bytes(struct kv_index *ix, uint64_t *n);

/* Delete an inode with no links left: its row, chunks (each passed to cb
 * first, so their records can be freed) and xattrs. */
int kv_index_drop(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg);

/* Inodes with no links (left by a crash while they were open). */
typedef void (*kv_index_ino_cb)(void *arg, uint64_t ino);
int kv_index_orphans(struct kv_index *ix, kv_index_ino_cb cb, void *arg);
/* Inodes that have no inode record (a store from before they existed). */
int kv_index_without_irec(struct kv_index *ix, kv_index_ino_cb cb, void *arg);

/* Every chunk record, ordered by segment and offset. */
int kv_index_extents(struct kv_index *ix, kv_index_chunk_cb cb, void *arg);

/* Live bytes per segment, for the store's accounting. */
typedef void (*kv_index_seg_cb)(void *arg, uint32_t seg, uint64_t bytes);
int kv_index_segments(struct kv_index *ix, kv_index_seg_cb cb, void *arg);

/* user.* extended attributes. getxattr/listxattr follow the syscall
 * conventions: size 0 asks for the length. */
int kv_index_setxattr(struct kv_index *ix, uint64_t ino, const char *name, const void *value,
		      size_t size, int flags);
int kv_index_getxattr(struct kv_index *ix, uint64_t ino, const char *name, void *buf, size_t size);
int kv_index_listxattr(struct kv_index *ix, uint64_t ino, char *buf, size_t size);
int kv_index_removexattr(struct kv_index *ix, uint64_t ino, const char *name);

int kv_index_stats(struct kv_index *ix, struct kv_index_stats *s);

/* ---- contexts (schema 2) ---- */
/* Read a context row; -ENOENT when ino has none. */
int kv_index_ctx_get(struct kv_index *ix, uint64_t ino, struct kv_ctx_row *r);
/* Create the row of ino with r->last_access if it has none. */
int kv_index_ctx_add(struct kv_index *ix, const struct kv_ctx_row *r);
/* The same, atomically only if inode ino exists and has a name: -ENOENT
 * otherwise. */
int kv_index_ctx_new(struct kv_index *ix, const struct kv_ctx_row *r);
/* Write last_access, hits, pin and ttl of n rows in one transaction. */
int kv_index_ctx_save(struct kv_index *ix, const struct kv_ctx_row *r, size_t n);
/* Unpinned contexts, least recently used first: at most max of them,
 * skipping the first skip. */
int kv_index_ctx_lru(struct kv_index *ix, size_t skip, uint64_t *ino, size_t max, size_t *n);
/* Unpinned contexts whose ttl (or default_ttl when unset; 0 = never) ended
 * before now. */
int kv_index_ctx_expired(struct kv_index *ix, int64_t now, int64_t default_ttl, uint64_t *ino,
			 size_t max, size_t *n);
/* Contexts, or (with_ttl) contexts that have a ttl of their own. */
int kv_index_ctx_count(struct kv_index *ix, int with_ttl, uint64_t *n);
int kv_index_ctx_del(struct kv_index *ix, uint64_t ino);
/* Replace the context rows by one for every directory at depth (1 =
 * children of the root; 0 = every regular file). */
int kv_index_ctx_scan(struct kv_index *ix, int depth, int64_t now);

/* Delete ino and everything below it in one transaction: entries,
 * inodes, chunks, xattrs and context rows. Each chunk is passed to cb
 * (which must only collect it) and each deleted inode to ino_cb. */
int kv_index_drop_tree(struct kv_index *ix, uint64_t ino, int64_t now, kv_index_chunk_cb cb,
		       kv_index_ino_cb ino_cb, void *arg);
/* Where ino's entry is: parent and name (name holds 256 bytes). */
int kv_index_entry_of(struct kv_index *ix, uint64_t ino, uint64_t *parent, char *name);
int kv_index_usage(struct kv_index *ix, uint64_t ino, struct kv_usage *u);
/* Names of the codecs of the chunks below ino, comma-separated. */
int kv_index_codecs(struct kv_index *ix, uint64_t ino, char *buf, size_t len);

#endif
