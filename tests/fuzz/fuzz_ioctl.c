/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the checks a GPU ioctl passes before it reaches the
 * GPU (kv_fast_cmd, kv_fast_validate; docs/ioctl.md, "Errors").
 *
 * Input, little-endian, as kv_ioctl in src/fuse/fuse_ops.c gets it from FUSE:
 *   0  u32 cmd
 *   4  u32 in_size       FUSE's in_bufsz
 *   8  u32 out_size      FUSE's out_bufsz
 *  12  u32 fd mode       bit 0: KV_FAST_WRITE when cmd is not ours,
 *                        bit 1: open for reading, bit 2: for writing
 *  16  u64 file size
 *  24  struct kvfs_gpu_io, zero-filled when the input is short
 * Each verdict is compared with a model written from the ABI document with
 * 128-bit arithmetic, so an overflow the code misses shows as a mismatch. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "fastpath.h"
#include "fuzz.h"
#include "kvfs/ioctl.h"

#define HDR 24

static int expect_cmd(unsigned cmd, size_t in_size, size_t out_size)
{
	size_t q = sizeof(struct kvfs_query), g = sizeof(struct kvfs_gpu_io);

	if (cmd == KVFS_IOC_QUERY && in_size == q && out_size == q)
		return KV_FAST_QUERY;
	if (cmd == KVFS_IOC_GPU_READ && in_size == g && out_size == g)
		return KV_FAST_READ;
	if (cmd == KVFS_IOC_GPU_WRITE && in_size == g && out_size == g)
		return KV_FAST_WRITE_CMD;
	if (_IOC_TYPE(cmd) == KVFS_IOC_MAGIC && _IOC_NR(cmd) >= 1 && _IOC_NR(cmd) <= 3)
		return -EINVAL;
	return -ENOTTY;
}

struct verdict {
	int rc;
	uint32_t detail, seg;
};

static struct verdict expect_io(const struct kvfs_gpu_io *io, unsigned mode, uint64_t file_size)
{
	int write = (mode & KV_FAST_WRITE) != 0;

	if (io->abi_version != 1)
		return (struct verdict){ -EINVAL, KVFS_E_VERSION, 0 };
	if (io->struct_size != 3968)
		return (struct verdict){ -EINVAL, KVFS_E_SIZE, 0 };
	if (io->flags != 0 || io->nseg < 1 || io->nseg > 160 ||
	    (io->vendor != KVFS_GPU_CUDA && io->vendor != KVFS_GPU_HIP))
		return (struct verdict){ -EINVAL, KVFS_E_ARG, 0 };
	if (!(mode & (write ? KV_FAST_CAN_WRITE : KV_FAST_CAN_READ)))
		return (struct verdict){ -EBADF, KVFS_E_ACCESS, 0 };
	for (uint32_t i = 0; i < io->nseg; i++) {
		const struct kvfs_gpu_seg *s = &io->seg[i];
		unsigned __int128 fend = (unsigned __int128)s->file_off + s->len;
		unsigned __int128 dend = (unsigned __int128)s->dev_off + s->len;
		/* An end offset must be an off_t: at most 2^63 - 1. */
		if (fend > (unsigned __int128)INT64_MAX || (!write && fend > file_size))
			return (struct verdict){ -EINVAL, KVFS_E_FILE_RANGE, i };
		if (dend > (unsigned __int128)UINT64_MAX)
			return (struct verdict){ -EFAULT, KVFS_E_DEV_RANGE, i };
	}
	return (struct verdict){ 0, 0, 0 };
}

static void check_validate(const struct kvfs_gpu_io *in, unsigned mode, uint64_t file_size)
{
	struct kvfs_gpu_io *io = malloc(sizeof(*io));
	struct verdict want = expect_io(in, mode, file_size);
	int rc;

	CHECK(io);
	memcpy(io, in, sizeof(*io));
	rc = kv_fast_validate(io, mode, file_size);
	CHECK(rc == want.rc);
	if (rc) {
		CHECK(io->error == rc && io->detail == want.detail && io->error_seg == want.seg);
		CHECK(io->error_seg < (io->nseg ? io->nseg : 1));
	} else {
		/* Accepted: every segment is an off_t range that a read keeps
		 * within the file, and no device range wraps. */
		CHECK(io->nseg >= 1 && io->nseg <= KVFS_GPU_MAX_SEGS);
		for (uint32_t i = 0; i < io->nseg; i++) {
			const struct kvfs_gpu_seg *s = &io->seg[i];
			CHECK(s->len <= (uint64_t)INT64_MAX &&
			      s->file_off <= (uint64_t)INT64_MAX - s->len);
			CHECK((mode & KV_FAST_WRITE) ||
			      (s->file_off <= file_size && s->len <= file_size - s->file_off));
			CHECK(s->dev_off <= UINT64_MAX - s->len);
		}
	}
	/* Only the output fields may change. */
	io->error = in->error;
	io->detail = in->detail;
	io->error_seg = in->error_seg;
	CHECK(memcmp(io, in, sizeof(*io)) == 0);
	free(io);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvfs_gpu_io io;
	unsigned cmd, mode;
	size_t in_size, out_size;
	uint64_t file_size;
	int kind;

	if (size < HDR)
		return 0;
	cmd = kv_get32(data);
	in_size = kv_get32(data + 4);
	out_size = kv_get32(data + 8);
	mode = kv_get32(data + 12) & (KV_FAST_WRITE | KV_FAST_CAN_READ | KV_FAST_CAN_WRITE);
	file_size = kv_get64(data + 16);
	memset(&io, 0, sizeof(io));
	memcpy(&io, data + HDR, size - HDR < sizeof(io) ? size - HDR : sizeof(io));

	kind = kv_fast_cmd(cmd, in_size, out_size);
	CHECK(kind == expect_cmd(cmd, in_size, out_size));
	/* The request kind decides the write bit, as in kv_ioctl; a command
	 * that is not a GPU request still has its struct checked, with the
	 * input's bit, so that every input reaches kv_fast_validate. */
	if (kind == KV_FAST_READ)
		mode &= ~KV_FAST_WRITE;
	else if (kind == KV_FAST_WRITE_CMD)
		mode |= KV_FAST_WRITE;
	check_validate(&io, mode, file_size);
	return 0;
}
