/* SPDX-License-Identifier: Apache-2.0 */
#include "opt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kv_opt {
	const char *name;
	const char *values;
	const char *def;
	const char *help;
	int (*set)(struct kv_config *cfg, const char *v, char *err, size_t errlen);
	void (*show)(const struct kv_config *cfg, char *buf, size_t len);
};

static int is_pow2(size_t v) { return v && !(v & (v - 1)); }

int kv_opt_parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (size_t)(v << shift);
	return 0;
}

static int set_codec(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	const char *colon = strchr(v, ':');
	size_t n = colon ? (size_t)(colon - v) : strlen(v);

	if (n == 4 && !strncmp(v, "none", 4) && !colon) {
		cfg->codec = KV_CODEC_NONE;
		return 0;
	}
	if (n == 3 && !strncmp(v, "lz4", 3) && !colon) {
		cfg->codec = KV_CODEC_LZ4;
		return 0;
	}
	if (n == 4 && !strncmp(v, "zstd", 4)) {
		long lvl = 1;
		if (colon) {
			char *end;
			lvl = strtol(colon + 1, &end, 10);
			if (colon[1] < '0' || colon[1] > '9' || *end || lvl < 1 || lvl > 19) {
				snprintf(err, errlen, "codec=%s: zstd level must be 1..19", v);
				return -EINVAL;
			}
		}
		cfg->codec = KV_CODEC_ZSTD;
		cfg->level = (int)lvl;
		return 0;
	}
	snprintf(err, errlen, "codec=%s: expected none, lz4 or zstd[:LEVEL]", v);
	return -EINVAL;
}

static int set_shuffle(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (!strcmp(v, "auto"))
		cfg->shuffle = KV_SHUFFLE_AUTO;
	else if (!strcmp(v, "off"))
		cfg->shuffle = 0;
	else if (!strcmp(v, "2") || !strcmp(v, "4"))
		cfg->shuffle = v[0] - '0';
	else {
		snprintf(err, errlen, "shuffle=%s: expected auto, off, 2 or 4", v);
		return -EINVAL;
	}
	return 0;
}

static int set_chunk(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	size_t sz;

	if (kv_opt_parse_size(v, &sz) || !is_pow2(sz) || sz < (64 << 10) || sz > (16 << 20)) {
		snprintf(err, errlen, "chunk=%s: expected a power of two from 64K to 16M", v);
		return -EINVAL;
	}
	cfg->chunk = sz;
	return 0;
}

static int set_ram(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (kv_opt_parse_size(v, &cfg->ram)) {
		snprintf(err, errlen, "ram=%s: expected a size such as 512M or 2G", v);
		return -EINVAL;
	}
	return 0;
}

static int set_wbuf(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (kv_opt_parse_size(v, &cfg->wbuf) || cfg->wbuf < KV_WBUF_MIN) {
		snprintf(err, errlen, "wbuf=%s: expected a size of at least 16M, such as 256M", v);
		return -EINVAL;
	}
	return 0;
}

static int set_workers(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (!strcmp(v, "auto")) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->workers = cpus > 0 ? (int)(cpus > 64 ? 64 : cpus) : 2;
		return 0;
	}
	if (!*v || *end || n < 1 || n > 64) {
		snprintf(err, errlen, "workers=%s: expected auto or 1..64", v);
		return -EINVAL;
	}
	cfg->workers = (int)n;
	return 0;
}

static int set_segment(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	size_t sz;

	if (kv_opt_parse_size(v, &sz) || sz < (16 << 20) || sz > ((size_t)64 << 30)) {
		snprintf(err, errlen, "segment=%s: expected a size from 16M to 64G", v);
		return -EINVAL;
	}
	cfg->segment = sz;
	return 0;
}

static int set_capacity(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (kv_opt_parse_size(v, &cfg->capacity)) {
		snprintf(err, errlen, "capacity=%s: expected a size such as 200G, or 0 for none", v);
		return -EINVAL;
	}
	return 0;
}

static int parse_pct(const char *v, int *out)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v < '0' || *v > '9' || (*end && strcmp(end, "%")) || n < 1 || n > 100)
		return -EINVAL;
	*out = (int)n;
	return 0;
}

static int set_high(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (parse_pct(v, &cfg->high)) {
		snprintf(err, errlen, "high=%s: expected a percentage 1..100", v);
		return -EINVAL;
	}
	return 0;
}

static int set_low(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (parse_pct(v, &cfg->low)) {
		snprintf(err, errlen, "low=%s: expected a percentage 1..100", v);
		return -EINVAL;
	}
	return 0;
}

static int set_min_free(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n && v[n - 1] == '%') {
		if (parse_pct(v, &cfg->min_free_pct) || cfg->min_free_pct > 90)
			goto bad;
		cfg->min_free = 0;
		return 0;
	}
	if (kv_opt_parse_size(v, &cfg->min_free))
		goto bad;
	cfg->min_free_pct = 0;
	return 0;
bad:
	snprintf(err, errlen,
		 "min_free=%s: expected a size such as 10G or a percentage such as 5%%", v);
	return -EINVAL;
}

static int set_ttl(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	char *end;
	long long n = strtoll(v, &end, 10);

	if (*v < '0' || *v > '9' || *end || n < 0 || n > 1000000000) {
		snprintf(err, errlen, "ttl=%s: expected seconds up to 1000000000 (0 = none)", v);
		return -EINVAL;
	}
	cfg->ttl = n;
	return 0;
}

static int set_depth(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v < '0' || *v > '9' || *end || n > 16) {
		snprintf(err, errlen, "context_depth=%s: expected 0..16", v);
		return -EINVAL;
	}
	cfg->context_depth = (int)n;
	return 0;
}

static int set_gpu(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (strcmp(v, "auto") && strcmp(v, "cuda") && strcmp(v, "hip") && strcmp(v, "off") &&
	    (v[0] != '/' || n < 4 || strcmp(v + n - 3, ".so") || n >= sizeof(cfg->gpu))) {
		snprintf(err, errlen,
			 "gpu=%s: expected auto, cuda, hip, off or the absolute path "
			 "of a plugin .so",
			 v);
		return -EINVAL;
	}
	memcpy(cfg->gpu, v, n + 1);
	return 0;
}

static int set_gpu_pin(struct kv_config *cfg, const char *v, char *err, size_t errlen)
{
	if (kv_opt_parse_size(v, &cfg->gpu_pin)) {
		snprintf(err, errlen, "gpu_pin=%s: expected a size such as 4G, or 0 for none", v);
		return -EINVAL;
	}
	return 0;
}

static void show_codec(const struct kv_config *c, char *b, size_t n)
{
	static const char *const names[] = { "none", "lz4", "zstd" };

	if (c->codec == KV_CODEC_ZSTD)
		snprintf(b, n, "zstd:%d", c->level);
	else
		snprintf(b, n, "%s", names[c->codec]);
}

static void show_shuffle(const struct kv_config *c, char *b, size_t n)
{
	if (c->shuffle == KV_SHUFFLE_AUTO)
		snprintf(b, n, "auto");
	else if (!c->shuffle)
		snprintf(b, n, "off");
	else
		snprintf(b, n, "%d", c->shuffle);
}

static void show_min_free(const struct kv_config *c, char *b, size_t n)
{
	if (c->min_free_pct)
		snprintf(b, n, "%d%%", c->min_free_pct);
	else
		snprintf(b, n, "%zu", c->min_free);
}

#define SHOW(name, fmt, expr) \
	static void show_##name(const struct kv_config *c, char *b, size_t n) \
	{ \
		snprintf(b, n, fmt, expr); \
	}
SHOW(chunk, "%zu", c->chunk)
SHOW(ram, "%zu", c->ram)
SHOW(wbuf, "%zu", c->wbuf)
SHOW(workers, "%d", c->workers)
SHOW(segment, "%zu", c->segment)
SHOW(capacity, "%zu", c->capacity)
SHOW(high, "%d", c->high)
SHOW(low, "%d", c->low)
SHOW(ttl, "%lld", (long long)c->ttl)
SHOW(depth, "%d", c->context_depth)
SHOW(gpu, "%s", c->gpu)
SHOW(gpu_pin, "%zu", c->gpu_pin)

static const struct kv_opt kv_opts[] = {
	{ "codec", "none|lz4|zstd[:LEVEL]", "lz4",
	  "compression of each chunk; zstd levels 1..19 (zstd alone means zstd:1)", set_codec,
	  show_codec },
	{ "shuffle", "auto|off|2|4", "auto",
	  "byte-shuffle filter before compression (element size in bytes); auto tries 2 on one chunk in 16 of each file",
	  set_shuffle, show_shuffle },
	{ "chunk", "SIZE", "1M",
	  "files are cut into chunks of this size (power of two, 64K..16M), each compressed alone; "
	  "fixed when the store is created",
	  set_chunk, show_chunk },
	{ "ram", "SIZE", "128M",
	  "DRAM tier: budget for decompressed chunks kept in memory; at most half of physical "
	  "memory (a larger value is lowered at mount, with a warning)",
	  set_ram, show_ram },
	{ "wbuf", "SIZE", "256M",
	  "write buffers of all open files together: data written but not yet compressed; "
	  "above it writers compress the oldest buffered chunks first; at most a quarter of "
	  "physical memory (lowered at mount, with a warning)",
	  set_wbuf, show_wbuf },
	{ "workers", "N|auto", "auto", "compression worker threads (auto: one per online CPU)",
	  set_workers, show_workers },
	{ "segment", "SIZE", "1G", "size at which the chunk store starts a new segment file",
	  set_segment, show_segment },
	{ "capacity", "SIZE", "0",
	  "hard cap on stored (compressed) bytes; least recently used contexts are evicted to "
	  "stay under it (0: no cap)",
	  set_capacity, show_capacity },
	{ "high", "PCT", "95", "background eviction starts above this percentage of capacity",
	  set_high, show_high },
	{ "low", "PCT", "90", "... and evicts down to this percentage", set_low, show_low },
	{ "min_free", "SIZE|PCT%", "0",
	  "free space kept on the backing filesystem, evicting as for capacity (0: none)",
	  set_min_free, show_min_free },
	{ "ttl", "SECONDS", "0",
	  "contexts not accessed for this long are evicted (0: never); user.kvfs.ttl overrides "
	  "it per context",
	  set_ttl, show_ttl },
	{ "context_depth", "N", "2",
	  "directory depth of a context, the unit of LRU, TTL, pinning and eviction "
	  "(2: <namespace>/<context>/; 0: every file)",
	  set_depth, show_depth },
	{ "gpu", "auto|cuda|hip|off|PATH", "auto",
	  "GPU backend plugin for the ioctl fast path, started at the first GPU request "
	  "(auto: the first of cuda, hip that finds a device; off: none)",
	  set_gpu, show_gpu },
	{ "gpu_pin", "SIZE", "4G",
	  "page-locked windows of segment files from which GPU loads of chunks stored raw copy "
	  "straight out of the page cache (pages held there cannot be reclaimed; 0: off)",
	  set_gpu_pin, show_gpu_pin },
};

#define KV_NOPTS (sizeof(kv_opts) / sizeof(kv_opts[0]))

void kv_opt_defaults(struct kv_config *cfg)
{
	char err[128];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < KV_NOPTS; i++)
		kv_opts[i].set(cfg, kv_opts[i].def, err, sizeof(err));
}

int kv_opt_known(const char *name)
{
	for (size_t i = 0; i < KV_NOPTS; i++)
		if (!strcmp(kv_opts[i].name, name))
			return 1;
	return 0;
}

int kv_opt_set(struct kv_config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	for (size_t i = 0; i < KV_NOPTS; i++) {
		if (strcmp(kv_opts[i].name, name))
			continue;
		if (!value) {
			snprintf(err, errlen, "%s: needs a value (%s=%s)", name, name,
				 kv_opts[i].values);
			return -EINVAL;
		}
		if (kv_opts[i].set(cfg, value, err, errlen))
			return -EINVAL;
		cfg->given |= 1u << i;
		return 0;
	}
	snprintf(err, errlen, "unknown option '%s'", name);
	return -ENOENT;
}

int kv_opt_given(const struct kv_config *cfg, const char *name)
{
	for (size_t i = 0; i < KV_NOPTS; i++)
		if (!strcmp(kv_opts[i].name, name))
			return !!(cfg->given & (1u << i));
	return 0;
}

/* What kvfs does and the options it takes besides the table's (main.c
 * parses them), for --help and the manual page. A newline is where --help
 * breaks the line; the manual page fills its paragraphs. */
static const char kv_description[] =
	"Mounts the KV-cache store in directory STORE (created when absent) on\n"
	"MOUNTPOINT. Contexts are directories <namespace>/<context>/ of per-layer files.";

static const struct {
	const char *flags, *help;
} kv_general[] = {
	{ "-h, --help", "print this help and exit" },
	{ "-V, --version", "print the version and exit" },
	{ "-f", "stay in the foreground" },
	{ "-d, -o debug", "foreground, with every FUSE request logged" },
	{ "-s", "single-threaded request loop" },
	{ "-o allow_other", "let other users reach the mount (needs user_allow_other\n"
			    "in /etc/fuse.conf when not root)" },
	{ "--options-markdown", "print the -o options as a Markdown table and exit" },
	{ "--man", "print this manual page (troff) and exit" },
};

#define KV_NGENERAL (sizeof(kv_general) / sizeof(kv_general[0]))

void kv_opt_print_help(FILE *out)
{
	fprintf(out, "usage: kvfs [options] STORE MOUNTPOINT\n\n%s\n\ngeneral options:\n",
		kv_description);
	for (size_t i = 0; i < KV_NGENERAL; i++) {
		fprintf(out, "    %-22s ", kv_general[i].flags);
		for (const char *h = kv_general[i].help; *h; h++)
			if (*h == '\n')
				fprintf(out, "\n%27s", "");
			else
				fputc(*h, out);
		fprintf(out, "\n");
	}
	fprintf(out, "\nkvfs options (-o name=value[,name=value...]):\n");
	for (size_t i = 0; i < KV_NOPTS; i++) {
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "%s=%s", kv_opts[i].name, kv_opts[i].values);
		fprintf(out, "    -o %-28s %s (default %s)\n", lhs, kv_opts[i].help, kv_opts[i].def);
	}
}

/* Text for troff: a backslash is \e, a line never starts with a control
 * character, and in option names '-' is a minus (\-), not a hyphen. */
static void troff(FILE *out, const char *s, int minus)
{
	for (int bol = 1; *s; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", out);
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-' && minus)
			fputs("\\-", out);
		else
			fputc(*s, out);
		bol = *s == '\n';
	}
}

void kv_opt_print_man(FILE *out)
{
	fprintf(out,
		".TH KVFS 1 \"\" \"kvfs %s\" \"kvfs\"\n"
		".SH NAME\nkvfs \\- a filesystem for LLM KV caches\n"
		".SH SYNOPSIS\n.B kvfs\n[\\fIoptions\\fR] \\fISTORE MOUNTPOINT\\fR\n"
		".SH DESCRIPTION\n",
		KVFS_VERSION);
	troff(out, kv_description, 0);
	fprintf(out, "\n.SH OPTIONS\n");
	for (size_t i = 0; i < KV_NGENERAL; i++) {
		fprintf(out, ".TP\n.B ");
		troff(out, kv_general[i].flags, 1);
		fprintf(out, "\n");
		troff(out, kv_general[i].help, 0);
		fprintf(out, "\n");
	}
	fprintf(out,
		".SH MOUNT OPTIONS\n"
		"Given as \\fB\\-o\\fR \\fIname\\fR=\\fIvalue\\fR[,\\fIname\\fR=\\fIvalue\\fR...]. "
		"Sizes take K, M, G or T suffixes (powers of 1024). Mount options libfuse knows "
		"(allow_other, ro, ...) are passed through; unknown or malformed options stop kvfs "
		"with a message and exit status 1.\n");
	for (size_t i = 0; i < KV_NOPTS; i++) {
		fprintf(out, ".TP\n.B \\-o ");
		troff(out, kv_opts[i].name, 1);
		fputc('=', out);
		troff(out, kv_opts[i].values, 1);
		fprintf(out, "\n");
		troff(out, kv_opts[i].help, 0);
		fprintf(out, " (default %s)\n", kv_opts[i].def);
	}
	fprintf(out,
		".SH EXIT STATUS\n"
		"0 once the mount is unmounted, or when SIGTERM, SIGINT or SIGHUP stopped kvfs "
		"(it unmounts and closes the store cleanly first); 1 when the options are wrong, "
		"the store cannot be opened or the mount fails.\n"
		".SH SEE ALSO\n.BR fusermount3 (1),\n.BR mount.fuse3 (8),\n"
		"kvfsctl help, and the README of kvfs.\n");
}

void kv_opt_print_markdown(FILE *out)
{
	fprintf(out, "| option | values | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < KV_NOPTS; i++) {
		fprintf(out, "| `%s` | `", kv_opts[i].name);
		/* A bare '|' would end the table cell. */
		for (const char *v = kv_opts[i].values; *v; v++)
			fprintf(out, *v == '|' ? "\\|" : "%c", *v);
		fprintf(out, "` | `%s` | %s |\n", kv_opts[i].def, kv_opts[i].help);
	}
}

/* A size in the largest unit that holds it whole, as the options take it. */
static void size_str(char *b, size_t n, uint64_t v)
{
	static const char units[] = "KMGT";
	int u = 0;

	while (u < 4 && v && !(v & 1023)) {
		v >>= 10;
		u++;
	}
	snprintf(b, n, u ? "%llu%c" : "%llu", (unsigned long long)v, u ? units[u - 1] : 0);
}

/* A budget over its share of memory is lowered to that share, in whole
 * MiB; msg gets what was done. */
static void fit(const char *name, size_t *v, uint64_t share, uint64_t mem, const char *part,
		char *msg, size_t len)
{
	size_t used = strlen(msg);
	char was[32], now[32], all[32];

	share &= ~(uint64_t)((1 << 20) - 1);
	if (*v <= share)
		return;
	size_str(was, sizeof(was), *v);
	size_str(now, sizeof(now), share);
	size_str(all, sizeof(all), mem & ~(uint64_t)((1 << 20) - 1));
	snprintf(msg + used, len - used,
		 "%s%s=%s is more than %s of the %s of memory: lowered "
		 "to %s",
		 used ? "; " : "", name, was, part, all, now);
	*v = (size_t)share;
}

int kv_opt_fit_memory(struct kv_config *cfg, uint64_t mem, char *msg, size_t len)
{
	uint64_t wbuf_max = mem / 4 > KV_WBUF_MIN ? mem / 4 : KV_WBUF_MIN;

	msg[0] = 0;
	if (!mem)
		return 0;
	fit("ram", &cfg->ram, mem / 2, mem, "half", msg, len);
	fit("wbuf", &cfg->wbuf, wbuf_max, mem, "a quarter", msg, len);
	return msg[0] != 0;
}

void kv_opt_format(const struct kv_config *cfg, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = 0;
	for (size_t i = 0; i < KV_NOPTS && used < len; i++) {
		char v[64];
		int n;
		kv_opts[i].show(cfg, v, sizeof(v));
		n = snprintf(buf + used, len - used, "%s=%s\n", kv_opts[i].name, v);
		used += n > 0 ? (size_t)n : 0;
	}
}
