/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of kv_opt (src/base/opt.h): sizes, each option's valid and invalid
 * values, defaults, the effective-configuration line and the help tables. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvtest.h"
#include "opt.h"

static size_t nproc_auto(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? (size_t)(cpus > 64 ? 64 : cpus) : 2;
}

/* ---- kv_opt_parse_size ---- */

static const struct {
	const char *in;
	uint64_t want;
} good_sizes[] = {
	{ "0", 0 },
	{ "12", 12 },
	{ "4096", 4096 },
	{ "64K", 64u << 10 },
	{ "64k", 64u << 10 },
	{ "1M", 1u << 20 },
	{ "1m", 1u << 20 },
	{ "1G", 1u << 30 },
	{ "2g", 2ull << 30 },
	{ "1T", 1ull << 40 },
	{ "1MiB", 1u << 20 },
	{ "64KiB", 64u << 10 },
	{ "1GB", 1u << 30 },
	{ "1Mb", 1u << 20 },
	{ "512B", 512 },
	{ "16777215T", 16777215ull << 40 },
	{ "18446744073709551615", UINT64_MAX },
};

static void good_size_case(int _i)
{
	size_t v = 7;

	ck_assert_msg(kv_opt_parse_size(good_sizes[_i].in, &v) == 0, "\"%s\" refused",
		      good_sizes[_i].in);
	ck_assert_msg(v == good_sizes[_i].want, "\"%s\" -> %zu, want %llu", good_sizes[_i].in, v,
		      (unsigned long long)good_sizes[_i].want);
}

START_TEST(test_parse_size_good)
{
	for (int i = 0; i < (int)(sizeof(good_sizes) / sizeof(good_sizes[0])); i++)
		good_size_case(i);
}
END_TEST

static const char *const bad_sizes[] = {
	"",
	"-1",
	"-0",
	"-64K",
	"1X",
	"K",
	"M",
	"1.5M",
	"1 M",
	"1MX",
	"1MiBB",
	"1iB",
	"0x10",
	"12abc",
	"1KK",
	"18446744073709551616", /* 2^64: strtoull overflow */
	"99999999999999999999999",
	"17179869184G",       /* 2^34 G = 2^64 bytes */
	"16777216T",          /* 2^24 T = 2^64 bytes */
	"18014398509481984K", /* 2^54 K = 2^64 bytes */
};

static void bad_size_case(int _i)
{
	size_t v = 12345;

	ck_assert_msg(kv_opt_parse_size(bad_sizes[_i], &v) == -EINVAL, "\"%s\" accepted as %zu",
		      bad_sizes[_i], v);
	ck_assert_msg(v == 12345, "\"%s\": output changed on error", bad_sizes[_i]);
}

START_TEST(test_parse_size_bad)
{
	for (int i = 0; i < (int)(sizeof(bad_sizes) / sizeof(bad_sizes[0])); i++)
		bad_size_case(i);
}
END_TEST

START_TEST(test_parse_size_null)
{
	size_t v = 1;

	ck_assert_int_eq(kv_opt_parse_size(NULL, &v), -EINVAL);
}
END_TEST

/* strtoull skips leading blanks and then accepts a minus sign, negating the
 * value: a negative size must still be refused. */
START_TEST(test_parse_size_negative_after_blank)
{
	const char *ins[] = { " -1", "\t-1", " -4096" };

	for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
		size_t v = 12345;
		int rc = kv_opt_parse_size(ins[i], &v);
		ck_assert_msg(rc == -EINVAL, "\"%s\" accepted as %zu", ins[i], v);
	}
}
END_TEST

/* ---- kv_opt_set ---- */

static const struct {
	const char *name, *value;
} good_opts[] = {
	{ "codec", "none" },   { "codec", "lz4" },
	{ "codec", "zstd" },   { "codec", "zstd:1" },
	{ "codec", "zstd:3" }, { "codec", "zstd:19" },
	{ "shuffle", "auto" }, { "shuffle", "off" },
	{ "shuffle", "2" },    { "shuffle", "4" },
	{ "chunk", "64K" },    { "chunk", "128K" },
	{ "chunk", "1M" },     { "chunk", "16M" },
	{ "chunk", "65536" },  { "ram", "0" },
	{ "ram", "512M" },     { "ram", "2G" },
	{ "workers", "1" },    { "workers", "64" },
	{ "workers", "auto" }, { "workers", "3" },
	{ "segment", "16M" },  { "segment", "1G" },
	{ "segment", "64G" },  { "gpu", "auto" },
	{ "gpu", "cuda" },     { "gpu", "hip" },
	{ "gpu", "off" },      { "gpu", "/usr/lib/kvfs/libkvfs-gpu-cuda.so" },
};

static void check_config(const struct kv_config *c, const char *name, const char *value)
{
	int ok;

	if (!strcmp(name, "codec")) {
		if (!strcmp(value, "none"))
			ok = c->codec == KV_CODEC_NONE;
		else if (!strcmp(value, "lz4"))
			ok = c->codec == KV_CODEC_LZ4;
		else
			ok = c->codec == KV_CODEC_ZSTD &&
			     c->level == (value[4] ? atoi(value + 5) : 1);
	} else if (!strcmp(name, "shuffle")) {
		ok = c->shuffle == (!strcmp(value, "auto")  ? KV_SHUFFLE_AUTO
				    : !strcmp(value, "off") ? 0
							    : atoi(value));
	} else if (!strcmp(name, "workers")) {
		ok = c->workers == (!strcmp(value, "auto") ? (int)nproc_auto() : atoi(value));
	} else if (!strcmp(name, "gpu")) {
		ok = !strcmp(c->gpu, value);
	} else {
		size_t want = 0, got = !strcmp(name, "chunk") ? c->chunk
				       : !strcmp(name, "ram") ? c->ram
							      : c->segment;
		ck_assert_int_eq(kv_opt_parse_size(value, &want), 0);
		ok = got == want;
	}
	ck_assert_msg(ok, "%s=%s not applied", name, value);
}

static void good_opt_case(int _i)
{
	struct kv_config c;
	char err[256] = "";
	const char *name = good_opts[_i].name, *value = good_opts[_i].value;

	kv_opt_defaults(&c);
	ck_assert_msg(kv_opt_set(&c, name, value, err, sizeof(err)) == 0, "%s=%s: %s", name, value,
		      err);
	check_config(&c, name, value);
}

START_TEST(test_set_good)
{
	for (int i = 0; i < (int)(sizeof(good_opts) / sizeof(good_opts[0])); i++)
		good_opt_case(i);
}
END_TEST

static const struct {
	const char *name, *value;
} bad_opts[] = {
	{ "codec", "" },
	{ "codec", "gzip" },
	{ "codec", "LZ4" },
	{ "codec", "lz4:1" },
	{ "codec", "none:1" },
	{ "codec", "zstd:" },
	{ "codec", "zstd:0" },
	{ "codec", "zstd:20" },
	{ "codec", "zstd:x" },
	{ "codec", "zstd:3x" },
	{ "codec", "zstd:-1" },
	{ "codec", "zstdx" },
	{ "shuffle", "" },
	{ "shuffle", "1" },
	{ "shuffle", "3" },
	{ "shuffle", "8" },
	{ "shuffle", "on" },
	{ "shuffle", "22" },
	{ "chunk", "" },
	{ "chunk", "32K" },
	{ "chunk", "3M" },
	{ "chunk", "96K" },
	{ "chunk", "32M" },
	{ "chunk", "0" },
	{ "chunk", "abc" },
	{ "chunk", "-1M" },
	{ "ram", "" },
	{ "ram", "lots" },
	{ "ram", "-5M" },
	{ "ram", "1Q" },
	{ "workers", "" },
	{ "workers", "0" },
	{ "workers", "65" },
	{ "workers", "-1" },
	{ "workers", "2x" },
	{ "workers", "many" },
	{ "segment", "" },
	{ "segment", "15M" },
	{ "segment", "1M" },
	{ "segment", "65G" },
	{ "segment", "1T" },
	{ "segment", "x" },
	{ "gpu", "" },
	{ "gpu", "CUDA" },
	{ "gpu", "rocm" },
	{ "gpu", "libkvfs-gpu-cuda.so" },
	{ "gpu", "/usr/lib/kvfs/plugin" },
	{ "gpu", "/x.sox" },
};

static void bad_opt_case(int _i)
{
	struct kv_config c, before;
	char err[256] = "";
	const char *name = bad_opts[_i].name, *value = bad_opts[_i].value;

	kv_opt_defaults(&c);
	before = c;
	ck_assert_msg(kv_opt_set(&c, name, value, err, sizeof(err)) == -EINVAL, "%s=%s accepted",
		      name, value);
	/* The message names the option. */
	ck_assert_msg(strncmp(err, name, strlen(name)) == 0, "message \"%s\"", err);
	/* Settings other than codec stay as they were. (A bad zstd level may
	 * leave codec/level changed; the caller refuses to start anyway.) */
	if (strcmp(name, "codec"))
		ck_assert_msg(memcmp(&c, &before, sizeof(c)) == 0, "%s=%s changed the config", name,
			      value);
}

START_TEST(test_set_bad)
{
	for (int i = 0; i < (int)(sizeof(bad_opts) / sizeof(bad_opts[0])); i++)
		bad_opt_case(i);
}
END_TEST

START_TEST(test_set_unknown_and_missing)
{
	struct kv_config c, before;
	char err[256] = "";

	kv_opt_defaults(&c);
	before = c;
	ck_assert_int_eq(kv_opt_set(&c, "compression", "lz4", err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "compression"));
	ck_assert_int_eq(kv_opt_set(&c, "", "1", err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(kv_opt_set(&c, "Codec", "lz4", err, sizeof(err)), -ENOENT);
	err[0] = 0;
	ck_assert_int_eq(kv_opt_set(&c, "chunk", NULL, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "chunk"));
	ck_assert_mem_eq(&c, &before, sizeof(c));
	/* A short message buffer is still terminated. */
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(kv_opt_set(&c, "shuffle", "9", err, 8), -EINVAL);
	ck_assert_uint_eq(strlen(err), 7);
}
END_TEST

START_TEST(test_known)
{
	const char *names[] = { "codec",   "shuffle",       "chunk", "ram",  "workers",
				"segment", "capacity",      "high",  "low",  "min_free",
				"ttl",     "context_depth", "gpu",   "wbuf", "gpu_pin" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_msg(kv_opt_known(names[i]), "%s", names[i]);
	ck_assert(!kv_opt_known("level"));
	ck_assert(!kv_opt_known(""));
	ck_assert(!kv_opt_known("codec2"));
	ck_assert(!kv_opt_known("allow_other"));
}
END_TEST

START_TEST(test_defaults)
{
	struct kv_config c;

	memset(&c, 0xee, sizeof(c));
	kv_opt_defaults(&c);
	ck_assert_int_eq(c.codec, KV_CODEC_LZ4);
	ck_assert_int_eq(c.shuffle, KV_SHUFFLE_AUTO);
	ck_assert_uint_eq(c.chunk, 1u << 20);
	ck_assert_uint_eq(c.ram, 128u << 20);
	ck_assert_int_eq(c.workers, (int)nproc_auto());
	ck_assert_uint_eq(c.segment, 1u << 30);
}
END_TEST

START_TEST(test_later_value_wins)
{
	struct kv_config c;
	char err[128];

	kv_opt_defaults(&c);
	ck_assert_int_eq(kv_opt_set(&c, "codec", "zstd:7", err, sizeof(err)), 0);
	ck_assert_int_eq(c.level, 7);
	ck_assert_int_eq(kv_opt_set(&c, "codec", "zstd", err, sizeof(err)), 0);
	ck_assert_int_eq(c.codec, KV_CODEC_ZSTD);
	ck_assert_int_eq(c.level, 1);
	ck_assert_int_eq(kv_opt_set(&c, "codec", "lz4", err, sizeof(err)), 0);
	ck_assert_int_eq(c.codec, KV_CODEC_LZ4);
	ck_assert_int_eq(kv_opt_set(&c, "chunk", "64K", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "chunk", "4M", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.chunk, 4u << 20);
}
END_TEST

/* ---- kv_opt_format ---- */

START_TEST(test_format_defaults)
{
	struct kv_config c;
	char buf[512], want[512];

	kv_opt_defaults(&c);
	kv_opt_format(&c, buf, sizeof(buf));
	snprintf(want, sizeof(want),
		 "codec=lz4\nshuffle=auto\nchunk=1048576\nram=134217728\nwbuf=268435456\n"
		 "workers=%zu\nsegment=1073741824\ncapacity=0\nhigh=95\nlow=90\nmin_free=0\n"
		 "ttl=0\ncontext_depth=2\ngpu=auto\ngpu_pin=4294967296\n",
		 nproc_auto());
	ck_assert_str_eq(buf, want);
}
END_TEST

START_TEST(test_format_set)
{
	struct kv_config c;
	char buf[512], err[128];
	const char *tail = "capacity=0\nhigh=95\nlow=90\nmin_free=0\nttl=0\ncontext_depth=2\n"
			   "gpu=auto\ngpu_pin=4294967296\n";
	char want[512];

	kv_opt_defaults(&c);
	ck_assert_int_eq(kv_opt_set(&c, "codec", "zstd:5", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "shuffle", "4", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "chunk", "64K", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "ram", "1G", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "workers", "3", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "segment", "16M", err, sizeof(err)), 0);
	kv_opt_format(&c, buf, sizeof(buf));
	snprintf(want, sizeof(want),
		 "codec=zstd:5\nshuffle=4\nchunk=65536\nram=1073741824\n"
		 "wbuf=268435456\nworkers=3\nsegment=16777216\n%s",
		 tail);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(kv_opt_set(&c, "codec", "none", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "shuffle", "off", err, sizeof(err)), 0);
	kv_opt_format(&c, buf, sizeof(buf));
	snprintf(want, sizeof(want),
		 "codec=none\nshuffle=off\nchunk=65536\nram=1073741824\n"
		 "wbuf=268435456\nworkers=3\nsegment=16777216\n%s",
		 tail);
	ck_assert_str_eq(buf, want);
	/* Truncated to the buffer, still terminated. */
	memset(buf, 'x', sizeof(buf));
	kv_opt_format(&c, buf, 11);
	ck_assert_str_eq(buf, "codec=none");
}
END_TEST

/* The formatted line parses back to the same configuration. */
START_TEST(test_format_parses_back)
{
	struct kv_config c, d;
	char buf[512], err[128], *save = NULL;

	kv_opt_defaults(&c);
	ck_assert_int_eq(kv_opt_set(&c, "codec", "zstd:11", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "shuffle", "2", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "chunk", "256K", err, sizeof(err)), 0);
	kv_opt_format(&c, buf, sizeof(buf));
	memset(&d, 0, sizeof(d));
	for (char *kv = strtok_r(buf, "\n", &save); kv; kv = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(kv, '=');
		ck_assert_ptr_nonnull(eq);
		*eq = 0;
		ck_assert_msg(kv_opt_set(&d, kv, eq + 1, err, sizeof(err)) == 0, "%s", err);
	}
	ck_assert_int_eq(d.codec, c.codec);
	ck_assert_int_eq(d.level, c.level);
	ck_assert_int_eq(d.shuffle, c.shuffle);
	ck_assert_uint_eq(d.chunk, c.chunk);
	ck_assert_uint_eq(d.ram, c.ram);
	ck_assert_int_eq(d.workers, c.workers);
	ck_assert_uint_eq(d.segment, c.segment);
}
END_TEST

/* ---- help ---- */

static char *capture(void (*fn)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	fn(f);
	fclose(f);
	return buf;
}

START_TEST(test_help_tables)
{
	char *help = capture(kv_opt_print_help), *md = capture(kv_opt_print_markdown);
	const char *names[] = { "codec",   "shuffle",       "chunk", "ram",  "workers",
				"segment", "capacity",      "high",  "low",  "min_free",
				"ttl",     "context_depth", "gpu",   "wbuf", "gpu_pin" };
	int rows = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "-o %s=", names[i]);
		ck_assert_msg(strstr(help, want) != NULL, "help lacks %s", want);
		snprintf(want, sizeof(want), "| `%s` |", names[i]);
		ck_assert_msg(strstr(md, want) != NULL, "markdown lacks %s", want);
	}
	ck_assert_ptr_nonnull(strstr(help, "(default lz4)"));
	ck_assert_ptr_nonnull(strstr(help, "(default 1M)"));
	ck_assert_ptr_nonnull(strstr(md, "| option | values | default | meaning |"));
	for (const char *p = md; (p = strchr(p, '\n')); p++)
		rows++;
	ck_assert_int_eq(rows, 2 + 15); /* header, rule, one row per option */
	free(help);
	free(md);
}
END_TEST

/* ---- kv_opt_fit_memory: pure, the memory size is an argument ---- */

START_TEST(test_fit_memory)
{
	const uint64_t mem = 24105ull << 20; /* a "24 GB" machine */
	struct kv_config c;
	char msg[512], err[128];

	kv_opt_defaults(&c);
	ck_assert_int_eq(kv_opt_fit_memory(&c, mem, msg, sizeof(msg)), 0);
	ck_assert_str_eq(msg, "");
	ck_assert_uint_eq(c.ram, 128u << 20);
	ck_assert_uint_eq(c.wbuf, 256u << 20);

	/* parsing stays as given; the fit lowers, in whole MiB */
	ck_assert_int_eq(kv_opt_set(&c, "ram", "1T", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.ram, 1ull << 40);
	ck_assert_int_eq(kv_opt_fit_memory(&c, mem, msg, sizeof(msg)), 1);
	ck_assert_uint_eq(c.ram, 12052ull << 20);
	ck_assert_uint_eq(c.wbuf, 256u << 20);
	ck_assert_str_eq(msg, "ram=1T is more than half of the 24105M of memory: lowered to 12052M");

	/* both, and a value at its share is kept */
	ck_assert_int_eq(kv_opt_set(&c, "ram", "1T", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "wbuf", "100G", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_fit_memory(&c, 64ull << 30, msg, sizeof(msg)), 1);
	ck_assert_uint_eq(c.ram, 32ull << 30);
	ck_assert_uint_eq(c.wbuf, 16ull << 30);
	ck_assert_str_eq(msg,
			 "ram=1T is more than half of the 64G of memory: lowered to 32G; "
			 "wbuf=100G is more than a quarter of the 64G of memory: lowered to 16G");
	ck_assert_int_eq(kv_opt_fit_memory(&c, 64ull << 30, msg, sizeof(msg)), 0);

	/* a tiny machine: wbuf keeps its floor */
	kv_opt_defaults(&c);
	ck_assert_int_eq(kv_opt_fit_memory(&c, 40ull << 20, msg, sizeof(msg)), 1);
	ck_assert_uint_eq(c.ram, 20u << 20);
	ck_assert_uint_eq(c.wbuf, KV_WBUF_MIN);

	/* memory unknown: nothing changes; a short message buffer is safe */
	ck_assert_int_eq(kv_opt_set(&c, "ram", "1T", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_fit_memory(&c, 0, msg, sizeof(msg)), 0);
	ck_assert_uint_eq(c.ram, 1ull << 40);
	ck_assert_int_eq(kv_opt_fit_memory(&c, mem, msg, 8), 1);
	ck_assert_uint_eq(c.ram, 12052ull << 20);
	ck_assert_uint_eq(strlen(msg), 7);
}
END_TEST

/* kvfs(1) comes from the same table: every option, valid troff. */
START_TEST(test_man_page)
{
	char *man = capture(kv_opt_print_man), *help = capture(kv_opt_print_help);

	ck_assert_ptr_nonnull(strstr(man, ".TH KVFS 1 "));
	for (const char *p = help; (p = strstr(p, "    -o ")); p++) {
		char name[64], want[80], eq = 0;
		if (sscanf(p + 7, "%63[a-z_]%c", name, &eq) != 2 || eq != '=')
			continue; /* -o allow_other, a general option */
		snprintf(want, sizeof(want), ".B \\-o %s=", name);
		ck_assert_msg(strstr(man, want) != NULL, "man page lacks %s", want);
	}
	/* a line of text starting with '.' would be a troff request */
	ck_assert_ptr_nonnull(strstr(man, "\n\\&... and evicts"));
	ck_assert_ptr_null(strstr(man, "\n..."));
	ck_assert_ptr_nonnull(strstr(man, ".B \\-h, \\-\\-help\n"));
	ck_assert_ptr_nonnull(strstr(help, "    --man "));
	free(man);
	free(help);
}
END_TEST

static Suite *opt_suite(void)
{
	Suite *s = suite_create("opt");
	TCase *tc = kvtest_tcase(s, "size", 0);

	tcase_add_test(tc, test_parse_size_good);
	tcase_add_test(tc, test_parse_size_bad);
	tcase_add_test(tc, test_parse_size_null);
	tcase_add_test(tc, test_parse_size_negative_after_blank);

	tc = kvtest_tcase(s, "set", 0);
	tcase_add_test(tc, test_set_good);
	tcase_add_test(tc, test_set_bad);
	tcase_add_test(tc, test_set_unknown_and_missing);
	tcase_add_test(tc, test_known);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_later_value_wins);
	tcase_add_test(tc, test_fit_memory);

	tc = kvtest_tcase(s, "format", 0);
	tcase_add_test(tc, test_format_defaults);
	tcase_add_test(tc, test_format_set);
	tcase_add_test(tc, test_format_parses_back);
	tcase_add_test(tc, test_help_tables);
	tcase_add_test(tc, test_man_page);
	return s;
}

int main(void) { return kvtest_run(opt_suite, NULL); }
