/* SPDX-License-Identifier: Apache-2.0 */
/* The index's chunk rows: chunk lists, publish, the deletion of inodes
 * and trees, the scans of gc and fsck, and sizes (usage, codecs, stats). */
#include "index_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lock.h"

/* ---- chunk rows ---- */

int ix_each_rec(struct kv_index *ix, enum ix_stmt which, uint64_t ino, kv_index_chunk_cb cb,
		void *arg)
{
	sqlite3_stmt *s;
	int rc, stop = 0;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, which);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while (!stop && (rc = ix_step(ix, s)) > 0) {
		struct kv_chunk c = {
			.idx = (uint64_t)sqlite3_column_int64(s, 0),
			.loc.seg = (uint32_t)sqlite3_column_int64(s, 1),
			.loc.off = (uint64_t)sqlite3_column_int64(s, 2),
			.loc.len = (uint32_t)sqlite3_column_int64(s, 3),
			.raw = (uint32_t)sqlite3_column_int64(s, 4),
			.codec = (uint8_t)sqlite3_column_int64(s, 5),
		};
		stop = cb(arg, &c);
	}
	sqlite3_reset(s);
	return stop < 0 ? stop : rc < 0 ? rc : 0;
}

int kv_index_chunks(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_rec(ix, Q_CHUNKS, ino, cb, arg);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_file_chunks(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	struct kv_attr a;
	int rc;

	pthread_mutex_lock(&ix->lock);
	/* Under the same lock as the rows: an inode deleted meanwhile (evicted)
	 * is ENOENT, never an empty chunk list. */
	rc = ix_getattr(ix, ino, &a);
	if (!rc)
		rc = ix_each_rec(ix, Q_CHUNKS, ino, cb, arg);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int ix_get_irec(struct kv_index *ix, uint64_t ino, struct kv_loc *loc)
{
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_GET_IREC);
	memset(loc, 0, sizeof(*loc));
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = ix_step(ix, s);
	if (rc > 0) {
		loc->seg = (uint32_t)sqlite3_column_int64(s, 0);
		loc->off = (uint64_t)sqlite3_column_int64(s, 1);
		loc->len = (uint32_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	return rc < 0 ? rc : 0;
}

int ix_put_chunk(struct kv_index *ix, uint64_t ino, int64_t idx, const struct kv_loc *loc,
		 uint32_t raw, uint8_t codec)
{
	sqlite3_stmt *s;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_PUT_CHUNK);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_int64(s, 2, idx);
	sqlite3_bind_int64(s, 3, loc->seg);
	sqlite3_bind_int64(s, 4, (int64_t)loc->off);
	sqlite3_bind_int64(s, 5, loc->len);
	sqlite3_bind_int64(s, 6, raw);
	sqlite3_bind_int64(s, 7, codec);
	return ix_run(ix, s);
}

int kv_index_publish(struct kv_index *ix, const struct kv_attr *a, uint64_t keep,
		     const struct kv_chunk *c, size_t n, int durable, struct kv_loc *old_rec)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	if (durable)
		ix_sql(ix, "PRAGMA synchronous=FULL");
	rc = ix_begin(ix);
	if (rc)
		goto out;
	if (old_rec)
		rc = ix_get_irec(ix, a->ino, old_rec);
	if (!rc && keep <= (uint64_t)INT64_MAX) {
		s = ix_q(ix, Q_DEL_CHUNKS_FROM);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)keep);
		rc = ix_run(ix, s);
	}
	for (size_t i = 0; !rc && i < n; i++)
		rc = ix_put_chunk(ix, a->ino, (int64_t)c[i].idx, &c[i].loc, c[i].raw, c[i].codec);
	if (!rc) {
		s = ix_q(ix, Q_PUBLISH);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)a->size);
		sqlite3_bind_int64(s, 3, (int64_t)a->stored);
		sqlite3_bind_int64(s, 4, a->mtime);
		sqlite3_bind_int64(s, 5, a->ctime);
		rc = ix_run(ix, s);
	}
	rc = ix_end(ix, rc);
out:
	if (durable)
		ix_sql(ix, "PRAGMA synchronous=NORMAL");
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ---- deletion ---- */

int kv_index_drop(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	static const enum ix_stmt del[] = { Q_DEL_RECS, Q_DEL_XATTRS, Q_DEL_CTX, Q_DEL_INODE };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (!rc)
		rc = ix_each_rec(ix, Q_RECS, ino, cb, arg);
	for (size_t k = 0; !rc && k < sizeof(del) / sizeof(*del); k++)
		rc = ix_by_ino(ix, del[k], ino);
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* Appends column 0 of a row to a growing ix_inos (an ix_each_row
 * callback). */
static int row_collect(sqlite3_stmt *s, void *arg)
{
	struct ix_inos *l = arg;

	if (l->n == l->max) {
		size_t max = l->max ? 2 * l->max : 64;
		uint64_t *v = realloc(l->v, max * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->max = max;
	}
	l->v[l->n++] = (uint64_t)sqlite3_column_int64(s, 0);
	return 0;
}

int kv_index_drop_tree(struct kv_index *ix, uint64_t ino, int64_t now, kv_index_chunk_cb cb,
		       kv_index_ino_cb ino_cb, void *arg)
{
	static const enum ix_stmt del[] = { Q_DEL_RECS, Q_DEL_XATTRS, Q_DEL_CTX, Q_DEL_CHILDREN,
					    Q_DEL_INODE };
	struct ix_inos l = { 0 };
	struct kv_attr a;
	uint64_t parent = 0;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (!rc)
		rc = ix_getattr(ix, ino, &a);
	if (!rc) {
		/* A tree without an entry (unlinked meanwhile) has no parent
		 * to update. */
		rc = ix_parent_of(ix, ino, &parent);
		rc = rc == -ENOENT ? 0 : rc;
	}
	if (!rc)
		rc = ix_each_row(ix, Q_SUBTREE, (int64_t)ino, 0, 0, row_collect, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		rc = ix_each_rec(ix, Q_RECS, l.v[i], cb, arg);
		for (size_t k = 0; !rc && k < sizeof(del) / sizeof(*del); k++)
			rc = ix_by_ino(ix, del[k], l.v[i]);
	}
	if (!rc)
		rc = ix_by_ino(ix, Q_DEL_LINKS, ino);
	if (!rc && parent)
		rc = ix_add_links(ix, parent, S_ISDIR(a.mode) ? -1 : 0, now, 1);
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	for (size_t i = 0; !rc && i < l.n; i++)
		ino_cb(arg, l.v[i]);
	free(l.v);
	return rc;
}

/* ---- scans ---- */

/* The inodes which returns, handed to cb after the lock is dropped: the
 * callback may change the index. None on a failure. */
static int each_ino(struct kv_index *ix, enum ix_stmt which, kv_index_ino_cb cb, void *arg)
{
	struct ix_inos l = { 0 };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, which, 0, 0, 0, row_collect, &l);
	pthread_mutex_unlock(&ix->lock);
	for (size_t i = 0; !rc && i < l.n; i++)
		cb(arg, l.v[i]);
	free(l.v);
	return rc;
}

int kv_index_orphans(struct kv_index *ix, kv_index_ino_cb cb, void *arg)
{
	return each_ino(ix, Q_ORPHANS, cb, arg);
}

int kv_index_without_irec(struct kv_index *ix, kv_index_ino_cb cb, void *arg)
{
	return each_ino(ix, Q_WITHOUT_IREC, cb, arg);
}

struct extent_cb {
	kv_index_chunk_cb cb;
	void *arg;
};

static int row_extent(sqlite3_stmt *s, void *arg)
{
	struct extent_cb *e = arg;
	struct kv_chunk c = {
		.idx = (uint64_t)sqlite3_column_int64(s, 0),
		.loc.seg = (uint32_t)sqlite3_column_int64(s, 1),
		.loc.off = (uint64_t)sqlite3_column_int64(s, 2),
		.loc.len = (uint32_t)sqlite3_column_int64(s, 3),
	};

	return e->cb(e->arg, &c);
}

int kv_index_extents(struct kv_index *ix, kv_index_chunk_cb cb, void *arg)
{
	struct extent_cb e = { cb, arg };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_EXTENTS, 0, 0, 0, row_extent, &e);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_segments(struct kv_index *ix, kv_index_seg_cb cb, void *arg)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_SEGS);
	while ((rc = ix_step(ix, s)) > 0)
		cb(arg, (uint32_t)sqlite3_column_int64(s, 0), (uint64_t)sqlite3_column_int64(s, 1));
	sqlite3_reset(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ---- sizes ---- */

static int row_usage(sqlite3_stmt *s, void *arg)
{
	struct kv_usage *u = arg;

	u->logical = (uint64_t)sqlite3_column_int64(s, 0);
	u->stored = (uint64_t)sqlite3_column_int64(s, 1);
	u->files = (uint64_t)sqlite3_column_int64(s, 2);
	return 1;
}

int kv_index_usage(struct kv_index *ix, uint64_t ino, struct kv_usage *u)
{
	int rc;

	memset(u, 0, sizeof(*u));
	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_USAGE, (int64_t)ino, 0, 0, row_usage, u);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

struct codec_list {
	char *buf;
	size_t len;
};

static int row_codec(sqlite3_stmt *s, void *arg)
{
	struct codec_list *c = arg;
	size_t used = strlen(c->buf);

	snprintf(c->buf + used, c->len - used, "%s%s", used ? "," : "",
		 kv_codec_name((uint8_t)sqlite3_column_int(s, 0)));
	return 0;
}

int kv_index_codecs(struct kv_index *ix, uint64_t ino, char *buf, size_t len)
{
	struct codec_list c = { buf, len };
	int rc;

	buf[0] = 0;
	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_CODECS, (int64_t)ino, 0, 0, row_codec, &c);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_stats(struct kv_index *ix, struct kv_index_stats *st)
{
	/* One count each, in the order of kv_index_stats' fields. */
	static const enum ix_stmt which[5] = { Q_STAT_FILES, Q_STAT_DIRS, Q_STAT_CONTEXTS,
					       Q_STAT_LOGICAL, Q_STAT_STORED };
	uint64_t v[5] = { 0 };
	int rc = 0;

	pthread_mutex_lock(&ix->lock);
	for (int i = 0; i < 5 && !rc; i++)
		rc = ix_each_row(ix, which[i], 0, 0, 0, ix_row_u64, &v[i]);
	pthread_mutex_unlock(&ix->lock);
	st->files = v[0];
	st->dirs = v[1];
	st->contexts = v[2];
	st->logical = v[3];
	st->stored = v[4];
	return rc;
}

int kv_index_irec_bytes(struct kv_index *ix, uint64_t *n)
{
	int rc;

	*n = 0;
	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_IREC_BYTES, 0, 0, 0, ix_row_u64, n);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}
