/* SPDX-License-Identifier: Apache-2.0 */
/* kv_cmap: see cmap.h. */
#include "cmap.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"

struct kv_cmap_leaf {
	uint64_t base; /* index of e[0], a multiple of KV_CMAP_LEAF */
	struct kv_centry e[KV_CMAP_LEAF];
};

/* The position of the first leaf whose base is >= base. */
static size_t lower(const struct kv_cmap *m, uint64_t base)
{
	size_t lo = 0, hi = m->n;

	/* Files are mostly written in order: try the last leaf first. */
	if (hi && m->leaf[hi - 1]->base < base)
		return hi;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->leaf[mid]->base < base)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static uint64_t base_of(uint64_t idx) { return idx & ~(uint64_t)(KV_CMAP_LEAF - 1); }

struct kv_centry *kv_cmap_get(const struct kv_cmap *m, uint64_t idx)
{
	uint64_t base = base_of(idx);
	size_t i = lower(m, base);

	if (i == m->n || m->leaf[i]->base != base)
		return NULL;
	return &m->leaf[i]->e[idx - base];
}

struct kv_centry *kv_cmap_add(struct kv_cmap *m, uint64_t idx)
{
	uint64_t base = base_of(idx);
	size_t i = lower(m, base);
	struct kv_cmap_leaf *l;

	if (i < m->n && m->leaf[i]->base == base)
		return &m->leaf[i]->e[idx - base];
	if (kv_grow(&m->leaf, &m->cap, m->n + 1, sizeof(*m->leaf)))
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->base = base;
	memmove(m->leaf + i + 1, m->leaf + i, (m->n - i) * sizeof(*m->leaf));
	m->leaf[i] = l;
	m->n++;
	return &l->e[idx - base];
}

struct kv_centry *kv_cmap_next(const struct kv_cmap *m, uint64_t *idx)
{
	size_t i = lower(m, base_of(*idx));

	if (i == m->n)
		return NULL;
	if (m->leaf[i]->base > *idx)
		*idx = m->leaf[i]->base;
	return &m->leaf[i]->e[*idx - m->leaf[i]->base];
}

static int leaf_empty(const struct kv_cmap_leaf *l)
{
	for (unsigned i = 0; i < KV_CMAP_LEAF; i++) {
		const struct kv_centry *e = &l->e[i];
		if (e->stored || e->published || e->changed || e->inflight || e->buf)
			return 0;
	}
	return 1;
}

void kv_cmap_trim(struct kv_cmap *m, uint64_t first)
{
	size_t i, k;

	if (first > UINT64_MAX - KV_CMAP_LEAF)
		return;
	/* A leaf an entry came back to meanwhile (the caller waited with the
	 * lock dropped, and a writer was quicker) stays. */
	i = k = lower(m, base_of(first + KV_CMAP_LEAF - 1));
	for (size_t j = i; j < m->n; j++) {
		if (leaf_empty(m->leaf[j]))
			free(m->leaf[j]);
		else
			m->leaf[k++] = m->leaf[j];
	}
	m->n = k;
}

void kv_cmap_clear(struct kv_cmap *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->leaf[i]);
	free(m->leaf);
	memset(m, 0, sizeof(*m));
}

size_t kv_cmap_bytes(const struct kv_cmap *m)
{
	return m->n * sizeof(struct kv_cmap_leaf) + m->cap * sizeof(*m->leaf);
}
