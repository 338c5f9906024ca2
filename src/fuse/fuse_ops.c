/* SPDX-License-Identifier: Apache-2.0 */
#include "fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ctl.h"
#include "fastpath.h"
#include "kvfs/ioctl.h"
#include "log.h"

static struct kv_mount *mnt(fuse_req_t req) { return fuse_req_userdata(req); }
static struct kv_fs *kfs(fuse_req_t req) { return mnt(req)->fs; }

static void to_stat(const struct kv_fs *fs, const struct kv_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)((a->stored + 511) / 512);
	st->st_blksize = (blksize_t)kv_fs_config(fs)->chunk;
	st->st_atim = (struct timespec){ a->atime / 1000000000, a->atime % 1000000000 };
	st->st_mtim = (struct timespec){ a->mtime / 1000000000, a->mtime % 1000000000 };
	st->st_ctim = (struct timespec){ a->ctime / 1000000000, a->ctime % 1000000000 };
}

static void to_entry(fuse_req_t req, const struct kv_attr *a, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->attr_timeout = e->entry_timeout = mnt(req)->timeout;
	to_stat(kfs(req), a, &e->attr);
}

static void reply_entry(fuse_req_t req, int rc, const struct kv_attr *a)
{
	struct fuse_entry_param e;

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	to_entry(req, a, &e);
	if (fuse_reply_entry(req, &e))
		kv_ops_of(a->ino)->forget(kfs(req), a->ino, 1);
}

static void reply_attr(fuse_req_t req, int rc, const struct kv_attr *a)
{
	struct stat st;

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	to_stat(kfs(req), a, &st);
	fuse_reply_attr(req, &st, mnt(req)->timeout);
}

static void *raise_readahead(void *arg)
{
	struct kv_mount *m = arg;
	struct stat st;
	char path[128], kb[32];
	int fd, n;

	/* Runs once INIT is answered: stat waits for it, and the kernel only
	 * lowers the readahead it agreed at INIT, so raise it afterwards. */
	if (stat(m->mountpoint, &st))
		return NULL;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
		 minor(st.st_dev));
	n = snprintf(kb, sizeof(kb), "%zu\n",
		     kv_fs_config(m->fs)->chunk / 1024 < 1024 ? (size_t)1024
							      : kv_fs_config(m->fs)->chunk / 1024);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, kb, (size_t)n) != n)
		kv_warn("cannot raise readahead through %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void kvfuse_init(void *userdata, struct fuse_conn_info *conn)
{
	struct kv_mount *m = userdata;
	pthread_t t;

	/* Reads come as large as readahead allows and writes as large as a
	 * chunk, so one request maps to one chunk where it can. */
	conn->max_readahead = conn->max_readahead > (1u << 20) ? conn->max_readahead : (1u << 20);
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* The kernel may cache data across opens: every change goes through
	 * this mount. Writeback caching stays off so write errors reach the
	 * writer. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (!pthread_create(&t, NULL, raise_readahead, m))
		pthread_detach(t);
}

static void kvfuse_destroy(void *userdata) { (void)userdata; }

static void kvfuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	enum kv_neg neg;
	struct kv_attr a;
	int rc = kv_ops_of_entry(parent, name)->lookup(kfs(req), parent, name, &a, &neg);

	if (rc == -ENOENT && neg != KV_NEG_NONE) {
		struct fuse_entry_param e = { 0 }; /* ino 0: a negative entry */
		if (neg == KV_NEG_KEEP)
			e.entry_timeout = mnt(req)->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, rc, &a);
}

static void kvfuse_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	kv_ops_of(ino)->forget(kfs(req), ino, nlookup);
	fuse_reply_none(req);
}

static void kvfuse_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		kv_ops_of(f[i].ino)->forget(kfs(req), f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void kvfuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kv_attr a;

	(void)fi;
	reply_attr(req, kv_ops_of(ino)->getattr(kfs(req), ino, &a), &a);
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void kvfuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st, int to_set,
			   struct fuse_file_info *fi)
{
	struct kv_attr in = { 0 }, out;
	unsigned mask = 0;
	struct timespec now;

	(void)fi;
	clock_gettime(CLOCK_REALTIME, &now);
	if (to_set & FUSE_SET_ATTR_MODE) {
		mask |= KV_SET_MODE;
		in.mode = st->st_mode;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		mask |= KV_SET_UID;
		in.uid = st->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		mask |= KV_SET_GID;
		in.gid = st->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		mask |= KV_SET_SIZE;
		in.size = (uint64_t)st->st_size;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		mask |= KV_SET_ATIME;
		in.atime = ts_ns(to_set & FUSE_SET_ATTR_ATIME_NOW ? &now : &st->st_atim);
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		mask |= KV_SET_MTIME;
		in.mtime = ts_ns(to_set & FUSE_SET_ATTR_MTIME_NOW ? &now : &st->st_mtim);
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		mask |= KV_SET_CTIME;
		in.ctime = ts_ns(&st->st_ctim);
	}
	reply_attr(req, kv_ops_of(ino)->setattr(kfs(req), ino, &in, mask, &out), &out);
}

static void kvfuse_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[KV_LINK_MAX + 2];
	int rc = kv_ops_of(ino)->readlink(kfs(req), ino, buf, sizeof(buf));

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      const char *target)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kv_cred cred = { ctx->uid, ctx->gid };
	struct kv_attr a;

	reply_entry(
		req,
		kv_ops_of_entry(parent, name)->mknod(kfs(req), parent, name, mode, &cred, target, &a),
		&a);
}

static void kvfuse_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 dev_t rdev)
{
	(void)rdev; /* kvfs makes no device nodes */
	make_node(req, parent, name, mode, NULL);
}

static void kvfuse_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), NULL);
}

static void kvfuse_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, link);
}

static void kvfuse_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -kv_ops_of_entry(parent, name)->remove(kfs(req), parent, name, 0));
}

static void kvfuse_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -kv_ops_of_entry(parent, name)->remove(kfs(req), parent, name, 1));
}

static void kvfuse_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			  const char *newname, unsigned int flags)
{
	const struct kv_ops *o = kv_ops_of_rename(parent, name, newparent, newname);

	fuse_reply_err(req, -o->rename(kfs(req), parent, name, newparent, newname, flags));
}

static void kvfuse_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	const struct kv_ops *o = kv_ops_of_entry(newparent, newname);
	struct kv_attr a;

	reply_entry(req, o->link(kfs(req), ino, newparent, newname, &a), &a);
}

static void set_handle(struct fuse_file_info *fi, uint64_t fh, unsigned cache)
{
	fi->fh = fh;
	if (cache & KV_OPEN_KEEP_CACHE)
		fi->keep_cache = 1;
	if (cache & KV_OPEN_DIRECT_IO)
		fi->direct_io = 1;
}

static void kvfuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	const struct kv_ops *o = kv_ops_of(ino);
	unsigned cache = 0;
	uint64_t fh;
	int rc = o->open(kfs(req), ino, fi->flags, &fh, &cache);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	set_handle(fi, fh, cache);
	if (fuse_reply_open(req, fi))
		o->release(kfs(req), ino, fh);
}

static void kvfuse_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			  struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kv_cred cred = { ctx->uid, ctx->gid };
	struct fuse_entry_param e;
	struct kv_fs *fs = kfs(req);
	const struct kv_ops *o;
	unsigned cache = 0;
	struct kv_attr a;
	uint64_t fh;
	int rc = kv_ops_of_entry(parent, name)
			 ->create(fs, parent, name, mode, &cred, fi->flags, &a, &fh, &cache);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	to_entry(req, &a, &e);
	set_handle(fi, fh, cache);
	if (fuse_reply_create(req, &e, fi)) {
		o = kv_ops_of(a.ino);
		o->release(fs, a.ino, fh);
		o->forget(fs, a.ino, 1);
	}
}

static void kvfuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct kv_fs *fs = kfs(req);
	struct kv_readv rv;
	int rc = kv_ops_of(ino)->read(fs, ino, fi->fh, off, size, &rv);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* The reply copies the buffers; they may go only after it. */
	fuse_reply_iov(req, rv.iov, rv.n);
	kv_file_read_done(fs, &rv);
}

static void kvfuse_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	ssize_t n = kv_ops_of(ino)->write(kfs(req), ino, fi->fh, buf, size, off);

	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void kvfuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -kv_ops_of(ino)->flush(kfs(req), ino, fi->fh));
}

static void kvfuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -kv_ops_of(ino)->release(kfs(req), ino, fi->fh));
}

static void kvfuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	fuse_reply_err(req, -kv_ops_of(ino)->fsync(kfs(req), ino, fi->fh));
}

/* Directory offsets: 1 and 2 follow "." and "..", then dentry id + 2. */
struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	int plus;
};

/* ref: an entry of readdirplus, handed out with a kernel reference where
 * its inode counts them. */
static int add_dirent(struct dirbuf *d, const char *name, struct kv_attr *a, off_t next, int ref)
{
	const struct kv_ops *o = kv_ops_of(a->ino);
	struct fuse_entry_param e = { 0 };
	size_t n;

	if (ref)
		ref = o->ref(kfs(d->req), a);
	to_stat(kfs(d->req), a, &e.attr);
	if (d->plus) {
		if (ref) {
			e.ino = a->ino;
			e.attr_timeout = e.entry_timeout = mnt(d->req)->timeout;
		}
		n = fuse_add_direntry_plus(d->req, d->buf + d->used, d->size - d->used, name, &e,
					   next);
	} else {
		n = fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, name, &e.attr,
				      next);
	}
	if (n > d->size - d->used) {
		if (ref)
			o->forget(kfs(d->req), a->ino, 1);
		return 1;
	}
	d->used += n;
	return 0;
}

static int dir_cb(void *arg, const char *name, size_t len, const struct kv_attr *a, uint64_t next)
{
	struct dirbuf *d = arg;
	struct kv_attr copy = *a;
	char nm[256];

	memcpy(nm, name, len < 255 ? len : 255);
	nm[len < 255 ? len : 255] = 0;
	return add_dirent(d, nm, &copy, (off_t)next + 2, d->plus);
}

static void read_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	const struct kv_ops *o = kv_ops_of(ino);
	struct dirbuf d = { req, malloc(size), size, 0, plus };
	struct kv_attr self, parent;
	uint64_t pino;
	int rc;

	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = o->getattr(kfs(req), ino, &self);
	if (!rc)
		rc = o->parent(kfs(req), ino, &pino);
	if (!rc && off < 1 && add_dirent(&d, ".", &self, 1, 0))
		off = -1;
	if (!rc && off >= 0 && off < 2) {
		parent = self;
		parent.ino = pino;
		parent.mode = S_IFDIR;
		if (add_dirent(&d, "..", &parent, 2, 0))
			off = -1;
	}
	if (!rc && off >= 0)
		rc = o->readdir(kfs(req), ino, off > 2 ? (uint64_t)off - 2 : 0, dir_cb, &d);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void kvfuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	read_dir(req, ino, size, off, 0);
}

static void kvfuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			       struct fuse_file_info *fi)
{
	(void)fi;
	read_dir(req, ino, size, off, 1);
}

static void kvfuse_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc = kv_fs_statfs(kfs(req), &sv);

	(void)ino;
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &sv);
}

static void kvfuse_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			    size_t size, int flags)
{
	fuse_reply_err(req, -kv_ops_of(ino)->setxattr(kfs(req), ino, name, value, size, flags));
}

static void reply_xattr(fuse_req_t req, int rc, const char *buf, size_t size)
{
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
}

static void kvfuse_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	int rc = size && !buf ? -ENOMEM : kv_ops_of(ino)->getxattr(kfs(req), ino, name, buf, size);

	reply_xattr(req, rc, buf, size);
	free(buf);
}

static void kvfuse_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	int rc = size && !buf ? -ENOMEM : kv_ops_of(ino)->listxattr(kfs(req), ino, buf, size);

	reply_xattr(req, rc, buf, size);
	free(buf);
}

static void kvfuse_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -kv_ops_of(ino)->removexattr(kfs(req), ino, name));
}

struct fast_req {
	fuse_req_t req;
	fuse_ino_t ino;
	int write;
};

static void fast_done(void *arg, int rc, struct kvfs_gpu_io *io)
{
	struct fast_req *r = arg;

	/* The daemon changed the file behind the kernel's back: drop its
	 * cached size and pages before the writer hears back. */
	if (r->write && io->bytes_done)
		fuse_lowlevel_notify_inval_inode(mnt(r->req)->se, r->ino, 0, 0);
	fuse_reply_ioctl(r->req, rc, io, sizeof(*io));
	free(io);
	free(r);
}

/* The ioctls of include/kvfs/ioctl.h. GPU requests are answered from the
 * fast path's threads (kv_fast_submit), not this one. */
static void kvfuse_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
			 struct fuse_file_info *fi, unsigned flags, const void *in_buf,
			 size_t in_bufsz, size_t out_bufsz)
{
	struct kv_fast *f = mnt(req)->fast;
	int kind = kv_fast_cmd(cmd, in_bufsz, out_bufsz);
	int gpu_req = kind < 0 ? kind : kind == KV_FAST_QUERY ? KV_GPU_QUERY : KV_GPU_IO;
	unsigned mode = 0, rights = 0;
	struct kvfs_gpu_io *io;
	struct fast_req *r;
	int rc = kv_ops_of(ino)->gpu(kfs(req), ino, fi->fh, !!(flags & FUSE_IOCTL_DIR), gpu_req,
				     &rights);

	(void)arg;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (kind == KV_FAST_QUERY) {
		struct kvfs_query q;
		memcpy(&q, in_buf, sizeof(q));
		if (kv_fast_query(f, &q))
			fuse_reply_err(req, EINVAL);
		else
			fuse_reply_ioctl(req, 0, &q, sizeof(q));
		return;
	}
	if (kind == KV_FAST_WRITE_CMD)
		mode |= KV_FAST_WRITE;
	if (rights & KV_FH_READ)
		mode |= KV_FAST_CAN_READ;
	if (rights & KV_FH_WRITE)
		mode |= KV_FAST_CAN_WRITE;
	io = malloc(sizeof(*io));
	r = malloc(sizeof(*r));
	if (!io || !r) {
		free(io);
		free(r);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(io, in_buf, sizeof(*io));
	*r = (struct fast_req){ req, ino, kind == KV_FAST_WRITE_CMD };
	if (kv_fast_submit(f, ino, mode, (uint32_t)fuse_req_ctx(req)->pid, io, fast_done, r)) {
		free(io);
		free(r);
		fuse_reply_err(req, ENOMEM);
	}
}

const struct fuse_lowlevel_ops kv_fuse_ops = {
	.init = kvfuse_init,
	.destroy = kvfuse_destroy,
	.lookup = kvfuse_lookup,
	.forget = kvfuse_forget,
	.forget_multi = kvfuse_forget_multi,
	.getattr = kvfuse_getattr,
	.setattr = kvfuse_setattr,
	.readlink = kvfuse_readlink,
	.mknod = kvfuse_mknod,
	.mkdir = kvfuse_mkdir,
	.symlink = kvfuse_symlink,
	.unlink = kvfuse_unlink,
	.rmdir = kvfuse_rmdir,
	.rename = kvfuse_rename,
	.link = kvfuse_link,
	.open = kvfuse_open,
	.create = kvfuse_create,
	.read = kvfuse_read,
	.write = kvfuse_write,
	.flush = kvfuse_flush,
	.release = kvfuse_release,
	.fsync = kvfuse_fsync,
	.readdir = kvfuse_readdir,
	.readdirplus = kvfuse_readdirplus,
	.statfs = kvfuse_statfs,
	.setxattr = kvfuse_setxattr,
	.getxattr = kvfuse_getxattr,
	.listxattr = kvfuse_listxattr,
	.removexattr = kvfuse_removexattr,
	.ioctl = kvfuse_ioctl,
};
