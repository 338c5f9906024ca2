/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of the index (index.h), shared by its files:
 *
 *   index.c       open, schema migrations, settings, transactions, the
 *                 statement table and the SQLite-to-errno mapping
 *   index_ckpt.c  the checkpointer (a connection and thread of its own)
 *                 and the checks of the index file
 *   index_ns.c    the namespace: attributes, entries (lookup, create,
 *                 remove, rename, readdir), symlinks, xattrs
 *   index_data.c  chunk rows: publish, drop, drop_tree, the scans of gc
 *                 and fsck, usage and stats
 *   index_meta.c  inode records: what one holds, naming them, and
 *                 rebuild's restore
 *   index_ctx.c   context rows: LRU, TTL, pins
 *
 * struct kv_index, field by field (the lock order of the whole daemon,
 * these two locks included, is in src/fs/fs_int.h):
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
 *   path      the index file; constant after open.
 *
 * Every function here returns 0 or a negative errno unless it says
 * otherwise. One that says "Locked (kv_index.lock)." must be called with
 * ix->lock held, and checks it (KV_ASSERT_HELD, src/base/lock.h); at
 * open, kv_index_open holds it too. */
#ifndef KV_INDEX_INT_H
#define KV_INDEX_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "index.h"

/* Every statement the index runs on its rows, named by the file that
 * runs it (the texts are in index.c, kv_sql). This table is the one
 * statement mechanism: each statement is prepared once, at open, with
 * SQLITE_PREPARE_PERSISTENT, and kept. It replaced a second one, a cache
 * keyed by the address of the text, because a name finds a statement's
 * SQL and every use of it by grep, the table has no capacity to outgrow
 * (the cache fell back to preparing on each call when full), identical
 * texts in two files cannot become two entries, and a statement that
 * does not compile fails the open, not an operation in a mount: no
 * operation has a "could not prepare" path. Statements before IX_NTXN
 * name no table: they are prepared before the migrations, which run in
 * transactions; the rest once the schema is current.
 *
 * Not in the table: pragmas and the migration scripts, run once through
 * ix_sql (SQLite applies most pragmas while it prepares them, so a kept
 * one would do nothing when run); check_identity's reads and the file
 * checks of index_ckpt.c, which need SQLite's own result code or run on
 * another connection. */
enum ix_stmt {
	/* index.c: transactions (no table) */
	Q_BEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	IX_NTXN,
	/* index.c: identity and settings */
	Q_STORE_ID = IX_NTXN,
	Q_INIT_ROOT,
	Q_INIT_META,
	Q_SET_STORE_ID,
	Q_SETTING_GET,
	Q_SETTING_SET,
	/* index_ns.c */
	Q_GETATTR,
	Q_LOOKUP,
	Q_PARENT,
	Q_ENTRY_OF,
	Q_INS_INODE,
	Q_INS_DENTRY,
	Q_DEL_DENTRY,
	Q_SET_NLINK,
	Q_TOUCH_DIR,
	Q_HAS_CHILD,
	Q_READLINK,
	Q_READDIR,
	Q_MOVE_DENTRY,
	Q_SET_DENTRY_INO,
	Q_SETATTR,
	Q_GETX,
	Q_PUTX,
	Q_INSX,
	Q_LISTX,
	Q_DELX,
	/* index_data.c */
	Q_CHUNKS,
	Q_RECS,
	Q_GET_IREC,
	Q_DEL_CHUNKS_FROM,
	Q_PUT_CHUNK,
	Q_PUBLISH,
	Q_DEL_RECS,
	Q_DEL_XATTRS,
	Q_DEL_CTX,
	Q_DEL_CHILDREN,
	Q_DEL_LINKS,
	Q_DEL_INODE,
	Q_SUBTREE,
	Q_ORPHANS,
	Q_WITHOUT_IREC,
	Q_EXTENTS,
	Q_SEGS,
	Q_USAGE,
	Q_CODECS,
	Q_IREC_BYTES,
	Q_STAT_FILES,
	Q_STAT_DIRS,
	Q_STAT_CONTEXTS,
	Q_STAT_LOGICAL,
	Q_STAT_STORED,
	/* index_meta.c */
	Q_IREC_LINKS,
	Q_IREC_XATTRS,
	Q_IREC_CTX,
	Q_INO_HWM,
	Q_RESTORE_INODE,
	Q_RESTORE_CTX,
	Q_SET_NEXT_INO,
	/* index_ctx.c */
	Q_CTX_GET,
	Q_INODE_NAMED,
	Q_CTX_ADD,
	Q_CTX_SAVE,
	Q_CTX_LRU,
	Q_CTX_EXPIRED,
	Q_CTX_COUNT,
	Q_CTX_COUNT_TTL,
	Q_CTX_CLEAR,
	Q_CTX_SCAN_FILES,
	Q_CTX_SCAN_DIRS,
	Q_COUNT
};

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

/* ---- index.c: statements and errors ---- */

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
int ix_errno(struct kv_index *ix, int rc);
/* The kept statement which, reset and with its bindings cleared (unbound
 * parameters are NULL). Locked (kv_index.lock). */
sqlite3_stmt *ix_q(struct kv_index *ix, enum ix_stmt which);
/* One step of s: 1 with a row, 0 at the end of the rows, or the errno of
 * the failure; never a failure taken for "no row". Locked (kv_index.lock). */
int ix_step(struct kv_index *ix, sqlite3_stmt *s);
/* Runs s, bound by the caller, to its first row or its end, and resets
 * it. Locked (kv_index.lock). */
int ix_run(struct kv_index *ix, sqlite3_stmt *s);
/* Runs which with ?1..?3 bound to a, b, c (those it has), passing each row
 * to cb (may be NULL), which returns 0 for the next row, > 0 to stop, or
 * a negative errno to stop with that failure. cb must not run statements
 * (index.h: callbacks do not call back into the index). Locked
 * (kv_index.lock). */
int ix_each_row(struct kv_index *ix, enum ix_stmt which, int64_t a, int64_t b, int64_t c,
		int (*cb)(sqlite3_stmt *s, void *arg), void *arg);
/* which with ?1 = ino, run to its end (the deletes by inode). Locked
 * (kv_index.lock). */
int ix_by_ino(struct kv_index *ix, enum ix_stmt which, uint64_t ino);
/* An ix_each_row callback: column 0 of the first row into the uint64_t
 * at arg. */
int ix_row_u64(sqlite3_stmt *s, void *arg);

/* Runs text, not kept: pragmas and migration scripts. Locked
 * (kv_index.lock). */
int ix_sql(struct kv_index *ix, const char *text);

/* Inode numbers read from rows: v holds n of max. */
struct ix_inos {
	uint64_t *v;
	size_t n, max;
};

/* BEGIN IMMEDIATE. Locked (kv_index.lock). */
int ix_begin(struct kv_index *ix);
/* Commit when rc is 0, else roll back; the failure of either the work or
 * the commit (a full disk is ENOSPC here too). Locked (kv_index.lock). */
int ix_end(struct kv_index *ix, int rc);

/* ---- index_ckpt.c ---- */

/* Stops the checkpointer's thread, if it runs, and closes its connection.
 * For kv_index_close. */
void ix_ckpt_stop(struct kv_index *ix);

/* ---- index_ns.c ---- */

/* Reads the columns c..c+10 of a row of s (ino, mode, uid, gid, nlink,
 * size, stored, rdev, atime, mtime, ctime) into a. */
void ix_row_attr(sqlite3_stmt *s, int c, struct kv_attr *a);
/* ino's attributes: 0, -ENOENT or the failure. Locked (kv_index.lock). */
int ix_getattr(struct kv_index *ix, uint64_t ino, struct kv_attr *a);
/* The parent of ino's (first) entry: 0, -ENOENT when ino has no entry,
 * or the failure. Locked (kv_index.lock). */
int ix_parent_of(struct kv_index *ix, uint64_t ino, uint64_t *parent);
/* Adds delta to ino's link count and sets its ctime to now (and its mtime
 * too with touch: a directory whose entries changed). Locked (kv_index.lock). */
int ix_add_links(struct kv_index *ix, uint64_t ino, int delta, int64_t now, int touch);
/* ino's symlink target, as a NUL-terminated string of at most len - 1
 * bytes: 0, -EINVAL when ino is not a symlink, -ENOENT when it is gone,
 * or the failure. Locked (kv_index.lock). */
int ix_get_target(struct kv_index *ix, uint64_t ino, char *buf, size_t len);

/* ---- index_data.c ---- */

/* Each row of which (Q_CHUNKS: the chunks; Q_RECS: every record, the
 * inode record included) of ino, to cb. Locked (kv_index.lock). */
int ix_each_rec(struct kv_index *ix, enum ix_stmt which, uint64_t ino, kv_index_chunk_cb cb,
		void *arg);
/* The location of ino's inode record in *loc (len 0: none). Locked
 * (kv_index.lock). */
int ix_get_irec(struct kv_index *ix, uint64_t ino, struct kv_loc *loc);
/* Writes (or replaces) the chunk row idx of ino; idx -1 is the inode
 * record. Locked (kv_index.lock). */
int ix_put_chunk(struct kv_index *ix, uint64_t ino, int64_t idx, const struct kv_loc *loc,
		 uint32_t raw, uint8_t codec);

#endif
