/*
 * proxy_header_check.c - what every answer of proxy_header_parse must obey:
 *  - '*consumed' is at most the length given, and non-zero exactly on DONE;
 *  - a DONE header is well formed: version 1 ending in CRLF within 107
 *    bytes, or version 2 as long as its length field says; addresses of one
 *    family (IPv4 or IPv6) unless local, all zero if local; v2 addresses
 *    are the bytes on the wire;
 *  - errors carry a reason, NEED_MORE never past PROXY_HEADER_MAX bytes;
 *  - feeding a growing prefix, the answer is NEED_MORE until it settles,
 *    then never changes: a prefix of a header is never an error, and DONE
 *    comes exactly when the last byte of the header arrives.
 */
#include "proxy_header_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

struct answer {
    enum proxy_result r;
    size_t consumed;
    struct proxy_header h;
};

static bool failed(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return false;
}

/* Parse the first 'k' bytes from a copy of exactly that size. */
static void parse_prefix(const unsigned char *data, size_t k, struct answer *a)
{
    char *copy = malloc(k ? k : 1);
    if (!copy)
        abort();
    if (k)
        memcpy(copy, data, k);
    a->r = proxy_header_parse(copy, k, &a->h, &a->consumed);
    free(copy);
}

static bool is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* The raw address bytes and port of 'a', for comparing with the wire. */
static const void *addr_bytes(const union addr *a, size_t *n)
{
    *n = a->sa.sa_family == AF_INET ? 4 : 16;
    return a->sa.sa_family == AF_INET ? (const void *)&a->in.sin_addr
                                      : (const void *)&a->in6.sin6_addr;
}

/* A DONE header of version 2 with addresses: are they the bytes sent? */
static bool v2_matches_wire(const unsigned char *data, const struct proxy_header *h)
{
    size_t n;
    const void *src = addr_bytes(&h->source, &n);
    const void *dst = addr_bytes(&h->destination, &n);
    const unsigned char *ports = data + 16 + 2 * n;
    in_port_t sport = h->source.sa.sa_family == AF_INET ? h->source.in.sin_port
                                                        : h->source.in6.sin6_port;
    in_port_t dport = h->destination.sa.sa_family == AF_INET ? h->destination.in.sin_port
                                                             : h->destination.in6.sin6_port;
    return memcmp(src, data + 16, n) == 0 && memcmp(dst, data + 16 + n, n) == 0 &&
           memcmp(&sport, ports, 2) == 0 && memcmp(&dport, ports + 2, 2) == 0;
}

/* One answer, on its own, for the first 'k' bytes of 'data'. */
static bool check_answer(const unsigned char *data, size_t k, const struct answer *a,
                         char *why, size_t why_len)
{
    const struct proxy_header *h = &a->h;
    if (a->consumed > k)
        return failed(why, why_len, "consumed %zu of %zu bytes", a->consumed, k);
    if ((a->consumed > 0) != (a->r == PROXY_DONE))
        return failed(why, why_len, "%s with consumed %zu", proxy_result_name(a->r), a->consumed);
    switch (a->r) {
    case PROXY_NEED_MORE:
        if (k >= PROXY_HEADER_MAX)
            return failed(why, why_len, "need more after %zu bytes", k);
        return h->reason ? failed(why, why_len, "need more with a reason") : true;
    case PROXY_INVALID:
    case PROXY_TOO_LONG:
        return h->reason && *h->reason ? true : failed(why, why_len, "error without a reason");
    case PROXY_DONE:
        break;
    default:
        return failed(why, why_len, "unknown result %d", (int)a->r);
    }
    size_t c = a->consumed;
    if (h->reason)
        return failed(why, why_len, "done with a reason");
    if (h->version == 1 && (c > PROXY_V1_MAX || data[c - 2] != '\r' || data[c - 1] != '\n'))
        return failed(why, why_len, "v1 header of %zu bytes not ending in CRLF", c);
    if (h->version == 2 && (c < 16 || c > PROXY_V2_MAX || c != 16u + (data[14] << 8 | data[15])))
        return failed(why, why_len, "v2 header of %zu bytes", c);
    if (h->version != 1 && h->version != 2)
        return failed(why, why_len, "version %d", h->version);
    if (h->local)
        return is_zero(&h->source, sizeof h->source) &&
                       is_zero(&h->destination, sizeof h->destination)
                   ? true
                   : failed(why, why_len, "local header with addresses");
    int fam = h->source.sa.sa_family;
    if ((fam != AF_INET && fam != AF_INET6) || h->destination.sa.sa_family != fam)
        return failed(why, why_len, "address families %d and %d", fam,
                      h->destination.sa.sa_family);
    if (h->version == 2 && !v2_matches_wire(data, h))
        return failed(why, why_len, "v2 addresses differ from the bytes sent");
    return true;
}

/* Did the answer, settled at 'first', change to 'now'? */
static bool same_answer(const struct answer *first, const struct answer *now)
{
    if (first->r != now->r)
        return false;
    if (first->r != PROXY_DONE)
        return true; /* an error may be explained differently with more bytes */
    return first->consumed == now->consumed && first->h.version == now->h.version &&
           first->h.local == now->h.local &&
           memcmp(&first->h.source, &now->h.source, sizeof first->h.source) == 0 &&
           memcmp(&first->h.destination, &now->h.destination, sizeof first->h.source) == 0;
}

bool proxy_check(const unsigned char *data, size_t len, char *why, size_t why_len)
{
    /* Past PROXY_HEADER_MAX bytes every answer is settled: check each
     * prefix up to there, then the whole input. */
    size_t last = len < PROXY_HEADER_MAX + 1 ? len : PROXY_HEADER_MAX + 1;
    struct answer settled = {.r = PROXY_NEED_MORE};
    size_t settled_at = 0;
    for (size_t k = 0; k <= len; k = k < last ? k + 1 : k < len ? len : len + 1) {
        struct answer a;
        parse_prefix(data, k, &a);
        if (!check_answer(data, k, &a, why, why_len))
            return failed(why + strlen(why), why_len - strlen(why), " (prefix of %zu)", k);
        if (settled.r == PROXY_NEED_MORE) {
            settled = a;
            settled_at = k;
            if (a.r == PROXY_DONE && a.consumed != k)
                return failed(why, why_len, "done at %zu bytes, consumed %zu", k, a.consumed);
        } else if (!same_answer(&settled, &a)) {
            return failed(why, why_len, "%s at %zu bytes, then %s at %zu",
                          proxy_result_name(settled.r), settled_at, proxy_result_name(a.r), k);
        }
    }
    return true;
}
