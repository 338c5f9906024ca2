/* SPDX-License-Identifier: Apache-2.0 */
/* kv_log: one-line diagnostics to stderr (or syslog once daemonized). */
#ifndef KV_LOG_H
#define KV_LOG_H

enum kv_log_level { KV_LOG_ERR, KV_LOG_WARN, KV_LOG_INFO, KV_LOG_DEBUG };

void kv_log_set_level(enum kv_log_level lvl);
void kv_log_to_syslog(int on);
void kv_log(enum kv_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kv_err(...) kv_log(KV_LOG_ERR, __VA_ARGS__)
#define kv_warn(...) kv_log(KV_LOG_WARN, __VA_ARGS__)
#define kv_info(...) kv_log(KV_LOG_INFO, __VA_ARGS__)
#define kv_debug(...) kv_log(KV_LOG_DEBUG, __VA_ARGS__)

#endif
