/* SPDX-License-Identifier: Apache-2.0 */
#include "grow.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int kv_grow(void *vp, size_t *cap, size_t need, size_t elem)
{
	size_t c = *cap ? *cap : KV_GROW_FIRST;
	void *v;

	if (need <= *cap)
		return 0;
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return -ENOMEM;
		c *= 2;
	}
	if (!elem || c > SIZE_MAX / elem)
		return -ENOMEM;
	/* The array pointer is read and written as bytes: vp may be the
	 * address of any object pointer type. */
	memcpy(&v, vp, sizeof(v));
	v = realloc(v, c * elem);
	if (!v)
		return -ENOMEM;
	memcpy(vp, &v, sizeof(v));
	*cap = c;
	return 0;
}
