/*
 * log.h - the host's own log lines, on stderr: in text (the default), each
 * starting "luaecho: "; with --log-format json, each one JSON object (time,
 * level, msg, and the fields of struct log_fields that apply). A line is
 * written with one write(2), so lines from different threads never
 * interleave. Scripts' print() goes to stdout and is not this.
 */
#ifndef LUAECHO_LOG_H
#define LUAECHO_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
/* The level in force (the admin console may change it at any time). */
enum log_level log_level(void);
bool log_enabled(enum log_level level);
/* Parse "error", "warn", "info" or "debug". Returns false for anything else. */
bool log_parse_level(const char *name, enum log_level *level);
const char *log_level_name(enum log_level level);

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Set once at start-up, before any thread but main runs. */
void log_set_format(enum log_format format);
enum log_format log_get_format(void);
/* Parse "text" or "json". Returns false for anything else. */
bool log_parse_format(const char *name, enum log_format *format);
/* The worker this thread serves (1..N), for the JSON "worker" member; set
 * once on each worker thread. 0 (the default): none, as on the main thread. */
void log_set_worker(int id);
int log_worker(void);

/* One extra member from a script (luaecho.log's fields): a string, or
 * when 'string' is NULL a number (an integer with 'is_integer'). */
struct log_extra {
    const char *key;
    const char *string;
    double number;
    long long integer;
    bool is_integer;
};

/* What a line is about, beyond its message. NULL and 0 members are left
 * out. In JSON each is a member of the line's object; in text none of them
 * shows (the message already names them) but the extras, appended to the
 * message as " key=value", and 'traceback', on the lines after it. */
struct log_fields {
    const char *peer;      /* "127.0.0.1:5000" */
    const char *listener;  /* "127.0.0.1:2222", "unix:/run/x.sock" */
    const char *callback;  /* "data_received", "timer callback", ... */
    const char *traceback; /* "stack traceback:\n\t..." */
    int generation;        /* of the code, when it matters (a failed upgrade) */
    unsigned suppressed;   /* repeats held back that this line sums up */
    const struct log_extra *extra;
    size_t extra_count;
};

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* log_msg with fields (NULL: none). */
void log_with(enum log_level level, const struct log_fields *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
/* log_limited with fields; the count held back is also "suppressed". */
void log_limited_with(struct log_rate *rate, enum log_level level, const struct log_fields *fields,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Print one line whatever the level: for lines other programs wait for.
 * Always text ("luaecho: listening on ..."), also with --log-format json. */
void log_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
