/* SPDX-License-Identifier: Apache-2.0 */
#include "tier.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"

struct kv_tier_ent {
	struct kv_loc loc;
	uint8_t *data;
	uint32_t len;
	uint32_t cost; /* bytes charged: the buffer, not the data */
	int small;     /* data is a malloc()ed copy, not a kv_buf */
	uint32_t refs;
	int dead;                        /* forgotten: free at last release */
	struct kv_tier_ent *hnext;       /* hash chain */
	struct kv_tier_ent *prev, *next; /* LRU list, head = most recent */
};

struct kv_tier {
	pthread_mutex_t lock;
	struct kv_bufs *bufs;
	size_t budget, bytes, count;
	struct kv_tier_ent **hash;
	size_t nhash;           /* power of two */
	struct kv_tier_ent lru; /* sentinel */
	uint64_t hits, misses;
};

static size_t slot_n(const struct kv_loc *loc, size_t n)
{
	uint64_t h = ((uint64_t)loc->seg << 40) ^ loc->off;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h & (n - 1);
}

static size_t slot(const struct kv_tier *t, const struct kv_loc *loc)
{
	return slot_n(loc, t->nhash);
}

struct kv_tier *kv_tier_new(struct kv_bufs *bufs, size_t budget)
{
	struct kv_tier *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->nhash = 1024;
	t->hash = calloc(t->nhash, sizeof(*t->hash));
	if (!t->hash) {
		free(t);
		return NULL;
	}
	t->bufs = bufs;
	t->budget = budget;
	t->lru.prev = t->lru.next = &t->lru;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

static void lru_unlink(struct kv_tier_ent *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

static void lru_push(struct kv_tier *t, struct kv_tier_ent *e)
{
	e->next = t->lru.next;
	e->prev = &t->lru;
	t->lru.next->prev = e;
	t->lru.next = e;
}

static void hash_unlink(struct kv_tier *t, struct kv_tier_ent *e)
{
	struct kv_tier_ent **pp = &t->hash[slot(t, &e->loc)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
}

/* Detach e and return it to be freed outside the lock. */
static struct kv_tier_ent *drop(struct kv_tier *t, struct kv_tier_ent *e)
{
	hash_unlink(t, e);
	lru_unlink(e);
	t->bytes -= e->cost;
	t->count--;
	return e;
}

static void destroy(struct kv_tier *t, struct kv_tier_ent *e)
{
	if (e->small)
		free(e->data);
	else
		kv_buf_put(t->bufs, e->data);
	free(e);
}

/* Unreferenced entries from the cold end until within budget. Locked (kv_tier.lock);
 * returns a list (through hnext) to destroy unlocked. */
static struct kv_tier_ent *shrink(struct kv_tier *t)
{
	struct kv_tier_ent *out = NULL, *e = t->lru.prev;

	KV_ASSERT_HELD(&t->lock);

	while (t->bytes > t->budget && e != &t->lru) {
		struct kv_tier_ent *prev = e->prev;
		if (!e->refs) {
			drop(t, e);
			e->hnext = out;
			out = e;
		}
		e = prev;
	}
	return out;
}

static void destroy_list(struct kv_tier *t, struct kv_tier_ent *e)
{
	while (e) {
		struct kv_tier_ent *next = e->hnext;
		destroy(t, e);
		e = next;
	}
}

void kv_tier_free(struct kv_tier *t)
{
	if (!t)
		return;
	while (t->lru.next != &t->lru)
		destroy(t, drop(t, t->lru.next));
	free(t->hash);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct kv_tier_ent *find(struct kv_tier *t, const struct kv_loc *loc)
{
	struct kv_tier_ent *e = t->hash[slot(t, loc)];

	while (e && (e->loc.seg != loc->seg || e->loc.off != loc->off))
		e = e->hnext;
	return e;
}

struct kv_tier_ent *kv_tier_get(struct kv_tier *t, const struct kv_loc *loc)
{
	return kv_tier_lookup(t, loc, 1);
}

struct kv_tier_ent *kv_tier_lookup(struct kv_tier *t, const struct kv_loc *loc, int count_miss)
{
	struct kv_tier_ent *e;

	pthread_mutex_lock(&t->lock);
	e = find(t, loc);
	if (e && !e->dead) {
		e->refs++;
		lru_unlink(e);
		lru_push(t, e);
		t->hits++;
	} else {
		e = NULL;
		t->misses += count_miss != 0;
	}
	pthread_mutex_unlock(&t->lock);
	return e;
}

static void grow(struct kv_tier *t)
{
	size_t n = t->nhash * 2;
	struct kv_tier_ent **h = calloc(n, sizeof(*h));

	if (!h)
		return;
	for (size_t i = 0; i < t->nhash; i++) {
		struct kv_tier_ent *e = t->hash[i];
		while (e) {
			struct kv_tier_ent *next = e->hnext;
			size_t s = slot_n(&e->loc, n);
			e->hnext = h[s];
			h[s] = e;
			e = next;
		}
	}
	free(t->hash);
	t->hash = h;
	t->nhash = n;
}

struct kv_tier_ent *kv_tier_put(struct kv_tier *t, const struct kv_loc *loc, void *buf, uint32_t len)
{
	struct kv_tier_ent *e = calloc(1, sizeof(*e)), *old, *gone;
	uint8_t *copy = NULL;

	/* Small chunks (tails, small files) keep a copy of their own size and
	 * give the chunk buffer back: the tier is charged what it holds. */
	if (e && len <= kv_bufs_size(t->bufs) / 4 && (copy = malloc(len ? len : 1))) {
		memcpy(copy, buf, len);
		kv_buf_put(t->bufs, buf);
		buf = copy;
	}

	pthread_mutex_lock(&t->lock);
	old = find(t, loc);
	if (old || !e) {
		if (old)
			old->refs++;
		pthread_mutex_unlock(&t->lock);
		if (copy)
			free(copy);
		else
			kv_buf_put(t->bufs, buf);
		free(e);
		return old;
	}
	*e = (struct kv_tier_ent){ .loc = *loc,
				   .data = buf,
				   .len = len,
				   .refs = 1,
				   .cost = (uint32_t)kv_bufs_size(t->bufs) };
	if (t->count >= t->nhash)
		grow(t);
	if (copy) {
		e->small = 1;
		e->cost = len + (uint32_t)sizeof(*e);
	}
	e->hnext = t->hash[slot(t, loc)];
	t->hash[slot(t, loc)] = e;
	lru_push(t, e);
	t->bytes += e->cost;
	t->count++;
	gone = shrink(t);
	pthread_mutex_unlock(&t->lock);
	destroy_list(t, gone);
	return e;
}

void kv_tier_release(struct kv_tier *t, struct kv_tier_ent *e)
{
	struct kv_tier_ent *gone = NULL;

	if (!e)
		return;
	pthread_mutex_lock(&t->lock);
	if (--e->refs == 0 && e->dead) {
		e->hnext = NULL;
		gone = e; /* already out of hash and LRU */
	} else if (!e->refs) {
		gone = shrink(t);
	}
	pthread_mutex_unlock(&t->lock);
	destroy_list(t, gone);
}

const uint8_t *kv_tier_data(const struct kv_tier_ent *e) { return e->data; }
uint32_t kv_tier_len(const struct kv_tier_ent *e) { return e->len; }

void kv_tier_forget(struct kv_tier *t, const struct kv_loc *loc)
{
	struct kv_tier_ent *e;

	pthread_mutex_lock(&t->lock);
	e = find(t, loc);
	if (e) {
		drop(t, e);
		if (e->refs) {
			e->dead = 1;
			e = NULL;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (e)
		destroy(t, e);
}

void kv_tier_stats(struct kv_tier *t, struct kv_tier_stats *s)
{
	pthread_mutex_lock(&t->lock);
	s->hits = t->hits;
	s->misses = t->misses;
	s->bytes = t->bytes;
	s->entries = t->count;
	pthread_mutex_unlock(&t->lock);
}
