/* SPDX-License-Identifier: Apache-2.0 */
/* kv_rebuild: a new index from the segments alone (kvfsctl rebuild).
 *
 * Every segment is scanned (kv_seg_scan_file). For each inode the newest
 * inode record (src/store/meta.h) gives its attributes, names, xattrs, policy
 * settings and, for a regular file, where each chunk's record is; a chunk
 * counts only if a record with intact checksums, that inode and chunk
 * index sits at exactly that place. A file whose record names a chunk
 * that is not there is cut before it (counted as damaged, like fsck
 * --repair). Inodes whose names lead nowhere (their directory has no
 * record) go to /lost+found, named by inode number. Records appended but
 * never published (a daemon killed mid-write) are not named by any inode
 * record and are given back at the next mount.
 *
 * The old kvfs.db (and its -wal, -shm) is moved aside, never deleted. The
 * store's lock is held throughout, so no daemon can have it. */
#ifndef KV_REBUILD_H
#define KV_REBUILD_H

#include <stdint.h>
#include <stdio.h>

struct kv_rebuild_report {
	uint64_t segments;            /* segment files scanned */
	uint64_t chunk_records;       /* intact chunk records found */
	uint64_t inode_records;       /* intact inode records found (all versions) */
	uint64_t bad_records;         /* record headers whose payload failed its checks */
	uint64_t files, dirs, others; /* inodes restored */
	uint64_t bytes;               /* logical bytes of the files restored */
	uint64_t chunks;              /* chunk records the new index names */
	uint64_t lost;                /* inodes placed in /lost+found */
	uint64_t damaged;             /* files cut short */
	uint64_t unlinked;            /* inodes with no names left (deleted while open) */
	uint32_t chunk_size;
	char old_db[4300]; /* where the old index went; empty if there was none */
};

/* Rebuild the index of store. Lines about damaged and lost files go to out
 * (NULL: none). 0 or a negative errno with the reason in err. */
int kv_rebuild(const char *store, FILE *out, struct kv_rebuild_report *rep, char *err,
	       size_t errlen);

#endif
