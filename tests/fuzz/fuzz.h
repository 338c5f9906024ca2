/* SPDX-License-Identifier: Apache-2.0 */
/* What the libFuzzer targets of tests/fuzz share. */
#ifndef KV_FUZZ_H
#define KV_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: a break is a finding, reported
 * like a crash (libFuzzer keeps the input). */
#define CHECK(c) \
	do { \
		if (!(c)) { \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #c); \
			abort(); \
		} \
	} while (0)

/* A copy of data that may be changed, in a buffer kept between runs and
 * ending where the copy ends, so that ASan still sees a read past it.
 * Valid until the next call. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
	static uint8_t *buf;
	static size_t cap;

	if (!buf || size > cap) {
		free(buf);
		buf = malloc(size ? size : 1);
		cap = size;
		CHECK(buf);
	}
	return memcpy(buf + cap - size, data, size);
}

#endif
