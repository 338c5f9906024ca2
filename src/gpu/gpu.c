/* SPDX-License-Identifier: Apache-2.0 */
/* kv_gpu: plugin loading, imported mappings, lanes. See gpu.h. */
#include "gpu.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "grow.h"
#include "kvfs/ioctl.h"
#include "log.h"

#ifndef KVFS_PLUGIN_DIR
#define KVFS_PLUGIN_DIR "/usr/lib/kvfs"
#endif

struct kv_gpu_map {
	struct kv_gpu_map *next;
	int dev;
	uint8_t handle[64];
	uint8_t *base;
	uint64_t size;
	uint32_t pid;
	uint64_t pid_start; /* the client's start time, to tell a reused pid */
	uint32_t refs;
	int gone; /* the client had exited when it was imported */
	int64_t last_used;
};

struct kv_gpu_lane {
	struct kv_gpu_lane *next;
	const struct kv_gpu_plugin *p;
	int dev;
	void *stream[KV_GPU_NSTREAM];
	void *ev[KV_GPU_NEV][KV_GPU_NSTREAM];
	void *stage[KV_GPU_NSTAGE];
};

struct region {
	void *p;
	size_t len;
};

struct kv_gpu {
	char spec[256];
	int shared; /* other users reach the mount: no test-only plugin */
	pthread_mutex_t lock;
	int started; /* 0: not tried; 1: running; <0: failed with this errno */
	void *dl;
	const struct kv_gpu_plugin *p;
	int ndev;
	uint8_t uuid[KVFS_MAX_DEVICES][16];
	struct kv_gpu_map *maps;
	struct kv_gpu_lane *lanes; /* idle lanes */
	struct region *regions;    /* host memory to page-lock / page-locked */
	size_t nregions, regions_cap;
	struct kv_gpu_stats st;
	pthread_t reaper;
	int reaper_on, stopping;
	pthread_cond_t wake;
};

static int64_t mono_sec(void) { return (int64_t)(kv_mono_ns() / 1000000000u); }

struct kv_gpu *kv_gpu_new(const char *spec)
{
	struct kv_gpu *g = calloc(1, sizeof(*g));
	pthread_condattr_t ca;

	if (!g)
		return NULL;
	snprintf(g->spec, sizeof(g->spec), "%s", spec && *spec ? spec : "auto");
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->wake, &ca);
	pthread_condattr_destroy(&ca);
	return g;
}

/* Load one plugin and start its runtime: 0 with g->p set, or -errno. */
static int load(struct kv_gpu *g, const char *path, int quiet_missing)
{
	char err[256] = "";
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	kv_gpu_plugin_fn fn;
	const struct kv_gpu_plugin *p;
	int n;

	if (!dl) {
		if (!quiet_missing)
			kv_err("gpu: cannot load %s: %s", path, dlerror());
		else
			kv_debug("gpu: %s: %s", path, dlerror());
		return -ENODEV;
	}
	if (g->shared && dlsym(dl, KV_GPU_PLUGIN_TEST_ONLY)) {
		kv_err("gpu: %s is a plugin for tests only, which opens what any client names with "
		       "the daemon's rights: not loaded on a mount with allow_other",
		       path);
		dlclose(dl); /* not started: nothing of it runs */
		return -ENODEV;
	}
	fn = (kv_gpu_plugin_fn)(uintptr_t)dlsym(dl, KV_GPU_PLUGIN_SYMBOL);
	p = fn ? fn() : NULL;
	if (!p || p->abi != KV_GPU_PLUGIN_ABI) {
		kv_err("gpu: %s is not a kvfs GPU plugin of ABI %u", path, KV_GPU_PLUGIN_ABI);
		dlclose(dl);
		return -ENODEV;
	}
	n = p->init(err, sizeof(err));
	if (n <= 0) {
		kv_warn("gpu: %s backend unavailable: %s", p->name, n < 0 ? err : "no device");
		/* A runtime may keep threads or handlers: never unload it once started. */
		return -ENODEV;
	}
	if (n > KVFS_MAX_DEVICES)
		n = KVFS_MAX_DEVICES;
	for (int i = 0; i < n; i++)
		if (p->device_uuid(i, g->uuid[i])) {
			kv_err("gpu: %s: no UUID for device %d: %s", p->name, i, p->last_error());
			return -ENODEV;
		}
	g->dl = dl;
	g->p = p;
	g->ndev = n;
	kv_info("gpu: %s backend with %d device(s) from %s", p->name, n, path);
	return 0;
}

void kv_gpu_set_shared(struct kv_gpu *g, int shared)
{
	pthread_mutex_lock(&g->lock);
	g->shared = shared;
	pthread_mutex_unlock(&g->lock);
}

static int load_named(struct kv_gpu *g, const char *name, int quiet)
{
	char exe[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		char *slash;
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(path, sizeof(path), "%s/libkvfs-gpu-%s.so", exe, name);
			if (!access(path, R_OK))
				return load(g, path, 0);
		}
	}
	snprintf(path, sizeof(path), "%s/libkvfs-gpu-%s.so", KVFS_PLUGIN_DIR, name);
	return load(g, path, quiet);
}

static void *reaper_main(void *arg);

static void register_region(struct kv_gpu *g, void *p, size_t len)
{
	int rc = g->p->host_register(p, len);

	if (rc)
		kv_warn("gpu: cannot page-lock %zu bytes of chunk buffers (%s); copies from "
			"them will be slower",
			len, g->p->last_error());
	else
		g->st.registered += len;
}

int kv_gpu_start(struct kv_gpu *g)
{
	int rc;

	pthread_mutex_lock(&g->lock);
	if (g->started) {
		rc = g->started > 0 ? 0 : g->started;
		pthread_mutex_unlock(&g->lock);
		return rc;
	}
	if (!strcmp(g->spec, "off"))
		rc = -ENODEV;
	else if (g->spec[0] == '/')
		rc = load(g, g->spec, 0);
	else if (!strcmp(g->spec, "auto"))
		rc = load_named(g, "cuda", 1) && load_named(g, "hip", 1) ? -ENODEV : 0;
	else
		rc = load_named(g, g->spec, 0);
	if (rc) {
		if (strcmp(g->spec, "off"))
			kv_info("gpu: no GPU backend (gpu=%s); the fast path answers ENODEV",
				g->spec);
		g->started = rc;
		pthread_mutex_unlock(&g->lock);
		return rc;
	}
	for (size_t i = 0; i < g->nregions; i++)
		register_region(g, g->regions[i].p, g->regions[i].len);
	g->started = 1;
	if (!pthread_create(&g->reaper, NULL, reaper_main, g))
		g->reaper_on = 1;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

void kv_gpu_register(struct kv_gpu *g, void *p, size_t len)
{
	pthread_mutex_lock(&g->lock);
	if (kv_grow(&g->regions, &g->regions_cap, g->nregions + 1, sizeof(*g->regions))) {
		pthread_mutex_unlock(&g->lock);
		return;
	}
	g->regions[g->nregions++] = (struct region){ p, len };
	if (g->started > 0)
		register_region(g, p, len);
	pthread_mutex_unlock(&g->lock);
}

uint32_t kv_gpu_vendor(const struct kv_gpu *g) { return g->p ? g->p->vendor : KVFS_GPU_NONE; }
const char *kv_gpu_name(const struct kv_gpu *g) { return g->p ? g->p->name : "none"; }
int kv_gpu_ndevices(const struct kv_gpu *g) { return g->p ? g->ndev : 0; }
const struct kv_gpu_plugin *kv_gpu_plugin(const struct kv_gpu *g) { return g->p; }

void kv_gpu_uuid(const struct kv_gpu *g, int dev, uint8_t uuid[16])
{
	memcpy(uuid, g->uuid[dev], 16);
}

int kv_gpu_device(const struct kv_gpu *g, const uint8_t uuid[16])
{
	for (int i = 0; g->p && i < g->ndev; i++)
		if (!memcmp(g->uuid[i], uuid, 16))
			return i;
	return -ENODEV;
}

/* Field 22 of /proc/PID/stat: when the process started (0: unknown). */
static uint64_t pid_start(uint32_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (p && sscanf(p + 2,
			"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
			"%*d %*d %*d %*d %llu",
			&start) == 1)
		return start;
	return 0;
}

int kv_gpu_map_get(struct kv_gpu *g, int dev, const uint8_t handle[64], uint32_t pid,
		   struct kv_gpu_map **out, char *err, size_t errlen)
{
	struct kv_gpu_map *m;
	void *base = NULL;
	uint64_t size = 0;
	int rc;

	pthread_mutex_lock(&g->lock);
	for (m = g->maps; m; m = m->next)
		if (m->dev == dev && !memcmp(m->handle, handle, 64))
			break;
	if (m) {
		m->refs++;
		m->last_used = mono_sec();
		pthread_mutex_unlock(&g->lock);
		*out = m;
		return 0;
	}
	pthread_mutex_unlock(&g->lock);

	/* Import without the lock: it takes up to a millisecond. */
	rc = g->p->ipc_open(dev, handle, &base, &size, err, errlen);
	if (rc)
		return rc < 0 ? rc : -EBADF;
	m = calloc(1, sizeof(*m));
	if (!m) {
		g->p->ipc_close(dev, base);
		return -ENOMEM;
	}
	m->dev = dev;
	memcpy(m->handle, handle, 64);
	m->base = base;
	m->size = size;
	m->pid = pid;
	m->pid_start = pid ? pid_start(pid) : 0;
	/* A client already gone when it is imported: closed at the next reap
	 * (a later process with its pid is not the client). */
	m->gone = pid && !m->pid_start;
	m->refs = 1;
	m->last_used = mono_sec();

	pthread_mutex_lock(&g->lock);
	{
		/* Another request may have imported the same handle meanwhile: the
		 * runtime counts both opens, so keep one and close the other. */
		struct kv_gpu_map *o;
		for (o = g->maps; o; o = o->next)
			if (o->dev == dev && !memcmp(o->handle, handle, 64))
				break;
		if (o) {
			o->refs++;
			o->last_used = m->last_used;
			pthread_mutex_unlock(&g->lock);
			g->p->ipc_close(dev, base);
			free(m);
			*out = o;
			return 0;
		}
	}
	m->next = g->maps;
	g->maps = m;
	g->st.mappings++;
	g->st.opens++;
	pthread_mutex_unlock(&g->lock);
	*out = m;
	return 0;
}

uint8_t *kv_gpu_map_base(const struct kv_gpu_map *m) { return m->base; }
uint64_t kv_gpu_map_size(const struct kv_gpu_map *m) { return m->size; }

void kv_gpu_map_put(struct kv_gpu *g, struct kv_gpu_map *m)
{
	pthread_mutex_lock(&g->lock);
	m->refs--;
	m->last_used = mono_sec();
	pthread_mutex_unlock(&g->lock);
}

static int client_gone(const struct kv_gpu_map *m)
{
	if (m->gone)
		return 1;
	if (!m->pid)
		return 0;
	if (kill((pid_t)m->pid, 0) && errno == ESRCH)
		return 1;
	return m->pid_start && pid_start(m->pid) != m->pid_start;
}

int kv_gpu_reap(struct kv_gpu *g, int64_t idle_sec)
{
	struct kv_gpu_map *dead = NULL, **pp;
	int64_t now = mono_sec();
	int n = 0;

	pthread_mutex_lock(&g->lock);
	for (pp = &g->maps; *pp;) {
		struct kv_gpu_map *m = *pp;
		if (!m->refs && (now - m->last_used >= idle_sec || client_gone(m))) {
			*pp = m->next;
			m->next = dead;
			dead = m;
			g->st.mappings--;
			g->st.closes++;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&g->lock);
	while (dead) {
		struct kv_gpu_map *m = dead;
		dead = m->next;
		if (g->p->ipc_close(m->dev, m->base))
			kv_warn("gpu: closing an IPC mapping of pid %u: %s", m->pid,
				g->p->last_error());
		free(m);
		n++;
	}
	return n;
}

static void *reaper_main(void *arg)
{
	struct kv_gpu *g = arg;

	pthread_mutex_lock(&g->lock);
	while (!g->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&g->wake, &g->lock, &ts);
		if (g->stopping)
			break;
		pthread_mutex_unlock(&g->lock);
		kv_gpu_reap(g, KV_GPU_IDLE_SEC);
		pthread_mutex_lock(&g->lock);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

static void lane_free(struct kv_gpu_lane *l)
{
	const struct kv_gpu_plugin *p = l->p;

	for (int i = 0; i < KV_GPU_NSTAGE; i++)
		if (l->stage[i])
			p->host_free(l->stage[i]);
	for (int i = 0; i < KV_GPU_NEV; i++)
		for (int s = 0; s < KV_GPU_NSTREAM; s++)
			if (l->ev[i][s])
				p->event_free(l->dev, l->ev[i][s]);
	for (int i = 0; i < KV_GPU_NSTREAM; i++)
		if (l->stream[i])
			p->stream_free(l->dev, l->stream[i]);
	free(l);
}

struct kv_gpu_lane *kv_gpu_lane_get(struct kv_gpu *g, int dev)
{
	struct kv_gpu_lane *l, **pp;

	pthread_mutex_lock(&g->lock);
	for (pp = &g->lanes; *pp; pp = &(*pp)->next)
		if ((*pp)->dev == dev) {
			l = *pp;
			*pp = l->next;
			pthread_mutex_unlock(&g->lock);
			return l;
		}
	pthread_mutex_unlock(&g->lock);
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->p = g->p;
	l->dev = dev;
	for (int i = 0; i < KV_GPU_NSTREAM; i++)
		if (g->p->stream_new(dev, &l->stream[i]))
			goto fail;
	for (int i = 0; i < KV_GPU_NEV; i++)
		for (int s = 0; s < KV_GPU_NSTREAM; s++)
			if (g->p->event_new(dev, &l->ev[i][s]))
				goto fail;
	return l;
fail:
	kv_err("gpu: cannot create a stream on device %d: %s", dev, g->p->last_error());
	lane_free(l);
	return NULL;
}

void kv_gpu_lane_put(struct kv_gpu *g, struct kv_gpu_lane *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&g->lock);
	l->next = g->lanes;
	g->lanes = l;
	pthread_mutex_unlock(&g->lock);
}

int kv_gpu_h2d(struct kv_gpu_lane *l, int s, void *dst, const void *src, size_t n)
{
	return l->p->copy_h2d(l->dev, l->stream[s], dst, src, n);
}

int kv_gpu_d2h(struct kv_gpu_lane *l, int s, void *dst, const void *src, size_t n)
{
	return l->p->copy_d2h(l->dev, l->stream[s], dst, src, n);
}

int kv_gpu_mark(struct kv_gpu_lane *l, int slot, int s)
{
	return l->p->event_record(l->dev, l->ev[slot][s], l->stream[s]);
}

int kv_gpu_wait(struct kv_gpu_lane *l, int slot, int s)
{
	return l->p->event_sync(l->dev, l->ev[slot][s]);
}
int kv_gpu_sync(struct kv_gpu_lane *l)
{
	int rc = 0;

	for (int i = 0; i < KV_GPU_NSTREAM; i++)
		if (l->p->stream_sync(l->dev, l->stream[i]))
			rc = -EIO;
	return rc;
}

void *kv_gpu_staging(struct kv_gpu_lane *l, int i)
{
	if (!l->stage[i])
		l->stage[i] = l->p->host_alloc(KV_GPU_STAGE);
	return l->stage[i];
}

void kv_gpu_stats(struct kv_gpu *g, struct kv_gpu_stats *s)
{
	pthread_mutex_lock(&g->lock);
	*s = g->st;
	pthread_mutex_unlock(&g->lock);
}

void kv_gpu_free(struct kv_gpu *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stopping = 1;
	pthread_cond_broadcast(&g->wake);
	pthread_mutex_unlock(&g->lock);
	if (g->reaper_on)
		pthread_join(g->reaper, NULL);
	if (g->p) {
		kv_gpu_reap(g, -1);
		while (g->lanes) {
			struct kv_gpu_lane *l = g->lanes;
			g->lanes = l->next;
			lane_free(l);
		}
		for (size_t i = 0; i < g->nregions; i++)
			g->p->host_unregister(g->regions[i].p);
	}
	/* The plugin stays loaded: GPU runtimes do not support being unloaded. */
	free(g->regions);
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

int kv_gpu_pin_ro(struct kv_gpu *g, void *p, size_t len)
{
	int rc = kv_gpu_start(g);

	if (!rc)
		rc = g->p->host_register_ro(p, len);
	if (!rc) {
		pthread_mutex_lock(&g->lock);
		g->st.registered += len;
		pthread_mutex_unlock(&g->lock);
	}
	return rc;
}

void kv_gpu_unpin(struct kv_gpu *g, void *p, size_t len)
{
	g->p->host_unregister(p);
	pthread_mutex_lock(&g->lock);
	g->st.registered -= len;
	pthread_mutex_unlock(&g->lock);
}
