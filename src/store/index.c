/* SPDX-License-Identifier: Apache-2.0 */
/* The index: open, schema migrations, settings, transactions, the kept
 * statements and the one mapping of SQLite's results to errnos. The rest
 * of the index is in the files index_int.h lists. */
#include "index_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "lock.h"
#include "log.h"

#define KV_APPLICATION_ID 0x6b766673 /* "kvfs" */

/* The subtree of ?1 (itself included), as the common table "sub". */
#define SUBTREE \
	"WITH RECURSIVE sub(ino) AS (SELECT ?1 UNION ALL " \
	"SELECT d.ino FROM dentry d JOIN sub ON d.parent = sub.ino) "

/* The statements of enum ix_stmt (index_int.h says why they are all kept). */
static const char *const kv_sql[Q_COUNT] = {
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",

	[Q_STORE_ID] = "SELECT value FROM meta WHERE key='store_id'",
	[Q_INIT_ROOT] = "INSERT INTO inode(ino,mode,uid,gid,nlink,atime,mtime,ctime) "
			"VALUES(?1,?2,?3,?4,2,?5,?5,?5)",
	[Q_INIT_META] = "INSERT INTO meta(key,value) VALUES('store_id',?1),('format_version',?2)",
	[Q_SET_STORE_ID] = "UPDATE meta SET value=?1 WHERE key='store_id'",
	[Q_SETTING_GET] = "SELECT value FROM meta WHERE key=?1",
	[Q_SETTING_SET] = "INSERT OR REPLACE INTO meta(key,value) VALUES(?1,?2)",

	/* index_ns.c */
	[Q_GETATTR] =
		"SELECT ino,mode,uid,gid,nlink,size,stored,rdev,atime,mtime,ctime FROM inode WHERE ino=?1",
	[Q_LOOKUP] = "SELECT i.ino,i.mode,i.uid,i.gid,i.nlink,i.size,i.stored,i.rdev,i.atime,i.mtime,i.ctime "
		     "FROM dentry d JOIN inode i ON i.ino=d.ino WHERE d.parent=?1 AND d.name=?2",
	[Q_PARENT] = "SELECT parent FROM dentry WHERE ino=?1 LIMIT 1",
	[Q_ENTRY_OF] = "SELECT parent, name FROM dentry WHERE ino=?1 LIMIT 1",
	[Q_INS_INODE] = "INSERT INTO inode(mode,uid,gid,nlink,size,stored,rdev,atime,mtime,ctime,target) "
			"VALUES(?1,?2,?3,?4,0,0,?5,?6,?7,?8,?9)",
	[Q_INS_DENTRY] = "INSERT INTO dentry(parent,name,ino) VALUES(?1,?2,?3)",
	[Q_DEL_DENTRY] = "DELETE FROM dentry WHERE parent=?1 AND name=?2",
	[Q_SET_NLINK] = "UPDATE inode SET nlink=nlink+?2, ctime=?3 WHERE ino=?1",
	[Q_TOUCH_DIR] = "UPDATE inode SET nlink=nlink+?2, mtime=?3, ctime=?3 WHERE ino=?1",
	[Q_HAS_CHILD] = "SELECT 1 FROM dentry WHERE parent=?1 LIMIT 1",
	[Q_READLINK] = "SELECT target FROM inode WHERE ino=?1",
	[Q_READDIR] = "SELECT d.id,d.name,i.ino,i.mode,i.uid,i.gid,i.nlink,i.size,i.stored,i.rdev,i.atime,"
		      "i.mtime,i.ctime FROM dentry d JOIN inode i ON i.ino=d.ino "
		      "WHERE d.parent=?1 AND d.id>?2 ORDER BY d.id",
	[Q_MOVE_DENTRY] = "UPDATE dentry SET parent=?3, name=?4 WHERE parent=?1 AND name=?2",
	[Q_SET_DENTRY_INO] = "UPDATE dentry SET ino=?3 WHERE parent=?1 AND name=?2",
	/* Columns whose parameter is left unbound (NULL) keep their value. */
	[Q_SETATTR] = "UPDATE inode SET mode=coalesce(?2,mode), uid=coalesce(?3,uid), "
		      "gid=coalesce(?4,gid), size=coalesce(?5,size), atime=coalesce(?6,atime), "
		      "mtime=coalesce(?7,mtime), ctime=coalesce(?8,ctime) WHERE ino=?1",
	[Q_GETX] = "SELECT value FROM xattr WHERE ino=?1 AND name=?2",
	[Q_PUTX] = "UPDATE xattr SET value=?3 WHERE ino=?1 AND name=?2",
	[Q_INSX] = "INSERT INTO xattr(ino,name,value) VALUES(?1,?2,?3)",
	[Q_LISTX] = "SELECT name FROM xattr WHERE ino=?1 ORDER BY name",
	[Q_DELX] = "DELETE FROM xattr WHERE ino=?1 AND name=?2",

	/* index_data.c */
	[Q_CHUNKS] = "SELECT idx,seg,off,len,raw,codec FROM chunk WHERE ino=?1 AND idx>=0 ORDER BY idx",
	/* Every record of an inode: its chunks and its inode record (idx -1). */
	[Q_RECS] = "SELECT idx,seg,off,len,raw,codec FROM chunk WHERE ino=?1 ORDER BY idx",
	[Q_GET_IREC] = "SELECT seg,off,len FROM chunk WHERE ino=?1 AND idx=-1",
	[Q_DEL_CHUNKS_FROM] = "DELETE FROM chunk WHERE ino=?1 AND idx>=?2",
	[Q_PUT_CHUNK] =
		"INSERT OR REPLACE INTO chunk(ino,idx,seg,off,len,raw,codec) VALUES(?1,?2,?3,?4,?5,?6,?7)",
	[Q_PUBLISH] = "UPDATE inode SET size=?2, stored=?3, mtime=?4, ctime=?5 WHERE ino=?1",
	[Q_DEL_RECS] = "DELETE FROM chunk WHERE ino=?1",
	[Q_DEL_XATTRS] = "DELETE FROM xattr WHERE ino=?1",
	[Q_DEL_CTX] = "DELETE FROM context WHERE ino=?1",
	[Q_DEL_CHILDREN] = "DELETE FROM dentry WHERE parent=?1",
	[Q_DEL_LINKS] = "DELETE FROM dentry WHERE ino=?1",
	[Q_DEL_INODE] = "DELETE FROM inode WHERE ino=?1",
	[Q_SUBTREE] = SUBTREE "SELECT ino FROM sub",
	[Q_ORPHANS] = "SELECT ino FROM inode WHERE nlink=0",
	[Q_WITHOUT_IREC] = "SELECT ino FROM inode WHERE nlink>0 AND ino NOT IN "
			   "(SELECT ino FROM chunk WHERE idx=-1) ORDER BY ino",
	[Q_EXTENTS] = "SELECT idx, seg, off, len FROM chunk ORDER BY seg, off",
	[Q_SEGS] = "SELECT seg,sum(len) FROM chunk GROUP BY seg",
	[Q_USAGE] = SUBTREE "SELECT coalesce(sum(i.size),0), coalesce(sum(i.stored),0), "
			    "count(*) FROM sub JOIN inode i ON i.ino = sub.ino "
			    "WHERE (i.mode & 61440) = 32768",
	[Q_CODECS] = SUBTREE "SELECT DISTINCT c.codec FROM sub JOIN chunk c ON c.ino = sub.ino "
			     "WHERE c.idx >= 0 ORDER BY 1",
	[Q_IREC_BYTES] = "SELECT coalesce(sum(len),0) FROM chunk WHERE idx=-1",
	[Q_STAT_FILES] = "SELECT count(*) FROM inode WHERE (mode & 61440) = 32768",
	[Q_STAT_DIRS] = "SELECT count(*) FROM inode WHERE (mode & 61440) = 16384",
	[Q_STAT_CONTEXTS] = "SELECT count(*) FROM dentry d1 JOIN inode i1 ON i1.ino=d1.ino "
			    "JOIN dentry d2 ON d2.parent=d1.ino JOIN inode i2 ON i2.ino=d2.ino "
			    "WHERE d1.parent=1 AND (i1.mode & 61440)=16384 AND (i2.mode & 61440)=16384",
	[Q_STAT_LOGICAL] = "SELECT coalesce(sum(size),0) FROM inode WHERE (mode & 61440) = 32768",
	[Q_STAT_STORED] = "SELECT coalesce(sum(stored),0) FROM inode",

	/* index_meta.c */
	[Q_IREC_LINKS] = "SELECT parent, name FROM dentry WHERE ino=?1 ORDER BY id",
	[Q_IREC_XATTRS] = "SELECT name, value FROM xattr WHERE ino=?1 ORDER BY name",
	[Q_IREC_CTX] = "SELECT pin, ttl FROM context WHERE ino=?1",
	[Q_INO_HWM] = "SELECT seq FROM sqlite_sequence WHERE name='inode'",
	/* Inode 1 exists in every new index: replaced. */
	[Q_RESTORE_INODE] = "INSERT OR REPLACE INTO inode(ino,mode,uid,gid,nlink,size,stored,"
			    "rdev,atime,mtime,ctime,target) "
			    "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
	[Q_RESTORE_CTX] = "INSERT OR REPLACE INTO context(ino,last_access,pin,ttl) "
			  "VALUES(?1,?2,?3,?4)",
	/* AUTOINCREMENT hands out max(seq, largest ino) + 1. */
	[Q_SET_NEXT_INO] = "UPDATE sqlite_sequence SET seq=max(seq, ?1) WHERE name='inode'",

	/* index_ctx.c */
	[Q_CTX_GET] = "SELECT ino,last_access,hits,pin,ttl FROM context WHERE ino=?1",
	[Q_INODE_NAMED] = "SELECT 1 FROM inode WHERE ino=?1 AND nlink>0",
	[Q_CTX_ADD] = "INSERT OR IGNORE INTO context(ino,last_access) VALUES(?1,?2)",
	[Q_CTX_SAVE] = "UPDATE context SET last_access=?2, hits=?3, pin=?4, ttl=?5 WHERE ino=?1",
	[Q_CTX_LRU] = "SELECT ino FROM context WHERE pin=0 ORDER BY last_access LIMIT ?1 OFFSET ?2",
	/* Two ranges of schema 4's partial indexes, so that the sweep reads
	 * only expired rows. INDEXED BY: without statistics (kvfs runs no
	 * ANALYZE) the planner prefers context_lru's pin=0, a scan of every
	 * unpinned context. */
	[Q_CTX_EXPIRED] = "SELECT ino FROM context INDEXED BY context_ttl_default "
			  "WHERE pin = 0 AND ttl IS NULL AND ?2 > 0 AND "
			  "last_access < ?1 - ?2 * 1000000000 "
			  "UNION ALL SELECT ino FROM context INDEXED BY context_ttl_own "
			  "WHERE pin = 0 AND ttl > 0 AND last_access + ttl * 1000000000 < ?1 LIMIT ?3",
	[Q_CTX_COUNT] = "SELECT count(*) FROM context",
	[Q_CTX_COUNT_TTL] = "SELECT count(*) FROM context WHERE ttl > 0",
	[Q_CTX_CLEAR] = "DELETE FROM context",
	[Q_CTX_SCAN_FILES] = "INSERT OR IGNORE INTO context(ino,last_access) "
			     "SELECT ino, ?2 FROM inode WHERE (mode & 61440) = 32768",
	[Q_CTX_SCAN_DIRS] =
		"WITH RECURSIVE t(ino, depth) AS (SELECT 1, 0 UNION ALL "
		"SELECT d.ino, t.depth + 1 FROM dentry d JOIN t ON d.parent = t.ino "
		"JOIN inode i ON i.ino = d.ino WHERE t.depth < ?1 AND (i.mode & 61440) = 16384) "
		"INSERT OR IGNORE INTO context(ino,last_access) "
		"SELECT ino, ?2 FROM t WHERE depth = ?1",
};

/* ---- statements and errors ---- */

/* Every statement's result goes through here, so that a failure is never
 * taken for "no row": readdir would end the listing, a lookup would say
 * ENOENT, rmdir would find a directory empty. A constraint is an insert
 * of a key that exists (rebuild restoring a name twice); the namespace
 * looks for an existing name itself before it inserts one. */
int ix_errno(struct kv_index *ix, int rc)
{
	KV_ASSERT_HELD(&ix->lock);
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE: return 0;
	case SQLITE_CONSTRAINT: return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		kv_err("index %s: %s: the index is damaged; stop kvfs and run `kvfsctl fsck` and "
		       "`kvfsctl rebuild` (docs/reliability.md)",
		       ix->path, sqlite3_errmsg(ix->db));
		return -EIO;
	case SQLITE_FULL: kv_err("index %s: %s", ix->path, sqlite3_errmsg(ix->db)); return -ENOSPC;
	default: kv_err("index %s: %s", ix->path, sqlite3_errmsg(ix->db)); return -EIO;
	}
}

sqlite3_stmt *ix_q(struct kv_index *ix, enum ix_stmt which)
{
	sqlite3_stmt *s = ix->q[which];

	KV_ASSERT_HELD(&ix->lock);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

int ix_step(struct kv_index *ix, sqlite3_stmt *s)
{
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = sqlite3_step(s);
	return rc == SQLITE_ROW ? 1 : ix_errno(ix, rc);
}

int ix_run(struct kv_index *ix, sqlite3_stmt *s)
{
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = ix_step(ix, s);
	sqlite3_reset(s);
	return rc < 0 ? rc : 0;
}

int ix_each_row(struct kv_index *ix, enum ix_stmt which, int64_t a, int64_t b, int64_t c,
		int (*cb)(sqlite3_stmt *s, void *arg), void *arg)
{
	sqlite3_stmt *s;
	int n, rc, stop = 0;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, which);
	n = sqlite3_bind_parameter_count(s);
	if (n >= 1)
		sqlite3_bind_int64(s, 1, a);
	if (n >= 2)
		sqlite3_bind_int64(s, 2, b);
	if (n >= 3)
		sqlite3_bind_int64(s, 3, c);
	while (!stop && (rc = ix_step(ix, s)) > 0)
		stop = cb ? cb(s, arg) : 0;
	sqlite3_reset(s);
	return stop < 0 ? stop : rc < 0 ? rc : 0;
}

int ix_by_ino(struct kv_index *ix, enum ix_stmt which, uint64_t ino)
{
	KV_ASSERT_HELD(&ix->lock);
	return ix_each_row(ix, which, (int64_t)ino, 0, 0, NULL, NULL);
}

int ix_row_u64(sqlite3_stmt *s, void *arg)
{
	*(uint64_t *)arg = (uint64_t)sqlite3_column_int64(s, 0);
	return 1;
}

int ix_begin(struct kv_index *ix)
{
	KV_ASSERT_HELD(&ix->lock);
	return ix_run(ix, ix_q(ix, Q_BEGIN));
}

int ix_end(struct kv_index *ix, int rc)
{
	KV_ASSERT_HELD(&ix->lock);
	if (!rc)
		rc = ix_run(ix, ix_q(ix, Q_COMMIT));
	if (rc) {
		/* Its own failure is not the caller's: SQLite may have rolled
		 * the transaction back already. */
		sqlite3_stmt *s = ix_q(ix, Q_ROLLBACK);
		sqlite3_step(s);
		sqlite3_reset(s);
	}
	return rc;
}

/* Prepares and keeps the statements from up to (not including) to. At
 * open; Locked (kv_index.lock). */
static int prepare_all(struct kv_index *ix, int from, int to)
{
	int rc = 0;

	KV_ASSERT_HELD(&ix->lock);
	for (int i = from; !rc && i < to; i++)
		rc = ix_errno(ix, sqlite3_prepare_v3(ix->db, kv_sql[i], -1,
						     SQLITE_PREPARE_PERSISTENT, &ix->q[i], NULL));
	return rc;
}

int ix_sql(struct kv_index *ix, const char *text)
{
	KV_ASSERT_HELD(&ix->lock);
	return ix_errno(ix, sqlite3_exec(ix->db, text, NULL, NULL, NULL));
}

/* The first column of the first row of text (0 without one), and
 * SQLite's result code: for check_identity, which tells the reasons
 * apart in its message. */
static int peek_int(sqlite3 *db, const char *text, int64_t *v)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(db, text, -1, &s, NULL);

	*v = 0;
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW)
		*v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc;
}

/* The value of a pragma (text, not kept). Locked (kv_index.lock). */
static int pragma_int(struct kv_index *ix, const char *text, int64_t *v)
{
	KV_ASSERT_HELD(&ix->lock);
	return ix_errno(ix, peek_int(ix->db, text, v));
}

/* ---- open ---- */

/* A foreign or newer file must be refused before anything is written. */
static int check_identity(struct kv_index *ix, int *fresh, char *err, size_t errlen)
{
	static const char *const text[3] = { "PRAGMA application_id", "PRAGMA user_version",
					     "SELECT count(*) FROM sqlite_master" };
	int64_t v[3];
	int64_t appid, ver, tables;

	for (int i = 0; i < 3; i++) {
		int rc = peek_int(ix->db, text[i], &v[i]) & 0xff;
		if (rc == SQLITE_CORRUPT) {
			snprintf(err, errlen,
				 "index %s is damaged (%s): run `kvfsctl rebuild` "
				 "(docs/reliability.md)",
				 ix->path, sqlite3_errmsg(ix->db));
			return -EIO;
		}
		if (rc == SQLITE_NOTADB) {
			snprintf(err, errlen, "%s is not a kvfs index (not an SQLite database: %s)",
				 ix->path, sqlite3_errmsg(ix->db));
			return -EINVAL;
		}
		if (rc != SQLITE_ROW) {
			snprintf(err, errlen, "cannot read index %s: %s", ix->path,
				 sqlite3_errmsg(ix->db));
			return -EIO;
		}
	}
	appid = v[0];
	ver = v[1];
	tables = v[2];
	*fresh = appid == 0 && ver == 0 && tables == 0;
	if (!*fresh && appid != KV_APPLICATION_ID) {
		snprintf(err, errlen, "%s is not a kvfs index (application_id %#llx)", ix->path,
			 (unsigned long long)appid);
		return -EINVAL;
	}
	if (ver > kv_index_migrations[kv_index_nmigrations - 1].version) {
		snprintf(err, errlen, "%s has schema version %lld; this kvfs knows up to %d",
			 ix->path, (long long)ver,
			 kv_index_migrations[kv_index_nmigrations - 1].version);
		return -EINVAL;
	}
	return 0;
}

/* Applies the migrations newer than the file, one transaction each. At
 * open; Locked (kv_index.lock). */
static int migrate(struct kv_index *ix, int fresh)
{
	int64_t ver;
	char text[64];
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	rc = pragma_int(ix, "PRAGMA user_version", &ver);
	if (rc)
		return rc;
	for (int i = 0; i < kv_index_nmigrations; i++) {
		const struct kv_index_migration *m = &kv_index_migrations[i];
		if (m->version <= ver)
			continue;
		rc = ix_begin(ix);
		if (rc)
			return rc;
		rc = ix_sql(ix, m->sql);
		snprintf(text, sizeof(text), "PRAGMA user_version=%d", m->version);
		if (!rc)
			rc = ix_sql(ix, text);
		if (!rc && fresh) {
			snprintf(text, sizeof(text), "PRAGMA application_id=%d", KV_APPLICATION_ID);
			rc = ix_sql(ix, text);
		}
		rc = ix_end(ix, rc);
		if (rc)
			return rc;
		kv_info("index %s: applied schema %s", ix->path, m->name);
	}
	return 0;
}

/* A fresh store gets a root directory and an identity; an existing one's
 * identity is read. At open; Locked (kv_index.lock). */
static int init_store(struct kv_index *ix)
{
	sqlite3_stmt *s;
	int rc;

	KV_ASSERT_HELD(&ix->lock);
	s = ix_q(ix, Q_STORE_ID);
	rc = ix_step(ix, s);
	if (rc > 0 && sqlite3_column_bytes(s, 0) == 16)
		memcpy(ix->id, sqlite3_column_blob(s, 0), 16);
	else if (rc > 0) {
		kv_err("index %s: no store id in the meta table", ix->path);
		rc = -EIO;
	}
	sqlite3_reset(s);
	if (rc)
		return rc < 0 ? rc : 0;
	if (getrandom(ix->id, sizeof(ix->id), 0) != sizeof(ix->id))
		return -EIO;
	rc = ix_begin(ix);
	if (rc)
		return rc;
	s = ix_q(ix, Q_INIT_ROOT);
	sqlite3_bind_int64(s, 1, KV_ROOT_INO);
	sqlite3_bind_int64(s, 2, S_IFDIR | 0755);
	sqlite3_bind_int64(s, 3, getuid());
	sqlite3_bind_int64(s, 4, getgid());
	sqlite3_bind_int64(s, 5, kv_now_ns());
	rc = ix_run(ix, s);
	if (!rc) {
		s = ix_q(ix, Q_INIT_META);
		sqlite3_bind_blob(s, 1, ix->id, sizeof(ix->id), SQLITE_STATIC);
		sqlite3_bind_int(s, 2, KV_FORMAT_VERSION);
		rc = ix_run(ix, s);
	}
	return ix_end(ix, rc);
}

int kv_index_open(const char *path, int create, struct kv_index **out, char *err, size_t errlen)
{
	struct kv_index *ix = calloc(1, sizeof(*ix));
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	int fresh = 0, rc = -EIO;

	if (!ix)
		return -ENOMEM;
	snprintf(ix->path, sizeof(ix->path), "%s", path);
	pthread_mutex_init(&ix->lock, NULL);
	pthread_mutex_init(&ix->ckpt_lock, NULL);
	pthread_cond_init(&ix->ckpt_cond, NULL);
	/* No other thread has ix yet: held for the functions that check it. */
	pthread_mutex_lock(&ix->lock);
	if (sqlite3_open_v2(path, &ix->db, flags, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open index %s: %s", path,
			 ix->db ? sqlite3_errmsg(ix->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(ix->db, 10000);
	rc = check_identity(ix, &fresh, err, errlen);
	if (rc)
		goto fail;
	rc = ix_sql(ix, "PRAGMA journal_mode=WAL");
	if (!rc)
		rc = ix_sql(ix, "PRAGMA synchronous=NORMAL");
	if (!rc)
		rc = ix_sql(ix, "PRAGMA foreign_keys=OFF");
	if (!rc)
		rc = prepare_all(ix, 0, IX_NTXN);
	if (!rc)
		rc = migrate(ix, fresh);
	if (!rc)
		rc = prepare_all(ix, IX_NTXN, Q_COUNT);
	if (!rc)
		rc = init_store(ix);
	if (rc) {
		/* SQLite's message is in the log: a rollback may have cleared it. */
		snprintf(err, errlen, "cannot initialise index %s: %s", path,
			 sqlite3_errcode(ix->db) ? sqlite3_errmsg(ix->db) : strerror(-rc));
		goto fail;
	}
	pthread_mutex_unlock(&ix->lock);
	*out = ix;
	return 0;
fail:
	pthread_mutex_unlock(&ix->lock);
	kv_index_close(ix);
	return rc;
}

int kv_index_check(const char *path, char *err, size_t errlen)
{
	struct kv_index ix = { 0 };
	int fresh, rc;

	snprintf(ix.path, sizeof(ix.path), "%s", path);
	if (sqlite3_open_v2(path, &ix.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open index %s: %s", path,
			 ix.db ? sqlite3_errmsg(ix.db) : "out of memory");
		sqlite3_close(ix.db);
		return -EINVAL;
	}
	rc = check_identity(&ix, &fresh, err, errlen);
	if (!rc && fresh) {
		snprintf(err, errlen, "%s is an empty database, not a kvfs index", path);
		rc = -EINVAL;
	}
	sqlite3_close(ix.db);
	return rc;
}

void kv_index_close(struct kv_index *ix)
{
	if (!ix)
		return;
	ix_ckpt_stop(ix);
	pthread_mutex_destroy(&ix->ckpt_lock);
	pthread_cond_destroy(&ix->ckpt_cond);
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(ix->q[i]);
	sqlite3_close(ix->db);
	pthread_mutex_destroy(&ix->lock);
	free(ix);
}

/* ---- settings and transactions ---- */

void kv_index_store_id(struct kv_index *ix, uint8_t id[16]) { memcpy(id, ix->id, 16); }

int kv_index_set_store_id(struct kv_index *ix, const uint8_t id[16])
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_SET_STORE_ID);
	sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
	rc = ix_run(ix, s);
	if (!rc)
		memcpy(ix->id, id, 16);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_meta_get(struct kv_index *ix, const char *key, int64_t *value)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_SETTING_GET);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = ix_step(ix, s);
	if (rc > 0)
		*value = sqlite3_column_int64(s, 0);
	rc = rc > 0 ? 0 : rc ? rc : -ENOENT;
	sqlite3_reset(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_meta_set(struct kv_index *ix, const char *key, int64_t value)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = ix_q(ix, Q_SETTING_SET);
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, value);
	rc = ix_run(ix, s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_user_version(struct kv_index *ix)
{
	int64_t v = 0;

	pthread_mutex_lock(&ix->lock);
	pragma_int(ix, "PRAGMA user_version", &v);
	pthread_mutex_unlock(&ix->lock);
	return (int)v;
}

int kv_index_begin(struct kv_index *ix)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = ix_begin(ix);
	if (rc)
		pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_commit(struct kv_index *ix, int rc)
{
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}
