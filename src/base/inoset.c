/* SPDX-License-Identifier: Apache-2.0 */
/* kv_inoset: a kv_inomap of bare nodes, one malloc()ed per member. */
#include "inoset.h"

#include <errno.h>
#include <stdlib.h>

#define KV_INOSET_BUCKETS 64 /* at the first add */

int kv_inoset_has(const struct kv_inoset *s, uint64_t ino)
{
	return ino && kv_inomap_find(&s->m, ino);
}

int kv_inoset_add(struct kv_inoset *s, uint64_t ino)
{
	struct kv_inomap_node *node;

	if (!ino || kv_inoset_has(s, ino))
		return 0;
	if (!s->m.nbucket && kv_inomap_init(&s->m, KV_INOSET_BUCKETS))
		return -ENOMEM;
	node = malloc(sizeof(*node));
	if (!node)
		return -ENOMEM;
	kv_inomap_add(&s->m, node, ino);
	return 0;
}

int kv_inoset_del(struct kv_inoset *s, uint64_t ino)
{
	struct kv_inomap_node *node = ino ? kv_inomap_find(&s->m, ino) : NULL;

	if (!node)
		return 0;
	kv_inomap_del(&s->m, node);
	free(node);
	return 1;
}

uint64_t kv_inoset_next(const struct kv_inoset *s, uint64_t prev)
{
	const struct kv_inomap_node *node = NULL;

	if (prev && !(node = kv_inomap_find(&s->m, prev)))
		return 0;
	node = kv_inomap_next(&s->m, node);
	return node ? node->key : 0;
}

void kv_inoset_take(struct kv_inoset *s, struct kv_inoset *out)
{
	kv_inoset_free(out);
	kv_inomap_take(&s->m, &out->m);
}

void kv_inoset_free(struct kv_inoset *s)
{
	struct kv_inomap_node *node = kv_inomap_next(&s->m, NULL), *next;

	for (; node; node = next) {
		next = kv_inomap_next(&s->m, node);
		free(node);
	}
	kv_inomap_free(&s->m);
}
