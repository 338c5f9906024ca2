/* SPDX-License-Identifier: Apache-2.0 */
#include "policy.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "grow.h"
#include "inomap.h"
#include "lock.h"
#include "log.h"
#include "pool.h"

#define KV_EVICT_BATCH 128

struct kv_pctx {
	struct kv_inomap_node node; /* in kv_policy.ctxs, keyed by row.ino */
	struct kv_ctx_row row;
	uint32_t nopen;
	int dirty;
	int dead;    /* being evicted: no new opens */
	int removed; /* deleted while files of it were open: kept for their closes */
};

struct kv_policy {
	struct kv_config cfg;
	struct kv_index *ix;
	struct kv_stats *stats;
	struct kv_policy_hooks h;

	pthread_mutex_t lock; /* the table and every kv_pctx */
	pthread_cond_t wake;
	pthread_t thread;
	int running, stopping;
	int any_ttl;           /* some context has a ttl: scan for expired ones */
	struct kv_inomap ctxs; /* the table: struct kv_pctx by context inode */

	pthread_mutex_t evicting; /* one eviction pass at a time */
};

static struct kv_pctx *find(struct kv_policy *p, uint64_t ino)
{
	struct kv_inomap_node *node = kv_inomap_find(&p->ctxs, ino);

	return node ? kv_inomap_entry(node, struct kv_pctx, node) : NULL;
}

/* The state of ctx, loaded from the index (or created) on first use;
 * NULL with *err set if it cannot be (-ENOENT: the context is gone).
 * Locked (kv_policy.lock). */
static struct kv_pctx *get(struct kv_policy *p, uint64_t ino, int *err)
{
	struct kv_pctx *c = find(p, ino);
	int rc;

	KV_ASSERT_HELD(&p->lock);

	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = -ENOMEM;
		return NULL;
	}
	rc = kv_index_ctx_get(p->ix, ino, &c->row);
	if (rc == -ENOENT) {
		c->row = (struct kv_ctx_row){ .ino = ino, .last_access = kv_now_ns(), .ttl = -1 };
		rc = p->h.inodes ? kv_index_ctx_new(p->ix, &c->row)
				 : kv_index_ctx_add(p->ix, &c->row);
	}
	if (rc) {
		free(c);
		*err = rc;
		return NULL;
	}
	kv_inomap_add(&p->ctxs, &c->node, ino);
	return c;
}

/* Forget ctx. One with open files (moved out of it meanwhile) stays, with
 * no row and no eviction, until the last of them closes. Locked (kv_policy.lock). */
static void unlink_ctx(struct kv_policy *p, uint64_t ino, int closing)
{
	struct kv_pctx *c;

	KV_ASSERT_HELD(&p->lock);

	c = find(p, ino);
	if (c) {
		if (c->nopen && !closing) {
			c->removed = 1;
			c->dirty = 0;
			return;
		}
		kv_inomap_del(&p->ctxs, &c->node);
		free(c);
	}
}

int kv_policy_new(const struct kv_config *cfg, struct kv_index *ix, struct kv_stats *stats,
		  const struct kv_policy_hooks *hooks, struct kv_policy **out)
{
	struct kv_policy *p = calloc(1, sizeof(*p));
	uint64_t with_ttl = 0;

	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	p->ix = ix;
	p->stats = stats;
	p->h = *hooks;
	if (kv_inomap_init(&p->ctxs, 1024)) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->evicting, NULL);
	pthread_cond_init(&p->wake, NULL);
	kv_index_ctx_count(ix, 1, &with_ttl);
	p->any_ttl = cfg->ttl > 0 || with_ttl > 0;
	*out = p;
	return 0;
}

int kv_policy_open(struct kv_policy *p, uint64_t ctx)
{
	struct kv_pctx *c;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	c = get(p, ctx, &rc);
	if (c && c->dead)
		rc = -ENOENT;
	else if (c) {
		c->nopen++;
		c->row.hits++;
		c->row.last_access = kv_now_ns();
		c->dirty = !c->removed;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void kv_policy_read(struct kv_policy *p, uint64_t ctx)
{
	struct kv_pctx *c;

	pthread_mutex_lock(&p->lock);
	c = find(p, ctx);
	if (c) {
		c->row.last_access = kv_now_ns();
		c->dirty = 1;
	}
	pthread_mutex_unlock(&p->lock);
}

void kv_policy_close(struct kv_policy *p, uint64_t ctx)
{
	struct kv_pctx *c;

	pthread_mutex_lock(&p->lock);
	c = find(p, ctx);
	if (c && c->nopen)
		c->nopen--;
	if (c && c->removed && !c->nopen)
		unlink_ctx(p, ctx, 1);
	pthread_mutex_unlock(&p->lock);
}

void kv_policy_created(struct kv_policy *p, uint64_t ctx)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	get(p, ctx, &rc);
	pthread_mutex_unlock(&p->lock);
}

void kv_policy_removed(struct kv_policy *p, uint64_t ctx)
{
	pthread_mutex_lock(&p->lock);
	unlink_ctx(p, ctx, 0);
	pthread_mutex_unlock(&p->lock);
}

int kv_policy_get(struct kv_policy *p, uint64_t ctx, struct kv_ctx_row *r)
{
	struct kv_pctx *c;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	c = get(p, ctx, &rc);
	if (c)
		*r = c->row;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int set_field(struct kv_policy *p, uint64_t ctx, int pin, int64_t ttl)
{
	struct kv_pctx *c;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	c = get(p, ctx, &rc);
	if (c) {
		if (pin >= 0)
			c->row.pin = pin;
		if (ttl >= 0) {
			c->row.ttl = ttl;
			p->any_ttl |= ttl > 0;
		}
		c->dirty = 1;
	}
	pthread_mutex_unlock(&p->lock);
	/* Settings reach the index at once: they are rare and must last. */
	return c ? kv_policy_flush(p) : rc;
}

int kv_policy_set_pin(struct kv_policy *p, uint64_t ctx, int pin)
{
	return set_field(p, ctx, pin, -1);
}
int kv_policy_set_ttl(struct kv_policy *p, uint64_t ctx, int64_t ttl)
{
	return set_field(p, ctx, -1, ttl);
}

int kv_policy_flush(struct kv_policy *p)
{
	struct kv_ctx_row *rows = NULL;
	struct kv_inomap_node *node;
	size_t n = 0, cap = 0;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	for (node = kv_inomap_next(&p->ctxs, NULL); node && !rc;
	     node = kv_inomap_next(&p->ctxs, node)) {
		struct kv_pctx *c = kv_inomap_entry(node, struct kv_pctx, node);
		if (!c->dirty)
			continue;
		if (kv_grow(&rows, &cap, n + 1, sizeof(*rows))) {
			rc = -ENOMEM;
			break;
		}
		rows[n++] = c->row;
		c->dirty = 0;
	}
	pthread_mutex_unlock(&p->lock);
	if (!rc && n)
		rc = kv_index_ctx_save(p->ix, rows, n);
	if (rc && n) {
		/* Kept for the next flush: a full disk passes. */
		pthread_mutex_lock(&p->lock);
		for (size_t i = 0; i < n; i++) {
			struct kv_pctx *c = find(p, rows[i].ino);
			if (c && !c->removed)
				c->dirty = 1;
		}
		pthread_mutex_unlock(&p->lock);
	}
	/* A full disk is logged where it is found (the store's reserve), not
	 * once a second here. */
	if (rc == -ENOSPC)
		kv_debug("cannot save the state of %zu contexts: %s", n, strerror(-rc));
	else if (rc)
		kv_err("cannot save the state of %zu contexts: %s", n, strerror(-rc));
	free(rows);
	return rc;
}

uint64_t kv_policy_limit(struct kv_policy *p)
{
	uint64_t limit = p->cfg.capacity ? p->cfg.capacity : UINT64_MAX;
	uint64_t avail, total, floor, stored;

	if (!p->cfg.min_free && !p->cfg.min_free_pct)
		return limit;
	if (p->h.space(p->h.arg, &avail, &total))
		return limit;
	floor = p->cfg.min_free ? p->cfg.min_free : total / 100 * (uint64_t)p->cfg.min_free_pct;
	stored = p->h.stored(p->h.arg);
	/* What may be stored is what is stored plus what is free above the floor. */
	if (avail >= floor)
		return stored + (avail - floor) < limit ? stored + (avail - floor) : limit;
	return stored > floor - avail ? stored - (floor - avail) : 0;
}

/* Mark ctx as being evicted unless it is open, pinned or already going,
 * or (for_room) holds nothing. */
static int claim(struct kv_policy *p, uint64_t ino, int for_room)
{
	struct kv_pctx *c;
	int ok, rc;

	if (for_room && p->h.bytes && !p->h.bytes(p->h.arg, ino))
		return 0;
	pthread_mutex_lock(&p->lock);
	c = get(p, ino, &rc);
	ok = c && !c->dead && !c->nopen && !c->row.pin;
	if (ok)
		c->dead = 1;
	pthread_mutex_unlock(&p->lock);
	return ok;
}

static int evict_one(struct kv_policy *p, uint64_t ino, enum kv_evict_reason why)
{
	int rc = p->h.evict(p->h.arg, ino);

	pthread_mutex_lock(&p->lock);
	if (rc && rc != -ENOENT) {
		struct kv_pctx *c = find(p, ino);
		if (c)
			c->dead = 0;
	} else {
		unlink_ctx(p, ino, 0);
	}
	pthread_mutex_unlock(&p->lock);
	if (!rc)
		kv_stat_add(&p->stats->evictions[why], 1);
	else if (rc == -ENOENT)
		/* Removed by someone else meanwhile: forget it, row and all. */
		kv_index_ctx_del(p->ix, ino);
	else
		kv_err("context inode %" PRIu64 ": eviction failed: %s", ino, strerror(-rc));
	return rc;
}

/* Evict until stored bytes are at most target; *n counts the contexts
 * evicted. Short of it: -ENOSPC when what is left is pinned, open or
 * going, -EIO when an eviction could not be done (logged with its cause:
 * the index could not record it). */
static int evict_until(struct kv_policy *p, uint64_t target, enum kv_evict_reason why,
		       size_t *evicted)
{
	uint64_t inos[KV_EVICT_BATCH];
	size_t skip = 0, n;
	int rc;
	int stuck = 0, failed = 0;

	*evicted = 0;
	pthread_mutex_lock(&p->evicting);
	while (!stuck && p->h.stored(p->h.arg) > target) {
		int progress = 0;
		kv_policy_flush(p);
		if (kv_index_ctx_lru(p->ix, skip, inos, KV_EVICT_BATCH, &n) || !n) {
			stuck = 1;
			break;
		}
		for (size_t i = 0; i < n && p->h.stored(p->h.arg) > target; i++) {
			if (!claim(p, inos[i], why == KV_EVICT_LRU)) {
				skip++; /* open, pinned, going or empty: it keeps its place */
				continue;
			}
			rc = evict_one(p, inos[i], why);
			if (!rc) {
				progress = 1;
				(*evicted)++;
			} else {
				failed |= rc != -ENOENT;
				skip++;
			}
		}
		stuck = !progress && n < KV_EVICT_BATCH;
	}
	pthread_mutex_unlock(&p->evicting);
	/* Writers may add bytes meanwhile: what counts is whether this pass
	 * reached its target, not the stored bytes read again afterwards. */
	return !stuck ? 0 : failed ? -EIO : -ENOSPC;
}

int kv_policy_evict_to(struct kv_policy *p, uint64_t target, enum kv_evict_reason why)
{
	size_t n;

	return evict_until(p, target, why, &n);
}

int kv_policy_admit(struct kv_policy *p, uint64_t bytes)
{
	uint64_t limit = kv_policy_limit(p), low;
	size_t evicted;

	if (limit == UINT64_MAX)
		return 0;
	if (p->h.stored(p->h.arg) + bytes > limit / 100 * (uint64_t)p->cfg.high) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
	}
	low = limit / 100 * (uint64_t)p->cfg.low;
	/* Concurrent writers take the room a pass makes, a pass may find its
	 * target met by another, and contexts are open only for a moment: the
	 * attempt ends after a few passes in a row that evict nothing. */
	for (int fruitless = 0; bytes <= limit && fruitless < 3;) {
		if (p->h.stored(p->h.arg) + bytes <= limit)
			return 0;
		if (evict_until(p, low < limit - bytes ? low : limit - bytes, KV_EVICT_LRU,
				&evicted) &&
		    !evicted) {
			fruitless++;
			sched_yield();
		} else {
			fruitless = 0;
		}
	}
	if (p->h.stored(p->h.arg) + bytes <= limit)
		return 0;
	kv_stat_add(&p->stats->enospc, 1);
	return -ENOSPC;
}

static void expire(struct kv_policy *p)
{
	uint64_t inos[KV_EVICT_BATCH];
	size_t n = 0;

	if (!p->any_ttl ||
	    kv_index_ctx_expired(p->ix, kv_now_ns(), p->cfg.ttl, inos, KV_EVICT_BATCH, &n))
		return;
	for (size_t i = 0; i < n; i++)
		if (claim(p, inos[i], 0))
			evict_one(p, inos[i], KV_EVICT_TTL);
}

static void *evictor(void *arg)
{
	struct kv_policy *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct timespec ts;
		uint64_t limit;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		if (p->stopping)
			break;
		pthread_mutex_unlock(&p->lock);
		kv_policy_flush(p);
		expire(p);
		limit = kv_policy_limit(p);
		if (limit != UINT64_MAX &&
		    p->h.stored(p->h.arg) > limit / 100 * (uint64_t)p->cfg.high)
			kv_policy_evict_to(p, limit / 100 * (uint64_t)p->cfg.low, KV_EVICT_LRU);
		if (p->h.flushed)
			p->h.flushed(p->h.arg);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int kv_policy_start(struct kv_policy *p)
{
	int rc = pthread_create(&p->thread, NULL, evictor, p);

	if (rc)
		return -rc;
	p->running = 1;
	return 0;
}

void kv_policy_stop(struct kv_policy *p)
{
	if (!p || !p->running)
		return;
	kv_thread_stop(&p->lock, &p->wake, &p->stopping, p->thread);
	p->running = 0;
}

void kv_policy_free(struct kv_policy *p)
{
	if (!p)
		return;
	kv_policy_stop(p);
	kv_policy_flush(p);
	for (struct kv_inomap_node *node = kv_inomap_next(&p->ctxs, NULL), *next; node; node = next) {
		next = kv_inomap_next(&p->ctxs, node);
		free(kv_inomap_entry(node, struct kv_pctx, node));
	}
	kv_inomap_free(&p->ctxs);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->evicting);
	pthread_cond_destroy(&p->wake);
	free(p);
}
