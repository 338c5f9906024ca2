/* kvfsctl: administer kvfs stores. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kvfsctl COMMAND [ARGS]\n"
		"\n"
		"commands:\n"
		"    info STORE     format version, files, contexts, logical and stored bytes\n"
		"    help           this text\n");
}

static int cmd_info(const char *store)
{
	char path[4200], err[512];
	struct kv_index_stats s;
	struct kv_index *ix;
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
	if (!rc) {
		printf("store: %s\n", store);
		printf("format_version: %d\n", KV_FORMAT_VERSION);
		printf("schema_version: %d\n", kv_index_user_version(ix));
		printf("files: %llu\n", (unsigned long long)s.files);
		printf("directories: %llu\n", (unsigned long long)s.dirs);
		printf("contexts: %llu\n", (unsigned long long)s.contexts);
		printf("logical_bytes: %llu\n", (unsigned long long)s.logical);
		printf("stored_bytes: %llu\n", (unsigned long long)s.stored);
		printf("ratio: %.2f\n", s.stored ? (double)s.logical / (double)s.stored : 1.0);
	} else {
		fprintf(stderr, "kvfsctl: %s: %s\n", store, strerror(-rc));
	}
	kv_index_close(ix);
	return rc ? 1 : 0;
}

int main(int argc, char *argv[])
{
	kv_log_set_level(KV_LOG_WARN);
	if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "info") && argc == 3)
		return cmd_info(argv[2]);
	fprintf(stderr, "kvfsctl: unknown command or arguments: %s\n", argv[1]);
	usage(stderr);
	return 2;
}
