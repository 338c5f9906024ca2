/* SPDX-License-Identifier: Apache-2.0 */
#include "fsck.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_int.h"
#include "grow.h"
#include "log.h"

struct fsck_job {
	uint64_t ino;
	struct kv_chunk c;
	int damaged;
};

struct fsck_fent {
	uint64_t ino, size;
};

/* The namespace walk: directories still to list, the regular files found
 * and, once they are known, their chunks. */
struct fsck_walk {
	struct kv_fs *fs;
	uint64_t *dirs;
	size_t ndirs, dcap;
	struct fsck_fent *files;
	size_t nfiles, fcap;
	struct fsck_job *jobs;
	size_t njobs, jcap;
	uint64_t cur; /* the file whose chunks are being added */
	int rc;
};

static int walk_entry(void *arg, const char *name, size_t len, const struct kv_attr *a,
		      uint64_t next)
{
	struct fsck_walk *w = arg;

	(void)name;
	(void)len;
	(void)next;
	if (S_ISDIR(a->mode)) {
		if (kv_grow(&w->dirs, &w->dcap, w->ndirs + 1, sizeof(*w->dirs)))
			goto nomem;
		w->dirs[w->ndirs++] = a->ino;
	} else if (S_ISREG(a->mode)) {
		if (kv_grow(&w->files, &w->fcap, w->nfiles + 1, sizeof(*w->files)))
			goto nomem;
		w->files[w->nfiles++] = (struct fsck_fent){ a->ino, a->size };
	}
	return 0;
nomem:
	w->rc = -ENOMEM;
	return 1;
}

static int add_job(void *arg, const struct kv_chunk *c)
{
	struct fsck_walk *w = arg;

	if (kv_grow(&w->jobs, &w->jcap, w->njobs + 1, sizeof(*w->jobs)))
		return -ENOMEM;
	w->jobs[w->njobs++] = (struct fsck_job){ w->cur, *c, 0 };
	return 0;
}

static int by_ino(const void *a, const void *b)
{
	const struct fsck_fent *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Every regular file reachable from the root (kvfs has no hard links, so
 * each once), and its chunks. */
static int collect(struct fsck_walk *w)
{
	int rc = 0;

	if (kv_grow(&w->dirs, &w->dcap, 1, sizeof(*w->dirs)))
		return -ENOMEM;
	w->dirs[w->ndirs++] = KV_ROOT_INO;
	while (!rc && w->ndirs) {
		rc = kv_index_readdir(w->fs->ix, w->dirs[--w->ndirs], 0, walk_entry, w);
		rc = rc ? rc : w->rc;
	}
	if (!rc && w->nfiles)
		qsort(w->files, w->nfiles, sizeof(*w->files), by_ino);
	for (size_t i = 0; !rc && i < w->nfiles; i++) {
		w->cur = w->files[i].ino;
		rc = kv_index_chunks(w->fs->ix, w->cur, add_job, w);
	}
	return rc;
}

static int by_place(const void *a, const void *b)
{
	const struct fsck_job *x = a, *y = b;

	if (x->c.loc.seg != y->c.loc.seg)
		return x->c.loc.seg < y->c.loc.seg ? -1 : 1;
	return x->c.loc.off < y->c.loc.off ? -1 : x->c.loc.off > y->c.loc.off;
}

static int by_chunk(const void *a, const void *b)
{
	const struct fsck_job *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->c.idx < y->c.idx ? -1 : x->c.idx > y->c.idx;
}

/* Mark the chunks whose segment is missing or too short to hold them, and
 * list those segments. jobs are sorted by place. */
static int check_segments(struct kv_fs *fs, struct fsck_job *jobs, size_t n,
			  struct kv_fsck_report *rep)
{
	char path[4200];
	size_t cap = 0;
	int dirfd, rc = 0;

	snprintf(path, sizeof(path), "%s/segments", fs->store_path);
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	for (size_t i = 0, end; i < n; i = end) {
		uint32_t seg = jobs[i].c.loc.seg;
		struct stat sb = { 0 };
		char name[32];
		int missing, bad = 0;

		snprintf(name, sizeof(name), "%08" PRIx32 ".seg", seg);
		missing = fstatat(dirfd, name, &sb, 0) != 0;
		if (missing && errno != ENOENT) {
			rc = -errno;
			break;
		}
		for (end = i; end < n && jobs[end].c.loc.seg == seg; end++) {
			const struct kv_loc *l = &jobs[end].c.loc;
			jobs[end].damaged = missing || l->off + l->len > (uint64_t)sb.st_size;
			bad |= jobs[end].damaged;
		}
		if (!bad)
			continue;
		if (kv_grow(&rep->segs, &cap, rep->nsegs + 1, sizeof(*rep->segs))) {
			rc = -ENOMEM;
			break;
		}
		rep->segs[rep->nsegs++] = (struct kv_fsck_seg){ seg, missing, (uint64_t)sb.st_size };
	}
	close(dirfd);
	return rc;
}

struct fsck_verify {
	struct kv_fs *fs;
	struct fsck_job *jobs;
	size_t n, next; /* next: the next job to take (atomic) */
	int err;        /* the first failure that is not damage (atomic) */
};

static void verify_failed(struct fsck_verify *v, int rc)
{
	int none = 0;

	__atomic_compare_exchange_n(&v->err, &none, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* Take jobs until none is left: read each record with the reader's checks.
 * EIO is damage (a bad record, or the disk failing to read it). */
static void *verify(void *arg)
{
	struct fsck_verify *v = arg;
	uint8_t *buf = malloc(v->fs->cfg.chunk);
	size_t i;

	if (!buf)
		verify_failed(v, -ENOMEM);
	while (buf && !__atomic_load_n(&v->err, __ATOMIC_RELAXED) &&
	       (i = __atomic_fetch_add(&v->next, 1, __ATOMIC_RELAXED)) < v->n) {
		struct fsck_job *j = &v->jobs[i];
		int rc;
		if (j->damaged)
			continue;
		rc = kv_store_read(v->fs->st, &j->c.loc, j->ino, j->c.idx, buf, j->c.raw);
		if (rc == -EIO)
			j->damaged = 1;
		else if (rc)
			verify_failed(v, rc);
	}
	free(buf);
	return NULL;
}

#define FSCK_MAX_THREADS 8

static int verify_all(struct kv_fs *fs, struct fsck_job *jobs, size_t n, int threads)
{
	struct fsck_verify v = { fs, jobs, n, 0, 0 };
	pthread_t th[FSCK_MAX_THREADS];
	int t = 0;

	if (threads <= 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		threads = cpus < 1 ? 1 : (int)(cpus < FSCK_MAX_THREADS ? cpus : FSCK_MAX_THREADS);
	}
	if (threads > FSCK_MAX_THREADS)
		threads = FSCK_MAX_THREADS;
	/* The caller's thread is one of them. */
	while (t + 1 < threads && (size_t)t + 1 < n && !pthread_create(&th[t], NULL, verify, &v))
		t++;
	verify(&v);
	while (t--)
		pthread_join(th[t], NULL);
	return v.err;
}

/* Totals, and the damaged files with their chunks. */
static int build_report(struct fsck_walk *w, struct kv_fsck_report *rep)
{
	size_t cap = 0;

	rep->files = w->nfiles;
	rep->chunks = w->njobs;
	if (w->njobs)
		qsort(w->jobs, w->njobs, sizeof(*w->jobs), by_chunk);
	for (size_t i = 0, end; i < w->njobs; i = end) {
		struct fsck_fent key = { w->jobs[i].ino, 0 }, *fe;
		struct kv_fsck_file *f;
		size_t nbad = 0;

		for (end = i; end < w->njobs && w->jobs[end].ino == key.ino; end++) {
			rep->bytes += w->jobs[end].c.raw;
			rep->stored += w->jobs[end].c.loc.len;
			nbad += w->jobs[end].damaged != 0;
		}
		if (!nbad)
			continue;
		if (kv_grow(&rep->bad, &cap, rep->nbad + 1, sizeof(*rep->bad)))
			return -ENOMEM;
		f = &rep->bad[rep->nbad];
		fe = bsearch(&key, w->files, w->nfiles, sizeof(*w->files), by_ino);
		*f = (struct kv_fsck_file){ key.ino, fe ? fe->size : 0,
					    malloc(nbad * sizeof(uint64_t)), 0 };
		if (!f->bad)
			return -ENOMEM;
		rep->nbad++;
		for (size_t k = i; k < end; k++)
			if (w->jobs[k].damaged)
				f->bad[f->nbad++] = w->jobs[k].c.idx;
		rep->bad_chunks += nbad;
	}
	return 0;
}

int kv_fsck_check(struct kv_fs *fs, int threads, struct kv_fsck_report *rep)
{
	struct fsck_walk w = { .fs = fs };
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = kv_index_verify(fs->ix, 0, rep->index_msg, sizeof(rep->index_msg));
	if (rc > 0)
		rep->index_problems = rc;
	else if (rc)
		kv_err("fsck %s: cannot check the index: %s", fs->store_path, rep->index_msg);
	if (rc)
		return rc < 0 ? rc : 0;
	rc = collect(&w);
	if (!rc && w.njobs)
		qsort(w.jobs, w.njobs, sizeof(*w.jobs), by_place);
	if (!rc)
		rc = check_segments(fs, w.jobs, w.njobs, rep);
	if (!rc)
		rc = verify_all(fs, w.jobs, w.njobs, threads);
	if (!rc)
		rc = build_report(&w, rep);
	free(w.dirs);
	free(w.files);
	free(w.jobs);
	if (rc)
		kv_fsck_report_free(rep);
	return rc;
}

void kv_fsck_report_free(struct kv_fsck_report *rep)
{
	for (size_t i = 0; i < rep->nbad; i++)
		free(rep->bad[i].bad);
	free(rep->bad);
	free(rep->segs);
	memset(rep, 0, sizeof(*rep));
}

/* Unlink ino (kvfs has no hard links): this deletes it and frees its
 * records. */
static int remove_file(struct kv_fs *fs, uint64_t ino)
{
	uint64_t parent;
	char name[256];
	int rc = kv_index_entry_of(fs->ix, ino, &parent, name);

	return rc ? rc : kv_fs_remove(fs, parent, name, 0);
}

int kv_fsck_repair(struct kv_fs *fs, const struct kv_fsck_file *f, uint64_t *size)
{
	uint64_t first = f->bad[0];
	struct kv_attr a = { .ino = f->ino }, out;
	int rc;

	if (first == 0) {
		*size = 0;
		rc = remove_file(fs, f->ino);
		return rc ? rc : KV_FSCK_REMOVED;
	}
	/* A cut at a chunk boundary rewrites nothing: the chunks before it
	 * keep their records, and bytes past a short record read as zeros
	 * before and after. */
	a.size = first > f->size / fs->cfg.chunk ? f->size : first * fs->cfg.chunk;
	rc = kv_fs_setattr(fs, f->ino, &a, KV_SET_SIZE, &out);
	if (rc)
		return rc;
	*size = out.size;
	return KV_FSCK_TRUNCATED;
}
