/* SPDX-License-Identifier: Apache-2.0 */
/* Extended attributes: the user namespace, and user.kvfs.* for the cache
 * policy (docs/policy.md). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"

#define KV_XATTR_VALUE_MAX 65536
#include <sys/stat.h>
#include <limits.h>
#include <sys/xattr.h>

/* ---- xattrs: the user namespace, and user.kvfs.* for the cache policy ---- */

#define KV_XATTR_PREFIX "user.kvfs."

/* The policy attributes user.kvfs.NAME (docs/policy.md). */
enum kv_xattr {
	KV_XATTR_TTL,
	KV_XATTR_PIN,
	KV_XATTR_LOGICAL,
	KV_XATTR_STORED,
	KV_XATTR_CODEC,
	KV_XATTR_LAST_ACCESS,
	KV_XATTR_HITS,
	KV_NXATTRS,         /* a name under user.kvfs. that is none of them */
	KV_XATTR_USER = -1, /* not under user.kvfs.: the user's own */
};

static const struct {
	const char *name;
	int writable, ctx_only; /* set by users; on contexts only */
} kv_xattrs[KV_NXATTRS] = {
	[KV_XATTR_TTL] = { "ttl", 1, 1 },
	[KV_XATTR_PIN] = { "pin", 1, 1 },
	[KV_XATTR_LOGICAL] = { "logical_bytes", 0, 0 },
	[KV_XATTR_STORED] = { "stored_bytes", 0, 0 },
	[KV_XATTR_CODEC] = { "codec", 0, 0 },
	[KV_XATTR_LAST_ACCESS] = { "last_access", 0, 0 },
	[KV_XATTR_HITS] = { "hits", 0, 0 },
};

static int check_xattr(const char *name, size_t size)
{
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	if (strlen(name) > XATTR_NAME_MAX || !name[5])
		return -ERANGE;
	return size > KV_XATTR_VALUE_MAX ? -E2BIG : 0;
}

static enum kv_xattr policy_attr(const char *name)
{
	if (strncmp(name, KV_XATTR_PREFIX, strlen(KV_XATTR_PREFIX)))
		return KV_XATTR_USER;
	for (int i = 0; i < KV_NXATTRS; i++)
		if (!strcmp(name + strlen(KV_XATTR_PREFIX), kv_xattrs[i].name))
			return (enum kv_xattr)i;
	return KV_NXATTRS;
}

/* The inode, its context, and whether it is that context itself. */
static int locate(struct kv_fs *fs, uint64_t ino, struct kv_inode **in, uint64_t *ctx)
{
	int rc = 0;

	*ctx = 0;
	*in = kv_fs_inode(fs, ino, &rc);
	if (!*in)
		return rc;
	*ctx = kv_fs_ctx_of(fs, *in, NULL);
	return (*in)->gone ? -ENOENT : 0;
}

static int policy_get(struct kv_fs *fs, uint64_t ino, enum kv_xattr which, char *val, size_t len)
{
	struct kv_inode *in;
	struct kv_ctx_row r;
	struct kv_usage u = { 0 };
	uint64_t ctx;
	int rc = locate(fs, ino, &in, &ctx);

	if (rc)
		return rc;
	if (!ctx || (kv_xattrs[which].ctx_only && ctx != ino))
		return -ENODATA;
	rc = kv_policy_get(fs->pol, ctx, &r);
	if (rc)
		return rc;
	if (S_ISREG(in->attr.mode)) {
		pthread_mutex_lock(&in->lock);
		u = (struct kv_usage){ in->attr.size, in->attr.stored, 1 };
		pthread_mutex_unlock(&in->lock);
	} else if (which == KV_XATTR_LOGICAL || which == KV_XATTR_STORED) {
		rc = kv_index_usage(fs->ix, ino, &u);
	}
	switch (which) {
	case KV_XATTR_TTL:
		snprintf(val, len, "%lld", (long long)(r.ttl >= 0 ? r.ttl : fs->cfg.ttl));
		break;
	case KV_XATTR_PIN: snprintf(val, len, "%d", r.pin); break;
	case KV_XATTR_LOGICAL: snprintf(val, len, "%llu", (unsigned long long)u.logical); break;
	case KV_XATTR_STORED: snprintf(val, len, "%llu", (unsigned long long)u.stored); break;
	case KV_XATTR_CODEC: rc = kv_index_codecs(fs->ix, ino, val, len); break;
	case KV_XATTR_LAST_ACCESS:
		snprintf(val, len, "%lld.%09lld", (long long)(r.last_access / 1000000000),
			 (long long)(r.last_access % 1000000000));
		break;
	case KV_XATTR_HITS: snprintf(val, len, "%llu", (unsigned long long)r.hits); break;
	default: rc = -ENODATA; break;
	}
	return rc;
}

static int policy_set(struct kv_fs *fs, uint64_t ino, enum kv_xattr which, const char *value,
		      size_t size)
{
	struct kv_inode *in;
	uint64_t ctx;
	char v[32], *end;
	long long n;
	int rc;

	if (which == KV_NXATTRS || !kv_xattrs[which].writable)
		return -EPERM;
	rc = locate(fs, ino, &in, &ctx);
	if (rc)
		return rc;
	if (ctx != ino || size == 0 || size >= sizeof(v))
		return -EINVAL;
	memcpy(v, value, size);
	v[size] = 0;
	if (v[size - 1] == '\n')
		v[size - 1] = 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || errno || (which == KV_XATTR_PIN && n > 1) ||
	    n > KV_TTL_MAX)
		return -EINVAL;
	rc = which == KV_XATTR_PIN ? kv_policy_set_pin(fs->pol, ctx, (int)n)
				   : kv_policy_set_ttl(fs->pol, ctx, n);
	if (!rc)
		kv_fs_note(fs, ctx);
	return rc;
}

int kv_fs_setxattr(struct kv_fs *fs, uint64_t ino, const char *name, const void *value, size_t size,
		   int flags)
{
	enum kv_xattr which = policy_attr(name);
	int rc = check_xattr(name, size);

	if (!rc && which != KV_XATTR_USER)
		return policy_set(fs, ino, which, value, size);
	if (!rc)
		rc = kv_fs_room(fs);
	if (!rc)
		rc = kv_index_setxattr(fs->ix, ino, name, value, size, flags);
	if (!rc)
		kv_fs_note(fs, ino);
	return rc;
}

int kv_fs_getxattr(struct kv_fs *fs, uint64_t ino, const char *name, void *buf, size_t size)
{
	enum kv_xattr which = policy_attr(name);
	int rc = check_xattr(name, 0);
	char val[128];
	size_t n;

	if (rc)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	if (which == KV_XATTR_USER)
		return kv_index_getxattr(fs->ix, ino, name, buf, size);
	if (which == KV_NXATTRS)
		return -ENODATA;
	rc = policy_get(fs, ino, which, val, sizeof(val));
	if (rc)
		return rc;
	n = strlen(val);
	if (size && n > size)
		return -ERANGE;
	if (size)
		memcpy(buf, val, n);
	return (int)n;
}

/* The user.kvfs.* attributes are not listed: rsync -X and cp --preserve
 * would copy them to places where they mean nothing (or are read-only).
 * They are read and set by name. */
int kv_fs_listxattr(struct kv_fs *fs, uint64_t ino, char *buf, size_t size)
{
	return kv_index_listxattr(fs->ix, ino, buf, size);
}

int kv_fs_removexattr(struct kv_fs *fs, uint64_t ino, const char *name)
{
	int rc = check_xattr(name, 0);

	/* A namespace that cannot be set cannot be removed either; the kernel
	 * also sends setting an empty POSIX ACL as a remove, which must fail
	 * as setting one does. */
	if (rc)
		return rc;
	if (policy_attr(name) != KV_XATTR_USER)
		return -EPERM;
	KV_DELETION(fs, rc, kv_index_removexattr(fs->ix, ino, name));
	if (!rc)
		kv_fs_note(fs, ino);
	return rc;
}
