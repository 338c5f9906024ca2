/* SPDX-License-Identifier: Apache-2.0 */
/* The index's context rows (schema 2): the cache policy state of each
 * context, its LRU order, TTL expiry and pins. */
#include "index_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>

static int row_ctx(sqlite3_stmt *s, void *arg)
{
	struct kv_ctx_row *r = arg;

	r->ino = (uint64_t)sqlite3_column_int64(s, 0);
	r->last_access = sqlite3_column_int64(s, 1);
	r->hits = (uint64_t)sqlite3_column_int64(s, 2);
	r->pin = sqlite3_column_int(s, 3);
	r->ttl = sqlite3_column_type(s, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 4);
	return 1;
}

int kv_index_ctx_get(struct kv_index *ix, uint64_t ino, struct kv_ctx_row *r)
{
	int rc;

	r->ino = 0;
	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_CTX_GET, (int64_t)ino, 0, 0, row_ctx, r);
	pthread_mutex_unlock(&ix->lock);
	return rc ? rc : r->ino == ino ? 0 : -ENOENT;
}

static int row_found(sqlite3_stmt *s, void *arg)
{
	(void)s;
	*(int *)arg = 1;
	return 1;
}

static int ctx_add(struct kv_index *ix, const struct kv_ctx_row *r, int must_exist)
{
	int rc = 0, found = 0;

	pthread_mutex_lock(&ix->lock);
	if (must_exist)
		rc = ix_each_row(ix, Q_INODE_NAMED, (int64_t)r->ino, 0, 0, row_found, &found);
	if (!rc && must_exist && !found)
		rc = -ENOENT;
	if (!rc)
		rc = ix_each_row(ix, Q_CTX_ADD, (int64_t)r->ino, r->last_access, 0, NULL, NULL);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_ctx_add(struct kv_index *ix, const struct kv_ctx_row *r) { return ctx_add(ix, r, 0); }
int kv_index_ctx_new(struct kv_index *ix, const struct kv_ctx_row *r) { return ctx_add(ix, r, 1); }

int kv_index_ctx_save(struct kv_index *ix, const struct kv_ctx_row *r, size_t n)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	for (size_t i = 0; !rc && i < n; i++) {
		sqlite3_stmt *s = ix_q(ix, Q_CTX_SAVE);
		sqlite3_bind_int64(s, 1, (int64_t)r[i].ino);
		sqlite3_bind_int64(s, 2, r[i].last_access);
		sqlite3_bind_int64(s, 3, (int64_t)r[i].hits);
		sqlite3_bind_int(s, 4, r[i].pin);
		if (r[i].ttl >= 0)
			sqlite3_bind_int64(s, 5, r[i].ttl);
		rc = ix_run(ix, s);
	}
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* Appends column 0 of a row to an ix_inos of a fixed size, stopping when
 * it is full (an ix_each_row callback). */
static int row_ino(sqlite3_stmt *s, void *arg)
{
	struct ix_inos *l = arg;

	l->v[l->n++] = (uint64_t)sqlite3_column_int64(s, 0);
	return l->n == l->max;
}

int kv_index_ctx_lru(struct kv_index *ix, size_t skip, uint64_t *ino, size_t max, size_t *n)
{
	struct ix_inos l = { ino, 0, max };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_CTX_LRU, (int64_t)max, (int64_t)skip, 0, row_ino, &l);
	pthread_mutex_unlock(&ix->lock);
	*n = l.n;
	return rc;
}

int kv_index_ctx_expired(struct kv_index *ix, int64_t now, int64_t default_ttl, uint64_t *ino,
			 size_t max, size_t *n)
{
	struct ix_inos l = { ino, 0, max };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, Q_CTX_EXPIRED, now, default_ttl, (int64_t)max, row_ino, &l);
	pthread_mutex_unlock(&ix->lock);
	*n = l.n;
	return rc;
}

int kv_index_ctx_count(struct kv_index *ix, int with_ttl, uint64_t *n)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_each_row(ix, with_ttl ? Q_CTX_COUNT_TTL : Q_CTX_COUNT, 0, 0, 0, ix_row_u64, n);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_ctx_del(struct kv_index *ix, uint64_t ino)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_by_ino(ix, Q_DEL_CTX, ino);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_ctx_scan(struct kv_index *ix, int depth, int64_t now)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (!rc)
		rc = ix_each_row(ix, Q_CTX_CLEAR, 0, 0, 0, NULL, NULL);
	if (!rc)
		rc = ix_each_row(ix, depth ? Q_CTX_SCAN_DIRS : Q_CTX_SCAN_FILES, depth, now, 0,
				 NULL, NULL);
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}
