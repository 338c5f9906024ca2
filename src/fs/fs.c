#include "fs_int.h"
#include "fastpath.h"
#include "gpu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "meta.h"

#define KV_NAME_MAX 255
#define KV_XATTR_VALUE_MAX 65536

int64_t kv_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct kv_fast *kv_fs_fast(struct kv_fs *fs) { return fs->fast; }

char *kv_fs_path(struct kv_fs *fs, uint64_t ino, char *buf, size_t len)
{
	size_t at = len - 1;
	char name[256];

	if (!len)
		return buf;
	buf[at] = 0;
	for (int depth = 0; ino != KV_ROOT_INO && depth < 256; depth++) {
		uint64_t parent;
		char part[300];
		size_t n;
		if (kv_index_entry_of(fs->ix, ino, &parent, name))
			snprintf(part, sizeof(part), "<inode %llu>", (unsigned long long)ino);
		else
			snprintf(part, sizeof(part), "/%s", name);
		n = strlen(part);
		if (n > at)
			break;
		at -= n;
		memcpy(buf + at, part, n);
		if (part[0] == '<')
			break;
		ino = parent;
	}
	if (at == len - 1 && at) /* the root itself */
		buf[--at] = '/';
	memmove(buf, buf + at, len - at);
	return buf;
}

int kv_fs_quarantined(struct kv_fs *fs, const struct kv_loc *loc)
{
	int bad = 0;

	pthread_mutex_lock(&fs->bad_lock);
	for (size_t i = 0; i < fs->nbad && !bad; i++)
		bad = fs->bad[i].seg == loc->seg && fs->bad[i].off == loc->off;
	pthread_mutex_unlock(&fs->bad_lock);
	return bad;
}

void kv_fs_quarantine(struct kv_fs *fs, uint64_t ino, uint64_t idx, const struct kv_loc *loc)
{
	char path[1024];
	int fresh;

	pthread_mutex_lock(&fs->bad_lock);
	fresh = 1;
	for (size_t i = 0; i < fs->nbad && fresh; i++)
		fresh = !(fs->bad[i].seg == loc->seg && fs->bad[i].off == loc->off);
	if (fresh && fs->nbad == fs->bad_cap) {
		size_t cap = fs->bad_cap ? 2 * fs->bad_cap : 16;
		struct kv_loc *b = realloc(fs->bad, cap * sizeof(*b));
		if (b) {
			fs->bad = b;
			fs->bad_cap = cap;
		}
	}
	if (fresh && fs->nbad < fs->bad_cap)
		fs->bad[fs->nbad++] = *loc;
	pthread_mutex_unlock(&fs->bad_lock);
	if (!fresh)
		return;
	kv_stat_add(&fs->stats.checksum_errors, 1);
	kv_err("%s (inode %llu) chunk %llu: damaged record (segment %08x offset %llu): readers "
	       "get EIO until the chunk is rewritten or the file repaired (kvfsctl fsck --repair)",
	       kv_fs_path(fs, ino, path, sizeof(path)), (unsigned long long)ino,
	       (unsigned long long)idx, loc->seg, (unsigned long long)loc->off);
}

static void unquarantine(struct kv_fs *fs, const struct kv_loc *loc)
{
	pthread_mutex_lock(&fs->bad_lock);
	for (size_t i = 0; i < fs->nbad; i++)
		if (fs->bad[i].seg == loc->seg && fs->bad[i].off == loc->off) {
			fs->bad[i] = fs->bad[--fs->nbad];
			break;
		}
	pthread_mutex_unlock(&fs->bad_lock);
}

const struct kv_config *kv_fs_config(const struct kv_fs *fs) { return &fs->cfg; }

/* ---- inode table ---- */

static size_t ino_slot(const struct kv_fs *fs, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ULL) >> 20) & (fs->nhash - 1);
}

static struct kv_inode *itab_find(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in = fs->hash[ino_slot(fs, ino)];

	while (in && in->ino != ino)
		in = in->hnext;
	return in;
}

static void itab_grow(struct kv_fs *fs)
{
	size_t n = fs->nhash * 2, old = fs->nhash;
	struct kv_inode **h = calloc(n, sizeof(*h)), **oh = fs->hash;

	if (!h)
		return;
	fs->hash = h;
	fs->nhash = n;
	for (size_t i = 0; i < old; i++) {
		struct kv_inode *in = oh[i];
		while (in) {
			struct kv_inode *next = in->hnext;
			size_t s = ino_slot(fs, in->ino);
			in->hnext = h[s];
			h[s] = in;
			in = next;
		}
	}
	free(oh);
}

static void itab_remove(struct kv_fs *fs, struct kv_inode *in)
{
	struct kv_inode **pp = &fs->hash[ino_slot(fs, in->ino)];

	while (*pp && *pp != in)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = in->hnext;
		fs->ninodes--;
	}
}

static struct kv_inode *inode_new(const struct kv_attr *a)
{
	struct kv_inode *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	in->ino = a->ino;
	in->attr = *a;
	in->keep = UINT64_MAX;
	in->filter = KV_FILTER_PROBE;
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->idle, NULL);
	return in;
}

static void inode_free(struct kv_inode *in)
{
	pthread_mutex_destroy(&in->lock);
	pthread_cond_destroy(&in->idle);
	kv_cmap_clear(&in->map);
	free(in->garbage);
	free(in);
}

/* Find or insert the inode for a and add refs kernel references. */
static struct kv_inode *itab_get(struct kv_fs *fs, const struct kv_attr *a, uint64_t refs)
{
	struct kv_inode *in, *fresh = NULL;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, a->ino);
	if (!in) {
		pthread_mutex_unlock(&fs->itab);
		fresh = inode_new(a);
		if (!fresh)
			return NULL;
		pthread_mutex_lock(&fs->itab);
		in = itab_find(fs, a->ino);
		if (!in) {
			if (fs->ninodes >= fs->nhash)
				itab_grow(fs);
			in = fresh;
			in->hnext = fs->hash[ino_slot(fs, in->ino)];
			fs->hash[ino_slot(fs, in->ino)] = in;
			fs->ninodes++;
			fresh = NULL;
		}
	}
	in->nlookup += refs;
	pthread_mutex_unlock(&fs->itab);
	if (fresh)
		inode_free(fresh);
	return in;
}

struct kv_inode *kv_fs_inode(struct kv_fs *fs, uint64_t ino, int *err)
{
	struct kv_attr a;
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	pthread_mutex_unlock(&fs->itab);
	if (in)
		return in;
	*err = kv_index_getattr(fs->ix, ino, &a);
	if (*err)
		return NULL;
	in = itab_get(fs, &a, 0);
	if (!in)
		*err = -ENOMEM;
	return in;
}

void kv_fs_ref(struct kv_fs *fs, struct kv_attr *a)
{
	struct kv_inode *in = itab_get(fs, a, 1);

	if (!in)
		return;
	pthread_mutex_lock(&in->lock);
	*a = in->attr;
	pthread_mutex_unlock(&in->lock);
}

uint64_t kv_fs_ctx_of(struct kv_fs *fs, struct kv_inode *in, int *depth)
{
	uint64_t chain[64], ctx = 0;
	int n = 1, d, D = fs->cfg.context_depth, valid;

	pthread_mutex_lock(&fs->itab);
	valid = in->ctx_gen == fs->topo_gen + 1;
	if (valid) {
		ctx = in->ctx;
		d = in->depth;
	}
	pthread_mutex_unlock(&fs->itab);
	if (valid)
		goto out;
	chain[0] = in->ino;
	while (chain[n - 1] != KV_ROOT_INO && n < 64 &&
	       !kv_index_parent(fs->ix, chain[n - 1], &chain[n]))
		n++;
	d = n - 1;
	if (D == 0)
		ctx = S_ISREG(in->attr.mode) ? in->ino : 0;
	else if (d >= D)
		ctx = chain[d - D];
	/* A walk that stopped short of the root (the tree was evicted or
	 * removed meanwhile) is not remembered. */
	if (chain[n - 1] != KV_ROOT_INO)
		goto out;
	pthread_mutex_lock(&fs->itab);
	in->ctx = ctx;
	in->depth = d;
	in->ctx_gen = fs->topo_gen + 1;
	pthread_mutex_unlock(&fs->itab);
out:
	if (depth)
		*depth = d;
	return ctx;
}

/* Drop a table entry with no references left; deletes a file whose last
 * link is gone. */
static void inode_put(struct kv_fs *fs, struct kv_inode *in)
{
	int gone;

	pthread_mutex_lock(&fs->itab);
	gone = in->nlookup == 0 && in->nopen == 0 && in->ino != KV_ROOT_INO;
	if (gone)
		itab_remove(fs, in);
	pthread_mutex_unlock(&fs->itab);
	if (!gone)
		return;
	if (in->attr.nlink == 0)
		kv_fs_drop(fs, in->ino);
	inode_free(in);
}

void kv_fs_forget(struct kv_fs *fs, uint64_t ino, uint64_t nlookup)
{
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	if (in)
		in->nlookup = in->nlookup > nlookup ? in->nlookup - nlookup : 0;
	pthread_mutex_unlock(&fs->itab);
	if (in)
		inode_put(fs, in);
}

/* Re-read what a namespace operation changed in the index. For regular
 * files the data path owns size, stored bytes and mtime. */
/* The table's inode for ino, if any, held (a lookup reference) so that a
 * forget cannot free it meanwhile; give it back with release(). */
static struct kv_inode *hold(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	if (in)
		in->nlookup++;
	pthread_mutex_unlock(&fs->itab);
	return in;
}

static void release(struct kv_fs *fs, struct kv_inode *in)
{
	kv_fs_forget(fs, in->ino, 1);
}

struct kv_inode *kv_fs_hold(struct kv_fs *fs, uint64_t ino) { return hold(fs, ino); }
void kv_fs_release(struct kv_fs *fs, struct kv_inode *in) { release(fs, in); }

static void refresh(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in = hold(fs, ino);
	struct kv_attr a;

	if (!in)
		return;
	if (!kv_index_getattr(fs->ix, ino, &a)) {
		pthread_mutex_lock(&in->lock);
		if (S_ISREG(in->attr.mode)) {
			a.size = in->attr.size;
			a.stored = in->attr.stored;
			a.mtime = in->attr.mtime;
		}
		in->attr = a;
		pthread_mutex_unlock(&in->lock);
	}
	release(fs, in);
}

/* An inode lost a link: keep the in-memory copy in step, and delete the
 * file now if nobody holds it. */
static void unlinked(struct kv_fs *fs, uint64_t ino, uint32_t nlink)
{
	struct kv_inode *in = hold(fs, ino);

	if (in) {
		pthread_mutex_lock(&in->lock);
		in->attr.nlink = nlink;
		in->attr.ctime = kv_now();
		pthread_mutex_unlock(&in->lock);
		release(fs, in); /* deletes it if that was the last reference */
	} else if (nlink == 0) {
		kv_fs_drop(fs, ino);
	}
}

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
#define KV_RESERVE_NAME "kvfs.reserve"

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
		for (uint64_t off = 0; rc == -EOPNOTSUPP && off < fs->reserve_size; off += sizeof(zero))
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
static void reserve_start(struct kv_fs *fs)
{
	struct statvfs sv;
	uint64_t total;

	if (statvfs(fs->store_path, &sv))
		return;
	total = (uint64_t)sv.f_blocks * sv.f_frsize;
	fs->reserve_size = total / 64 < KV_RESERVE_MIN ? KV_RESERVE_MIN
			 : total / 64 > KV_RESERVE_MAX ? KV_RESERVE_MAX : total / 64;
	if (reserve_fill(fs)) {
		fs->reserve_out = 1;
		kv_store_hold(fs->st, 1);
		kv_warn("store %s: no room for the index's reserve (%llu bytes): writes get ENOSPC "
			"until there is", fs->store_path, (unsigned long long)fs->reserve_size);
	}
}

/* The index had no room to record a deletion: give it the reserve. 1 if
 * there was one to give (try again), 0 if not. */
static int reserve_release(struct kv_fs *fs)
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
			"ENOSPC until it is back", fs->store_path,
			(unsigned long long)fs->reserve_size);
	return given;
}

/* Once twice its size is free again, the reserve is made again and
 * appends go on. */
static void reserve_refill(struct kv_fs *fs)
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
static int room(struct kv_fs *fs)
{
	return __atomic_load_n(&fs->reserve_out, __ATOMIC_RELAXED) ? -ENOSPC : 0;
}

/* A deletion's index change rc: on a full index, again with the reserve. */
#define KV_DELETION(fs, rc, call)                                       \
	do {                                                            \
		(rc) = (call);                                          \
		if ((rc) == -ENOSPC && reserve_release(fs))             \
			(rc) = (call);                                  \
	} while (0)

/* ---- records ---- */

void kv_fs_free_loc(struct kv_fs *fs, const struct kv_loc *loc)
{
	unquarantine(fs, loc);
	kv_tier_forget(fs->tier, loc);
	kv_store_free(fs->st, loc);
}

struct loc_list {
	struct kv_loc *v;
	size_t n, cap;
	uint64_t irec;  /* bytes of inode records among them */
};

static int collect_loc(void *arg, const struct kv_chunk *c)
{
	struct loc_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct kv_loc *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = c->loc;
	if (c->idx == KV_REC_IDX_INODE)
		l->irec += c->loc.len;
	return 0;
}

/* Empty l for a deletion tried again: the failed try collected too. */
static void loc_reset(struct loc_list *l)
{
	l->n = 0;
	l->irec = 0;
}

/* Free the records of l (after the index stopped naming them). */
static void free_list(struct kv_fs *fs, struct loc_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kv_fs_free_loc(fs, &l->v[i]);
	__atomic_sub_fetch(&fs->irec_bytes, l->irec, __ATOMIC_RELAXED);
	free(l->v);
	memset(l, 0, sizeof(*l));
	/* The room a deletion made may bring the reserve back. */
	if (__atomic_load_n(&fs->reserve_out, __ATOMIC_RELAXED))
		reserve_refill(fs);
}

void kv_fs_free_irec(struct kv_fs *fs, const struct kv_loc *loc)
{
	__atomic_sub_fetch(&fs->irec_bytes, loc->len, __ATOMIC_RELAXED);
	kv_fs_free_loc(fs, loc);
}

void kv_fs_drop(struct kv_fs *fs, uint64_t ino)
{
	struct loc_list l = { 0 };
	int rc;

	KV_DELETION(fs, rc, (loc_reset(&l), kv_index_drop(fs->ix, ino, collect_loc, &l)));
	if (rc)
		kv_err("inode %" PRIu64 ": cannot delete: %s", ino, strerror(-rc));
	else
		free_list(fs, &l);
	free(l.v);
	/* kv_index_drop deleted its context row too. */
	if (fs->pol)
		kv_policy_removed(fs->pol, ino);
}

/* ---- inode records (src/store/meta.h) ---- */

int kv_fs_write_meta(struct kv_fs *fs, const struct kv_meta *m, struct kv_loc *loc)
{
	size_t len;
	uint8_t *p = kv_meta_encode(m, &len);
	int rc;

	if (!p)
		return -ENOMEM;
	rc = len > UINT32_MAX - KV_REC_HDR ? -EFBIG
					   : kv_store_append_inode(fs->st, m->attr.ino, p, (uint32_t)len, loc);
	free(p);
	if (!rc)
		__atomic_add_fetch(&fs->irec_bytes, loc->len, __ATOMIC_RELAXED);
	return rc;
}

void kv_fs_meta_failed(uint64_t ino, int rc)
{
	/* A full disk fails every one of them: not worth a line each. */
	if (rc == -ENOSPC)
		kv_debug("inode %" PRIu64 ": inode record not written: %s", ino, strerror(-rc));
	else if (rc != -ENOENT)
		kv_err("inode %" PRIu64 ": inode record not written: %s", ino, strerror(-rc));
}

/* Inode records are written in batches, a little after the change: a
 * metadata operation is then one index transaction, and the records of
 * an inode changed many times in a row (a directory losing its entries)
 * are written once. The index holds the change at once; the records only
 * matter to kvfsctl rebuild, after the index is lost. */
#define KV_META_DELAY_MS 100   /* longest wait of a change for its record */
#define KV_META_BATCH 64       /* records per index transaction */
#define KV_META_PENDING 4096   /* a flush starts at once beyond this */

/* Write the records of n inodes and name them in one transaction. With
 * fs->meta_lock. */
static void note_batch(struct kv_fs *fs, const uint64_t *ino, size_t n)
{
	struct kv_irec_set r[KV_META_BATCH];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct kv_meta m;
		int rc = kv_index_meta(fs->ix, ino[i], 1, &m, &r[k].expect);
		if (!rc) {
			rc = kv_fs_write_meta(fs, &m, &r[k].loc);
			kv_meta_free(&m);
		}
		if (rc)
			kv_fs_meta_failed(ino[i], rc);
		else
			r[k++].ino = ino[i];
	}
	if (k)
		kv_index_set_irecs(fs->ix, r, k);
	for (size_t i = 0; i < k; i++) {
		if (r[i].rc) {
			kv_fs_free_irec(fs, &r[i].loc);
			if (r[i].rc != -ESTALE)
				kv_fs_meta_failed(r[i].ino, r[i].rc);
		} else if (r[i].expect.len) {
			kv_fs_free_irec(fs, &r[i].expect);
		}
	}
}

void kv_fs_meta_flush(struct kv_fs *fs)
{
	struct kv_inoset due = { 0 };
	uint64_t ino[KV_META_BATCH];
	size_t n = 0;

	pthread_mutex_lock(&fs->dirty_lock);
	kv_inoset_take(&fs->dirty, &due);
	pthread_mutex_unlock(&fs->dirty_lock);
	for (size_t i = 0; i < due.cap; i++) {
		if (due.slot[i])
			ino[n++] = due.slot[i];
		if (n == KV_META_BATCH || (n && i + 1 == due.cap)) {
			/* Publishes wait for the lock: one batch at a time. */
			pthread_mutex_lock(&fs->meta_lock);
			note_batch(fs, ino, n);
			pthread_mutex_unlock(&fs->meta_lock);
			n = 0;
		}
	}
	kv_inoset_free(&due);
}

void kv_fs_note(struct kv_fs *fs, uint64_t ino)
{
	int rc, wake;

	pthread_mutex_lock(&fs->dirty_lock);
	wake = fs->dirty.n == 0 || fs->dirty.n + 1 == KV_META_PENDING;
	rc = kv_inoset_add(&fs->dirty, ino);
	if (wake)
		pthread_cond_signal(&fs->dirty_cond);
	pthread_mutex_unlock(&fs->dirty_lock);
	if (rc) { /* no memory for the set: write it now */
		pthread_mutex_lock(&fs->meta_lock);
		note_batch(fs, &ino, 1);
		pthread_mutex_unlock(&fs->meta_lock);
	}
}

void kv_fs_meta_writing(struct kv_fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->dirty_lock);
	kv_inoset_del(&fs->dirty, ino);
	pthread_mutex_unlock(&fs->dirty_lock);
}

static void *meta_thread(void *arg)
{
	struct kv_fs *fs = arg;
	struct timespec at;

	pthread_mutex_lock(&fs->dirty_lock);
	while (!fs->meta_stop) {
		if (!fs->dirty.n) {
			pthread_cond_wait(&fs->dirty_cond, &fs->dirty_lock);
			continue;
		}
		/* Gather what comes in the next moment, unless plenty is due. */
		kv_deadline(&at, KV_META_DELAY_MS);
		while (!fs->meta_stop && fs->dirty.n < KV_META_PENDING &&
		       pthread_cond_timedwait(&fs->dirty_cond, &fs->dirty_lock, &at) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&fs->dirty_lock);
		kv_fs_meta_flush(fs);
		pthread_mutex_lock(&fs->dirty_lock);
	}
	pthread_mutex_unlock(&fs->dirty_lock);
	return NULL;
}

static int meta_start(struct kv_fs *fs)
{
	int rc = -pthread_create(&fs->meta_tid, NULL, meta_thread, fs);

	fs->meta_started = !rc;
	return rc;
}

static void meta_stop(struct kv_fs *fs)
{
	if (fs->meta_started) {
		kv_thread_stop(&fs->dirty_lock, &fs->dirty_cond, &fs->meta_stop, fs->meta_tid);
		fs->meta_started = 0;
	}
	if (fs->ix && fs->st)
		kv_fs_meta_flush(fs);
}

static void note_cb(void *arg, uint64_t ino) { kv_fs_note(arg, ino); }

/* ---- eviction ---- */

struct evict_ctx {
	struct loc_list l; /* first: collect_loc fills it */
	struct kv_fs *fs;
};

static void mark_gone(void *arg, uint64_t ino)
{
	struct evict_ctx *e = arg;
	struct kv_inode *in;

	struct kv_fs *fs = e->fs;

	if (!(in = hold(fs, ino)))
		return;
	pthread_mutex_lock(&in->lock);
	in->gone = 1;
	in->attr.nlink = 0;
	pthread_mutex_unlock(&in->lock);
	release(fs, in);
	/* In the table: the kernel may cache it. */
	pthread_mutex_lock(&fs->inval_lock);
	if (fs->ninval == fs->inval_cap) {
		size_t cap = fs->inval_cap ? 2 * fs->inval_cap : 16;
		uint64_t *v = realloc(fs->inval, cap * sizeof(*v));
		if (v) {
			fs->inval = v;
			fs->inval_cap = cap;
		}
	}
	if (fs->ninval < fs->inval_cap)
		fs->inval[fs->ninval++] = ino;
	pthread_mutex_unlock(&fs->inval_lock);
}

static int evict_tree(void *arg, uint64_t ino)
{
	struct evict_ctx e = { .fs = arg };
	struct kv_fs *fs = arg;
	uint64_t parent;
	char name[256];
	int rc = kv_index_entry_of(fs->ix, ino, &parent, name);

	if (!rc)
		KV_DELETION(fs, rc, (loc_reset(&e.l), kv_index_drop_tree(fs->ix, ino, kv_now(),
									      collect_loc, mark_gone, &e)));
	if (!rc)
		free_list(fs, &e.l);
	free(e.l.v);
	if (!rc)
		refresh(fs, parent);
	return rc;
}

/* On the evictor thread, with no lock held. Entries are not invalidated:
 * a lookup of an evicted name finds the inode gone (ENOENT), creating it
 * again revalidates the entry (exclusive create), and cached entries
 * expire within the mount's 1-s timeout. */
static void send_invalidations(void *arg)
{
	struct kv_fs *fs = arg;
	uint64_t *v;
	size_t n;

	pthread_mutex_lock(&fs->inval_lock);
	v = fs->inval;
	n = fs->ninval;
	fs->inval = NULL;
	fs->ninval = fs->inval_cap = 0;
	pthread_mutex_unlock(&fs->inval_lock);
	for (size_t i = 0; fs->notify && i < n; i++)
		fs->notify(fs->notify_arg, v[i]);
	free(v);
}

/* After each pass of the evictor (every second). */
static void evictor_pass(void *arg)
{
	send_invalidations(arg);
	if (__atomic_load_n(&((struct kv_fs *)arg)->reserve_out, __ATOMIC_RELAXED))
		reserve_refill(arg);
}

static uint64_t ctx_bytes(void *arg, uint64_t ino)
{
	struct kv_usage u;

	return kv_index_usage(((struct kv_fs *)arg)->ix, ino, &u) ? 1 : u.stored;
}

/* Bytes of chunk records: what the cap, eviction targets and the stats
 * count. Inode records (a few hundred bytes an inode) are not counted. */
static uint64_t stored_bytes(void *arg)
{
	struct kv_fs *fs = arg;
	uint64_t live = kv_store_live(fs->st), irec = __atomic_load_n(&fs->irec_bytes, __ATOMIC_RELAXED);

	return live > irec ? live - irec : 0;
}

static int backing_space(void *arg, uint64_t *avail, uint64_t *total)
{
	struct statvfs sv;

	if (statvfs(((struct kv_fs *)arg)->store_path, &sv))
		return -errno;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	*total = (uint64_t)sv.f_blocks * sv.f_frsize;
	return 0;
}

void kv_fs_set_notify(struct kv_fs *fs, kv_fs_notify_fn fn, void *arg)
{
	fs->notify = fn;
	fs->notify_arg = arg;
}

int kv_fs_gc(struct kv_fs *fs, uint64_t *freed)
{
	struct loc_list l = { 0 };
	size_t i = 0;
	int rc = kv_index_extents(fs->ix, collect_loc, &l);

	for (uint32_t seg = 1; !rc && seg <= kv_store_highest(fs->st); seg++) {
		size_t first = i;
		while (i < l.n && l.v[i].seg == seg)
			i++;
		rc = kv_store_reclaim(fs->st, seg, l.v + first, i - first, freed);
	}
	free(l.v);
	return rc;
}

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
				"of unpublished records given back", fs->store_path,
				(unsigned long long)freed);
	}
	return rc ? rc : kv_index_meta_set(fs->ix, "clean", 0);
}

/* ---- changing the context depth (kvfsctl context-depth) ---- */

/* A context at the old depth, with its row. */
struct old_ctx {
	struct kv_ctx_row row;
	int carried;           /* some context at the new depth took its state */
};

/* A context at the new depth, and the state it takes over. */
struct new_ctx {
	struct kv_ctx_row row;
	int from;              /* old contexts merged into it */
};

struct redepth {
	struct kv_fs *fs;
	int from, to;          /* the old and the new depth */
	struct old_ctx *old;
	struct new_ctx *new;
	size_t nold, nnew, capold, capnew;
	int rc;
};

/* Where the walk is: depth, and the old and new contexts (indexes + 1;
 * 0: none) at or above it. */
struct redepth_at {
	struct redepth *r;
	int depth;
	size_t old, new;
};

static int grow_to(void **v, size_t *cap, size_t n, size_t size)
{
	void *p;

	if (n < *cap)
		return 0;
	if (!(p = realloc(*v, (*cap ? 2 * *cap : 64) * size)))
		return -ENOMEM;
	*v = p;
	*cap = *cap ? 2 * *cap : 64;
	return 0;
}

/* What a context at the new depth takes from one at the old depth: a pin
 * if any had one, the longest TTL of their own (0: never), the last
 * access, the hits. */
static void merge_ctx(struct kv_ctx_row *to, const struct kv_ctx_row *o)
{
	to->pin |= o->pin;
	if (o->ttl >= 0)
		to->ttl = to->ttl < 0 ? o->ttl : (!to->ttl || !o->ttl) ? 0 : to->ttl > o->ttl ? to->ttl : o->ttl;
	if (o->last_access > to->last_access)
		to->last_access = o->last_access;
	to->hits += o->hits;
}

static int redepth_visit(void *arg, const char *name, size_t len, const struct kv_attr *a,
			 uint64_t next);

static int redepth_node(struct redepth_at *at, const struct kv_attr *a)
{
	struct redepth *r = at->r;
	int d = at->depth, dir = S_ISDIR(a->mode), reg = S_ISREG(a->mode);
	struct redepth_at below = *at;

	if ((r->from ? dir && d == r->from : reg)) {
		struct old_ctx *o;
		if ((r->rc = grow_to((void **)&r->old, &r->capold, r->nold, sizeof(*o))))
			return 1;
		o = &r->old[r->nold++];
		memset(o, 0, sizeof(*o));
		if (kv_index_ctx_get(r->fs->ix, a->ino, &o->row))
			o->row = (struct kv_ctx_row){ .ino = a->ino, .ttl = -1 };
		below.old = r->nold;
	}
	if ((r->to ? dir && d == r->to : reg)) {
		struct new_ctx *n;
		if ((r->rc = grow_to((void **)&r->new, &r->capnew, r->nnew, sizeof(*n))))
			return 1;
		n = &r->new[r->nnew++];
		memset(n, 0, sizeof(*n));
		n->row = (struct kv_ctx_row){ .ino = a->ino, .ttl = -1 };
		below.new = r->nnew;
	}
	/* Every pair of an old context and a new one that holds it or lies
	 * in it meets once: where the lower of the two is reached. */
	if (below.old && below.new && (below.old != at->old || below.new != at->new)) {
		merge_ctx(&r->new[below.new - 1].row, &r->old[below.old - 1].row);
		r->new[below.new - 1].from++;
		r->old[below.old - 1].carried = 1;
	}
	below.depth = d + 1;
	if (dir && (!r->from || !r->to || d < (r->from > r->to ? r->from : r->to)) &&
	    (r->rc = kv_index_readdir(r->fs->ix, a->ino, 0, redepth_visit, &below)))
		return 1;
	return r->rc != 0;
}

static int redepth_visit(void *arg, const char *name, size_t len, const struct kv_attr *a,
			 uint64_t next)
{
	struct redepth_at *at = arg;

	(void)name;
	(void)len;
	(void)next;
	return redepth_node(at, a);
}

int kv_fs_set_context_depth(struct kv_fs *fs, int depth, kv_fs_depth_fn report, void *arg)
{
	struct redepth r = { .fs = fs, .from = fs->cfg.context_depth, .to = depth };
	struct redepth_at top = { .r = &r, .depth = 1 };
	struct kv_ctx_row *rows = NULL;
	size_t n = 0;
	int rc;

	if (depth < 0 || depth > 16)
		return -EINVAL;
	if (depth == r.from)
		return 0;
	/* Rows the daemon kept in memory are the index's now. */
	kv_policy_flush(fs->pol);
	rc = kv_index_readdir(fs->ix, KV_ROOT_INO, 0, redepth_visit, &top);
	rc = rc ? rc : r.rc;
	if (!rc && !(rows = malloc((r.nnew ? r.nnew : 1) * sizeof(*rows))))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < r.nnew; i++)
		if (r.new[i].from)
			rows[n++] = r.new[i].row;
	/* Said before it is done: what is not carried is never lost unseen. */
	for (size_t i = 0; !rc && report && i < r.nold; i++)
		if (!r.old[i].carried && (r.old[i].row.pin || r.old[i].row.ttl >= 0))
			report(arg, r.old[i].row.ino, &r.old[i].row, 0);
	for (size_t i = 0; !rc && report && i < n; i++)
		if (rows[i].pin || rows[i].ttl >= 0)
			report(arg, rows[i].ino, &rows[i], 1);
	if (!rc)
		rc = kv_index_ctx_scan(fs->ix, depth, kv_now());
	for (size_t i = 0; !rc && i < n; i++)
		if (!rows[i].last_access)
			rows[i].last_access = kv_now();
	if (!rc && n)
		rc = kv_index_ctx_save(fs->ix, rows, n);
	if (!rc)
		rc = kv_index_meta_set(fs->ix, "context_depth", depth);
	if (!rc)
		fs->cfg.context_depth = depth;
	free(rows);
	free(r.old);
	free(r.new);
	return rc;
}

int kv_fs_evict_to(struct kv_fs *fs, uint64_t target)
{
	return kv_policy_evict_to(fs->pol, target, KV_EVICT_MANUAL);
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
	g.irec_due = fs->dirty.n;
	pthread_mutex_unlock(&fs->dirty_lock);
	g.stored = stored_bytes(fs);
	g.capacity = fs->cfg.capacity;
	g.tier_hits = ts.hits;
	g.tier_misses = ts.misses;
	g.tier_bytes = ts.bytes;
	{
		struct kv_fast_stats fst;
		struct kv_gpu_stats gst;
		kv_fast_stats(fs->fast, &fst);
		kv_gpu_stats(fs->gpu, &gst);
		g.gpu_requests = fst.requests;
		g.gpu_errors = fst.errors;
		g.gpu_read_bytes = fst.read_bytes;
		g.gpu_write_bytes = fst.write_bytes;
		g.gpu_mappings = gst.mappings;
		g.gpu_ipc_opens = gst.opens;
		g.gpu_pinned_bytes = gst.registered;
		g.gpu_load_wait_ns = fst.load_wait_ns;
		g.gpu_copy_wait_ns = fst.copy_wait_ns;
		g.gpu_load_ns = fst.load_ns;
		g.gpu_loads = fst.loads;
		g.gpu_direct = fst.direct;
		g.gpu_window_bytes = fst.pinned_windows;
	}
	return kv_stats_format(&fs->stats, &g, buf, len);
}

/* ---- open / close ---- */

/* The files of a store; kvfs.db.rebuild and kvfs.db.lost-* are left by
 * kvfsctl rebuild (one killed midway, the index it replaced). */
static const char *const kv_store_files[] = { "kvfs.db", "kvfs.db-wal", "kvfs.db-shm",
					      "kvfs.lock", "segments", KV_RESERVE_NAME };

static int store_file(const char *name)
{
	for (size_t i = 0; i < sizeof(kv_store_files) / sizeof(*kv_store_files); i++)
		if (!strcmp(name, kv_store_files[i]))
			return 1;
	return !strncmp(name, "kvfs.db.rebuild", 15) || !strncmp(name, "kvfs.db.lost-", 13);
}

/* What a store directory holds. */
struct store_dir {
	int db;        /* kvfs.db */
	int segments;  /* a segment file: data that only an index can name */
	int ours;      /* any file of a store: nothing of it is created anew */
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
		snprintf(err, errlen, "store %s has segments but no index (kvfs.db): not mounted; "
			 "run 'kvfsctl rebuild %s' to recreate the index from the segments", path,
			 path);
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
		snprintf(err, errlen, "store %s was created with chunk=%lldK; it cannot be mounted "
			 "with chunk=%zuK", fs->store_path, (long long)chunk >> 10, fs->cfg.chunk >> 10);
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
		snprintf(err, errlen, "store %s: its segments were written after its index kvfs.db "
			 "(open %llu, the index knows %lld: restored from a backup, or its -wal "
			 "lost?): not opened, nothing changed; 'kvfsctl rebuild %s' recreates the "
			 "index from the segments", fs->store_path, (unsigned long long)seen,
			 (long long)epoch, fs->store_path);
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
			snprintf(err, errlen, "store %s has context_depth=%lld; it cannot be mounted "
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
	rc = kv_index_ctx_scan(fs->ix, fs->cfg.context_depth, kv_now());
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
		snprintf(err, errlen, "store %s: segment %08x.seg was not written with this index "
			 "(kvfs.db was replaced or recreated): not opened, nothing changed; "
			 "'kvfsctl rebuild %s' recreates the index from the segments",
			 fs->store_path, seg, fs->store_path);
		return -EINVAL;
	}
	if ((rc = settle_epoch(fs, err, errlen)) || (rc = settle_contexts(fs, err, errlen))) {
		if (rc != -EINVAL)
			snprintf(err, errlen, "cannot load store %s: %s", fs->store_path, strerror(-rc));
		return rc;
	}
	if (fs->cfg.mount)
		reserve_start(fs);
	rc = kv_index_segments(fs->ix, account_seg, fs->st);
	if (!rc)
		rc = kv_index_irec_bytes(fs->ix, &fs->irec_bytes);
	if (!rc)
		rc = kv_pool_start(fs->cfg.workers, 4 * fs->cfg.workers, &fs->pool);
	if (!rc) {
		fs->bufs = kv_bufs_new(fs->cfg.chunk, (size_t)fs->cfg.workers * 4 + 8);
		fs->tier = fs->bufs ? kv_tier_new(fs->bufs, fs->cfg.ram) : NULL;
		fs->zeros = calloc(1, fs->cfg.chunk);
		fs->nhash = 1024;
		fs->hash = calloc(fs->nhash, sizeof(*fs->hash));
		if (!fs->tier || !fs->zeros || !fs->hash)
			rc = -ENOMEM;
	}
	if (!rc) {
		fs->gpu = kv_gpu_new(fs->cfg.gpu);
		if (fs->gpu)
			kv_gpu_set_shared(fs->gpu, fs->cfg.allow_other);
		fs->fast = fs->gpu ? kv_fast_new(fs, fs->gpu) : NULL;
		if (!fs->fast)
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
			rc = kv_index_without_irec(fs->ix, note_cb, fs);
			kv_fs_meta_flush(fs);
			if (!rc)
				rc = kv_index_meta_set(fs->ix, "inode_records", 1);
		}
	}
	if (!rc) {
		struct kv_policy_hooks h = { fs, evict_tree, stored_bytes, backing_space,
					     evictor_pass, ctx_bytes, 1 };
		rc = kv_policy_new(&fs->cfg, fs->ix, &fs->stats, &h, &fs->pol);
	}
	/* Offline (kvfsctl fsck, gc, context-depth) nothing is
	 * evicted behind the tool's back: TTLs and watermarks are a mount's. */
	if (!rc && fs->cfg.mount)
		rc = kv_policy_start(fs->pol);
	if (!rc)
		rc = kv_index_getattr(fs->ix, KV_ROOT_INO, &root);
	if (!rc && !itab_get(fs, &root, 1))
		rc = -ENOMEM;
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
			snprintf(err, errlen, "store %s has segments but no index (kvfs.db): run "
				 "'kvfsctl rebuild %s' to recreate it from the segments", store, store);
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
	static const char *const names[] = { "kvfs.db", "kvfs.db-wal", "kvfs.db-shm",
					     "kvfs.lock", KV_RESERVE_NAME };
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

int kv_fs_open(const char *store, const struct kv_config *cfg, struct kv_fs **out,
	       char *err, size_t errlen)
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
	pthread_mutex_init(&fs->meta_lock, NULL);
	pthread_mutex_init(&fs->bad_lock, NULL);
	pthread_mutex_init(&fs->dirty_lock, NULL);
	pthread_mutex_init(&fs->reserve_lock, NULL);
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
			snprintf(err + strlen(err), errlen - strlen(err), "; if the index is lost or "
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
	if (!rc && (rc = meta_start(fs)))
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
	/* GPU requests end first; the backend lets go of the chunk buffers
	 * before they are unmapped. */
	kv_fast_free(fs->fast);
	kv_gpu_free(fs->gpu);
	kv_policy_stop(fs->pol);
	for (size_t i = 0; fs->hash && i < fs->nhash; i++) {
		struct kv_inode *in = fs->hash[i];
		while (in) {
			struct kv_inode *next = in->hnext;
			pthread_mutex_lock(&in->lock);
			while (in->users)
				unclean |= kv_file_detach(fs, in) != 0;
			pthread_mutex_unlock(&in->lock);
			if (in->attr.nlink == 0)
				kv_fs_drop(fs, in->ino);
			inode_free(in);
			in = next;
		}
	}
	free(fs->hash);
	/* The records of every change, before the index closes. */
	meta_stop(fs);
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
	pthread_mutex_destroy(&fs->meta_lock);
	pthread_mutex_destroy(&fs->bad_lock);
	pthread_mutex_destroy(&fs->dirty_lock);
	pthread_mutex_destroy(&fs->reserve_lock);
	kv_file_wb_fini(fs);
	pthread_cond_destroy(&fs->dirty_cond);
	kv_inoset_free(&fs->dirty);
	free(fs->bad);
	free(fs->inval);
	free(fs);
}

/* ---- namespace ---- */

static int check_name(const char *name)
{
	return strlen(name) > KV_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* Is a child of parent at the context depth? */
/* Directory depth of parent (root = 0), or -1 when it is gone. */
static int dir_depth(struct kv_fs *fs, uint64_t parent)
{
	int rc = 0, depth = -1;
	struct kv_inode *in = kv_fs_inode(fs, parent, &rc);

	if (in)
		kv_fs_ctx_of(fs, in, &depth);
	return depth;
}

static int at_ctx_depth(struct kv_fs *fs, uint64_t parent)
{
	int depth = dir_depth(fs, parent);

	return depth >= 0 && (fs->cfg.context_depth == 0 || depth + 1 == fs->cfg.context_depth);
}

int kv_fs_below_context(struct kv_fs *fs, uint64_t parent)
{
	return fs->cfg.context_depth && dir_depth(fs, parent) >= fs->cfg.context_depth;
}

static int expired(const struct kv_config *cfg, const struct kv_ctx_row *r)
{
	int64_t ttl = r->ttl >= 0 ? r->ttl : cfg->ttl;

	/* ttl <= KV_TTL_MAX keeps this within int64. */
	return !r->pin && ttl > 0 && r->last_access + ttl * 1000000000 < kv_now();
}

int kv_fs_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *out)
{
	int rc = check_name(name), ctx;

	if (!rc)
		rc = kv_index_lookup(fs->ix, parent, name, strlen(name), out);
	ctx = (!rc || rc == -ENOENT) && at_ctx_depth(fs, parent);
	/* With context_depth=0 only regular files are contexts. */
	if (ctx && !rc && !fs->cfg.context_depth && !S_ISREG(out->mode))
		ctx = 0;
	if (ctx && !rc) {
		struct kv_ctx_row r;
		/* An expired context is gone already for its readers; the
		 * evictor reclaims it within a second. */
		if (!kv_policy_get(fs->pol, out->ino, &r) && expired(&fs->cfg, &r))
			rc = -ENOENT;
	}
	if (ctx)
		kv_stat_add(rc ? &fs->stats.misses : &fs->stats.hits, 1);
	if (!rc)
		kv_fs_ref(fs, out);
	return rc;
}

int kv_fs_getattr(struct kv_fs *fs, uint64_t ino, struct kv_attr *out)
{
	int rc = 0;
	struct kv_inode *in = kv_fs_inode(fs, ino, &rc);

	if (!in)
		return rc;
	pthread_mutex_lock(&in->lock);
	*out = in->attr;
	rc = in->gone ? -ENOENT : 0;
	pthread_mutex_unlock(&in->lock);
	return rc;
}

int kv_fs_setattr(struct kv_fs *fs, uint64_t ino, const struct kv_attr *a, unsigned mask,
		  struct kv_attr *out)
{
	int rc = 0;
	struct kv_inode *in = kv_fs_inode(fs, ino, &rc);
	struct kv_attr next;

	if (!in)
		return rc;
	if ((rc = room(fs)))
		return rc;
	if (mask & KV_SET_SIZE) {
		if (S_ISDIR(in->attr.mode))
			rc = -EISDIR;
		else if (!S_ISREG(in->attr.mode))
			rc = -EINVAL;
		/* Opened like any writer, so that its context cannot be evicted
		 * under the truncate (an eviction freed the records the truncate
		 * then freed again); held meanwhile, since the release may drop
		 * the last reference (fsck has no kernel one). */
		if (!rc && !hold(fs, ino))
			rc = -ENOENT;
		else if (!rc && (rc = kv_file_open(fs, ino, 0)))
			release(fs, in);
		if (!rc) {
			/* A truncate is done when it returns: published now, also
			 * while other descriptors hold the file open (their
			 * buffered writes are published with it, as by a close). */
			pthread_mutex_lock(&in->lock);
			rc = kv_file_truncate(fs, in, a->size);
			if (!rc)
				rc = kv_file_publish(fs, in, 0);
			pthread_mutex_unlock(&in->lock);
			int prc = kv_file_release(fs, ino);
			rc = rc ? rc : prc;
			pthread_mutex_lock(&in->lock);
			next = in->attr;
			pthread_mutex_unlock(&in->lock);
			release(fs, in);
			if (rc) {
				*out = next;
				return rc;
			}
			if (!(in = kv_fs_inode(fs, ino, &rc)))
				return rc;
		}
	}
	pthread_mutex_lock(&in->lock);
	next = in->attr;
	if (mask & KV_SET_MODE)
		next.mode = (next.mode & S_IFMT) | (a->mode & 07777);
	if (mask & KV_SET_UID)
		next.uid = a->uid;
	if (mask & KV_SET_GID)
		next.gid = a->gid;
	if (mask & KV_SET_ATIME)
		next.atime = a->atime;
	if (mask & KV_SET_MTIME)
		next.mtime = a->mtime;
	next.ctime = kv_now();
	mask = (mask & ~KV_SET_SIZE) | KV_SET_CTIME;
	if (!rc)
		rc = kv_index_setattr(fs->ix, &next, mask);
	if (!rc)
		in->attr = next;
	*out = in->attr;
	pthread_mutex_unlock(&in->lock);
	if (!rc)
		kv_fs_note(fs, ino);
	return rc;
}

int kv_fs_mknod(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		const struct kv_cred *cred, const char *target, struct kv_attr *out)
{
	struct kv_attr dir;
	int rc = check_name(name);

	if (!rc)
		rc = room(fs);
	if (!rc)
		rc = kv_fs_getattr(fs, parent, &dir);
	if (rc)
		return rc;
	if (!S_ISDIR(dir.mode))
		return -ENOTDIR;
	if (dir.nlink == 0)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->mode = mode;
	out->uid = cred->uid;
	out->gid = cred->gid;
	if (dir.mode & S_ISGID) {
		out->gid = dir.gid;
		if (S_ISDIR(mode))
			out->mode |= S_ISGID;
	}
	out->atime = out->mtime = out->ctime = kv_now();
	rc = kv_index_create(fs->ix, parent, name, strlen(name), out, target);
	if (rc)
		return rc;
	refresh(fs, parent);
	kv_fs_ref(fs, out);
	if (S_ISDIR(mode) && fs->cfg.context_depth && at_ctx_depth(fs, parent))
		kv_policy_created(fs->pol, out->ino);
	if (S_ISDIR(mode)) {
		/* At once: the records of the files about to be made in it name
		 * it, and a rebuild needs it to put them back in place. */
		pthread_mutex_lock(&fs->meta_lock);
		note_batch(fs, &out->ino, 1);
		pthread_mutex_unlock(&fs->meta_lock);
	} else {
		kv_fs_note(fs, out->ino);
	}
	return 0;
}

int kv_fs_remove(struct kv_fs *fs, uint64_t parent, const char *name, int dir)
{
	uint64_t ino;
	uint32_t nlink;
	int rc = check_name(name);

	if (!rc)
		KV_DELETION(fs, rc, kv_index_remove(fs->ix, parent, name, strlen(name), dir, kv_now(),
						    &ino, &nlink));
	if (rc)
		return rc;
	refresh(fs, parent);
	unlinked(fs, ino, nlink);
	if (dir) {
		kv_policy_removed(fs->pol, ino);
		kv_index_ctx_del(fs->ix, ino);
	}
	/* A file still open keeps its records until its last close: its record
	 * now says it has no name. The directory's record keeps the highest
	 * inode number handed out (never reused, even by a rebuild). */
	kv_fs_note(fs, ino);
	kv_fs_note(fs, parent);
	return 0;
}

/* ino moved from parent to newparent: the cached contexts of it and of
 * everything below may be stale (a file moved into another context), and
 * when the two sit at different depths ino may have become a context or
 * stopped being one. */
static void moved(struct kv_fs *fs, uint64_t ino, uint64_t parent, uint64_t newparent)
{
	int rc = 0, d1 = -1, d2 = -1, D = fs->cfg.context_depth;
	struct kv_inode *a = kv_fs_inode(fs, parent, &rc), *b = kv_fs_inode(fs, newparent, &rc);

	if (a)
		kv_fs_ctx_of(fs, a, &d1);
	if (b)
		kv_fs_ctx_of(fs, b, &d2);
	pthread_mutex_lock(&fs->itab);
	fs->topo_gen++;
	pthread_mutex_unlock(&fs->itab);
	if (d1 == d2 || D == 0)
		return;
	if (d2 + 1 == D)
		kv_policy_created(fs->pol, ino);
	else if (d1 + 1 == D) {
		kv_policy_removed(fs->pol, ino);
		kv_index_ctx_del(fs->ix, ino);
	}
}

int kv_fs_rename(struct kv_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags)
{
	struct kv_attr a;
	uint64_t victim;
	uint32_t nlink;
	int rc = check_name(name);

	if (!rc)
		rc = check_name(newname);
	if (!rc)
		rc = room(fs);
	if (!rc)
		rc = kv_index_rename(fs->ix, parent, name, strlen(name), newparent, newname,
				     strlen(newname), flags, kv_now(), &victim, &nlink);
	if (rc)
		return rc;
	refresh(fs, parent);
	if (!kv_index_lookup(fs->ix, newparent, newname, strlen(newname), &a)) {
		refresh(fs, a.ino);
		if (newparent != parent)
			moved(fs, a.ino, parent, newparent);
		kv_fs_note(fs, a.ino);
	}
	if (newparent != parent)
		refresh(fs, newparent);
	if ((flags & RENAME_EXCHANGE) &&
	    !kv_index_lookup(fs->ix, parent, name, strlen(name), &a)) {
		refresh(fs, a.ino);
		kv_fs_note(fs, a.ino);
	}
	if (victim) {
		unlinked(fs, victim, nlink);
		if (!nlink)
			kv_policy_removed(fs->pol, victim);
		kv_fs_note(fs, victim);
	}
	return 0;
}

int kv_fs_readlink(struct kv_fs *fs, uint64_t ino, char *buf, size_t len)
{
	return kv_index_readlink(fs->ix, ino, buf, len);
}

int kv_fs_readdir(struct kv_fs *fs, uint64_t ino, uint64_t off, kv_index_dir_cb cb, void *arg)
{
	return kv_index_readdir(fs->ix, ino, off, cb, arg);
}

int kv_fs_parent(struct kv_fs *fs, uint64_t ino, uint64_t *parent)
{
	return kv_index_parent(fs->ix, ino, parent);
}

int kv_fs_statfs(struct kv_fs *fs, struct statvfs *out)
{
	if (statvfs(fs->store_path, out))
		return -errno;
	out->f_namemax = KV_NAME_MAX;
	return 0;
}

/* ---- xattrs: the user namespace, and user.kvfs.* for the cache policy ---- */

#define KV_XATTR_PREFIX "user.kvfs."

/* Policy attributes: r = read-only, c = contexts only. */
static const struct { const char *name; int writable, ctx_only; } kv_xattrs[] = {
	{ "ttl", 1, 1 },           { "pin", 1, 1 },   { "logical_bytes", 0, 0 },
	{ "stored_bytes", 0, 0 },  { "codec", 0, 0 }, { "last_access", 0, 0 },
	{ "hits", 0, 0 },
};
#define KV_NXATTRS (sizeof(kv_xattrs) / sizeof(kv_xattrs[0]))

static int check_xattr(const char *name, size_t size)
{
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	if (strlen(name) > XATTR_NAME_MAX || !name[5])
		return -ERANGE;
	return size > KV_XATTR_VALUE_MAX ? -E2BIG : 0;
}

static int policy_attr(const char *name)
{
	if (strncmp(name, KV_XATTR_PREFIX, strlen(KV_XATTR_PREFIX)))
		return -1;
	for (size_t i = 0; i < KV_NXATTRS; i++)
		if (!strcmp(name + strlen(KV_XATTR_PREFIX), kv_xattrs[i].name))
			return (int)i;
	return (int)KV_NXATTRS;
}

/* The inode, its context, and whether it is that context itself. */
static int locate(struct kv_fs *fs, uint64_t ino, struct kv_inode **in, uint64_t *ctx)
{
	int rc = 0;

	*ctx = 0;
	*in = kv_fs_inode(fs, ino, &rc);
	if (!*in)
		return rc;
	*ctx = kv_fs_ctx_of(fs, *in, NULL);
	return (*in)->gone ? -ENOENT : 0;
}

static int policy_get(struct kv_fs *fs, uint64_t ino, int which, char *val, size_t len)
{
	struct kv_inode *in;
	struct kv_ctx_row r;
	struct kv_usage u = { 0 };
	uint64_t ctx;
	int rc = locate(fs, ino, &in, &ctx);

	if (rc)
		return rc;
	if (!ctx || (kv_xattrs[which].ctx_only && ctx != ino))
		return -ENODATA;
	rc = kv_policy_get(fs->pol, ctx, &r);
	if (rc)
		return rc;
	if (S_ISREG(in->attr.mode)) {
		pthread_mutex_lock(&in->lock);
		u = (struct kv_usage){ in->attr.size, in->attr.stored, 1 };
		pthread_mutex_unlock(&in->lock);
	} else if (which == 2 || which == 3) {
		rc = kv_index_usage(fs->ix, ino, &u);
	}
	switch (which) {
	case 0: snprintf(val, len, "%lld", (long long)(r.ttl >= 0 ? r.ttl : fs->cfg.ttl)); break;
	case 1: snprintf(val, len, "%d", r.pin); break;
	case 2: snprintf(val, len, "%llu", (unsigned long long)u.logical); break;
	case 3: snprintf(val, len, "%llu", (unsigned long long)u.stored); break;
	case 4: rc = kv_index_codecs(fs->ix, ino, val, len); break;
	case 5: snprintf(val, len, "%lld.%09lld", (long long)(r.last_access / 1000000000),
			 (long long)(r.last_access % 1000000000)); break;
	default: snprintf(val, len, "%llu", (unsigned long long)r.hits); break;
	}
	return rc;
}

static int policy_set(struct kv_fs *fs, uint64_t ino, int which, const char *value, size_t size)
{
	struct kv_inode *in;
	uint64_t ctx;
	char v[32], *end;
	long long n;
	int rc;

	if (which == (int)KV_NXATTRS || !kv_xattrs[which].writable)
		return -EPERM;
	rc = locate(fs, ino, &in, &ctx);
	if (rc)
		return rc;
	if (ctx != ino || size == 0 || size >= sizeof(v))
		return -EINVAL;
	memcpy(v, value, size);
	v[size] = 0;
	if (v[size - 1] == '\n')
		v[size - 1] = 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || errno || (which == 1 && n > 1) || n > KV_TTL_MAX)
		return -EINVAL;
	rc = which == 1 ? kv_policy_set_pin(fs->pol, ctx, (int)n) : kv_policy_set_ttl(fs->pol, ctx, n);
	if (!rc)
		kv_fs_note(fs, ctx);
	return rc;
}

int kv_fs_setxattr(struct kv_fs *fs, uint64_t ino, const char *name, const void *value,
		   size_t size, int flags)
{
	int rc = check_xattr(name, size), which = policy_attr(name);

	if (!rc && which >= 0)
		return policy_set(fs, ino, which, value, size);
	if (!rc)
		rc = room(fs);
	if (!rc)
		rc = kv_index_setxattr(fs->ix, ino, name, value, size, flags);
	if (!rc)
		kv_fs_note(fs, ino);
	return rc;
}

int kv_fs_getxattr(struct kv_fs *fs, uint64_t ino, const char *name, void *buf, size_t size)
{
	int rc = check_xattr(name, 0), which = policy_attr(name);
	char val[128];
	size_t n;

	if (rc)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	if (which < 0)
		return kv_index_getxattr(fs->ix, ino, name, buf, size);
	if (which == (int)KV_NXATTRS)
		return -ENODATA;
	rc = policy_get(fs, ino, which, val, sizeof(val));
	if (rc)
		return rc;
	n = strlen(val);
	if (size && n > size)
		return -ERANGE;
	if (size)
		memcpy(buf, val, n);
	return (int)n;
}

/* The user.kvfs.* attributes are not listed: rsync -X and cp --preserve
 * would copy them to places where they mean nothing (or are read-only).
 * They are read and set by name. */
int kv_fs_listxattr(struct kv_fs *fs, uint64_t ino, char *buf, size_t size)
{
	return kv_index_listxattr(fs->ix, ino, buf, size);
}

int kv_fs_removexattr(struct kv_fs *fs, uint64_t ino, const char *name)
{
	int rc = check_xattr(name, 0);

	/* A namespace that cannot be set cannot be removed either; the kernel
	 * also sends setting an empty POSIX ACL as a remove, which must fail
	 * as setting one does. */
	if (rc)
		return rc;
	if (policy_attr(name) >= 0)
		return -EPERM;
	KV_DELETION(fs, rc, kv_index_removexattr(fs->ix, ino, name));
	if (!rc)
		kv_fs_note(fs, ino);
	return rc;
}
