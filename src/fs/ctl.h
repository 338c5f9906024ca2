/* kv_ctl: the control directory <mount>/.kvfs/ of virtual files.
 *
 *   stats    Prometheus text exposition of the mount's counters (read)
 *   config   the effective options, one name=value per line (read)
 *   evict    write a size (e.g. "10G") to evict down to it (owner only)
 *
 * .kvfs is reachable by name but not listed in the root directory, so that
 * find, rsync and rm -rf on the mount never meet it. Its inode numbers are
 * above any the index hands out. */
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
/* Lookup in the root (for .kvfs) or in the control directory. Returns 1
 * when (parent, name) is not the control directory's business. */
int kv_ctl_lookup(struct kv_fs *fs, uint64_t parent, const char *name, struct kv_attr *a);
int kv_ctl_getattr(struct kv_fs *fs, uint64_t ino, struct kv_attr *a);
/* Entries of the control directory from offset off; cb as for kv_fs_readdir. */
int kv_ctl_readdir(struct kv_fs *fs, uint64_t off, kv_index_dir_cb cb, void *arg);
/* Open: a snapshot of the file's text, malloc()ed, in *text (NULL for evict). */
int kv_ctl_open(struct kv_fs *fs, uint64_t ino, int writing, char **text, size_t *len);
/* A write to evict: the target size. */
int kv_ctl_write(struct kv_fs *fs, uint64_t ino, const char *buf, size_t size);

#endif
