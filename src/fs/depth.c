/* SPDX-License-Identifier: Apache-2.0 */
/* Changing a store's context depth (kvfsctl context-depth): the contexts
 * at the new depth take over the state of those at the old one. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "fs_int.h"
#include "grow.h"
#include "log.h"

/* ---- changing the context depth (kvfsctl context-depth) ---- */

/* A context at the old depth, with its row. */
struct old_ctx {
	struct kv_ctx_row row;
	int carried; /* some context at the new depth took its state */
};

/* A context at the new depth, and the state it takes over. */
struct new_ctx {
	struct kv_ctx_row row;
	int from; /* old contexts merged into it */
};

struct redepth {
	struct kv_fs *fs;
	int from, to; /* the old and the new depth */
	struct old_ctx *old;
	struct new_ctx *new;
	size_t nold, nnew, capold, capnew;
	int rc;
};

/* Where the walk is: depth, and the old and new contexts (indexes + 1;
 * 0: none) at or above it. */
struct redepth_at {
	struct redepth *r;
	int depth;
	size_t old, new;
};

/* What a context at the new depth takes from one at the old depth: a pin
 * if any had one, the longest TTL of their own (0: never), the last
 * access, the hits. */
static void merge_ctx(struct kv_ctx_row *to, const struct kv_ctx_row *o)
{
	to->pin |= o->pin;
	if (o->ttl >= 0)
		to->ttl = to->ttl < 0             ? o->ttl
			  : (!to->ttl || !o->ttl) ? 0
			  : to->ttl > o->ttl      ? to->ttl
						  : o->ttl;
	if (o->last_access > to->last_access)
		to->last_access = o->last_access;
	to->hits += o->hits;
}

static int redepth_visit(void *arg, const char *name, size_t len, const struct kv_attr *a,
			 uint64_t next);

static int redepth_node(struct redepth_at *at, const struct kv_attr *a)
{
	struct redepth *r = at->r;
	int d = at->depth, dir = S_ISDIR(a->mode), reg = S_ISREG(a->mode);
	struct redepth_at below = *at;

	if ((r->from ? dir && d == r->from : reg)) {
		struct old_ctx *o;
		if ((r->rc = kv_grow(&r->old, &r->capold, r->nold + 1, sizeof(*o))))
			return 1;
		o = &r->old[r->nold++];
		memset(o, 0, sizeof(*o));
		if (kv_index_ctx_get(r->fs->ix, a->ino, &o->row))
			o->row = (struct kv_ctx_row){ .ino = a->ino, .ttl = -1 };
		below.old = r->nold;
	}
	if ((r->to ? dir && d == r->to : reg)) {
		struct new_ctx *n;
		if ((r->rc = kv_grow(&r->new, &r->capnew, r->nnew + 1, sizeof(*n))))
			return 1;
		n = &r->new[r->nnew++];
		memset(n, 0, sizeof(*n));
		n->row = (struct kv_ctx_row){ .ino = a->ino, .ttl = -1 };
		below.new = r->nnew;
	}
	/* Every pair of an old context and a new one that holds it or lies
	 * in it meets once: where the lower of the two is reached. */
	if (below.old && below.new && (below.old != at->old || below.new != at->new)) {
		merge_ctx(&r->new[below.new - 1].row, &r->old[below.old - 1].row);
		r->new[below.new - 1].from++;
		r->old[below.old - 1].carried = 1;
	}
	below.depth = d + 1;
	if (dir && (!r->from || !r->to || d < (r->from > r->to ? r->from : r->to)) &&
	    (r->rc = kv_index_readdir(r->fs->ix, a->ino, 0, redepth_visit, &below)))
		return 1;
	return r->rc != 0;
}

static int redepth_visit(void *arg, const char *name, size_t len, const struct kv_attr *a,
			 uint64_t next)
{
	struct redepth_at *at = arg;

	(void)name;
	(void)len;
	(void)next;
	return redepth_node(at, a);
}

int kv_fs_set_context_depth(struct kv_fs *fs, int depth, kv_fs_depth_fn report, void *arg)
{
	struct redepth r = { .fs = fs, .from = fs->cfg.context_depth, .to = depth };
	struct redepth_at top = { .r = &r, .depth = 1 };
	struct kv_ctx_row *rows = NULL;
	size_t n = 0;
	int rc;

	if (depth < 0 || depth > 16)
		return -EINVAL;
	if (depth == r.from)
		return 0;
	/* Rows the daemon kept in memory are the index's now. */
	kv_policy_flush(fs->pol);
	rc = kv_index_readdir(fs->ix, KV_ROOT_INO, 0, redepth_visit, &top);
	rc = rc ? rc : r.rc;
	if (!rc && !(rows = malloc((r.nnew ? r.nnew : 1) * sizeof(*rows))))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < r.nnew; i++)
		if (r.new[i].from)
			rows[n++] = r.new[i].row;
	/* Said before it is done: what is not carried is never lost unseen. */
	for (size_t i = 0; !rc && report && i < r.nold; i++)
		if (!r.old[i].carried && (r.old[i].row.pin || r.old[i].row.ttl >= 0))
			report(arg, r.old[i].row.ino, &r.old[i].row, 0);
	for (size_t i = 0; !rc && report && i < n; i++)
		if (rows[i].pin || rows[i].ttl >= 0)
			report(arg, rows[i].ino, &rows[i], 1);
	if (!rc)
		rc = kv_index_ctx_scan(fs->ix, depth, kv_now_ns());
	for (size_t i = 0; !rc && i < n; i++)
		if (!rows[i].last_access)
			rows[i].last_access = kv_now_ns();
	if (!rc && n)
		rc = kv_index_ctx_save(fs->ix, rows, n);
	if (!rc)
		rc = kv_index_meta_set(fs->ix, "context_depth", depth);
	if (!rc)
		fs->cfg.context_depth = depth;
	free(rows);
	free(r.old);
	free(r.new);
	return rc;
}
