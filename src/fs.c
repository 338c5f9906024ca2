#include "fs_int.h"

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

#define KV_NAME_MAX 255
#define KV_XATTR_VALUE_MAX 65536

int64_t kv_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->idle, NULL);
	return in;
}

static void inode_free(struct kv_inode *in)
{
	pthread_mutex_destroy(&in->lock);
	pthread_cond_destroy(&in->idle);
	free(in->map);
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
static void refresh(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in;
	struct kv_attr a;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	pthread_mutex_unlock(&fs->itab);
	if (!in || kv_index_getattr(fs->ix, ino, &a))
		return;
	pthread_mutex_lock(&in->lock);
	if (S_ISREG(in->attr.mode)) {
		a.size = in->attr.size;
		a.stored = in->attr.stored;
		a.mtime = in->attr.mtime;
	}
	in->attr = a;
	pthread_mutex_unlock(&in->lock);
}

/* An inode lost a link: keep the in-memory copy in step, and delete the
 * file now if nobody holds it. */
static void unlinked(struct kv_fs *fs, uint64_t ino, uint32_t nlink)
{
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	pthread_mutex_unlock(&fs->itab);
	if (in) {
		pthread_mutex_lock(&in->lock);
		in->attr.nlink = nlink;
		in->attr.ctime = kv_now();
		pthread_mutex_unlock(&in->lock);
	} else if (nlink == 0) {
		kv_fs_drop(fs, ino);
	}
}

/* ---- records ---- */

void kv_fs_free_loc(struct kv_fs *fs, const struct kv_loc *loc)
{
	kv_tier_forget(fs->tier, loc);
	kv_store_free(fs->st, loc);
}

struct loc_list {
	struct kv_loc *v;
	size_t n, cap;
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
	return 0;
}

void kv_fs_drop(struct kv_fs *fs, uint64_t ino)
{
	struct loc_list l = { 0 };
	int rc = kv_index_drop(fs->ix, ino, collect_loc, &l);

	if (rc)
		kv_err("inode %" PRIu64 ": cannot delete: %s", ino, strerror(-rc));
	for (size_t i = 0; !rc && i < l.n; i++)
		kv_fs_free_loc(fs, &l.v[i]);
	free(l.v);
}

/* ---- open / close ---- */

static const char *const kv_store_files[] = { "kvfs.db", "kvfs.db-wal", "kvfs.db-shm",
					      "kvfs.lock", "segments" };

/* A store directory may hold only our files; anything else means it is
 * not a store (or is damaged) and must not be touched. */
static int check_store_dir(const char *path, int *has_db, char *err, size_t errlen)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int foreign = 0;

	*has_db = 0;
	if (!d) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while ((e = readdir(d))) {
		int ours = 0;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		for (size_t i = 0; i < sizeof(kv_store_files) / sizeof(*kv_store_files); i++)
			ours |= !strcmp(e->d_name, kv_store_files[i]);
		if (!strcmp(e->d_name, "kvfs.db"))
			*has_db = 1;
		foreign |= !ours;
	}
	closedir(d);
	if (foreign && !*has_db) {
		snprintf(err, errlen, "%s is not empty and is not a kvfs store (no kvfs.db)", path);
		return -EINVAL;
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

static int open_parts(struct kv_fs *fs, char *err, size_t errlen)
{
	char path[4200];
	uint8_t id[16];
	struct kv_attr root;
	int rc;

	snprintf(path, sizeof(path), "%s/kvfs.db", fs->store_path);
	rc = kv_index_open(path, 1, &fs->ix, err, errlen);
	if (rc)
		return rc;
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
	rc = kv_index_segments(fs->ix, account_seg, fs->st);
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
	if (!rc)
		rc = kv_index_orphans(fs->ix, drop_orphan, fs);
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

int kv_fs_open(const char *store, const struct kv_config *cfg, struct kv_fs **out,
	       char *err, size_t errlen)
{
	struct kv_fs *fs = calloc(1, sizeof(*fs));
	char db[4200];
	int has_db, rc;

	if (!fs)
		return -ENOMEM;
	fs->cfg = *cfg;
	fs->lockfd = -1;
	pthread_mutex_init(&fs->itab, NULL);
	if (!realpath(store, fs->store_path)) {
		if (errno != ENOENT || mkdir(store, 0700) || !realpath(store, fs->store_path)) {
			rc = -errno;
			snprintf(err, errlen, "cannot create store %s: %s", store, strerror(errno));
			goto fail;
		}
	}
	rc = check_store_dir(fs->store_path, &has_db, err, errlen);
	if (!rc && has_db) {
		snprintf(db, sizeof(db), "%s/kvfs.db", fs->store_path);
		rc = kv_index_check(db, err, errlen);
	}
	if (!rc)
		rc = take_lock(fs, err, errlen);
	if (!rc)
		rc = open_parts(fs, err, errlen);
	if (rc)
		goto fail;
	*out = fs;
	return 0;
fail:
	kv_fs_close(fs);
	return rc;
}

void kv_fs_close(struct kv_fs *fs)
{
	if (!fs)
		return;
	for (size_t i = 0; fs->hash && i < fs->nhash; i++) {
		struct kv_inode *in = fs->hash[i];
		while (in) {
			struct kv_inode *next = in->hnext;
			pthread_mutex_lock(&in->lock);
			while (in->users)
				kv_file_detach(fs, in);
			pthread_mutex_unlock(&in->lock);
			if (in->attr.nlink == 0)
				kv_fs_drop(fs, in->ino);
			inode_free(in);
			in = next;
		}
	}
	free(fs->hash);
	kv_pool_stop(fs->pool);
	kv_tier_free(fs->tier);
	kv_bufs_free(fs->bufs);
	free(fs->zeros);
	kv_store_close(fs->st);
	kv_index_close(fs->ix);
	if (fs->lockfd >= 0)
		close(fs->lockfd);
	pthread_mutex_destroy(&fs->itab);
	free(fs);
}

/* ---- namespace ---- */

static int check_name(const char *name)
{
	return strlen(name) > KV_NAME_MAX ? -ENAMETOOLONG : 0;
}

int kv_fs_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *out)
{
	int rc = check_name(name);

	if (!rc)
		rc = kv_index_lookup(fs->ix, parent, name, strlen(name), out);
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
	pthread_mutex_unlock(&in->lock);
	return 0;
}

int kv_fs_setattr(struct kv_fs *fs, uint64_t ino, const struct kv_attr *a, unsigned mask,
		  struct kv_attr *out)
{
	int rc = 0;
	struct kv_inode *in = kv_fs_inode(fs, ino, &rc);
	struct kv_attr next;

	if (!in)
		return rc;
	pthread_mutex_lock(&in->lock);
	if (mask & KV_SET_SIZE) {
		if (S_ISDIR(in->attr.mode))
			rc = -EISDIR;
		else if (!S_ISREG(in->attr.mode))
			rc = -EINVAL;
		if (!rc)
			rc = kv_file_attach(fs, in);
		if (!rc) {
			rc = kv_file_truncate(fs, in, a->size);
			int prc = kv_file_detach(fs, in);
			rc = rc ? rc : prc;
		}
	}
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
	return rc;
}

int kv_fs_mknod(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		const struct kv_cred *cred, const char *target, struct kv_attr *out)
{
	struct kv_attr dir;
	int rc = check_name(name);

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
	return 0;
}

int kv_fs_remove(struct kv_fs *fs, uint64_t parent, const char *name, int dir)
{
	uint64_t ino;
	uint32_t nlink;
	int rc = check_name(name);

	if (!rc)
		rc = kv_index_remove(fs->ix, parent, name, strlen(name), dir, kv_now(), &ino, &nlink);
	if (rc)
		return rc;
	refresh(fs, parent);
	unlinked(fs, ino, nlink);
	return 0;
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
		rc = kv_index_rename(fs->ix, parent, name, strlen(name), newparent, newname,
				     strlen(newname), flags, kv_now(), &victim, &nlink);
	if (rc)
		return rc;
	refresh(fs, parent);
	if (newparent != parent)
		refresh(fs, newparent);
	if (!kv_index_lookup(fs->ix, newparent, newname, strlen(newname), &a))
		refresh(fs, a.ino);
	if ((flags & RENAME_EXCHANGE) &&
	    !kv_index_lookup(fs->ix, parent, name, strlen(name), &a))
		refresh(fs, a.ino);
	if (victim)
		unlinked(fs, victim, nlink);
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

/* ---- xattrs: the user namespace only ---- */

static int check_xattr(const char *name, size_t size)
{
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	if (strlen(name) > XATTR_NAME_MAX || !name[5])
		return -ERANGE;
	return size > KV_XATTR_VALUE_MAX ? -E2BIG : 0;
}

int kv_fs_setxattr(struct kv_fs *fs, uint64_t ino, const char *name, const void *value,
		   size_t size, int flags)
{
	int rc = check_xattr(name, size);

	if (!rc)
		rc = kv_index_setxattr(fs->ix, ino, name, value, size, flags);
	return rc;
}

int kv_fs_getxattr(struct kv_fs *fs, uint64_t ino, const char *name, void *buf, size_t size)
{
	int rc = check_xattr(name, 0);

	return rc == -EOPNOTSUPP ? -ENODATA : rc ? rc : kv_index_getxattr(fs->ix, ino, name, buf, size);
}

int kv_fs_listxattr(struct kv_fs *fs, uint64_t ino, char *buf, size_t size)
{
	return kv_index_listxattr(fs->ix, ino, buf, size);
}

int kv_fs_removexattr(struct kv_fs *fs, uint64_t ino, const char *name)
{
	int rc = check_xattr(name, 0);

	return rc == -EOPNOTSUPP ? -ENODATA : rc ? rc : kv_index_removexattr(fs->ix, ino, name);
}

void kv_fs_counters(struct kv_fs *fs, struct kv_fs_counters *c)
{
	struct kv_tier_stats t;

	kv_tier_stats(fs->tier, &t);
	c->bufs_in_use = kv_bufs_in_use(fs->bufs);
	c->tier_bytes = t.bytes;
	c->tier_hits = t.hits;
	c->tier_misses = t.misses;
}
