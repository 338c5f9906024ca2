/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static enum kv_log_level kv_log_level = KV_LOG_INFO;
static int kv_log_syslog;

void kv_log_set_level(enum kv_log_level lvl) { kv_log_level = lvl; }

void kv_log_to_syslog(int on)
{
	kv_log_syslog = on;
	if (on)
		openlog("kvfs", LOG_PID, LOG_DAEMON);
}

void kv_log(enum kv_log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[1024];
	va_list ap;

	if (lvl > kv_log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (kv_log_syslog)
		syslog(prio[lvl], "%s", line);
	else
		fprintf(stderr, "kvfs: %s: %s\n", names[lvl], line);
}
