/* SPDX-License-Identifier: Apache-2.0 */
/* Records of a mount: freeing a record's space (store and tier), the
 * quarantine of records that failed their checks, and kv_fs_gc. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "grow.h"
#include "log.h"

int kv_fs_quarantined(struct kv_fs *fs, const struct kv_loc *loc)
{
	int bad = 0;

	pthread_mutex_lock(&fs->bad_lock);
	for (size_t i = 0; i < fs->nbad && !bad; i++)
		bad = fs->bad[i].seg == loc->seg && fs->bad[i].off == loc->off;
	pthread_mutex_unlock(&fs->bad_lock);
	return bad;
}

void kv_fs_quarantine(struct kv_fs *fs, uint64_t ino, uint64_t idx, const struct kv_loc *loc)
{
	char path[1024];
	int fresh;

	pthread_mutex_lock(&fs->bad_lock);
	fresh = 1;
	for (size_t i = 0; i < fs->nbad && fresh; i++)
		fresh = !(fs->bad[i].seg == loc->seg && fs->bad[i].off == loc->off);
	if (fresh && !kv_grow(&fs->bad, &fs->bad_cap, fs->nbad + 1, sizeof(*fs->bad)))
		fs->bad[fs->nbad++] = *loc;
	pthread_mutex_unlock(&fs->bad_lock);
	if (!fresh)
		return;
	kv_stat_add(&fs->stats.checksum_errors, 1);
	kv_err("%s (inode %llu) chunk %llu: damaged record (segment %08x offset %llu): readers "
	       "get EIO until the chunk is rewritten or the file repaired (kvfsctl fsck --repair)",
	       kv_fs_path(fs, ino, path, sizeof(path)), (unsigned long long)ino,
	       (unsigned long long)idx, loc->seg, (unsigned long long)loc->off);
}

static void unquarantine(struct kv_fs *fs, const struct kv_loc *loc)
{
	pthread_mutex_lock(&fs->bad_lock);
	for (size_t i = 0; i < fs->nbad; i++)
		if (fs->bad[i].seg == loc->seg && fs->bad[i].off == loc->off) {
			fs->bad[i] = fs->bad[--fs->nbad];
			break;
		}
	pthread_mutex_unlock(&fs->bad_lock);
}

/* ---- records ---- */

void kv_fs_free_loc(struct kv_fs *fs, const struct kv_loc *loc)
{
	unquarantine(fs, loc);
	kv_tier_forget(fs->tier, loc);
	kv_store_free(fs->st, loc);
}

int kv_fs_collect_loc(void *arg, const struct kv_chunk *c)
{
	struct kv_loc_list *l = arg;

	if (kv_grow(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return -ENOMEM;
	l->v[l->n++] = c->loc;
	if (c->idx == KV_REC_IDX_INODE)
		l->irec += c->loc.len;
	return 0;
}

/* Empty l for a deletion tried again: the failed try collected too. */
void kv_fs_loc_reset(struct kv_loc_list *l)
{
	l->n = 0;
	l->irec = 0;
}

/* Free the records of l (after the index stopped naming them). */
void kv_fs_free_list(struct kv_fs *fs, struct kv_loc_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kv_fs_free_loc(fs, &l->v[i]);
	__atomic_sub_fetch(&fs->irec_bytes, l->irec, __ATOMIC_RELAXED);
	free(l->v);
	memset(l, 0, sizeof(*l));
	/* The room a deletion made may bring the reserve back. */
	if (__atomic_load_n(&fs->reserve_out, __ATOMIC_RELAXED))
		kv_fs_reserve_refill(fs);
}

void kv_fs_free_irec(struct kv_fs *fs, const struct kv_loc *loc)
{
	__atomic_sub_fetch(&fs->irec_bytes, loc->len, __ATOMIC_RELAXED);
	kv_fs_free_loc(fs, loc);
}

void kv_fs_drop(struct kv_fs *fs, uint64_t ino)
{
	struct kv_loc_list l = { 0 };
	int rc;

	KV_DELETION(fs, rc,
		    (kv_fs_loc_reset(&l), kv_index_drop(fs->ix, ino, kv_fs_collect_loc, &l)));
	if (rc)
		kv_err("inode %" PRIu64 ": cannot delete: %s", ino, strerror(-rc));
	else
		kv_fs_free_list(fs, &l);
	free(l.v);
	/* kv_index_drop deleted its context row too. */
	if (fs->pol)
		kv_policy_removed(fs->pol, ino);
}

int kv_fs_gc(struct kv_fs *fs, uint64_t *freed)
{
	struct kv_loc_list l = { 0 };
	size_t i = 0;
	int rc = kv_index_extents(fs->ix, kv_fs_collect_loc, &l);

	for (uint32_t seg = 1; !rc && seg <= kv_store_highest(fs->st); seg++) {
		size_t first = i;
		while (i < l.n && l.v[i].seg == seg)
			i++;
		rc = kv_store_reclaim(fs->st, seg, l.v + first, i - first, freed);
	}
	free(l.v);
	return rc;
}
