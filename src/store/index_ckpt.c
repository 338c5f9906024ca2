/* SPDX-License-Identifier: Apache-2.0 */
/* The index's checkpointer and the checks of the index file. Checkpoints
 * (copying the write-ahead log into the database, with its fsync) run on
 * a connection and in a thread of their own, so that no commit waits for
 * one; the thread first runs the mount's quick_check. */
#include "index_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "pool.h"

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
	for (char *c = msg; (c = strchr(c, '\n'));)
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
	uint64_t t0 = kv_mono_ns(), t1;
	char msg[256];
	int n;

	sqlite3_progress_handler(ix->ckpt_db, 10000, ckpt_abort, ix);
	n = check_db(ix->ckpt_db, "quick_check", msg, sizeof(msg));
	sqlite3_progress_handler(ix->ckpt_db, 0, NULL, NULL);
	t1 = kv_mono_ns();
	if (n > 0)
		kv_err("index %s is damaged (%d problem%s; the first: %s): stop kvfs and run "
		       "`kvfsctl fsck` and `kvfsctl rebuild` (docs/reliability.md)",
		       ix->path, n, n > 1 ? "s" : "", msg);
	else if (n < 0 && n != -EINTR)
		kv_warn("index %s: quick_check could not run: %s", ix->path, msg);
	else if (!n)
		kv_info("index %s: quick_check ok in %.1f s", ix->path, (double)(t1 - t0) / 1e9);
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

void ix_ckpt_stop(struct kv_index *ix)
{
	if (ix->ckpt_started)
		kv_thread_stop(&ix->ckpt_lock, &ix->ckpt_cond, &ix->ckpt_stop, ix->ckpt_tid);
	sqlite3_close(ix->ckpt_db);
	ix->ckpt_db = NULL;
	ix->ckpt_started = 0;
}
