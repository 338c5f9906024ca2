/* SPDX-License-Identifier: Apache-2.0 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CTL_STATS = 1, CTL_CONFIG, CTL_EVICT, CTL_NFILES = 3 };

static const struct {
	const char *name;
	uint32_t mode;
} kv_ctl_files[CTL_NFILES + 1] = {
	[CTL_STATS] = { "stats", S_IFREG | 0444 },
	[CTL_CONFIG] = { "config", S_IFREG | 0444 },
	[CTL_EVICT] = { "evict", S_IFREG | 0200 },
};

int kv_ctl_is(uint64_t ino) { return ino >= KV_CTL_DIR && ino <= KV_CTL_DIR + CTL_NFILES; }

int kv_ctl_is_entry(uint64_t parent, const char *name)
{
	return parent == KV_ROOT_INO && !strcmp(name, KV_CTL_NAME);
}

/* ---- the one dispatch point (ctl.h) ---- */

const struct kv_ops *kv_ops_of(uint64_t ino) { return kv_ctl_is(ino) ? &kv_ctl_ops : &kv_fs_ops; }

const struct kv_ops *kv_ops_of_entry(uint64_t parent, const char *name)
{
	return kv_ctl_is(parent) || kv_ctl_is_entry(parent, name) ? &kv_ctl_ops : &kv_fs_ops;
}

const struct kv_ops *kv_ops_of_rename(uint64_t parent, const char *name, uint64_t newparent,
				      const char *newname)
{
	const struct kv_ops *o = kv_ops_of_entry(parent, name);

	return o == &kv_ctl_ops ? o : kv_ops_of_entry(newparent, newname);
}

/* ---- inodes ---- */

static int ctl_getattr(struct kv_fs *fs, uint64_t ino, struct kv_attr *a)
{
	struct kv_attr root;
	int rc = kv_fs_getattr(fs, KV_ROOT_INO, &root);

	if (rc)
		return rc;
	/* Owned like the root directory, dated like the mount. */
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->uid = (uint32_t)getuid();
	a->gid = (uint32_t)getgid();
	a->atime = a->mtime = a->ctime = root.ctime;
	if (ino == KV_CTL_DIR) {
		a->mode = S_IFDIR | 0755;
		a->nlink = 2;
		return 0;
	}
	if (!kv_ctl_is(ino))
		return -ENOENT;
	a->mode = kv_ctl_files[ino - KV_CTL_DIR].mode;
	a->nlink = 1;
	return 0;
}

static int ctl_setattr(struct kv_fs *fs, uint64_t ino, const struct kv_attr *in, unsigned mask,
		       struct kv_attr *out)
{
	(void)in;
	/* Truncating the evict file before writing it is harmless. */
	return mask & ~KV_SET_SIZE ? -EPERM : ctl_getattr(fs, ino, out);
}

/* Control inodes take no kernel references. */
static int ctl_ref(struct kv_fs *fs, struct kv_attr *a)
{
	(void)fs;
	(void)a;
	return 0;
}

static void ctl_forget(struct kv_fs *fs, uint64_t ino, uint64_t nlookup)
{
	(void)fs;
	(void)ino;
	(void)nlookup;
}

static int ctl_readlink(struct kv_fs *fs, uint64_t ino, char *buf, size_t len)
{
	(void)fs;
	(void)ino;
	(void)buf;
	(void)len;
	return -EINVAL; /* none is a symlink */
}

static int ctl_readdir(struct kv_fs *fs, uint64_t ino, uint64_t off, kv_index_dir_cb cb, void *arg)
{
	(void)ino;
	for (uint64_t i = off + 1; i <= CTL_NFILES; i++) {
		struct kv_attr a;
		ctl_getattr(fs, KV_CTL_DIR + i, &a);
		if (cb(arg, kv_ctl_files[i].name, strlen(kv_ctl_files[i].name), &a, i))
			break;
	}
	return 0;
}

static int ctl_parent(struct kv_fs *fs, uint64_t ino, uint64_t *parent)
{
	(void)fs;
	(void)ino;
	*parent = KV_ROOT_INO;
	return 0;
}

/* ---- entries: .kvfs in the root, and those in it ---- */

static int ctl_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *a,
		      enum kv_neg *neg)
{
	*neg = KV_NEG_NONE;
	if (kv_ctl_is_entry(parent, name))
		return ctl_getattr(fs, KV_CTL_DIR, a);
	if (parent != KV_CTL_DIR)
		return -ENOENT; /* the files hold no entries */
	for (uint64_t i = 1; i <= CTL_NFILES; i++)
		if (!strcmp(name, kv_ctl_files[i].name))
			return ctl_getattr(fs, KV_CTL_DIR + i, a);
	return -ENOENT;
}

/* The control directory and its entry cannot be made, removed or renamed. */
static int ctl_mknod(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		     const struct kv_cred *cred, const char *target, struct kv_attr *out)
{
	(void)fs;
	(void)mode;
	(void)cred;
	(void)target;
	(void)out;
	return kv_ctl_is_entry(parent, name) ? -EEXIST : -EPERM;
}

static int ctl_create(struct kv_fs *fs, uint64_t parent, const char *name, uint32_t mode,
		      const struct kv_cred *cred, int flags, struct kv_attr *out, uint64_t *fh,
		      unsigned *cache)
{
	(void)flags;
	(void)fh;
	(void)cache;
	return ctl_mknod(fs, parent, name, mode, cred, NULL, out);
}

static int ctl_link(struct kv_fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
		    struct kv_attr *out)
{
	(void)fs;
	(void)ino;
	(void)newparent;
	(void)newname;
	(void)out;
	return -EPERM;
}

static int ctl_remove(struct kv_fs *fs, uint64_t parent, const char *name, int dir)
{
	(void)fs;
	(void)parent;
	(void)name;
	(void)dir;
	return -EPERM;
}

static int ctl_rename(struct kv_fs *fs, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, unsigned flags)
{
	(void)fs;
	(void)parent;
	(void)name;
	(void)newparent;
	(void)newname;
	return flags & ~KV_RENAME_FLAGS ? -EINVAL : -EPERM;
}

/* ---- xattrs: none ---- */

static int ctl_setxattr(struct kv_fs *fs, uint64_t ino, const char *name, const void *value,
			size_t size, int flags)
{
	(void)fs;
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	return -EPERM;
}

static int ctl_getxattr(struct kv_fs *fs, uint64_t ino, const char *name, void *buf, size_t size)
{
	(void)fs;
	(void)ino;
	(void)name;
	(void)buf;
	(void)size;
	return -ENODATA;
}

static int ctl_listxattr(struct kv_fs *fs, uint64_t ino, char *buf, size_t size)
{
	(void)fs;
	(void)ino;
	(void)buf;
	(void)size;
	return 0;
}

static int ctl_removexattr(struct kv_fs *fs, uint64_t ino, const char *name)
{
	(void)fs;
	(void)ino;
	(void)name;
	return -EPERM;
}

/* ---- open files ---- */

/* An open control file (its handle points to it): its text, taken at
 * open; none for evict. */
struct ctl_file {
	char *text;
	size_t len;
};

static int ctl_open(struct kv_fs *fs, uint64_t ino, int flags, uint64_t *fh, unsigned *cache)
{
	size_t cap = 16384;
	int writing = (flags & O_ACCMODE) != O_RDONLY, n;
	struct ctl_file *f;

	if (ino == KV_CTL_DIR + CTL_EVICT ? !writing : writing)
		return -EACCES;
	if (!(f = calloc(1, sizeof(*f))))
		return -ENOMEM;
	if (ino != KV_CTL_DIR + CTL_EVICT) {
		if (!(f->text = malloc(cap))) {
			free(f);
			return -ENOMEM;
		}
		if (ino == KV_CTL_DIR + CTL_STATS) {
			n = kv_fs_stats_text(fs, f->text, cap);
		} else {
			kv_opt_format(kv_fs_config(fs), f->text, cap);
			n = (int)strlen(f->text);
		}
		f->len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
	}
	*fh = (uintptr_t)f;
	*cache = KV_OPEN_DIRECT_IO; /* the size changes with every open */
	return 0;
}

static int ctl_read(struct kv_fs *fs, uint64_t ino, uint64_t fh, off_t off, size_t size,
		    struct kv_readv *rv)
{
	const struct ctl_file *f = (const struct ctl_file *)(uintptr_t)fh;
	size_t at = (size_t)off < f->len ? (size_t)off : f->len;
	size_t n = size < f->len - at ? size : f->len - at;

	(void)fs;
	(void)ino;
	/* A copy, which rv owns: a release racing the reply may free the
	 * text. */
	rv->copy = malloc(n ? n : 1);
	if (!rv->copy)
		return -ENOMEM;
	if (n)
		memcpy(rv->copy, f->text + at, n);
	rv->iov[0] = (struct iovec){ rv->copy, n };
	rv->n = 1;
	rv->nrefs = 0;
	rv->bytes = n;
	return (int)n;
}

/* A write to evict: the target size. */
static ssize_t ctl_write(struct kv_fs *fs, uint64_t ino, uint64_t fh, const void *buf, size_t size,
			 off_t off)
{
	char v[64];
	size_t target;
	int rc;

	(void)fh;
	(void)off;
	if (ino != KV_CTL_DIR + CTL_EVICT)
		return -EACCES;
	if (!size || size >= sizeof(v))
		return -EINVAL;
	memcpy(v, buf, size);
	v[size] = 0;
	v[strcspn(v, "\n")] = 0;
	if (kv_opt_parse_size(v, &target))
		return -EINVAL;
	rc = kv_fs_evict_to(fs, target);
	return rc ? rc : (ssize_t)size;
}

static int ctl_done(struct kv_fs *fs, uint64_t ino, uint64_t fh)
{
	(void)fs;
	(void)ino;
	(void)fh;
	return 0;
}

static int ctl_release(struct kv_fs *fs, uint64_t ino, uint64_t fh)
{
	struct ctl_file *f = (struct ctl_file *)(uintptr_t)fh;

	(void)fs;
	(void)ino;
	free(f->text);
	free(f);
	return 0;
}

static int ctl_gpu(struct kv_fs *fs, uint64_t ino, uint64_t fh, int dir, int req, unsigned *rights)
{
	(void)fs;
	(void)ino;
	(void)fh;
	(void)dir;
	(void)req;
	(void)rights;
	return -ENOTTY;
}

const struct kv_ops kv_ctl_ops = {
	.lookup = ctl_lookup,
	.mknod = ctl_mknod,
	.create = ctl_create,
	.link = ctl_link,
	.remove = ctl_remove,
	.rename = ctl_rename,
	.ref = ctl_ref,
	.forget = ctl_forget,
	.getattr = ctl_getattr,
	.setattr = ctl_setattr,
	.readlink = ctl_readlink,
	.readdir = ctl_readdir,
	.parent = ctl_parent,
	.setxattr = ctl_setxattr,
	.getxattr = ctl_getxattr,
	.listxattr = ctl_listxattr,
	.removexattr = ctl_removexattr,
	.open = ctl_open,
	.read = ctl_read,
	.write = ctl_write,
	.flush = ctl_done,
	.fsync = ctl_done,
	.release = ctl_release,
	.gpu = ctl_gpu,
};
