/* SPDX-License-Identifier: Apache-2.0 */
/* kv_fast: GPU_READ / GPU_WRITE requests. See fastpath.h. */
#include "fastpath.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "clock.h"
#include "fs_int.h"
#include "gpu.h"
#include "log.h"
#include "segmap.h"

struct fjob {
	struct fjob *next;
	uint64_t ino;
	unsigned mode;
	uint32_t pid;
	struct kvfs_gpu_io *io;
	kv_fast_done_fn done;
	void *arg;
};

struct kv_fast {
	struct kv_fs *fs;
	struct kv_gpu *g;
	struct kv_segmap *segmap; /* raw chunks copied from the page cache */
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct fjob *head, *tail;
	struct rd *free_rd;
	int nthreads, idle, queued, stopping;
	pthread_t th[KV_FAST_THREADS];
	atomic_uint_least64_t requests, errors, read_bytes, write_bytes;
	atomic_uint_least64_t load_wait_ns, copy_wait_ns, load_ns, loads, direct;
};

static void rd_free_all(struct kv_fast *f);

static void slab_cb(void *arg, void *p, size_t len) { kv_gpu_register(arg, p, len); }
static int pin_cb(void *arg, void *p, size_t len) { return kv_gpu_pin_ro(arg, p, len); }
static void unpin_cb(void *arg, void *p, size_t len) { kv_gpu_unpin(arg, p, len); }

struct kv_fast *kv_fast_new(struct kv_fs *fs, struct kv_gpu *g)
{
	struct kv_fast *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->fs = fs;
	f->g = g;
	if (fs->cfg.gpu_pin) {
		struct kv_segmap_pin pin = { pin_cb, unpin_cb, g };
		f->segmap = kv_segmap_new(fs->st, fs->cfg.gpu_pin, &pin);
		if (!f->segmap) {
			free(f);
			return NULL;
		}
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->work, NULL);
	/* Chunk buffers (the DRAM tier among them) and the zero chunk are
	 * page-locked once the backend starts, so copies leave from them. */
	kv_bufs_on_slab(fs->bufs, slab_cb, g);
	kv_gpu_register(g, fs->zeros, fs->cfg.chunk);
	return f;
}

void kv_fast_free(struct kv_fast *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stopping = 1;
	pthread_cond_broadcast(&f->work);
	pthread_mutex_unlock(&f->lock);
	for (int i = 0; i < f->nthreads; i++)
		pthread_join(f->th[i], NULL);
	kv_bufs_on_slab(f->fs->bufs, NULL, NULL);
	rd_free_all(f);
	kv_segmap_free(f->segmap);
	pthread_cond_destroy(&f->work);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* kv_fs_gauges_fn: the fast path's and its backend's figures. */
static void gauges(void *arg, struct kv_gauges *g)
{
	struct kv_fast *f = arg;
	struct kv_fast_stats fst;
	struct kv_gpu_stats gst;

	kv_fast_stats(f, &fst);
	kv_gpu_stats(f->g, &gst);
	g->gpu_requests = fst.requests;
	g->gpu_errors = fst.errors;
	g->gpu_read_bytes = fst.read_bytes;
	g->gpu_write_bytes = fst.write_bytes;
	g->gpu_mappings = gst.mappings;
	g->gpu_ipc_opens = gst.opens;
	g->gpu_pinned_bytes = gst.registered;
	g->gpu_load_wait_ns = fst.load_wait_ns;
	g->gpu_copy_wait_ns = fst.copy_wait_ns;
	g->gpu_load_ns = fst.load_ns;
	g->gpu_loads = fst.loads;
	g->gpu_direct = fst.direct;
	g->gpu_window_bytes = fst.pinned_windows;
}

int kv_fast_start(struct kv_fs *fs, struct kv_fast **out)
{
	struct kv_gpu *g = kv_gpu_new(fs->cfg.gpu);

	*out = NULL;
	if (!g)
		return -ENOMEM;
	kv_gpu_set_shared(g, fs->cfg.allow_other);
	*out = kv_fast_new(fs, g);
	if (!*out) {
		kv_gpu_free(g);
		return -ENOMEM;
	}
	kv_fs_set_gauges(fs, gauges, *out);
	return 0;
}

struct kv_gpu *kv_fast_gpu(struct kv_fast *f) { return f->g; }

void kv_fast_stop(struct kv_fast *f)
{
	struct kv_gpu *g;

	if (!f)
		return;
	kv_fs_set_gauges(f->fs, NULL, NULL);
	g = f->g;
	kv_fast_free(f);
	kv_gpu_free(g);
}

int kv_fast_query(struct kv_fast *f, struct kvfs_query *q)
{
	unsigned maj = 0, min = 0, pat = 0;

	if (q->abi_version != KVFS_ABI_VERSION || q->struct_size != sizeof(*q))
		return -EINVAL;
	sscanf(KVFS_VERSION, "%u.%u.%u", &maj, &min, &pat);
	memset(q, 0, sizeof(*q));
	q->abi_version = KVFS_ABI_VERSION;
	q->struct_size = sizeof(*q);
	q->kvfs_version = maj << 16 | min << 8 | pat;
	q->max_segs = KVFS_GPU_MAX_SEGS;
	q->chunk_size = f->fs->cfg.chunk;
	if (kv_gpu_start(f->g)) {
		snprintf(q->backend_name, sizeof(q->backend_name), "none");
		return 0;
	}
	q->backend = kv_gpu_vendor(f->g);
	snprintf(q->backend_name, sizeof(q->backend_name), "%s", kv_gpu_name(f->g));
	q->ndevices = (uint32_t)kv_gpu_ndevices(f->g);
	for (uint32_t i = 0; i < q->ndevices; i++)
		kv_gpu_uuid(f->g, (int)i, q->device_uuid[i]);
	return 0;
}

static int fail(struct kvfs_gpu_io *io, int rc, uint32_t detail, uint32_t seg)
{
	io->error = rc;
	io->detail = detail;
	io->error_seg = seg;
	return rc;
}

int kv_fast_cmd(unsigned cmd, size_t in_size, size_t out_size)
{
	unsigned nr = _IOC_NR(cmd);

	if (_IOC_TYPE(cmd) != KVFS_IOC_MAGIC)
		return -ENOTTY;
	if (nr == _IOC_NR(KVFS_IOC_QUERY))
		return cmd == KVFS_IOC_QUERY && in_size == sizeof(struct kvfs_query) &&
				       out_size == sizeof(struct kvfs_query)
			       ? KV_FAST_QUERY
			       : -EINVAL;
	if (nr != _IOC_NR(KVFS_IOC_GPU_READ) && nr != _IOC_NR(KVFS_IOC_GPU_WRITE))
		return -ENOTTY;
	/* The same command number with another size is an ABI mismatch. */
	if ((cmd != KVFS_IOC_GPU_READ && cmd != KVFS_IOC_GPU_WRITE) ||
	    in_size != sizeof(struct kvfs_gpu_io) || out_size != sizeof(struct kvfs_gpu_io))
		return -EINVAL;
	return cmd == KVFS_IOC_GPU_READ ? KV_FAST_READ : KV_FAST_WRITE_CMD;
}

int kv_fast_validate(struct kvfs_gpu_io *io, unsigned mode, uint64_t file_size)
{
	int write = mode & KV_FAST_WRITE;

	if (io->abi_version != KVFS_ABI_VERSION)
		return fail(io, -EINVAL, KVFS_E_VERSION, 0);
	if (io->struct_size != sizeof(*io))
		return fail(io, -EINVAL, KVFS_E_SIZE, 0);
	if (io->flags || !io->nseg || io->nseg > KVFS_GPU_MAX_SEGS ||
	    (io->vendor != KVFS_GPU_HIP && io->vendor != KVFS_GPU_CUDA))
		return fail(io, -EINVAL, KVFS_E_ARG, 0);
	if (!(mode & (write ? KV_FAST_CAN_WRITE : KV_FAST_CAN_READ)))
		return fail(io, -EBADF, KVFS_E_ACCESS, 0);
	for (uint32_t i = 0; i < io->nseg; i++) {
		const struct kvfs_gpu_seg *s = &io->seg[i];
		uint64_t fend = s->file_off + s->len;
		if (fend < s->file_off || fend > (uint64_t)INT64_MAX || (!write && fend > file_size))
			return fail(io, -EINVAL, KVFS_E_FILE_RANGE, i);
		if (s->dev_off + s->len < s->dev_off)
			return fail(io, -EFAULT, KVFS_E_DEV_RANGE, i);
	}
	return 0;
}

/* The request's own checks, then the backend, the device and the
 * allocation. On success *dev is the device index. */
static int check(struct kv_fast *f, uint64_t ino, unsigned mode, struct kvfs_gpu_io *io, int *dev)
{
	struct kv_attr a;
	int rc = kv_fs_getattr(f->fs, ino, &a);

	if (rc)
		return fail(io, rc, KVFS_E_IO, 0);
	rc = kv_fast_validate(io, mode, a.size);
	if (rc)
		return rc;
	if (kv_gpu_start(f->g))
		return fail(io, -ENODEV, KVFS_E_NO_BACKEND, 0);
	if (io->vendor != kv_gpu_vendor(f->g))
		return fail(io, -ENODEV, KVFS_E_VENDOR, 0);
	*dev = kv_gpu_device(f->g, io->device_uuid);
	if (*dev < 0)
		return fail(io, -ENODEV, KVFS_E_DEVICE, 0);
	return 0;
}

/* Walks a request's segments in pieces that never cross a chunk (reads)
 * or exceed step bytes (writes). */
struct cursor {
	const struct kvfs_gpu_io *io;
	uint64_t step;
	int align;
	uint32_t seg;
	uint64_t done; /* bytes of seg already handed out */
};

struct piece_pos {
	uint32_t seg;
	uint64_t off, dev;
	size_t len;
};

static int next_piece(struct cursor *c, struct piece_pos *p)
{
	while (c->seg < c->io->nseg && c->done == c->io->seg[c->seg].len) {
		c->seg++;
		c->done = 0;
	}
	if (c->seg == c->io->nseg)
		return 0;
	{
		const struct kvfs_gpu_seg *s = &c->io->seg[c->seg];
		uint64_t off = s->file_off + c->done, left = s->len - c->done;
		uint64_t n = c->align ? c->step - off % c->step : c->step;
		if (n > left)
			n = left;
		*p = (struct piece_pos){ c->seg, off, s->dev_off + c->done, (size_t)n };
		c->done += n;
	}
	return 1;
}

/* A piece is done: bytes_done counts the segments done whole, in order
 * (partial holds the bytes of the current one so far). */
static void count_piece(struct kvfs_gpu_io *io, const struct piece_pos *p, uint64_t *partial)
{
	const struct kvfs_gpu_seg *s = &io->seg[p->seg];

	*partial += p->len;
	if (p->off + p->len == s->file_off + s->len) {
		io->bytes_done += *partial;
		*partial = 0;
	}
}

/* ---- GPU_READ ---------------------------------------------------------- */

enum { P_FREE, P_LOADING, P_LOADED, P_COPYING };
#define NPIECE KV_GPU_NEV

struct rd;
struct piece {
	struct rd *r;
	struct piece_pos pos;
	struct kv_readv rv;
	struct kv_segwin *win; /* rv points into this window (load_direct) */
	int state, rc;
	unsigned streams; /* bit s: the piece's copies used stream s */
};

struct rd {
	struct rd *next; /* on the free list */
	struct kv_fast *f;
	struct kv_fs *fs;
	uint64_t ino;
	uint64_t load_wait, copy_wait; /* ns the request waited for each */
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct piece p[NPIECE];
};

/* Request states are kept for reuse: a 2 MiB request should not pay for
 * allocating and clearing one. */
static struct rd *rd_get(struct kv_fast *f)
{
	struct rd *r;

	pthread_mutex_lock(&f->lock);
	r = f->free_rd;
	if (r)
		f->free_rd = r->next;
	pthread_mutex_unlock(&f->lock);
	if (r)
		return r;
	r = calloc(1, sizeof(*r));
	if (r) {
		pthread_mutex_init(&r->lock, NULL);
		pthread_cond_init(&r->cv, NULL);
	}
	return r;
}

static void rd_put(struct kv_fast *f, struct rd *r)
{
	r->load_wait = r->copy_wait = 0;
	pthread_mutex_lock(&f->lock);
	r->next = f->free_rd;
	f->free_rd = r;
	pthread_mutex_unlock(&f->lock);
}

static void rd_free_all(struct kv_fast *f)
{
	while (f->free_rd) {
		struct rd *r = f->free_rd;
		f->free_rd = r->next;
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->lock);
		free(r);
	}
}

/* A piece (within one chunk) whose chunk is stored raw in a page-locked
 * window of its segment: the record is checked there and the piece copied
 * from there, with no read into a buffer first. Its length, or -EAGAIN
 * when the usual load must do (no window, compressed, not stored yet, or
 * the check failed: freed meanwhile or damaged, which the usual load
 * tells apart). */
static int load_direct(struct rd *r, struct piece *p)
{
	struct kv_fs *fs = r->fs;
	uint64_t idx = p->pos.off / fs->cfg.chunk, a = p->pos.off % fs->cfg.chunk, k;
	struct kv_codec_ctx *cc;
	const uint8_t *rec;
	struct kv_loc loc;
	uint32_t raw;
	uint8_t codec;

	if (!r->f->segmap || kv_file_chunk_rec(fs, r->ino, idx, &loc, &raw, &codec) ||
	    loc.len != KV_REC_HDR + raw || !(cc = kv_codec_tls(fs->cfg.chunk)))
		return -EAGAIN;
	rec = kv_segmap_get(r->f->segmap, &loc, &p->win);
	if (!rec)
		return -EAGAIN;
	/* A raw payload is checked in place (dst is the payload: nothing is
	 * written to the read-only mapping). */
	if (kv_rec_verify(cc, rec, rec + KV_REC_HDR, raw, loc.seg, r->ino, idx,
			  (void *)(uintptr_t)(rec + KV_REC_HDR), raw)) {
		kv_segmap_put(r->f->segmap, p->win);
		p->win = NULL;
		return -EAGAIN;
	}
	memset(&p->rv, 0, sizeof(p->rv));
	k = a < raw ? raw - a : 0;
	if (k > p->pos.len)
		k = p->pos.len;
	if (k)
		p->rv.iov[p->rv.n++] = (struct iovec){ (void *)(uintptr_t)(rec + KV_REC_HDR + a),
						       k };
	if (p->pos.len > k)
		p->rv.iov[p->rv.n++] = (struct iovec){ fs->zeros, p->pos.len - k };
	p->rv.bytes = p->pos.len;
	atomic_fetch_add(&r->f->direct, 1);
	return (int)p->pos.len;
}

static void load_job(void *arg)
{
	struct piece *p = arg;
	struct rd *r = p->r;
	uint64_t t0 = kv_mono_ns();
	int rc = load_direct(r, p);

	if (rc == -EAGAIN)
		rc = kv_file_read_ex(r->fs, r->ino, (off_t)p->pos.off, p->pos.len, &p->rv,
				     KV_READ_OWN_COPY | KV_READ_NO_PREFETCH);

	atomic_fetch_add(&r->f->load_ns, kv_mono_ns() - t0);
	atomic_fetch_add(&r->f->loads, 1);

	pthread_mutex_lock(&r->lock);
	p->rc = rc;
	p->state = P_LOADED;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->lock);
}

static void wait_loaded(struct rd *r, struct piece *p)
{
	uint64_t t0 = 0;

	pthread_mutex_lock(&r->lock);
	if (p->state == P_LOADING)
		t0 = kv_mono_ns();
	while (p->state == P_LOADING)
		pthread_cond_wait(&r->cv, &r->lock);
	pthread_mutex_unlock(&r->lock);
	if (t0)
		r->load_wait += kv_mono_ns() - t0;
}

/* Let a copying piece finish and give its chunks back. */
static int retire(struct rd *r, struct kv_gpu_lane *l, int i)
{
	int rc = 0;

	if (r->p[i].state == P_COPYING) {
		uint64_t t0 = kv_mono_ns();
		for (int s = 0; s < KV_GPU_NSTREAM; s++)
			if ((r->p[i].streams & 1u << s) && kv_gpu_wait(l, i, s))
				rc = -EIO;
		r->copy_wait += kv_mono_ns() - t0;
	}
	if (r->p[i].state != P_FREE)
		kv_file_read_done(r->fs, &r->p[i].rv);
	kv_segmap_put(r->f->segmap, r->p[i].win);
	r->p[i].win = NULL;
	r->p[i].state = P_FREE;
	return rc;
}

static int gpu_read(struct kv_fast *f, uint64_t ino, struct kv_gpu_lane *l, uint8_t *base,
		    struct kvfs_gpu_io *io)
{
	struct kv_fs *fs = f->fs;
	struct rd *r = rd_get(f);
	struct cursor c = { io, fs->cfg.chunk, 1, 0, 0 };
	struct piece_pos pos;
	uint64_t issued = 0, consumed = 0, partial = 0;
	unsigned turn = 0;
	int more = 1, rc = 0;

	if (!r)
		return fail(io, -ENOMEM, KVFS_E_IO, 0);
	r->f = f;
	r->fs = fs;
	r->ino = ino;
	for (;;) {
		struct piece *p;
		/* Keep up to KV_FAST_AHEAD chunks loading on the worker pool. */
		while (more && !rc && issued - consumed < KV_FAST_AHEAD) {
			struct cursor save = c;
			int i = (int)(issued % NPIECE);
			p = &r->p[i];
			if (retire(r, l, i))
				rc = fail(io, -EIO, KVFS_E_COPY, p->pos.seg);
			/* Chunks in the DRAM tier are taken here, several at a
			 * time; the others are loaded and decoded on the worker
			 * pool, one chunk per job, in parallel. */
			c.step = fs->cfg.chunk * KV_FAST_BATCH;
			if (!(more = next_piece(&c, &pos)))
				break;
			p->r = r;
			p->pos = pos;
			p->streams = 0;
			issued++;
			p->rc = kv_file_read_ex(fs, ino, (off_t)pos.off, pos.len, &p->rv,
						KV_READ_OWN_COPY | KV_READ_TIER_ONLY);
			if (p->rc != -EAGAIN) {
				p->state = P_LOADED;
				continue;
			}
			c = save;
			c.step = fs->cfg.chunk;
			next_piece(&c, &p->pos);
			p->state = P_LOADING;
			if (kv_pool_submit(fs->pool, load_job, p))
				load_job(p);
		}
		if (rc || consumed == issued)
			break;
		p = &r->p[consumed % NPIECE];
		wait_loaded(r, p);
		if (p->rc < 0 || (size_t)p->rc != p->pos.len) {
			/* A short read: the file shrank since the request was checked. */
			rc = p->rc < 0 ? fail(io, p->rc, KVFS_E_IO, p->pos.seg)
				       : fail(io, -EINVAL, KVFS_E_FILE_RANGE, p->pos.seg);
			if (p->rc < 0)
				kv_err("gpu read: inode %llu at %llu: %s", (unsigned long long)ino,
				       (unsigned long long)p->pos.off, strerror(-p->rc));
			break;
		}
		{
			/* Copies take turns on the lane's streams, so one's set-up
			 * overlaps another's transfer; host ranges that happen to be
			 * adjacent go as one copy. */
			uint8_t *dst = base + p->pos.dev;
			for (int k = 0; k < p->rv.n && !rc;) {
				uint8_t *src = p->rv.iov[k].iov_base;
				size_t n = p->rv.iov[k].iov_len;
				int s = (int)(turn++ % KV_GPU_NSTREAM);
				for (k++;
				     k < p->rv.n && (uint8_t *)p->rv.iov[k].iov_base == src + n; k++)
					n += p->rv.iov[k].iov_len;
				if (kv_gpu_h2d(l, s, dst, src, n))
					rc = fail(io, -EIO, KVFS_E_COPY, p->pos.seg);
				p->streams |= 1u << s;
				dst += n;
			}
			for (int s = 0; s < KV_GPU_NSTREAM && !rc; s++)
				if ((p->streams & 1u << s) &&
				    kv_gpu_mark(l, (int)(consumed % NPIECE), s))
					rc = fail(io, -EIO, KVFS_E_COPY, p->pos.seg);
		}
		p->state = P_COPYING;
		consumed++;
		if (!rc)
			count_piece(io, &p->pos, &partial);
	}
	/* Drain: jobs still loading point into r. */
	for (int i = 0; i < NPIECE; i++) {
		wait_loaded(r, &r->p[i]);
		if (retire(r, l, i) && !rc)
			rc = fail(io, -EIO, KVFS_E_COPY, r->p[i].pos.seg);
	}
	/* A failed copy may have been any of those in flight. */
	if (rc && io->detail == KVFS_E_COPY)
		io->bytes_done = 0;
	if (rc == -EIO && io->detail == KVFS_E_COPY)
		kv_err("gpu read: inode %llu: copy to the device failed: %s",
		       (unsigned long long)ino, kv_gpu_plugin(f->g)->last_error());
	atomic_fetch_add(&f->load_wait_ns, r->load_wait);
	atomic_fetch_add(&f->copy_wait_ns, r->copy_wait);
	rd_put(f, r);
	return rc;
}

/* ---- GPU_WRITE --------------------------------------------------------- */

/* Whole chunks are copied from the device straight into chunk buffers
 * (page-locked), up to KV_FAST_AHEAD of them in flight on the lane's
 * streams, and handed to the file as they land, in order
 * (kv_file_write_chunk): compression and the store's appends run on the
 * worker pool meanwhile, with no copy through a staging buffer. A piece
 * that is part of a chunk goes through a staging buffer and
 * kv_file_write, once the chunks before it have landed (segments may
 * overlap: the later one wins, as with write()). */
struct wslot {
	struct piece_pos pos;
	void *buf;
	int s;
};

static int write_staged(struct kv_fast *f, uint64_t ino, struct kv_gpu_lane *l, uint8_t *base,
			struct kvfs_gpu_io *io, const struct piece_pos *p)
{
	uint8_t *stage = kv_gpu_staging(l, 0);
	ssize_t n;

	if (!stage) {
		kv_err("gpu write: cannot allocate pinned staging memory");
		return fail(io, -ENOMEM, KVFS_E_IO, p->seg);
	}
	/* Pieces never cross a chunk, so a staging buffer holds one. */
	if (kv_gpu_d2h(l, 0, stage, base + p->dev, p->len) || kv_gpu_mark(l, 0, 0) ||
	    kv_gpu_wait(l, 0, 0))
		return fail(io, -EIO, KVFS_E_COPY, p->seg);
	n = kv_file_write(f->fs, ino, stage, p->len, (off_t)p->off);
	if (n < 0 || (size_t)n != p->len)
		return fail(io, n < 0 ? (int)n : -EIO, KVFS_E_IO, p->seg);
	return 0;
}

/* The oldest chunk in flight has landed (or failed): hand it over. */
static int write_land(struct kv_fast *f, uint64_t ino, struct kv_gpu_lane *l,
		      struct kvfs_gpu_io *io, const struct wslot *w, uint64_t k, int rc)
{
	struct kv_fs *fs = f->fs;
	ssize_t n;

	if (kv_gpu_wait(l, (int)(k % KV_GPU_NEV), w->s) && !rc)
		rc = fail(io, -EIO, KVFS_E_COPY, w->pos.seg);
	if (rc) {
		kv_buf_put(fs->bufs, w->buf);
		return rc;
	}
	n = kv_file_write_chunk(fs, ino, w->pos.off / fs->cfg.chunk, w->buf, (uint32_t)w->pos.len);
	return n < 0 ? fail(io, (int)n, KVFS_E_IO, w->pos.seg) : 0;
}

static int gpu_write(struct kv_fast *f, uint64_t ino, struct kv_gpu_lane *l, uint8_t *base,
		     struct kvfs_gpu_io *io)
{
	struct kv_fs *fs = f->fs;
	struct cursor c = { io, fs->cfg.chunk, 1, 0, 0 };
	struct wslot w[KV_FAST_AHEAD];
	uint64_t issued = 0, landed = 0, partial = 0;
	struct piece_pos pos;
	int more = 1, rc = 0;

	for (;;) {
		if (!rc && more && issued - landed < KV_FAST_AHEAD) {
			struct cursor save = c;
			struct wslot *x = &w[issued % KV_FAST_AHEAD];
			if (!(more = next_piece(&c, &pos)))
				continue;
			/* A segment that cannot fit is refused before any of it is
			 * written: a chunk left half written would fail at its
			 * close and take the segments before it along. */
			if (pos.off == io->seg[pos.seg].file_off &&
			    (rc = kv_policy_admit(
				     fs->pol,
				     io->seg[pos.seg].len +
					     KV_REC_HDR *
						     (io->seg[pos.seg].len / fs->cfg.chunk + 2)))) {
				rc = fail(io, rc, KVFS_E_IO, pos.seg);
				continue;
			}
			if (pos.len != fs->cfg.chunk) {
				if (landed < issued)
					c = save; /* the chunks before it land first */
				else if (!(rc = write_staged(f, ino, l, base, io, &pos)))
					count_piece(io, &pos, &partial);
				if (landed == issued)
					continue;
			} else {
				*x = (struct wslot){ pos, kv_buf_get(fs->bufs),
						     (int)(issued % KV_GPU_NSTREAM) };
				if (!x->buf) {
					rc = fail(io, -ENOMEM, KVFS_E_IO, pos.seg);
					continue;
				}
				if (kv_gpu_d2h(l, x->s, x->buf, base + pos.dev, pos.len) ||
				    kv_gpu_mark(l, (int)(issued % KV_GPU_NEV), x->s))
					rc = fail(io, -EIO, KVFS_E_COPY, pos.seg);
				issued++;
				continue;
			}
		}
		if (landed == issued)
			break;
		rc = write_land(f, ino, l, io, &w[landed % KV_FAST_AHEAD], landed, rc);
		if (!rc)
			count_piece(io, &w[landed % KV_FAST_AHEAD].pos, &partial);
		landed++;
	}
	if (kv_gpu_sync(l) && !rc)
		rc = fail(io, -EIO, KVFS_E_COPY, 0);
	if (rc && io->detail == KVFS_E_COPY)
		kv_err("gpu write: inode %llu: copy from the device failed: %s",
		       (unsigned long long)ino, kv_gpu_plugin(f->g)->last_error());
	else if (rc)
		kv_err("gpu write: inode %llu: %s", (unsigned long long)ino, strerror(-rc));
	return rc;
}

int kv_fast_run(struct kv_fast *f, uint64_t ino, unsigned mode, uint32_t pid, struct kvfs_gpu_io *io)
{
	char err[256] = "";
	struct kv_gpu_map *m = NULL;
	struct kv_gpu_lane *l = NULL;
	uint64_t total = 0;
	int dev = 0, rc;

	atomic_fetch_add(&f->requests, 1);
	io->bytes_done = 0;
	io->error = 0;
	io->error_seg = 0;
	io->detail = KVFS_E_OK;
	rc = check(f, ino, mode, io, &dev);
	if (rc)
		goto out;
	rc = kv_gpu_map_get(f->g, dev, io->handle, pid, &m, err, sizeof(err));
	if (rc) {
		kv_err("gpu: inode %llu: cannot open the IPC handle of pid %u: %s",
		       (unsigned long long)ino, pid, err[0] ? err : strerror(-rc));
		rc = fail(io, rc == -ENOMEM ? rc : -EBADF, KVFS_E_HANDLE, 0);
		goto out;
	}
	/* The allocation's size is the runtime's, never the caller's. */
	for (uint32_t i = 0; i < io->nseg; i++) {
		total += io->seg[i].len;
		if (io->seg[i].dev_off + io->seg[i].len > kv_gpu_map_size(m)) {
			rc = fail(io, -EFAULT, KVFS_E_DEV_RANGE, i);
			goto out;
		}
	}
	l = kv_gpu_lane_get(f->g, dev);
	if (!l) {
		rc = fail(io, -ENOMEM, KVFS_E_COPY, 0);
		goto out;
	}
	/* An open of our own: the client's may be released meanwhile if it dies. */
	rc = kv_file_open(f->fs, ino, 0);
	if (rc) {
		rc = fail(io, rc, KVFS_E_IO, 0);
		goto out;
	}
	if (mode & KV_FAST_WRITE)
		rc = gpu_write(f, ino, l, kv_gpu_map_base(m), io);
	else
		rc = gpu_read(f, ino, l, kv_gpu_map_base(m), io);
	kv_file_release(f->fs, ino);
	if (!rc)
		atomic_fetch_add(mode & KV_FAST_WRITE ? &f->write_bytes : &f->read_bytes, total);
out:
	kv_gpu_lane_put(f->g, l);
	if (m)
		kv_gpu_map_put(f->g, m);
	if (rc)
		atomic_fetch_add(&f->errors, 1);
	return rc;
}

/* ---- request threads --------------------------------------------------- */

static void *fast_main(void *arg)
{
	struct kv_fast *f = arg;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct fjob *j;
		while (!f->head && !f->stopping)
			pthread_cond_wait(&f->work, &f->lock);
		if (!f->head)
			break;
		j = f->head;
		f->head = j->next;
		if (!f->head)
			f->tail = NULL;
		f->queued--;
		f->idle--;
		pthread_mutex_unlock(&f->lock);
		j->done(j->arg, kv_fast_run(f, j->ino, j->mode, j->pid, j->io), j->io);
		free(j);
		pthread_mutex_lock(&f->lock);
		f->idle++;
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int kv_fast_submit(struct kv_fast *f, uint64_t ino, unsigned mode, uint32_t pid,
		   struct kvfs_gpu_io *io, kv_fast_done_fn done, void *arg)
{
	struct fjob *j;
	uint64_t total = 0;

	/* A small read costs less than the hand-off to another thread. Writes
	 * never run inline: their completion drops the kernel's cached pages of
	 * the file, which waits for page locks that reads in flight hold until
	 * a FUSE thread answers them, so a FUSE thread must not be the one
	 * waiting. */
	for (uint32_t i = 0; i < io->nseg && i < KVFS_GPU_MAX_SEGS; i++)
		total += io->seg[i].len;
	if (!(mode & KV_FAST_WRITE) && total <= KV_FAST_INLINE) {
		done(arg, kv_fast_run(f, ino, mode, pid, io), io);
		return 0;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct fjob){ NULL, ino, mode, pid, io, done, arg };
	pthread_mutex_lock(&f->lock);
	if (f->tail)
		f->tail->next = j;
	else
		f->head = j;
	f->tail = j;
	f->queued++;
	/* One more thread while queued requests outnumber idle threads. */
	if (f->queued > f->idle && f->nthreads < KV_FAST_THREADS &&
	    !pthread_create(&f->th[f->nthreads], NULL, fast_main, f)) {
		f->nthreads++;
		f->idle++;
	}
	pthread_cond_signal(&f->work);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void kv_fast_stats(struct kv_fast *f, struct kv_fast_stats *s)
{
	s->requests = atomic_load(&f->requests);
	s->errors = atomic_load(&f->errors);
	s->read_bytes = atomic_load(&f->read_bytes);
	s->write_bytes = atomic_load(&f->write_bytes);
	s->load_wait_ns = atomic_load(&f->load_wait_ns);
	s->copy_wait_ns = atomic_load(&f->copy_wait_ns);
	s->load_ns = atomic_load(&f->load_ns);
	s->loads = atomic_load(&f->loads);
	s->direct = atomic_load(&f->direct);
	{
		struct kv_segmap_stats ss;
		kv_segmap_stats(f->segmap, &ss);
		s->pinned_windows = ss.bytes;
	}
}
