/* SPDX-License-Identifier: Apache-2.0 */
/* The index's reserve, kvfs.reserve: space given up when the index has no
 * room to record a deletion, so that deletions and evictions can always be
 * recorded (docs/reliability.md). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the index's reserve ---- */

/* SQLite needs room in its log to record anything, deletions included:
 * on a full backing filesystem nothing could be removed to make room.
 * Like CockroachDB's emergency ballast, a mount keeps a file of
 * KV_RESERVE_MIN..KV_RESERVE_MAX bytes (1/64 of the filesystem) that is
 * given up when a deletion or an eviction finds no room in the index; the
 * deletion is tried again and frees its records. Until the file can be
 * made again (twice its size free), appends get ENOSPC at once, so the
 * room stays the index's. */
#define KV_RESERVE_MIN (UINT64_C(1) << 20)
#define KV_RESERVE_MAX (UINT64_C(64) << 20)

/* Make the reserve file whole; 0 or a negative errno (then it is gone). */
static int reserve_fill(struct kv_fs *fs)
{
	char path[4200];
	static const uint8_t zero[65536];
	struct stat sb;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/" KV_RESERVE_NAME, fs->store_path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (!fstat(fd, &sb) && (uint64_t)sb.st_blocks * 512 >= fs->reserve_size) {
		close(fd);
		return 0;
	}
	if (fallocate(fd, 0, 0, (off_t)fs->reserve_size)) {
		rc = -errno;
		/* Where blocks cannot be allocated ahead, they are written. */
		for (uint64_t off = 0; rc == -EOPNOTSUPP && off < fs->reserve_size;
		     off += sizeof(zero))
			if (pwrite(fd, zero, sizeof(zero), (off_t)off) != (ssize_t)sizeof(zero))
				rc = errno ? -errno : -ENOSPC;
		if (rc == -EOPNOTSUPP)
			rc = 0;
	}
	if (rc || fsync(fd))
		rc = rc ? rc : -errno;
	close(fd);
	if (rc)
		unlink(path);
	return rc;
}

/* At mount: size the reserve and make it. A filesystem too full for it
 * starts with the reserve out. */
void kv_fs_reserve_start(struct kv_fs *fs)
{
	struct statvfs sv;
	uint64_t total;

	if (statvfs(fs->store_path, &sv))
		return;
	total = (uint64_t)sv.f_blocks * sv.f_frsize;
	fs->reserve_size = total / 64 < KV_RESERVE_MIN   ? KV_RESERVE_MIN
			   : total / 64 > KV_RESERVE_MAX ? KV_RESERVE_MAX
							 : total / 64;
	if (reserve_fill(fs)) {
		fs->reserve_out = 1;
		kv_store_hold(fs->st, 1);
		kv_warn("store %s: no room for the index's reserve (%llu bytes): writes get ENOSPC "
			"until there is",
			fs->store_path, (unsigned long long)fs->reserve_size);
	}
}

/* The index had no room to record a deletion: give it the reserve. 1 if
 * there was one to give (try again), 0 if not. */
int kv_fs_reserve_release(struct kv_fs *fs)
{
	char path[4200];
	int given = 0;

	pthread_mutex_lock(&fs->reserve_lock);
	if (fs->reserve_size && !fs->reserve_out) {
		kv_store_hold(fs->st, 1);
		snprintf(path, sizeof(path), "%s/" KV_RESERVE_NAME, fs->store_path);
		given = !unlink(path);
		fs->reserve_out = 1;
	}
	pthread_mutex_unlock(&fs->reserve_lock);
	if (given)
		kv_warn("store %s: the backing filesystem is full; the index's reserve (%llu bytes) "
			"is given up so that deletions and evictions can be recorded, and writes get "
			"ENOSPC until it is back",
			fs->store_path, (unsigned long long)fs->reserve_size);
	return given;
}

/* Once twice its size is free again, the reserve is made again and
 * appends go on. */
void kv_fs_reserve_refill(struct kv_fs *fs)
{
	struct statvfs sv;
	int back = 0;

	pthread_mutex_lock(&fs->reserve_lock);
	if (fs->reserve_out && !statvfs(fs->store_path, &sv) &&
	    (uint64_t)sv.f_bavail * sv.f_frsize >= 2 * fs->reserve_size && !reserve_fill(fs)) {
		fs->reserve_out = 0;
		kv_store_hold(fs->st, 0);
		back = 1;
	}
	pthread_mutex_unlock(&fs->reserve_lock);
	if (back)
		kv_info("store %s: the index's reserve is back; writes go on", fs->store_path);
}

/* While the reserve is out, the room there is belongs to deletions:
 * other changes of the namespace get ENOSPC, as appends do. */
int kv_fs_room(struct kv_fs *fs)
{
	return __atomic_load_n(&fs->reserve_out, __ATOMIC_RELAXED) ? -ENOSPC : 0;
}
