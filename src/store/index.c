/* kv_index (index.h): the SQLite index of a store. Its sections: open,
 * schema migrations, settings and transactions; the checkpointer; the
 * namespace; chunk rows; inode records; contexts. */
#include "index.h"
#include "meta.h"
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define KV_APPLICATION_ID 0x6b766673 /* "kvfs" */

/* Every statement the index runs on its rows, by the section that runs
 * it (the texts are in kv_sql, below). This table is the one
 * statement mechanism: each statement is prepared once, at open, with
 * SQLITE_PREPARE_PERSISTENT, and kept. It replaced a second one, a cache
 * keyed by the address of the text, because a name finds a statement's
 * SQL and every use of it by grep, the table has no capacity to outgrow
 * (the cache fell back to preparing on each call when full), identical
 * texts cannot become two entries, and a statement that
 * does not compile fails the open, not an operation in a mount: no
 * operation has a "could not prepare" path. Statements before IX_NTXN
 * name no table: they are prepared before the migrations, which run in
 * transactions; the rest once the schema is current.
 *
 * Not in the table: pragmas and the migration scripts, run once through
 * ix_sql (SQLite applies most pragmas while it prepares them, so a kept
 * one would do nothing when run); check_identity's reads and the file
 * checks of the checkpointer's section, which need SQLite's own result code or run on
 * another connection. */
enum ix_stmt {
	/* transactions (no table) */
	Q_BEGIN, Q_COMMIT, Q_ROLLBACK,
	IX_NTXN,
	/* identity and settings */
	Q_STORE_ID = IX_NTXN, Q_INIT_ROOT, Q_INIT_META, Q_SET_STORE_ID, Q_SETTING_GET,
	Q_SETTING_SET,
	/* namespace */
	Q_GETATTR, Q_LOOKUP, Q_PARENT, Q_ENTRY_OF, Q_INS_INODE, Q_INS_DENTRY, Q_DEL_DENTRY,
	Q_SET_NLINK, Q_TOUCH_DIR, Q_HAS_CHILD, Q_READLINK, Q_READDIR, Q_MOVE_DENTRY,
	Q_SET_DENTRY_INO, Q_SETATTR, Q_GETX, Q_PUTX, Q_INSX, Q_LISTX, Q_DELX,
	/* chunk rows */
	Q_CHUNKS, Q_RECS, Q_GET_IREC, Q_DEL_CHUNKS_FROM, Q_PUT_CHUNK, Q_PUBLISH, Q_DEL_RECS,
	Q_DEL_XATTRS, Q_DEL_CTX, Q_DEL_CHILDREN, Q_DEL_LINKS, Q_DEL_INODE, Q_SUBTREE,
	Q_ORPHANS, Q_WITHOUT_IREC, Q_EXTENTS, Q_SEGS, Q_USAGE, Q_CODECS, Q_IREC_BYTES,
	Q_STAT_FILES, Q_STAT_DIRS, Q_STAT_CONTEXTS, Q_STAT_LOGICAL, Q_STAT_STORED,
	/* inode records */
	Q_IREC_LINKS, Q_IREC_XATTRS, Q_IREC_CTX, Q_INO_HWM, Q_RESTORE_INODE, Q_RESTORE_CTX,
	Q_SET_NEXT_INO,
	/* contexts */
	Q_CTX_GET, Q_INODE_NAMED, Q_CTX_ADD, Q_CTX_SAVE, Q_CTX_LRU, Q_CTX_EXPIRED, Q_CTX_COUNT,
	Q_CTX_COUNT_TTL, Q_CTX_CLEAR, Q_CTX_SCAN_FILES, Q_CTX_SCAN_DIRS,
	Q_COUNT
};

/* struct kv_index, field by field:
 *
 *   db        the main connection. Guarded by lock.
 *   lock      kv_index.lock, the index's mutex: it guards db and every
 *             statement in q (binding, stepping and resetting a statement
 *             are uses of db), for every public function. Taken after
 *             inode locks, never before (index.h).
 *   q         the kept statements, one per enum ix_stmt entry, prepared
 *             at open. Guarded by lock.
 *   ckpt_db   the checkpointer's connection: used only by its thread
 *             while it runs (opened before it starts, closed after it ends).
 *   ckpt_tid, ckpt_started
 *             set by kv_index_checkpointer, read by kv_index_close.
 *   ckpt_lock kv_index.ckpt_lock: guards ckpt_due and ckpt_stop
 *             (ckpt_cond waits on it). Taken inside lock (wal_hook runs
 *             in a commit on db), never the reverse.
 *   id        the store's identity: written at open and by
 *             kv_index_set_store_id (rebuild, under lock), read unlocked
 *             by kv_index_store_id.
 *   path      the index file; constant after open. */
struct kv_index {
	sqlite3 *db;
	pthread_mutex_t lock;
	sqlite3_stmt *q[Q_COUNT];

	sqlite3 *ckpt_db;
	pthread_t ckpt_tid;
	int ckpt_started;
	pthread_mutex_t ckpt_lock;
	pthread_cond_t ckpt_cond;
	int ckpt_due, ckpt_stop;

	uint8_t id[16];
	char path[4096];
};

/* ---- statements and errors ---- */

/* The errno of an SQLite result code on ix->db, the one mapping of every
 * path (extended codes by their primary code):
 *
 *   SQLITE_OK, SQLITE_ROW, SQLITE_DONE     0
 *   SQLITE_CONSTRAINT                      -EEXIST (a key that exists)
 *   SQLITE_FULL                            -ENOSPC
 *   SQLITE_CORRUPT, SQLITE_NOTADB          -EIO, logged with what to run
 *   anything else (busy, locked, I/O...)   -EIO
 *
 * Failures are logged once, here, with the index's path. Locked
 * (kv_index.lock). */
static int ix_errno(struct kv_index *ix, int rc);
/* The kept statement which, reset and with its bindings cleared (unbound
 * parameters are NULL). Locked (kv_index.lock). */
static sqlite3_stmt *ix_q(struct kv_index *ix, enum ix_stmt which);
/* One step of s: 1 with a row, 0 at the end of the rows, or the errno of
 * the failure; never a failure taken for "no row". Locked (kv_index.lock). */
static int ix_step(struct kv_index *ix, sqlite3_stmt *s);
/* Runs s, bound by the caller, to its first row or its end, and resets
 * it. Locked (kv_index.lock). */
static int ix_run(struct kv_index *ix, sqlite3_stmt *s);
/* Runs which with ?1..?3 bound to a, b, c (those it has), passing each row
 * to cb (may be NULL), which returns 0 for the next row, > 0 to stop, or
 * a negative errno to stop with that failure. cb must not run statements
 * (index.h: callbacks do not call back into the index). Locked
 * (kv_index.lock). */
static int ix_each_row(struct kv_index *ix, enum ix_stmt which, int64_t a, int64_t b, int64_t c,
		int (*cb)(sqlite3_stmt *s, void *arg), void *arg);
/* which with ?1 = ino, run to its end (the deletes by inode). Locked
 * (kv_index.lock). */
static int ix_by_ino(struct kv_index *ix, enum ix_stmt which, uint64_t ino);
/* An ix_each_row callback: column 0 of the first row into the uint64_t
 * at arg. */
static int ix_row_u64(sqlite3_stmt *s, void *arg);

/* Runs text, not kept: pragmas and migration scripts. Locked
 * (kv_index.lock). */
static int ix_sql(struct kv_index *ix, const char *text);

/* Inode numbers read from rows: v holds n of max. */
struct ix_inos {
	uint64_t *v;
	size_t n, max;
};

/* BEGIN IMMEDIATE. Locked (kv_index.lock). */
static int ix_begin(struct kv_index *ix);
/* Commit when rc is 0, else roll back; the failure of either the work or
 * the commit (a full disk is ENOSPC here too). Locked (kv_index.lock). */
static int ix_end(struct kv_index *ix, int rc);

/* ---- the checkpointer ---- */

/* Stops the checkpointer's thread, if it runs, and closes its connection.
 * For kv_index_close. */
static void ix_ckpt_stop(struct kv_index *ix);

/* ---- namespace ---- */

/* Reads the columns c..c+10 of a row of s (ino, mode, uid, gid, nlink,
 * size, stored, rdev, atime, mtime, ctime) into a. */
static void ix_row_attr(sqlite3_stmt *s, int c, struct kv_attr *a);
/* ino's attributes: 0, -ENOENT or the failure. Locked (kv_index.lock). */
static int ix_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a);
/* The parent of ino's (first) entry: 0, -ENOENT when ino has no entry,
 * or the failure. Locked (kv_index.lock). */
static int ix_parent_of(struct kv_index *ix, uint64_t ino, uint64_t *parent);
/* Adds delta to ino's link count and sets its ctime to now (and its mtime
 * too with touch: a directory whose entries changed). Locked (kv_index.lock). */
static int ix_add_links(struct kv_index *ix, uint64_t ino, int delta, int64_t now, int touch);
/* ino's symlink target, as a NUL-terminated string of at most len - 1
 * bytes: 0, -EINVAL when ino is not a symlink, -ENOENT when it is gone,
 * or the failure. Locked (kv_index.lock). */
static int ix_get_target(struct kv_index *ix, uint64_t ino, char *buf, size_t len);

/* ---- chunk rows ---- */

/* Each row of which (Q_CHUNKS: the chunks; Q_RECS: every record, the
 * inode record included) of ino, to cb. Locked (kv_index.lock). */
static int ix_each_rec(struct kv_index *ix, enum ix_stmt which, uint64_t ino, kv_index_chunk_cb cb,
		void *arg);
/* The location of ino's inode record in *loc (len 0: none). Locked
 * (kv_index.lock). */
static int ix_get_irec(struct kv_index *ix, uint64_t ino, struct kv_loc *loc);
/* Writes (or replaces) the chunk row idx of ino; idx -1 is the inode
 * record. Locked (kv_index.lock). */
static int ix_put_chunk(struct kv_index *ix, uint64_t ino, int64_t idx, const struct kv_loc *loc,
		 uint32_t raw, uint8_t codec);

/* The subtree of ?1 (itself included), as the common table "sub". */
#define SUBTREE "WITH RECURSIVE sub(ino) AS (SELECT ?1 UNION ALL " \
		"SELECT d.ino FROM dentry d JOIN sub ON d.parent = sub.ino) "

/* The statements of enum ix_stmt (above: why they are all kept). */
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

	/* namespace */
	[Q_GETATTR] = "SELECT ino,mode,uid,gid,nlink,size,stored,rdev,atime,mtime,ctime FROM inode WHERE ino=?1",
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

	/* chunk rows */
	[Q_CHUNKS] = "SELECT idx,seg,off,len,raw,codec FROM chunk WHERE ino=?1 AND idx>=0 ORDER BY idx",
	/* Every record of an inode: its chunks and its inode record (idx -1). */
	[Q_RECS] = "SELECT idx,seg,off,len,raw,codec FROM chunk WHERE ino=?1 ORDER BY idx",
	[Q_GET_IREC] = "SELECT seg,off,len FROM chunk WHERE ino=?1 AND idx=-1",
	[Q_DEL_CHUNKS_FROM] = "DELETE FROM chunk WHERE ino=?1 AND idx>=?2",
	[Q_PUT_CHUNK] = "INSERT OR REPLACE INTO chunk(ino,idx,seg,off,len,raw,codec) VALUES(?1,?2,?3,?4,?5,?6,?7)",
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

	/* inode records */
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

	/* contexts */
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
	[Q_CTX_SCAN_DIRS] = "WITH RECURSIVE t(ino, depth) AS (SELECT 1, 0 UNION ALL "
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
static int ix_errno(struct kv_index *ix, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		kv_err("index %s: %s: the index is damaged; stop kvfs and run `kvfsctl fsck` and "
		       "`kvfsctl rebuild` (docs/reliability.md)", ix->path, sqlite3_errmsg(ix->db));
		return -EIO;
	case SQLITE_FULL:
		kv_err("index %s: %s", ix->path, sqlite3_errmsg(ix->db));
		return -ENOSPC;
	default:
		kv_err("index %s: %s", ix->path, sqlite3_errmsg(ix->db));
		return -EIO;
	}
}

static sqlite3_stmt *ix_q(struct kv_index *ix, enum ix_stmt which)
{
	sqlite3_stmt *s = ix->q[which];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

static int ix_step(struct kv_index *ix, sqlite3_stmt *s)
{
	int rc;

	rc = sqlite3_step(s);
	return rc == SQLITE_ROW ? 1 : ix_errno(ix, rc);
}

static int ix_run(struct kv_index *ix, sqlite3_stmt *s)
{
	int rc;

	rc = ix_step(ix, s);
	sqlite3_reset(s);
	return rc < 0 ? rc : 0;
}

static int ix_each_row(struct kv_index *ix, enum ix_stmt which, int64_t a, int64_t b, int64_t c,
		int (*cb)(sqlite3_stmt *s, void *arg), void *arg)
{
	sqlite3_stmt *s;
	int n, rc, stop = 0;

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

static int ix_by_ino(struct kv_index *ix, enum ix_stmt which, uint64_t ino)
{
	return ix_each_row(ix, which, (int64_t)ino, 0, 0, NULL, NULL);
}

static int ix_row_u64(sqlite3_stmt *s, void *arg)
{
	*(uint64_t *)arg = (uint64_t)sqlite3_column_int64(s, 0);
	return 1;
}

static int ix_begin(struct kv_index *ix)
{
	return ix_run(ix, ix_q(ix, Q_BEGIN));
}

static int ix_end(struct kv_index *ix, int rc)
{
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
 * open. */
static int prepare_all(struct kv_index *ix, int from, int to)
{
	int rc = 0;

	for (int i = from; !rc && i < to; i++)
		rc = ix_errno(ix, sqlite3_prepare_v3(ix->db, kv_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
						     &ix->q[i], NULL));
	return rc;
}

static int ix_sql(struct kv_index *ix, const char *text)
{
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
	return ix_errno(ix, peek_int(ix->db, text, v));
}

/* ---- open ---- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

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
			snprintf(err, errlen, "index %s is damaged (%s): run `kvfsctl rebuild` "
				 "(docs/reliability.md)", ix->path, sqlite3_errmsg(ix->db));
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
 * open. */
static int migrate(struct kv_index *ix, int fresh)
{
	int64_t ver;
	char text[64];
	int rc;

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
 * identity is read. At open. */
static int init_store(struct kv_index *ix)
{
	sqlite3_stmt *s;
	int rc;

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
	sqlite3_bind_int64(s, 5, now_ns());
	rc = ix_run(ix, s);
	if (!rc) {
		s = ix_q(ix, Q_INIT_META);
		sqlite3_bind_blob(s, 1, ix->id, sizeof(ix->id), SQLITE_STATIC);
		sqlite3_bind_int(s, 2, KV_FORMAT_VERSION);
		rc = ix_run(ix, s);
	}
	return ix_end(ix, rc);
}

int kv_index_open(const char *path, int create, struct kv_index **out, char *err,
		  size_t errlen)
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
	*out = ix;
	return 0;
fail:
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

/* ==== The index's checkpointer and the checks of the index file. Checkpoints
 * (copying the write-ahead log into the database, with its fsync) run on
 * a connection and in a thread of their own, so that no commit waits for
 * one; the thread first runs the mount's quick_check. */

/* WAL pages after which the checkpointer copies the log into the database
 * (SQLite's own default threshold, but off the committing thread). */
#define KV_CKPT_PAGES 1000

/* Called by SQLite after each commit of the main connection, with ix->lock
 * held: wakes the checkpointer once the log is long enough. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct kv_index *ix = arg;

	(void)db;
	(void)name;
	if (pages >= KV_CKPT_PAGES) {
		pthread_mutex_lock(&ix->ckpt_lock);
		if (!ix->ckpt_due) {
			ix->ckpt_due = 1;
			pthread_cond_signal(&ix->ckpt_cond);
		}
		pthread_mutex_unlock(&ix->ckpt_lock);
	}
	return SQLITE_OK;
}

/* SQLite's own check of the file behind db (pragma "quick_check", or
 * "integrity_check", which also compares every index with its table):
 * 0 when sound, the number of problems found (the first in msg), or the
 * negative errno of a check that could not run. A check that meets a page
 * too damaged to read counts that as one problem. It maps SQLite's results
 * itself: damage is a finding here, not a failure, and db may be the
 * checkpointer's connection. */
static int check_db(sqlite3 *db, const char *pragma, char *msg, size_t len)
{
	char text[64];
	sqlite3_stmt *s;
	int n = 0, rc;

	*msg = 0;
	snprintf(text, sizeof(text), "PRAGMA %s(100)", pragma);
	rc = sqlite3_prepare_v2(db, text, -1, &s, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *row = (const char *)sqlite3_column_text(s, 0);
		if (!row || strcmp(row, "ok"))
			if (!n++)
				snprintf(msg, len, "%s", row ? row : "?");
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) {
		if (!n++)
			snprintf(msg, len, "%s", sqlite3_errmsg(db));
	} else if (rc != SQLITE_DONE) {
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
		return (rc & 0xff) == SQLITE_INTERRUPT ? -EINTR : -EIO;
	}
	/* One line, for the log and fsck's report. */
	for (char *c = msg; (c = strchr(c, '\n')); )
		*c = ' ';
	return n;
}

int kv_index_verify(struct kv_index *ix, int quick, char *msg, size_t len)
{
	int n;

	pthread_mutex_lock(&ix->lock);
	n = check_db(ix->db, quick ? "quick_check" : "integrity_check", msg, len);
	pthread_mutex_unlock(&ix->lock);
	return n;
}

/* Progress handler of the checkpointer's connection: ends its check of
 * the index when the index closes. */
static int ckpt_abort(void *arg)
{
	struct kv_index *ix = arg;
	int stop;

	pthread_mutex_lock(&ix->ckpt_lock);
	stop = ix->ckpt_stop;
	pthread_mutex_unlock(&ix->ckpt_lock);
	return stop;
}

/* The mount's check of the index file: quick_check reads every page (on a
 * 1M-file index, 148 MB: 0.6 s warm, 3 s after drop_caches), too long to
 * hold up the mount, so it runs here, on the checkpointer's connection
 * before its first checkpoint, while the mount serves. Damage is logged;
 * the operations that meet it fail with EIO meanwhile. */
static void ckpt_check(struct kv_index *ix)
{
	struct timespec t0, t1;
	char msg[256];
	int n;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	sqlite3_progress_handler(ix->ckpt_db, 10000, ckpt_abort, ix);
	n = check_db(ix->ckpt_db, "quick_check", msg, sizeof(msg));
	sqlite3_progress_handler(ix->ckpt_db, 0, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (n > 0)
		kv_err("index %s is damaged (%d problem%s; the first: %s): stop kvfs and run "
		       "`kvfsctl fsck` and `kvfsctl rebuild` (docs/reliability.md)", ix->path, n,
		       n > 1 ? "s" : "", msg);
	else if (n < 0 && n != -EINTR)
		kv_warn("index %s: quick_check could not run: %s", ix->path, msg);
	else if (!n)
		kv_info("index %s: quick_check ok in %.1f s", ix->path,
			(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void *ckpt_main(void *arg)
{
	struct kv_index *ix = arg;
	int logged = 0;

	ckpt_check(ix);
	pthread_mutex_lock(&ix->ckpt_lock);
	while (!ix->ckpt_stop) {
		if (!ix->ckpt_due) {
			pthread_cond_wait(&ix->ckpt_cond, &ix->ckpt_lock);
			continue;
		}
		ix->ckpt_due = 0;
		pthread_mutex_unlock(&ix->ckpt_lock);
		/* PASSIVE: copies what it can without blocking the writer; the
		 * next commit after a complete one starts the log over. */
		int rc = sqlite3_wal_checkpoint_v2(ix->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE,
						   NULL, NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY && !logged++)
			kv_err("index %s: checkpoint: %s", ix->path, sqlite3_errmsg(ix->ckpt_db));
		pthread_mutex_lock(&ix->ckpt_lock);
	}
	pthread_mutex_unlock(&ix->ckpt_lock);
	return NULL;
}

int kv_index_checkpointer(struct kv_index *ix)
{
	int rc;

	if (sqlite3_open_v2(ix->path, &ix->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		kv_err("index %s: cannot open a checkpoint connection: %s", ix->path,
		       ix->ckpt_db ? sqlite3_errmsg(ix->ckpt_db) : "out of memory");
		sqlite3_close(ix->ckpt_db);
		ix->ckpt_db = NULL;
		return -EIO;
	}
	sqlite3_busy_timeout(ix->ckpt_db, 10000);
	rc = -pthread_create(&ix->ckpt_tid, NULL, ckpt_main, ix);
	if (rc) {
		sqlite3_close(ix->ckpt_db);
		ix->ckpt_db = NULL;
		return rc;
	}
	ix->ckpt_started = 1;
	pthread_mutex_lock(&ix->lock);
	sqlite3_wal_autocheckpoint(ix->db, 0);
	sqlite3_wal_hook(ix->db, wal_hook, ix);
	pthread_mutex_unlock(&ix->lock);
	return 0;
}

static void ix_ckpt_stop(struct kv_index *ix)
{
	if (ix->ckpt_started)
		kv_thread_stop(&ix->ckpt_lock, &ix->ckpt_cond, &ix->ckpt_stop, ix->ckpt_tid);
	sqlite3_close(ix->ckpt_db);
	ix->ckpt_db = NULL;
	ix->ckpt_started = 0;
}

/* ==== The index's namespace: attributes, directory entries (lookup, create,
 * remove, rename, readdir), symlink targets and user.* xattrs. */

/* ---- attributes ---- */

static void ix_row_attr(sqlite3_stmt *s, int c, struct kv_attr *a)
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

	rc = ix_step(ix, s);
	if (rc > 0)
		ix_row_attr(s, 0, a);
	sqlite3_reset(s);
	return rc > 0 ? 0 : rc ? rc : -ENOENT;
}

static int ix_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a)
{
	sqlite3_stmt *s;

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
	static const unsigned bits[] = { KV_SET_MODE, KV_SET_UID, KV_SET_GID, KV_SET_SIZE,
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

static int ix_parent_of(struct kv_index *ix, uint64_t ino, uint64_t *parent)
{
	sqlite3_stmt *s;
	int rc;

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

static int ix_add_links(struct kv_index *ix, uint64_t ino, int delta, int64_t now, int touch)
{
	sqlite3_stmt *s;

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

int kv_index_remove(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    int dir, int64_t now, uint64_t *ino, uint32_t *nlink)
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

	rc = is_ancestor(ix, dir, newparent);
	return rc > 0 ? -EINVAL : rc;
}

/* Renames the entry (parent, name) to (newparent, newname). Locked
 * (kv_index.lock). */
static int move_dentry(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		       uint64_t newparent, const char *newname, size_t newlen)
{
	sqlite3_stmt *s;

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

static int ix_get_target(struct kv_index *ix, uint64_t ino, char *buf, size_t len)
{
	sqlite3_stmt *s;
	int rc;

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

int kv_index_readdir(struct kv_index *ix, uint64_t dir, uint64_t off, kv_index_dir_cb cb,
		     void *arg)
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

int kv_index_setxattr(struct kv_index *ix, uint64_t ino, const char *name,
		      const void *value, size_t size, int flags)
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

int kv_index_getxattr(struct kv_index *ix, uint64_t ino, const char *name, void *buf,
		      size_t size)
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

/* ==== The index's chunk rows: chunk lists, publish, the deletion of inodes
 * and trees, the scans of gc and fsck, and sizes (usage, codecs, stats). */

/* ---- chunk rows ---- */

static int ix_each_rec(struct kv_index *ix, enum ix_stmt which, uint64_t ino, kv_index_chunk_cb cb,
		void *arg)
{
	sqlite3_stmt *s;
	int rc, stop = 0;

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

static int ix_get_irec(struct kv_index *ix, uint64_t ino, struct kv_loc *loc)
{
	sqlite3_stmt *s;
	int rc;

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

static int ix_put_chunk(struct kv_index *ix, uint64_t ino, int64_t idx, const struct kv_loc *loc,
		 uint32_t raw, uint8_t codec)
{
	sqlite3_stmt *s;

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

/* ==== The index's side of inode records (meta.h): everything a record of an
 * inode holds, read in one go; naming the newest record of each inode;
 * and rebuild's restore of an inode from its record. */

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

static int meta_chunk(void *arg, const struct kv_chunk *c)
{
	return kv_meta_add_chunk(arg, c);
}

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

	rc = ix_getattr(ix, r->ino, &a);
	if (!rc)
		rc = ix_get_irec(ix, r->ino, &now);
	if (!rc && (now.seg != r->expect.seg || now.off != r->expect.off ||
		    now.len != r->expect.len))
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
	/* In the caller's transaction, so under its lock. */
	return ix_each_row(ix, Q_SET_NEXT_INO, (int64_t)next - 1, 0, 0, NULL, NULL);
}

/* ==== The index's context rows (schema 2): the cache policy state of each
 * context, its LRU order, TTL expiry and pins. */

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

int kv_index_ctx_expired(struct kv_index *ix, int64_t now, int64_t default_ttl,
			 uint64_t *ino, size_t max, size_t *n)
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
		rc = ix_each_row(ix, depth ? Q_CTX_SCAN_DIRS : Q_CTX_SCAN_FILES, depth, now, 0, NULL,
				 NULL);
	rc = ix_end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}
