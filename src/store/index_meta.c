/* SPDX-License-Identifier: Apache-2.0 */
/* The index's side of inode records (meta.h): everything a record of an
 * inode holds, read in one go; naming the newest record of each inode;
 * and rebuild's restore of an inode from its record. */
#include "index_int.h"
#include "meta.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lock.h"

/* ---- reading ---- */

static int row_link(sqlite3_stmt *s, void *arg)
{
	return kv_meta_add_link(arg, (uint64_t)sqlite3_column_int64(s, 0),
				sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1));
}

static int row_xattr(sqlite3_stmt *s, void *arg)
{
	char name[256];
	int n = sqlite3_column_bytes(s, 0);

	n = n < 255 ? n : 255;
	memcpy(name, sqlite3_column_blob(s, 0), (size_t)n);
	name[n] = 0;
	return kv_meta_add_xattr(arg, name, sqlite3_column_blob(s, 1),
				 (uint32_t)sqlite3_column_bytes(s, 1));
}

static int row_meta_ctx(sqlite3_stmt *s, void *arg)
{
	struct kv_meta *m = arg;

	m->flags |= KV_META_HAS_CTX;
	m->pin = (uint8_t)sqlite3_column_int64(s, 0);
	m->ttl = sqlite3_column_type(s, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 1);
	return 1;
}

static int meta_chunk(void *arg, const struct kv_chunk *c) { return kv_meta_add_chunk(arg, c); }

int kv_index_meta(struct kv_index *ix, uint64_t ino, int chunks, struct kv_meta *m,
		  struct kv_loc *cur)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->ttl = -1;
	pthread_mutex_lock(&ix->lock);
	rc = ix_getattr(ix, ino, &m->attr);
	if (!rc && S_ISLNK(m->attr.mode)) {
		char target[PATH_MAX];
		rc = ix_get_target(ix, ino, target, sizeof(target));
		if (rc == -EINVAL)
			rc = 0; /* a symlink without a target: none recorded */
		else if (!rc && *target && !(m->target = strdup(target)))
			rc = -ENOMEM;
	}
	if (!rc)
		rc = ix_each_row(ix, Q_IREC_LINKS, (int64_t)ino, 0, 0, row_link, m);
	if (!rc)
		rc = ix_each_row(ix, Q_IREC_XATTRS, (int64_t)ino, 0, 0, row_xattr, m);
	if (!rc)
		rc = ix_each_row(ix, Q_IREC_CTX, (int64_t)ino, 0, 0, row_meta_ctx, m);
	if (!rc && chunks && S_ISREG(m->attr.mode))
		rc = ix_each_rec(ix, Q_CHUNKS, ino, meta_chunk, m);
	if (!rc)
		rc = ix_each_row(ix, Q_INO_HWM, 0, 0, 0, ix_row_u64, &m->hwm);
	if (!rc)
		rc = ix_get_irec(ix, ino, cur);
	pthread_mutex_unlock(&ix->lock);
	if (rc)
		kv_meta_free(m);
	return rc;
}

/* ---- naming records ---- */

/* One of kv_index_set_irecs: 0, -ESTALE, -ENOENT, or an SQLite failure.
 * Locked (kv_index.lock), inside a transaction. */
static int set_irec(struct kv_index *ix, const struct kv_irec_set *r)
{
	struct kv_loc now;
	struct kv_attr a;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = ix_getattr(ix, r->ino, &a);
	if (!rc)
		rc = ix_get_irec(ix, r->ino, &now);
	if (!rc && (now.seg != r->expect.seg || now.off != r->expect.off || now.len != r->expect.len))
		return -ESTALE;
	if (rc)
		return rc;
	return ix_put_chunk(ix, r->ino, -1, &r->loc, 0, 0);
}

int kv_index_set_irecs(struct kv_index *ix, struct kv_irec_set *r, size_t n)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	for (size_t i = 0; !rc && i < n; i++) {
		r[i].rc = set_irec(ix, &r[i]);
		if (r[i].rc != -ESTALE && r[i].rc != -ENOENT)
			rc = r[i].rc;
	}
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	/* Nothing of a failed transaction stands. */
	for (size_t i = 0; rc && i < n; i++)
		r[i].rc = rc;
	return rc;
}

/* ---- rebuild ---- */

/* The inode row of m, as it is. Locked (kv_index.lock), inside a transaction. */
static int restore_inode(struct kv_index *ix, const struct kv_meta *m)
{
	const struct kv_attr *a = &m->attr;
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_RESTORE_INODE);
	sqlite3_bind_int64(s, 1, (int64_t)a->ino);
	sqlite3_bind_int64(s, 2, a->mode);
	sqlite3_bind_int64(s, 3, a->uid);
	sqlite3_bind_int64(s, 4, a->gid);
	sqlite3_bind_int64(s, 5, a->nlink);
	sqlite3_bind_int64(s, 6, (int64_t)a->size);
	sqlite3_bind_int64(s, 7, (int64_t)a->stored);
	sqlite3_bind_int64(s, 8, (int64_t)a->rdev);
	sqlite3_bind_int64(s, 9, a->atime);
	sqlite3_bind_int64(s, 10, a->mtime);
	sqlite3_bind_int64(s, 11, a->ctime);
	if (m->target)
		sqlite3_bind_blob(s, 12, m->target, (int)strlen(m->target), SQLITE_TRANSIENT);
	return ix_run(ix, s);
}

/* The context row of m. Locked (kv_index.lock), inside a transaction. */
static int restore_ctx(struct kv_index *ix, const struct kv_meta *m)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_RESTORE_CTX);
	sqlite3_bind_int64(s, 1, (int64_t)m->attr.ino);
	sqlite3_bind_int64(s, 2, m->attr.mtime);
	sqlite3_bind_int64(s, 3, m->pin);
	if (m->ttl >= 0)
		sqlite3_bind_int64(s, 4, m->ttl);
	return ix_run(ix, s);
}

int kv_index_restore(struct kv_index *ix, const struct kv_meta *m, const struct kv_loc *rec)
{
	uint64_t ino = m->attr.ino;
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = restore_inode(ix, m);
	for (size_t i = 0; !rc && i < m->nlinks; i++) {
		s = ix_q(ix, Q_INS_DENTRY);
		sqlite3_bind_int64(s, 1, (int64_t)m->links[i].parent);
		sqlite3_bind_blob(s, 2, m->links[i].name, m->links[i].len, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (int64_t)ino);
		rc = ix_run(ix, s);
	}
	for (size_t i = 0; !rc && i < m->nx; i++) {
		s = ix_q(ix, Q_INSX);
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		sqlite3_bind_blob(s, 2, m->x[i].name, (int)strlen(m->x[i].name), SQLITE_STATIC);
		sqlite3_bind_blob(s, 3, m->x[i].value, (int)m->x[i].len, SQLITE_STATIC);
		rc = ix_run(ix, s);
	}
	for (size_t i = 0; !rc && i < m->nchunks; i++)
		rc = ix_put_chunk(ix, ino, (int64_t)m->chunks[i].idx, &m->chunks[i].loc,
				  m->chunks[i].raw, m->chunks[i].codec);
	if (!rc && rec)
		rc = ix_put_chunk(ix, ino, -1, rec, 0, 0);
	if (!rc && (m->flags & KV_META_HAS_CTX))
		rc = restore_ctx(ix, m);
	return rc;
}

int kv_index_set_next_ino(struct kv_index *ix, uint64_t next)
{
	KV_ASSERT_HELD(&ix->lock);
	/* In the caller's transaction, so under its lock. */
	return ix_each_row(ix, Q_SET_NEXT_INO, (int64_t)next - 1, 0, 0, NULL, NULL);
}
