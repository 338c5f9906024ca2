/* SPDX-License-Identifier: Apache-2.0 */
/* kv_segmap: see segmap.h. */
#include "segmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lock.h"
#include "log.h"

struct kv_segwin {
	uint32_t seg;
	uint64_t start, len; /* bytes [start, start + len) of the segment */
	uint8_t *map;        /* NULL while being mapped by another thread */
	int fd;              /* kept to notice the segment's deletion */
	int refs;
	uint64_t used; /* LRU tick of the last get */
};

struct kv_segmap {
	struct kv_store *st;
	struct kv_segmap_pin pin;
	uint64_t budget;
	pthread_mutex_t lock;
	pthread_cond_t mapped; /* a window being mapped is ready (or gone) */
	struct kv_segwin **v;  /* at most budget / KV_SEGMAP_WINDOW */
	size_t n, cap;
	uint64_t bytes, tick, maps, misses;
	time_t checked; /* last look for deleted segments */
	int broken;     /* page-locking failed: give up, logged once */
};

struct kv_segmap *kv_segmap_new(struct kv_store *st, uint64_t budget,
				const struct kv_segmap_pin *pin)
{
	struct kv_segmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->st = st;
	m->pin = *pin;
	m->budget = budget;
	m->cap = budget / KV_SEGMAP_WINDOW;
	m->v = m->cap ? calloc(m->cap, sizeof(*m->v)) : NULL;
	if (m->cap && !m->v) {
		free(m);
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->mapped, NULL);
	return m;
}

static void unmap(struct kv_segmap *m, struct kv_segwin *w)
{
	if (w->map) {
		m->pin.unpin(m->pin.arg, w->map, w->len);
		munmap(w->map, w->len);
	}
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}

void kv_segmap_free(struct kv_segmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		unmap(m, m->v[i]);
	free(m->v);
	pthread_cond_destroy(&m->mapped);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* Take window i out of the table. Locked (kv_segmap.lock). */
static struct kv_segwin *take(struct kv_segmap *m, size_t i)
{
	struct kv_segwin *w = m->v[i];

	KV_ASSERT_HELD(&m->lock);

	m->v[i] = m->v[--m->n];
	m->bytes -= w->map ? w->len : 0;
	return w;
}

/* Idle windows of deleted segments go, at most once a second, so that the
 * space of a segment deleted on the backing filesystem comes back. Locked (kv_segmap.lock);
 * the windows taken are returned in *gone for unmapping unlocked. */
static size_t reap(struct kv_segmap *m, struct kv_segwin **gone, size_t max)
{
	KV_ASSERT_HELD(&m->lock);
	time_t now = time(NULL);
	size_t k = 0;
	struct stat sb;

	if (now == m->checked)
		return 0;
	m->checked = now;
	for (size_t i = 0; i < m->n && k < max;) {
		struct kv_segwin *w = m->v[i];
		if (!w->refs && w->map && !fstat(w->fd, &sb) && sb.st_nlink == 0)
			gone[k++] = take(m, i);
		else
			i++;
	}
	return k;
}

/* The least recently used idle window, taken out; NULL if all are busy.
 * Locked (kv_segmap.lock). */
static struct kv_segwin *take_lru(struct kv_segmap *m)
{
	size_t best = m->n;

	KV_ASSERT_HELD(&m->lock);

	for (size_t i = 0; i < m->n; i++)
		if (!m->v[i]->refs && m->v[i]->map &&
		    (best == m->n || m->v[i]->used < m->v[best]->used))
			best = i;
	return best < m->n ? take(m, best) : NULL;
}

/* Map and page-lock bytes [w->start, end) of the segment into *map.
 * Unlocked: the caller publishes *map in w->map under the lock, as threads
 * waiting for this window read w->map. */
static int map_window(struct kv_segmap *m, struct kv_segwin *w, uint8_t **map)
{
	uint64_t size = 0, page = (uint64_t)sysconf(_SC_PAGESIZE);
	int fd = kv_store_seg_open(m->st, w->seg, &size);
	void *p;

	if (fd < 0)
		return fd;
	w->fd = fd;
	/* Up to the page that holds the file's end: a later append into that
	 * page writes into the very page cache page pinned here. */
	size = (size + page - 1) / page * page;
	if (size <= w->start)
		return -ERANGE;
	w->len = size - w->start < KV_SEGMAP_WINDOW ? size - w->start : KV_SEGMAP_WINDOW;
	/* Populated now, in one pass: records are checked through this
	 * mapping, and a fault per 4 KiB page costs more than the check (the
	 * page-locking pins the pages but maps none of them for the CPU). */
	p = mmap(NULL, w->len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)w->start);
	if (p == MAP_FAILED)
		return -errno;
	if (m->pin.pin(m->pin.arg, p, w->len)) {
		munmap(p, w->len);
		return -ENOMEM;
	}
	*map = p;
	return 0;
}

static struct kv_segwin *find(struct kv_segmap *m, uint32_t seg, uint64_t start, size_t *at)
{
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i]->seg == seg && m->v[i]->start == start) {
			*at = i;
			return m->v[i];
		}
	}
	return NULL;
}

const uint8_t *kv_segmap_get(struct kv_segmap *m, const struct kv_loc *loc, struct kv_segwin **out)
{
	uint64_t start = loc->off / KV_SEGMAP_WINDOW * KV_SEGMAP_WINDOW, end = loc->off + loc->len;
	struct kv_segwin *w, *gone[8], *evicted = NULL;
	uint8_t *map = NULL;
	size_t at = 0, ngone;
	int rc;

	if (!m->cap || end > start + KV_SEGMAP_WINDOW)
		return NULL;
	pthread_mutex_lock(&m->lock);
	ngone = reap(m, gone, 7);
	for (;;) {
		w = find(m, loc->seg, start, &at);
		if (!w || w->map)
			break;
		pthread_cond_wait(&m->mapped, &m->lock); /* another thread maps it */
	}
	if (w && end > w->start + w->len && !w->refs) {
		/* Mapped before this record was appended: map it again. */
		evicted = take(m, at);
		w = NULL;
	}
	if (w) {
		if (end <= w->start + w->len) {
			w->refs++;
			w->used = ++m->tick;
		} else {
			w = NULL;
		}
		goto out;
	}
	if (m->broken || (m->n == m->cap && !(evicted = take_lru(m))))
		goto out;
	w = calloc(1, sizeof(*w));
	if (!w)
		goto out;
	*w = (struct kv_segwin){ .seg = loc->seg, .start = start, .fd = -1, .refs = 1 };
	m->v[m->n++] = w;
	pthread_mutex_unlock(&m->lock);
	if (evicted) {
		unmap(m, evicted);
		evicted = NULL;
	}
	rc = map_window(m, w, &map);
	pthread_mutex_lock(&m->lock);
	w->map = map;
	find(m, loc->seg, start, &at); /* ours, refs 1: nobody took it out */
	if (rc || end > w->start + w->len) {
		if (rc == -ENOMEM && !m->broken) {
			m->broken = 1;
			kv_warn("gpu: cannot page-lock a window of segment %08x; loads go through "
				"buffers",
				loc->seg);
		}
		take(m, at);
		gone[ngone++ % 8] = w; /* at most 7 from reap: room for this one */
		w = NULL;
	} else {
		m->bytes += w->len;
		m->maps++;
		w->used = ++m->tick;
	}
	pthread_cond_broadcast(&m->mapped);
out:
	if (!w)
		m->misses++;
	pthread_mutex_unlock(&m->lock);
	if (evicted)
		unmap(m, evicted);
	for (size_t i = 0; i < ngone; i++)
		unmap(m, gone[i]);
	*out = w;
	return w ? w->map + (loc->off - w->start) : NULL;
}

void kv_segmap_put(struct kv_segmap *m, struct kv_segwin *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&m->lock);
	w->refs--;
	pthread_mutex_unlock(&m->lock);
}

void kv_segmap_stats(struct kv_segmap *m, struct kv_segmap_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	s->bytes = m->bytes;
	s->windows = m->n;
	s->maps = m->maps;
	s->misses = m->misses;
	pthread_mutex_unlock(&m->lock);
}
