/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the files of the filesystem (src/fs/): the inode,
 * the mount, and what one file of the layer offers the others.
 *
 * THE LOCK TABLE: every mutex of the daemon, in the order they may be
 * taken (a lock may be taken while holding only locks above it). A
 * function that needs its caller to hold one says "Locked (name)." and
 * begins with KV_ASSERT_HELD (src/base/lock.h), checked in debug builds.
 *
 *   kv_policy.evicting   one eviction pass at a time; held across the
 *                        evict hooks, which take everything below
 *   kv_inode.lock        an inode's attributes and its data path state
 *                        (chunk map, buffers, jobs in flight, garbage)
 *   kv_fs.irec_lock      writing inode records and naming them in the
 *                        index, so that an inode's newest record is its
 *                        newest state
 *   kv_policy.lock       the policy's table of contexts (calls the index)
 *   kv_index.lock        the SQLite connection and its statements
 *   kv_index.ckpt_lock   the checkpointer's wake-up
 *   kv_fs.reserve_lock   the index's reserve, kvfs.reserve
 *   kv_lane.lock         one append lane of the store, through the write
 *   kv_store.lock        the segment table, tails and live bytes
 *   kv_tier.lock         the DRAM tier's table and LRU list
 *   kv_bufs.lock         the chunk-buffer pool (a new slab is page-locked
 *                        for the GPU under it: kv_gpu.lock below)
 *   kv_fast.lock         the fast path's queue of requests
 *   rd.lock              one GPU_READ's pieces (fastpath.c)
 *   kv_segmap.lock       mapped segment windows (not held while mapping)
 *   kv_fs.gauges_lock    the stats hook (the hook takes kv_gpu.lock)
 *   kv_gpu.lock          the backend: imports, lanes, page-locked regions
 *   kv_pool.lock         the worker pool's queue
 *
 * Leaves, under which nothing else is taken: kv_fs.itab (the inode table,
 * nlookup and nopen), kv_fs.wb_lock (the write-buffer budget), kv_fs.bad_lock
 * (quarantined records), kv_fs.dirty_lock (inodes whose records are due),
 * kv_fs.inval_lock (inodes evictions deleted), kv_store.lock, kv_pool.lock.
 * libkvfs's rt_lock and cache_lock live in the client, not the daemon. */
#ifndef KV_FS_INT_H
#define KV_FS_INT_H

#include <pthread.h>

#include "clock.h"
#include "cmap.h"
#include "lock.h"
#include "fs.h"
#include "inomap.h"
#include "inoset.h"
#include "policy.h"
#include "pool.h"
#include "stats.h"
#include "store.h"
#include "tier.h"

struct kv_inode {
	uint64_t ino;
	struct kv_inomap_node hnode; /* in fs->inodes, under fs->itab */
	uint64_t nlookup;            /* under fs->itab */
	uint32_t nopen;              /* under fs->itab */
	int gone;                    /* evicted: every operation gets ENOENT */
	uint64_t ctx;                /* context inode (0: none), valid while ctx_gen is current */
	uint64_t ctx_gen;
	int depth;         /* directory depth, valid with ctx */
	uint64_t open_ctx; /* context charged with this inode's opens (under itab) */

	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when a job finishes */
	struct kv_attr attr;

	/* Data path state, under lock; present while users > 0. */
	uint32_t users; /* opens plus transient attaches (truncate) */
	struct kv_cmap map;
	uint32_t nbuf; /* chunks with a buffer */
	uint32_t inflight;
	uint64_t keep;          /* chunks >= keep are gone since the last publish */
	uint64_t truncs;        /* truncates so far: a publish that waited sees one */
	int meta_dirty;         /* size/mtime/stored changed since publish */
	uint64_t ra_next;       /* chunk a sequential reader reads next */
	uint64_t ra_done;       /* chunks up to here were prefetched */
	int error;              /* background write error not yet reported */
	uint32_t fails;         /* chunk stores that failed, ever: a publish that
				  saw one while it waited does not publish */
	int fail_rc;            /* the last of them (never cleared) */
	enum kv_filter filter;  /* shuffle=auto's last choice for this file (atomic) */
	uint32_t encodes;       /* chunks encoded (atomic): every KV_FILTER_EVERY-th samples */
	struct kv_loc *garbage; /* published records superseded, freed after publish */
	size_t ngarbage, garbage_cap;

	/* On fs->wb_list while nbuf > 0, oldest first; under fs->wb_lock. */
	struct kv_inode *wb_prev, *wb_next;
	int wb_listed;
};

struct kv_fs {
	struct kv_config cfg;
	char store_path[4096];
	int lockfd;
	int created; /* this open made the store's files (2: its directory too) */
	/* The index's reserve, kvfs.reserve (fs.c): given up when the index has
	 * no room to record a deletion, made again once there is room; while
	 * it is out, appends are held (kv_store_hold). Under reserve_lock,
	 * which is taken last but for the store's own lock. */
	pthread_mutex_t reserve_lock;
	uint64_t reserve_size; /* 0: none (not a mount) */
	int reserve_out;
	struct kv_index *ix;
	struct kv_store *st;
	struct kv_pool *pool;
	struct kv_bufs *bufs;
	struct kv_tier *tier;
	uint8_t *zeros; /* cfg.chunk bytes of zeros, for holes */

	pthread_mutex_t itab;
	struct kv_inomap inodes; /* the inode table (inode.c), under itab */

	/* Write buffers of all open files together (wbuf=): how many chunk
	 * buffers writers hold, and the inodes holding them, oldest first.
	 * A leaf lock, taken inside kv_inode.lock. */
	pthread_mutex_t wb_lock;
	pthread_cond_t wb_cond; /* signalled when a buffer is given back */
	uint64_t wb_n;
	struct kv_inode *wb_head, *wb_tail;

	struct kv_stats stats;
	struct kv_policy *pol;
	/* Gauges of a layer above (the GPU fast path) for the stats text;
	 * under gauges_lock, a leaf. */
	pthread_mutex_t gauges_lock;
	kv_fs_gauges_fn gauges;
	void *gauges_arg;
	uint64_t topo_gen; /* bumped when a rename moves a tree to another depth */

	/* Records that failed their checks: never read again (reads get EIO at
	 * once) until they are freed, i.e. the chunk is rewritten or removed. */
	pthread_mutex_t bad_lock;
	struct kv_loc *bad;
	size_t nbad, bad_cap;

	/* Serialises writing inode records and naming them in the index, so
	 * that the newest record of an inode holds its newest state. Taken
	 * inside kv_inode.lock (publish), outside the index and store.
	 */
	pthread_mutex_t irec_lock;
	uint64_t irec_bytes; /* live bytes of inode records (atomic) */
	/* Inodes whose records are due (kv_fs_note), written in batches by
	 * the irec thread. */
	pthread_mutex_t dirty_lock;
	pthread_cond_t dirty_cond;
	struct kv_inoset dirty;
	pthread_t irec_tid;
	int irec_started, irec_stop;

	/* Inodes known to the kernel that evictions deleted: their cached
	 * attributes are dropped by the evictor, with no lock held. */
	pthread_mutex_t inval_lock;
	uint64_t *inval;
	size_t ninval, inval_cap;
	kv_fs_notify_fn notify;
	void *notify_arg;
};

/* The in-memory inode for ino, loaded from the index if needed, without
 * taking a reference; NULL with *err set if there is none. Callers must
 * hold a kernel reference or an open for ino. */
struct kv_inode *kv_fs_inode(struct kv_fs *fs, uint64_t ino, int *err);
/* The context ino belongs to (0: none), from the mount's context_depth,
 * and its depth (root = 0) in *depth when not NULL. */
uint64_t kv_fs_ctx_of(struct kv_fs *fs, struct kv_inode *in, int *depth);
/* A record that failed its checks when read for chunk idx of ino: counted,
 * logged once with the file's path, and refused from now on. */
void kv_fs_quarantine(struct kv_fs *fs, uint64_t ino, uint64_t idx, const struct kv_loc *loc);
int kv_fs_quarantined(struct kv_fs *fs, const struct kv_loc *loc);
/* The table's inode for ino, if any, held (a lookup reference) so that a
 * forget cannot free it meanwhile; give it back with kv_fs_release. */
struct kv_inode *kv_fs_hold(struct kv_fs *fs, uint64_t ino);
void kv_fs_release(struct kv_fs *fs, struct kv_inode *in);
/* Free a record: store space and tier entry. */
void kv_fs_free_loc(struct kv_fs *fs, const struct kv_loc *loc);
/* Delete an inode that has no links and no users (index rows and records). */
void kv_fs_drop(struct kv_fs *fs, uint64_t ino);

/* Inode records (src/store/meta.h): ino changed; its record (its state in the
 * index) is appended and named there within KV_IREC_DELAY_MS, freeing the
 * one it replaces. Best effort: a failure is logged and the operation that
 * changed the inode stands. */
struct kv_meta;
void kv_fs_note(struct kv_fs *fs, uint64_t ino);
/* Write the records due now (the irec thread, unmount, tests). */
void kv_fs_irec_flush(struct kv_fs *fs);
/* A publish is about to write ino's record itself (with fs->irec_lock):
 * a record due for an earlier change is not needed any more. */
void kv_fs_irec_writing(struct kv_fs *fs, uint64_t ino);
int kv_fs_write_irec(struct kv_fs *fs, const struct kv_meta *m, struct kv_loc *loc);
void kv_fs_irec_failed(uint64_t ino, int rc);
/* Free an inode record the index no longer names. */
void kv_fs_free_irec(struct kv_fs *fs, const struct kv_loc *loc);

/* ---- shared by the files of the filesystem (src/fs/) ---- */

#define KV_NAME_MAX 255

/* inode.c: the inode table. */
/* Make the table, holding the root (kv_fs_open). */
int kv_fs_itab_init(struct kv_fs *fs, const struct kv_attr *root);
/* Detach every open file (publishing it) and free the table; nonzero if a
 * publish failed (kv_fs_close). */
int kv_fs_itab_fini(struct kv_fs *fs);
/* Re-read what a namespace operation changed in the index (not a regular
 * file's size, stored bytes and mtime: the data path owns them). */
void kv_fs_refresh(struct kv_fs *fs, uint64_t ino);
/* ino lost a link: keep the in-memory copy in step, and delete the file
 * now if nobody holds it. */
void kv_fs_unlinked(struct kv_fs *fs, uint64_t ino, uint32_t nlink);

/* records.c: lists of records to free. */
struct kv_loc_list {
	struct kv_loc *v;
	size_t n, cap;
	uint64_t irec; /* bytes of inode records among them */
};
/* A kv_index_chunk_cb adding each record to a struct kv_loc_list. */
int kv_fs_collect_loc(void *arg, const struct kv_chunk *c);
void kv_fs_loc_reset(struct kv_loc_list *l);
/* Free every record of l (after the index stopped naming them). */
void kv_fs_free_list(struct kv_fs *fs, struct kv_loc_list *l);

/* reserve.c: the index's reserve, kvfs.reserve. */
#define KV_RESERVE_NAME "kvfs.reserve"
void kv_fs_reserve_start(struct kv_fs *fs);
/* Give the reserve up; 1 if there was one to give. */
int kv_fs_reserve_release(struct kv_fs *fs);
void kv_fs_reserve_refill(struct kv_fs *fs);
/* -ENOSPC while the reserve is out: the room left is for deletions. */
int kv_fs_room(struct kv_fs *fs);
/* A deletion's index change rc: on a full index, again with the reserve. */
#define KV_DELETION(fs, rc, call) \
	do { \
		(rc) = (call); \
		if ((rc) == -ENOSPC && kv_fs_reserve_release(fs)) \
			(rc) = (call); \
	} while (0)

/* irec.c: the thread writing inode records. */
int kv_fs_irec_start(struct kv_fs *fs);
void kv_fs_irec_stop(struct kv_fs *fs);
void kv_fs_note_batch(struct kv_fs *fs, const uint64_t *ino, size_t n);
/* A kv_index_ino_cb calling kv_fs_note. */
void kv_fs_note_cb(void *arg, uint64_t ino);

/* evict.c: the policy's hooks (policy.h). */
void kv_fs_policy_hooks(struct kv_fs *fs, struct kv_policy_hooks *h);
/* Bytes of chunk records: what the cap and the stats count. */
uint64_t kv_fs_stored_bytes(void *fs);

/* The chunk holding byte off, and the first byte of chunk idx. */
static inline uint64_t kv_chunk_of(const struct kv_fs *fs, uint64_t off)
{
	return off / fs->cfg.chunk;
}
static inline uint64_t kv_chunk_start(const struct kv_fs *fs, uint64_t idx)
{
	return idx * fs->cfg.chunk;
}
/* Walk the entries of in's chunk map from index i on (see cmap.h). */
#define each_entry(in, i, e) for (; ((e) = kv_cmap_next(&(in)->map, &(i))); (i)++)

/* file.c, for read.c: the in-memory inode of a regular file (EISDIR,
 * EINVAL for others); reading and decoding chunk idx's record at loc into
 * a new tier entry (vouch: the caller holds kv_inode.lock, so a record
 * that fails its checks is damage and quarantined). */
struct kv_inode *kv_file_inode(struct kv_fs *fs, uint64_t ino, int *rc);
struct kv_tier_ent *kv_file_load(struct kv_fs *fs, uint64_t ino, uint64_t idx,
				 const struct kv_loc *loc, uint32_t raw, int vouch, int *err);

/* file.c: attach/detach the data path state of a regular file.
 * Locked (kv_inode.lock). */
int kv_file_attach(struct kv_fs *fs, struct kv_inode *in);
int kv_file_detach(struct kv_fs *fs, struct kv_inode *in);
int kv_file_truncate(struct kv_fs *fs, struct kv_inode *in, uint64_t size);
int kv_file_publish(struct kv_fs *fs, struct kv_inode *in, int durable);
/* The write-buffer budget's state in fs (kv_fs_open, kv_fs_close). */
void kv_file_wb_init(struct kv_fs *fs);
void kv_file_wb_fini(struct kv_fs *fs);

#endif
