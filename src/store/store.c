/* SPDX-License-Identifier: Apache-2.0 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "clock.h"
#include "endian.h"
#include "lock.h"
#include "log.h"

/* What the header of a segment found at open says (segments made by
 * this run are KV_SEG_OURS). */
enum { KV_SEG_OURS = 0, KV_SEG_TORN, KV_SEG_DAMAGED, KV_SEG_FOREIGN };

struct kv_seg {
	int fd;        /* -1 when absent or not opened yet */
	int dirty;     /* appended to since the last sync */
	int hdr;       /* KV_SEG_*: whose records the index may judge */
	uint64_t live; /* bytes of live records */
};

/* Appends go to up to KV_STORE_LANES segments at once, one per lane
 * (kv_store_set_lanes): the kernel serialises buffered writes to one file
 * (the inode's lock), so a single active segment held every writer to one
 * thread's copy speed (about 3 GB/s on the GPU machines). An append takes
 * the first free lane, so a lone writer keeps to one segment. */
#define KV_STORE_LANES 8

struct kv_lane {
	pthread_mutex_t lock; /* held through an append's write */
	uint32_t seg;         /* segment receiving its appends, 0 = none yet */
	uint64_t tail;        /* next append offset there (under st->lock) */
};

/* Lock order: kv_lane.lock -> st->lock; st->lock is a leaf. */
struct kv_store {
	int dirfd;
	uint8_t id[16];
	size_t seg_size;
	size_t max_chunk;
	pthread_mutex_t lock;
	struct kv_seg *segs; /* indexed by segment id */
	uint32_t nsegs;      /* capacity of segs */
	uint32_t highest;    /* highest segment id in use */
	struct kv_lane lanes[KV_STORE_LANES];
	int nlanes;          /* lanes in use, 1..KV_STORE_LANES */
	uint64_t live;       /* live bytes in all segments */
	int held;            /* appends refused (kv_store_hold) */
	uint64_t epoch;      /* written into the headers of new segments */
	uint64_t epoch_seen; /* the highest in this store's segments at open */
};

static void seg_name(char *buf, size_t len, uint32_t seg)
{
	snprintf(buf, len, "%08" PRIx32 ".seg", seg);
}

static int seg_grow(struct kv_store *st, uint32_t seg)
{
	uint32_t n = st->nsegs ? st->nsegs : 16;
	struct kv_seg *s;

	if (seg < st->nsegs)
		return 0;
	/* No segment of this store has such a number: a damaged location. */
	if (seg > KV_SEG_ID_MAX)
		return -EIO;
	while (n <= seg)
		n *= 2;
	s = realloc(st->segs, n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (uint32_t i = st->nsegs; i < n; i++)
		s[i] = (struct kv_seg){ .fd = -1 };
	st->segs = s;
	st->nsegs = n;
	return 0;
}

/* The segment's fd, opened on first use; a missing segment is logged
 * unless the caller only frees space in it (nothing to give back).
 * Locked (kv_store.lock). */
static int seg_fd_open(struct kv_store *st, uint32_t seg, int quiet)
{
	char name[32];
	int fd;

	KV_ASSERT_HELD(&st->lock);

	if (seg < st->nsegs && st->segs[seg].fd >= 0)
		return st->segs[seg].fd;
	if (seg_grow(st, seg))
		return -ENOMEM;
	seg_name(name, sizeof(name), seg);
	fd = openat(st->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (!quiet || e != ENOENT)
			kv_err("segment %s: %s", name, strerror(e));
		return -e;
	}
	st->segs[seg].fd = fd;
	return fd;
}

static int seg_fd(struct kv_store *st, uint32_t seg) { return seg_fd_open(st, seg, 0); }

static void seg_header(const struct kv_store *st, uint32_t seg, uint8_t h[KV_SEG_HDR])
{
	memset(h, 0, KV_SEG_HDR);
	memcpy(h, KV_SEG_MAGIC, 8);
	kv_put32(h + 8, KV_SEG_VERSION);
	kv_put32(h + 12, seg);
	memcpy(h + 16, st->id, 16);
	kv_put64(h + 32, (uint64_t)kv_now_ns());
	kv_put32(h + 40, (uint32_t)st->max_chunk);
	kv_put64(h + 44, st->epoch);
	kv_put64(h + 56, XXH3_64bits(h, 56));
}

/* Does a lane append to seg? Locked (kv_store.lock). */
static int seg_active(const struct kv_store *st, uint32_t seg)
{
	KV_ASSERT_HELD((pthread_mutex_t *)&st->lock);
	for (int i = 0; i < KV_STORE_LANES; i++)
		if (st->lanes[i].seg == seg)
			return 1;
	return 0;
}

/* Start a new segment for lane ln after the highest existing one. Locked (kv_store.lock). */
static int seg_roll(struct kv_store *st, struct kv_lane *ln)
{
	uint32_t seg = st->highest + 1;
	uint8_t h[KV_SEG_HDR];
	char name[32];
	int fd;

	KV_ASSERT_HELD(&st->lock);

	if (seg > KV_SEG_ID_MAX)
		return -ENOSPC; /* every segment number used */
	if (seg_grow(st, seg))
		return -ENOMEM;
	seg_name(name, sizeof(name), seg);
	fd = openat(st->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		kv_err("creating segment %s: %s", name, strerror(errno));
		return -errno;
	}
	seg_header(st, seg, h);
	if (pwrite(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		int e = errno ? errno : EIO;
		kv_err("writing segment %s header: %s", name, strerror(e));
		close(fd);
		unlinkat(st->dirfd, name, 0);
		return -e;
	}
	/* A segment the lane left empty is dropped. */
	if (ln->seg && !st->segs[ln->seg].live && st->segs[ln->seg].fd >= 0) {
		char old[32];
		seg_name(old, sizeof(old), ln->seg);
		close(st->segs[ln->seg].fd);
		st->segs[ln->seg].fd = -1;
		unlinkat(st->dirfd, old, 0);
	}
	st->segs[seg] = (struct kv_seg){ .fd = fd };
	st->highest = seg;
	ln->seg = seg;
	ln->tail = KV_SEG_HDR;
	return 0;
}

/* Whose records segment name (id seg) holds, from its header. A segment
 * shorter than its header (a crash right after its creation) holds none. */
static int seg_check(struct kv_store *st, const char *name, uint32_t seg)
{
	uint8_t h[KV_SEG_HDR], id[16];
	uint32_t hseg, chunk;
	int fd = openat(st->dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, h, sizeof(h), 0) : -1;

	if (fd >= 0)
		close(fd);
	if (n >= 0 && n < (ssize_t)sizeof(h))
		return KV_SEG_TORN;
	if (n < 0 || kv_seg_header_read(h, &hseg, id, &chunk) || hseg != seg)
		return KV_SEG_DAMAGED;
	if (memcmp(id, st->id, 16))
		return KV_SEG_FOREIGN;
	if (kv_seg_header_epoch(h) > st->epoch_seen)
		st->epoch_seen = kv_seg_header_epoch(h);
	return KV_SEG_OURS;
}

/* Find the segments there are and what their headers say. */
static int scan_segments(struct kv_store *st)
{
	int fd = dup(st->dirfd), rc = 0;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while (!rc && (e = readdir(d))) {
		unsigned v;
		char tail[8];
		if (sscanf(e->d_name, "%8x.se%1s", &v, tail) != 2 || !v)
			continue;
		if (v > KV_SEG_ID_MAX) {
			kv_warn("segments/%s: not a segment of kvfs (numbers end at %08x); left "
				"alone",
				e->d_name, KV_SEG_ID_MAX);
			continue;
		}
		if ((rc = seg_grow(st, v)))
			break;
		st->segs[v].hdr = seg_check(st, e->d_name, v);
		if (st->segs[v].hdr == KV_SEG_DAMAGED)
			kv_warn("segment %s: its header is damaged: its records are read, but it "
				"is never deleted or garbage-collected",
				e->d_name);
		if (v > st->highest)
			st->highest = v;
	}
	closedir(d);
	return rc;
}

/* May the index decide that bytes of seg are garbage? Only for a segment
 * of this store: an index that is not the store's (lost and recreated,
 * or copied from elsewhere) would call every record garbage. Locked (kv_store.lock). */
static int seg_vouched(const struct kv_store *st, uint32_t seg)
{
	KV_ASSERT_HELD((pthread_mutex_t *)&st->lock);
	return seg >= st->nsegs || st->segs[seg].hdr == KV_SEG_OURS ||
	       st->segs[seg].hdr == KV_SEG_TORN;
}

uint32_t kv_store_foreign(struct kv_store *st)
{
	uint32_t seg = 0;

	pthread_mutex_lock(&st->lock);
	for (uint32_t i = 1; !seg && i < st->nsegs; i++)
		if (st->segs[i].hdr == KV_SEG_FOREIGN)
			seg = i;
	pthread_mutex_unlock(&st->lock);
	return seg;
}

int kv_store_open(const char *dir, const uint8_t id[16], size_t segment_size, size_t max_chunk,
		  struct kv_store **out)
{
	struct kv_store *st;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		kv_err("%s: %s", dir, strerror(errno));
		return -errno;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dirfd < 0) {
		int e = errno;
		kv_err("%s: %s", dir, strerror(e));
		free(st);
		return -e;
	}
	memcpy(st->id, id, 16);
	st->seg_size = segment_size;
	st->max_chunk = max_chunk;
	pthread_mutex_init(&st->lock, NULL);
	for (int i = 0; i < KV_STORE_LANES; i++)
		pthread_mutex_init(&st->lanes[i].lock, NULL);
	st->nlanes = 1;
	/* Appends always go to a fresh segment, so the tail of a segment left
	 * by an earlier run is never written again. */
	if (scan_segments(st) || seg_grow(st, st->highest + (st->highest < KV_SEG_ID_MAX))) {
		kv_store_close(st);
		return -ENOMEM;
	}
	*out = st;
	return 0;
}

void kv_store_close(struct kv_store *st)
{
	if (!st)
		return;
	for (uint32_t i = 0; i < st->nsegs; i++)
		if (st->segs[i].fd >= 0)
			close(st->segs[i].fd);
	free(st->segs);
	close(st->dirfd);
	pthread_mutex_destroy(&st->lock);
	for (int i = 0; i < KV_STORE_LANES; i++)
		pthread_mutex_destroy(&st->lanes[i].lock);
	free(st);
}

void kv_store_account(struct kv_store *st, uint32_t seg, uint64_t len)
{
	pthread_mutex_lock(&st->lock);
	if (!seg_grow(st, seg)) {
		st->segs[seg].live += len;
		st->live += len;
	}
	pthread_mutex_unlock(&st->lock);
}

void kv_store_drop_empty(struct kv_store *st)
{
	pthread_mutex_lock(&st->lock);
	for (uint32_t seg = 1; seg <= st->highest && seg < st->nsegs; seg++) {
		char name[32];
		if (st->segs[seg].live || seg_active(st, seg) || !seg_vouched(st, seg))
			continue;
		seg_name(name, sizeof(name), seg);
		if (!unlinkat(st->dirfd, name, 0))
			kv_info("removed segment %s: no live records", name);
		if (st->segs[seg].fd >= 0) {
			close(st->segs[seg].fd);
			st->segs[seg].fd = -1;
		}
	}
	pthread_mutex_unlock(&st->lock);
}

void kv_rec_encode(uint8_t h[KV_REC_HDR], const struct kv_rec *r)
{
	memset(h, 0, KV_REC_HDR);
	kv_put32(h, KV_REC_MAGIC);
	kv_put16(h + 4, KV_REC_VERSION);
	kv_put16(h + 6, KV_REC_HDR);
	h[8] = r->type;
	h[9] = r->codec;
	h[10] = r->elem;
	h[11] = r->flags;
	kv_put32(h + 12, r->raw_len);
	kv_put32(h + 16, r->stored_len);
	kv_put32(h + 20, r->seg);
	kv_put64(h + 24, r->ino);
	kv_put64(h + 32, r->idx);
	kv_put64(h + 48, r->payload_hash);
	kv_put64(h + 56, XXH3_64bits(h, 56));
}

int kv_rec_decode(const uint8_t h[KV_REC_HDR], struct kv_rec *r)
{
	if (kv_get32(h) != KV_REC_MAGIC || kv_get16(h + 4) != KV_REC_VERSION ||
	    kv_get16(h + 6) != KV_REC_HDR || kv_get64(h + 56) != XXH3_64bits(h, 56))
		return -EIO;
	r->type = h[8];
	r->codec = h[9];
	r->elem = h[10];
	r->flags = h[11];
	r->raw_len = kv_get32(h + 12);
	r->stored_len = kv_get32(h + 16);
	r->seg = kv_get32(h + 20);
	r->ino = kv_get64(h + 24);
	r->idx = kv_get64(h + 32);
	r->payload_hash = kv_get64(h + 48);
	return 0;
}

/* Append record r (all but seg and payload_hash filled in) with its
 * payload of r->stored_len bytes. */
static int append(struct kv_store *st, struct kv_rec *rec, const void *data, struct kv_loc *loc)
{
	struct kv_rec r = *rec;
	uint64_t ino = r.ino, idx = r.idx;
	uint8_t h[KV_REC_HDR];
	struct iovec iov[2] = { { h, sizeof(h) }, { (void *)data, r.stored_len } };
	uint64_t len = KV_REC_HDR + (uint64_t)r.stored_len;
	struct kv_lane *ln = NULL;
	ssize_t n;
	int fd, rc = 0;

	r.payload_hash = XXH3_64bits(data, r.stored_len);
	for (int i = 0; i < st->nlanes && !ln; i++)
		if (!pthread_mutex_trylock(&st->lanes[i].lock))
			ln = &st->lanes[i];
	if (!ln) {
		ln = &st->lanes[(uint64_t)pthread_self() % 7 % (uint64_t)st->nlanes];
		pthread_mutex_lock(&ln->lock);
	}
	pthread_mutex_lock(&st->lock);
	if (st->held)
		rc = -ENOSPC;
	else if (!ln->seg || ln->tail + len > st->seg_size)
		rc = seg_roll(st, ln);
	if (!rc) {
		loc->seg = ln->seg;
		loc->off = ln->tail;
		loc->len = (uint32_t)len;
		ln->tail += len;
		st->segs[ln->seg].live += len;
		st->live += len;
		st->segs[ln->seg].dirty = 1;
		fd = st->segs[ln->seg].fd;
	}
	pthread_mutex_unlock(&st->lock);
	if (!rc) {
		r.seg = loc->seg;
		kv_rec_encode(h, &r);
		n = pwritev(fd, iov, 2, (off_t)loc->off);
	}
	pthread_mutex_unlock(&ln->lock);
	if (rc)
		return rc;
	if (n == (ssize_t)len)
		return 0;
	rc = n < 0 ? -errno : -ENOSPC;
	if (rc != -ENOSPC)
		kv_err("segment %08" PRIx32 ": append of inode %" PRIu64 " chunk %" PRIu64 ": %s",
		       loc->seg, ino, idx, strerror(-rc));
	kv_store_free(st, loc);
	return rc;
}

uint64_t kv_seg_header_epoch(const uint8_t h[KV_SEG_HDR]) { return kv_get64(h + 44); }

uint64_t kv_store_epoch_seen(struct kv_store *st) { return st->epoch_seen; }

void kv_store_set_epoch(struct kv_store *st, uint64_t epoch)
{
	pthread_mutex_lock(&st->lock);
	st->epoch = epoch;
	pthread_mutex_unlock(&st->lock);
}

void kv_store_set_lanes(struct kv_store *st, int n)
{
	/* Only before the first append: a lane's lock is not taken here. */
	st->nlanes = n < 1 ? 1 : n > KV_STORE_LANES ? KV_STORE_LANES : n;
}

void kv_store_hold(struct kv_store *st, int held)
{
	pthread_mutex_lock(&st->lock);
	st->held = held;
	pthread_mutex_unlock(&st->lock);
}

int kv_store_append(struct kv_store *st, uint64_t ino, uint64_t idx, const struct kv_encoded *enc,
		    uint32_t raw_len, struct kv_loc *loc)
{
	struct kv_rec r = { .type = KV_REC_TYPE_CHUNK,
			    .codec = enc->codec,
			    .elem = enc->elem,
			    .raw_len = raw_len,
			    .stored_len = enc->len,
			    .ino = ino,
			    .idx = idx };

	return append(st, &r, enc->data, loc);
}

int kv_store_append_inode(struct kv_store *st, uint64_t ino, const void *data, uint32_t len,
			  struct kv_loc *loc)
{
	struct kv_rec r = { .type = KV_REC_TYPE_INODE,
			    .raw_len = len,
			    .stored_len = len,
			    .ino = ino,
			    .idx = KV_REC_IDX_INODE };

	return append(st, &r, data, loc);
}

int kv_seg_header_read(const uint8_t h[KV_SEG_HDR], uint32_t *seg, uint8_t id[16], uint32_t *chunk)
{
	if (memcmp(h, KV_SEG_MAGIC, 8) || kv_get32(h + 8) != KV_SEG_VERSION ||
	    kv_get64(h + 56) != XXH3_64bits(h, 56))
		return -EIO;
	*seg = kv_get32(h + 12);
	memcpy(id, h + 16, 16);
	*chunk = kv_get32(h + 40);
	return 0;
}

int kv_rec_verify(struct kv_codec_ctx *cc, const uint8_t h[KV_REC_HDR], const uint8_t *payload,
		  uint32_t stored, uint32_t seg, uint64_t ino, uint64_t idx, void *dst,
		  uint32_t raw_len)
{
	int raw = stored == raw_len;
	struct kv_rec r;

	if (kv_rec_decode(h, &r) || r.type != KV_REC_TYPE_CHUNK || r.ino != ino || r.idx != idx ||
	    r.raw_len != raw_len || r.stored_len != stored || r.seg != seg ||
	    (raw && r.codec != KV_CODEC_NONE) || r.payload_hash != XXH3_64bits(payload, stored))
		return -EIO;
	if (raw) {
		if (payload != dst)
			memcpy(dst, payload, raw_len);
		return 0;
	}
	return kv_codec_decode(cc, r.codec, r.elem, payload, stored, dst, raw_len) < 0 ? -EIO : 0;
}

int kv_store_read(struct kv_store *st, const struct kv_loc *loc, uint64_t ino, uint64_t idx,
		  void *dst, uint32_t raw_len)
{
	struct kv_codec_ctx *cc = kv_codec_tls(st->max_chunk);
	size_t bufcap = 0;
	uint8_t *buf = cc ? kv_codec_inbuf(cc, &bufcap) : NULL;
	uint8_t h[KV_REC_HDR];
	uint32_t stored = loc->len - KV_REC_HDR;
	struct iovec iov[2];
	ssize_t n;
	int fd;

	if (!buf)
		return -ENOMEM;
	if (loc->len < KV_REC_HDR || stored > bufcap || raw_len > st->max_chunk)
		return -EIO;
	pthread_mutex_lock(&st->lock);
	fd = seg_fd(st, loc->seg);
	pthread_mutex_unlock(&st->lock);
	if (fd < 0)
		return -EIO;
	/* A record stored raw is read straight into place. */
	iov[0] = (struct iovec){ h, sizeof(h) };
	iov[1] = (struct iovec){ stored == raw_len ? dst : buf, stored };
	n = preadv(fd, iov, 2, (off_t)loc->off);
	if (n < 0) {
		int e = errno;
		kv_err("segment %08" PRIx32 " offset %" PRIu64 ": read: %s", loc->seg, loc->off,
		       strerror(e));
		return -e;
	}
	if (n != (ssize_t)loc->len ||
	    kv_rec_verify(cc, h, iov[1].iov_base, stored, loc->seg, ino, idx, dst, raw_len)) {
		kv_err("inode %" PRIu64 " chunk %" PRIu64 ": damaged record at segment %08" PRIx32
		       " offset %" PRIu64,
		       ino, idx, loc->seg, loc->off);
		return -EIO;
	}
	return 0;
}

int kv_store_seg_open(struct kv_store *st, uint32_t seg, uint64_t *size)
{
	struct stat sb;
	int fd;

	pthread_mutex_lock(&st->lock);
	fd = seg_fd(st, seg);
	fd = fd < 0 ? -EIO : fcntl(fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&st->lock);
	if (fd == -EIO)
		return fd;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb)) {
		int e = errno;
		close(fd);
		return -e;
	}
	*size = (uint64_t)sb.st_size;
	return fd;
}

void kv_store_free(struct kv_store *st, const struct kv_loc *loc)
{
	int fd = -1;
	char name[32];

	pthread_mutex_lock(&st->lock);
	if (loc->seg < st->nsegs) {
		struct kv_seg *s = &st->segs[loc->seg];
		uint64_t freed = s->live > loc->len ? loc->len : s->live;
		s->live -= freed;
		st->live -= freed;
		if (!s->live && !seg_active(st, loc->seg) && seg_vouched(st, loc->seg)) {
			seg_name(name, sizeof(name), loc->seg);
			if (s->fd >= 0)
				close(s->fd);
			s->fd = -1;
			unlinkat(st->dirfd, name, 0);
		} else {
			fd = seg_fd_open(st, loc->seg, 1);
		}
	}
	pthread_mutex_unlock(&st->lock);
	/* Punching zeroes the whole range, partial blocks included, so a freed
	 * record cannot be found again by a scan (rebuild). Where holes are not
	 * supported, the header is erased instead. */
	if (fd >= 0 &&
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)loc->off, loc->len)) {
		static const uint8_t zero[KV_REC_HDR];
		kv_debug("punch hole in segment %08" PRIx32 ": %s", loc->seg, strerror(errno));
		if (pwrite(fd, zero, sizeof(zero), (off_t)loc->off) != (ssize_t)sizeof(zero))
			kv_debug("erase record in segment %08" PRIx32 ": %s", loc->seg,
				 strerror(errno));
	}
}

static uint64_t allocated(int fd)
{
	struct stat sb;

	return fstat(fd, &sb) ? 0 : (uint64_t)sb.st_blocks * 512;
}

int kv_store_reclaim(struct kv_store *st, uint32_t seg, const struct kv_loc *live, size_t n,
		     uint64_t *freed)
{
	char name[32];
	uint64_t pos = KV_SEG_HDR, before;
	struct stat sb;
	int fd, rc = 0;

	seg_name(name, sizeof(name), seg);
	pthread_mutex_lock(&st->lock);
	rc = seg_vouched(st, seg);
	pthread_mutex_unlock(&st->lock);
	if (!rc)
		return 0;
	rc = 0;
	if (fstatat(st->dirfd, name, &sb, 0))
		return errno == ENOENT ? 0 : -errno;
	if (!n) {
		*freed += (uint64_t)sb.st_blocks * 512;
		return unlinkat(st->dirfd, name, 0) ? -errno : 0;
	}
	pthread_mutex_lock(&st->lock);
	fd = seg_fd(st, seg);
	pthread_mutex_unlock(&st->lock);
	if (fd < 0)
		return fd;
	before = allocated(fd);
	for (size_t i = 0; i <= n && !rc; i++) {
		uint64_t end = i < n ? live[i].off : (uint64_t)sb.st_size;
		if (end > pos && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					   (off_t)pos, (off_t)(end - pos)))
			rc = -errno;
		if (i < n && live[i].off + live[i].len > pos)
			pos = live[i].off + live[i].len;
	}
	pos = allocated(fd);
	*freed += before > pos ? before - pos : 0;
	return rc;
}

uint32_t kv_store_highest(struct kv_store *st) { return st->highest; }

uint64_t kv_store_live(struct kv_store *st)
{
	uint64_t n;

	pthread_mutex_lock(&st->lock);
	n = st->live;
	pthread_mutex_unlock(&st->lock);
	return n;
}

void kv_store_prefetch(struct kv_store *st, const struct kv_loc *loc)
{
	int fd;

	pthread_mutex_lock(&st->lock);
	fd = seg_fd(st, loc->seg);
	pthread_mutex_unlock(&st->lock);
	if (fd >= 0)
		posix_fadvise(fd, (off_t)loc->off, loc->len, POSIX_FADV_WILLNEED);
}

int kv_store_sync(struct kv_store *st)
{
	int fds[64], n = 0, rc = 0;

	/* fdatasync runs unlocked on duplicates, so appends go on meanwhile. */
	pthread_mutex_lock(&st->lock);
	for (uint32_t i = 1; i < st->nsegs && n < 64; i++) {
		if (!st->segs[i].dirty || st->segs[i].fd < 0)
			continue;
		fds[n] = dup(st->segs[i].fd);
		if (fds[n] >= 0) {
			st->segs[i].dirty = 0;
			n++;
		}
	}
	pthread_mutex_unlock(&st->lock);
	for (int i = 0; i < n; i++) {
		if (fdatasync(fds[i]) && !rc) {
			rc = -errno;
			kv_err("segment fdatasync: %s", strerror(errno));
		}
		close(fds[i]);
	}
	return rc;
}

int kv_seg_scan_buf(const uint8_t *buf, size_t len, uint32_t seg, kv_scan_fn cb, void *arg)
{
	static const uint8_t magic[4] = { KV_REC_MAGIC & 0xff, (KV_REC_MAGIC >> 8) & 0xff,
					  (KV_REC_MAGIC >> 16) & 0xff, KV_REC_MAGIC >> 24 };
	size_t off = 0;

	while (len >= KV_REC_HDR && off <= len - KV_REC_HDR) {
		const uint8_t *p = memmem(buf + off, len - off, magic, sizeof(magic));
		struct kv_rec r;
		size_t at;

		if (!p)
			break;
		at = (size_t)(p - buf);
		if (at > len - KV_REC_HDR)
			break;
		if (!kv_rec_decode(p, &r) && r.stored_len <= len - at - KV_REC_HDR) {
			struct kv_loc loc = { seg, KV_REC_HDR + r.stored_len, at };
			const uint8_t *payload = p + KV_REC_HDR;
			int ok = XXH3_64bits(payload, r.stored_len) == r.payload_hash;
			int rc = cb(arg, &loc, &r, payload, ok);
			if (rc)
				return rc;
			off = at + KV_REC_HDR + r.stored_len;
		} else {
			off = at + 1;
		}
	}
	return 0;
}

int kv_seg_scan_file(const char *path, uint32_t seg, kv_scan_fn cb, void *arg)
{
	struct stat st;
	void *m;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (st.st_size == 0) {
		close(fd);
		return 0;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	rc = m == MAP_FAILED ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
	rc = kv_seg_scan_buf(m, (size_t)st.st_size, seg, cb, arg);
	munmap(m, (size_t)st.st_size);
	return rc;
}
