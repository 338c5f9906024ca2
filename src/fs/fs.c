/* SPDX-License-Identifier: Apache-2.0 */
/* The namespace of a mount: lookups, attributes, creating, removing and
 * renaming entries, directories, links and statfs (fs.h), and kv_fs_ops,
 * the table through which a mount's requests reach it and its files. The
 * rules an entry must follow (names, types, symlink targets, no hard links)
 * and those of open handles are kept here, where the unit tests reach them
 * without a mount; the reserved .kvfs is the control directory's (ctl.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

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

/* ---- namespace ---- */

static int check_name(const char *name) { return strlen(name) > KV_NAME_MAX ? -ENAMETOOLONG : 0; }

/* The nodes a mount makes: no devices, and symlink targets that readlink
 * can give back. */
static int check_node(uint32_t mode, const char *target)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK: break;
	default: return -EPERM;
	}
	return target && strlen(target) > KV_LINK_MAX ? -ENAMETOOLONG : 0;
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
	return !r->pin && ttl > 0 && r->last_access + ttl * 1000000000 < kv_now_ns();
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
	if ((rc = kv_fs_room(fs)))
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
		if (!rc && !kv_fs_hold(fs, ino))
			rc = -ENOENT;
		else if (!rc && (rc = kv_file_open(fs, ino, 0)))
			kv_fs_release(fs, in);
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
			kv_fs_release(fs, in);
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
	next.ctime = kv_now_ns();
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
	int rc = check_node(mode, target);

	if (!rc)
		rc = check_name(name);
	if (!rc)
		rc = kv_fs_room(fs);
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
	out->atime = out->mtime = out->ctime = kv_now_ns();
	rc = kv_index_create(fs->ix, parent, name, strlen(name), out, target);
	if (rc)
		return rc;
	kv_fs_refresh(fs, parent);
	kv_fs_ref(fs, out);
	if (S_ISDIR(mode) && fs->cfg.context_depth && at_ctx_depth(fs, parent))
		kv_policy_created(fs->pol, out->ino);
	if (S_ISDIR(mode)) {
		/* At once: the records of the files about to be made in it name
		 * it, and a rebuild needs it to put them back in place. */
		pthread_mutex_lock(&fs->irec_lock);
		kv_fs_note_batch(fs, &out->ino, 1);
		pthread_mutex_unlock(&fs->irec_lock);
	} else {
		kv_fs_note(fs, out->ino);
	}
	return 0;
}

int kv_fs_link(struct kv_fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
	       struct kv_attr *out)
{
	(void)fs;
	(void)ino;
	(void)newparent;
	(void)newname;
	(void)out;
	return -EPERM;
}

int kv_fs_remove(struct kv_fs *fs, uint64_t parent, const char *name, int dir)
{
	uint64_t ino;
	uint32_t nlink;
	int rc = check_name(name);

	if (!rc)
		KV_DELETION(fs, rc,
			    kv_index_remove(fs->ix, parent, name, strlen(name), dir, kv_now_ns(),
					    &ino, &nlink));
	if (rc)
		return rc;
	kv_fs_refresh(fs, parent);
	kv_fs_unlinked(fs, ino, nlink);
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
	int rc = flags & ~KV_RENAME_FLAGS ? -EINVAL : check_name(name);

	if (!rc)
		rc = check_name(newname);
	if (!rc)
		rc = kv_fs_room(fs);
	if (!rc)
		rc = kv_index_rename(fs->ix, parent, name, strlen(name), newparent, newname,
				     strlen(newname), flags, kv_now_ns(), &victim, &nlink);
	if (rc)
		return rc;
	kv_fs_refresh(fs, parent);
	if (!kv_index_lookup(fs->ix, newparent, newname, strlen(newname), &a)) {
		kv_fs_refresh(fs, a.ino);
		if (newparent != parent)
			moved(fs, a.ino, parent, newparent);
		kv_fs_note(fs, a.ino);
	}
	if (newparent != parent)
		kv_fs_refresh(fs, newparent);
	if ((flags & RENAME_EXCHANGE) && !kv_index_lookup(fs->ix, parent, name, strlen(name), &a)) {
		kv_fs_refresh(fs, a.ino);
		kv_fs_note(fs, a.ino);
	}
	if (victim) {
		kv_fs_unlinked(fs, victim, nlink);
		if (!nlink)
			kv_policy_removed(fs->pol, victim);
		kv_fs_note(fs, victim);
	}
	return 0;
}

/* A regular file's handle: the FH_FILE bit and open(2)'s access mode. */
#define FH_FILE 0x100u

uint64_t kv_fs_handle(int flags) { return FH_FILE | (uint64_t)(flags & O_ACCMODE); }

unsigned kv_fs_handle_rights(uint64_t fh)
{
	unsigned rights = 0;

	if ((fh & FH_FILE) && (fh & O_ACCMODE) != O_WRONLY)
		rights |= KV_FH_READ;
	if ((fh & FH_FILE) && (fh & O_ACCMODE) != O_RDONLY)
		rights |= KV_FH_WRITE;
	return rights;
}

int kv_fs_flush(struct kv_fs *fs, uint64_t ino, uint64_t fh)
{
	int rc = kv_file_flush(fs, ino);

	return (fh & FH_FILE) && !(kv_fs_handle_rights(fh) & KV_FH_WRITE) ? 0 : rc;
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

/* ---- kv_fs_ops: the requests of a mount on the namespace and its files ---- */

static int ns_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *out,
		     enum kv_neg *neg)
{
	int rc = kv_fs_lookup(fs, parent, name, out);

	/* A name below a context (a layer file about to be created) is
	 * remembered as absent: every name is made through this mount. A
	 * context's name is not: it counts as a miss each time, and an
	 * expired context still holds its name until evicted. */
	*neg = rc != -ENOENT                     ? KV_NEG_NONE
	       : kv_fs_below_context(fs, parent) ? KV_NEG_KEEP
						 : KV_NEG_ASK;
	return rc;
}

static int ns_open(struct kv_fs *fs, uint64_t ino, int flags, uint64_t *fh, unsigned *cache)
{
	int rc = kv_file_open(fs, ino, flags & O_TRUNC);

	if (rc)
		return rc;
	*fh = kv_fs_handle(flags);
	/* The kernel may cache data across opens: every change goes through
	 * this mount. */
	*cache = KV_OPEN_KEEP_CACHE;
	return 0;
}

static int ns_create(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		     const struct kv_cred *cred, int flags, struct kv_attr *out, uint64_t *fh,
		     unsigned *cache)
{
	int rc = kv_fs_mknod(fs, parent, name, S_IFREG | (mode & 07777), cred, NULL, out);

	if (rc)
		return rc;
	rc = ns_open(fs, out->ino, flags & ~O_TRUNC, fh, cache);
	if (rc)
		kv_fs_forget(fs, out->ino, 1);
	return rc;
}

static int ns_ref(struct kv_fs *fs, struct kv_attr *a)
{
	kv_fs_ref(fs, a);
	return 1;
}

static int ns_setattr(struct kv_fs *fs, uint64_t ino, const struct kv_attr *in, unsigned mask,
		      struct kv_attr *out)
{
	/* kv_fs_setattr takes it for too large (-EFBIG). */
	if ((mask & KV_SET_SIZE) && in->size > (uint64_t)INT64_MAX)
		return -EINVAL;
	return kv_fs_setattr(fs, ino, in, mask, out);
}

static int ns_read(struct kv_fs *fs, uint64_t ino, uint64_t fh, off_t off, size_t size,
		   struct kv_readv *rv)
{
	(void)fh;
	return kv_file_read(fs, ino, off, size, rv);
}

static ssize_t ns_write(struct kv_fs *fs, uint64_t ino, uint64_t fh, const void *buf, size_t size,
			off_t off)
{
	(void)fh;
	return kv_file_write(fs, ino, buf, size, off);
}

static int ns_fsync(struct kv_fs *fs, uint64_t ino, uint64_t fh)
{
	(void)fh;
	return kv_file_fsync(fs, ino);
}

static int ns_release(struct kv_fs *fs, uint64_t ino, uint64_t fh)
{
	(void)fh;
	return kv_file_release(fs, ino);
}

static int ns_gpu(struct kv_fs *fs, uint64_t ino, uint64_t fh, int dir, int req, unsigned *rights)
{
	(void)fs;
	(void)ino;
	if (req < 0)
		return req;
	if (req == KV_GPU_QUERY)
		return 0; /* it needs no file */
	if (dir)
		return -EISDIR;
	*rights = kv_fs_handle_rights(fh);
	return 0;
}

const struct kv_ops kv_fs_ops = {
	.lookup = ns_lookup,
	.mknod = kv_fs_mknod,
	.create = ns_create,
	.link = kv_fs_link,
	.remove = kv_fs_remove,
	.rename = kv_fs_rename,
	.ref = ns_ref,
	.forget = kv_fs_forget,
	.getattr = kv_fs_getattr,
	.setattr = ns_setattr,
	.readlink = kv_fs_readlink,
	.readdir = kv_fs_readdir,
	.parent = kv_fs_parent,
	.setxattr = kv_fs_setxattr,
	.getxattr = kv_fs_getxattr,
	.listxattr = kv_fs_listxattr,
	.removexattr = kv_fs_removexattr,
	.open = ns_open,
	.read = ns_read,
	.write = ns_write,
	.flush = kv_fs_flush,
	.fsync = ns_fsync,
	.release = ns_release,
	.gpu = ns_gpu,
};
