/*
 * verify.c - the bytes sent and what must come back. Requests are cut from
 * one pseudo-random pattern; connection i's stream of request bytes is the
 * pattern from its own offset on, so the reply to any byte is known without
 * keeping what was sent. The pattern never holds a byte of the --expect
 * prefix (so a reply can be split into prefixes and data wherever the server
 * chunked it) and, with --expect line, a '\n' only at a request's end.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pattern_make(struct bench *b)
{
    size_t size = b->o.size;
    size_t msgs = ((size_t)1 << 20) / size + 2;
    b->plen = msgs * size;
    b->pat = malloc(b->plen);
    if (!b->pat)
        return -1;
    unsigned char alphabet[256];
    size_t na = 0;
    for (int v = 0; v < 256; v++) {
        bool out = (b->o.expect == EXPECT_LINE && v == '\n') ||
                   (b->o.prefix && memchr(b->o.prefix, v, b->o.prefix_len));
        if (!out)
            alphabet[na++] = (unsigned char)v;
    }
    if (!na) {
        fprintf(stderr, "luaecho-bench: --expect prefix: STR holds every byte value: no request can avoid it\n");
        return -1;
    }
    uint32_t s = 2463534242u;
    for (size_t k = 0; k < b->plen; k++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        b->pat[k] = alphabet[(s >> 8) % na];
        if (b->o.expect == EXPECT_LINE && k % size == size - 1)
            b->pat[k] = '\n';
    }
    return 0;
}

size_t pattern_pos(const struct bench *b, const struct bconn *c, uint64_t stream_offset)
{
    return (size_t)((c->off + stream_offset) % b->plen);
}

static size_t first_diff(const unsigned char *a, const unsigned char *e, size_t n)
{
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        if (memcmp(a + i, e + i, 64))
            break;
    for (; i < n; i++)
        if (a[i] != e[i])
            return i;
    return n;
}

static void shown(char *buf, size_t len, unsigned char v)
{
    if (v >= 0x20 && v < 0x7f && v != '\'' && v != '\\' && v != '"')
        snprintf(buf, len, "0x%02x '%c'", v, v);
    else
        snprintf(buf, len, "0x%02x", v);
}

/* A reply that is not what was asked: kept (the first), counted, and the
 * connection closed, since its stream can no longer be followed. */
static void verify_fail(struct bench *b, struct bconn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verify_fail(struct bench *b, struct bconn *c, const char *fmt, ...)
{
    b->verify_failures++;
    if (!b->verify_msg[0]) {
        int n = snprintf(b->verify_msg, sizeof b->verify_msg, "connection %d: ", c->id);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->verify_msg + n, sizeof b->verify_msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    bench_conn_gone(b, c);
}

/* Reply data bytes (the prefixes taken out): they must be the next bytes sent. */
static void expect_data(struct bench *b, struct bconn *c, const unsigned char *p, size_t n, uint64_t now)
{
    if (c->recvd + n > c->sent) {
        verify_fail(b, c, "%llu bytes came back beyond the %llu sent",
                    (unsigned long long)(c->recvd + n - c->sent), (unsigned long long)c->sent);
        return;
    }
    size_t size = b->o.size;
    for (size_t k = 0; k < n;) {
        size_t pos = pattern_pos(b, c, c->recvd);
        size_t m = n - k < b->plen - pos ? n - k : b->plen - pos;
        size_t d = first_diff(p + k, b->pat + pos, m);
        if (d < m) {
            uint64_t at = c->recvd + d;
            char want[32], got[32];
            shown(want, sizeof want, b->pat[pos + d]);
            shown(got, sizeof got, p[k + d]);
            verify_fail(b, c, "reply byte %llu (request %llu, its byte %llu) differs: expected %s, got %s",
                        (unsigned long long)at, (unsigned long long)(at / size), (unsigned long long)(at % size),
                        want, got);
            return;
        }
        c->recvd += m;
        k += m;
    }
    b->checked += n;
    while (c->state != C_CLOSED && c->ring_n && c->ring[c->ring_head].end <= c->recvd)
        bench_request_done(b, c, now);
}

static void expect_prefixed(struct bench *b, struct bconn *c, const unsigned char *p, size_t n, uint64_t now)
{
    const unsigned char *pfx = (const unsigned char *)b->o.prefix;
    size_t plen = b->o.prefix_len;
    size_t i = 0;
    while (i < n && c->state != C_CLOSED) {
        if (c->in_prefix) {
            if (p[i] != pfx[c->pfx_pos]) {
                char want[32], got[32];
                shown(want, sizeof want, pfx[c->pfx_pos]);
                shown(got, sizeof got, p[i]);
                verify_fail(b, c, "after reply data byte %llu, expected the prefix '%s' (its byte %zu, %s), got %s",
                            (unsigned long long)c->recvd, b->o.prefix, c->pfx_pos, want, got);
                return;
            }
            i++;
            if (++c->pfx_pos == plen) {
                c->in_prefix = false;
                c->chunk_data = 0;
            }
            continue;
        }
        const unsigned char *q = memchr(p + i, pfx[0], n - i);
        size_t run = q ? (size_t)(q - (p + i)) : n - i;
        if (run == 0) {
            if (c->chunk_data == 0) {
                verify_fail(b, c, "the prefix '%s' came with no data after it (reply data byte %llu)", b->o.prefix,
                            (unsigned long long)c->recvd);
                return;
            }
            c->in_prefix = true;
            c->pfx_pos = 0;
            continue;
        }
        c->chunk_data += run;
        expect_data(b, c, p + i, run, now);
        i += run;
    }
}

void verify_stream(struct bench *b, struct bconn *c, const unsigned char *p, size_t n, uint64_t now)
{
    if (b->phase == PHASE_MEASURE)
        b->bytes_in += n;
    switch (b->o.expect) {
    case EXPECT_ECHO:
        expect_data(b, c, p, n, now);
        return;
    case EXPECT_PREFIX:
        expect_prefixed(b, c, p, n, now);
        return;
    case EXPECT_LINE:
        for (const unsigned char *q, *end = p + n; c->state != C_CLOSED && (q = memchr(p, '\n', (size_t)(end - p)));
             p = q + 1) {
            if (!c->ring_n) {
                verify_fail(b, c, "a line came back that no request asked for (after %llu lines)",
                            (unsigned long long)(c->recvd / b->o.size));
                return;
            }
            c->recvd += b->o.size;
            b->checked++;
            bench_request_done(b, c, now);
        }
        return;
    case EXPECT_NONE:
        return;
    }
}

void verify_datagram(struct bench *b, struct bconn *c, const unsigned char *p, size_t n, uint64_t now)
{
    if (b->phase == PHASE_MEASURE)
        b->bytes_in += n;
    if (b->o.expect == EXPECT_NONE)
        return;
    size_t size = b->o.size, plen = b->o.prefix_len, want = plen + size;
    if (!c->ring_n) {
        verify_fail(b, c, "a datagram of %zu bytes came back that no request asked for", n);
        return;
    }
    /* Usually the oldest request's answer; one that matches a later request
     * means the earlier ones (or their answers) were lost. */
    for (int j = 0; j < c->ring_n; j++) {
        const struct inflight *f = &c->ring[(c->ring_head + j) % c->ring_cap];
        const unsigned char *sent = b->pat + pattern_pos(b, c, f->end - size);
        if (n == want && (!plen || !memcmp(p, b->o.prefix, plen)) && !memcmp(p + plen, sent, size)) {
            b->lost += (uint64_t)j;
            b->outstanding -= (uint64_t)j;
            c->ring_head = (c->ring_head + j) % c->ring_cap;
            c->ring_n -= j;
            b->checked += size;
            bench_request_done(b, c, now);
            return;
        }
    }
    const struct inflight *f = &c->ring[c->ring_head];
    uint64_t req = f->end / size - 1;
    if (n != want) {
        verify_fail(b, c, "datagram answering request %llu has %zu bytes, expected %zu%s", (unsigned long long)req, n,
                    want, plen ? " (the prefix and the request)" : "");
        return;
    }
    size_t d = first_diff(p, b->o.prefix ? (const unsigned char *)b->o.prefix : p, plen);
    unsigned char e;
    if (d < plen)
        e = (unsigned char)b->o.prefix[d];
    else {
        const unsigned char *sent = b->pat + pattern_pos(b, c, f->end - size);
        d = plen + first_diff(p + plen, sent, size);
        e = d < want ? sent[d - plen] : 0;
    }
    char ws[32], gs[32];
    shown(ws, sizeof ws, e);
    shown(gs, sizeof gs, d < want ? p[d] : 0);
    verify_fail(b, c, "datagram answering request %llu differs at its byte %zu: expected %s, got %s",
                (unsigned long long)req, d, ws, gs);
}
