/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks in nanoseconds: one copy for the whole daemon. */
#ifndef KV_CLOCK_H
#define KV_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_REALTIME: nanoseconds since the epoch, for times that are stored
 * or shown (inode times, a context's last access, segment headers). */
static inline int64_t kv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CLOCK_MONOTONIC: nanoseconds from an arbitrary start, for intervals. */
static inline uint64_t kv_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
