/*
 * log.c - level-filtered log lines on stderr, as text or as JSON objects.
 * Each line is formatted whole, then written with a single write(2): stderr
 * is unbuffered, and one write keeps a line in one piece even when several
 * threads log at once.
 */
#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set from the admin console's thread while workers log: atomic. */
static _Atomic int current_level = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_prefixes[] = {"luaecho: error: ", "luaecho: warning: ", "luaecho: ",
                                             "luaecho: debug: "};

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&current_level, (int)level, memory_order_relaxed);
}

enum log_level log_level(void)
{
    return (enum log_level)atomic_load_explicit(&current_level, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&current_level, memory_order_relaxed);
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

/* A line being built: on the stack while it fits, else on the heap. A
 * failed allocation marks it broken, and a broken line is not written. */
struct line {
    char *p;
    size_t len, cap;
    bool heap, broken;
    char small[1024];
};

static void line_init(struct line *l)
{
    l->p = l->small;
    l->len = 0;
    l->cap = sizeof l->small;
    l->heap = l->broken = false;
}

static bool line_reserve(struct line *l, size_t more)
{
    if (l->broken)
        return false;
    if (l->len + more <= l->cap)
        return true;
    size_t cap = l->cap * 2;
    while (cap < l->len + more)
        cap *= 2;
    char *p = l->heap ? realloc(l->p, cap) : malloc(cap);
    if (!p) {
        l->broken = true;
        return false;
    }
    if (!l->heap)
        memcpy(p, l->p, l->len);
    l->p = p;
    l->cap = cap;
    l->heap = true;
    return true;
}

static void put(struct line *l, const char *s, size_t n)
{
    if (line_reserve(l, n)) {
        memcpy(l->p + l->len, s, n);
        l->len += n;
    }
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void vprint(struct line *l, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0 && line_reserve(l, (size_t)n + 1)) {
        vsnprintf(l->p + l->len, (size_t)n + 1, fmt, again);
        l->len += (size_t)n;
    } else if (n < 0) {
        l->broken = true;
    }
    va_end(again);
}

static void print(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void print(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(l, fmt, ap);
    va_end(ap);
}

static void line_write(struct line *l)
{
    if (!l->broken) {
        put(l, "\n", 1);
        if (!l->broken)
            write_all(l->p, l->len);
    }
    if (l->heap)
        free(l->p);
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_length(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned min;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* s as a JSON string: quotes, backslashes and control characters escaped,
 * and each byte that is not valid UTF-8 replaced by U+FFFD. */
static void put_json_string(struct line *l, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    put(l, "\"", 1);
    size_t i = 0;
    while (i < n) {
        size_t run = i; /* bytes that go out as they are */
        while (run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\')
            run++;
        put(l, (const char *)s + i, run - i);
        i = run;
        if (i == n)
            break;
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
            i++;
        } else if (c == '\n') {
            put(l, "\\n", 2);
            i++;
        } else if (c == '\t') {
            put(l, "\\t", 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            print(l, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_length(s + i, n - i);
            if (len == 0) {
                put(l, "\\ufffd", 6);
                i++;
            } else {
                put(l, (const char *)s + i, len);
                i += len;
            }
        }
    }
    put(l, "\"", 1);
}

/* A script's number: an integer as one, else the first of %.15g, %.16g
 * and %.17g that reads back the same (0.1, not 0.10000000000000001); JSON
 * has no NaN or infinity: those become null. */
static void put_number(struct line *l, const struct log_extra *e)
{
    double v = e->number;
    if (e->is_integer)
        print(l, "%lld", e->integer);
    else if (isnan(v) || isinf(v))
        puts_(l, "null");
    else if (fabs(v) < 1e15 && v == (double)(long long)v) /* in range before the cast */
        print(l, "%lld", (long long)v);
    else {
        char text[40];
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(text, sizeof text, "%.*g", digits, v);
            if (strtod(text, NULL) == v)
                break;
        }
        puts_(l, text);
    }
}

/* A text extra's value: as it is, or quoted as a JSON string when it is
 * empty or holds a space, a quote, an '=' or a control character. */
static void put_text_value(struct line *l, const char *s)
{
    bool plain = *s != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
        plain = *p > 0x20 && *p != 0x7f && *p != '"' && *p != '=';
    if (plain)
        puts_(l, s);
    else
        put_json_string(l, s);
}

static _Thread_local int worker_id;
static enum log_format current_format = LOG_FORMAT_TEXT;
static const char *const format_names[] = {"text", "json"};

void log_set_format(enum log_format format)
{
    current_format = format;
}

enum log_format log_get_format(void)
{
    return current_format;
}

bool log_parse_format(const char *name, enum log_format *format)
{
    for (size_t i = 0; i < sizeof format_names / sizeof *format_names; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *format = (enum log_format)i;
            return true;
        }
    }
    return false;
}

void log_set_worker(int id)
{
    worker_id = id;
}

int log_worker(void)
{
    return worker_id;
}

/* The members a script may not set: the line's own. */
static bool reserved(const char *key)
{
    return strcmp(key, "time") == 0 || strcmp(key, "level") == 0 || strcmp(key, "msg") == 0 ||
           strcmp(key, "worker") == 0;
}

static void put_member(struct line *l, const char *key, const char *value)
{
    print(l, ",\"%s\":", key);
    put_json_string(l, value);
}

static void json_line(struct line *l, const char *level, const struct log_fields *f, const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    char stamp[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);
    print(l, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", stamp, level);
    struct line msg;
    line_init(&msg);
    vprint(&msg, fmt, ap);
    put(&msg, "", 1);
    if (msg.broken)
        l->broken = true;
    else
        put_json_string(l, msg.p);
    if (msg.heap)
        free(msg.p);
    if (worker_id > 0)
        print(l, ",\"worker\":%d", worker_id);
    if (f) {
        if (f->listener)
            put_member(l, "listener", f->listener);
        if (f->peer)
            put_member(l, "peer", f->peer);
        if (f->generation > 0)
            print(l, ",\"generation\":%d", f->generation);
        if (f->callback)
            put_member(l, "callback", f->callback);
        if (f->suppressed > 0)
            print(l, ",\"suppressed\":%u", f->suppressed);
        if (f->traceback)
            put_member(l, "traceback", f->traceback);
        for (size_t i = 0; i < f->extra_count; i++) {
            const struct log_extra *e = &f->extra[i];
            if (reserved(e->key))
                continue;
            put(l, ",", 1);
            put_json_string(l, e->key);
            put(l, ":", 1);
            if (e->string)
                put_json_string(l, e->string);
            else
                put_number(l, e);
        }
    }
    put(l, "}", 1);
}

static void text_line(struct line *l, const char *prefix, const struct log_fields *f, const char *fmt, va_list ap)
{
    puts_(l, prefix);
    vprint(l, fmt, ap);
    if (!f)
        return;
    for (size_t i = 0; i < f->extra_count; i++) {
        const struct log_extra *e = &f->extra[i];
        put(l, " ", 1);
        puts_(l, e->key);
        put(l, "=", 1);
        if (e->string)
            put_text_value(l, e->string);
        else
            put_number(l, e);
    }
    if (f->traceback) {
        put(l, "\n", 1);
        puts_(l, f->traceback);
    }
}

/* Format one line whole and write it at once. */
static void emit(enum log_level level, const char *prefix, const struct log_fields *f, const char *fmt,
                 va_list ap)
{
    struct line l;
    line_init(&l);
    if (current_format == LOG_FORMAT_JSON)
        json_line(&l, level_names[level], f, fmt, ap);
    else
        text_line(&l, prefix, f, fmt, ap);
    line_write(&l);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, level_prefixes[level], NULL, fmt, ap);
    va_end(ap);
}

void log_with(enum log_level level, const struct log_fields *fields, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, level_prefixes[level], fields, fmt, ap);
    va_end(ap);
}

void log_always(const char *fmt, ...)
{
    struct line l;
    va_list ap;
    va_start(ap, fmt);
    line_init(&l);
    puts_(&l, "luaecho: ");
    vprint(&l, fmt, ap);
    line_write(&l);
    va_end(ap);
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void limited(struct log_rate *rate, enum log_level level, const struct log_fields *fields,
                    const char *fmt, va_list ap)
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
    vsnprintf(line, sizeof line, fmt, ap);
    struct log_fields f = fields ? *fields : (struct log_fields){0};
    f.suppressed = held_back;
    if (held_back > 0)
        log_with(level, &f, "%s (%u more like this since the last such line)", line, held_back);
    else
        log_with(level, &f, "%s", line);
}

void log_limited(struct log_rate *rate, enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    limited(rate, level, NULL, fmt, ap);
    va_end(ap);
}

void log_limited_with(struct log_rate *rate, enum log_level level, const struct log_fields *fields,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    limited(rate, level, fields, fmt, ap);
    va_end(ap);
}
