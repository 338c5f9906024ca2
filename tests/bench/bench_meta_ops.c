/* SPDX-License-Identifier: Apache-2.0 */
/* bench_meta_ops: the metadata workload of bench_meta.sh, one process, no
 * shell per file.  Built by bench_meta.sh with gcc -O2.
 *
 * Usage: bench_meta_ops PHASE DIR NCTX NFILES FILESIZE SRC
 *
 * DIR is the namespace directory; the program chdir()s into it and uses
 * paths relative to it ("ctxNNNN/layerMM"), so that every target walks the
 * same two path components (the high-level passthrough mirrors "/" and would
 * otherwise also walk its backing directory's path).  Contexts are named
 * ctx%0Nd (N = 4, or more digits when NCTX > 10000), files layer%02d.
 *
 * PHASE:
 *   create   for each context: mkdir ctx; for each of its NFILES files:
 *            open(O_CREAT|O_WRONLY|O_TRUNC), one write of FILESIZE bytes of
 *            SRC (taken at a different offset for each file), close
 *   stat     stat() every file in creation order; the size must be FILESIZE
 *   unlink   unlink() every file in creation order, then rmdir() every context
 *
 * Prints "ns=<elapsed ns of the file operations>" and, for unlink,
 * "rmdir_ns=<elapsed ns of the rmdirs>"; for create, "mkdir_ns=<ns spent in
 * mkdir>" (included in ns).  Exits 1 on the first failed call, naming it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int width;

static void ctx_name(char *buf, size_t n, long c) { snprintf(buf, n, "ctx%0*ld", width, c); }

static void file_name(char *buf, size_t n, long c, long l)
{
	snprintf(buf, n, "ctx%0*ld/layer%02ld", width, c, l);
}

int main(int argc, char **argv)
{
	char path[256];
	const char *phase;
	long nctx, nfiles, fsz, slots = 1;
	char *src = NULL;
	long long t0, t1, tm = 0;

	if (argc != 7) {
		fprintf(stderr,
			"usage: bench_meta_ops create|stat|unlink DIR NCTX NFILES FILESIZE SRC\n");
		return 2;
	}
	phase = argv[1];
	nctx = atol(argv[3]);
	nfiles = atol(argv[4]);
	fsz = atol(argv[5]);
	if (nctx < 1 || nfiles < 1 || nfiles > 100 || fsz < 0) {
		fprintf(stderr, "bench_meta_ops: bad NCTX/NFILES/FILESIZE\n");
		return 2;
	}
	width = 4;
	for (long m = nctx - 1; m >= 10000; m /= 10)
		width++;
	if (!strcmp(phase, "create") && fsz > 0) {
		struct stat st;
		int sfd = open(argv[6], O_RDONLY);

		if (sfd < 0 || fstat(sfd, &st) || st.st_size < fsz) {
			fprintf(stderr, "bench_meta_ops: %s: unusable source\n", argv[6]);
			return 1;
		}
		slots = (long)(st.st_size / fsz);
		if (slots > 1024)
			slots = 1024;
		src = malloc((size_t)(slots * fsz));
		if (!src || pread(sfd, src, (size_t)(slots * fsz), 0) != slots * fsz) {
			fprintf(stderr, "bench_meta_ops: cannot read %s\n", argv[6]);
			return 1;
		}
		close(sfd);
	}
	if (chdir(argv[2])) {
		fprintf(stderr, "bench_meta_ops: chdir %s: %s\n", argv[2], strerror(errno));
		return 1;
	}

	if (!strcmp(phase, "create")) {
		t0 = now_ns();
		for (long c = 0; c < nctx; c++) {
			long long m0 = now_ns();

			ctx_name(path, sizeof(path), c);
			if (mkdir(path, 0755)) {
				fprintf(stderr, "bench_meta_ops: mkdir %s: %s\n", path,
					strerror(errno));
				return 1;
			}
			tm += now_ns() - m0;
			for (long l = 0; l < nfiles; l++) {
				int fd;

				file_name(path, sizeof(path), c, l);
				fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
				if (fd < 0) {
					fprintf(stderr, "bench_meta_ops: open %s: %s\n", path,
						strerror(errno));
					return 1;
				}
				if (fsz > 0 && write(fd, src + ((c * nfiles + l) % slots) * fsz,
						     (size_t)fsz) != fsz) {
					fprintf(stderr, "bench_meta_ops: write %s: %s\n", path,
						strerror(errno));
					return 1;
				}
				if (close(fd)) {
					fprintf(stderr, "bench_meta_ops: close %s: %s\n", path,
						strerror(errno));
					return 1;
				}
			}
		}
		t1 = now_ns();
		printf("ns=%lld\nmkdir_ns=%lld\n", t1 - t0, tm);
	} else if (!strcmp(phase, "stat")) {
		struct stat st;

		t0 = now_ns();
		for (long c = 0; c < nctx; c++)
			for (long l = 0; l < nfiles; l++) {
				file_name(path, sizeof(path), c, l);
				if (stat(path, &st)) {
					fprintf(stderr, "bench_meta_ops: stat %s: %s\n", path,
						strerror(errno));
					return 1;
				}
				if (st.st_size != fsz) {
					fprintf(stderr,
						"bench_meta_ops: stat %s: size %lld, expected %ld\n",
						path, (long long)st.st_size, fsz);
					return 1;
				}
			}
		t1 = now_ns();
		printf("ns=%lld\n", t1 - t0);
	} else if (!strcmp(phase, "unlink")) {
		t0 = now_ns();
		for (long c = 0; c < nctx; c++)
			for (long l = 0; l < nfiles; l++) {
				file_name(path, sizeof(path), c, l);
				if (unlink(path)) {
					fprintf(stderr, "bench_meta_ops: unlink %s: %s\n", path,
						strerror(errno));
					return 1;
				}
			}
		t1 = now_ns();
		printf("ns=%lld\n", t1 - t0);
		t0 = now_ns();
		for (long c = 0; c < nctx; c++) {
			ctx_name(path, sizeof(path), c);
			if (rmdir(path)) {
				fprintf(stderr, "bench_meta_ops: rmdir %s: %s\n", path,
					strerror(errno));
				return 1;
			}
		}
		t1 = now_ns();
		printf("rmdir_ns=%lld\n", t1 - t0);
	} else {
		fprintf(stderr, "bench_meta_ops: unknown phase %s\n", phase);
		return 2;
	}
	free(src);
	return 0;
}
