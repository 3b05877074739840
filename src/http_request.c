/*
 * http_request.c - the head of an HTTP/1.x request, as RFC 9112 writes it,
 * read from the first HTTP_HEAD_MAX bytes a client sent (never more).
 * Line by line: each complete line is checked whole, and the line still
 * coming is checked as far as it goes, so junk (a control byte, a method
 * too long) is refused before its line ends. Lines end in CRLF or a bare
 * LF; a CR anywhere else is a control byte.
 * Rule: never read past 'len', never refuse a prefix of a valid head, and
 * give the same answer for every longer input once the answer is not
 * HTTP_INCOMPLETE (the fuzz target checks all three).
 */
#include "http_request.h"

#include <stdbool.h>
#include <string.h>

static const char version_prefix[] = "HTTP/1.";
#define VERSION_LEN 8 /* "HTTP/1." and the minor digit */

/* A token's byte (RFC 9110 tchar): header names and methods. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte of an origin-form target: visible ASCII, no space. */
static bool is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* A byte of a header value: visible, space, tab, or obs-text (>= 0x80). */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Bytes p[0..n) where a token may stop: how many are tchars. */
static size_t token_len(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    return i;
}

/* "HTTP/1.d" in p[0..n), or as much of it as has come ('complete': the
 * line ended there). Sets *minor once the digit is in. */
static bool check_version(const char *p, size_t n, bool complete, int *minor)
{
    if (n > VERSION_LEN || (complete && n < VERSION_LEN))
        return false;
    size_t fixed = n < VERSION_LEN - 1 ? n : VERSION_LEN - 1;
    if (memcmp(p, version_prefix, fixed) != 0)
        return false;
    if (n < VERSION_LEN)
        return true;
    if (p[VERSION_LEN - 1] < '0' || p[VERSION_LEN - 1] > '9')
        return false;
    *minor = p[VERSION_LEN - 1] - '0';
    return true;
}

/* The request line p[0..n), without its line end, or as much of it as has
 * come. A complete one fills in 'req'. */
static bool check_request_line(const char *p, size_t n, bool complete, struct http_request *req)
{
    size_t method = token_len(p, n);
    if (method >= sizeof req->method)
        return false;
    if (method == n)
        return !complete;
    if (method == 0 || p[method] != ' ')
        return false;
    const char *target = p + method + 1, *end = p + n;
    if (target == end)
        return !complete;
    if (*target != '/')
        return false; /* origin-form only: no absolute URI, no "*" */
    const char *t = target;
    while (t < end && is_target_char((unsigned char)*t))
        t++;
    const char *query = memchr(target, '?', (size_t)(t - target));
    size_t path = (size_t)((query ? query : t) - target);
    if (path >= sizeof req->path)
        return false;
    if (t == end)
        return !complete;
    if (*t != ' ' || !check_version(t + 1, (size_t)(end - t - 1), complete, &req->minor))
        return false;
    if (complete) {
        memcpy(req->method, p, method);
        req->method[method] = '\0';
        memcpy(req->path, target, path);
        req->path[path] = '\0';
    }
    return true;
}

/* A header line p[0..n), without its line end, or as much as has come:
 * "name:value", the name a token (so no space before the colon, and no
 * obs-fold: a line may not start with a space). */
static bool check_header(const char *p, size_t n, bool complete)
{
    size_t name = token_len(p, n);
    if (name == n)
        return !complete;
    if (name == 0 || p[name] != ':')
        return false;
    for (size_t i = name + 1; i < n; i++)
        if (!is_value_char((unsigned char)p[i]))
            return false;
    return true;
}

enum http_parse http_request_parse(const char *buf, size_t len, struct http_request *req)
{
    size_t lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
    size_t pos = 0;
    for (bool first = true;; first = false) {
        const char *lf = lim > pos ? memchr(buf + pos, '\n', lim - pos) : NULL;
        bool complete = lf != NULL;
        size_t n = complete ? (size_t)(lf - (buf + pos)) : lim - pos;
        /* A CR just before the LF ends the line; one last byte may be that CR. */
        size_t text = n > 0 && buf[pos + n - 1] == '\r' ? n - 1 : n;
        if (complete && text == 0 && !first) {
            req->head_len = pos + n + 1;
            return HTTP_DONE;
        }
        bool ok = first ? check_request_line(buf + pos, text, complete, req)
                        : check_header(buf + pos, text, complete);
        if (!ok)
            return HTTP_BAD;
        if (!complete)
            return lim >= HTTP_HEAD_MAX ? HTTP_TOO_LARGE : HTTP_INCOMPLETE;
        pos += n + 1;
    }
}
