/* SPDX-License-Identifier: Apache-2.0 */
/* The index's namespace: attributes, directory entries (lookup, create,
 * remove, rename, readdir), symlink targets and user.* xattrs. */
#include "index_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "lock.h"

/* ---- attributes ---- */

void ix_row_attr(sqlite3_stmt *s, int c, struct kv_attr *a)
{
	a->ino = (uint64_t)sqlite3_column_int64(s, c);
	a->mode = (uint32_t)sqlite3_column_int64(s, c + 1);
	a->uid = (uint32_t)sqlite3_column_int64(s, c + 2);
	a->gid = (uint32_t)sqlite3_column_int64(s, c + 3);
	a->nlink = (uint32_t)sqlite3_column_int64(s, c + 4);
	a->size = (uint64_t)sqlite3_column_int64(s, c + 5);
	a->stored = (uint64_t)sqlite3_column_int64(s, c + 6);
	a->rdev = (uint64_t)sqlite3_column_int64(s, c + 7);
	a->atime = sqlite3_column_int64(s, c + 8);
	a->mtime = sqlite3_column_int64(s, c + 9);
	a->ctime = sqlite3_column_int64(s, c + 10);
}

/* Reads one attr row of s, bound by the caller; returns 0, -ENOENT or the
 * failure. Locked (kv_index.lock). */
static int fetch_attr(struct kv_index *ix, sqlite3_stmt *s, struct kv_attr *a)
{
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = ix_step(ix, s);
	if (rc > 0)
		ix_row_attr(s, 0, a);
	sqlite3_reset(s);
	return rc > 0 ? 0 : rc ? rc : -ENOENT;
}

int ix_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_GETATTR);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	return fetch_attr(ix, s, a);
}

int kv_index_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_getattr(ix, ino, a);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_setattr(struct kv_index *ix, const struct kv_attr *a, unsigned mask)
{
	/* Q_SETATTR's parameters ?2..?8, in order. */
	static const unsigned bits[] = { KV_SET_MODE,  KV_SET_UID,   KV_SET_GID,  KV_SET_SIZE,
					 KV_SET_ATIME, KV_SET_MTIME, KV_SET_CTIME };
	int64_t vals[] = { a->mode, a->uid, a->gid, (int64_t)a->size, a->atime, a->mtime, a->ctime };
	sqlite3_stmt *s;
	int rc;

	if (!(mask & (KV_SET_MODE | KV_SET_UID | KV_SET_GID | KV_SET_SIZE | KV_SET_ATIME |
		      KV_SET_MTIME | KV_SET_CTIME)))
		return 0;
	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_SETATTR);
	sqlite3_bind_int64(s, 1, (int64_t)a->ino);
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (mask & bits[i])
			sqlite3_bind_int64(s, (int)i + 2, vals[i]);
	rc = ix_run(ix, s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ---- entries ---- */

/* The attributes of the inode that (parent, name) names: 0, -ENOENT or
 * the failure. Locked (kv_index.lock). */
static int lookup_locked(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			 struct kv_attr *a)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_LOOKUP);
	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	return fetch_attr(ix, s, a);
}

int kv_index_lookup(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    struct kv_attr *a)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = lookup_locked(ix, parent, name, len, a);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int ix_parent_of(struct kv_index *ix, uint64_t ino, uint64_t *parent)
{
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_PARENT);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = ix_step(ix, s);
	if (rc > 0)
		*parent = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return rc > 0 ? 0 : rc ? rc : -ENOENT;
}

int kv_index_parent(struct kv_index *ix, uint64_t dir, uint64_t *parent)
{
	int rc;

	if (dir == KV_ROOT_INO) {
		*parent = KV_ROOT_INO;
		return 0;
	}
	pthread_mutex_lock(&ix->lock);
	rc = ix_parent_of(ix, dir, parent);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

struct entry_out {
	uint64_t parent;
	char name[256];
};

static int row_entry(sqlite3_stmt *s, void *arg)
{
	struct entry_out *e = arg;
	size_t n = (size_t)sqlite3_column_bytes(s, 1);

	e->parent = (uint64_t)sqlite3_column_int64(s, 0);
	n = n < 255 ? n : 255;
	memcpy(e->name, sqlite3_column_blob(s, 1), n);
	e->name[n] = 0;
	return 1;
}

int kv_index_entry_of(struct kv_index *ix, uint64_t ino, uint64_t *parent, char *name)
{
	struct entry_out e = { 0 };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_ENTRY_OF, (int64_t)ino, 0, 0, row_entry, &e);
	pthread_mutex_unlock(&ix->lock);
	if (!rc && !e.parent)
		rc = -ENOENT;
	if (!rc) {
		*parent = e.parent;
		memcpy(name, e.name, sizeof(e.name));
	}
	return rc;
}

int ix_add_links(struct kv_index *ix, uint64_t ino, int delta, int64_t now, int touch)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, touch ? Q_TOUCH_DIR : Q_SET_NLINK);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_int(s, 2, delta);
	sqlite3_bind_int64(s, 3, now);
	return ix_run(ix, s);
}

/* Runs which (Q_INS_DENTRY, Q_DEL_DENTRY, Q_SET_DENTRY_INO) with ?1, ?2 =
 * (parent, name) and ?3 = ino. Locked (kv_index.lock). */
static int dentry_op(struct kv_index *ix, enum ix_stmt which, uint64_t parent, const char *name,
		     size_t len, uint64_t ino)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, which);
	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	if (which != Q_DEL_DENTRY)
		sqlite3_bind_int64(s, 3, (int64_t)ino);
	return ix_run(ix, s);
}

/* Writes the inode row of a new a (its number into a->ino). Locked
 * (kv_index.lock), inside a transaction. */
static int insert_inode(struct kv_index *ix, struct kv_attr *a, const char *target)
{
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_INS_INODE);
	a->nlink = S_ISDIR(a->mode) ? 2 : 1;
	sqlite3_bind_int64(s, 1, a->mode);
	sqlite3_bind_int64(s, 2, a->uid);
	sqlite3_bind_int64(s, 3, a->gid);
	sqlite3_bind_int64(s, 4, a->nlink);
	sqlite3_bind_int64(s, 5, (int64_t)a->rdev);
	sqlite3_bind_int64(s, 6, a->atime);
	sqlite3_bind_int64(s, 7, a->mtime);
	sqlite3_bind_int64(s, 8, a->ctime);
	if (target)
		sqlite3_bind_blob(s, 9, target, (int)strlen(target), SQLITE_STATIC);
	rc = ix_run(ix, s);
	a->ino = (uint64_t)sqlite3_last_insert_rowid(ix->db);
	a->size = target ? strlen(target) : 0;
	a->stored = 0;
	return rc;
}

int kv_index_create(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    struct kv_attr *a, const char *target)
{
	struct kv_attr old;
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (rc)
		goto out;
	rc = lookup_locked(ix, parent, name, len, &old);
	if (rc == 0)
		rc = -EEXIST;
	else if (rc == -ENOENT)
		rc = 0;
	if (!rc)
		rc = insert_inode(ix, a, target);
	if (!rc)
		rc = dentry_op(ix, Q_INS_DENTRY, parent, name, len, a->ino);
	if (!rc)
		rc = ix_add_links(ix, parent, S_ISDIR(a->mode), a->ctime, 1);
	if (!rc && target) {
		s = ix_q(ix, Q_PUBLISH);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)a->size);
		sqlite3_bind_int64(s, 3, 0);
		sqlite3_bind_int64(s, 4, a->mtime);
		sqlite3_bind_int64(s, 5, a->ctime);
		rc = ix_run(ix, s);
	}
	rc = ix_end(ix, rc);
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* -ENOTEMPTY if directory dir has entries; 0 or the failure (never
 * "empty" on a read error: rmdir would drop a directory with files in
 * it). Locked (kv_index.lock). */
static int check_empty(struct kv_index *ix, uint64_t dir)
{
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_HAS_CHILD);
	sqlite3_bind_int64(s, 1, (int64_t)dir);
	rc = ix_step(ix, s);
	sqlite3_reset(s);
	return rc > 0 ? -ENOTEMPTY : rc;
}

/* Drop the entry (parent, name) that refers to a, as unlink/rmdir do.
 * Locked (kv_index.lock), inside a transaction. */
static int unlink_entry(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			struct kv_attr *a, int64_t now)
{
	int isdir = S_ISDIR(a->mode);
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = dentry_op(ix, Q_DEL_DENTRY, parent, name, len, 0);
	if (!rc)
		rc = ix_add_links(ix, a->ino, isdir ? -(int)a->nlink : -1, now, 0);
	if (!rc)
		rc = ix_add_links(ix, parent, -isdir, now, 1);
	if (!rc && isdir)
		rc = ix_by_ino(ix, Q_DEL_CTX, a->ino);
	a->nlink = isdir ? 0 : a->nlink - 1;
	return rc;
}

int kv_index_remove(struct kv_index *ix, uint64_t parent, const char *name, size_t len, int dir,
		    int64_t now, uint64_t *ino, uint32_t *nlink)
{
	struct kv_attr a;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (rc)
		goto out;
	rc = lookup_locked(ix, parent, name, len, &a);
	if (!rc && dir && !S_ISDIR(a.mode))
		rc = -ENOTDIR;
	else if (!rc && !dir && S_ISDIR(a.mode))
		rc = -EISDIR;
	else if (!rc && dir)
		rc = check_empty(ix, a.ino);
	if (!rc)
		rc = unlink_entry(ix, parent, name, len, &a, now);
	rc = ix_end(ix, rc);
	if (!rc) {
		*ino = a.ino;
		*nlink = a.nlink;
	}
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ---- rename ---- */

/* Is anc an ancestor of (or equal to) ino? 1 or 0, or the failure of the
 * walk (never "no": that would let a directory move into its own
 * subtree). Guards rename. Locked (kv_index.lock). */
static int is_ancestor(struct kv_index *ix, uint64_t anc, uint64_t ino)
{
	KV_ASSERT_HELD(&ix->lock);
	for (int depth = 0; depth < 4096; depth++) {
		int rc;
		if (ino == anc)
			return 1;
		if (ino == KV_ROOT_INO)
			return 0;
		rc = ix_parent_of(ix, ino, &ino);
		if (rc == -ENOENT)
			return 0; /* a detached directory: no ancestors */
		if (rc)
			return rc;
	}
	return 1;
}

/* -EINVAL if moving directory dir under newparent would put it inside
 * itself; 0 or the failure. Locked (kv_index.lock). */
static int check_move(struct kv_index *ix, uint64_t dir, uint64_t newparent)
{
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = is_ancestor(ix, dir, newparent);
	return rc > 0 ? -EINVAL : rc;
}

/* Renames the entry (parent, name) to (newparent, newname). Locked
 * (kv_index.lock). */
static int move_dentry(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		       uint64_t newparent, const char *newname, size_t newlen)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_MOVE_DENTRY);
	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)newparent);
	sqlite3_bind_blob(s, 4, newname, (int)newlen, SQLITE_STATIC);
	return ix_run(ix, s);
}

/* RENAME_EXCHANGE of the entries of a and b, with the directories' link
 * counts when only one of them is a directory. Locked (kv_index.lock), inside
 * a transaction. */
static int rename_exchange(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			   const struct kv_attr *a, uint64_t newparent, const char *newname,
			   size_t newlen, const struct kv_attr *b, int64_t now)
{
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = dentry_op(ix, Q_SET_DENTRY_INO, parent, name, len, b->ino);
	if (!rc)
		rc = dentry_op(ix, Q_SET_DENTRY_INO, newparent, newname, newlen, a->ino);
	if (!rc && parent != newparent && S_ISDIR(a->mode) != S_ISDIR(b->mode)) {
		int d = S_ISDIR(a->mode) ? 1 : -1;
		rc = ix_add_links(ix, newparent, d, now, 1);
		if (!rc)
			rc = ix_add_links(ix, parent, -d, now, 1);
	}
	return rc;
}

int kv_index_rename(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    uint64_t newparent, const char *newname, size_t newlen, unsigned flags,
		    int64_t now, uint64_t *victim, uint32_t *victim_nlink)
{
	struct kv_attr a, b;
	int exists, rc;

	*victim = 0;
	*victim_nlink = 0;
	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (rc)
		goto out;
	rc = lookup_locked(ix, parent, name, len, &a);
	if (rc)
		goto done;
	rc = lookup_locked(ix, newparent, newname, newlen, &b);
	exists = rc == 0;
	if (rc && rc != -ENOENT)
		goto done;
	rc = 0;
	if (exists && a.ino == b.ino)
		goto done; /* same file: nothing to do */
	if ((flags & RENAME_NOREPLACE) && exists) {
		rc = -EEXIST;
		goto done;
	}
	if ((flags & RENAME_EXCHANGE) && !exists) {
		rc = -ENOENT;
		goto done;
	}
	if (S_ISDIR(a.mode))
		rc = check_move(ix, a.ino, newparent);
	if (!rc && (flags & RENAME_EXCHANGE) && S_ISDIR(b.mode))
		rc = check_move(ix, b.ino, parent);
	if (rc)
		goto done;
	if (flags & RENAME_EXCHANGE) {
		rc = rename_exchange(ix, parent, name, len, &a, newparent, newname, newlen, &b, now);
		goto done;
	}
	if (exists) {
		if (S_ISDIR(a.mode) && !S_ISDIR(b.mode))
			rc = -ENOTDIR;
		else if (!S_ISDIR(a.mode) && S_ISDIR(b.mode))
			rc = -EISDIR;
		else if (S_ISDIR(b.mode))
			rc = check_empty(ix, b.ino);
		if (!rc)
			rc = unlink_entry(ix, newparent, newname, newlen, &b, now);
		*victim = b.ino;
		*victim_nlink = b.nlink;
	}
	if (!rc)
		rc = move_dentry(ix, parent, name, len, newparent, newname, newlen);
	if (!rc)
		rc = ix_add_links(ix, parent, S_ISDIR(a.mode) ? -1 : 0, now, 1);
	if (!rc)
		rc = ix_add_links(ix, newparent, S_ISDIR(a.mode) ? 1 : 0, now, 1);
	if (!rc)
		rc = ix_add_links(ix, a.ino, 0, now, 0);
done:
	rc = ix_end(ix, rc);
	if (rc) {
		*victim = 0;
		*victim_nlink = 0;
	}
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ---- symlinks and readdir ---- */

int ix_get_target(struct kv_index *ix, uint64_t ino, char *buf, size_t len)
{
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_READLINK);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = ix_step(ix, s);
	if (rc > 0 && sqlite3_column_type(s, 0) == SQLITE_BLOB) {
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		if (n >= len)
			n = len - 1;
		memcpy(buf, sqlite3_column_blob(s, 0), n);
		buf[n] = 0;
		rc = 0;
	} else if (rc >= 0) {
		rc = rc ? -EINVAL : -ENOENT;
	}
	sqlite3_reset(s);
	return rc;
}

int kv_index_readlink(struct kv_index *ix, uint64_t ino, char *buf, size_t len)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_get_target(ix, ino, buf, len);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* Rows are read in batches and handed to cb with the index unlocked: cb
 * takes inode locks, which rank above the index lock. */
#define KV_READDIR_BATCH 128

struct dir_row {
	uint64_t id;
	struct kv_attr a;
	size_t len;
	char name[256];
};

int kv_index_readdir(struct kv_index *ix, uint64_t dir, uint64_t off, kv_index_dir_cb cb, void *arg)
{
	struct dir_row *rows = malloc(KV_READDIR_BATCH * sizeof(*rows));
	int n, rc = 0, stop = 0;

	if (!rows)
		return -ENOMEM;
	do {
		sqlite3_stmt *s;
		pthread_mutex_lock(&ix->lock);
		s = ix_q(ix, Q_READDIR);
		sqlite3_bind_int64(s, 1, (int64_t)dir);
		sqlite3_bind_int64(s, 2, (int64_t)off);
		for (n = 0; n < KV_READDIR_BATCH && (rc = ix_step(ix, s)) > 0; n++) {
			struct dir_row *r = &rows[n];
			size_t len = (size_t)sqlite3_column_bytes(s, 1);
			r->id = (uint64_t)sqlite3_column_int64(s, 0);
			r->len = len < sizeof(r->name) ? len : sizeof(r->name) - 1;
			memcpy(r->name, sqlite3_column_blob(s, 1), r->len);
			r->name[r->len] = 0;
			ix_row_attr(s, 2, &r->a);
		}
		rc = rc < 0 ? rc : 0;
		sqlite3_reset(s);
		pthread_mutex_unlock(&ix->lock);
		for (int i = 0; !rc && !stop && i < n; i++) {
			stop = cb(arg, rows[i].name, rows[i].len, &rows[i].a, rows[i].id);
			off = rows[i].id;
		}
	} while (!rc && !stop && n == KV_READDIR_BATCH);
	free(rows);
	return rc;
}

/* ---- xattrs ---- */

static void bind_xname(sqlite3_stmt *s, uint64_t ino, const char *name)
{
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_blob(s, 2, name, (int)strlen(name), SQLITE_STATIC);
}

int kv_index_setxattr(struct kv_index *ix, uint64_t ino, const char *name, const void *value,
		      size_t size, int flags)
{
	sqlite3_stmt *s;
	int exists, rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (rc)
		goto out;
	s = ix_q(ix, Q_GETX);
	bind_xname(s, ino, name);
	exists = ix_step(ix, s);
	sqlite3_reset(s);
	if (exists < 0)
		rc = exists;
	else if (exists && (flags & XATTR_CREATE))
		rc = -EEXIST;
	else if (!exists && (flags & XATTR_REPLACE))
		rc = -ENODATA;
	if (!rc) {
		s = ix_q(ix, exists ? Q_PUTX : Q_INSX);
		bind_xname(s, ino, name);
		sqlite3_bind_blob(s, 3, size ? value : "", (int)size, SQLITE_STATIC);
		rc = ix_run(ix, s);
	}
	rc = ix_end(ix, rc);
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_getxattr(struct kv_index *ix, uint64_t ino, const char *name, void *buf, size_t size)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_GETX);
	bind_xname(s, ino, name);
	rc = ix_step(ix, s);
	if (rc > 0) {
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		if (size && n > size)
			rc = -ERANGE;
		else {
			if (size && n)
				memcpy(buf, sqlite3_column_blob(s, 0), n);
			rc = (int)n;
		}
	} else if (rc == 0) {
		rc = -ENODATA;
	}
	sqlite3_reset(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_listxattr(struct kv_index *ix, uint64_t ino, char *buf, size_t size)
{
	sqlite3_stmt *s;
	size_t total = 0;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_LISTX);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = ix_step(ix, s)) > 0) {
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		if (size && total + n + 1 <= size) {
			memcpy(buf + total, sqlite3_column_blob(s, 0), n);
			buf[total + n] = 0;
		}
		total += n + 1;
	}
	sqlite3_reset(s);
	pthread_mutex_unlock(&ix->lock);
	if (rc < 0)
		return rc;
	if (size && total > size)
		return -ERANGE;
	return (int)total;
}

int kv_index_removexattr(struct kv_index *ix, uint64_t ino, const char *name)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_DELX);
	bind_xname(s, ino, name);
	rc = ix_run(ix, s);
	if (!rc && sqlite3_changes(ix->db) == 0)
		rc = -ENODATA;
	pthread_mutex_unlock(&ix->lock);
	return rc;
}
