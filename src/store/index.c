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

enum {
	Q_GETATTR, Q_LOOKUP, Q_PARENT, Q_INS_INODE, Q_INS_DENTRY, Q_DEL_DENTRY,
	Q_SET_NLINK, Q_TOUCH_DIR, Q_HAS_CHILD, Q_READLINK, Q_READDIR, Q_CHUNKS,
	Q_DEL_CHUNKS_FROM, Q_PUT_CHUNK, Q_PUBLISH, Q_DEL_INODE, Q_DEL_XATTRS,
	Q_SEGS, Q_GETX, Q_PUTX, Q_INSX, Q_LISTX, Q_DELX, Q_MOVE_DENTRY,
	Q_SET_DENTRY_INO, Q_RECS, Q_DEL_RECS, Q_GET_IREC, Q_COUNT
};

static const char *const kv_sql[Q_COUNT] = {
	[Q_GETATTR] = "SELECT ino,mode,uid,gid,nlink,size,stored,rdev,atime,mtime,ctime FROM inode WHERE ino=?1",
	[Q_LOOKUP] = "SELECT i.ino,i.mode,i.uid,i.gid,i.nlink,i.size,i.stored,i.rdev,i.atime,i.mtime,i.ctime "
		     "FROM dentry d JOIN inode i ON i.ino=d.ino WHERE d.parent=?1 AND d.name=?2",
	[Q_PARENT] = "SELECT parent FROM dentry WHERE ino=?1 LIMIT 1",
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
	[Q_CHUNKS] = "SELECT idx,seg,off,len,raw,codec FROM chunk WHERE ino=?1 AND idx>=0 ORDER BY idx",
	[Q_DEL_CHUNKS_FROM] = "DELETE FROM chunk WHERE ino=?1 AND idx>=?2",
	[Q_PUT_CHUNK] = "INSERT OR REPLACE INTO chunk(ino,idx,seg,off,len,raw,codec) VALUES(?1,?2,?3,?4,?5,?6,?7)",
	[Q_PUBLISH] = "UPDATE inode SET size=?2, stored=?3, mtime=?4, ctime=?5 WHERE ino=?1",
	[Q_DEL_INODE] = "DELETE FROM inode WHERE ino=?1",
	[Q_DEL_XATTRS] = "DELETE FROM xattr WHERE ino=?1",
	[Q_SEGS] = "SELECT seg,sum(len) FROM chunk GROUP BY seg",
	[Q_GETX] = "SELECT value FROM xattr WHERE ino=?1 AND name=?2",
	[Q_PUTX] = "UPDATE xattr SET value=?3 WHERE ino=?1 AND name=?2",
	[Q_INSX] = "INSERT INTO xattr(ino,name,value) VALUES(?1,?2,?3)",
	[Q_LISTX] = "SELECT name FROM xattr WHERE ino=?1 ORDER BY name",
	[Q_DELX] = "DELETE FROM xattr WHERE ino=?1 AND name=?2",
	[Q_MOVE_DENTRY] = "UPDATE dentry SET parent=?3, name=?4 WHERE parent=?1 AND name=?2",
	[Q_SET_DENTRY_INO] = "UPDATE dentry SET ino=?3 WHERE parent=?1 AND name=?2",
	/* Every record of an inode: its chunks and its inode record (idx -1). */
	[Q_RECS] = "SELECT idx,seg,off,len,raw,codec FROM chunk WHERE ino=?1 ORDER BY idx",
	[Q_DEL_RECS] = "DELETE FROM chunk WHERE ino=?1",
	[Q_GET_IREC] = "SELECT seg,off,len FROM chunk WHERE ino=?1 AND idx=-1",
};

/* Statements run through each_row(), prepared at first use and kept: the
 * texts are string constants, told apart by address. */
#define KV_STMT_CACHE 48

struct kv_stmt {
	const char *text;
	sqlite3_stmt *s;
	int busy;
};

/* WAL pages after which the checkpointer copies the log into the database
 * (SQLite's own default threshold, but off the committing thread). */
#define KV_CKPT_PAGES 1000

struct kv_index {
	sqlite3 *db;
	pthread_mutex_t lock;
	sqlite3_stmt *q[Q_COUNT];
	struct kv_stmt cache[KV_STMT_CACHE];
	size_t ncache;

	/* Checkpoints run on a connection of their own in a thread of their
	 * own (kv_index_checkpointer), so that no commit waits for one. */
	sqlite3 *ckpt_db;
	pthread_t ckpt_tid;
	pthread_mutex_t ckpt_lock;
	pthread_cond_t ckpt_cond;
	int ckpt_due, ckpt_stop, ckpt_started;
	uint8_t id[16];
	char path[4096];
};

/* The errno for an SQLite result code on ix's connection: 0 for success
 * (a row or the end of the rows included), -EEXIST for a constraint (an
 * entry that exists), -ENOSPC for a full disk, else -EIO, logged here with
 * the index's path. Every statement's result goes through here, so that a
 * failure is never taken for "no row": readdir would end the listing, a
 * lookup would say ENOENT, rmdir would find a directory empty. */
static int sql_errno(struct kv_index *ix, int rc)
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

/* One step of s: 1 with a row, 0 at the end of the rows, or the errno of
 * the failure (sql_errno). */
static int step(struct kv_index *ix, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	return rc == SQLITE_ROW ? 1 : sql_errno(ix, rc);
}

/* Runs a prepared statement bound by the caller; resets it afterwards. */
static int q_exec(struct kv_index *ix, sqlite3_stmt *s)
{
	int rc = step(ix, s);

	sqlite3_reset(s);
	return rc < 0 ? rc : 0;
}

/* Prepares text (not kept) in *s; the errno of a failure. */
static int prepare(struct kv_index *ix, const char *text, sqlite3_stmt **s)
{
	return sql_errno(ix, sqlite3_prepare_v2(ix->db, text, -1, s, NULL));
}

static sqlite3_stmt *q(struct kv_index *ix, int which)
{
	sqlite3_stmt *s = ix->q[which];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

static int sql(struct kv_index *ix, const char *text)
{
	return sql_errno(ix, sqlite3_exec(ix->db, text, NULL, NULL, NULL));
}

static int each_row(struct kv_index *ix, const char *text, int64_t a, int64_t b, int64_t c,
		    int (*cb)(sqlite3_stmt *s, void *arg), void *arg);

static int begin(struct kv_index *ix)
{
	return each_row(ix, "BEGIN IMMEDIATE", 0, 0, 0, NULL, NULL);
}

/* Commit when rc is 0, else roll back; the failure of either the work or
 * the commit (a full disk is ENOSPC here too). */
static int end(struct kv_index *ix, int rc)
{
	if (!rc)
		rc = each_row(ix, "COMMIT", 0, 0, 0, NULL, NULL);
	if (rc)
		sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void row_attr(sqlite3_stmt *s, int c, struct kv_attr *a)
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

/* Reads one attr row; returns 0, -ENOENT or the failure. */
static int fetch_attr(struct kv_index *ix, sqlite3_stmt *s, struct kv_attr *a)
{
	int rc = step(ix, s);

	if (rc > 0)
		row_attr(s, 0, a);
	sqlite3_reset(s);
	return rc > 0 ? 0 : rc ? rc : -ENOENT;
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

static int get_int(struct kv_index *ix, const char *text, int64_t *v)
{
	return sql_errno(ix, peek_int(ix->db, text, v));
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

static int migrate(struct kv_index *ix, int fresh)
{
	int64_t ver;
	char text[64];

	int rc = get_int(ix, "PRAGMA user_version", &ver);

	if (rc)
		return rc;
	for (int i = 0; i < kv_index_nmigrations; i++) {
		const struct kv_index_migration *m = &kv_index_migrations[i];
		if (m->version <= ver)
			continue;
		rc = begin(ix);
		if (rc)
			return rc;
		rc = sql(ix, m->sql);
		snprintf(text, sizeof(text), "PRAGMA user_version=%d", m->version);
		if (!rc)
			rc = sql(ix, text);
		if (!rc && fresh) {
			snprintf(text, sizeof(text), "PRAGMA application_id=%d", KV_APPLICATION_ID);
			rc = sql(ix, text);
		}
		rc = end(ix, rc);
		if (rc)
			return rc;
		kv_info("index %s: applied schema %s", ix->path, m->name);
	}
	return 0;
}

/* Fresh stores get a root directory and an identity. */
static int init_store(struct kv_index *ix)
{
	int64_t n;
	sqlite3_stmt *s;
	int rc = get_int(ix, "SELECT count(*) FROM meta WHERE key='store_id'", &n);

	if (rc)
		return rc;
	if (!n) {
		int64_t t = now_ns();
		char text[512];
		if (getrandom(ix->id, sizeof(ix->id), 0) != sizeof(ix->id))
			return -EIO;
		snprintf(text, sizeof(text),
			 "INSERT INTO inode(ino,mode,uid,gid,nlink,atime,mtime,ctime) "
			 "VALUES(%d,%d,%u,%u,2,%lld,%lld,%lld)",
			 KV_ROOT_INO, S_IFDIR | 0755, (unsigned)getuid(), (unsigned)getgid(),
			 (long long)t, (long long)t, (long long)t);
		rc = begin(ix);
		if (rc)
			return rc;
		rc = sql(ix, text);
		if (!rc)
			rc = prepare(ix, "INSERT INTO meta(key,value) VALUES('store_id',?1),"
				     "('format_version',?2)", &s);
		if (!rc) {
			sqlite3_bind_blob(s, 1, ix->id, sizeof(ix->id), SQLITE_STATIC);
			sqlite3_bind_int(s, 2, KV_FORMAT_VERSION);
			rc = q_exec(ix, s);
			sqlite3_finalize(s);
		}
		return end(ix, rc);
	}
	rc = prepare(ix, "SELECT value FROM meta WHERE key='store_id'", &s);
	if (rc)
		return rc;
	rc = step(ix, s);
	if (rc > 0 && sqlite3_column_bytes(s, 0) == 16)
		memcpy(ix->id, sqlite3_column_blob(s, 0), 16);
	else if (rc >= 0) {
		kv_err("index %s: no store id in the meta table", ix->path);
		rc = -EIO;
	}
	sqlite3_finalize(s);
	return rc < 0 ? rc : 0;
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
	rc = sql(ix, "PRAGMA journal_mode=WAL");
	if (!rc)
		rc = sql(ix, "PRAGMA synchronous=NORMAL");
	if (!rc)
		rc = sql(ix, "PRAGMA foreign_keys=OFF");
	if (!rc)
		rc = migrate(ix, fresh);
	if (!rc)
		rc = init_store(ix);
	for (int i = 0; !rc && i < Q_COUNT; i++)
		rc = sql_errno(ix, sqlite3_prepare_v3(ix->db, kv_sql[i], -1,
						      SQLITE_PREPARE_PERSISTENT, &ix->q[i], NULL));
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
	for (size_t i = 0; i < ix.ncache; i++)
		sqlite3_finalize(ix.cache[i].s);
	sqlite3_close(ix.db);
	return rc;
}

/* Called by SQLite after each commit of the main connection, with its lock
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
 * too damaged to read counts that as one problem. */
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

void kv_index_close(struct kv_index *ix)
{
	if (!ix)
		return;
	if (ix->ckpt_started)
		kv_thread_stop(&ix->ckpt_lock, &ix->ckpt_cond, &ix->ckpt_stop, ix->ckpt_tid);
	sqlite3_close(ix->ckpt_db);
	pthread_mutex_destroy(&ix->ckpt_lock);
	pthread_cond_destroy(&ix->ckpt_cond);
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(ix->q[i]);
	for (size_t i = 0; i < ix->ncache; i++)
		sqlite3_finalize(ix->cache[i].s);
	sqlite3_close(ix->db);
	pthread_mutex_destroy(&ix->lock);
	free(ix);
}

void kv_index_store_id(struct kv_index *ix, uint8_t id[16]) { memcpy(id, ix->id, 16); }

int kv_index_meta_get(struct kv_index *ix, const char *key, int64_t *value)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = prepare(ix, "SELECT value FROM meta WHERE key=?1", &s);
	if (!rc) {
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		rc = step(ix, s);
		if (rc > 0)
			*value = sqlite3_column_int64(s, 0);
		rc = rc > 0 ? 0 : rc ? rc : -ENOENT;
		sqlite3_finalize(s);
	}
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_meta_set(struct kv_index *ix, const char *key, int64_t value)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = prepare(ix, "INSERT OR REPLACE INTO meta(key,value) VALUES(?1,?2)", &s);
	if (!rc) {
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, value);
		rc = q_exec(ix, s);
		sqlite3_finalize(s);
	}
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_user_version(struct kv_index *ix)
{
	int64_t v = 0;

	pthread_mutex_lock(&ix->lock);
	get_int(ix, "PRAGMA user_version", &v);
	pthread_mutex_unlock(&ix->lock);
	return (int)v;
}

int kv_index_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = q(ix, Q_GETATTR);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = fetch_attr(ix, s, a);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static int lookup_locked(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			 struct kv_attr *a)
{
	sqlite3_stmt *s = q(ix, Q_LOOKUP);

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

/* The parent of ino's (first) entry: 0, -ENOENT when ino has no entry,
 * or the failure. Locked. */
static int parent_of(struct kv_index *ix, uint64_t ino, uint64_t *parent)
{
	sqlite3_stmt *s = q(ix, Q_PARENT);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = step(ix, s);
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
	rc = parent_of(ix, dir, parent);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static int add_links(struct kv_index *ix, uint64_t ino, int delta, int64_t now, int touch)
{
	sqlite3_stmt *s = q(ix, touch ? Q_TOUCH_DIR : Q_SET_NLINK);

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_int(s, 2, delta);
	sqlite3_bind_int64(s, 3, now);
	return q_exec(ix, s);
}

static int put_dentry(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		      uint64_t ino)
{
	sqlite3_stmt *s = q(ix, Q_INS_DENTRY);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)ino);
	return q_exec(ix, s);
}

int kv_index_create(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    struct kv_attr *a, const char *target)
{
	struct kv_attr old;
	sqlite3_stmt *s;
	int isdir = S_ISDIR(a->mode);
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	if (rc)
		goto out;
	rc = lookup_locked(ix, parent, name, len, &old);
	if (rc == 0)
		rc = -EEXIST;
	else if (rc == -ENOENT)
		rc = 0;
	if (!rc) {
		s = q(ix, Q_INS_INODE);
		a->nlink = isdir ? 2 : 1;
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
		rc = q_exec(ix, s);
		a->ino = (uint64_t)sqlite3_last_insert_rowid(ix->db);
		a->size = target ? strlen(target) : 0;
		a->stored = 0;
	}
	if (!rc)
		rc = put_dentry(ix, parent, name, len, a->ino);
	if (!rc)
		rc = add_links(ix, parent, isdir, a->ctime, 1);
	if (!rc && target) {
		s = q(ix, Q_PUBLISH);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)a->size);
		sqlite3_bind_int64(s, 3, 0);
		sqlite3_bind_int64(s, 4, a->mtime);
		sqlite3_bind_int64(s, 5, a->ctime);
		rc = q_exec(ix, s);
	}
	rc = end(ix, rc);
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* 1 if dir has an entry, 0 if not, or the failure (never "empty" on a
 * read error: rmdir would drop a directory with files in it). */
static int has_children(struct kv_index *ix, uint64_t dir)
{
	sqlite3_stmt *s = q(ix, Q_HAS_CHILD);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)dir);
	rc = step(ix, s);
	sqlite3_reset(s);
	return rc;
}

/* -ENOTEMPTY if directory dir has entries; 0 or the failure. */
static int check_empty(struct kv_index *ix, uint64_t dir)
{
	int rc = has_children(ix, dir);

	return rc > 0 ? -ENOTEMPTY : rc;
}

static int del_dentry(struct kv_index *ix, uint64_t parent, const char *name, size_t len)
{
	sqlite3_stmt *s = q(ix, Q_DEL_DENTRY);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	return q_exec(ix, s);
}

/* Drop the entry (parent, name) that refers to a, as unlink/rmdir do.
 * Locked, inside a transaction. */
static int unlink_entry(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			struct kv_attr *a, int64_t now)
{
	int isdir = S_ISDIR(a->mode);
	int rc = del_dentry(ix, parent, name, len);

	if (!rc)
		rc = add_links(ix, a->ino, isdir ? -(int)a->nlink : -1, now, 0);
	if (!rc)
		rc = add_links(ix, parent, -isdir, now, 1);
	if (!rc && isdir)
		rc = each_row(ix, "DELETE FROM context WHERE ino=?1", (int64_t)a->ino, 0, 0, NULL, NULL);
	a->nlink = isdir ? 0 : a->nlink - 1;
	return rc;
}

int kv_index_remove(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		    int dir, int64_t now, uint64_t *ino, uint32_t *nlink)
{
	struct kv_attr a;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
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
	rc = end(ix, rc);
	if (!rc) {
		*ino = a.ino;
		*nlink = a.nlink;
	}
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* Is anc an ancestor of (or equal to) ino? 1 or 0, or the failure of the
 * walk (never "no": that would let a directory move into its own
 * subtree). Guards rename. */
static int is_ancestor(struct kv_index *ix, uint64_t anc, uint64_t ino)
{
	for (int depth = 0; depth < 4096; depth++) {
		int rc;
		if (ino == anc)
			return 1;
		if (ino == KV_ROOT_INO)
			return 0;
		rc = parent_of(ix, ino, &ino);
		if (rc == -ENOENT)
			return 0; /* a detached directory: no ancestors */
		if (rc)
			return rc;
	}
	return 1;
}

/* -EINVAL if moving directory dir under newparent would put it inside
 * itself; 0 or the failure. */
static int check_move(struct kv_index *ix, uint64_t dir, uint64_t newparent)
{
	int rc = is_ancestor(ix, dir, newparent);

	return rc > 0 ? -EINVAL : rc;
}

static int move_dentry(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
		       uint64_t newparent, const char *newname, size_t newlen)
{
	sqlite3_stmt *s = q(ix, Q_MOVE_DENTRY);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)newparent);
	sqlite3_bind_blob(s, 4, newname, (int)newlen, SQLITE_STATIC);
	return q_exec(ix, s);
}

static int set_dentry_ino(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			  uint64_t ino)
{
	sqlite3_stmt *s = q(ix, Q_SET_DENTRY_INO);

	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_blob(s, 2, name, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)ino);
	return q_exec(ix, s);
}

static int rename_exchange(struct kv_index *ix, uint64_t parent, const char *name, size_t len,
			   const struct kv_attr *a, uint64_t newparent, const char *newname,
			   size_t newlen, const struct kv_attr *b, int64_t now)
{
	int rc = set_dentry_ino(ix, parent, name, len, b->ino);

	if (!rc)
		rc = set_dentry_ino(ix, newparent, newname, newlen, a->ino);
	if (!rc && parent != newparent && S_ISDIR(a->mode) != S_ISDIR(b->mode)) {
		int d = S_ISDIR(a->mode) ? 1 : -1;
		rc = add_links(ix, newparent, d, now, 1);
		if (!rc)
			rc = add_links(ix, parent, -d, now, 1);
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
	rc = begin(ix);
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
		rc = add_links(ix, parent, S_ISDIR(a.mode) ? -1 : 0, now, 1);
	if (!rc)
		rc = add_links(ix, newparent, S_ISDIR(a.mode) ? 1 : 0, now, 1);
	if (!rc)
		rc = add_links(ix, a.ino, 0, now, 0);
done:
	rc = end(ix, rc);
	if (rc) {
		*victim = 0;
		*victim_nlink = 0;
	}
out:
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_setattr(struct kv_index *ix, const struct kv_attr *a, unsigned mask)
{
	static const struct { unsigned bit; const char *col; } cols[] = {
		{ KV_SET_MODE, "mode" }, { KV_SET_UID, "uid" }, { KV_SET_GID, "gid" },
		{ KV_SET_SIZE, "size" }, { KV_SET_ATIME, "atime" }, { KV_SET_MTIME, "mtime" },
		{ KV_SET_CTIME, "ctime" },
	};
	int64_t vals[] = { a->mode, a->uid, a->gid, (int64_t)a->size, a->atime, a->mtime, a->ctime };
	char text[256] = "UPDATE inode SET ";
	sqlite3_stmt *s;
	int n = 0, rc;

	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		if (mask & cols[i].bit)
			snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s%s=?%zu",
				 n++ ? "," : "", cols[i].col, i + 2);
	if (!n)
		return 0;
	strcat(text, " WHERE ino=?1");
	pthread_mutex_lock(&ix->lock);
	rc = prepare(ix, text, &s);
	if (!rc) {
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
			if (mask & cols[i].bit)
				sqlite3_bind_int64(s, (int)i + 2, vals[i]);
		rc = q_exec(ix, s);
		sqlite3_finalize(s);
	}
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ino's symlink target, as a NUL-terminated string of at most len - 1
 * bytes: 0, -EINVAL when ino is not a symlink, -ENOENT when it is gone,
 * or the failure. Locked. */
static int get_target(struct kv_index *ix, uint64_t ino, char *buf, size_t len)
{
	sqlite3_stmt *s = q(ix, Q_READLINK);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = step(ix, s);
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
	rc = get_target(ix, ino, buf, len);
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
		s = q(ix, Q_READDIR);
		sqlite3_bind_int64(s, 1, (int64_t)dir);
		sqlite3_bind_int64(s, 2, (int64_t)off);
		for (n = 0; n < KV_READDIR_BATCH && (rc = step(ix, s)) > 0; n++) {
			struct dir_row *r = &rows[n];
			size_t len = (size_t)sqlite3_column_bytes(s, 1);
			r->id = (uint64_t)sqlite3_column_int64(s, 0);
			r->len = len < sizeof(r->name) ? len : sizeof(r->name) - 1;
			memcpy(r->name, sqlite3_column_blob(s, 1), r->len);
			r->name[r->len] = 0;
			row_attr(s, 2, &r->a);
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

static int each_rec(struct kv_index *ix, int which, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	sqlite3_stmt *s = q(ix, which);
	int rc, stop = 0;

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while (!stop && (rc = step(ix, s)) > 0) {
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

static int each_chunk(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	return each_rec(ix, Q_CHUNKS, ino, cb, arg);
}

int kv_index_chunks(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = each_chunk(ix, ino, cb, arg);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_file_chunks(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	struct kv_attr a;
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	/* Under the same lock as the rows: an inode deleted meanwhile (evicted)
	 * is ENOENT, never an empty chunk list. */
	s = q(ix, Q_GETATTR);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = fetch_attr(ix, s, &a);
	if (!rc)
		rc = each_chunk(ix, ino, cb, arg);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* The location of ino's inode record in *loc (len 0: none). Locked. */
static int get_irec(struct kv_index *ix, uint64_t ino, struct kv_loc *loc)
{
	sqlite3_stmt *s = q(ix, Q_GET_IREC);
	int rc;

	memset(loc, 0, sizeof(*loc));
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = step(ix, s);
	if (rc > 0) {
		loc->seg = (uint32_t)sqlite3_column_int64(s, 0);
		loc->off = (uint64_t)sqlite3_column_int64(s, 1);
		loc->len = (uint32_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	return rc < 0 ? rc : 0;
}

int kv_index_publish(struct kv_index *ix, const struct kv_attr *a, uint64_t keep,
		     const struct kv_chunk *c, size_t n, int durable, struct kv_loc *old_rec)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	if (durable)
		sql(ix, "PRAGMA synchronous=FULL");
	rc = begin(ix);
	if (rc)
		goto out;
	if (old_rec)
		rc = get_irec(ix, a->ino, old_rec);
	if (!rc && keep <= (uint64_t)INT64_MAX) {
		s = q(ix, Q_DEL_CHUNKS_FROM);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)keep);
		rc = q_exec(ix, s);
	}
	for (size_t i = 0; !rc && i < n; i++) {
		s = q(ix, Q_PUT_CHUNK);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)c[i].idx);
		sqlite3_bind_int64(s, 3, c[i].loc.seg);
		sqlite3_bind_int64(s, 4, (int64_t)c[i].loc.off);
		sqlite3_bind_int64(s, 5, c[i].loc.len);
		sqlite3_bind_int64(s, 6, c[i].raw);
		sqlite3_bind_int64(s, 7, c[i].codec);
		rc = q_exec(ix, s);
	}
	if (!rc) {
		s = q(ix, Q_PUBLISH);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, (int64_t)a->size);
		sqlite3_bind_int64(s, 3, (int64_t)a->stored);
		sqlite3_bind_int64(s, 4, a->mtime);
		sqlite3_bind_int64(s, 5, a->ctime);
		rc = q_exec(ix, s);
	}
	rc = end(ix, rc);
out:
	if (durable)
		sql(ix, "PRAGMA synchronous=NORMAL");
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static int by_ino(struct kv_index *ix, int which, uint64_t ino)
{
	sqlite3_stmt *s = q(ix, which);

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	return q_exec(ix, s);
}

int kv_index_drop(struct kv_index *ix, uint64_t ino, kv_index_chunk_cb cb, void *arg)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	if (!rc)
		rc = each_rec(ix, Q_RECS, ino, cb, arg);
	if (!rc)
		rc = by_ino(ix, Q_DEL_RECS, ino);
	if (!rc)
		rc = by_ino(ix, Q_DEL_XATTRS, ino);
	if (!rc)
		rc = each_row(ix, "DELETE FROM context WHERE ino=?1", (int64_t)ino, 0, 0, NULL, NULL);
	if (!rc)
		rc = by_ino(ix, Q_DEL_INODE, ino);
	rc = end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

struct ino_list {
	uint64_t *v;
	size_t n, max;
};

/* Appends column 0 of a row to an ino_list (an each_row callback). */
static int row_collect(sqlite3_stmt *s, void *arg)
{
	struct ino_list *l = arg;

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

/* The inodes query text returns, handed to cb after the lock is dropped:
 * the callback may change the index. None on a failure. */
static int each_ino(struct kv_index *ix, const char *text, kv_index_ino_cb cb, void *arg)
{
	struct ino_list l = { 0 };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = each_row(ix, text, 0, 0, 0, row_collect, &l);
	pthread_mutex_unlock(&ix->lock);
	for (size_t i = 0; !rc && i < l.n; i++)
		cb(arg, l.v[i]);
	free(l.v);
	return rc;
}

int kv_index_orphans(struct kv_index *ix, kv_index_ino_cb cb, void *arg)
{
	return each_ino(ix, "SELECT ino FROM inode WHERE nlink=0", cb, arg);
}

int kv_index_without_irec(struct kv_index *ix, kv_index_ino_cb cb, void *arg)
{
	return each_ino(ix, "SELECT ino FROM inode WHERE nlink>0 AND ino NOT IN "
			    "(SELECT ino FROM chunk WHERE idx=-1) ORDER BY ino", cb, arg);
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
	rc = each_row(ix, "SELECT idx, seg, off, len FROM chunk ORDER BY seg, off", 0, 0, 0,
		      row_extent, &e);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_segments(struct kv_index *ix, kv_index_seg_cb cb, void *arg)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	s = q(ix, Q_SEGS);
	while ((rc = step(ix, s)) > 0)
		cb(arg, (uint32_t)sqlite3_column_int64(s, 0), (uint64_t)sqlite3_column_int64(s, 1));
	sqlite3_reset(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

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
	rc = begin(ix);
	if (rc)
		goto out;
	s = q(ix, Q_GETX);
	bind_xname(s, ino, name);
	exists = step(ix, s);
	sqlite3_reset(s);
	if (exists < 0)
		rc = exists;
	else if (exists && (flags & XATTR_CREATE))
		rc = -EEXIST;
	else if (!exists && (flags & XATTR_REPLACE))
		rc = -ENODATA;
	if (!rc) {
		s = q(ix, exists ? Q_PUTX : Q_INSX);
		bind_xname(s, ino, name);
		sqlite3_bind_blob(s, 3, size ? value : "", (int)size, SQLITE_STATIC);
		rc = q_exec(ix, s);
	}
	rc = end(ix, rc);
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
	s = q(ix, Q_GETX);
	bind_xname(s, ino, name);
	rc = step(ix, s);
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
	s = q(ix, Q_LISTX);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	while ((rc = step(ix, s)) > 0) {
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
	s = q(ix, Q_DELX);
	bind_xname(s, ino, name);
	rc = q_exec(ix, s);
	if (!rc && sqlite3_changes(ix->db) == 0)
		rc = -ENODATA;
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_stats(struct kv_index *ix, struct kv_index_stats *st)
{
	int64_t v[5] = { 0 };
	static const char *const text[5] = {
		"SELECT count(*) FROM inode WHERE (mode & 61440) = 32768",
		"SELECT count(*) FROM inode WHERE (mode & 61440) = 16384",
		"SELECT count(*) FROM dentry d1 JOIN inode i1 ON i1.ino=d1.ino "
		"JOIN dentry d2 ON d2.parent=d1.ino JOIN inode i2 ON i2.ino=d2.ino "
		"WHERE d1.parent=1 AND (i1.mode & 61440)=16384 AND (i2.mode & 61440)=16384",
		"SELECT coalesce(sum(size),0) FROM inode WHERE (mode & 61440) = 32768",
		"SELECT coalesce(sum(stored),0) FROM inode",
	};
	int rc = 0;

	pthread_mutex_lock(&ix->lock);
	for (int i = 0; i < 5 && !rc; i++)
		rc = get_int(ix, text[i], &v[i]);
	pthread_mutex_unlock(&ix->lock);
	st->files = (uint64_t)v[0];
	st->dirs = (uint64_t)v[1];
	st->contexts = (uint64_t)v[2];
	st->logical = (uint64_t)v[3];
	st->stored = (uint64_t)v[4];
	return rc;
}

/* ---- contexts ---- */

#define SUBTREE "WITH RECURSIVE sub(ino) AS (SELECT ?1 UNION ALL " \
		"SELECT d.ino FROM dentry d JOIN sub ON d.parent = sub.ino) "

/* The kept statement for text, NULL when it is in use (a callback running
 * the same text) or the cache is full: the caller prepares its own. */
static struct kv_stmt *stmt_get(struct kv_index *ix, const char *text)
{
	struct kv_stmt *k;

	for (size_t i = 0; i < ix->ncache; i++)
		if (ix->cache[i].text == text)
			return ix->cache[i].busy ? NULL : &ix->cache[i];
	if (ix->ncache == KV_STMT_CACHE)
		return NULL;
	k = &ix->cache[ix->ncache];
	if (sqlite3_prepare_v3(ix->db, text, -1, SQLITE_PREPARE_PERSISTENT, &k->s, NULL) != SQLITE_OK) {
		sqlite3_finalize(k->s);
		k->s = NULL;
		return NULL;
	}
	k->text = text;
	ix->ncache++;
	return k;
}

/* Run text with ?1..?3 bound to a, b, c, passing each row to cb (may be
 * NULL), which returns 0 for the next row, > 0 to stop, or a negative
 * errno to stop with that failure. Returns 0 or the failure. Locked. */
static int each_row(struct kv_index *ix, const char *text, int64_t a, int64_t b, int64_t c,
		    int (*cb)(sqlite3_stmt *s, void *arg), void *arg)
{
	struct kv_stmt *k = stmt_get(ix, text);
	sqlite3_stmt *s = k ? k->s : NULL;
	int rc, stop = 0;

	if (!s && (rc = prepare(ix, text, &s)))
		return rc;
	if (k)
		k->busy = 1;
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	sqlite3_bind_int64(s, 3, c);
	while (!stop && (rc = step(ix, s)) > 0)
		stop = cb ? cb(s, arg) : 0;
	if (k) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		k->busy = 0;
	} else {
		sqlite3_finalize(s);
	}
	return stop < 0 ? stop : rc < 0 ? rc : 0;
}

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
	rc = each_row(ix, "SELECT ino,last_access,hits,pin,ttl FROM context WHERE ino=?1",
		      (int64_t)ino, 0, 0, row_ctx, r);
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
		rc = each_row(ix, "SELECT 1 FROM inode WHERE ino=?1 AND nlink>0", (int64_t)r->ino, 0,
			      0, row_found, &found);
	if (!rc && must_exist && !found)
		rc = -ENOENT;
	if (!rc)
		rc = each_row(ix, "INSERT OR IGNORE INTO context(ino,last_access) VALUES(?1,?2)",
			      (int64_t)r->ino, r->last_access, 0, NULL, NULL);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_ctx_add(struct kv_index *ix, const struct kv_ctx_row *r) { return ctx_add(ix, r, 0); }
int kv_index_ctx_new(struct kv_index *ix, const struct kv_ctx_row *r) { return ctx_add(ix, r, 1); }

int kv_index_ctx_save(struct kv_index *ix, const struct kv_ctx_row *r, size_t n)
{
	sqlite3_stmt *s = NULL;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	if (!rc)
		rc = prepare(ix, "UPDATE context SET last_access=?2, hits=?3, pin=?4, ttl=?5 "
			     "WHERE ino=?1", &s);
	for (size_t i = 0; !rc && i < n; i++) {
		sqlite3_bind_int64(s, 1, (int64_t)r[i].ino);
		sqlite3_bind_int64(s, 2, r[i].last_access);
		sqlite3_bind_int64(s, 3, (int64_t)r[i].hits);
		sqlite3_bind_int(s, 4, r[i].pin);
		if (r[i].ttl < 0)
			sqlite3_bind_null(s, 5);
		else
			sqlite3_bind_int64(s, 5, r[i].ttl);
		rc = q_exec(ix, s);
	}
	sqlite3_finalize(s);
	rc = end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static int row_ino(sqlite3_stmt *s, void *arg)
{
	struct ino_list *l = arg;

	l->v[l->n++] = (uint64_t)sqlite3_column_int64(s, 0);
	return l->n == l->max;
}

int kv_index_ctx_lru(struct kv_index *ix, size_t skip, uint64_t *ino, size_t max, size_t *n)
{
	struct ino_list l = { ino, 0, max };
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = each_row(ix, "SELECT ino FROM context WHERE pin=0 ORDER BY last_access LIMIT ?1 "
			  "OFFSET ?2",
		      (int64_t)max, (int64_t)skip, 0, row_ino, &l);
	pthread_mutex_unlock(&ix->lock);
	*n = l.n;
	return rc;
}

int kv_index_ctx_expired(struct kv_index *ix, int64_t now, int64_t default_ttl,
			 uint64_t *ino, size_t max, size_t *n)
{
	struct ino_list l = { ino, 0, max };
	int rc;

	/* Two ranges of schema 4's partial indexes, so that the sweep reads
	 * only expired rows. INDEXED BY: without statistics (kvfs runs no
	 * ANALYZE) the planner prefers context_lru's pin=0, a scan of every
	 * unpinned context. */
	pthread_mutex_lock(&ix->lock);
	rc = each_row(ix, "SELECT ino FROM context INDEXED BY context_ttl_default "
			  "WHERE pin = 0 AND ttl IS NULL AND ?2 > 0 AND "
			  "last_access < ?1 - ?2 * 1000000000 "
			  "UNION ALL SELECT ino FROM context INDEXED BY context_ttl_own "
			  "WHERE pin = 0 AND ttl > 0 AND last_access + ttl * 1000000000 < ?1 LIMIT ?3",
		      now, default_ttl, (int64_t)max, row_ino, &l);
	pthread_mutex_unlock(&ix->lock);
	*n = l.n;
	return rc;
}

static int row_count(sqlite3_stmt *s, void *arg)
{
	*(uint64_t *)arg = (uint64_t)sqlite3_column_int64(s, 0);
	return 1;
}

int kv_index_ctx_count(struct kv_index *ix, int with_ttl, uint64_t *n)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = each_row(ix, with_ttl ? "SELECT count(*) FROM context WHERE ttl > 0"
				   : "SELECT count(*) FROM context",
		      0, 0, 0, row_count, n);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_ctx_del(struct kv_index *ix, uint64_t ino)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = each_row(ix, "DELETE FROM context WHERE ino=?1", (int64_t)ino, 0, 0, NULL, NULL);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_ctx_scan(struct kv_index *ix, int depth, int64_t now)
{
	static const char *const files =
		"INSERT OR IGNORE INTO context(ino,last_access) "
		"SELECT ino, ?2 FROM inode WHERE (mode & 61440) = 32768";
	static const char *const dirs =
		"WITH RECURSIVE t(ino, depth) AS (SELECT 1, 0 UNION ALL "
		"SELECT d.ino, t.depth + 1 FROM dentry d JOIN t ON d.parent = t.ino "
		"JOIN inode i ON i.ino = d.ino WHERE t.depth < ?1 AND (i.mode & 61440) = 16384) "
		"INSERT OR IGNORE INTO context(ino,last_access) "
		"SELECT ino, ?2 FROM t WHERE depth = ?1";
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	if (!rc)
		rc = each_row(ix, "DELETE FROM context", 0, 0, 0, NULL, NULL);
	if (!rc)
		rc = each_row(ix, depth ? dirs : files, depth, now, 0, NULL, NULL);
	rc = end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_drop_tree(struct kv_index *ix, uint64_t ino, int64_t now, kv_index_chunk_cb cb,
		       kv_index_ino_cb ino_cb, void *arg)
{
	static const char *const del[] = {
		"DELETE FROM chunk WHERE ino=?1", "DELETE FROM xattr WHERE ino=?1",
		"DELETE FROM context WHERE ino=?1", "DELETE FROM dentry WHERE parent=?1",
		"DELETE FROM inode WHERE ino=?1",
	};
	struct ino_list l = { 0 };
	struct kv_attr a;
	sqlite3_stmt *s;
	uint64_t parent = 0;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	if (!rc) {
		s = q(ix, Q_GETATTR);
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		rc = fetch_attr(ix, s, &a);
	}
	if (!rc) {
		/* A tree without an entry (unlinked meanwhile) has no parent
		 * to update. */
		rc = parent_of(ix, ino, &parent);
		rc = rc == -ENOENT ? 0 : rc;
	}
	if (!rc)
		rc = each_row(ix, SUBTREE "SELECT ino FROM sub", (int64_t)ino, 0, 0, row_collect, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		rc = each_rec(ix, Q_RECS, l.v[i], cb, arg);
		for (size_t k = 0; !rc && k < sizeof(del) / sizeof(*del); k++)
			rc = each_row(ix, del[k], (int64_t)l.v[i], 0, 0, NULL, NULL);
	}
	if (!rc)
		rc = each_row(ix, "DELETE FROM dentry WHERE ino=?1", (int64_t)ino, 0, 0, NULL, NULL);
	if (!rc && parent)
		rc = add_links(ix, parent, S_ISDIR(a.mode) ? -1 : 0, now, 1);
	rc = end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	for (size_t i = 0; !rc && i < l.n; i++)
		ino_cb(arg, l.v[i]);
	free(l.v);
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
	rc = each_row(ix, "SELECT parent, name FROM dentry WHERE ino=?1 LIMIT 1", (int64_t)ino, 0,
		      0, row_entry, &e);
	pthread_mutex_unlock(&ix->lock);
	if (!rc && !e.parent)
		rc = -ENOENT;
	if (!rc) {
		*parent = e.parent;
		memcpy(name, e.name, sizeof(e.name));
	}
	return rc;
}

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
	rc = each_row(ix, SUBTREE "SELECT coalesce(sum(i.size),0), coalesce(sum(i.stored),0), "
			  "count(*) FROM sub JOIN inode i ON i.ino = sub.ino "
			  "WHERE (i.mode & 61440) = 32768",
		      (int64_t)ino, 0, 0, row_usage, u);
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
	rc = each_row(ix, SUBTREE "SELECT DISTINCT c.codec FROM sub JOIN chunk c ON c.ino = sub.ino "
			  "WHERE c.idx >= 0 ORDER BY 1",
		      (int64_t)ino, 0, 0, row_codec, &c);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* ---- inode records ---- */

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
	sqlite3_stmt *s;
	int rc;

	memset(m, 0, sizeof(*m));
	m->ttl = -1;
	pthread_mutex_lock(&ix->lock);
	s = q(ix, Q_GETATTR);
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = fetch_attr(ix, s, &m->attr);
	if (!rc && S_ISLNK(m->attr.mode)) {
		char target[PATH_MAX];
		rc = get_target(ix, ino, target, sizeof(target));
		if (rc == -EINVAL)
			rc = 0; /* a symlink without a target: none recorded */
		else if (!rc && *target && !(m->target = strdup(target)))
			rc = -ENOMEM;
	}
	if (!rc)
		rc = each_row(ix, "SELECT parent, name FROM dentry WHERE ino=?1 ORDER BY id",
			      (int64_t)ino, 0, 0, row_link, m);
	if (!rc)
		rc = each_row(ix, "SELECT name, value FROM xattr WHERE ino=?1 ORDER BY name",
			      (int64_t)ino, 0, 0, row_xattr, m);
	if (!rc)
		rc = each_row(ix, "SELECT pin, ttl FROM context WHERE ino=?1", (int64_t)ino, 0, 0,
			      row_meta_ctx, m);
	if (!rc && chunks && S_ISREG(m->attr.mode))
		rc = each_chunk(ix, ino, meta_chunk, m);
	if (!rc)
		rc = each_row(ix, "SELECT seq FROM sqlite_sequence WHERE name='inode'", 0, 0, 0,
			      row_count, &m->hwm);
	if (!rc)
		rc = get_irec(ix, ino, cur);
	pthread_mutex_unlock(&ix->lock);
	if (rc)
		kv_meta_free(m);
	return rc;
}

/* One of kv_index_set_irecs: 0, -ESTALE, -ENOENT, or an SQLite failure. */
static int set_irec(struct kv_index *ix, const struct kv_irec_set *r)
{
	struct kv_loc now;
	struct kv_attr a;
	sqlite3_stmt *s = q(ix, Q_GETATTR);
	int rc;

	sqlite3_bind_int64(s, 1, (int64_t)r->ino);
	rc = fetch_attr(ix, s, &a);
	if (!rc)
		rc = get_irec(ix, r->ino, &now);
	if (!rc && (now.seg != r->expect.seg || now.off != r->expect.off ||
		    now.len != r->expect.len))
		return -ESTALE;
	if (rc)
		return rc;
	s = q(ix, Q_PUT_CHUNK);
	sqlite3_bind_int64(s, 1, (int64_t)r->ino);
	sqlite3_bind_int64(s, 2, -1);
	sqlite3_bind_int64(s, 3, r->loc.seg);
	sqlite3_bind_int64(s, 4, (int64_t)r->loc.off);
	sqlite3_bind_int64(s, 5, r->loc.len);
	sqlite3_bind_int64(s, 6, 0);
	sqlite3_bind_int64(s, 7, 0);
	return q_exec(ix, s);
}

int kv_index_set_irecs(struct kv_index *ix, struct kv_irec_set *r, size_t n)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	for (size_t i = 0; !rc && i < n; i++) {
		r[i].rc = set_irec(ix, &r[i]);
		if (r[i].rc != -ESTALE && r[i].rc != -ENOENT)
			rc = r[i].rc;
	}
	rc = end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	/* Nothing of a failed transaction stands. */
	for (size_t i = 0; rc && i < n; i++)
		r[i].rc = rc;
	return rc;
}

int kv_index_begin(struct kv_index *ix)
{
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = begin(ix);
	if (rc)
		pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_commit(struct kv_index *ix, int rc)
{
	rc = end(ix, rc);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static int put_chunk(struct kv_index *ix, uint64_t ino, int64_t idx, const struct kv_loc *loc,
		     uint32_t raw, uint8_t codec)
{
	sqlite3_stmt *s = q(ix, Q_PUT_CHUNK);

	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_int64(s, 2, idx);
	sqlite3_bind_int64(s, 3, loc->seg);
	sqlite3_bind_int64(s, 4, (int64_t)loc->off);
	sqlite3_bind_int64(s, 5, loc->len);
	sqlite3_bind_int64(s, 6, raw);
	sqlite3_bind_int64(s, 7, codec);
	return q_exec(ix, s);
}

int kv_index_restore(struct kv_index *ix, const struct kv_meta *m, const struct kv_loc *rec)
{
	const struct kv_attr *a = &m->attr;
	sqlite3_stmt *s = NULL;
	/* Inode 1 exists in every new index: replaced. */
	int rc = prepare(ix, "INSERT OR REPLACE INTO inode(ino,mode,uid,gid,nlink,size,stored,"
			 "rdev,atime,mtime,ctime,target) "
			 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)", &s);

	if (rc)
		return rc;
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
	else
		sqlite3_bind_null(s, 12);
	rc = q_exec(ix, s);
	sqlite3_finalize(s);
	for (size_t i = 0; !rc && i < m->nlinks; i++) {
		s = q(ix, Q_INS_DENTRY);
		sqlite3_bind_int64(s, 1, (int64_t)m->links[i].parent);
		sqlite3_bind_blob(s, 2, m->links[i].name, m->links[i].len, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (int64_t)a->ino);
		rc = q_exec(ix, s);
	}
	for (size_t i = 0; !rc && i < m->nx; i++) {
		s = q(ix, Q_INSX);
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_blob(s, 2, m->x[i].name, (int)strlen(m->x[i].name), SQLITE_STATIC);
		sqlite3_bind_blob(s, 3, m->x[i].value, (int)m->x[i].len, SQLITE_STATIC);
		rc = q_exec(ix, s);
	}
	for (size_t i = 0; !rc && i < m->nchunks; i++)
		rc = put_chunk(ix, a->ino, (int64_t)m->chunks[i].idx, &m->chunks[i].loc,
			       m->chunks[i].raw, m->chunks[i].codec);
	if (!rc && rec)
		rc = put_chunk(ix, a->ino, -1, rec, 0, 0);
	if (!rc && (m->flags & KV_META_HAS_CTX)) {
		rc = prepare(ix, "INSERT OR REPLACE INTO context(ino,last_access,pin,ttl) "
			     "VALUES(?1,?2,?3,?4)", &s);
		if (rc)
			return rc;
		sqlite3_bind_int64(s, 1, (int64_t)a->ino);
		sqlite3_bind_int64(s, 2, a->mtime);
		sqlite3_bind_int64(s, 3, m->pin);
		if (m->ttl >= 0)
			sqlite3_bind_int64(s, 4, m->ttl);
		else
			sqlite3_bind_null(s, 4);
		rc = q_exec(ix, s);
		sqlite3_finalize(s);
	}
	return rc;
}

int kv_index_set_store_id(struct kv_index *ix, const uint8_t id[16])
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = prepare(ix, "UPDATE meta SET value=?1 WHERE key='store_id'", &s);
	if (!rc) {
		sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
		rc = q_exec(ix, s);
		sqlite3_finalize(s);
	}
	if (!rc)
		memcpy(ix->id, id, 16);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int kv_index_set_next_ino(struct kv_index *ix, uint64_t next)
{
	/* AUTOINCREMENT hands out max(seq, largest ino) + 1. In the caller's
	 * transaction. */
	return each_row(ix, "UPDATE sqlite_sequence SET seq=max(seq, ?1) WHERE name='inode'",
			(int64_t)next - 1, 0, 0, NULL, NULL);
}

int kv_index_irec_bytes(struct kv_index *ix, uint64_t *n)
{
	int rc;

	*n = 0;
	pthread_mutex_lock(&ix->lock);
	rc = each_row(ix, "SELECT coalesce(sum(len),0) FROM chunk WHERE idx=-1", 0, 0, 0, row_count, n);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}
