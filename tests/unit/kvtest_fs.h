/* SPDX-License-Identifier: Apache-2.0 */
/* kvtest_fs.h: helpers of the unit tests that drive kv_fs without a mount
 * (test_fs, test_fsck, test_gpu, test_meta). Include after kvtest.h.
 *
 *   kvtest_root_cred                 uid 0, gid 0: the caller of every
 *       namespace operation.
 *   kvtest_small_config()            Defaults with 64 KiB chunks, 16 MiB
 *       segments and 2 workers: small stores that still have many chunks.
 *   kvtest_open_fs(store, cfg)       kv_fs_open, failing the test with the
 *       reason if it fails; cfg NULL: kvtest_small_config().
 */
#ifndef KVFS_TESTS_UNIT_KVTEST_FS_H
#define KVFS_TESTS_UNIT_KVTEST_FS_H

#include "fs.h"
#include "opt.h"

static const struct kv_cred kvtest_root_cred = { 0, 0 };

static inline struct kv_config kvtest_small_config(void)
{
	struct kv_config c;
	char err[256];

	kv_opt_defaults(&c);
	ck_assert_int_eq(kv_opt_set(&c, "chunk", "64K", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "segment", "16M", err, sizeof(err)), 0);
	ck_assert_int_eq(kv_opt_set(&c, "workers", "2", err, sizeof(err)), 0);
	return c;
}

static inline struct kv_fs *kvtest_open_fs(const char *store, const struct kv_config *cfg)
{
	struct kv_config small = kvtest_small_config();
	struct kv_fs *fs = NULL;
	char err[512] = "";

	ck_assert_msg(kv_fs_open(store, cfg ? cfg : &small, &fs, err, sizeof(err)) == 0,
		      "kv_fs_open %s: %s", store, err);
	ck_assert_ptr_nonnull(fs);
	return fs;
}

#endif
