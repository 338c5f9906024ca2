/* SPDX-License-Identifier: Apache-2.0 */
/* The data path of regular files: chunk map, write buffers, compression
 * jobs, truncates, publishing, open and close (reads: read.c). See
 * fs_int.h for the structures and lock order. */
#include "fs_int.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "grow.h"
#include "log.h"
#include "meta.h"

/* Buffered chunks an open file may hold beyond those being compressed. */
#define KV_FILE_BUFFERED 4

struct kv_cjob {
	struct kv_fs *fs;
	struct kv_inode *in;
	uint64_t idx;
	const uint8_t *data;
	uint32_t len;
};

static uint32_t inflight_max(const struct kv_fs *fs) { return 2 * (uint32_t)fs->cfg.workers; }

/* ---- the write-buffer budget (wbuf=) ----
 * Each open file may buffer a few chunks (KV_FILE_BUFFERED), but files are
 * many: all of them together hold at most wbuf bytes of buffers. A writer
 * above the budget has the buffered chunks of the files that buffered
 * first compressed and stored (published at their next close, like any
 * spilled chunk), and waits for that: like the kernel's dirty-page
 * throttling, the writer that asks for memory pays for it. */

/* How long a writer waits at most for buffers to come back: buffers whose
 * compression failed (ENOSPC) stay until their file's close. */
#define KV_WB_WAIT_MS 10
#define KV_WB_WAITS 200

void kv_file_wb_init(struct kv_fs *fs)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&fs->wb_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->wb_cond, &ca);
	pthread_condattr_destroy(&ca);
}

void kv_file_wb_fini(struct kv_fs *fs)
{
	pthread_mutex_destroy(&fs->wb_lock);
	pthread_cond_destroy(&fs->wb_cond);
}

static uint64_t wb_max(const struct kv_fs *fs)
{
	uint64_t n = fs->cfg.wbuf / fs->cfg.chunk;

	return n ? n : 1;
}

static int wb_over(struct kv_fs *fs)
{
	return __atomic_load_n(&fs->wb_n, __ATOMIC_RELAXED) >= wb_max(fs);
}

/* in took (up) or gave back a chunk buffer. Locked (kv_inode.lock). */
static void wb_count(struct kv_fs *fs, struct kv_inode *in, int up)
{
	KV_ASSERT_HELD(&in->lock);
	if (up)
		in->nbuf++;
	else
		in->nbuf--;
	pthread_mutex_lock(&fs->wb_lock);
	__atomic_store_n(&fs->wb_n, up ? fs->wb_n + 1 : fs->wb_n - 1, __ATOMIC_RELAXED);
	if (in->nbuf && !in->wb_listed) {
		in->wb_prev = fs->wb_tail;
		in->wb_next = NULL;
		*(fs->wb_tail ? &fs->wb_tail->wb_next : &fs->wb_head) = in;
		fs->wb_tail = in;
		in->wb_listed = 1;
	} else if (!in->nbuf && in->wb_listed) {
		*(in->wb_prev ? &in->wb_prev->wb_next : &fs->wb_head) = in->wb_next;
		*(in->wb_next ? &in->wb_next->wb_prev : &fs->wb_tail) = in->wb_prev;
		in->wb_listed = 0;
	}
	if (!up)
		pthread_cond_broadcast(&fs->wb_cond);
	pthread_mutex_unlock(&fs->wb_lock);
}

static int submit(struct kv_fs *fs, struct kv_inode *in, uint64_t idx, int here);

/* Hand every idle buffered chunk of ino to the workers; how many. */
static int wb_flush(struct kv_fs *fs, uint64_t ino)
{
	struct kv_inode *in = kv_fs_hold(fs, ino);
	struct kv_centry *e;
	uint64_t i = 0;
	int n = 0;

	if (!in)
		return 0;
	pthread_mutex_lock(&in->lock);
	each_entry(in, i, e)
		if (e->buf && !e->inflight && !submit(fs, in, i, 0))
			n++;
	pthread_mutex_unlock(&in->lock);
	kv_fs_release(fs, in);
	return n;
}

/* Before a write by self: bring the buffers of all files under the budget.
 * No lock held. */
static void wb_throttle(struct kv_fs *fs, uint64_t self)
{
	struct timespec until;

	if (!wb_over(fs))
		return; /* the common case: no lock taken on the write path */
	pthread_mutex_lock(&fs->wb_lock);
	for (int waits = 0; fs->wb_n >= wb_max(fs) && waits < KV_WB_WAITS; waits++) {
		struct kv_inode *v = fs->wb_head;
		uint64_t ino = 0;
		while (v && v->ino == self)
			v = v->wb_next;
		if (v) {
			/* Next time the next one: to the tail. */
			ino = v->ino;
			if (v != fs->wb_tail) {
				*(v->wb_prev ? &v->wb_prev->wb_next : &fs->wb_head) = v->wb_next;
				v->wb_next->wb_prev = v->wb_prev;
				v->wb_prev = fs->wb_tail;
				v->wb_next = NULL;
				fs->wb_tail->wb_next = v;
				fs->wb_tail = v;
			}
		}
		pthread_mutex_unlock(&fs->wb_lock);
		if (ino)
			wb_flush(fs, ino);
		pthread_mutex_lock(&fs->wb_lock);
		if (fs->wb_n < wb_max(fs))
			break;
		kv_deadline(&until, KV_WB_WAIT_MS);
		pthread_cond_timedwait(&fs->wb_cond, &fs->wb_lock, &until);
	}
	pthread_mutex_unlock(&fs->wb_lock);
}

/* ---- chunk map and records ---- */

static int load_chunk(void *arg, const struct kv_chunk *c)
{
	struct kv_inode *in = arg;
	struct kv_centry *e = kv_cmap_add(&in->map, c->idx);

	if (!e)
		return -ENOMEM;
	e->loc = c->loc;
	e->raw = c->raw;
	e->codec = c->codec;
	e->stored = e->published = 1;
	return 0;
}

int kv_file_attach(struct kv_fs *fs, struct kv_inode *in)
{
	int rc;

	KV_ASSERT_HELD(&in->lock);

	if (!S_ISREG(in->attr.mode) || in->users++)
		return 0;
	rc = kv_index_file_chunks(fs->ix, in->ino, load_chunk, in);
	if (rc) {
		if (rc != -ENOENT) /* ENOENT: evicted meanwhile */
			kv_err("inode %" PRIu64 ": cannot load chunk list: %s", in->ino,
			       strerror(-rc));
		in->users--;
		kv_cmap_clear(&in->map);
	}
	return rc;
}

static void free_garbage(struct kv_fs *fs, struct kv_inode *in)
{
	for (size_t i = 0; i < in->ngarbage; i++)
		kv_fs_free_loc(fs, &in->garbage[i]);
	in->ngarbage = 0;
}

int kv_file_detach(struct kv_fs *fs, struct kv_inode *in)
{
	struct kv_centry *e;
	uint64_t i = 0;
	int rc = 0;

	KV_ASSERT_HELD(&in->lock);

	if (!S_ISREG(in->attr.mode) || !in->users)
		return 0;
	if (in->users == 1)
		rc = kv_file_publish(fs, in, 0);
	if (--in->users)
		return rc;
	/* Records the failed publish would have referenced are lost; free them
	 * so that their space comes back. */
	each_entry(in, i, e) {
		if (e->buf) {
			kv_buf_put(fs->bufs, e->buf);
			wb_count(fs, in, 0);
		}
		if (e->stored && !e->published)
			kv_fs_free_loc(fs, &e->loc);
	}
	if (rc) {
		struct kv_attr a;
		kv_err("inode %" PRIu64 ": changes lost: %s", in->ino, strerror(-rc));
		/* The file is what was last published: size and stored bytes too. */
		if (!kv_index_getattr(fs->ix, in->ino, &a)) {
			in->attr.size = a.size;
			in->attr.stored = a.stored;
			in->attr.mtime = a.mtime;
			in->attr.ctime = a.ctime;
		}
		/* Superseded records stay: the index still names them. */
		in->ngarbage = 0;
	} else {
		free_garbage(fs, in);
	}
	kv_cmap_clear(&in->map);
	in->keep = UINT64_MAX;
	in->meta_dirty = 0;
	return rc;
}

/* A record is no longer the chunk's content. Published ones stay until
 * the index stops naming them. Locked (kv_inode.lock). */
static int retire(struct kv_fs *fs, struct kv_inode *in, struct kv_centry *e)
{
	KV_ASSERT_HELD(&in->lock);
	if (!e->stored)
		return 0;
	in->attr.stored -= e->loc.len;
	e->stored = 0;
	if (!e->published) {
		kv_fs_free_loc(fs, &e->loc);
		return 0;
	}
	e->published = 0;
	if (kv_grow(&in->garbage, &in->garbage_cap, in->ngarbage + 1, sizeof(*in->garbage)))
		return -ENOMEM;
	in->garbage[in->ngarbage++] = e->loc;
	return 0;
}

static void compress_job(void *arg)
{
	struct kv_cjob *j = arg;
	struct kv_fs *fs = j->fs;
	struct kv_inode *in = j->in;
	struct kv_codec_params p = { fs->cfg.codec, fs->cfg.level, fs->cfg.shuffle };
	struct kv_codec_ctx *cc = kv_codec_tls(fs->cfg.chunk);
	struct kv_encoded enc;
	struct kv_loc loc;
	struct kv_centry *e;
	enum kv_filter filter = KV_FILTER_PROBE;
	int rc = cc ? 0 : -ENOMEM;

	/* The layers of a KV cache are uniform: the filter shuffle=auto picks
	 * for one chunk of a file holds for the next ones, sampled again now
	 * and then. */
	if (__atomic_fetch_add(&in->encodes, 1, __ATOMIC_RELAXED) % KV_FILTER_EVERY)
		filter = __atomic_load_n(&in->filter, __ATOMIC_RELAXED);
	if (!rc) {
		rc = kv_codec_encode_hinted(cc, &p, j->data, j->len, &filter, &enc);
		__atomic_store_n(&in->filter, filter, __ATOMIC_RELAXED);
	}

	/* The exact check of the cap: what this record adds. */
	if (!rc)
		rc = kv_policy_admit(fs->pol, KV_REC_HDR + (uint64_t)enc.len);
	if (!rc)
		rc = kv_store_append(fs->st, in->ino, j->idx, &enc, j->len, &loc);
	pthread_mutex_lock(&in->lock);
	e = kv_cmap_get(&in->map, j->idx); /* kept: truncates wait for inflight entries */
	if (!rc && (rc = retire(fs, in, e)))
		kv_fs_free_loc(fs, &loc);
	if (!rc) {
		e->loc = loc;
		e->raw = j->len;
		e->codec = enc.codec;
		e->stored = 1;
		e->changed = 1;
		in->attr.stored += loc.len;
		in->meta_dirty = 1;
		/* The raw bytes are exactly what a read of the record yields. */
		kv_tier_release(fs->tier, kv_tier_put(fs->tier, &loc, e->buf, j->len));
		e->buf = NULL;
		e->fill = 0;
		wb_count(fs, in, 0);
	} else {
		/* The bytes stay buffered: the next flush, fsync or spill tries
		 * again, and no publish covers them until one succeeds. */
		if (!in->error)
			in->error = rc;
		in->fails++;
		in->fail_rc = rc;
		if (rc != -ENOSPC)
			kv_err("inode %" PRIu64 " chunk %" PRIu64 ": %s", in->ino, j->idx,
			       strerror(-rc));
	}
	e->inflight = 0;
	in->inflight--;
	pthread_cond_broadcast(&in->idle);
	pthread_mutex_unlock(&in->lock);
	free(j);
}

/* Hand chunk idx's buffer to a worker, or compress it in this thread when
 * here is set (the caller waits for it and nothing else: no hand-over).
 * Locked (kv_inode.lock); with here, the lock is dropped meanwhile. */
static int submit(struct kv_fs *fs, struct kv_inode *in, uint64_t idx, int here)
{
	struct kv_centry *e = kv_cmap_get(&in->map, idx);
	uint64_t start = kv_chunk_start(fs, idx);
	struct kv_cjob *j;
	uint32_t len;

	KV_ASSERT_HELD(&in->lock);

	if (start >= in->attr.size) {
		kv_buf_put(fs->bufs, e->buf);
		e->buf = NULL;
		e->fill = 0;
		wb_count(fs, in, 0);
		return 0;
	}
	len = (uint32_t)(in->attr.size - start < fs->cfg.chunk ? in->attr.size - start
							       : fs->cfg.chunk);
	if (e->fill < len)
		memset(e->buf + e->fill, 0, len - e->fill);
	e->fill = len;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct kv_cjob){ fs, in, idx, e->buf, len };
	e->inflight = 1;
	in->inflight++;
	if (here) {
		pthread_mutex_unlock(&in->lock);
		compress_job(j);
		pthread_mutex_lock(&in->lock);
		return 0;
	}
	if (kv_pool_submit(fs->pool, compress_job, j)) {
		e->inflight = 0;
		in->inflight--;
		free(j);
		return -ENOMEM;
	}
	return 0;
}

static void wait_entry(struct kv_inode *in, uint64_t idx)
{
	struct kv_centry *e;

	while ((e = kv_cmap_get(&in->map, idx)) && e->inflight)
		pthread_cond_wait(&in->idle, &in->lock);
}

/* Read and decode a chunk's record into a new tier entry. A record that
 * fails its checks is quarantined when vouch is set: the caller holds the
 * inode's lock, so loc is the chunk's record now. A caller that loaded
 * without the lock decides itself (kv_file_read_ex): a record freed
 * meanwhile, by an overwrite, truncate or eviction, is not damage. */
struct kv_tier_ent *kv_file_load(struct kv_fs *fs, uint64_t ino, uint64_t idx,
				 const struct kv_loc *loc, uint32_t raw, int vouch, int *err)
{
	struct kv_tier_ent *t;
	void *buf = kv_buf_get(fs->bufs);

	if (!buf) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = kv_fs_quarantined(fs, loc) ? -EIO : kv_store_read(fs->st, loc, ino, idx, buf, raw);
	if (*err) {
		if (*err == -EIO && vouch)
			kv_fs_quarantine(fs, ino, idx, loc);
		kv_buf_put(fs->bufs, buf);
		return NULL;
	}
	t = kv_tier_put(fs->tier, loc, buf, raw);
	if (!t)
		*err = -ENOMEM;
	return t;
}

/* The decoded content of a stored chunk, from the tier or the store. */
static struct kv_tier_ent *fetch(struct kv_fs *fs, uint64_t ino, uint64_t idx,
				 const struct kv_loc *loc, uint32_t raw, int *err)
{
	struct kv_tier_ent *t = kv_tier_get(fs->tier, loc);

	return t ? t : kv_file_load(fs, ino, idx, loc, raw, 1, err);
}

/* Give chunk idx a buffer holding its current content up to fill.
 * whole: the caller overwrites the chunk's whole live range anyway. Locked (kv_inode.lock). */
static int buffer(struct kv_fs *fs, struct kv_inode *in, uint64_t idx, int whole)
{
	struct kv_centry *e;
	struct kv_tier_ent *t;
	int rc = 0;

	KV_ASSERT_HELD(&in->lock);

	wait_entry(in, idx);
	e = kv_cmap_add(&in->map, idx);
	if (!e)
		return -ENOMEM;
	if (e->buf)
		return 0;
	e->buf = kv_buf_get(fs->bufs);
	if (!e->buf)
		return -ENOMEM;
	e->fill = 0;
	wb_count(fs, in, 1);
	if (!e->stored || whole)
		return 0;
	t = fetch(fs, in->ino, idx, &e->loc, e->raw, &rc);
	if (!t) {
		/* No empty buffer is left behind: reads would see zeros there,
		 * and a publish would store them. */
		kv_buf_put(fs->bufs, e->buf);
		e->buf = NULL;
		wb_count(fs, in, 0);
		return rc;
	}
	memcpy(e->buf, kv_tier_data(t), e->raw);
	e->fill = e->raw;
	kv_tier_release(fs->tier, t);
	return 0;
}

/* Too many buffered chunks, in this file or in all (wbuf=): compress the
 * lowest ones. Locked (kv_inode.lock). */
static int spill(struct kv_fs *fs, struct kv_inode *in, uint64_t except)
{
	uint32_t keep = wb_over(fs) ? 0 : KV_FILE_BUFFERED;
	struct kv_centry *e;
	uint64_t i = 0;
	int rc = 0;

	KV_ASSERT_HELD(&in->lock);

	for (; !rc && in->nbuf - in->inflight > keep && (e = kv_cmap_next(&in->map, &i)); i++)
		if (i != except && e->buf && !e->inflight)
			rc = submit(fs, in, i, 0);
	while (in->inflight > inflight_max(fs))
		pthread_cond_wait(&in->idle, &in->lock);
	return rc;
}

struct kv_inode *kv_file_inode(struct kv_fs *fs, uint64_t ino, int *rc)
{
	struct kv_inode *in = kv_fs_inode(fs, ino, rc);

	if (in && !S_ISREG(in->attr.mode)) {
		*rc = S_ISDIR(in->attr.mode) ? -EISDIR : -EINVAL;
		return NULL;
	}
	return in;
}

ssize_t kv_file_write(struct kv_fs *fs, uint64_t ino, const void *buf, size_t size, off_t off)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);
	const uint8_t *src = buf;
	uint64_t pos = (uint64_t)off, end = pos + size;

	if (!in)
		return rc;
	if (off < 0 || end < pos || end > KV_FILE_MAX)
		return -EFBIG;
	/* Room is made before the data is taken: a write past the cap evicts
	 * other contexts now, or fails. Each chunk touched costs a record. */
	rc = kv_policy_admit(fs->pol, size + KV_REC_HDR * (size ? kv_chunk_of(fs, end - 1) -
									   kv_chunk_of(fs, pos) + 1
								: 0));
	if (rc)
		return rc;
	kv_stat_add(&fs->stats.written_bytes, size);
	wb_throttle(fs, ino);
	pthread_mutex_lock(&in->lock);
	rc = in->error;
	in->error = 0;
	while (!rc && pos < end) {
		uint64_t idx = kv_chunk_of(fs, pos), cs = kv_chunk_start(fs, idx);
		uint32_t a = (uint32_t)(pos - cs);
		uint32_t n = (uint32_t)(end - pos < fs->cfg.chunk - a ? end - pos
								      : fs->cfg.chunk - a);
		uint64_t live = in->attr.size > cs ? in->attr.size - cs : 0;
		struct kv_centry *e;

		if (live > fs->cfg.chunk)
			live = fs->cfg.chunk;
		rc = buffer(fs, in, idx, a == 0 && n >= live);
		if (rc)
			break;
		e = kv_cmap_get(&in->map, idx);
		if (a > e->fill)
			memset(e->buf + e->fill, 0, a - e->fill);
		memcpy(e->buf + a, src, n);
		if (a + n > e->fill)
			e->fill = a + n;
		src += n;
		pos += n;
		if (pos > in->attr.size)
			in->attr.size = pos;
		if (a + n == fs->cfg.chunk)
			rc = submit(fs, in, idx, 0);
		if (!rc)
			rc = spill(fs, in, idx);
	}
	if (pos > (uint64_t)off) {
		in->attr.mtime = in->attr.ctime = kv_now_ns();
		in->meta_dirty = 1;
	}
	pthread_mutex_unlock(&in->lock);
	if (pos > (uint64_t)off)
		return (ssize_t)(pos - (uint64_t)off);
	return rc;
}

ssize_t kv_file_write_chunk(struct kv_fs *fs, uint64_t ino, uint64_t idx, void *buf, uint32_t len)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);
	uint64_t cs = kv_chunk_start(fs, idx);
	struct kv_centry *e;

	if (in && (len > fs->cfg.chunk || cs + len > KV_FILE_MAX))
		rc = -EINVAL;
	if (in && !rc)
		rc = kv_policy_admit(fs->pol, len + KV_REC_HDR);
	if (!in || rc) {
		kv_buf_put(fs->bufs, buf);
		return rc;
	}
	kv_stat_add(&fs->stats.written_bytes, len);
	wb_throttle(fs, ino);
	pthread_mutex_lock(&in->lock);
	rc = in->error;
	in->error = 0;
	wait_entry(in, idx);
	if (!rc && len < fs->cfg.chunk && cs + len < in->attr.size)
		rc = -EINVAL; /* would drop bytes of the chunk past len */
	if (!rc && !(e = kv_cmap_add(&in->map, idx)))
		rc = -ENOMEM;
	if (rc) {
		pthread_mutex_unlock(&in->lock);
		kv_buf_put(fs->bufs, buf);
		return rc;
	}
	/* The record the chunk has is retired when this buffer is stored. */
	if (e->buf)
		kv_buf_put(fs->bufs, e->buf);
	else
		wb_count(fs, in, 1);
	e->buf = buf;
	e->fill = len;
	if (cs + len > in->attr.size)
		in->attr.size = cs + len;
	in->attr.mtime = in->attr.ctime = kv_now_ns();
	in->meta_dirty = 1;
	if (len == fs->cfg.chunk)
		rc = submit(fs, in, idx, 0);
	if (!rc)
		rc = spill(fs, in, idx);
	pthread_mutex_unlock(&in->lock);
	return rc ? rc : (ssize_t)len;
}

int kv_file_truncate(struct kv_fs *fs, struct kv_inode *in, uint64_t size)
{
	uint64_t first = (size + fs->cfg.chunk - 1) / fs->cfg.chunk;
	uint32_t tail = (uint32_t)(size % fs->cfg.chunk);
	uint64_t idx = size / fs->cfg.chunk, i = first;
	struct kv_centry *e;
	int rc = 0;

	KV_ASSERT_HELD(&in->lock);

	if (size > KV_FILE_MAX)
		return -EFBIG;
	each_entry(in, i, e) {
		wait_entry(in, i); /* the lock is dropped: look the entry up again */
		if (!(e = kv_cmap_get(&in->map, i)))
			continue; /* its leaf went with another truncate meanwhile */
		if (e->buf) {
			kv_buf_put(fs->bufs, e->buf);
			wb_count(fs, in, 0);
		}
		rc = retire(fs, in, e);
		memset(e, 0, sizeof(*e));
		if (rc)
			return rc;
	}
	kv_cmap_trim(&in->map, first);
	if (first < in->keep)
		in->keep = first;
	e = kv_cmap_get(&in->map, idx);
	if (tail && size < in->attr.size && e && (e->stored || e->buf)) {
		rc = buffer(fs, in, idx, 0);
		if (rc)
			return rc;
		e = kv_cmap_get(&in->map, idx);
		if (e->fill > tail)
			e->fill = tail;
	}
	in->attr.size = size;
	in->attr.mtime = in->attr.ctime = kv_now_ns();
	in->meta_dirty = 1;
	in->truncs++;
	return 0;
}

/* Append the inode record of in as snap publishes it: names, xattrs and
 * policy settings from the index, attributes from snap, chunks from the
 * map. Locked (kv_inode.lock, kv_fs.irec_lock). */
static int inode_record(struct kv_fs *fs, struct kv_inode *in, const struct kv_attr *snap,
			struct kv_loc *loc)
{
	struct kv_meta m;
	struct kv_loc cur;
	struct kv_centry *e;
	uint64_t i = 0;
	int rc;

	KV_ASSERT_HELD(&in->lock);
	KV_ASSERT_HELD(&fs->irec_lock);

	/* Every change before this point is in the state read next. */
	kv_fs_irec_writing(fs, in->ino);
	rc = kv_index_meta(fs->ix, in->ino, 0, &m, &cur);
	if (rc) {
		kv_fs_irec_failed(in->ino, rc);
		return rc;
	}
	m.attr.size = snap->size;
	m.attr.stored = snap->stored;
	m.attr.mtime = snap->mtime;
	m.attr.ctime = snap->ctime;
	m.nchunks = 0;
	for (; !rc && (e = kv_cmap_next(&in->map, &i)); i++) {
		if (e->stored)
			rc = kv_meta_add_chunk(&m,
					       &(struct kv_chunk){ i, e->loc, e->raw, e->codec });
	}
	if (!rc)
		rc = kv_fs_write_irec(fs, &m, loc);
	kv_meta_free(&m);
	if (rc)
		kv_fs_irec_failed(in->ino, rc);
	return rc;
}

int kv_file_publish(struct kv_fs *fs, struct kv_inode *in, int durable)
{
	struct kv_loc rec, old;
	struct kv_chunk *c = NULL;
	struct kv_centry *e;
	struct kv_attr snap;
	uint64_t keep, size, truncs, i;
	size_t n = 0, nc = 0;
	uint32_t fails;
	int rc = 0, here;

	KV_ASSERT_HELD(&in->lock);

again:
	/* The size published is the file's size now: every byte below it is
	 * in a buffer submitted next or in a record. Writers may go on while
	 * the records are made (the lock is dropped below); a size they reach
	 * is published next time, never one that covers bytes not yet stored. */
	size = in->attr.size;
	keep = in->keep;
	truncs = in->truncs;
	fails = in->fails;
	/* A single chunk to store and none on its way (a small file, the tail
	 * of a large one written in order) is compressed here. */
	for (i = 0; n < 2 && (e = kv_cmap_next(&in->map, &i)); i++)
		n += e->buf && !e->inflight;
	here = n == 1 && !in->inflight;
	n = 0;
	for (i = 0; !rc && (e = kv_cmap_next(&in->map, &i)); i++) {
		if (e->buf && !e->inflight) {
			rc = submit(fs, in, i, here);
			here = 0;
		}
	}
	while (in->inflight)
		pthread_cond_wait(&in->idle, &in->lock);
	if (!rc && (in->keep != keep || in->truncs != truncs))
		goto again; /* truncated meanwhile: publish that instead */
	snap = in->attr;
	snap.size = size;
	/* A store that failed meanwhile left bytes below size in a buffer. Its
	 * error may have gone to a write() meanwhile (in->error is reported
	 * once): the failure itself is what counts here. */
	if (!rc && in->fails != fails)
		rc = in->fail_rc;
	if (!rc)
		rc = in->error;
	in->error = 0;
	if (rc)
		return rc;
	i = 0;
	each_entry(in, i, e)
		nc += e->changed;
	if (!nc && !in->meta_dirty && in->keep == UINT64_MAX)
		return durable ? kv_store_sync(fs->st) : 0;
	if (!(c = malloc((nc + 1) * sizeof(*c))))
		return -ENOMEM;
	i = 0;
	each_entry(in, i, e)
		if (e->changed)
			c[n++] = (struct kv_chunk){ i, e->loc, e->raw, e->codec };
	pthread_mutex_lock(&fs->irec_lock);
	/* The inode record of the state published, named in the same commit. */
	if (!inode_record(fs, in, &snap, &rec))
		c[n++] = (struct kv_chunk){ KV_REC_IDX_INODE, rec, 0, 0 };
	if (durable)
		rc = kv_store_sync(fs->st);
	if (!rc)
		rc = kv_index_publish(fs->ix, &snap, keep, c, n, durable, &old);
	if (rc && n && c[n - 1].idx == KV_REC_IDX_INODE)
		kv_fs_free_irec(fs, &rec);
	else if (!rc && old.len && n && c[n - 1].idx == KV_REC_IDX_INODE)
		kv_fs_free_irec(fs, &old);
	pthread_mutex_unlock(&fs->irec_lock);
	free(c);
	if (rc) {
		kv_err("inode %" PRIu64 ": publish failed: %s", in->ino, strerror(-rc));
		return rc;
	}
	i = 0;
	each_entry(in, i, e) {
		if (e->changed)
			e->published = 1;
		e->changed = 0;
	}
	free_garbage(fs, in);
	in->keep = UINT64_MAX;
	in->meta_dirty = in->attr.size != size;
	return 0;
}

int kv_file_open(struct kv_fs *fs, uint64_t ino, int trunc)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);
	uint64_t ctx;

	if (!in)
		return rc;
	if (in->gone)
		return -ENOENT;
	ctx = kv_fs_ctx_of(fs, in, NULL);
	pthread_mutex_lock(&fs->itab);
	if (!in->nopen++)
		in->open_ctx = ctx;
	ctx = in->open_ctx;
	pthread_mutex_unlock(&fs->itab);
	/* An open context is never evicted; one being evicted cannot open. */
	if (ctx)
		rc = kv_policy_open(fs->pol, ctx);
	if (!rc) {
		pthread_mutex_lock(&in->lock);
		rc = kv_file_attach(fs, in);
		if (!rc && trunc && in->attr.size) {
			rc = kv_file_truncate(fs, in, 0);
			if (rc)
				kv_file_detach(fs, in);
		}
		pthread_mutex_unlock(&in->lock);
		if (rc && ctx)
			kv_policy_close(fs->pol, ctx);
	}
	if (rc) {
		pthread_mutex_lock(&fs->itab);
		in->nopen--;
		pthread_mutex_unlock(&fs->itab);
	}
	return rc;
}

static int publish_ino(struct kv_fs *fs, uint64_t ino, int durable)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);

	if (!in)
		return rc;
	pthread_mutex_lock(&in->lock);
	rc = in->users ? kv_file_publish(fs, in, durable) : 0;
	pthread_mutex_unlock(&in->lock);
	return rc;
}

int kv_file_flush(struct kv_fs *fs, uint64_t ino) { return publish_ino(fs, ino, 0); }
int kv_file_fsync(struct kv_fs *fs, uint64_t ino) { return publish_ino(fs, ino, 1); }

int kv_file_release(struct kv_fs *fs, uint64_t ino)
{
	int rc = 0;
	struct kv_inode *in = kv_file_inode(fs, ino, &rc);
	uint64_t ctx;
	int gone;

	if (!in)
		return rc;
	pthread_mutex_lock(&in->lock);
	rc = kv_file_detach(fs, in);
	pthread_mutex_unlock(&in->lock);
	kv_bufs_trim(fs->bufs);
	pthread_mutex_lock(&fs->itab);
	in->nopen--;
	gone = in->nopen == 0 && in->nlookup == 0;
	ctx = in->open_ctx;
	pthread_mutex_unlock(&fs->itab);
	if (ctx)
		kv_policy_close(fs->pol, ctx);
	if (gone)
		kv_fs_forget(fs, ino, 0);
	return rc;
}
