/* SPDX-License-Identifier: Apache-2.0 */
/* kvfs: mount a KV-cache store. Usage: kvfs [options] STORE MOUNTPOINT */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fastpath.h"
#include "fuse_ops.h"
#include "log.h"

struct cmdline {
	struct kv_config cfg;
	char *store, *mountpoint;
	int foreground, debug, single, help, version, markdown, man, bad;
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FG,
	KEY_DEBUG,
	KEY_SINGLE,
	KEY_MARKDOWN,
	KEY_MAN,
	KEY_ALLOW_OTHER
};

static const struct fuse_opt kv_fuse_opts[] = { FUSE_OPT_KEY("-h", KEY_HELP),
						FUSE_OPT_KEY("--help", KEY_HELP),
						FUSE_OPT_KEY("-V", KEY_VERSION),
						FUSE_OPT_KEY("--version", KEY_VERSION),
						FUSE_OPT_KEY("-f", KEY_FG),
						FUSE_OPT_KEY("-d", KEY_DEBUG),
						FUSE_OPT_KEY("debug", KEY_DEBUG),
						FUSE_OPT_KEY("-s", KEY_SINGLE),
						FUSE_OPT_KEY("--options-markdown", KEY_MARKDOWN),
						FUSE_OPT_KEY("--man", KEY_MAN),
						FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
						FUSE_OPT_END };

/* fuse_opt callback: our -o options go through the option table; the
 * mount options libfuse knows are kept for it. */
static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cmdline *c = data;
	char name[64], err[256];
	const char *eq;
	size_t n;
	int rc;

	(void)outargs;
	switch (key) {
	case KEY_HELP: c->help = 1; return 0;
	case KEY_VERSION: c->version = 1; return 0;
	case KEY_FG: c->foreground = 1; return 0;
	case KEY_DEBUG: c->debug = c->foreground = 1; return 1;
	case KEY_SINGLE: c->single = 1; return 0;
	case KEY_MARKDOWN: c->markdown = 1; return 0;
	case KEY_MAN: c->man = 1; return 0;
	case KEY_ALLOW_OTHER: c->cfg.allow_other = 1; return 1; /* libfuse's too */
	case FUSE_OPT_KEY_NONOPT:
		if (!c->store)
			c->store = strdup(arg);
		else if (!c->mountpoint)
			c->mountpoint = strdup(arg);
		else {
			fprintf(stderr, "kvfs: unexpected argument '%s'\n", arg);
			c->bad = 1;
		}
		return 0;
	case FUSE_OPT_KEY_OPT:
		eq = strchr(arg, '=');
		n = eq ? (size_t)(eq - arg) : strlen(arg);
		if (n >= sizeof(name) || arg[0] == '-')
			return 1;
		memcpy(name, arg, n);
		name[n] = 0;
		if (!kv_opt_known(name))
			return 1;
		rc = kv_opt_set(&c->cfg, name, eq ? eq + 1 : NULL, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "kvfs: %s\n", err);
			c->bad = 1;
		}
		return 0;
	}
	return 1;
}

/* Background start: the child mounts and reports success or failure
 * through a pipe, so the parent's exit status tells the caller. */
static int daemon_start(int *notify)
{
	int p[2];
	pid_t pid;
	char status = 1;

	if (pipe(p))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(p[0]);
	setsid();
	*notify = p[1];
	return 0;
}

static void daemon_ready(int notify, char status)
{
	int fd;

	if (notify < 0)
		return;
	if (status == 0 && (fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
		kv_log_to_syslog(1);
	}
	if (write(notify, &status, 1) != 1)
		status = 1;
	close(notify);
}

/* Physical memory in bytes, 0 if unknown. */
static uint64_t phys_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);

	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

static void forget_attr(void *arg, uint64_t ino)
{
	fuse_lowlevel_notify_inval_inode(arg, ino, -1, 0);
}

static int serve(struct cmdline *c, struct fuse_args *args, int notify)
{
	struct kv_mount m = { .timeout = 1.0 };
	struct fuse_session *se;
	char err[512];
	int rc = 1;

	/* The session is made first: it rejects mount options it does not know
	 * before anything is touched. */
	se = fuse_session_new(args, &kv_fuse_ops, sizeof(kv_fuse_ops), &m);
	if (!se)
		return 1;
	if (!realpath(c->mountpoint, m.mountpoint)) {
		fprintf(stderr, "kvfs: mountpoint %s: %s\n", c->mountpoint, strerror(errno));
		goto out;
	}
	c->cfg.mount = 1;
	if (kv_fs_open(c->store, &c->cfg, &m.fs, err, sizeof(err))) {
		fprintf(stderr, "kvfs: %s\n", err);
		goto out;
	}
	if (kv_fast_start(m.fs, &m.fast)) {
		fprintf(stderr, "kvfs: cannot start the GPU fast path: %s\n", strerror(ENOMEM));
		goto out;
	}
	if (fuse_set_signal_handlers(se) || fuse_session_mount(se, m.mountpoint))
		goto out;
	kv_fs_set_notify(m.fs, forget_attr, se);
	m.se = se;
	daemon_ready(notify, 0);
	if (c->single) {
		rc = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *lc = fuse_loop_cfg_create();
		/* Keep worker threads alive: a new thread costs fresh stacks and
		 * buffers, which are expensive to fault in on these VMs. */
		fuse_loop_cfg_set_max_threads(lc, 16);
		fuse_loop_cfg_set_idle_threads(lc, 16);
		rc = fuse_session_loop_mt(se, lc);
		fuse_loop_cfg_destroy(lc);
	}
	/* The loop returns the signal's number when SIGTERM, SIGINT or SIGHUP
	 * stopped it: a stop that was asked for, which unmounts and closes
	 * the store as fusermount3 -u does, so it exits 0 (the service unit
	 * counts status 1 as a failure). A negative errno is a failure. */
	rc = rc < 0 ? 1 : 0;
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
out:
	fuse_session_destroy(se);
	/* GPU requests end before the store closes. A mount that failed
	 * leaves no store behind that it created. */
	kv_fast_stop(m.fast);
	if (m.se)
		kv_fs_close(m.fs);
	else
		kv_fs_abandon(m.fs);
	return rc;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cmdline c = { 0 };
	char err[512];
	int notify = -1, rc;

	/* Chunk buffers come from the heap, not fresh mappings: mmap and
	 * page faults are costly here, and request-sized maps churn. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	kv_opt_defaults(&c.cfg);
	if (fuse_opt_parse(&args, &c, kv_fuse_opts, opt_proc)) {
		fuse_opt_free_args(&args);
		return 1;
	}
	if (c.help || c.version || c.markdown || c.man) {
		if (c.help)
			kv_opt_print_help(stdout);
		if (c.version)
			printf("kvfs %s (format %d, libfuse %s)\n", KVFS_VERSION, KV_FORMAT_VERSION,
			       fuse_pkgversion());
		if (c.markdown)
			kv_opt_print_markdown(stdout);
		if (c.man)
			kv_opt_print_man(stdout);
		fuse_opt_free_args(&args);
		return 0;
	}
	if (c.bad || !c.store || !c.mountpoint) {
		if (!c.bad)
			fprintf(stderr, "kvfs: need STORE and MOUNTPOINT (see kvfs --help)\n");
		fuse_opt_free_args(&args);
		return 1;
	}
	/* The kernel checks permissions from the modes kvfs stores. */
	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=kvfs");
	fuse_opt_add_arg(&args, "-osubtype=kvfs");
	if (c.debug)
		kv_log_set_level(KV_LOG_DEBUG);
	/* Lowered, not refused: one fstab line serves machines of any size. */
	if (kv_opt_fit_memory(&c.cfg, phys_memory(), err, sizeof(err)))
		kv_warn("%s", err);
	if (!c.foreground && daemon_start(&notify)) {
		fprintf(stderr, "kvfs: cannot start in the background: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	rc = serve(&c, &args, notify);
	if (rc)
		daemon_ready(notify, 1);
	fuse_opt_free_args(&args);
	free(c.store);
	free(c.mountpoint);
	return rc;
}
