/* SPDX-License-Identifier: Apache-2.0 */
/* The policy's hooks into the filesystem (policy.h): what a context holds,
 * evicting one (its whole tree), and telling the kernel what went. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "grow.h"
#include "log.h"
#include <sys/statvfs.h>

/* ---- eviction ---- */

struct evict_ctx {
	struct kv_loc_list l; /* first: kv_fs_collect_loc fills it */
	struct kv_fs *fs;
};

static void mark_gone(void *arg, uint64_t ino)
{
	struct evict_ctx *e = arg;
	struct kv_inode *in;

	struct kv_fs *fs = e->fs;

	if (!(in = kv_fs_hold(fs, ino)))
		return;
	pthread_mutex_lock(&in->lock);
	in->gone = 1;
	in->attr.nlink = 0;
	pthread_mutex_unlock(&in->lock);
	kv_fs_release(fs, in);
	/* In the table: the kernel may cache it. */
	pthread_mutex_lock(&fs->inval_lock);
	if (!kv_grow(&fs->inval, &fs->inval_cap, fs->ninval + 1, sizeof(*fs->inval)))
		fs->inval[fs->ninval++] = ino;
	pthread_mutex_unlock(&fs->inval_lock);
}

static int evict_tree(void *arg, uint64_t ino)
{
	struct evict_ctx e = { .fs = arg };
	struct kv_fs *fs = arg;
	uint64_t parent;
	char name[256];
	int rc = kv_index_entry_of(fs->ix, ino, &parent, name);

	if (!rc)
		KV_DELETION(fs, rc,
			    (kv_fs_loc_reset(&e.l),
			     kv_index_drop_tree(fs->ix, ino, kv_now_ns(), kv_fs_collect_loc,
						mark_gone, &e)));
	if (!rc)
		kv_fs_free_list(fs, &e.l);
	free(e.l.v);
	if (!rc)
		kv_fs_refresh(fs, parent);
	return rc;
}

/* On the evictor thread, with no lock held. Entries are not invalidated:
 * a lookup of an evicted name finds the inode gone (ENOENT), creating it
 * again revalidates the entry (exclusive create), and cached entries
 * expire within the mount's 1-s timeout. */
static void send_invalidations(void *arg)
{
	struct kv_fs *fs = arg;
	uint64_t *v;
	size_t n;

	pthread_mutex_lock(&fs->inval_lock);
	v = fs->inval;
	n = fs->ninval;
	fs->inval = NULL;
	fs->ninval = fs->inval_cap = 0;
	pthread_mutex_unlock(&fs->inval_lock);
	for (size_t i = 0; fs->notify && i < n; i++)
		fs->notify(fs->notify_arg, v[i]);
	free(v);
}

/* After each pass of the evictor (every second). */
static void evictor_pass(void *arg)
{
	send_invalidations(arg);
	if (__atomic_load_n(&((struct kv_fs *)arg)->reserve_out, __ATOMIC_RELAXED))
		kv_fs_reserve_refill(arg);
}

static uint64_t ctx_bytes(void *arg, uint64_t ino)
{
	struct kv_usage u;

	return kv_index_usage(((struct kv_fs *)arg)->ix, ino, &u) ? 1 : u.stored;
}

/* Bytes of chunk records: what the cap, eviction targets and the stats
 * count. Inode records (a few hundred bytes an inode) are not counted. */
uint64_t kv_fs_stored_bytes(void *arg)
{
	struct kv_fs *fs = arg;
	uint64_t live = kv_store_live(fs->st),
		 irec = __atomic_load_n(&fs->irec_bytes, __ATOMIC_RELAXED);

	return live > irec ? live - irec : 0;
}

static int backing_space(void *arg, uint64_t *avail, uint64_t *total)
{
	struct statvfs sv;

	if (statvfs(((struct kv_fs *)arg)->store_path, &sv))
		return -errno;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	*total = (uint64_t)sv.f_blocks * sv.f_frsize;
	return 0;
}

void kv_fs_set_notify(struct kv_fs *fs, kv_fs_notify_fn fn, void *arg)
{
	fs->notify = fn;
	fs->notify_arg = arg;
}

int kv_fs_evict_to(struct kv_fs *fs, uint64_t target)
{
	return kv_policy_evict_to(fs->pol, target, KV_EVICT_MANUAL);
}

void kv_fs_policy_hooks(struct kv_fs *fs, struct kv_policy_hooks *h)
{
	*h = (struct kv_policy_hooks){
		fs, evict_tree, kv_fs_stored_bytes, backing_space, evictor_pass, ctx_bytes, 1
	};
}
