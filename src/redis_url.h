/*
 * redis_url.h - a Redis URL parsed: redis://[user:password@]host[:port][/db],
 * unix:/path[?db=N] and redis+unix://[user:password@]/path[?db=N].
 * Pure: no I/O, no allocation, no Lua; the result points into nothing (every
 * part is copied into the struct's fixed buffers).
 * Rule: a URL is accepted whole or refused with one message saying which
 * part is wrong and what a right one looks like.
 */
#ifndef LUAECHO_REDIS_URL_H
#define LUAECHO_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_HOST_MAX 256
#define REDIS_URL_PATH_MAX 108 /* sun_path */
#define REDIS_URL_SECRET_MAX 256
#define REDIS_URL_ERROR_MAX 256

struct redis_url {
    bool is_unix;                   /* path set, host and port not */
    char host[REDIS_URL_HOST_MAX];  /* a name, an IPv4 address or an IPv6 one (without brackets) */
    int port;                       /* 6379 unless given */
    char path[REDIS_URL_PATH_MAX];  /* a Unix socket's path */
    char user[REDIS_URL_SECRET_MAX];     /* "" for none: AUTH password (Redis < 6 style) */
    char password[REDIS_URL_SECRET_MAX]; /* "" for none: no AUTH */
    bool has_password;
    int db;                         /* 0 unless given: SELECT db when not 0 */
};

/* Parse 'text' into 'out'. Returns 0, or -1 with one line in 'error'
 * (REDIS_URL_ERROR_MAX bytes) naming the URL's wrong part. */
int redis_url_parse(const char *text, struct redis_url *out, char *error);

/* 'url' as text without its password (for log lines): "redis://host:port/db"
 * or "unix:/path". Returns 'buf'. */
const char *redis_url_describe(const struct redis_url *url, char *buf, size_t size);

#endif
