#include "ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CTL_STATS = 1, CTL_CONFIG, CTL_EVICT, CTL_NFILES = 3 };

static const struct { const char *name; uint32_t mode; } kv_ctl_files[CTL_NFILES + 1] = {
	[CTL_STATS] = { "stats", S_IFREG | 0444 },
	[CTL_CONFIG] = { "config", S_IFREG | 0444 },
	[CTL_EVICT] = { "evict", S_IFREG | 0200 },
};

int kv_ctl_is(uint64_t ino) { return ino >= KV_CTL_DIR && ino <= KV_CTL_DIR + CTL_NFILES; }

int kv_ctl_is_entry(uint64_t parent, const char *name)
{
	return parent == KV_ROOT_INO && !strcmp(name, KV_CTL_NAME);
}

int kv_ctl_getattr(struct kv_fs *fs, uint64_t ino, struct kv_attr *a)
{
	struct kv_attr root;
	int rc = kv_fs_getattr(fs, KV_ROOT_INO, &root);

	if (rc)
		return rc;
	/* Owned like the root directory, dated like the mount. */
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->uid = (uint32_t)getuid();
	a->gid = (uint32_t)getgid();
	a->atime = a->mtime = a->ctime = root.ctime;
	if (ino == KV_CTL_DIR) {
		a->mode = S_IFDIR | 0755;
		a->nlink = 2;
		return 0;
	}
	if (!kv_ctl_is(ino))
		return -ENOENT;
	a->mode = kv_ctl_files[ino - KV_CTL_DIR].mode;
	a->nlink = 1;
	return 0;
}

int kv_ctl_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *a)
{
	if (kv_ctl_is_entry(parent, name))
		return kv_ctl_getattr(fs, KV_CTL_DIR, a);
	if (parent != KV_CTL_DIR)
		return 1;
	for (uint64_t i = 1; i <= CTL_NFILES; i++)
		if (!strcmp(name, kv_ctl_files[i].name))
			return kv_ctl_getattr(fs, KV_CTL_DIR + i, a);
	return -ENOENT;
}

int kv_ctl_readdir(struct kv_fs *fs, uint64_t off, kv_index_dir_cb cb, void *arg)
{
	for (uint64_t i = off + 1; i <= CTL_NFILES; i++) {
		struct kv_attr a;
		kv_ctl_getattr(fs, KV_CTL_DIR + i, &a);
		if (cb(arg, kv_ctl_files[i].name, strlen(kv_ctl_files[i].name), &a, i))
			break;
	}
	return 0;
}

int kv_ctl_open(struct kv_fs *fs, uint64_t ino, int writing, char **text, size_t *len)
{
	size_t cap = 16384;
	int n;

	*text = NULL;
	*len = 0;
	if (ino == KV_CTL_DIR + CTL_EVICT)
		return writing ? 0 : -EACCES;
	if (writing)
		return -EACCES;
	*text = malloc(cap);
	if (!*text)
		return -ENOMEM;
	if (ino == KV_CTL_DIR + CTL_STATS) {
		n = kv_fs_stats_text(fs, *text, cap);
	} else {
		kv_opt_format(kv_fs_config(fs), *text, cap);
		n = (int)strlen(*text);
	}
	*len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
	return 0;
}

int kv_ctl_write(struct kv_fs *fs, uint64_t ino, const char *buf, size_t size)
{
	char v[64];
	size_t target;
	int rc;

	if (ino != KV_CTL_DIR + CTL_EVICT)
		return -EACCES;
	if (!size || size >= sizeof(v))
		return -EINVAL;
	memcpy(v, buf, size);
	v[size] = 0;
	v[strcspn(v, "\n")] = 0;
	if (kv_opt_parse_size(v, &target))
		return -EINVAL;
	rc = kv_fs_evict_to(fs, target);
	return rc ? rc : (int)size;
}
