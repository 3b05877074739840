/*
 * log.c - level-filtered log lines on stderr.
 * Each line is formatted whole, then written with a single write(2): stderr
 * is unbuffered, and one write keeps a line in one piece even when several
 * threads log at once.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_prefixes[] = {"luaecho: error: ", "luaecho: warning: ", "luaecho: ",
                                             "luaecho: debug: "};

void log_set_level(enum log_level level)
{
    current_level = level;
}

bool log_enabled(enum log_level level)
{
    return level <= current_level;
}

bool log_parse_level(const char *name, enum log_level *level)
{
    for (size_t i = 0; i < sizeof level_names / sizeof *level_names; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return true;
        }
    }
    return false;
}

const char *log_level_name(enum log_level level)
{
    return level_names[level];
}

/* Write all of buf, retrying on short writes and EINTR. */
static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0)
            return; /* nowhere left to report it */
        buf += n;
        len -= (size_t)n;
    }
}

/* Format prefix + message + newline into one buffer and write it at once. */
static void emit(const char *prefix, const char *fmt, va_list ap)
{
    char small[512];
    va_list again;
    va_copy(again, ap);
    size_t plen = strlen(prefix);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0) {
        va_end(again);
        return;
    }
    size_t len = plen + (size_t)n + 1;
    char *buf = len <= sizeof small ? small : malloc(len + 1);
    if (buf) {
        memcpy(buf, prefix, plen);
        vsnprintf(buf + plen, (size_t)n + 1, fmt, again);
        buf[len - 1] = '\n';
        write_all(buf, len);
        if (buf != small)
            free(buf);
    }
    va_end(again);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level_prefixes[level], fmt, ap);
    va_end(ap);
}

void log_always(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("luaecho: ", fmt, ap);
    va_end(ap);
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void log_limited(struct log_rate *rate, enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    uint64_t now = monotonic_ms();
    uint64_t last = atomic_load(&rate->last_ms);
    if ((last != 0 && now - last < 1000) || !atomic_compare_exchange_strong(&rate->last_ms, &last, now)) {
        atomic_fetch_add(&rate->held_back, 1);
        return;
    }
    unsigned held_back = atomic_exchange(&rate->held_back, 0);
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (held_back > 0)
        log_msg(level, "%s (%u more like this since the last such line)", line, held_back);
    else
        log_msg(level, "%s", line);
}
