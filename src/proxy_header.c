/*
 * proxy_header.c - the PROXY protocol header, v1 and v2, as HAProxy's
 * doc/proxy-protocol.txt describes it.
 * A v1 line is decoded only once its CRLF is in; before that the bytes are
 * checked to be a possible start of one, so junk is refused early. A v2
 * header is decoded once its length field says all of it is in.
 * Rule: never read past 'len', and never refuse a prefix of a valid header.
 */
#include "proxy_header.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

static const char v1_magic[] = "PROXY ";
#define V1_MAGIC_LEN (sizeof v1_magic - 1)
static const unsigned char v2_magic[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                           0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
#define V2_FIXED_LEN 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TCP4 0x11 /* AF_INET, STREAM */
#define V2_TCP6 0x21 /* AF_INET6, STREAM */
#define V2_UNSPEC 0x00 /* no addresses: keep the socket's (as LOCAL) */
#define V2_TCP4_ADDR_LEN 12
#define V2_TCP6_ADDR_LEN 36
/* Longest address text inet_pton could accept, without its NUL. */
#define V1_ADDR_MAX (INET6_ADDRSTRLEN - 1)

static enum proxy_result fail(struct proxy_header *out, enum proxy_result r, const char *why)
{
    out->reason = why;
    return r;
}

/* ---- version 1 ---- */

/* Bytes from 'p' to 'end' as text in 'word'? */
static bool is_word(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) == n && memcmp(p, word, n) == 0;
}

/* A field up to the next single space, or (last) the rest of the line. */
static bool take_field(const char **p, const char *end, bool last, const char **field,
                       size_t *n)
{
    const char *stop = last ? end : memchr(*p, ' ', (size_t)(end - *p));
    if (!stop || stop == *p)
        return false; /* no separator, or two spaces in a row */
    *field = *p;
    *n = (size_t)(stop - *p);
    *p = last ? end : stop + 1;
    return true;
}

/* A decimal port, 0..65535, no sign, no leading zero. */
static bool parse_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* An address of 'family' in text, into 'a' (port left 0). */
static bool parse_address(int family, const char *s, size_t n, union addr *a)
{
    char text[V1_ADDR_MAX + 1];
    if (n > V1_ADDR_MAX || memchr(s, '\0', n))
        return false; /* a NUL would end the text early: "::1\0junk" is not "::1" */
    memcpy(text, s, n);
    text[n] = '\0';
    a->sa.sa_family = (sa_family_t)family;
    void *dst = family == AF_INET ? (void *)&a->in.sin_addr : (void *)&a->in6.sin6_addr;
    return inet_pton(family, text, dst) == 1;
}

static void set_port(union addr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->in.sin_port = htons(port);
    else
        a->in6.sin6_port = htons(port);
}

/* "src dst sport dport", the rest of a TCP4 or TCP6 line. */
static enum proxy_result parse_v1_tcp(int family, const char *p, const char *end,
                                      struct proxy_header *out)
{
    const char *f;
    size_t n;
    uint16_t sport, dport;
    if (!take_field(&p, end, false, &f, &n) || !parse_address(family, f, n, &out->source))
        return fail(out, PROXY_INVALID, "v1: bad source address");
    if (!take_field(&p, end, false, &f, &n) || !parse_address(family, f, n, &out->destination))
        return fail(out, PROXY_INVALID, "v1: bad destination address");
    if (!take_field(&p, end, false, &f, &n) || !parse_port(f, n, &sport))
        return fail(out, PROXY_INVALID, "v1: bad source port");
    if (!take_field(&p, end, true, &f, &n) || !parse_port(f, n, &dport))
        return fail(out, PROXY_INVALID, "v1: bad destination port");
    set_port(&out->source, sport);
    set_port(&out->destination, dport);
    return PROXY_DONE;
}

/* A whole v1 line, from 'line' to the CR of its CRLF. */
static enum proxy_result parse_v1_line(const char *line, const char *end,
                                       struct proxy_header *out)
{
    const char *p = line + V1_MAGIC_LEN;
    out->version = 1;
    const char *space = memchr(p, ' ', (size_t)(end - p));
    const char *word_end = space ? space : end;
    if (is_word(p, word_end, "UNKNOWN")) {
        /* The spec says to ignore the rest, but not a lone CR or LF in it. */
        if (memchr(p, '\r', (size_t)(end - p)) || memchr(p, '\n', (size_t)(end - p)))
            return fail(out, PROXY_INVALID, "v1: CR or LF inside the line");
        out->local = true;
        return PROXY_DONE;
    }
    if (!space)
        return fail(out, PROXY_INVALID, "v1: bad protocol");
    if (is_word(p, word_end, "TCP4"))
        return parse_v1_tcp(AF_INET, space + 1, end, out);
    if (is_word(p, word_end, "TCP6"))
        return parse_v1_tcp(AF_INET6, space + 1, end, out);
    return fail(out, PROXY_INVALID, "v1: bad protocol");
}

/* Could 'p'..'end' begin the word "TCP4", "TCP6" or "UNKNOWN"? */
static bool is_protocol_prefix(const char *p, const char *end)
{
    static const char *const words[] = {"TCP4", "TCP6", "UNKNOWN"};
    size_t n = (size_t)(end - p);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (n <= strlen(words[i]) && memcmp(p, words[i], n) == 0)
            return true;
    return false;
}

/* Could "src dst sport dport" start with 'p'..'end'? Conservative: only
 * what no valid line contains is refused. */
static bool is_tcp_prefix(const char *p, const char *end)
{
    static const char allowed[] = "0123456789abcdefABCDEF.: ";
    int spaces = 0;
    size_t field = 0;
    for (; p < end; p++) {
        if (*p == '\0' || !strchr(allowed, *p))
            return false;
        if (*p != ' ') {
            if (++field > V1_ADDR_MAX)
                return false;
            continue;
        }
        if (field == 0 || ++spaces > 3)
            return false;
        field = 0;
    }
    return true;
}

/* A v1 line whose CRLF has not arrived within 'len' bytes (< PROXY_V1_MAX,
 * or exactly PROXY_V1_MAX): a possible start, or not? */
static enum proxy_result check_v1_prefix(const char *buf, size_t len, struct proxy_header *out)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < len))
            return fail(out, PROXY_INVALID, "v1: CR or LF inside the line");
    }
    const char *end = buf + len;
    if (buf[len - 1] == '\r')
        end--; /* the CRLF may be arriving */
    const char *p = buf + V1_MAGIC_LEN;
    if (p >= end)
        return PROXY_NEED_MORE;
    const char *space = memchr(p, ' ', (size_t)(end - p));
    if (!space)
        return is_protocol_prefix(p, end) ? PROXY_NEED_MORE
                                          : fail(out, PROXY_INVALID, "v1: bad protocol");
    if (is_word(p, space, "UNKNOWN"))
        return PROXY_NEED_MORE;
    if (!is_word(p, space, "TCP4") && !is_word(p, space, "TCP6"))
        return fail(out, PROXY_INVALID, "v1: bad protocol");
    if (!is_tcp_prefix(space + 1, end))
        return fail(out, PROXY_INVALID, "v1: bad addresses or ports");
    return PROXY_NEED_MORE;
}

/* Bytes starting with "PROXY " (or a prefix of it). */
static enum proxy_result parse_v1(const char *buf, size_t len, struct proxy_header *out,
                                  size_t *consumed)
{
    size_t magic = len < V1_MAGIC_LEN ? len : V1_MAGIC_LEN;
    if (memcmp(buf, v1_magic, magic) != 0)
        return fail(out, PROXY_INVALID, "not a PROXY protocol header");
    size_t window = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    for (size_t i = V1_MAGIC_LEN; i + 1 < window; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n') {
            enum proxy_result r = parse_v1_line(buf, buf + i, out);
            if (r == PROXY_DONE)
                *consumed = i + 2;
            return r;
        }
    }
    if (len < V1_MAGIC_LEN)
        return PROXY_NEED_MORE;
    enum proxy_result r = check_v1_prefix(buf, window, out);
    if (r == PROXY_NEED_MORE && window == PROXY_V1_MAX)
        return fail(out, PROXY_TOO_LONG, "v1: no CRLF within 107 bytes");
    return r;
}

/* ---- version 2 ---- */

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* The TLVs from 'p' to 'end': skipped, but each must fit. */
static bool check_tlvs(const unsigned char *p, const unsigned char *end)
{
    while (p < end) {
        if (end - p < 3 || end - p - 3 < get16(p + 1))
            return false;
        p += 3 + get16(p + 1);
    }
    return true;
}

/* The addresses and ports of a PROXY command over TCP. */
static void read_v2_addresses(const unsigned char *a, int fam, struct proxy_header *out)
{
    if (fam == V2_TCP4) {
        out->source.in.sin_family = AF_INET;
        out->destination.in.sin_family = AF_INET;
        memcpy(&out->source.in.sin_addr, a, 4);
        memcpy(&out->destination.in.sin_addr, a + 4, 4);
        memcpy(&out->source.in.sin_port, a + 8, 2);
        memcpy(&out->destination.in.sin_port, a + 10, 2);
    } else {
        out->source.in6.sin6_family = AF_INET6;
        out->destination.in6.sin6_family = AF_INET6;
        memcpy(&out->source.in6.sin6_addr, a, 16);
        memcpy(&out->destination.in6.sin6_addr, a + 16, 16);
        memcpy(&out->source.in6.sin6_port, a + 32, 2);
        memcpy(&out->destination.in6.sin6_port, a + 34, 2);
    }
}

/* The fixed part, as far as it has arrived: each byte is judged once in. */
static enum proxy_result check_v2_fixed(const unsigned char *b, size_t len,
                                        struct proxy_header *out)
{
    size_t magic = len < sizeof v2_magic ? len : sizeof v2_magic;
    if (memcmp(b, v2_magic, magic) != 0)
        return fail(out, PROXY_INVALID, "not a PROXY protocol header");
    if (len > 12 && b[12] >> 4 != 2)
        return fail(out, PROXY_INVALID, "v2: bad version");
    if (len > 12 && (b[12] & 0xF) != V2_CMD_LOCAL && (b[12] & 0xF) != V2_CMD_PROXY)
        return fail(out, PROXY_INVALID, "v2: bad command");
    bool proxy = len > 12 && (b[12] & 0xF) == V2_CMD_PROXY;
    /* LOCAL ignores the family byte, as the spec says; PROXY takes TCP, or
     * UNSPEC, which the spec says to accept keeping the socket's own
     * addresses (as LOCAL). UDP and Unix families are refused. */
    if (len > 13 && proxy && b[13] != V2_TCP4 && b[13] != V2_TCP6 && b[13] != V2_UNSPEC)
        return fail(out, PROXY_INVALID, "v2: unsupported address family or protocol");
    if (len < V2_FIXED_LEN)
        return PROXY_NEED_MORE;
    size_t total = V2_FIXED_LEN + (size_t)get16(b + 14);
    if (total > PROXY_V2_MAX)
        return fail(out, PROXY_TOO_LONG, "v2: header longer than 4096 bytes");
    size_t need = !proxy || b[13] == V2_UNSPEC ? 0 : b[13] == V2_TCP4 ? V2_TCP4_ADDR_LEN : V2_TCP6_ADDR_LEN;
    if (get16(b + 14) < need)
        return fail(out, PROXY_INVALID, "v2: address block too short");
    return PROXY_DONE;
}

/* Bytes starting with the v2 signature (or a prefix of it). */
static enum proxy_result parse_v2(const unsigned char *b, size_t len, struct proxy_header *out,
                                  size_t *consumed)
{
    enum proxy_result r = check_v2_fixed(b, len, out);
    if (r != PROXY_DONE)
        return r;
    size_t total = V2_FIXED_LEN + (size_t)get16(b + 14);
    if (len < total)
        return PROXY_NEED_MORE;
    out->version = 2;
    if ((b[12] & 0xF) == V2_CMD_LOCAL || b[13] == V2_UNSPEC) {
        out->local = true; /* the whole block is skipped, TLVs included */
    } else {
        int fam = b[13];
        read_v2_addresses(b + V2_FIXED_LEN, fam, out);
        size_t addr_len = fam == V2_TCP4 ? V2_TCP4_ADDR_LEN : V2_TCP6_ADDR_LEN;
        if (!check_tlvs(b + V2_FIXED_LEN + addr_len, b + total))
            return fail(out, PROXY_INVALID, "v2: TLV past the end of the header");
    }
    *consumed = total;
    return PROXY_DONE;
}

enum proxy_result proxy_header_parse(const char *buf, size_t len, struct proxy_header *out,
                                     size_t *consumed)
{
    memset(out, 0, sizeof *out);
    *consumed = 0;
    if (len == 0)
        return PROXY_NEED_MORE;
    if (buf[0] == v1_magic[0])
        return parse_v1(buf, len, out, consumed);
    if ((unsigned char)buf[0] == v2_magic[0])
        return parse_v2((const unsigned char *)buf, len, out, consumed);
    return fail(out, PROXY_INVALID, "not a PROXY protocol header");
}

const char *proxy_result_name(enum proxy_result r)
{
    switch (r) {
    case PROXY_NEED_MORE: return "need more";
    case PROXY_DONE: return "done";
    case PROXY_INVALID: return "invalid";
    case PROXY_TOO_LONG: return "too long";
    }
    return "?";
}
