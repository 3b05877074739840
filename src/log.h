/*
 * log.h - the host's own log lines, on stderr, each starting "luaecho: ".
 * A line is written with one write(2), so lines from different threads never
 * interleave. Scripts' print() goes to stdout and is not this.
 */
#ifndef LUAECHO_LOG_H
#define LUAECHO_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
/* Parse "error", "warn", "info" or "debug". Returns false for anything else. */
bool log_parse_level(const char *name, enum log_level *level);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* For a kind of event that can repeat quickly (a limit tripping): at most
 * one line a second, saying how many were held back since the last one.
 * Thread-safe: one static per kind serves every worker. */
struct log_rate {
    _Atomic uint64_t last_ms;
    _Atomic unsigned held_back;
};
void log_limited(struct log_rate *rate, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Print one line whatever the level: for lines other programs wait for. */
void log_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
