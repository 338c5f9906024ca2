/* SPDX-License-Identifier: Apache-2.0 */
/* kvfsctl: administer kvfs stores and mounts. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>

#include "clock.h"
#include "fs.h"
#include "fsck.h"
#include "grow.h"
#include "rebuild.h"
#include "index.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfsctl COMMAND [ARGS]\n"
		"\n"
		"commands:\n"
		"    info STORE             format version, files, contexts, logical and stored bytes\n"
		"    stats MOUNT            the mount's counters, for people (raw: MOUNT/.kvfs/stats)\n"
		"    ls MOUNT [NAMESPACE]   contexts, most recently used first, with sizes, TTL, pin;\n"
		"                           in names, control bytes, spaces, backslashes and bytes\n"
		"                           that are not UTF-8 are written \\ooo (octal)\n"
		"    evict MOUNT --to SIZE  evict least recently used contexts down to SIZE stored\n"
		"    pin PATH, unpin PATH   keep a context from eviction, or stop keeping it\n"
		"    gc STORE               give back space left by a crash (store not mounted)\n"
		"    fsck STORE [--repair]  verify every chunk (store not mounted); exit 1 if any is\n"
		"                           damaged; --repair truncates or removes damaged files\n"
		"    rebuild STORE          recreate a lost or corrupt index from the segments\n"
		"                           (store not mounted; the old kvfs.db is kept aside)\n"
		"    context-depth STORE [N]  the store's context depth, or make it N (store not\n"
		"                           mounted): pins and TTLs go to the contexts at depth N\n"
		"    help                   this text\n");
}

static int cmd_info(const char *store)
{
	char path[4200], err[512];
	struct kv_index_stats s;
	struct kv_index *ix;
	uint64_t contexts = 0;
	int rc;

	snprintf(path, sizeof(path), "%s/kvfs.db", store);
	rc = kv_index_check(path, err, sizeof(err));
	if (!rc)
		rc = kv_index_open(path, 0, &ix, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kvfsctl: %s\n", err);
		return 1;
	}
	rc = kv_index_stats(ix, &s);
	if (!rc)
		rc = kv_index_ctx_count(ix, 0, &contexts);
	if (!rc) {
		printf("store: %s\n", store);
		printf("format_version: %d\n", KV_FORMAT_VERSION);
		printf("schema_version: %d\n", kv_index_user_version(ix));
		printf("files: %llu\n", (unsigned long long)s.files);
		printf("directories: %llu\n", (unsigned long long)s.dirs);
		printf("contexts: %llu\n", (unsigned long long)contexts);
		printf("logical_bytes: %llu\n", (unsigned long long)s.logical);
		printf("stored_bytes: %llu\n", (unsigned long long)s.stored);
		printf("ratio: %.2f\n", s.stored ? (double)s.logical / (double)s.stored : 1.0);
	} else {
		fprintf(stderr, "kvfsctl: %s: %s\n", store, strerror(-rc));
	}
	kv_index_close(ix);
	return rc ? 1 : 0;
}

static void human(char *buf, size_t len, double v)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* The value of sample name (with labels, if any) in Prometheus text. */
static int sample(const char *text, const char *name, double *v)
{
	size_t n = strlen(name);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return sscanf(p + n + 1, "%lf", v) == 1 ? 0 : -1;
	return -1;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = calloc(1, 65536);
	n = buf ? fread(buf, 1, 65535, f) : 0;
	fclose(f);
	if (buf)
		buf[n] = 0;
	return buf;
}

static int cmd_stats(const char *mnt)
{
	static const struct {
		const char *label, *name;
		int bytes;
	} rows[] = {
		{ "stored", "kvfs_stored_bytes", 1 },
		{ "capacity", "kvfs_capacity_bytes", 1 },
		{ "logical", "kvfs_logical_bytes", 1 },
		{ "contexts", "kvfs_contexts", 0 },
		{ "files", "kvfs_files", 0 },
		{ "hits", "kvfs_hits_total", 0 },
		{ "misses", "kvfs_misses_total", 0 },
		{ "evicted (lru)", "kvfs_evictions_total{reason=\"lru\"}", 0 },
		{ "evicted (ttl)", "kvfs_evictions_total{reason=\"ttl\"}", 0 },
		{ "evicted (manual)", "kvfs_evictions_total{reason=\"manual\"}", 0 },
		{ "refused (ENOSPC)", "kvfs_enospc_total", 0 },
		{ "read", "kvfs_read_bytes_total", 1 },
		{ "written", "kvfs_written_bytes_total", 1 },
		{ "DRAM tier", "kvfs_tier_bytes", 1 },
		{ "DRAM tier hits", "kvfs_tier_hits_total", 0 },
		{ "DRAM tier misses", "kvfs_tier_misses_total", 0 },
	};
	char path[4200], val[64];
	char *text;
	double v, logical = 0, stored = 0;

	snprintf(path, sizeof(path), "%s/.kvfs/stats", mnt);
	text = slurp(path);
	if (!text) {
		fprintf(stderr, "kvfsctl: %s: %s (is a kvfs mounted there?)\n", path,
			strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (sample(text, rows[i].name, &v)) {
			fprintf(stderr, "kvfsctl: %s lacks %s\n", path, rows[i].name);
			free(text);
			return 1;
		}
		if (rows[i].bytes)
			human(val, sizeof(val), v);
		else
			snprintf(val, sizeof(val), "%.0f", v);
		printf("%-18s %s\n", rows[i].label, val);
	}
	sample(text, "kvfs_logical_bytes", &logical);
	sample(text, "kvfs_stored_bytes", &stored);
	printf("%-18s %.2f\n", "ratio", stored ? logical / stored : 1.0);
	free(text);
	return 0;
}

struct ctx_entry {
	char path[4096];
	double last_access;
	char logical[32], stored[32], ttl[32], pin[8];
};

static int by_recency(const void *a, const void *b)
{
	double x = ((const struct ctx_entry *)a)->last_access;
	double y = ((const struct ctx_entry *)b)->last_access;

	return x < y ? 1 : x > y ? -1 : 0;
}

static void attr(const char *path, const char *name, char *buf, size_t len)
{
	ssize_t n = getxattr(path, name, buf, len - 1);

	buf[n > 0 ? n : 0] = 0;
	if (n <= 0)
		snprintf(buf, len, "-");
}

struct ctx_list {
	struct ctx_entry *v;
	size_t n, cap;
};

/* Collect the directories at depth levels below dir (0: dir itself). */
static void walk(const char *dir, const char *rel, int levels, struct ctx_list *l)
{
	DIR *d;
	struct dirent *e;

	if (levels == 0) {
		struct ctx_entry *c;
		char v[64];
		if (kv_grow(&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
			return;
		c = &l->v[l->n++];
		snprintf(c->path, sizeof(c->path), "%s", rel);
		attr(dir, "user.kvfs.last_access", v, sizeof(v));
		c->last_access = atof(v);
		attr(dir, "user.kvfs.logical_bytes", c->logical, sizeof(c->logical));
		attr(dir, "user.kvfs.stored_bytes", c->stored, sizeof(c->stored));
		attr(dir, "user.kvfs.ttl", c->ttl, sizeof(c->ttl));
		attr(dir, "user.kvfs.pin", c->pin, sizeof(c->pin));
		return;
	}
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		char sub[4096], subrel[4096];
		struct stat sb;
		if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		snprintf(subrel, sizeof(subrel), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
		if (lstat(sub, &sb) || (!S_ISDIR(sb.st_mode) && levels > 1))
			continue;
		walk(sub, subrel, levels - 1, l);
	}
	closedir(d);
}

/* Length of the valid UTF-8 sequence at p, not a C1 control, or 0. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = p[0] < 0xc2 ? 0 : p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : p[0] < 0xf5 ? 4 : 0;
	unsigned lo = 0x80, hi = 0xbf;

	if (p[0] == 0xe0)
		lo = 0xa0; /* overlong */
	else if (p[0] == 0xed)
		hi = 0x9f; /* surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90; /* overlong */
	else if (p[0] == 0xf4)
		hi = 0x8f; /* past U+10FFFF */
	else if (p[0] == 0xc2)
		lo = 0xa0; /* C1 controls U+0080..U+009F */
	for (size_t i = 1; i < n; i++, lo = 0x80, hi = 0xbf)
		if (p[i] < lo || p[i] > hi)
			return 0;
	return n;
}

/* A name as one field of a row: names are any bytes but '/' and NUL, and
 * a newline or tab in one would forge rows or columns, an escape sequence
 * would drive the terminal. Every byte that is a control, a space, a
 * backslash or not part of UTF-8 is written \ooo, as in
 * /proc/self/mountinfo: always three digits, so a digit after one is
 * plain. out holds 4 * len + 1. */
static void escape_name(char *out, const char *name)
{
	const unsigned char *p = (const unsigned char *)name;

	while (*p) {
		size_t n = *p >= 0x80 ? utf8_len(p) : *p > ' ' && *p != '\\' && *p != 0x7f;
		if (n) {
			memcpy(out, p, n);
			out += n;
			p += n;
		} else {
			out += sprintf(out, "\\%03o", *p++);
		}
	}
	*out = 0;
}

static int cmd_ls(const char *mnt, const char *ns)
{
	char path[4200], *cfg, *p;
	struct ctx_list l = { 0 };
	int depth = 2;

	snprintf(path, sizeof(path), "%s/.kvfs/config", mnt);
	cfg = slurp(path);
	if (!cfg) {
		fprintf(stderr, "kvfsctl: %s: %s (is a kvfs mounted there?)\n", path,
			strerror(errno));
		return 1;
	}
	p = strstr(cfg, "context_depth=");
	if (p)
		depth = atoi(p + strlen("context_depth="));
	free(cfg);
	if (depth == 0) {
		fprintf(stderr, "kvfsctl: context_depth=0: every file is a context; use find\n");
		return 1;
	}
	if (ns) {
		snprintf(path, sizeof(path), "%s/%s", mnt, ns);
		walk(path, ns, depth - 1, &l);
	} else {
		walk(mnt, "", depth, &l);
	}
	qsort(l.v, l.n, sizeof(*l.v), by_recency);
	printf("%-40s %-20s %14s %14s %8s %4s\n", "context", "last access", "logical", "stored",
	       "ttl", "pin");
	for (size_t i = 0; i < l.n; i++) {
		char when[32], name[4 * sizeof(l.v[i].path) + 1];
		time_t t = (time_t)l.v[i].last_access;
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		escape_name(name, l.v[i].path);
		printf("%-40s %-20s %14s %14s %8s %4s\n", name, when, l.v[i].logical, l.v[i].stored,
		       l.v[i].ttl, l.v[i].pin);
	}
	free(l.v);
	return 0;
}

static int cmd_evict(const char *mnt, const char *size)
{
	char path[4200];
	FILE *f;
	int bad;

	snprintf(path, sizeof(path), "%s/.kvfs/evict", mnt);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "kvfsctl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	bad = fprintf(f, "%s\n", size) < 0;
	bad |= fclose(f) != 0;
	if (bad) {
		int e = errno;
		char now[64] = "", h[32], *text;
		double v;
		/* What is stored now, so that "more than that" has a figure. */
		snprintf(path, sizeof(path), "%s/.kvfs/stats", mnt);
		if ((text = slurp(path)) && !sample(text, "kvfs_stored_bytes", &v)) {
			human(h, sizeof(h), v);
			snprintf(now, sizeof(now), " (stored now: %s)", h);
		}
		free(text);
		if (e == ENOSPC)
			fprintf(stderr,
				"kvfsctl: evict to %s: pinned or open contexts hold more than "
				"that%s\n",
				size, now);
		else if (e == EIO)
			fprintf(stderr,
				"kvfsctl: evict to %s: a context could not be evicted: the index "
				"could not record it (the daemon's log says why)%s\n",
				size, now);
		else
			fprintf(stderr, "kvfsctl: evict to %s: %s\n", size, strerror(e));
		return 1;
	}
	return 0;
}

static int cmd_pin(const char *path, int pin)
{
	if (setxattr(path, "user.kvfs.pin", pin ? "1" : "0", 1, 0)) {
		fprintf(stderr, "kvfsctl: %s: %s%s\n", path, strerror(errno),
			errno == EINVAL ? " (not a context directory?)" : "");
		return 1;
	}
	return 0;
}

static int cmd_gc(const char *store)
{
	struct kv_fs *fs;
	char err[512], h[32];
	uint64_t freed = 0;
	int rc;

	rc = kv_fs_open_existing(store, &fs, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kvfsctl: %s\n", err);
		return 1;
	}
	rc = kv_fs_gc(fs, &freed);
	kv_fs_close(fs);
	if (rc) {
		fprintf(stderr, "kvfsctl: gc %s: %s\n", store, strerror(-rc));
		return 1;
	}
	human(h, sizeof(h), (double)freed);
	printf("reclaimed %s (%llu bytes)\n", h, (unsigned long long)freed);
	return 0;
}

/* Chunk indexes as ranges: "0-3 7 9-10". */
static void print_chunks(const uint64_t *v, size_t n)
{
	for (size_t i = 0, j; i < n; i = j + 1) {
		for (j = i; j + 1 < n && v[j + 1] == v[j] + 1; j++)
			;
		printf(j > i ? " %llu-%llu" : " %llu", (unsigned long long)v[i],
		       (unsigned long long)v[j]);
	}
}

static int fsck_repair(struct kv_fs *fs, const struct kv_fsck_report *r)
{
	unsigned long long cut = 0, gone = 0;
	int failed = 0;

	for (size_t i = 0; i < r->nbad; i++) {
		char path[4096];
		uint64_t size;
		int rc;
		kv_fs_path(fs, r->bad[i].ino, path, sizeof(path));
		rc = kv_fsck_repair(fs, &r->bad[i], &size);
		if (rc == KV_FSCK_TRUNCATED)
			printf("%s: truncated from %llu to %llu bytes (chunks %llu and up freed)\n",
			       path, (unsigned long long)r->bad[i].size, (unsigned long long)size,
			       (unsigned long long)r->bad[i].bad[0]);
		else if (rc == KV_FSCK_REMOVED)
			printf("%s: removed (chunk 0 damaged)\n", path);
		else
			fprintf(stderr, "kvfsctl: fsck: cannot repair %s: %s\n", path,
				strerror(-rc));
		cut += rc == KV_FSCK_TRUNCATED;
		gone += rc == KV_FSCK_REMOVED;
		failed |= rc < 0;
	}
	printf("repaired %llu files: %llu truncated, %llu removed\n", cut + gone, cut, gone);
	return failed;
}

/* Damaged segments, then each damaged file once, then the totals. */
static void fsck_print(struct kv_fs *fs, const struct kv_fsck_report *r, double seconds)
{
	char path[4096], h[32];

	for (size_t i = 0; i < r->nsegs; i++)
		if (r->segs[i].missing)
			printf("segment %08x.seg: missing\n", r->segs[i].seg);
		else
			printf("segment %08x.seg: %llu bytes, too short for the records the index "
			       "names in it\n",
			       r->segs[i].seg, (unsigned long long)r->segs[i].size);
	for (size_t i = 0; i < r->nbad; i++) {
		printf("%s: damaged chunk%s", kv_fs_path(fs, r->bad[i].ino, path, sizeof(path)),
		       r->bad[i].nbad > 1 ? "s" : "");
		print_chunks(r->bad[i].bad, r->bad[i].nbad);
		printf("\n");
	}
	human(h, sizeof(h), (double)r->bytes);
	printf("checked %llu files, %llu chunks, %s (%llu bytes) in %.1f s: %zu damaged files, "
	       "%llu damaged chunks\n",
	       (unsigned long long)r->files, (unsigned long long)r->chunks, h,
	       (unsigned long long)r->bytes, seconds, r->nbad, (unsigned long long)r->bad_chunks);
}

/* Exit status: 0 clean, 1 damaged (repaired or not), 2 could not check or
 * repair. */
static int cmd_fsck(const char *store, int repair)
{
	struct kv_fsck_report r;
	uint64_t t0, t1;
	struct kv_fs *fs;
	char err[512];
	int rc;

	rc = kv_fs_open_existing(store, &fs, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kvfsctl: fsck: %s\n", err);
		return 2;
	}
	t0 = kv_mono_ns();
	rc = kv_fsck_check(fs, 0, &r);
	t1 = kv_mono_ns();
	if (rc) {
		fprintf(stderr, "kvfsctl: fsck %s: %s\n", store, strerror(-rc));
		kv_fs_close(fs);
		return 2;
	}
	if (r.index_problems) {
		printf("index %s/kvfs.db is damaged (%d problem%s; the first: %s); chunks not "
		       "checked: run `kvfsctl rebuild %s` (docs/reliability.md)\n",
		       store, r.index_problems, r.index_problems > 1 ? "s" : "", r.index_msg, store);
		kv_fs_close(fs);
		return 1;
	}
	fsck_print(fs, &r, (double)(t1 - t0) / 1e9);
	rc = r.nbad ? 1 : 0;
	if (repair && r.nbad && fsck_repair(fs, &r))
		rc = 2;
	kv_fsck_report_free(&r);
	kv_fs_close(fs);
	return rc;
}

struct depth_arg {
	struct kv_fs *fs;
	int lost;
};

static void depth_report(void *arg, uint64_t ino, const struct kv_ctx_row *r, int carried)
{
	struct depth_arg *d = arg;
	char path[4096], ttl[32] = "";

	d->lost |= !carried;
	kv_fs_path(d->fs, ino, path, sizeof(path));
	if (r->ttl >= 0)
		snprintf(ttl, sizeof(ttl), "%sttl %lld", r->pin ? ", " : "", (long long)r->ttl);
	printf(carried ? "%s: %s%s\n"
		       : "%s: %s%s not carried: no context at the new depth "
			 "holds it or lies in it\n",
	       path, r->pin ? "pin" : "", ttl);
}

/* Show or change the store's context depth. Exit status: 0 done, 1 done
 * but some pin or TTL had no context to go to, 2 not done. */
static int cmd_context_depth(const char *store, const char *n)
{
	struct depth_arg d = { 0 };
	struct kv_fs *fs;
	char err[512], *end = "";
	long depth = n ? strtol(n, &end, 10) : 0;
	int rc, from;

	if (n && (*n < '0' || *n > '9' || *end || depth > 16)) {
		fprintf(stderr, "kvfsctl: context-depth: %s: expected 0..16\n", n);
		return 2;
	}
	rc = kv_fs_open_existing(store, &fs, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kvfsctl: context-depth: %s\n", err);
		return 2;
	}
	from = kv_fs_config(fs)->context_depth;
	if (!n || depth == from) {
		printf("context_depth=%d\n", from);
		kv_fs_close(fs);
		return 0;
	}
	d.fs = fs;
	rc = kv_fs_set_context_depth(fs, (int)depth, depth_report, &d);
	kv_fs_close(fs);
	if (rc) {
		fprintf(stderr, "kvfsctl: context-depth %s %ld: %s\n", store, depth, strerror(-rc));
		return 2;
	}
	printf("context_depth=%ld (was %d)\n", depth, from);
	return d.lost;
}

/* Exit status: 0 rebuilt and nothing lost, 1 rebuilt with files cut short
 * or moved to /lost+found, 2 not rebuilt. */
static int cmd_rebuild(const char *store)
{
	struct kv_rebuild_report r;
	char err[512];
	int rc = kv_rebuild(store, stdout, &r, err, sizeof(err));

	if (rc) {
		fprintf(stderr, "kvfsctl: rebuild: %s\n", err);
		return 2;
	}
	if (*r.old_db)
		printf("old index moved to %s\n", r.old_db);
	printf("scanned %llu segments: %llu chunk records, %llu inode records, %llu damaged\n",
	       (unsigned long long)r.segments, (unsigned long long)r.chunk_records,
	       (unsigned long long)r.inode_records, (unsigned long long)r.bad_records);
	printf("rebuilt %llu files (%llu bytes in %llu chunks), %llu directories, %llu others; "
	       "%llu cut short, %llu in /lost+found\n",
	       (unsigned long long)r.files, (unsigned long long)r.bytes,
	       (unsigned long long)r.chunks, (unsigned long long)r.dirs,
	       (unsigned long long)r.others, (unsigned long long)r.damaged,
	       (unsigned long long)r.lost);
	return r.damaged || r.lost ? 1 : 0;
}

int main(int argc, char *argv[])
{
	const char *cmd = argc > 1 ? argv[1] : "";

	kv_log_set_level(KV_LOG_WARN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "info") && argc == 3)
		return cmd_info(argv[2]);
	if (!strcmp(cmd, "stats") && argc == 3)
		return cmd_stats(argv[2]);
	if (!strcmp(cmd, "ls") && (argc == 3 || argc == 4))
		return cmd_ls(argv[2], argc == 4 ? argv[3] : NULL);
	if (!strcmp(cmd, "evict") && argc == 5 && !strcmp(argv[3], "--to"))
		return cmd_evict(argv[2], argv[4]);
	if ((!strcmp(cmd, "pin") || !strcmp(cmd, "unpin")) && argc == 3)
		return cmd_pin(argv[2], !strcmp(cmd, "pin"));
	if (!strcmp(cmd, "gc") && argc == 3)
		return cmd_gc(argv[2]);
	if (!strcmp(cmd, "fsck") && argc == 3)
		return cmd_fsck(argv[2], 0);
	if (!strcmp(cmd, "fsck") && argc == 4 && !strcmp(argv[3], "--repair"))
		return cmd_fsck(argv[2], 1);
	if (!strcmp(cmd, "rebuild") && argc == 3)
		return cmd_rebuild(argv[2]);
	if (!strcmp(cmd, "context-depth") && (argc == 3 || argc == 4))
		return cmd_context_depth(argv[2], argc == 4 ? argv[3] : NULL);
	fprintf(stderr, "kvfsctl: unknown command or arguments: %s\n", cmd);
	usage(stderr);
	return 2;
}
