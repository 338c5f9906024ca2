/* SPDX-License-Identifier: Apache-2.0 */
/* Reads of regular files: from the DRAM tier, the store and the buffers of
 * data not yet stored, as a vector the FUSE layer replies with; the
 * records a sequential reader needs next are prefetched. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"

/* How far ahead of a sequential reader records are prefetched. */
#define KV_FILE_READAHEAD (8u << 20)

/* Per-thread buffer for copies of buffered (not yet stored) data. */
static pthread_key_t copy_key;
static pthread_once_t copy_once = PTHREAD_ONCE_INIT;

static void copy_key_init(void) { pthread_key_create(&copy_key, free); }

static uint8_t *copy_buf(size_t need)
{
	struct cbuf {
		size_t cap;
		uint8_t data[];
	} * b;

	pthread_once(&copy_once, copy_key_init);
	b = pthread_getspecific(copy_key);
	if (!b || b->cap < need) {
		free(b);
		b = malloc(sizeof(*b) + need);
		pthread_setspecific(copy_key, b);
		if (!b)
			return NULL;
		b->cap = need;
	}
	return b->data;
}

static int add_iov(struct kv_readv *rv, const void *p, size_t n)
{
	if (rv->n == KV_READV_MAX)
		return -EIO;
	rv->iov[rv->n++] = (struct iovec){ (void *)p, n };
	rv->bytes += n;
	return 0;
}

/* Bytes [a, a+n) of a chunk whose first len bytes are data, the rest zero. */
static int add_part(struct kv_fs *fs, struct kv_readv *rv, const uint8_t *data, uint32_t len,
		    uint32_t a, uint32_t n)
{
	int rc = 0;

	if (a < len) {
		uint32_t k = len - a < n ? len - a : n;
		rc = add_iov(rv, data + a, k);
		a += k;
		n -= k;
	}
	if (!rc && n)
		rc = add_iov(rv, fs->zeros, n);
	return rc;
}

/* A sequential reader missed the tier at chunk idx: have the kernel read
 * the next records from the segments meanwhile. Locked (kv_inode.lock). */
static void prefetch(struct kv_fs *fs, struct kv_inode *in, uint64_t idx)
{
	uint64_t last = idx + KV_FILE_READAHEAD / fs->cfg.chunk;
	uint64_t j = in->ra_done > idx ? in->ra_done + 1 : idx + 1;
	struct kv_centry *e;

	KV_ASSERT_HELD(&in->lock);

	if (idx != in->ra_next && idx != 0)
		return;
	for (; j <= last && (e = kv_cmap_next(&in->map, &j)) && j <= last; j++)
		if (e->stored && !e->buf)
			kv_store_prefetch(fs->st, &e->loc);
	in->ra_done = last;
}

int kv_file_read(struct kv_fs *fs, uint64_t ino, off_t off, size_t size, struct kv_readv *rv)
{
	return kv_file_read_ex(fs, ino, off, size, rv, 0);
}

int kv_file_read_ex(struct kv_fs *fs, uint64_t ino, off_t off, size_t size, struct kv_readv *rv,
		    unsigned flags)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);
	uint64_t pos = (uint64_t)off, end;
	uint8_t *copy = NULL;
	size_t copied = 0;
	uint64_t ctx;

	int own = flags & KV_READ_OWN_COPY, tier_only = flags & KV_READ_TIER_ONLY;

	memset(rv, 0, sizeof(*rv));
	if (!in)
		return rc;
	pthread_mutex_lock(&in->lock);
	end = pos + size < in->attr.size ? pos + size : in->attr.size;
	while (!rc && pos < end) {
		uint64_t idx = kv_chunk_of(fs, pos);
		uint32_t a = (uint32_t)(pos - kv_chunk_start(fs, idx));
		uint32_t n = (uint32_t)(end - pos < fs->cfg.chunk - a ? end - pos
								      : fs->cfg.chunk - a);
		struct kv_centry *e = kv_cmap_get(&in->map, idx);

		if (e && e->buf) {
			/* Buffered bytes can change once the lock is dropped. */
			if (!copy && !(copy = own ? (rv->copy = malloc(size)) : copy_buf(size))) {
				rc = -ENOMEM;
				break;
			}
			if (a < e->fill)
				memcpy(copy + copied, e->buf + a, e->fill - a < n ? e->fill - a : n);
			if (a + n > e->fill)
				memset(copy + copied + (a < e->fill ? e->fill - a : 0), 0,
				       a + n - (a > e->fill ? a : e->fill));
			rc = add_iov(rv, copy + copied, n);
			copied += n;
		} else if (e && e->stored) {
			struct kv_loc loc = e->loc;
			uint32_t raw = e->raw;
			struct kv_tier_ent *t = kv_tier_lookup(fs->tier, &loc, !tier_only);
			if (!t && tier_only) {
				rc = -EAGAIN;
				break;
			}
			if (!t) {
				if (!(flags & KV_READ_NO_PREFETCH))
					prefetch(fs, in, idx);
				pthread_mutex_unlock(&in->lock);
				t = kv_file_load(fs, ino, idx, &loc, raw, 0, &rc);
				pthread_mutex_lock(&in->lock);
				e = kv_cmap_get(&in->map, idx);
				if (in->gone) {
					/* Evicted meanwhile: its records may be freed. */
					kv_tier_release(fs->tier, t);
					rc = -ENOENT;
					break;
				}
				if (!e || e->buf || !e->stored || e->loc.seg != loc.seg ||
				    e->loc.off != loc.off) {
					/* Rewritten meanwhile: read this chunk again. */
					kv_tier_release(fs->tier, t);
					rc = 0;
					end = (uint64_t)off + size < in->attr.size
						      ? (uint64_t)off + size
						      : in->attr.size;
					continue;
				}
				if (rc == -EIO)
					kv_fs_quarantine(fs, ino, idx, &loc);
				if (!t)
					break;
			}
			rv->refs[rv->nrefs++] = t;
			in->ra_next = idx + 1;
			rc = add_part(fs, rv, kv_tier_data(t), raw, a, n);
		} else {
			rc = add_iov(rv, fs->zeros, n);
		}
		pos += n;
	}
	pthread_mutex_unlock(&in->lock);
	if (rc) {
		kv_file_read_done(fs, rv);
		return rc;
	}
	kv_stat_add(&fs->stats.read_bytes, rv->bytes);
	ctx = __atomic_load_n(&in->open_ctx, __ATOMIC_RELAXED);
	if (ctx)
		kv_policy_read(fs->pol, ctx);
	return (int)rv->bytes;
}

int kv_file_chunk_rec(struct kv_fs *fs, uint64_t ino, uint64_t idx, struct kv_loc *loc,
		      uint32_t *raw, uint8_t *codec)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);
	struct kv_centry *e;

	if (!in)
		return rc;
	pthread_mutex_lock(&in->lock);
	e = kv_cmap_get(&in->map, idx);
	if (!e || e->buf || e->inflight || !e->stored || kv_fs_quarantined(fs, &e->loc)) {
		rc = -EAGAIN;
	} else {
		*loc = e->loc;
		*raw = e->raw;
		*codec = e->codec;
	}
	pthread_mutex_unlock(&in->lock);
	return rc;
}

void kv_file_read_done(struct kv_fs *fs, struct kv_readv *rv)
{
	for (int i = 0; i < rv->nrefs; i++)
		kv_tier_release(fs->tier, rv->refs[i]);
	rv->nrefs = 0;
	rv->n = 0;
	free(rv->copy);
	rv->copy = NULL;
}
