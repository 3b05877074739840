/*
 * http_request_check.h - the promises of http_request_parse, checked on
 * any input: shared by the libFuzzer target and the corpus replay test.
 * Written as static functions in this header, not a .c of its own,
 * because each of the two programs is built from one file of fuzz/ (the
 * replay by CMake, the fuzzer by scripts/fuzz-http), and each includes it
 * once. The promises:
 *  - HTTP_INCOMPLETE only under HTTP_HEAD_MAX bytes, HTTP_TOO_LARGE only
 *    from there on;
 *  - a DONE head is at most HTTP_HEAD_MAX bytes and ends in an empty line;
 *    its method is a token of at most 15 bytes, its path starts with '/',
 *    holds no '?' or control byte, and the request line starts
 *    "METHOD PATH"; the minor version is a digit;
 *  - feeding a growing prefix, the answer is INCOMPLETE until it settles,
 *    then never changes: a prefix of a head is never an error, and DONE
 *    comes exactly when the last byte of the head arrives.
 * Every prefix is parsed from an allocation of its exact size, so
 * AddressSanitizer sees any read past 'len'.
 */
#ifndef LUAECHO_HTTP_REQUEST_CHECK_H
#define LUAECHO_HTTP_REQUEST_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"

/* Every prefix up to this length is checked; past it, those around each
 * line end and the limit, and one in 61 (so a head's end and the settling
 * point are always seen, without parsing 8 KiB 8000 times). */
#define HTTP_CHECK_EVERY 300
#define HTTP_CHECK_STRIDE 61

struct http_answer {
    enum http_parse r;
    struct http_request req;
};

static const char *http_parse_name(enum http_parse r)
{
    switch (r) {
    case HTTP_INCOMPLETE:
        return "INCOMPLETE";
    case HTTP_DONE:
        return "DONE";
    case HTTP_BAD:
        return "BAD";
    case HTTP_TOO_LARGE:
        return "TOO_LARGE";
    }
    return "(unknown result)";
}

static bool http_failed(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool http_failed(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return false;
}

/* Parse the first 'k' bytes from a copy of exactly that size. */
static void http_parse_prefix(const unsigned char *data, size_t k, struct http_answer *a)
{
    char *copy = malloc(k ? k : 1);
    if (!copy)
        abort();
    if (k)
        memcpy(copy, data, k);
    memset(&a->req, 0xAA, sizeof a->req); /* no field may be taken as set */
    a->r = http_request_parse(copy, k, &a->req);
    free(copy);
}

/* Is 's' a NUL-terminated string within 'size' bytes? */
static bool http_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

/* A DONE answer's head and request, against the bytes sent. */
static bool http_check_done(const unsigned char *data, const struct http_request *q, char *why,
                            size_t why_len)
{
    size_t h = q->head_len;
    if (h < 4 || h > HTTP_HEAD_MAX || data[h - 1] != '\n' ||
        !(data[h - 2] == '\n' || (data[h - 2] == '\r' && data[h - 3] == '\n')))
        return http_failed(why, why_len, "a head of %zu bytes not ending in an empty line", h);
    if (!http_terminated(q->method, sizeof q->method) || !http_terminated(q->path, sizeof q->path))
        return http_failed(why, why_len, "method or path not terminated");
    size_t m = strlen(q->method), p = strlen(q->path);
    if (m == 0 || p == 0 || q->path[0] != '/' || strchr(q->path, '?'))
        return http_failed(why, why_len, "method '%s', path '%s'", q->method, q->path);
    for (size_t i = 0; i < p; i++)
        if ((unsigned char)q->path[i] <= 0x20 || (unsigned char)q->path[i] >= 0x7f)
            return http_failed(why, why_len, "path byte 0x%02x", (unsigned char)q->path[i]);
    if (m + 1 + p > h || memcmp(data, q->method, m) != 0 || data[m] != ' ' ||
        memcmp(data + m + 1, q->path, p) != 0)
        return http_failed(why, why_len, "method and path are not the request line's");
    if (q->minor < 0 || q->minor > 9)
        return http_failed(why, why_len, "minor version %d", q->minor);
    return true;
}

/* One answer, on its own, for the first 'k' bytes of 'data'. */
static bool http_check_answer(const unsigned char *data, size_t k, const struct http_answer *a,
                              char *why, size_t why_len)
{
    switch (a->r) {
    case HTTP_INCOMPLETE:
        return k < HTTP_HEAD_MAX ? true : http_failed(why, why_len, "incomplete at %zu bytes", k);
    case HTTP_TOO_LARGE:
        return k >= HTTP_HEAD_MAX ? true : http_failed(why, why_len, "too large at %zu bytes", k);
    case HTTP_BAD:
        return true;
    case HTTP_DONE:
        if (a->req.head_len > k)
            return http_failed(why, why_len, "head of %zu bytes in %zu", a->req.head_len, k);
        return http_check_done(data, &a->req, why, why_len);
    }
    return http_failed(why, why_len, "unknown result %d", (int)a->r);
}

/* Did the answer, settled at 'first', change to 'now'? */
static bool http_same_answer(const struct http_answer *first, const struct http_answer *now)
{
    if (first->r != now->r)
        return false;
    if (first->r != HTTP_DONE)
        return true;
    return first->req.head_len == now->req.head_len && first->req.minor == now->req.minor &&
           strcmp(first->req.method, now->req.method) == 0 &&
           strcmp(first->req.path, now->req.path) == 0;
}

/* Is the prefix of 'k' bytes one to check? */
static bool http_prefix_wanted(const unsigned char *data, size_t len, size_t k)
{
    if (k <= HTTP_CHECK_EVERY || k == len || k % HTTP_CHECK_STRIDE == 0)
        return true;
    if (k + 1 >= HTTP_HEAD_MAX && k <= HTTP_HEAD_MAX + 1)
        return true;
    /* Just before and after a line end, and one past a CR. */
    return data[k - 1] == '\n' || (k < len && data[k] == '\n') || data[k - 1] == '\r';
}

/* Parse 'data' whole and its prefixes and check the answers. True when
 * every promise holds; else false, with what broke in 'why'. */
static bool http_request_check(const unsigned char *data, size_t len, char *why, size_t why_len)
{
    /* Past HTTP_HEAD_MAX + 1 bytes every answer is settled: check prefixes
     * up to there, then the whole input. */
    size_t last = len < HTTP_HEAD_MAX + 1 ? len : HTTP_HEAD_MAX + 1;
    struct http_answer settled = {.r = HTTP_INCOMPLETE};
    size_t settled_at = 0;
    for (size_t k = 0; k <= len; k = k < last ? k + 1 : k < len ? len : len + 1) {
        if (!http_prefix_wanted(data, len, k))
            continue;
        struct http_answer a;
        http_parse_prefix(data, k, &a);
        if (!http_check_answer(data, k, &a, why, why_len)) {
            size_t used = strlen(why);
            return http_failed(why + used, why_len - used, " (prefix of %zu)", k);
        }
        if (settled.r == HTTP_INCOMPLETE) {
            settled = a;
            settled_at = k;
            if (a.r == HTTP_DONE && a.req.head_len != k)
                return http_failed(why, why_len, "done at %zu bytes, head of %zu", k, a.req.head_len);
        } else if (!http_same_answer(&settled, &a)) {
            return http_failed(why, why_len, "%s at %zu bytes, then %s at %zu", http_parse_name(settled.r),
                               settled_at, http_parse_name(a.r), k);
        }
    }
    return true;
}

#endif
