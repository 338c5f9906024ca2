/* SPDX-License-Identifier: Apache-2.0 */
/* kv_ctl: the control directory <mount>/.kvfs/ of virtual files.
 *
 *   stats    Prometheus text exposition of the mount's counters (read)
 *   config   the effective options, one name=value per line (read)
 *   evict    write a size (e.g. "10G") to evict down to it (owner only)
 *
 * .kvfs is reachable by name but not listed in the root directory, so that
 * find, rsync and rm -rf on the mount never meet it. Its inode numbers are
 * above any the index hands out.
 *
 * How requests reach it: every request of a mount runs one operation of a
 * struct kv_ops (fs.h), taken from the table that kv_ops_of() or its two
 * siblings below return. That choice is the one place where the control
 * directory is told apart from the namespace: kv_ctl_ops for its inodes,
 * for the root's entry .kvfs and for entries in it, kv_fs_ops for all
 * else. The FUSE front end never asks what an inode is, and the namespace
 * never meets a control inode. kv_ctl_ops:
 *
 *   lookup, getattr, readdir   the directory and its three files; they
 *                              take no kernel references
 *   open, read, write, release a snapshot of the file's text taken at
 *                              open (the handle points to it; no page
 *                              cache, since the size changes with every
 *                              open); writing is for evict alone
 *   flush, fsync               nothing to do
 *   setattr                    only a size (a truncate before writing
 *                              evict), which changes nothing; else -EPERM
 *   mknod, create              -EEXIST for .kvfs itself, -EPERM in it
 *   link, remove, rename       -EPERM (rename: -EINVAL first for unknown
 *                              flags, as the namespace does)
 *   xattrs                     none: -EPERM to set or remove, -ENODATA to
 *                              get, an empty list
 *   gpu                        -ENOTTY: no ioctl is the control files' */
#ifndef KV_CTL_H
#define KV_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "fs.h"

#define KV_CTL_NAME ".kvfs"
#define KV_CTL_DIR (UINT64_C(1) << 62)

/* Is ino one of the control inodes? */
int kv_ctl_is(uint64_t ino);
/* Is (parent, name) the control directory's entry? */
int kv_ctl_is_entry(uint64_t parent, const char *name);

extern const struct kv_ops kv_ctl_ops;

/* The operations on inode ino (getattr, setattr, readlink, readdir and
 * parent, xattrs, forget, open and those on the open file, gpu). */
const struct kv_ops *kv_ops_of(uint64_t ino);
/* The operations on the entry name in directory parent (lookup, mknod,
 * create, remove; link's new entry): the control directory's when the
 * entry is .kvfs in the root or lies in the control directory. */
const struct kv_ops *kv_ops_of_entry(uint64_t parent, const char *name);
/* A rename's: the control directory's when either entry is. */
const struct kv_ops *kv_ops_of_rename(uint64_t parent, const char *name, uint64_t newparent,
				      const char *newname);

#endif
