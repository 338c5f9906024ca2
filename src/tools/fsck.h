/* SPDX-License-Identifier: Apache-2.0 */
/* kv_fsck: offline check and repair of a store (kvfsctl fsck).
 *
 * The check first runs SQLite's integrity_check on the index: the chunk
 * check walks the index, so a damaged one stops it there (the remedy is
 * kvfsctl rebuild, which recovers the index from the segments). It then
 * reads every chunk record of every file reachable from the root with the reader's full checks (kv_store_read: both checksums,
 * owner inode and chunk index, lengths, decoding), after checking that the
 * record's segment exists and holds the whole record. Records are read on
 * a few threads, in segment order. Repair cuts each damaged file before
 * its first damaged chunk, freeing that chunk's record and every later
 * one (docs/reliability.md, "fsck").
 *
 * The store is opened with kv_fs_open_existing (fs.h), which takes the
 * store's lock like a mount, so no daemon can have it meanwhile. Nothing here is
 * thread-safe: one caller drives one check at a time. */
#ifndef KV_FSCK_H
#define KV_FSCK_H

#include <stddef.h>
#include <stdint.h>

struct kv_fs;

/* A damaged file. */
struct kv_fsck_file {
	uint64_t ino;
	uint64_t size; /* logical size when checked */
	uint64_t *bad; /* damaged chunk indexes, ascending */
	size_t nbad;
};

/* A segment the index names that is missing, or shorter than the records
 * it should hold (size: its length in bytes). */
struct kv_fsck_seg {
	uint32_t seg;
	int missing;
	uint64_t size;
};

struct kv_fsck_report {
	int index_problems;     /* > 0: the index is damaged; nothing else checked */
	char index_msg[256];    /* then SQLite's first complaint */
	uint64_t files, chunks; /* checked: regular files, chunk records */
	uint64_t bytes, stored; /* file bytes in those records; record bytes */
	uint64_t bad_chunks;
	struct kv_fsck_file *bad; /* damaged files, by inode number */
	size_t nbad;
	struct kv_fsck_seg *segs; /* damaged segments, by id */
	size_t nsegs;
};

/* Open store for fsck: refused (-EBUSY, reason in err) while a daemon has
 * it, and -ENOENT for a directory that is not a store (none is created).
 * The mount's context depth is kept, so policy state survives. */

/* Check the index, then every chunk of the store; threads 0 picks a few
 * (one per CPU, at most 8). Returns 0 with *rep filled (free it with
 * kv_fsck_report_free) whether or not anything is damaged, or a negative
 * errno when the check could not be done. */
int kv_fsck_check(struct kv_fs *fs, int threads, struct kv_fsck_report *rep);
void kv_fsck_report_free(struct kv_fsck_report *rep);

/* What kv_fsck_repair did to a file. */
enum kv_fsck_action { KV_FSCK_TRUNCATED = 1, KV_FSCK_REMOVED = 2 };

/* Repair damaged file f (f->nbad > 0, from a report of this store):
 * truncate it to the start of its first damaged chunk, or remove it when
 * that is chunk 0. Every byte before the cut reads as before. Returns the
 * action, with the new size in *size, or a negative errno. */
int kv_fsck_repair(struct kv_fs *fs, const struct kv_fsck_file *f, uint64_t *size);

#endif
