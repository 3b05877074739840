/*
 * admin_command_check.c - see admin_command_check.h. The promises:
 *  - the verb is one of the enum's; 'error' is a NUL-terminated string of
 *    printable ASCII, non-empty exactly when the verb is ADMIN_INVALID;
 *  - kill's id is 1..2^63 and set log-level's level a log level; neither
 *    is set by another verb;
 *  - a '\r' after a line not ending in one changes nothing, nor do blanks
 *    before the line;
 *  - a command that parsed, written back in its plain form, parses the same.
 */
#include "admin_command_check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_command.h"

static bool broken(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool broken(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return false;
}

static bool error_text_ok(const struct admin_command *c, char *why, size_t why_len)
{
    const char *end = memchr(c->error, '\0', sizeof c->error);
    if (!end)
        return broken(why, why_len, "error is not NUL-terminated");
    for (const char *p = c->error; p < end; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return broken(why, why_len, "error holds byte 0x%02x", (unsigned char)*p);
    }
    if ((end == c->error) == (c->verb == ADMIN_INVALID))
        return broken(why, why_len, "verb %d with error '%s'", (int)c->verb, c->error);
    return true;
}

static bool fields_ok(const struct admin_command *c, char *why, size_t why_len)
{
    if ((int)c->verb < ADMIN_EMPTY || c->verb > ADMIN_INVALID)
        return broken(why, why_len, "verb %d out of range", (int)c->verb);
    if (c->verb == ADMIN_KILL ? c->id < 1 || c->id > (uint64_t)1 << 63 : c->id != 0)
        return broken(why, why_len, "verb %d with id %llu", (int)c->verb, (unsigned long long)c->id);
    if (c->verb == ADMIN_SET_LOG_LEVEL ? c->level < 0 || c->level > 3 : c->level != 0)
        return broken(why, why_len, "verb %d with level %d", (int)c->verb, c->level);
    return error_text_ok(c, why, why_len);
}

static bool same(const struct admin_command *a, const struct admin_command *b)
{
    return a->verb == b->verb && a->id == b->id && a->level == b->level && strcmp(a->error, b->error) == 0;
}

/* The plain form of a command that parsed ("" for the invalid). */
static void canonical(const struct admin_command *c, char *out, size_t len)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const char *const plain[] = {
        [ADMIN_EMPTY] = "", [ADMIN_HELP] = "help", [ADMIN_SHOW_INFO] = "show info",
        [ADMIN_SHOW_CONNS] = "show conns", [ADMIN_SHOW_ERRORS] = "show errors",
        [ADMIN_SHOW_GENERATIONS] = "show generations", [ADMIN_RELOAD] = "reload",
        [ADMIN_QUIT] = "quit", [ADMIN_INVALID] = "",
    };
    if (c->verb == ADMIN_KILL)
        snprintf(out, len, "kill %llu", (unsigned long long)c->id);
    else if (c->verb == ADMIN_SET_LOG_LEVEL)
        snprintf(out, len, "set log-level %s", levels[c->level]);
    else
        snprintf(out, len, "%s", plain[c->verb]);
}

/* The same line with "\r" after it, and with " \t" before it. */
static bool variants_ok(const unsigned char *data, size_t len, const struct admin_command *c, char *why,
                        size_t why_len)
{
    char *copy = malloc(len + 2);
    if (!copy)
        return true;
    struct admin_command v;
    memcpy(copy, data, len);
    copy[len] = '\r';
    admin_command_parse(copy, len + 1, &v);
    bool ends_cr = len > 0 && data[len - 1] == '\r'; /* then it is the one taken off */
    bool ok = ends_cr || same(c, &v) || broken(why, why_len, "a trailing \\r changed the result");
    copy[0] = ' ';
    copy[1] = '\t';
    memcpy(copy + 2, data, len);
    admin_command_parse(copy, len + 2, &v);
    ok = ok && (same(c, &v) || broken(why, why_len, "leading blanks changed the result"));
    free(copy);
    return ok;
}

bool admin_command_check(const unsigned char *data, size_t len, char *why, size_t why_len)
{
    struct admin_command c, again;
    admin_command_parse((const char *)data, len, &c);
    if (!fields_ok(&c, why, why_len))
        return false;
    admin_command_parse((const char *)data, len, &again);
    if (!same(&c, &again))
        return broken(why, why_len, "two parses of one line differ");
    if (c.verb != ADMIN_INVALID && c.verb != ADMIN_EMPTY) {
        char plain[64];
        canonical(&c, plain, sizeof plain);
        admin_command_parse(plain, strlen(plain), &again);
        if (!same(&c, &again))
            return broken(why, why_len, "'%s' does not parse as the line it came from", plain);
    }
    return variants_ok(data, len, &c, why, why_len);
}
