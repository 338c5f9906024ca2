/* SPDX-License-Identifier: Apache-2.0 */
/* kv_inomap: chained buckets, a power of two of them, indexed by Fibonacci
 * hashing of the key. */
#include "inomap.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The top bits of the key times 2^64 / phi: dense keys (inode numbers) and
 * strided ones alike spread over the buckets. */
static size_t bucket_of(uint64_t key, size_t nbucket)
{
	unsigned bits = (unsigned)__builtin_ctzll(nbucket);

	return bits ? (size_t)((key * 0x9e3779b97f4a7c15ull) >> (64 - bits)) : 0;
}

int kv_inomap_init(struct kv_inomap *m, size_t nbucket)
{
	memset(m, 0, sizeof(*m));
	m->bucket = calloc(nbucket, sizeof(*m->bucket));
	if (!m->bucket)
		return -ENOMEM;
	m->nbucket = nbucket;
	return 0;
}

void kv_inomap_free(struct kv_inomap *m)
{
	free(m->bucket);
	memset(m, 0, sizeof(*m));
}

struct kv_inomap_node *kv_inomap_find(const struct kv_inomap *m, uint64_t key)
{
	struct kv_inomap_node *node;

	if (!m->nbucket)
		return NULL;
	node = m->bucket[bucket_of(key, m->nbucket)];
	while (node && node->key != key)
		node = node->next;
	return node;
}

/* Double the buckets; on failure keep them (longer chains). */
static void grow(struct kv_inomap *m)
{
	size_t n = m->nbucket * 2;
	struct kv_inomap_node **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < m->nbucket; i++)
		for (struct kv_inomap_node *node = m->bucket[i], *next; node; node = next) {
			size_t s = bucket_of(node->key, n);
			next = node->next;
			node->next = b[s];
			b[s] = node;
		}
	free(m->bucket);
	m->bucket = b;
	m->nbucket = n;
}

void kv_inomap_add(struct kv_inomap *m, struct kv_inomap_node *node, uint64_t key)
{
	size_t s;

	assert(m->nbucket);
	if (m->n >= m->nbucket)
		grow(m);
	s = bucket_of(key, m->nbucket);
	node->key = key;
	node->next = m->bucket[s];
	m->bucket[s] = node;
	m->n++;
}

int kv_inomap_del(struct kv_inomap *m, struct kv_inomap_node *node)
{
	struct kv_inomap_node **pp;

	if (!m->nbucket)
		return 0;
	pp = &m->bucket[bucket_of(node->key, m->nbucket)];
	while (*pp && *pp != node)
		pp = &(*pp)->next;
	if (!*pp)
		return 0;
	*pp = node->next;
	m->n--;
	return 1;
}

struct kv_inomap_node *kv_inomap_next(const struct kv_inomap *m, const struct kv_inomap_node *prev)
{
	size_t i = 0;

	if (prev) {
		if (prev->next)
			return prev->next;
		i = bucket_of(prev->key, m->nbucket) + 1;
	}
	for (; i < m->nbucket; i++)
		if (m->bucket[i])
			return m->bucket[i];
	return NULL;
}

void kv_inomap_take(struct kv_inomap *m, struct kv_inomap *out)
{
	kv_inomap_free(out);
	*out = *m;
	memset(m, 0, sizeof(*m));
}
