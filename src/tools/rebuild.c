/* SPDX-License-Identifier: Apache-2.0 */
/* kvfsctl rebuild: see rebuild.h. */
#include "rebuild.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "grow.h"
#include "index.h"
#include "meta.h"
#include "store.h"

#define LOST_NAME "lost+found"

/* An intact chunk record found by the scan. */
struct rec {
	uint32_t seg, len;
	uint64_t off, ino, idx;
};

/* An inode with its newest inode record. */
struct node {
	struct kv_loc at; /* where its newest record is */
	struct kv_meta m;
	uint64_t parent; /* where it goes: its first valid link's parent */
	int linked;      /* some link survived */
	int changed;     /* restored state differs from the record */
	int state;       /* reachability walk: 0 new, 1 visiting, 2 reached, 3 lost */
};

struct rb {
	struct rec *recs; /* open addressing by (seg, off); cap a power of 2 */
	size_t nrecs, rcap;
	struct node *nodes; /* by ino, open addressing */
	size_t nnodes, ncap;
	uint64_t max_ino;
	uint64_t lost_ino; /* the lost+found used, 0 if none */
	uint8_t id[16];
	int have_id;
	uint64_t epoch; /* the highest open that wrote a segment */
	struct kv_rebuild_report *rep;
	int err;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static int recs_grow(struct rb *b)
{
	size_t cap = b->rcap ? b->rcap * 2 : 4096;
	struct rec *v = calloc(cap, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < b->rcap; i++) {
		struct rec *r = &b->recs[i];
		size_t h;
		if (!r->seg)
			continue;
		for (h = mix(r->off ^ (uint64_t)r->seg << 44) & (cap - 1); v[h].seg;
		     h = (h + 1) & (cap - 1))
			;
		v[h] = *r;
	}
	free(b->recs);
	b->recs = v;
	b->rcap = cap;
	return 0;
}

static struct rec *rec_find(struct rb *b, uint32_t seg, uint64_t off, int add)
{
	size_t h;

	if (add && (b->nrecs + 1) * 2 > b->rcap && recs_grow(b))
		return NULL;
	if (!b->rcap)
		return NULL;
	for (h = mix(off ^ (uint64_t)seg << 44) & (b->rcap - 1); b->recs[h].seg;
	     h = (h + 1) & (b->rcap - 1))
		if (b->recs[h].seg == seg && b->recs[h].off == off)
			return &b->recs[h];
	if (!add)
		return NULL;
	b->nrecs++;
	b->recs[h].seg = seg;
	b->recs[h].off = off;
	return &b->recs[h];
}

static int nodes_grow(struct rb *b)
{
	size_t cap = b->ncap ? b->ncap * 2 : 1024;
	struct node *v = calloc(cap, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < b->ncap; i++) {
		struct node *n = &b->nodes[i];
		size_t h;
		if (!n->m.attr.ino)
			continue;
		for (h = mix(n->m.attr.ino) & (cap - 1); v[h].m.attr.ino; h = (h + 1) & (cap - 1))
			;
		v[h] = *n;
	}
	free(b->nodes);
	b->nodes = v;
	b->ncap = cap;
	return 0;
}

static struct node *node_find(struct rb *b, uint64_t ino, int add)
{
	size_t h;

	if (add && (b->nnodes + 1) * 2 > b->ncap && nodes_grow(b))
		return NULL;
	if (!b->ncap || !ino)
		return NULL;
	for (h = mix(ino) & (b->ncap - 1); b->nodes[h].m.attr.ino; h = (h + 1) & (b->ncap - 1))
		if (b->nodes[h].m.attr.ino == ino)
			return &b->nodes[h];
	if (!add)
		return NULL;
	b->nnodes++;
	return &b->nodes[h];
}

/* ---- scanning ---- */

static int scan_cb(void *arg, const struct kv_loc *loc, const struct kv_rec *r,
		   const uint8_t *payload, int payload_ok)
{
	struct rb *b = arg;
	struct kv_meta m;

	if (r->ino > b->max_ino && r->ino <= (uint64_t)INT64_MAX)
		b->max_ino = r->ino;
	if (!payload_ok || r->seg != loc->seg) {
		b->rep->bad_records++;
		return 0;
	}
	if (r->type == KV_REC_TYPE_CHUNK) {
		struct rec *x = rec_find(b, loc->seg, loc->off, 1);
		if (!x)
			return b->err = -ENOMEM;
		x->len = loc->len;
		x->ino = r->ino;
		x->idx = r->idx;
		b->rep->chunk_records++;
	} else if (r->type == KV_REC_TYPE_INODE) {
		struct node *n;
		int rc = kv_meta_decode(payload, r->stored_len, &m);
		if (rc == -ENOMEM)
			return b->err = rc;
		if (rc || m.attr.ino != r->ino || !m.attr.ino) {
			if (!rc)
				kv_meta_free(&m);
			b->rep->bad_records++;
			return 0;
		}
		b->rep->inode_records++;
		if (m.hwm > b->max_ino && m.hwm <= (uint64_t)INT64_MAX)
			b->max_ino = m.hwm;
		/* Segments are scanned in id order, each from its start: the
		 * record found last is the newest. */
		n = node_find(b, m.attr.ino, 1);
		if (!n) {
			kv_meta_free(&m);
			return b->err = -ENOMEM;
		}
		kv_meta_free(&n->m);
		n->m = m;
		n->at = *loc;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int scan(struct rb *b, const char *store, char *err, size_t errlen)
{
	char dir[4200], path[4300];
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/segments", store);
	d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		unsigned id;
		char tail;
		if (sscanf(de->d_name, "%8x.se%c", &id, &tail) != 2 || tail != 'g' ||
		    strlen(de->d_name) != 12 || !id || id > KV_SEG_ID_MAX)
			continue;
		if (kv_grow(&ids, &cap, n + 1, sizeof(*ids))) {
			rc = -ENOMEM;
			break;
		}
		ids[n++] = id;
	}
	closedir(d);
	if (n)
		qsort(ids, n, sizeof(*ids), cmp_u32);
	for (size_t i = 0; !rc && i < n; i++) {
		uint8_t h[KV_SEG_HDR], id[16];
		uint32_t seg, chunk;
		int fd;
		snprintf(path, sizeof(path), "%s/%08x.seg", dir, ids[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
		    kv_seg_header_read(h, &seg, id, &chunk) || seg != ids[i]) {
			fprintf(stderr, "kvfsctl: rebuild: %s: no valid segment header, skipped\n",
				path);
			if (fd >= 0)
				close(fd);
			continue;
		}
		close(fd);
		if (!b->have_id) {
			memcpy(b->id, id, 16);
			b->have_id = 1;
		} else if (memcmp(b->id, id, 16)) {
			fprintf(stderr, "kvfsctl: rebuild: %s: belongs to another store, skipped\n",
				path);
			continue;
		}
		if (chunk)
			b->rep->chunk_size = chunk;
		if (kv_seg_header_epoch(h) > b->epoch)
			b->epoch = kv_seg_header_epoch(h);
		b->rep->segments++;
		rc = kv_seg_scan_file(path, seg, scan_cb, b);
		if (b->err)
			rc = b->err;
		if (rc)
			snprintf(err, errlen, "scanning %s: %s", path, strerror(-rc));
	}
	free(ids);
	return rc;
}

/* ---- the namespace ---- */

/* Keep the chunks of a file whose records are all where its inode record
 * says; cut it before the first that is not. */
static void check_chunks(struct rb *b, struct node *n, FILE *out)
{
	struct kv_meta *m = &n->m;
	uint64_t chunk = b->rep->chunk_size, stored = 0;
	size_t k;

	for (k = 0; k < m->nchunks; k++) {
		const struct kv_chunk *c = &m->chunks[k];
		struct rec *r = rec_find(b, c->loc.seg, c->loc.off, 0);
		if (!r || r->ino != m->attr.ino || r->idx != c->idx || r->len != c->loc.len)
			break;
		stored += c->loc.len;
	}
	if (k == m->nchunks)
		return;
	n->changed = 1;
	b->rep->damaged++;
	if (out)
		fprintf(out,
			"inode %" PRIu64 ": chunk %" PRIu64 " missing or damaged, cut to %" PRIu64
			" bytes\n",
			m->attr.ino, m->chunks[k].idx,
			m->attr.size < m->chunks[k].idx * chunk ? m->attr.size
								: m->chunks[k].idx * chunk);
	if (m->attr.size > m->chunks[k].idx * chunk)
		m->attr.size = m->chunks[k].idx * chunk;
	m->nchunks = k;
	m->attr.stored = stored;
}

/* A name of an inode, for finding names two records claim. */
struct claim {
	uint64_t parent;
	struct node *n;
	size_t k;
};

static int newer_first(const struct node *a, const struct node *b)
{
	return a->at.seg != b->at.seg ? (a->at.seg > b->at.seg ? -1 : 1)
				      : (a->at.off > b->at.off ? -1 : a->at.off < b->at.off);
}

static int cmp_claim(const void *x, const void *y)
{
	const struct claim *a = x, *b = y;
	int c;

	if (a->parent != b->parent)
		return a->parent < b->parent ? -1 : 1;
	c = strcmp(a->n->m.links[a->k].name, b->n->m.links[b->k].name);
	return c ? c : newer_first(a->n, b->n);
}

/* A name two inodes claim (a crash between a rename and the record of
 * what it replaced) stays with the newer record. */
static int drop_duplicate_names(struct rb *b)
{
	struct claim *v;
	size_t n = 0;

	for (size_t i = 0; i < b->ncap; i++)
		n += b->nodes[i].m.attr.ino ? b->nodes[i].m.nlinks : 0;
	if (!(v = malloc((n ? n : 1) * sizeof(*v))))
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < b->ncap; i++)
		for (size_t k = 0; b->nodes[i].m.attr.ino && k < b->nodes[i].m.nlinks; k++)
			v[n++] = (struct claim){ b->nodes[i].m.links[k].parent, &b->nodes[i], k };
	if (n)
		qsort(v, n, sizeof(*v), cmp_claim);
	for (size_t i = 1; i < n; i++)
		if (v[i].parent == v[i - 1].parent &&
		    !strcmp(v[i].n->m.links[v[i].k].name, v[i - 1].n->m.links[v[i - 1].k].name))
			v[i].n->m.links[v[i].k].len = 0; /* dropped below */
	free(v);
	return 0;
}

/* Drop links whose directory has no record, or that a newer record took;
 * the first one left is where the inode goes. */
static void settle_links(struct rb *b, struct node *n)
{
	struct kv_meta *m = &n->m;
	size_t keep = 0;

	for (size_t k = 0; k < m->nlinks; k++) {
		struct node *p = node_find(b, m->links[k].parent, 0);
		if (!m->links[k].len || !p || !S_ISDIR(p->m.attr.mode) || !p->m.attr.nlink)
			continue;
		m->links[keep++] = m->links[k];
	}
	if (keep != m->nlinks)
		n->changed = 1;
	m->nlinks = keep;
	n->linked = keep > 0;
	n->parent = keep ? m->links[0].parent : 0;
}

/* NULL if n leads to the root through directories that do; otherwise
 * the inode that breaks the way: one whose directory has no record, or a
 * directory of a cycle. Inodes on a good way are marked reached. */
static struct node *unreachable(struct rb *b, struct node *n)
{
	struct node *path[256], *culprit = NULL;
	int depth = 0, ok;

	while (n->state == 0 && n->m.attr.ino != KV_ROOT_INO && n->linked && depth < 256) {
		n->state = 1;
		path[depth++] = n;
		n = node_find(b, n->parent, 0); /* there: settle_links kept only those */
	}
	ok = n->m.attr.ino == KV_ROOT_INO || n->state == 2;
	if (!ok)
		culprit = !n->linked && n->state == 0 ? n : path[depth - 1];
	while (depth--)
		path[depth]->state = ok ? 2 : 0;
	return culprit;
}

/* A directory made here (root or lost+found), owned by the caller. */
static struct node *add_dir(struct rb *b, uint64_t ino, uint32_t perm, int64_t t)
{
	struct node *n = node_find(b, ino, 1);

	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->m.attr = (struct kv_attr){ .ino = ino,
				      .mode = S_IFDIR | perm,
				      .nlink = 2,
				      .uid = getuid(),
				      .gid = getgid(),
				      .atime = t,
				      .mtime = t,
				      .ctime = t };
	n->m.ttl = -1;
	n->changed = 1;
	n->state = 2;
	return n;
}

/* Rename db (with its -wal and -shm) to to (the same suffixes). */
static int rename_db(const char *db, const char *to)
{
	char a[4400], b[4400];

	if (rename(db, to))
		return -errno;
	for (int i = 0; i < 2; i++) {
		const char *sfx = i ? "-shm" : "-wal";
		snprintf(a, sizeof(a), "%s%s", db, sfx);
		snprintf(b, sizeof(b), "%s%s", to, sfx);
		if (!access(a, F_OK) && rename(a, b))
			return -errno;
	}
	return 0;
}

static void unlink_db(const char *db)
{
	char a[4400];

	unlink(db);
	snprintf(a, sizeof(a), "%s-wal", db);
	unlink(a);
	snprintf(a, sizeof(a), "%s-shm", db);
	unlink(a);
}

/* The closed index at db holds everything on its own (SQLite's last
 * close copied the log into it) and is on disk: it is moved in place of
 * kvfs.db by one rename, and a log left behind would not go with it. A
 * rebuild killed at any point leaves either no kvfs.db (a mount is then
 * refused) or a complete one; the segments are never touched. */
static int settle_file(const char *db)
{
	char wal[4400];
	struct stat sb;
	int fd, rc = 0;

	snprintf(wal, sizeof(wal), "%s-wal", db);
	if (!stat(wal, &sb) && sb.st_size > 0)
		return -EIO;
	fd = open(db, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Put the new index (built at tmp) in place of db; the old one, if any,
 * goes aside under a name of its own. */
static int swap_in(const char *db, const char *tmp, struct kv_rebuild_report *rep, char *err,
		   size_t errlen)
{
	int rc;

	if (!access(db, F_OK)) {
		long long t = (long long)time(NULL);
		for (int n = 0;; n++) {
			if (n)
				snprintf(rep->old_db, sizeof(rep->old_db), "%s.lost-%lld.%d", db, t,
					 n);
			else
				snprintf(rep->old_db, sizeof(rep->old_db), "%s.lost-%lld", db, t);
			if (access(rep->old_db, F_OK) && errno == ENOENT)
				break;
		}
		if ((rc = rename_db(db, rep->old_db))) {
			snprintf(err, errlen, "cannot move %s aside: %s", db, strerror(-rc));
			return rc;
		}
	}
	if ((rc = rename_db(tmp, db))) {
		snprintf(err, errlen, "cannot move the new index to %s: %s", db, strerror(-rc));
		/* Leave the store as it was. */
		if (*rep->old_db && !rename_db(rep->old_db, db))
			*rep->old_db = 0;
	}
	return rc;
}

/* Decide what comes back and where: chunks checked, names settled, the
 * unreachable moved to /lost+found, directory link counts recounted. */
static int plan(struct rb *b, FILE *out)
{
	int64_t now = (int64_t)time(NULL) * 1000000000;
	uint64_t lost_ino = b->max_ino + 1;
	struct node *lost = NULL;
	char name[32], lname[32] = LOST_NAME;
	int rc;

	if (!node_find(b, KV_ROOT_INO, 0) && !add_dir(b, KV_ROOT_INO, 0755, now))
		return -ENOMEM;
	/* A /lost+found from an earlier rebuild is used again; a name taken by
	 * something else makes another one. */
	for (int k = 1; k < 1000; k++) {
		struct node *o = NULL;
		for (size_t i = 0; !o && i < b->ncap; i++)
			for (size_t l = 0; b->nodes[i].m.attr.ino && l < b->nodes[i].m.nlinks; l++)
				if (b->nodes[i].m.links[l].parent == KV_ROOT_INO &&
				    !strcmp(b->nodes[i].m.links[l].name, lname))
					o = &b->nodes[i];
		if (!o)
			break;
		if (S_ISDIR(o->m.attr.mode) && o->m.attr.nlink) {
			lost_ino = o->m.attr.ino;
			break;
		}
		snprintf(lname, sizeof(lname), "%s.%d", LOST_NAME, k);
	}
	for (size_t i = 0; i < b->ncap; i++)
		if (b->nodes[i].m.attr.ino && S_ISREG(b->nodes[i].m.attr.mode))
			check_chunks(b, &b->nodes[i], out);
	rc = drop_duplicate_names(b);
	for (size_t i = 0; !rc && i < b->ncap; i++)
		if (b->nodes[i].m.attr.ino && b->nodes[i].m.attr.nlink)
			settle_links(b, &b->nodes[i]);
	for (size_t i = 0; i < b->ncap; i++)
		if (b->nodes[i].m.attr.ino > KV_ROOT_INO && !b->nodes[i].m.attr.nlink)
			b->rep->unlinked++;
	while (!rc) {
		struct node *c = NULL;
		for (size_t i = 0; !c && i < b->ncap; i++) {
			struct node *n = &b->nodes[i];
			if (n->m.attr.ino > KV_ROOT_INO && n->m.attr.nlink)
				c = unreachable(b, n);
		}
		if (!c)
			break;
		if (!lost && (lost = node_find(b, lost_ino, 0)) && lost->m.attr.ino == lost_ino) {
			/* The existing one: it must lead to the root itself. */
			if (!unreachable(b, lost) && lost->state == 2) {
				b->lost_ino = lost_ino;
				continue;
			}
			lost = NULL;
			lost_ino = b->max_ino + 1;
			snprintf(lname, sizeof(lname), "%s.%lld", LOST_NAME, (long long)time(NULL));
		}
		if (!lost) {
			/* Moves the table: look again. */
			if (!(lost = add_dir(b, lost_ino, 0700, now)) ||
			    kv_meta_add_link(&lost->m, KV_ROOT_INO, lname, strlen(lname)))
				return -ENOMEM;
			lost->linked = 1;
			lost->parent = KV_ROOT_INO;
			b->lost_ino = lost_ino;
			continue;
		}
		snprintf(name, sizeof(name), "%" PRIu64, c->m.attr.ino);
		c->m.nlinks = 0;
		if (kv_meta_add_link(&c->m, lost_ino, name, strlen(name)))
			return -ENOMEM;
		c->changed = 1;
		c->linked = 1;
		c->parent = lost_ino;
		b->rep->lost++;
		if (out)
			fprintf(out, "inode %" PRIu64 ": its directory is gone, now /%s/%s\n",
				c->m.attr.ino, lname, name);
	}
	for (size_t i = 0; !rc && i < b->ncap; i++) {
		struct node *n = &b->nodes[i];
		if (n->m.attr.ino && S_ISDIR(n->m.attr.mode) && n->m.attr.nlink)
			n->m.attr.nlink = 2;
	}
	for (size_t i = 0; !rc && i < b->ncap; i++) {
		struct node *n = &b->nodes[i], *p;
		if (!n->m.attr.ino || !n->m.attr.nlink || n->state != 2 || !S_ISDIR(n->m.attr.mode))
			continue;
		if ((p = node_find(b, n->parent, 0)))
			p->m.attr.nlink++;
	}
	return rc;
}

/* The context depth of the mount that wrote the records: where most of
 * the contexts are, not counting those moved to lost+found (-1: no
 * context has a record). */
static int context_depth(struct rb *b)
{
	uint64_t votes[18] = { 0 }, best = 0;
	int depth = -1;

	for (size_t i = 0; i < b->ncap; i++) {
		struct node *n = &b->nodes[i];
		int d = 0;
		if (!n->m.attr.ino || !(n->m.flags & KV_META_HAS_CTX) || n->state != 2 || n->changed)
			continue;
		if (S_ISREG(n->m.attr.mode)) {
			votes[0]++;
			continue;
		}
		while (n && n->m.attr.ino != KV_ROOT_INO && n->m.attr.ino != b->lost_ino && d < 17) {
			n = node_find(b, n->parent, 0);
			d++;
		}
		if (n && n->m.attr.ino == KV_ROOT_INO)
			votes[d]++;
	}
	for (int d = 0; d < 18; d++)
		if (votes[d] > best) {
			best = votes[d];
			depth = d;
		}
	return depth;
}

int kv_rebuild(const char *store, FILE *out, struct kv_rebuild_report *rep, char *err, size_t errlen)
{
	char path[PATH_MAX], db[4200], tmp[4300];
	struct rb b = { .rep = rep };
	struct kv_index *ix = NULL;
	int lockfd = -1, rc, depth;
	struct stat st;

	memset(rep, 0, sizeof(*rep));
	if (!realpath(store, path)) {
		snprintf(err, errlen, "%s: %s", store, strerror(errno));
		return -errno;
	}
	/* Nothing is created in a directory that is not a store. */
	snprintf(db, sizeof(db), "%s/segments", path);
	if (stat(db, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a kvfs store (no segments directory)", path);
		return -ENOENT;
	}
	snprintf(db, sizeof(db), "%s/kvfs.lock", path);
	lockfd = open(db, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB)) {
		rc = lockfd < 0 ? -errno : -EBUSY;
		snprintf(err, errlen, "store %s is in use by another kvfs, or cannot be locked",
			 path);
		goto out;
	}
	rc = scan(&b, path, err, errlen);
	if (!rc && (!b.have_id || (!b.nnodes && rep->chunk_records))) {
		rc = -ENOENT;
		snprintf(err, errlen,
			 b.have_id ? "no inode records in the segments of %s (written "
				     "by a kvfs without them): nothing to rebuild from"
				   : "no segments in %s: nothing to rebuild from",
			 path);
	}
	if (!rc && !rep->chunk_size) {
		rc = -EINVAL;
		snprintf(err, errlen, "the segments of %s do not record the chunk size", path);
	}
	if (!rc && (rc = plan(&b, out)))
		snprintf(err, errlen, "%s", strerror(-rc));
	/* Built under another name; the store's index is replaced only when
	 * the new one is complete. */
	snprintf(tmp, sizeof(tmp), "%s/kvfs.db.rebuild", path);
	unlink_db(tmp);
	if (!rc && (rc = kv_fs_private_db(tmp)))
		snprintf(err, errlen, "%s: %s", tmp, strerror(-rc));
	if (!rc)
		rc = kv_index_open(tmp, 1, &ix, err, errlen);
	if (rc)
		goto out;
	rc = kv_index_set_store_id(ix, b.id);
	if (!rc)
		rc = kv_index_meta_set(ix, "chunk_size", rep->chunk_size);
	/* The new index has seen every segment there is. */
	if (!rc)
		rc = kv_index_meta_set(ix, "epoch", (int64_t)b.epoch);
	/* The next mount gives back the space no record names and writes the
	 * inode records of what changed here. */
	if (!rc)
		rc = kv_index_meta_set(ix, "clean", 0);
	/* Contexts keep their pins and TTLs only at the depth they had. */
	if (!rc && (depth = context_depth(&b)) >= 0)
		rc = kv_index_meta_set(ix, "context_depth", depth);
	if (!rc)
		rc = kv_index_begin(ix);
	if (rc) {
		snprintf(err, errlen, "cannot initialise the new index: %s", strerror(-rc));
		goto out;
	}
	for (size_t i = 0; !rc && i < b.ncap; i++) {
		struct node *n = &b.nodes[i];
		if (!n->m.attr.ino ||
		    (n->m.attr.ino != KV_ROOT_INO && (!n->m.attr.nlink || n->state != 2)))
			continue;
		if (!S_ISDIR(n->m.attr.mode))
			n->m.attr.nlink = (uint32_t)n->m.nlinks;
		rc = kv_index_restore(ix, &n->m, n->changed ? NULL : &n->at);
		if (S_ISREG(n->m.attr.mode)) {
			rep->files++;
			rep->bytes += n->m.attr.size;
			rep->chunks += n->m.nchunks;
		} else if (S_ISDIR(n->m.attr.mode)) {
			rep->dirs++;
		} else {
			rep->others++;
		}
	}
	if (!rc)
		rc = kv_index_set_next_ino(ix, b.max_ino + 1);
	rc = kv_index_commit(ix, rc);
	if (rc)
		snprintf(err, errlen, "cannot write the new index: %s", strerror(-rc));
	kv_index_close(ix);
	ix = NULL;
	if (!rc && (rc = settle_file(tmp)))
		snprintf(err, errlen, "the new index %s is not complete: %s", tmp, strerror(-rc));
	snprintf(db, sizeof(db), "%s/kvfs.db", path);
	if (!rc)
		rc = swap_in(db, tmp, rep, err, errlen);
	if (!rc)
		sync_dir(path);
	if (rc)
		unlink_db(tmp);
out:
	kv_index_close(ix);
	for (size_t i = 0; i < b.ncap; i++)
		kv_meta_free(&b.nodes[i].m);
	free(b.nodes);
	free(b.recs);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}
