/* SPDX-License-Identifier: Apache-2.0 */
/* The inode table: the in-memory inodes the kernel and open files hold,
 * their references (lookups, opens, holds) and their context. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"
#include <sys/stat.h>

/* ---- inode table ---- */

static struct kv_inode *itab_find(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inomap_node *node = kv_inomap_find(&fs->inodes, ino);

	return node ? kv_inomap_entry(node, struct kv_inode, hnode) : NULL;
}

static void itab_remove(struct kv_fs *fs, struct kv_inode *in)
{
	kv_inomap_del(&fs->inodes, &in->hnode);
}

static struct kv_inode *inode_new(const struct kv_attr *a)
{
	struct kv_inode *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	in->ino = a->ino;
	in->attr = *a;
	in->keep = UINT64_MAX;
	in->filter = KV_FILTER_PROBE;
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->idle, NULL);
	return in;
}

static void inode_free(struct kv_inode *in)
{
	pthread_mutex_destroy(&in->lock);
	pthread_cond_destroy(&in->idle);
	kv_cmap_clear(&in->map);
	free(in->garbage);
	free(in);
}

/* Find or insert the inode for a and add refs kernel references. */
static struct kv_inode *itab_get(struct kv_fs *fs, const struct kv_attr *a, uint64_t refs)
{
	struct kv_inode *in, *fresh = NULL;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, a->ino);
	if (!in) {
		pthread_mutex_unlock(&fs->itab);
		fresh = inode_new(a);
		if (!fresh)
			return NULL;
		pthread_mutex_lock(&fs->itab);
		in = itab_find(fs, a->ino);
		if (!in) {
			in = fresh;
			kv_inomap_add(&fs->inodes, &in->hnode, in->ino);
			fresh = NULL;
		}
	}
	in->nlookup += refs;
	pthread_mutex_unlock(&fs->itab);
	if (fresh)
		inode_free(fresh);
	return in;
}

struct kv_inode *kv_fs_inode(struct kv_fs *fs, uint64_t ino, int *err)
{
	struct kv_attr a;
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	pthread_mutex_unlock(&fs->itab);
	if (in)
		return in;
	*err = kv_index_getattr(fs->ix, ino, &a);
	if (*err)
		return NULL;
	in = itab_get(fs, &a, 0);
	if (!in)
		*err = -ENOMEM;
	return in;
}

void kv_fs_ref(struct kv_fs *fs, struct kv_attr *a)
{
	struct kv_inode *in = itab_get(fs, a, 1);

	if (!in)
		return;
	pthread_mutex_lock(&in->lock);
	*a = in->attr;
	pthread_mutex_unlock(&in->lock);
}

uint64_t kv_fs_ctx_of(struct kv_fs *fs, struct kv_inode *in, int *depth)
{
	uint64_t chain[64], ctx = 0;
	int n = 1, d, D = fs->cfg.context_depth, valid;

	pthread_mutex_lock(&fs->itab);
	valid = in->ctx_gen == fs->topo_gen + 1;
	if (valid) {
		ctx = in->ctx;
		d = in->depth;
	}
	pthread_mutex_unlock(&fs->itab);
	if (valid)
		goto out;
	chain[0] = in->ino;
	while (chain[n - 1] != KV_ROOT_INO && n < 64 &&
	       !kv_index_parent(fs->ix, chain[n - 1], &chain[n]))
		n++;
	d = n - 1;
	if (D == 0)
		ctx = S_ISREG(in->attr.mode) ? in->ino : 0;
	else if (d >= D)
		ctx = chain[d - D];
	/* A walk that stopped short of the root (the tree was evicted or
	 * removed meanwhile) is not remembered. */
	if (chain[n - 1] != KV_ROOT_INO)
		goto out;
	pthread_mutex_lock(&fs->itab);
	in->ctx = ctx;
	in->depth = d;
	in->ctx_gen = fs->topo_gen + 1;
	pthread_mutex_unlock(&fs->itab);
out:
	if (depth)
		*depth = d;
	return ctx;
}

/* Drop a table entry with no references left; deletes a file whose last
 * link is gone. */
static void inode_put(struct kv_fs *fs, struct kv_inode *in)
{
	int gone;

	pthread_mutex_lock(&fs->itab);
	gone = in->nlookup == 0 && in->nopen == 0 && in->ino != KV_ROOT_INO;
	if (gone)
		itab_remove(fs, in);
	pthread_mutex_unlock(&fs->itab);
	if (!gone)
		return;
	if (in->attr.nlink == 0)
		kv_fs_drop(fs, in->ino);
	inode_free(in);
}

void kv_fs_forget(struct kv_fs *fs, uint64_t ino, uint64_t nlookup)
{
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	if (in)
		in->nlookup = in->nlookup > nlookup ? in->nlookup - nlookup : 0;
	pthread_mutex_unlock(&fs->itab);
	if (in)
		inode_put(fs, in);
}

/* The table's inode for ino, if any, held (a lookup reference) so that a
 * forget cannot free it meanwhile; give it back with kv_fs_release(). */
struct kv_inode *kv_fs_hold(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in;

	pthread_mutex_lock(&fs->itab);
	in = itab_find(fs, ino);
	if (in)
		in->nlookup++;
	pthread_mutex_unlock(&fs->itab);
	return in;
}

void kv_fs_release(struct kv_fs *fs, struct kv_inode *in) { kv_fs_forget(fs, in->ino, 1); }

/* Re-read what a namespace operation changed in the index. For regular
 * files the data path owns size, stored bytes and mtime. */
void kv_fs_refresh(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in = kv_fs_hold(fs, ino);
	struct kv_attr a;

	if (!in)
		return;
	if (!kv_index_getattr(fs->ix, ino, &a)) {
		pthread_mutex_lock(&in->lock);
		if (S_ISREG(in->attr.mode)) {
			a.size = in->attr.size;
			a.stored = in->attr.stored;
			a.mtime = in->attr.mtime;
		}
		in->attr = a;
		pthread_mutex_unlock(&in->lock);
	}
	kv_fs_release(fs, in);
}

/* An inode lost a link: keep the in-memory copy in step, and delete the
 * file now if nobody holds it. */
void kv_fs_unlinked(struct kv_fs *fs, uint64_t ino, uint32_t nlink)
{
	struct kv_inode *in = kv_fs_hold(fs, ino);

	if (in) {
		pthread_mutex_lock(&in->lock);
		in->attr.nlink = nlink;
		in->attr.ctime = kv_now_ns();
		pthread_mutex_unlock(&in->lock);
		kv_fs_release(fs, in); /* deletes it if that was the last reference */
	} else if (nlink == 0) {
		kv_fs_drop(fs, ino);
	}
}

int kv_fs_itab_init(struct kv_fs *fs, const struct kv_attr *root)
{
	return !kv_inomap_init(&fs->inodes, 1024) && itab_get(fs, root, 1) ? 0 : -ENOMEM;
}

int kv_fs_itab_fini(struct kv_fs *fs)
{
	struct kv_inomap_node *node = kv_inomap_next(&fs->inodes, NULL), *next;
	int unclean = 0;

	for (; node; node = next) {
		struct kv_inode *in = kv_inomap_entry(node, struct kv_inode, hnode);
		pthread_mutex_lock(&in->lock);
		while (in->users)
			unclean |= kv_file_detach(fs, in) != 0;
		pthread_mutex_unlock(&in->lock);
		if (in->attr.nlink == 0)
			kv_fs_drop(fs, in->ino);
		next = kv_inomap_next(&fs->inodes, node);
		inode_free(in);
	}
	kv_inomap_free(&fs->inodes);
	return unclean;
}
