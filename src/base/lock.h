/* SPDX-License-Identifier: Apache-2.0 */
/* Checked locking.
 *
 * A function whose comment says "Locked (x)." expects its caller to hold
 * mutex x, and begins with KV_ASSERT_HELD(&x): in a debug build (no
 * NDEBUG: the ASan and TSan builds of CI) it aborts when the calling thread
 * does not hold it. glibc records the owning thread of every mutex type in
 * the mutex, which is what kv_held reads; elsewhere the check is a no-op.
 * The lock order of the whole daemon is in src/fs/fs_int.h. */
#ifndef KV_LOCK_H
#define KV_LOCK_H

#include <assert.h>
#include <pthread.h>
#include <unistd.h>

#ifdef __GLIBC__
#define KV_LOCK_CHECKED 1
/* Does this thread hold m? */
static inline int kv_held(pthread_mutex_t *m) { return m->__data.__owner == (int)gettid(); }
#endif

#if !defined(NDEBUG) && defined(KV_LOCK_CHECKED)
#define KV_ASSERT_HELD(m) assert(kv_held(m))
#else
#define KV_ASSERT_HELD(m) ((void)(m))
#endif

#endif
