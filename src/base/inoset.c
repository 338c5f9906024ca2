/* kv_inoset: open addressing with linear probing; deletion shifts the run
 * back (no tombstones), so lookups stay short however many inodes pass. */
#include "inoset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t home(uint64_t ino, size_t cap)
{
	ino *= 0x9e3779b97f4a7c15ull; /* Fibonacci hashing: inode numbers are dense */
	return (size_t)(ino >> 32) & (cap - 1);
}

static void put(uint64_t *slot, size_t cap, uint64_t ino)
{
	size_t i = home(ino, cap);

	while (slot[i])
		i = (i + 1) & (cap - 1);
	slot[i] = ino;
}

static int grow(struct kv_inoset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	uint64_t *slot = calloc(cap, sizeof(*slot));

	if (!slot)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++)
		if (s->slot[i])
			put(slot, cap, s->slot[i]);
	free(s->slot);
	s->slot = slot;
	s->cap = cap;
	return 0;
}

static size_t find(const struct kv_inoset *s, uint64_t ino)
{
	size_t i = home(ino, s->cap);

	while (s->slot[i] && s->slot[i] != ino)
		i = (i + 1) & (s->cap - 1);
	return i;
}

int kv_inoset_has(const struct kv_inoset *s, uint64_t ino)
{
	return ino && s->cap && s->slot[find(s, ino)] == ino;
}

int kv_inoset_add(struct kv_inoset *s, uint64_t ino)
{
	if (!ino || kv_inoset_has(s, ino))
		return 0;
	/* At most half full. */
	if ((s->n + 1) * 2 > s->cap && grow(s))
		return -ENOMEM;
	put(s->slot, s->cap, ino);
	s->n++;
	return 0;
}

int kv_inoset_del(struct kv_inoset *s, uint64_t ino)
{
	size_t i, j, mask = s->cap - 1;

	if (!kv_inoset_has(s, ino))
		return 0;
	i = find(s, ino);
	s->slot[i] = 0;
	s->n--;
	/* Move back the members of the run after i that may no longer be
	 * reached from their home slot. */
	for (j = (i + 1) & mask; s->slot[j]; j = (j + 1) & mask) {
		size_t h = home(s->slot[j], s->cap);
		/* j's member stays where it is if its home lies cyclically in (i, j]. */
		if (i <= j ? (i < h && h <= j) : (i < h || h <= j))
			continue;
		s->slot[i] = s->slot[j];
		s->slot[j] = 0;
		i = j;
	}
	return 1;
}

void kv_inoset_take(struct kv_inoset *s, struct kv_inoset *out)
{
	kv_inoset_free(out);
	*out = *s;
	memset(s, 0, sizeof(*s));
}

void kv_inoset_free(struct kv_inoset *s)
{
	free(s->slot);
	memset(s, 0, sizeof(*s));
}
