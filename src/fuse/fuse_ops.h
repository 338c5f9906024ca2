/* SPDX-License-Identifier: Apache-2.0 */
/* kv_fuse: the libfuse low-level operations. Each decodes a request, runs
 * one operation of the core's struct kv_ops (fs.h) from the table that
 * kv_ops_of() or a sibling picks (ctl.h), and encodes the reply; no policy
 * lives here. Handlers are named kvfuse_<op> (kvfuse_read beside the core's
 * kv_file_read). */
#ifndef KV_FUSE_OPS_H
#define KV_FUSE_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "fs.h"

/* Per-mount state reached through fuse_req_userdata(). */
struct kv_mount {
	struct kv_fs *fs;
	struct kv_fast *fast; /* the GPU fast path's ioctls (fastpath.h) */
	char mountpoint[4096];
	double timeout; /* entry and attribute cache, seconds */
	struct fuse_session *se;
};

extern const struct fuse_lowlevel_ops kv_fuse_ops;

#endif
