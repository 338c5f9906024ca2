/* SPDX-License-Identifier: Apache-2.0 */
/* Inode record payloads (docs/format.md, "Inode records"). */
#include "meta.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "grow.h"

#define FIXED 114 /* the smallest payload: fixed fields and four zero counts */
#define CHUNK_BYTES 29

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static uint8_t *room(struct wbuf *w, size_t n)
{
	if (w->err)
		return NULL;
	if (kv_grow(&w->p, &w->cap, w->len + n, 1)) {
		w->err = 1;
		return NULL;
	}
	w->len += n;
	return w->p + w->len - n;
}

static void put8(struct wbuf *w, uint8_t v)
{
	uint8_t *p = room(w, 1);
	if (p)
		*p = v;
}
static void put16(struct wbuf *w, uint16_t v)
{
	uint8_t *p = room(w, 2);
	if (p)
		kv_put16(p, v);
}
static void put32(struct wbuf *w, uint32_t v)
{
	uint8_t *p = room(w, 4);
	if (p)
		kv_put32(p, v);
}
static void put64(struct wbuf *w, uint64_t v)
{
	uint8_t *p = room(w, 8);
	if (p)
		kv_put64(p, v);
}
static void putb(struct wbuf *w, const void *v, size_t n)
{
	uint8_t *p = room(w, n);
	if (p && n)
		memcpy(p, v, n);
}

uint8_t *kv_meta_encode(const struct kv_meta *m, size_t *len)
{
	struct wbuf w = { 0 };
	const struct kv_attr *a = &m->attr;
	size_t tlen = m->target ? strlen(m->target) : 0;

	put16(&w, KV_META_VERSION);
	put16(&w, 0);
	put32(&w, m->flags);
	put64(&w, a->ino);
	put32(&w, a->mode);
	put32(&w, a->uid);
	put32(&w, a->gid);
	put32(&w, a->nlink);
	put64(&w, a->size);
	put64(&w, a->stored);
	put64(&w, a->rdev);
	put64(&w, (uint64_t)a->atime);
	put64(&w, (uint64_t)a->mtime);
	put64(&w, (uint64_t)a->ctime);
	put8(&w, m->pin);
	put8(&w, 0);
	put64(&w, (uint64_t)m->ttl);
	put64(&w, m->hwm);
	put32(&w, (uint32_t)m->nlinks);
	for (size_t i = 0; i < m->nlinks; i++) {
		put64(&w, m->links[i].parent);
		put16(&w, m->links[i].len);
		putb(&w, m->links[i].name, m->links[i].len);
	}
	put32(&w, (uint32_t)tlen);
	putb(&w, m->target, tlen);
	put32(&w, (uint32_t)m->nx);
	for (size_t i = 0; i < m->nx; i++) {
		size_t n = strlen(m->x[i].name);
		put16(&w, (uint16_t)n);
		putb(&w, m->x[i].name, n);
		put32(&w, m->x[i].len);
		putb(&w, m->x[i].value, m->x[i].len);
	}
	put32(&w, (uint32_t)m->nchunks);
	for (size_t i = 0; i < m->nchunks; i++) {
		const struct kv_chunk *c = &m->chunks[i];
		put64(&w, c->idx);
		put32(&w, c->loc.seg);
		put64(&w, c->loc.off);
		put32(&w, c->loc.len);
		put32(&w, c->raw);
		put8(&w, c->codec);
	}
	if (w.err) {
		free(w.p);
		return NULL;
	}
	*len = w.len;
	return w.p;
}

struct rbuf {
	const uint8_t *p;
	size_t len, pos;
	int bad;
};

static const uint8_t *take(struct rbuf *r, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = 1;
		return NULL;
	}
	r->pos += n;
	return r->p + r->pos - n;
}
static uint8_t get8(struct rbuf *r)
{
	const uint8_t *p = take(r, 1);
	return p ? *p : 0;
}
static uint16_t get16(struct rbuf *r)
{
	const uint8_t *p = take(r, 2);
	return p ? kv_get16(p) : 0;
}
static uint32_t get32(struct rbuf *r)
{
	const uint8_t *p = take(r, 4);
	return p ? kv_get32(p) : 0;
}
static uint64_t get64(struct rbuf *r)
{
	const uint8_t *p = take(r, 8);
	return p ? kv_get64(p) : 0;
}

/* A count of items of at least min bytes each that can still be in r. */
static size_t count(struct rbuf *r, size_t min)
{
	uint32_t n = get32(r);

	if (!r->bad && (uint64_t)n * min > r->len - r->pos)
		r->bad = 1;
	return r->bad ? 0 : n;
}

int kv_meta_decode(const uint8_t *p, size_t len, struct kv_meta *m)
{
	struct rbuf r = { p, len, 0, 0 };
	struct kv_attr *a = &m->attr;
	size_t n;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	if (len < FIXED || kv_get16(p) != KV_META_VERSION)
		return -EINVAL;
	r.pos = 4;
	m->flags = get32(&r);
	a->ino = get64(&r);
	a->mode = get32(&r);
	a->uid = get32(&r);
	a->gid = get32(&r);
	a->nlink = get32(&r);
	a->size = get64(&r);
	a->stored = get64(&r);
	a->rdev = get64(&r);
	a->atime = (int64_t)get64(&r);
	a->mtime = (int64_t)get64(&r);
	a->ctime = (int64_t)get64(&r);
	m->pin = get8(&r);
	get8(&r);
	m->ttl = (int64_t)get64(&r);
	m->hwm = get64(&r);
	n = count(&r, 10);
	for (size_t i = 0; !rc && !r.bad && i < n; i++) {
		uint64_t parent = get64(&r);
		uint16_t l = get16(&r);
		const uint8_t *name = take(&r, l);
		if (name && (l == 0 || l > 255 || memchr(name, 0, l) || memchr(name, '/', l)))
			r.bad = 1;
		if (!r.bad)
			rc = kv_meta_add_link(m, parent, (const char *)name, l);
	}
	n = get32(&r);
	if (!r.bad && n) {
		const uint8_t *t = take(&r, n);
		if (t && (n > 4095 || memchr(t, 0, n)))
			r.bad = 1;
		if (!r.bad && !(m->target = malloc(n + 1)))
			rc = -ENOMEM;
		if (!r.bad && !rc) {
			memcpy(m->target, t, n);
			m->target[n] = 0;
		}
	}
	n = count(&r, 6);
	for (size_t i = 0; !rc && !r.bad && i < n; i++) {
		uint16_t l = get16(&r);
		const uint8_t *name = take(&r, l);
		uint32_t vl;
		const uint8_t *v;
		char nm[256];
		if (name && (l == 0 || l > 255 || memchr(name, 0, l)))
			r.bad = 1;
		vl = get32(&r);
		v = take(&r, vl);
		if (r.bad)
			break;
		memcpy(nm, name, l);
		nm[l] = 0;
		rc = kv_meta_add_xattr(m, nm, v, vl);
	}
	n = count(&r, CHUNK_BYTES);
	for (size_t i = 0; !rc && !r.bad && i < n; i++) {
		struct kv_chunk c;
		c.idx = get64(&r);
		c.loc.seg = get32(&r);
		c.loc.off = get64(&r);
		c.loc.len = get32(&r);
		c.raw = get32(&r);
		c.codec = get8(&r);
		if (c.idx > (uint64_t)INT64_MAX || (i && c.idx <= m->chunks[i - 1].idx))
			r.bad = 1;
		if (!r.bad)
			rc = kv_meta_add_chunk(m, &c);
	}
	if (!rc && (r.bad || r.pos != len))
		rc = -EINVAL;
	if (rc)
		kv_meta_free(m);
	return rc;
}

void kv_meta_free(struct kv_meta *m)
{
	for (size_t i = 0; i < m->nx; i++)
		free(m->x[i].value);
	free(m->x);
	free(m->links);
	free(m->chunks);
	free(m->target);
	memset(m, 0, sizeof(*m));
}

int kv_meta_add_link(struct kv_meta *m, uint64_t parent, const char *name, size_t len)
{
	struct kv_meta_link *l;

	if (kv_grow(&m->links, &m->links_cap, m->nlinks + 1, sizeof(*m->links)))
		return -ENOMEM;
	l = &m->links[m->nlinks++];
	l->parent = parent;
	l->len = (uint16_t)(len < 255 ? len : 255);
	memcpy(l->name, name, l->len);
	l->name[l->len] = 0;
	return 0;
}

int kv_meta_add_xattr(struct kv_meta *m, const char *name, const void *value, uint32_t len)
{
	struct kv_meta_xattr *x;
	uint8_t *v;

	if (kv_grow(&m->x, &m->x_cap, m->nx + 1, sizeof(*m->x)))
		return -ENOMEM;
	v = malloc(len ? len : 1);
	if (!v)
		return -ENOMEM;
	x = &m->x[m->nx++];
	snprintf(x->name, sizeof(x->name), "%s", name);
	if (len)
		memcpy(v, value, len);
	x->value = v;
	x->len = len;
	return 0;
}

int kv_meta_add_chunk(struct kv_meta *m, const struct kv_chunk *c)
{
	if (kv_grow(&m->chunks, &m->chunks_cap, m->nchunks + 1, sizeof(*m->chunks)))
		return -ENOMEM;
	m->chunks[m->nchunks++] = *c;
	return 0;
}
