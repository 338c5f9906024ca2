/* SPDX-License-Identifier: Apache-2.0 */
/* kvfs-test-gpuio: issues the kvfs ioctls with raw control over every field,
 * for the tests. With the fake backend (libkvfs-gpu-fake.so) the "device
 * allocation" is a file whose path is the IPC handle.
 *
 *   kvfs-test-gpuio [options] query PATH
 *   kvfs-test-gpuio [options] read|write FILE ALLOC SEG...
 *
 * SEG is FILE_OFF:DEV_OFF:LEN. Prints "ok bytes=N" or
 * "err errno=NAME detail=N seg=N bytes=N" (exit 1).
 * Options: --abi N, --size N (struct_size), --flags N, --vendor N,
 * --uuid STR16, --nseg N, --cmd-size N (a command of another size),
 * --cmd-nr N (another command number), --open ro|wo|rw. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kvfs/ioctl.h"

static const char *ename(int e)
{
	switch (e) {
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case EFAULT: return "EFAULT";
	case ENODEV: return "ENODEV";
	case EBADF: return "EBADF";
	case EIO: return "EIO";
	case EISDIR: return "EISDIR";
	case ENOSPC: return "ENOSPC";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	default: return strerror(e);
	}
}

static long long num(const char *s) { return strtoll(s, NULL, 0); }

int main(int argc, char **argv)
{
	struct kvfs_gpu_io io;
	long long abi = KVFS_ABI_VERSION, size = sizeof(io), flags = 0, vendor = KVFS_GPU_CUDA;
	long long nseg = -1, cmd_size = -1, cmd_nr = -1;
	const char *uuid = "kvfs-fake-gpu-00", *mode = NULL;
	unsigned long cmd;
	int i = 1, fd, rc;

	for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
		const char *o = argv[i] + 2, *v = argv[i + 1];
		if (!strcmp(o, "abi"))
			abi = num(v);
		else if (!strcmp(o, "size"))
			size = num(v);
		else if (!strcmp(o, "flags"))
			flags = num(v);
		else if (!strcmp(o, "vendor"))
			vendor = num(v);
		else if (!strcmp(o, "uuid"))
			uuid = v;
		else if (!strcmp(o, "nseg"))
			nseg = num(v);
		else if (!strcmp(o, "cmd-size"))
			cmd_size = num(v);
		else if (!strcmp(o, "cmd-nr"))
			cmd_nr = num(v);
		else if (!strcmp(o, "open"))
			mode = v;
		else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (i + 1 >= argc) {
		fprintf(stderr,
			"usage: kvfs-test-gpuio [options] query PATH | read|write FILE ALLOC SEG...\n");
		return 2;
	}
	if (!strcmp(argv[i], "query")) {
		struct kvfs_query q;
		memset(&q, 0, sizeof(q));
		q.abi_version = (uint32_t)abi;
		q.struct_size = (uint32_t)(size == (long long)sizeof(io) ? sizeof(q) : (size_t)size);
		fd = open(argv[i + 1], O_RDONLY);
		if (fd < 0) {
			perror(argv[i + 1]);
			return 2;
		}
		cmd = cmd_nr >= 0 ? _IOWR(KVFS_IOC_MAGIC, cmd_nr, struct kvfs_query)
				  : KVFS_IOC_QUERY;
		if (ioctl(fd, cmd, &q)) {
			printf("err errno=%s\n", ename(errno));
			return 1;
		}
		printf("ok abi=%u size=%u version=0x%06x backend=%u name=%s ndev=%u max_segs=%u "
		       "chunk=%llu\n",
		       q.abi_version, q.struct_size, q.kvfs_version, q.backend, q.backend_name,
		       q.ndevices, q.max_segs, (unsigned long long)q.chunk_size);
		for (uint32_t d = 0; d < q.ndevices && d < KVFS_MAX_DEVICES; d++)
			printf("uuid=%.16s\n", (const char *)q.device_uuid[d]);
		return 0;
	}
	if (i + 3 > argc || (strcmp(argv[i], "read") && strcmp(argv[i], "write"))) {
		fprintf(stderr, "need read|write FILE ALLOC SEG...\n");
		return 2;
	}
	memset(&io, 0, sizeof(io));
	io.abi_version = (uint32_t)abi;
	io.struct_size = (uint32_t)size;
	io.vendor = (uint32_t)vendor;
	io.flags = (uint32_t)flags;
	memcpy(io.handle, argv[i + 2],
	       strlen(argv[i + 2]) < sizeof(io.handle) ? strlen(argv[i + 2]) : sizeof(io.handle));
	memcpy(io.device_uuid, uuid, strlen(uuid) < 16 ? strlen(uuid) : 16);
	for (int s = i + 3; s < argc && io.nseg < KVFS_GPU_MAX_SEGS; s++) {
		unsigned long long fo, dof, len;
		if (sscanf(argv[s], "%lli:%lli:%lli", &fo, &dof, &len) != 3) {
			fprintf(stderr, "bad segment %s\n", argv[s]);
			return 2;
		}
		io.seg[io.nseg++] = (struct kvfs_gpu_seg){ fo, dof, len };
	}
	if (nseg >= 0)
		io.nseg = (uint32_t)nseg;
	{
		int write = !strcmp(argv[i], "write");
		int oflags = mode ? (!strcmp(mode, "ro")   ? O_RDONLY
				     : !strcmp(mode, "wo") ? O_WRONLY
							   : O_RDWR)
				  : (write ? O_RDWR | O_CREAT : O_RDONLY);
		fd = open(argv[i + 1], oflags, 0644);
		if (fd < 0) {
			perror(argv[i + 1]);
			return 2;
		}
		cmd = write ? KVFS_IOC_GPU_WRITE : KVFS_IOC_GPU_READ;
		if (cmd_size >= 0)
			cmd = _IOC(_IOC_READ | _IOC_WRITE, KVFS_IOC_MAGIC, _IOC_NR(cmd), cmd_size);
		if (cmd_nr >= 0)
			cmd = _IOWR(KVFS_IOC_MAGIC, cmd_nr, struct kvfs_gpu_io);
	}
	/* A command of another size still gets a buffer big enough. */
	{
		static uint8_t big[16384];
		void *arg = &io;
		if (cmd_size > (long long)sizeof(io)) {
			memcpy(big, &io, sizeof(io));
			arg = big;
		}
		rc = ioctl(fd, cmd, arg);
	}
	if (rc) {
		int e = errno;
		printf("err errno=%s detail=%u seg=%u bytes=%llu error=%d\n", ename(e), io.detail,
		       io.error_seg, (unsigned long long)io.bytes_done, io.error);
		return 1;
	}
	printf("ok bytes=%llu\n", (unsigned long long)io.bytes_done);
	return close(fd) ? 1 : 0;
}
