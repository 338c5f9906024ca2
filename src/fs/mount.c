/* SPDX-License-Identifier: Apache-2.0 */
/* Opening and closing a store: its directory and lock, the index, the
 * segments, recovery after a crash, the worker pool and tier, the evictor
 * and the irec thread; and the stats text of a mount. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meta.h"

const struct kv_config *kv_fs_config(const struct kv_fs *fs) { return &fs->cfg; }

/* A mount that did not end cleanly (killed, power lost) may have left
 * records that no index row names: chunks appended for a publish that never
 * came. Give their space back before serving, then mark the store in use;
 * kv_fs_close marks it clean again. */
static int recover(struct kv_fs *fs)
{
	int64_t clean = 0;
	int rc = kv_index_meta_get(fs->ix, "clean", &clean);

	/* No mark: an index never mounted (new), or one from before the mark
	 * existed. Only an index that was mounted can say what a mount left
	 * unpublished; any other would call records it never knew garbage. */
	if (rc == -ENOENT)
		rc = 0, clean = 1;
	if (!rc && clean == 0) {
		uint64_t freed = 0;
		rc = kv_fs_gc(fs, &freed);
		if (!rc)
			kv_info("store %s was not unmounted cleanly (or was rebuilt): %llu bytes "
				"of unpublished records given back",
				fs->store_path, (unsigned long long)freed);
	}
	return rc ? rc : kv_index_meta_set(fs->ix, "clean", 0);
}

int kv_fs_stats_text(struct kv_fs *fs, char *buf, size_t len)
{
	struct kv_index_stats is = { 0 };
	struct kv_tier_stats ts;
	struct kv_gauges g = { 0 };

	kv_index_stats(fs->ix, &is);
	kv_index_ctx_count(fs->ix, 0, &g.contexts);
	kv_tier_stats(fs->tier, &ts);
	g.logical = is.logical;
	g.files = is.files;
	g.irec = __atomic_load_n(&fs->irec_bytes, __ATOMIC_RELAXED);
	pthread_mutex_lock(&fs->dirty_lock);
	g.irec_due = kv_inoset_count(&fs->dirty);
	pthread_mutex_unlock(&fs->dirty_lock);
	g.stored = kv_fs_stored_bytes(fs);
	g.capacity = fs->cfg.capacity;
	g.tier_hits = ts.hits;
	g.tier_misses = ts.misses;
	g.tier_bytes = ts.bytes;
	pthread_mutex_lock(&fs->gauges_lock);
	if (fs->gauges)
		fs->gauges(fs->gauges_arg, &g);
	pthread_mutex_unlock(&fs->gauges_lock);
	return kv_stats_format(&fs->stats, &g, buf, len);
}

/* ---- open / close ---- */

/* The files of a store; kvfs.db.rebuild and kvfs.db.lost-* are left by
 * kvfsctl rebuild (one killed midway, the index it replaced). */
static const char *const kv_store_files[] = { "kvfs.db",   "kvfs.db-wal", "kvfs.db-shm",
					      "kvfs.lock", "segments",    KV_RESERVE_NAME };

static int store_file(const char *name)
{
	for (size_t i = 0; i < sizeof(kv_store_files) / sizeof(*kv_store_files); i++)
		if (!strcmp(name, kv_store_files[i]))
			return 1;
	return !strncmp(name, "kvfs.db.rebuild", 15) || !strncmp(name, "kvfs.db.lost-", 13);
}

/* What a store directory holds. */
struct store_dir {
	int db;       /* kvfs.db */
	int segments; /* a segment file: data that only an index can name */
	int ours;     /* any file of a store: nothing of it is created anew */
};

int kv_fs_has_segments(const char *store)
{
	char dir[4200];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/segments", store);
	if (!(d = opendir(dir)))
		return 0;
	while (!n && (e = readdir(d)))
		n = strlen(e->d_name) == 12 && !strcmp(e->d_name + 8, ".seg");
	closedir(d);
	return n;
}

/* A store directory may hold only our files; anything else means it is
 * not a store (or is damaged) and must not be touched. */
static int check_store_dir(const char *path, struct store_dir *sd, char *err, size_t errlen)
{
	DIR *d = opendir(path);
	struct dirent *e;
	struct stat sb;
	int foreign = 0;

	memset(sd, 0, sizeof(*sd));
	if (!d) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		/* An empty kvfs.db is a first open that was killed before the
		 * index was written: a new store, unless there are segments. */
		if (!strcmp(e->d_name, "kvfs.db"))
			sd->db = fstatat(dirfd(d), e->d_name, &sb, 0) || sb.st_size > 0;
		sd->ours |= store_file(e->d_name);
		foreign |= !store_file(e->d_name);
	}
	closedir(d);
	sd->segments = kv_fs_has_segments(path);
	if (foreign && !sd->db && !sd->segments) {
		snprintf(err, errlen, "%s is not empty and is not a kvfs store (no kvfs.db)", path);
		return -EINVAL;
	}
	/* A fresh index would name none of the records: the recovery of an
	 * unclean stop would have freed them all. */
	if (!sd->db && sd->segments) {
		snprintf(err, errlen,
			 "store %s has segments but no index (kvfs.db): not mounted; "
			 "run 'kvfsctl rebuild %s' to recreate the index from the segments",
			 path, path);
		return -ENOENT;
	}
	return 0;
}

static int take_lock(struct kv_fs *fs, char *err, size_t errlen)
{
	char path[4200], pid[32];
	int n;

	snprintf(path, sizeof(path), "%s/kvfs.lock", fs->store_path);
	fs->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fs->lockfd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fs->lockfd, LOCK_EX | LOCK_NB)) {
		n = (int)pread(fs->lockfd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		snprintf(err, errlen, "store %s is in use by another kvfs (pid %s)", fs->store_path,
			 *pid ? pid : "?");
		return -EBUSY;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (fchmod(fs->lockfd, 0600))
		kv_warn("%s: cannot make it owner only: %s", path, strerror(errno));
	if (ftruncate(fs->lockfd, 0) || pwrite(fs->lockfd, pid, (size_t)n, 0) != n)
		kv_warn("%s: cannot record pid", path);
	return 0;
}

static void account_seg(void *arg, uint32_t seg, uint64_t bytes)
{
	kv_store_account(arg, seg, bytes);
}

static void drop_orphan(void *arg, uint64_t ino)
{
	kv_info("inode %" PRIu64 ": removing file unlinked while open", ino);
	kv_fs_drop(arg, ino);
}

/* Chunk positions derive from the chunk size, so a store keeps the one it
 * was created with. */
static int settle_chunk(struct kv_fs *fs, char *err, size_t errlen)
{
	int64_t chunk;
	int rc = kv_index_meta_get(fs->ix, "chunk_size", &chunk);

	if (rc == -ENOENT)
		return kv_index_meta_set(fs->ix, "chunk_size", (int64_t)fs->cfg.chunk);
	if (rc)
		return rc;
	if (kv_opt_given(&fs->cfg, "chunk") && (size_t)chunk != fs->cfg.chunk) {
		snprintf(err, errlen,
			 "store %s was created with chunk=%lldK; it cannot be mounted "
			 "with chunk=%zuK",
			 fs->store_path, (long long)chunk >> 10, fs->cfg.chunk >> 10);
		return -EINVAL;
	}
	fs->cfg.chunk = (size_t)chunk;
	return 0;
}

/* Each open of the store has a number, one more than the last, committed
 * to the index before any segment is made and written into every segment
 * it makes. An index that has not seen the number of the newest segment
 * is older than the data (restored from a backup, or its -wal lost) and
 * would call the newer records garbage and delete their segments. */
static int settle_epoch(struct kv_fs *fs, char *err, size_t errlen)
{
	uint64_t seen = kv_store_epoch_seen(fs->st);
	int64_t epoch = 0;
	int rc = kv_index_meta_get(fs->ix, "epoch", &epoch);

	if (rc && rc != -ENOENT)
		return rc;
	if (seen > (uint64_t)epoch) {
		snprintf(err, errlen,
			 "store %s: its segments were written after its index kvfs.db "
			 "(open %llu, the index knows %lld: restored from a backup, or its -wal "
			 "lost?): not opened, nothing changed; 'kvfsctl rebuild %s' recreates the "
			 "index from the segments",
			 fs->store_path, (unsigned long long)seen, (long long)epoch, fs->store_path);
		return -EINVAL;
	}
	rc = kv_index_meta_set(fs->ix, "epoch", epoch + 1);
	if (!rc)
		kv_store_set_epoch(fs->st, (uint64_t)epoch + 1);
	return rc;
}

/* The context depth is the store's: its context rows, with their pins
 * and TTLs, are the directories at that depth. A mount without the option
 * takes it; one that names another is refused (kvfsctl context-depth
 * changes it, carrying the rows over). A store without one yet (new, or
 * from before it was kept) gets rows for its contexts now. */
static int settle_contexts(struct kv_fs *fs, char *err, size_t errlen)
{
	int64_t depth;
	int rc = kv_index_meta_get(fs->ix, "context_depth", &depth);

	if (!rc && depth >= 0 && depth <= 16) {
		if (kv_opt_given(&fs->cfg, "context_depth") && depth != fs->cfg.context_depth) {
			snprintf(err, errlen,
				 "store %s has context_depth=%lld; it cannot be mounted "
				 "with context_depth=%d (its pins and TTLs belong to the contexts at "
				 "depth %lld; 'kvfsctl context-depth %s %d' changes the store's)",
				 fs->store_path, (long long)depth, fs->cfg.context_depth,
				 (long long)depth, fs->store_path, fs->cfg.context_depth);
			return -EINVAL;
		}
		fs->cfg.context_depth = (int)depth;
		return 0;
	}
	if (rc && rc != -ENOENT)
		return rc;
	rc = kv_index_ctx_scan(fs->ix, fs->cfg.context_depth, kv_now_ns());
	return rc ? rc : kv_index_meta_set(fs->ix, "context_depth", fs->cfg.context_depth);
}

static int open_parts(struct kv_fs *fs, char *err, size_t errlen)
{
	char path[4200];
	uint32_t seg;
	uint8_t id[16];
	struct kv_attr root;
	int rc;

	snprintf(path, sizeof(path), "%s/kvfs.db", fs->store_path);
	rc = kv_index_open(path, 1, &fs->ix, err, errlen);
	if (rc)
		return rc;
	/* Without it (logged), commits run SQLite's checkpoints themselves. */
	if (fs->cfg.mount)
		kv_index_checkpointer(fs->ix);
	kv_index_store_id(fs->ix, id);
	rc = settle_chunk(fs, err, errlen);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/segments", fs->store_path);
	rc = kv_store_open(path, id, fs->cfg.segment, fs->cfg.chunk, &fs->st);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	/* A lane per two compression workers: their appends run in parallel. */
	kv_store_set_lanes(fs->st, (fs->cfg.workers + 1) / 2);
	if ((seg = kv_store_foreign(fs->st))) {
		snprintf(err, errlen,
			 "store %s: segment %08x.seg was not written with this index "
			 "(kvfs.db was replaced or recreated): not opened, nothing changed; "
			 "'kvfsctl rebuild %s' recreates the index from the segments",
			 fs->store_path, seg, fs->store_path);
		return -EINVAL;
	}
	if ((rc = settle_epoch(fs, err, errlen)) || (rc = settle_contexts(fs, err, errlen))) {
		if (rc != -EINVAL)
			snprintf(err, errlen, "cannot load store %s: %s", fs->store_path,
				 strerror(-rc));
		return rc;
	}
	if (fs->cfg.mount)
		kv_fs_reserve_start(fs);
	rc = kv_index_segments(fs->ix, account_seg, fs->st);
	if (!rc)
		rc = kv_index_irec_bytes(fs->ix, &fs->irec_bytes);
	if (!rc)
		rc = kv_pool_start(fs->cfg.workers, 4 * fs->cfg.workers, &fs->pool);
	if (!rc) {
		fs->bufs = kv_bufs_new(fs->cfg.chunk, (size_t)fs->cfg.workers * 4 + 8);
		fs->tier = fs->bufs ? kv_tier_new(fs->bufs, fs->cfg.ram) : NULL;
		fs->zeros = calloc(1, fs->cfg.chunk);
		if (!fs->tier || !fs->zeros)
			rc = -ENOMEM;
	}
	if (!rc)
		rc = kv_index_orphans(fs->ix, drop_orphan, fs);
	if (!rc && fs->cfg.mount)
		rc = recover(fs);
	/* A store written before inode records existed (or just rebuilt) gets
	 * them now, so that kvfsctl rebuild can recover it; once done, later
	 * mounts skip the scan. */
	if (!rc && fs->cfg.mount) {
		int64_t done = 0;
		if (kv_index_meta_get(fs->ix, "inode_records", &done) || !done) {
			rc = kv_index_without_irec(fs->ix, kv_fs_note_cb, fs);
			kv_fs_irec_flush(fs);
			if (!rc)
				rc = kv_index_meta_set(fs->ix, "inode_records", 1);
		}
	}
	if (!rc) {
		struct kv_policy_hooks h;
		kv_fs_policy_hooks(fs, &h);
		rc = kv_policy_new(&fs->cfg, fs->ix, &fs->stats, &h, &fs->pol);
	}
	/* Offline (kvfsctl fsck, gc, context-depth) nothing is
	 * evicted behind the tool's back: TTLs and watermarks are a mount's. */
	if (!rc && fs->cfg.mount)
		rc = kv_policy_start(fs->pol);
	if (!rc)
		rc = kv_index_getattr(fs->ix, KV_ROOT_INO, &root);
	if (!rc)
		rc = kv_fs_itab_init(fs, &root);
	if (rc) {
		snprintf(err, errlen, "cannot load store %s: %s", fs->store_path, strerror(-rc));
		return rc;
	}
	kv_store_drop_empty(fs->st);
	return 0;
}

int kv_fs_open_existing(const char *store, struct kv_fs **out, char *err, size_t errlen)
{
	struct kv_config cfg;
	struct stat sb;
	char db[4200];
	int rc;

	snprintf(db, sizeof(db), "%s/kvfs.db", store);
	if (stat(db, &sb)) {
		rc = -errno;
		if (errno == ENOENT && kv_fs_has_segments(store))
			snprintf(err, errlen,
				 "store %s has segments but no index (kvfs.db): run "
				 "'kvfsctl rebuild %s' to recreate it from the segments",
				 store, store);
		else
			snprintf(err, errlen, "%s: %s", db,
				 errno == ENOENT ? "not found: not a kvfs store" : strerror(errno));
		return rc;
	}
	/* The defaults: chunk size and context depth are the store's. */
	kv_opt_defaults(&cfg);
	return kv_fs_open(store, &cfg, out, err, errlen);
}

/* The index holds names and xattrs: owner only, like segments/. A new
 * index is made 0600 before SQLite creates it (its -wal and -shm take
 * the index's mode); an older store's files are tightened. */
int kv_fs_private_db(const char *db)
{
	char path[4300];
	struct stat sb;
	int fd = open(db, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0 && errno != EEXIST)
		return -errno;
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s%s", db, i == 1 ? "-wal" : i == 2 ? "-shm" : "");
		/* A log without its database would be replayed into the new one. */
		if (fd >= 0 && i)
			unlink(path);
		else if (!lstat(path, &sb) && S_ISREG(sb.st_mode) && (sb.st_mode & 077) &&
			 !chmod(path, sb.st_mode & 0700))
			kv_info("%s: mode %03o, now %03o (owner only)", path, sb.st_mode & 0777,
				sb.st_mode & 0700);
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* Remove the files an open that failed had made in a directory that held
 * none (and the directory, if it made that too). */
static void unmake_store(const char *store, int created)
{
	static const char *const names[] = { "kvfs.db", "kvfs.db-wal", "kvfs.db-shm", "kvfs.lock",
					     KV_RESERVE_NAME };
	char path[4200];
	DIR *d;
	struct dirent *e;

	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		snprintf(path, sizeof(path), "%s/%s", store, names[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/segments", store);
	if ((d = opendir(path))) {
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(path);
	if (created == 2)
		rmdir(store);
}

int kv_fs_open(const char *store, const struct kv_config *cfg, struct kv_fs **out, char *err,
	       size_t errlen)
{
	struct kv_fs *fs = calloc(1, sizeof(*fs));
	struct store_dir sd;
	pthread_condattr_t ca;
	char db[4200];
	int made_dir = 0, rc;

	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	fs->lockfd = -1;
	pthread_mutex_init(&fs->itab, NULL);
	pthread_mutex_init(&fs->inval_lock, NULL);
	pthread_mutex_init(&fs->irec_lock, NULL);
	pthread_mutex_init(&fs->bad_lock, NULL);
	pthread_mutex_init(&fs->dirty_lock, NULL);
	pthread_mutex_init(&fs->reserve_lock, NULL);
	pthread_mutex_init(&fs->gauges_lock, NULL);
	kv_file_wb_init(fs);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->dirty_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (cfg->low >= cfg->high) {
		snprintf(err, errlen, "low=%d must be below high=%d", cfg->low, cfg->high);
		rc = -EINVAL;
		goto fail;
	}
	if (!realpath(store, fs->store_path)) {
		made_dir = errno == ENOENT && !mkdir(store, 0700);
		if (!made_dir || !realpath(store, fs->store_path)) {
			rc = -errno;
			snprintf(err, errlen, "cannot create store %s: %s", store, strerror(errno));
			goto fail;
		}
	}
	rc = check_store_dir(fs->store_path, &sd, err, errlen);
	if (!rc && sd.db) {
		snprintf(db, sizeof(db), "%s/kvfs.db", fs->store_path);
		rc = kv_index_check(db, err, errlen);
		if (rc && sd.segments && strlen(err) + 80 < errlen)
			snprintf(err + strlen(err), errlen - strlen(err),
				 "; if the index is lost or "
				 "damaged, 'kvfsctl rebuild %s' recreates it from the segments",
				 fs->store_path);
	}
	if (rc)
		goto fail;
	/* What this open makes, a failure takes back. */
	fs->created = sd.ours ? 0 : made_dir ? 2 : 1;
	rc = take_lock(fs, err, errlen);
	snprintf(db, sizeof(db), "%s/kvfs.db", fs->store_path);
	if (!rc && (rc = kv_fs_private_db(db)))
		snprintf(err, errlen, "%s: %s", db, strerror(-rc));
	if (!rc)
		rc = open_parts(fs, err, errlen);
	if (!rc && (rc = kv_fs_irec_start(fs)))
		snprintf(err, errlen, "cannot start a thread: %s", strerror(-rc));
	if (rc)
		goto fail;
	*out = fs;
	return 0;
fail:
	kv_fs_abandon(fs);
	return rc;
}

void kv_fs_abandon(struct kv_fs *fs)
{
	char store[sizeof(fs->store_path)];
	int created = fs ? fs->created : 0;

	if (created)
		memcpy(store, fs->store_path, sizeof(store));
	kv_fs_close(fs);
	if (created)
		unmake_store(store, created);
}

void kv_fs_close(struct kv_fs *fs)
{
	int unclean = 0;

	if (!fs)
		return;
	kv_policy_stop(fs->pol);
	unclean = kv_fs_itab_fini(fs);
	/* The records of every change, before the index closes. */
	kv_fs_irec_stop(fs);
	kv_policy_free(fs->pol);
	kv_pool_stop(fs->pool);
	/* Every record is referenced now, unless a publish failed. */
	if (fs->cfg.mount && fs->ix && fs->st && !unclean)
		kv_index_meta_set(fs->ix, "clean", 1);
	kv_tier_free(fs->tier);
	kv_bufs_free(fs->bufs);
	free(fs->zeros);
	kv_store_close(fs->st);
	kv_index_close(fs->ix);
	if (fs->lockfd >= 0)
		close(fs->lockfd);
	pthread_mutex_destroy(&fs->itab);
	pthread_mutex_destroy(&fs->inval_lock);
	pthread_mutex_destroy(&fs->irec_lock);
	pthread_mutex_destroy(&fs->bad_lock);
	pthread_mutex_destroy(&fs->dirty_lock);
	pthread_mutex_destroy(&fs->reserve_lock);
	pthread_mutex_destroy(&fs->gauges_lock);
	kv_file_wb_fini(fs);
	pthread_cond_destroy(&fs->dirty_cond);
	kv_inoset_free(&fs->dirty);
	free(fs->bad);
	free(fs->inval);
	free(fs);
}

void kv_fs_set_gauges(struct kv_fs *fs, kv_fs_gauges_fn fn, void *arg)
{
	pthread_mutex_lock(&fs->gauges_lock);
	fs->gauges = fn;
	fs->gauges_arg = arg;
	pthread_mutex_unlock(&fs->gauges_lock);
}
