/* SPDX-License-Identifier: Apache-2.0 */
/* kv_fs / kv_file: the filesystem below the FUSE glue.
 *
 * kv_fs_* is the namespace (inodes, directories, attributes, xattrs) and
 * the per-mount state; kv_file_* is the data path of regular files (chunk
 * map, write buffers, compression jobs, publishing). Both work on inode
 * numbers and return 0 (or a byte count) or a negative errno, so they can
 * be driven without a mount. */
#ifndef KV_FS_H
#define KV_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "index.h"
#include "opt.h"

struct kv_fs;
struct kv_tier_ent;

/* The largest file size, 2^63 - 1 bytes, as the kernel allows on a FUSE
 * mount: writes and truncates past it get EFBIG. Sparse files cost memory
 * and time for the chunks they have, not for their size (cmap.h). */
#define KV_FILE_MAX ((uint64_t)INT64_MAX)

/* Who is asking: from the FUSE request context. */
struct kv_cred {
	uint32_t uid, gid;
};

/* Open (create when absent) the store in directory store. Refused, with
 * the reason in err and nothing changed: a directory holding other files,
 * a store whose index is missing or is not the one its segments were
 * written with (kvfsctl rebuild recreates it), a chunk or context_depth
 * option other than the store's. A failed open of a directory that held
 * no store leaves nothing behind. */
int kv_fs_open(const char *store, const struct kv_config *cfg, struct kv_fs **out, char *err,
	       size_t errlen);
/* kv_fs_close for a store that was opened but never served (the mount
 * failed): a store this open created is removed again. */
void kv_fs_abandon(struct kv_fs *fs);
/* Does directory store hold a segment file (data only an index names)? */
int kv_fs_has_segments(const char *store);
/* Make the index file db (created empty when absent) and its -wal and
 * -shm owner-only. 0 or a negative errno. */
int kv_fs_private_db(const char *db);
/* How evictions tell the kernel to drop the cached attributes of an inode
 * they deleted, so that its next stat asks (and gets ENOENT). It must not
 * block: entry invalidations, which wait for the parent directory's lock,
 * could hang a killed daemon in the kernel (docs/reliability.md). */
typedef void (*kv_fs_notify_fn)(void *arg, uint64_t ino);
void kv_fs_set_notify(struct kv_fs *fs, kv_fs_notify_fn fn, void *arg);
/* Give back the space of segment bytes no index row names (left by a
 * crash); the store must not be mounted. Adds the bytes to *freed. */
int kv_fs_gc(struct kv_fs *fs, uint64_t *freed);
/* Make depth the store's context depth (kvfsctl context-depth; the store
 * not mounted). Each context at the new depth takes the state of the
 * contexts at the old depth that hold it or lie in it: pinned if any was,
 * the longest TTL of their own (0, never, is the longest), the latest
 * access, their hits. Before anything changes, report gets each context
 * whose pin or TTL of its own is not carried (carried 0: no context at
 * the new depth holds it or lies in it) and each new context that gets
 * one (carried 1). 0 or a negative errno. */
typedef void (*kv_fs_depth_fn)(void *arg, uint64_t ino, const struct kv_ctx_row *r, int carried);
int kv_fs_set_context_depth(struct kv_fs *fs, int depth, kv_fs_depth_fn report, void *arg);
/* Evict down to target stored bytes (kvfsctl evict). */
int kv_fs_evict_to(struct kv_fs *fs, uint64_t target);
/* The Prometheus text of .kvfs/stats into buf; returns its length. */
int kv_fs_stats_text(struct kv_fs *fs, char *buf, size_t len);
/* Open an existing store offline (tools: gc, fsck) with its own chunk
 * size and context depth. -ENOENT, without creating anything, when STORE
 * is not a kvfs store (or has lost its index: the message says to
 * rebuild it); -EBUSY when a daemon holds it. */
int kv_fs_open_existing(const char *store, struct kv_fs **out, char *err, size_t errlen);
/* Publishes every open file and closes the store. */
void kv_fs_close(struct kv_fs *fs);
const struct kv_config *kv_fs_config(const struct kv_fs *fs);
/* The path of ino from the mount's root ("/ns/ctx/file"), or
 * "<inode N>" for a part that has no name (unlinked); returns buf. */
char *kv_fs_path(struct kv_fs *fs, uint64_t ino, char *buf, size_t len);
/* The stats text's gauges of a layer above the filesystem (the GPU fast
 * path, which the daemon starts on the mount: fastpath.h): fn fills its
 * fields of g. NULL: none. */
struct kv_gauges;
typedef void (*kv_fs_gauges_fn)(void *arg, struct kv_gauges *g);
void kv_fs_set_gauges(struct kv_fs *fs, kv_fs_gauges_fn fn, void *arg);

/* Entry replies take one kernel reference on the inode (see kv_fs_forget). */
int kv_fs_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *out);
/* 1 if the entries of directory parent lie below the contexts (the files
 * of a context), whose lookups are not counted as hits or misses. */
int kv_fs_below_context(struct kv_fs *fs, uint64_t parent);
/* Take a reference for an entry returned by kv_fs_readdir (readdirplus);
 * refreshes *a from the in-memory inode. */
void kv_fs_ref(struct kv_fs *fs, struct kv_attr *a);
void kv_fs_forget(struct kv_fs *fs, uint64_t ino, uint64_t nlookup);

int kv_fs_getattr(struct kv_fs *fs, uint64_t ino, struct kv_attr *out);
/* Change the attributes in mask (KV_SET_*) to those in in. */
int kv_fs_setattr(struct kv_fs *fs, uint64_t ino, const struct kv_attr *in, unsigned mask,
		  struct kv_attr *out);

/* The longest symlink target: PATH_MAX less its terminating NUL. */
#define KV_LINK_MAX 4095
/* Create a file, directory, symlink (target != NULL), FIFO or socket in
 * parent. Device nodes get -EPERM (a context holds tensors, not devices),
 * targets over KV_LINK_MAX bytes -ENAMETOOLONG. */
int kv_fs_mknod(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		const struct kv_cred *cred, const char *target, struct kv_attr *out);
/* Hard links would let one file belong to two contexts: always -EPERM. */
int kv_fs_link(struct kv_fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
	       struct kv_attr *out);
int kv_fs_remove(struct kv_fs *fs, uint64_t parent, const char *name, int dir);
/* The rename flags kvfs knows (stdio.h); any other gets -EINVAL. */
#define KV_RENAME_FLAGS (RENAME_NOREPLACE | RENAME_EXCHANGE)
int kv_fs_rename(struct kv_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags);
int kv_fs_readlink(struct kv_fs *fs, uint64_t ino, char *buf, size_t len);
int kv_fs_readdir(struct kv_fs *fs, uint64_t ino, uint64_t off, kv_index_dir_cb cb, void *arg);
int kv_fs_parent(struct kv_fs *fs, uint64_t ino, uint64_t *parent);
int kv_fs_statfs(struct kv_fs *fs, struct statvfs *out);

int kv_fs_setxattr(struct kv_fs *fs, uint64_t ino, const char *name, const void *value, size_t size,
		   int flags);
int kv_fs_getxattr(struct kv_fs *fs, uint64_t ino, const char *name, void *buf, size_t size);
int kv_fs_listxattr(struct kv_fs *fs, uint64_t ino, char *buf, size_t size);
int kv_fs_removexattr(struct kv_fs *fs, uint64_t ino, const char *name);

/* An open file's handle (FUSE's fi->fh) for open(2) flags, and what it
 * lets the GPU ioctls (include/kvfs/ioctl.h) do: KV_FH_READ unless opened
 * O_WRONLY, KV_FH_WRITE unless opened O_RDONLY. */
#define KV_FH_READ 1u
#define KV_FH_WRITE 2u
uint64_t kv_fs_handle(int flags);
unsigned kv_fs_handle_rights(uint64_t fh);
/* kv_file_flush for a close through handle fh. A reader's close publishes
 * what writers have buffered but does not take their errors: the failed
 * chunks stay buffered, and the writers' own flush, fsync or close fails. */
int kv_fs_flush(struct kv_fs *fs, uint64_t ino, uint64_t fh);

/* Open files. Every kv_file_open is paired with one kv_file_release. */
int kv_file_open(struct kv_fs *fs, uint64_t ino, int trunc);
/* Seal buffered data and publish the chunk list; reports a write error
 * that happened in the background since the last call. */
int kv_file_flush(struct kv_fs *fs, uint64_t ino);
int kv_file_fsync(struct kv_fs *fs, uint64_t ino);
int kv_file_release(struct kv_fs *fs, uint64_t ino);
ssize_t kv_file_write(struct kv_fs *fs, uint64_t ino, const void *buf, size_t size, off_t off);
/* Chunk idx of an open file becomes the first len bytes of buf, a chunk
 * buffer of the mount's (the GPU fast path copies into one straight from
 * the device): len is the chunk size, or what reaches the end of the file
 * or past it. The file takes buf, also on failure. len or -errno. */
ssize_t kv_file_write_chunk(struct kv_fs *fs, uint64_t ino, uint64_t idx, void *buf, uint32_t len);

/* A read's reply as a vector over tier entries, a copy of buffered data,
 * and zeros for holes. Release it after replying. The copy lives in a
 * per-thread buffer, valid until the thread's next read. */
#define KV_READV_MAX 40
struct kv_readv {
	struct iovec iov[KV_READV_MAX];
	int n;
	struct kv_tier_ent *refs[KV_READV_MAX];
	int nrefs;
	size_t bytes;
	uint8_t *copy; /* KV_READ_OWN_COPY: the copy, if any */
};
int kv_file_read(struct kv_fs *fs, uint64_t ino, off_t off, size_t size, struct kv_readv *rv);
/* kv_file_read with flags: KV_READ_OWN_COPY: rv owns the copy of buffered
 * data until kv_file_read_done (the thread may read again meanwhile);
 * KV_READ_TIER_ONLY: a chunk not in the DRAM tier fails the read with
 * -EAGAIN instead of being loaded (for callers that load elsewhere);
 * KV_READ_NO_PREFETCH: no read-ahead hints for the following records. */
#define KV_READ_OWN_COPY 1u
#define KV_READ_TIER_ONLY 2u
#define KV_READ_NO_PREFETCH 4u /* the caller loads ahead itself */
int kv_file_read_ex(struct kv_fs *fs, uint64_t ino, off_t off, size_t size, struct kv_readv *rv,
		    unsigned flags);
void kv_file_read_done(struct kv_fs *fs, struct kv_readv *rv);
/* The record that holds chunk idx of an open file now, for a caller that
 * reads it itself (the GPU fast path, from a mapping of the segment):
 * 0, or -EAGAIN when the chunk is a hole, has bytes not yet stored, or
 * its record failed its checks before. */
int kv_file_chunk_rec(struct kv_fs *fs, uint64_t ino, uint64_t idx, struct kv_loc *loc,
		      uint32_t *raw, uint8_t *codec);

/* ---- The requests of a mount ----
 *
 * What the FUSE front end (src/fuse/fuse_ops.c) calls: one operation of
 * struct kv_ops per request, with inode numbers in and 0 (or a byte
 * count) or a negative errno out, like the functions above. Two tables
 * implement them: kv_fs_ops below, the namespace and its files, and
 * kv_ctl_ops, the control directory .kvfs (ctl.h). Which one serves a
 * request is decided in one place, kv_ops_of() and its siblings in ctl.h.
 * The rules a mount keeps (no hard links or device nodes, the length of
 * symlink targets, .kvfs reserved in the root, what a handle lets the GPU
 * ioctls do) are the tables', where the unit tests reach them. */

/* How the kernel may answer again a lookup of a name that is absent
 * (kv_ops.lookup's -ENOENT). */
enum kv_neg {
	KV_NEG_NONE, /* it may not: the error is the answer */
	KV_NEG_ASK,  /* a negative entry, asked about again each time */
	KV_NEG_KEEP, /* a negative entry, kept for the entry timeout */
};

/* How the kernel may cache an open file's pages (kv_ops.open's *cache). */
#define KV_OPEN_KEEP_CACHE 1u /* across opens: every change goes through the mount */
#define KV_OPEN_DIRECT_IO 2u  /* not at all */

/* The GPU ioctl kv_ops.gpu is asked about, as the fast path decoded it
 * (fastpath.h's kv_fast_cmd), or the negative errno of a command that
 * did not decode. */
enum { KV_GPU_QUERY, KV_GPU_IO };

struct kv_ops {
	/* The entry name in directory parent. lookup takes a kernel
	 * reference on what it finds (given back by forget) unless ref
	 * takes none on it; on -ENOENT, *neg says how the absence may be
	 * answered. create is mknod of a regular file (mode's permission
	 * bits) that it opens, with open(2) flags, as open does. */
	int (*lookup)(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *out,
		      enum kv_neg *neg);
	int (*mknod)(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		     const struct kv_cred *cred, const char *target, struct kv_attr *out);
	int (*create)(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		      const struct kv_cred *cred, int flags, struct kv_attr *out, uint64_t *fh,
		      unsigned *cache);
	int (*link)(struct kv_fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
		    struct kv_attr *out);
	int (*remove)(struct kv_fs *fs, uint64_t parent, const char *name, int dir);
	int (*rename)(struct kv_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, unsigned flags);

	/* Inodes. ref takes a kernel reference for an entry readdirplus
	 * hands out (refreshing *a): 1, or 0 when the inode counts none
	 * (the entry is then listed without it). setattr takes a size from
	 * an off_t: one past 2^63 - 1 (negative) gets -EINVAL. */
	int (*ref)(struct kv_fs *fs, struct kv_attr *a);
	void (*forget)(struct kv_fs *fs, uint64_t ino, uint64_t nlookup);
	int (*getattr)(struct kv_fs *fs, uint64_t ino, struct kv_attr *out);
	int (*setattr)(struct kv_fs *fs, uint64_t ino, const struct kv_attr *in, unsigned mask,
		       struct kv_attr *out);
	int (*readlink)(struct kv_fs *fs, uint64_t ino, char *buf, size_t len);
	int (*readdir)(struct kv_fs *fs, uint64_t ino, uint64_t off, kv_index_dir_cb cb, void *arg);
	int (*parent)(struct kv_fs *fs, uint64_t ino, uint64_t *parent);
	int (*setxattr)(struct kv_fs *fs, uint64_t ino, const char *name, const void *value,
			size_t size, int flags);
	int (*getxattr)(struct kv_fs *fs, uint64_t ino, const char *name, void *buf, size_t size);
	int (*listxattr)(struct kv_fs *fs, uint64_t ino, char *buf, size_t size);
	int (*removexattr)(struct kv_fs *fs, uint64_t ino, const char *name);

	/* Open files: open with open(2) flags makes *fh, release ends it. A
	 * read is given back with kv_file_read_done after its reply. gpu:
	 * may GPU ioctl req run on ino through fh (dir: a directory's)? 0,
	 * with *rights (KV_FH_*) for KV_GPU_IO, or a negative errno. */
	int (*open)(struct kv_fs *fs, uint64_t ino, int flags, uint64_t *fh, unsigned *cache);
	int (*read)(struct kv_fs *fs, uint64_t ino, uint64_t fh, off_t off, size_t size,
		    struct kv_readv *rv);
	ssize_t (*write)(struct kv_fs *fs, uint64_t ino, uint64_t fh, const void *buf, size_t size,
			 off_t off);
	int (*flush)(struct kv_fs *fs, uint64_t ino, uint64_t fh);
	int (*fsync)(struct kv_fs *fs, uint64_t ino, uint64_t fh);
	int (*release)(struct kv_fs *fs, uint64_t ino, uint64_t fh);
	int (*gpu)(struct kv_fs *fs, uint64_t ino, uint64_t fh, int dir, int req, unsigned *rights);
};

/* The namespace's operations: kv_fs_* and kv_file_* above, for every
 * inode but the control directory's. */
extern const struct kv_ops kv_fs_ops;

#endif
