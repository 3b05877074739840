/*
 * proxy_header.h - HAProxy's PROXY protocol header (v1 text, v2 binary),
 * parsed from the first bytes of a connection.
 * Pure: no allocation, no I/O, no global state, safe on any bytes. It uses
 * only the type union addr from addr.h, never libuv itself.
 * The caller keeps the bytes read so far and calls again, with all of them,
 * whenever more arrive; it never needs more than PROXY_HEADER_MAX bytes.
 */
#ifndef LUAECHO_PROXY_HEADER_H
#define LUAECHO_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

/* A v1 line, CRLF included, is at most this long (the spec's worst case). */
#define PROXY_V1_MAX 107
/* Our bound on a whole v2 header: 16 fixed bytes, addresses and TLVs. */
#define PROXY_V2_MAX 4096
/* No header is longer: buffer this many bytes at most. */
#define PROXY_HEADER_MAX PROXY_V2_MAX

enum proxy_result {
    PROXY_NEED_MORE, /* the bytes so far may start a header: call again with more */
    PROXY_DONE,      /* a header, '*consumed' bytes long; what follows is payload */
    PROXY_INVALID,   /* not a header, or a malformed one: close the connection */
    PROXY_TOO_LONG,  /* a v1 line with no CRLF in 107 bytes, a v2 length past PROXY_V2_MAX */
};

/* What a header says. */
struct proxy_header {
    int version;            /* 1 or 2 */
    bool local;             /* keep the socket's own addresses (v1 UNKNOWN, v2 LOCAL or UNSPEC) */
    union addr source;      /* when !local: the client the proxy accepted */
    union addr destination; /* ... and the address it accepted it on; same family */
    const char *reason;     /* after INVALID or TOO_LONG: why, a static string */
};

/* Parse the 'len' bytes at 'buf'. On DONE, '*out' holds the header and
 * '*consumed' its length; otherwise '*consumed' is 0 and only out->reason
 * (on an error) means anything. Once a prefix gives DONE or an error, every
 * longer buffer with that prefix gives the same answer. */
enum proxy_result proxy_header_parse(const char *buf, size_t len, struct proxy_header *out,
                                     size_t *consumed);

/* "need more", "done", "invalid" or "too long". */
const char *proxy_result_name(enum proxy_result r);

#endif
