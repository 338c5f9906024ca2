/* SPDX-License-Identifier: Apache-2.0 */
/* Inode records (src/store/meta.h): each changed inode's state appended to
 * the segments in batches by the irec thread, so that kvfsctl rebuild can
 * recover the namespace from the segments alone. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"
#include <time.h>

#include "meta.h"

/* ---- inode records (src/store/meta.h) ---- */

int kv_fs_write_irec(struct kv_fs *fs, const struct kv_meta *m, struct kv_loc *loc)
{
	size_t len;
	uint8_t *p = kv_meta_encode(m, &len);
	int rc;

	if (!p)
		return -ENOMEM;
	rc = len > UINT32_MAX - KV_REC_HDR
		     ? -EFBIG
		     : kv_store_append_inode(fs->st, m->attr.ino, p, (uint32_t)len, loc);
	free(p);
	if (!rc)
		__atomic_add_fetch(&fs->irec_bytes, loc->len, __ATOMIC_RELAXED);
	return rc;
}

void kv_fs_irec_failed(uint64_t ino, int rc)
{
	/* A full disk fails every one of them: not worth a line each. */
	if (rc == -ENOSPC)
		kv_debug("inode %" PRIu64 ": inode record not written: %s", ino, strerror(-rc));
	else if (rc != -ENOENT)
		kv_err("inode %" PRIu64 ": inode record not written: %s", ino, strerror(-rc));
}

/* Inode records are written in batches, a little after the change: a
 * metadata operation is then one index transaction, and the records of
 * an inode changed many times in a row (a directory losing its entries)
 * are written once. The index holds the change at once; the records only
 * matter to kvfsctl rebuild, after the index is lost. */
#define KV_IREC_DELAY_MS 100 /* longest wait of a change for its record */
#define KV_IREC_BATCH 64     /* records per index transaction */
#define KV_IREC_PENDING 4096 /* a flush starts at once beyond this */

/* Write the records of n inodes and name them in one transaction. With
 * fs->irec_lock. */
void kv_fs_note_batch(struct kv_fs *fs, const uint64_t *ino, size_t n)
{
	struct kv_irec_set r[KV_IREC_BATCH];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct kv_meta m;
		int rc = kv_index_meta(fs->ix, ino[i], 1, &m, &r[k].expect);
		if (!rc) {
			rc = kv_fs_write_irec(fs, &m, &r[k].loc);
			kv_meta_free(&m);
		}
		if (rc)
			kv_fs_irec_failed(ino[i], rc);
		else
			r[k++].ino = ino[i];
	}
	if (k)
		kv_index_set_irecs(fs->ix, r, k);
	for (size_t i = 0; i < k; i++) {
		if (r[i].rc) {
			kv_fs_free_irec(fs, &r[i].loc);
			if (r[i].rc != -ESTALE)
				kv_fs_irec_failed(r[i].ino, r[i].rc);
		} else if (r[i].expect.len) {
			kv_fs_free_irec(fs, &r[i].expect);
		}
	}
}

void kv_fs_irec_flush(struct kv_fs *fs)
{
	struct kv_inoset due = { 0 };
	uint64_t ino[KV_IREC_BATCH];
	size_t n = 0;

	pthread_mutex_lock(&fs->dirty_lock);
	kv_inoset_take(&fs->dirty, &due);
	pthread_mutex_unlock(&fs->dirty_lock);
	for (uint64_t i = kv_inoset_next(&due, 0), next; i; i = next) {
		next = kv_inoset_next(&due, i);
		ino[n++] = i;
		if (n == KV_IREC_BATCH || !next) {
			/* Publishes wait for the lock: one batch at a time. */
			pthread_mutex_lock(&fs->irec_lock);
			kv_fs_note_batch(fs, ino, n);
			pthread_mutex_unlock(&fs->irec_lock);
			n = 0;
		}
	}
	kv_inoset_free(&due);
}

void kv_fs_note(struct kv_fs *fs, uint64_t ino)
{
	int rc, wake;

	pthread_mutex_lock(&fs->dirty_lock);
	wake = kv_inoset_count(&fs->dirty) == 0 ||
	       kv_inoset_count(&fs->dirty) + 1 == KV_IREC_PENDING;
	rc = kv_inoset_add(&fs->dirty, ino);
	if (wake)
		pthread_cond_signal(&fs->dirty_cond);
	pthread_mutex_unlock(&fs->dirty_lock);
	if (rc) { /* no memory for the set: write it now */
		pthread_mutex_lock(&fs->irec_lock);
		kv_fs_note_batch(fs, &ino, 1);
		pthread_mutex_unlock(&fs->irec_lock);
	}
}

void kv_fs_irec_writing(struct kv_fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->dirty_lock);
	kv_inoset_del(&fs->dirty, ino);
	pthread_mutex_unlock(&fs->dirty_lock);
}

static void *irec_thread(void *arg)
{
	struct kv_fs *fs = arg;
	struct timespec at;

	pthread_mutex_lock(&fs->dirty_lock);
	while (!fs->irec_stop) {
		if (!kv_inoset_count(&fs->dirty)) {
			pthread_cond_wait(&fs->dirty_cond, &fs->dirty_lock);
			continue;
		}
		/* Gather what comes in the next moment, unless plenty is due. */
		kv_deadline(&at, KV_IREC_DELAY_MS);
		while (!fs->irec_stop && kv_inoset_count(&fs->dirty) < KV_IREC_PENDING &&
		       pthread_cond_timedwait(&fs->dirty_cond, &fs->dirty_lock, &at) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&fs->dirty_lock);
		kv_fs_irec_flush(fs);
		pthread_mutex_lock(&fs->dirty_lock);
	}
	pthread_mutex_unlock(&fs->dirty_lock);
	return NULL;
}

int kv_fs_irec_start(struct kv_fs *fs)
{
	int rc = -pthread_create(&fs->irec_tid, NULL, irec_thread, fs);

	fs->irec_started = !rc;
	return rc;
}

void kv_fs_irec_stop(struct kv_fs *fs)
{
	if (fs->irec_started) {
		kv_thread_stop(&fs->dirty_lock, &fs->dirty_cond, &fs->irec_stop, fs->irec_tid);
		fs->irec_started = 0;
	}
	if (fs->ix && fs->st)
		kv_fs_irec_flush(fs);
}

void kv_fs_note_cb(void *arg, uint64_t ino) { kv_fs_note(arg, ino); }
