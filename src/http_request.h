/*
 * http_request.h - the head of an HTTP/1.x request (request line and
 * headers), parsed from the bytes received so far: pure, no allocation,
 * no I/O. The metrics endpoint (metrics_http.c) calls it; fuzz/ holds its
 * libFuzzer target.
 */
#ifndef LUAECHO_HTTP_REQUEST_H
#define LUAECHO_HTTP_REQUEST_H

#include <stddef.h>

/* A request head may be at most this many bytes, CRLFCRLF included. */
#define HTTP_HEAD_MAX 8192

enum http_parse {
    HTTP_INCOMPLETE, /* no end of head yet, and under HTTP_HEAD_MAX: read more */
    HTTP_DONE,       /* a whole, well-formed head: 'req' is filled in */
    HTTP_BAD,        /* malformed: answer 400 and close */
    HTTP_TOO_LARGE,  /* HTTP_HEAD_MAX bytes and no end of head: answer 431 and close */
};

struct http_request {
    char method[16];   /* "GET", "HEAD", ... as sent (a token) */
    char path[1024];   /* the target's path, without the query (from '?') */
    int minor;         /* HTTP/1.<minor> */
    size_t head_len;   /* bytes the head took, its blank line included */
};

/* Parse the first 'len' bytes a client sent. Returns HTTP_DONE only when
 * the whole head is in 'buf'; bytes after it (a body) are not looked at. */
enum http_parse http_request_parse(const char *buf, size_t len, struct http_request *req);

#endif
