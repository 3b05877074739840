/*
 * redis_url.c - Redis URLs parsed (redis_url.h).
 * Pure: reads the text, fills the struct, or writes one message. Messages
 * never repeat the URL, which may carry a password.
 * Rule: every part is checked completely (no atoi, no silent truncation).
 */
#include "redis_url.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FORMS "redis://[user:password@]host[:port][/db], unix:/path[?db=N] or redis+unix://[user:password@]/path[?db=N]"

static int fail(char *error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, REDIS_URL_ERROR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

/* Decimal digits [s, end) as a number in [min, max]; -1 when not one. */
static long parse_number(const char *s, const char *end, long min, long max)
{
    if (s == end || end - s > 10)
        return -1;
    long n = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n >= min && n <= max ? n : -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* [s, end) percent-decoded into 'out' (REDIS_URL_SECRET_MAX bytes, NUL
 * ended); -1 on a bad escape, a NUL or too long. */
static int decode(const char *s, const char *end, char *out)
{
    size_t n = 0;
    for (const char *p = s; p < end; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            if (end - p < 3)
                return -1;
            int hi = hex_value(p[1]), lo = hex_value(p[2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = hi * 16 + lo;
            p += 2;
        }
        if (n + 1 >= REDIS_URL_SECRET_MAX)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

/* "user:password" or ":password" in [s, end) into 'out'. */
static int parse_userinfo(const char *s, const char *end, struct redis_url *out, char *error)
{
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon)
        return fail(error, "the part before '@' must be USER:PASSWORD or :PASSWORD (a password alone goes "
                           "after a colon: redis://:PASSWORD@host)");
    if (decode(s, colon, out->user) != 0 || decode(colon + 1, end, out->password) != 0)
        return fail(error, "the user or password has a bad %%XX escape or is longer than %d bytes",
                    REDIS_URL_SECRET_MAX - 1);
    if (out->password[0] == '\0')
        return fail(error, "the password after ':' is empty (leave out USER:PASSWORD@ for none)");
    out->has_password = true;
    return 0;
}

/* "?db=N" (or nothing) in [s, end). */
static int parse_query(const char *s, const char *end, struct redis_url *out, char *error)
{
    if (s == end)
        return 0;
    if (end - s < 4 || strncmp(s, "?db=", 4) != 0)
        return fail(error, "the only option after the path is ?db=N");
    long db = parse_number(s + 4, end, 0, 2147483647);
    if (db < 0)
        return fail(error, "db must be a number from 0 (?db=N)");
    out->db = (int)db;
    return 0;
}

/* A socket path [s, end), then its ?db=N. */
static int parse_path(const char *s, const char *end, struct redis_url *out, char *error)
{
    const char *query = memchr(s, '?', (size_t)(end - s));
    const char *path_end = query ? query : end;
    if (path_end == s)
        return fail(error, "the Unix socket path is empty (%s)", FORMS);
    if ((size_t)(path_end - s) >= REDIS_URL_PATH_MAX)
        return fail(error, "the Unix socket path is longer than %d bytes", REDIS_URL_PATH_MAX - 1);
    if (memchr(s, '\0', (size_t)(path_end - s)))
        return fail(error, "the Unix socket path has a NUL byte");
    memcpy(out->path, s, (size_t)(path_end - s));
    out->path[path_end - s] = '\0';
    out->is_unix = true;
    return query ? parse_query(query, end, out, error) : 0;
}

/* "host", "[v6]", with ":port" in [s, end). */
static int parse_host_port(const char *s, const char *end, struct redis_url *out, char *error)
{
    const char *host = s, *host_end, *rest;
    if (s < end && *s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (!close)
            return fail(error, "an IPv6 address needs its closing ']'");
        host = s + 1, host_end = close, rest = close + 1;
    } else {
        host_end = memchr(s, ':', (size_t)(end - s));
        if (!host_end)
            host_end = end;
        rest = host_end;
    }
    if (host_end == host)
        return fail(error, "the host is missing (%s)", FORMS);
    if ((size_t)(host_end - host) >= REDIS_URL_HOST_MAX)
        return fail(error, "the host is longer than %d bytes", REDIS_URL_HOST_MAX - 1);
    memcpy(out->host, host, (size_t)(host_end - host));
    out->host[host_end - host] = '\0';
    if (rest == end)
        return 0;
    long port = *rest == ':' ? parse_number(rest + 1, end, 1, 65535) : -1;
    if (port < 0)
        return fail(error, "the port must be a number from 1 to 65535 after ':'");
    out->port = (int)port;
    return 0;
}

/* After "redis://": [userinfo@]host[:port][/db]. */
static int parse_tcp(const char *s, struct redis_url *out, char *error)
{
    const char *end = s + strlen(s);
    const char *bad = strpbrk(s, "?#");
    if (bad)
        return fail(error, "'%c' has no meaning here (%s)", *bad, FORMS);
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *authority_end = slash ? slash : end;
    const char *at = NULL;
    for (const char *p = s; p < authority_end; p++)
        if (*p == '@')
            at = p; /* the last '@': a password may hold one unescaped */
    if (at && parse_userinfo(s, at, out, error) != 0)
        return -1;
    if (parse_host_port(at ? at + 1 : s, authority_end, out, error) != 0)
        return -1;
    if (slash && slash + 1 < end) {
        long db = parse_number(slash + 1, end, 0, 2147483647);
        if (db < 0)
            return fail(error, "the database after '/' must be a number from 0");
        out->db = (int)db;
    }
    return 0;
}

/* After "redis+unix://": [userinfo@]/path[?db=N]. */
static int parse_redis_unix(const char *s, struct redis_url *out, char *error)
{
    const char *end = s + strlen(s);
    const char *slash = strchr(s, '/');
    if (!slash)
        return fail(error, "redis+unix:// needs an absolute socket path (redis+unix:///run/redis.sock)");
    const char *at = NULL;
    for (const char *p = s; p < slash; p++)
        if (*p == '@')
            at = p;
    if ((at ? at + 1 : s) != slash)
        return fail(error, "redis+unix:// takes no host: redis+unix://[user:password@]/path");
    if (at && parse_userinfo(s, at, out, error) != 0)
        return -1;
    return parse_path(slash, end, out, error);
}

int redis_url_parse(const char *text, struct redis_url *out, char *error)
{
    *out = (struct redis_url){.port = 6379};
    if (strncmp(text, "redis://", 8) == 0)
        return parse_tcp(text + 8, out, error);
    if (strncmp(text, "redis+unix://", 13) == 0)
        return parse_redis_unix(text + 13, out, error);
    if (strncmp(text, "unix:", 5) == 0)
        return parse_path(text + 5, text + strlen(text), out, error);
    if (strncmp(text, "rediss://", 9) == 0)
        return fail(error, "rediss:// (TLS) is not supported: hiredis is built without TLS here");
    return fail(error, "a Redis URL starts with redis://, unix: or redis+unix:// (%s)", FORMS);
}

const char *redis_url_describe(const struct redis_url *url, char *buf, size_t size)
{
    if (url->is_unix)
        snprintf(buf, size, "unix:%s", url->path);
    else if (strchr(url->host, ':'))
        snprintf(buf, size, "redis://[%s]:%d/%d", url->host, url->port, url->db);
    else
        snprintf(buf, size, "redis://%s:%d/%d", url->host, url->port, url->db);
    return buf;
}
