/* SPDX-License-Identifier: Apache-2.0 */
/* kv_opt: the mount options. One table (opt.c) drives parsing, --help and
 * the options table in README.md/docs (kvfs --options-markdown). */
#ifndef KV_OPT_H
#define KV_OPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum kv_codec_id { KV_CODEC_NONE = 0, KV_CODEC_LZ4 = 1, KV_CODEC_ZSTD = 2 };

/* The smallest wbuf: a few chunks of the largest size. */
#define KV_WBUF_MIN ((size_t)16 << 20)

/* shuffle: KV_SHUFFLE_AUTO picks per chunk between off and 2-byte shuffle. */
#define KV_SHUFFLE_AUTO (-1)

struct kv_config {
	enum kv_codec_id codec;
	int level;         /* zstd level; ignored for other codecs */
	int shuffle;       /* KV_SHUFFLE_AUTO, 0 (off), 2 or 4: element size */
	size_t chunk;      /* chunk size in bytes, power of two */
	size_t ram;        /* DRAM tier budget in bytes */
	size_t wbuf;       /* write buffers of all open files together, bytes */
	int workers;       /* compression worker threads */
	size_t segment;    /* segment file size before rolling over */
	size_t capacity;   /* cap on stored bytes, 0 = none */
	int high, low;     /* eviction watermarks, percent of capacity */
	size_t min_free;   /* free-space floor of the backing filesystem, bytes */
	int min_free_pct;  /* ... or percent of its size (when min_free is 0) */
	int64_t ttl;       /* default context time to live, seconds, 0 = none */
	int context_depth; /* directory depth of a context; 0 = every file */
	char gpu[256];     /* GPU backend: auto, cuda, hip, off or a plugin path */
	size_t gpu_pin;    /* bytes of segment windows page-locked for GPU loads */
	unsigned given;    /* options set by the user, one bit per table row */
	int mount;         /* not an option: opened by the daemon (recovers after a crash) */
	int allow_other;   /* not an option: libfuse's allow_other, other users reach the mount */
};

/* Fill cfg with the defaults from the table. */
void kv_opt_defaults(struct kv_config *cfg);

/* Apply "name=value". Returns 0, -ENOENT for an unknown name, -EINVAL for a
 * bad value (with a message in err). */
int kv_opt_set(struct kv_config *cfg, const char *name, const char *value, char *err, size_t errlen);

/* Is name one of ours? */
int kv_opt_known(const char *name);
/* Did the user set option name (through kv_opt_set)? */
int kv_opt_given(const struct kv_config *cfg, const char *name);

/* kvfs --help: usage, the general options and this table. */
void kv_opt_print_help(FILE *out);
/* The table as the README's Markdown table (kvfs --options-markdown). */
void kv_opt_print_markdown(FILE *out);
/* The manual page kvfs(1) in troff, from the same text (kvfs --man). */
void kv_opt_print_man(FILE *out);
/* The effective configuration, one "name=value" line per option. */
void kv_opt_format(const struct kv_config *cfg, char *buf, size_t len);

/* Lower ram to half of mem bytes of memory and wbuf to a quarter (not
 * under KV_WBUF_MIN), in whole MiB: a budget the machine cannot hold
 * would only end in the OOM killer. Returns 1 with what was lowered in
 * msg (len > 0), else 0 (mem 0: unknown, nothing done). Pure, for tests:
 * the daemon passes the physical memory at mount. */
int kv_opt_fit_memory(struct kv_config *cfg, uint64_t mem, char *msg, size_t len);

/* "64K", "1M", "2G", "4096" -> bytes. Returns 0 or -EINVAL. */
int kv_opt_parse_size(const char *s, size_t *out);

#endif
