/*
 * Logging to stderr with sd-daemon "<N>" priority prefixes, which journald
 * turns into priorities.  The prefix is left out when stderr is a terminal.
 * Only main and session-level code log; library-like modules return -errno.
 */
#pragma once

#include <syslog.h>

/* Sets the maximum priority that is printed (LOG_ERR .. LOG_DEBUG). */
void log_set_level(int level);
int log_get_level(void);

/* Parses "err", "warning", "notice", "info", "debug" (or 3..7).  Returns
 * the level or -EINVAL. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
