/* SPDX-License-Identifier: Apache-2.0 */
/* kv_grow: room in an array that grows by doubling, one copy for the
 * whole daemon instead of the `if (n == cap) { cap = cap ? 2 * cap : 16;
 * realloc ... }` written at each array. */
#ifndef KV_GROW_H
#define KV_GROW_H

#include <stddef.h>

#define KV_GROW_FIRST 16 /* elements of an array's first allocation */

/* Make room for need elements of elem bytes in the array whose address is
 * vp (a T **, for any T) and which has room for *cap. When need > *cap
 * the array is reallocated to the first of KV_GROW_FIRST (or *cap) times
 * 2, 4, 8... that holds need, and *cap set to it. 0, or -ENOMEM with the
 * array and *cap unchanged (also when the size would overflow). */
int kv_grow(void *vp, size_t *cap, size_t need, size_t elem);

#endif
