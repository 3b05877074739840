/*
 * proxy_header_replay.c - the fuzz corpus as a test, without libFuzzer:
 * every file of the corpus directory goes through proxy_check (whole and
 * every prefix), and each hand-written seed must parse as the table below
 * says. A file with a name of its own (not libFuzzer's 40-hex-digit hash)
 * must have a row, and every row its file. The walk is corpus.c's.
 *   proxy_header_replay DIR    exits 0, or 1 listing each failure
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proxy_header.h"
#include "proxy_header_check.h"
#include "corpus.h"

/* What a named seed must give. Addresses as inet_ntop writes them. */
struct expect {
    const char *name;
    enum proxy_result result;
    size_t consumed;
    int version;
    bool local;
    const char *source;
    int source_port;
    const char *destination;
    int destination_port;
};

#define BAD(n) {.name = (n), .result = PROXY_INVALID}
#define TOO_LONG(n) {.name = (n), .result = PROXY_TOO_LONG}

static const struct expect expected[] = {
    {"valid-v1-tcp4", PROXY_DONE, 47, 1, false, "192.168.0.1", 56324, "192.168.0.11", 443},
    {"valid-v1-tcp6", PROXY_DONE, 36, 1, false, "2001:db8::1", 65535, "::1", 0},
    {"valid-v1-tcp6-longest", PROXY_DONE, 104, 1, false,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535},
    {"valid-v1-unknown", PROXY_DONE, 15, 1, true, NULL, 0, NULL, 0},
    {"valid-v1-unknown-longest", PROXY_DONE, 107, 1, true, NULL, 0, NULL, 0},
    {"valid-v2-tcp4", PROXY_DONE, 28, 2, false, "10.0.0.1", 1234, "10.0.0.2", 80},
    {"valid-v2-tcp6", PROXY_DONE, 52, 2, false, "2001:db8::1", 40000, "2001:db8::2", 443},
    {"valid-v2-tcp4-tlvs", PROXY_DONE, 50, 2, false, "10.0.0.1", 1234, "10.0.0.2", 80},
    {"valid-v2-tcp6-tlvs", PROXY_DONE, 78, 2, false, "2001:db8::1", 40000, "2001:db8::2", 443},
    {"valid-v2-local", PROXY_DONE, 16, 2, true, NULL, 0, NULL, 0},
    {"valid-v2-local-with-addresses", PROXY_DONE, 34, 2, true, NULL, 0, NULL, 0},
    /* PROXY with family UNSPEC: accepted, the socket's addresses kept (the spec's rule). */
    {"valid-v2-unspec-proxy", PROXY_DONE, 16, 2, true, NULL, 0, NULL, 0},
    BAD("bad-not-proxy"),
    BAD("bad-v1-port"),
    BAD("bad-v1-port-leading-zero"),
    BAD("bad-v1-port-sign"),
    BAD("bad-v1-double-space"),
    BAD("bad-v1-trailing-space"),
    BAD("bad-v1-family-mismatch"),
    BAD("bad-v1-ipv4-leading-zero"),
    BAD("bad-v1-lf-only"),
    BAD("bad-v1-protocol"),
    BAD("bad-v1-lowercase"),
    BAD("bad-v1-unknown-cr-inside"),
    BAD("bad-v1-nul-in-address"),       /* found by the fuzzer: inet_pton stopped at the NUL */
    BAD("bad-v1-nul-in-address-found"), /* ... the input it found */
    TOO_LONG("too-long-v1"),
    BAD("bad-v2-version"),
    BAD("bad-v2-command"),
    BAD("bad-v2-unix"),
    BAD("bad-v2-udp4"),
    BAD("bad-v2-short-addresses"),
    BAD("bad-v2-tlv-overrun"),
    BAD("bad-v2-tlv-truncated"),
    TOO_LONG("too-long-v2"),
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

/* Does 'a' hold 'host' and 'port'? */
static bool addr_is(const union addr *a, const char *host, int port)
{
    char text[INET6_ADDRSTRLEN];
    bool v4 = a->sa.sa_family == AF_INET;
    const void *bytes = v4 ? (const void *)&a->in.sin_addr : (const void *)&a->in6.sin6_addr;
    if (!inet_ntop(a->sa.sa_family, bytes, text, sizeof text))
        return false;
    int got_port = ntohs(v4 ? a->in.sin_port : a->in6.sin6_port);
    return strcmp(text, host) == 0 && got_port == port;
}

/* The named seed of row i, whose bytes are 'data': as the table says? */
static bool check_seed(size_t i, const unsigned char *data, size_t len)
{
    const struct expect *e = &expected[i];
    struct proxy_header h;
    size_t consumed;
    enum proxy_result r = proxy_header_parse((const char *)data, len, &h, &consumed);
    if (r != e->result) {
        fprintf(stderr, "%s: %s (%s), expected %s\n", e->name, proxy_result_name(r),
                h.reason ? h.reason : "", proxy_result_name(e->result));
        return false;
    }
    if (r != PROXY_DONE)
        return true;
    bool ok = consumed == e->consumed && h.version == e->version && h.local == e->local;
    if (ok && !e->local)
        ok = addr_is(&h.source, e->source, e->source_port) &&
             addr_is(&h.destination, e->destination, e->destination_port);
    if (!ok)
        fprintf(stderr, "%s: header differs from the table (consumed %zu, version %d%s)\n",
                e->name, consumed, h.version, h.local ? ", local" : "");
    return ok;
}

/* The file name of row i. */
static const char *seed_name(size_t i)
{
    return expected[i].name;
}

int main(int argc, char **argv)
{
    static const struct corpus_target target = {
        .name = "proxy_header_replay",
        .table = __FILE__,
        .check = proxy_check,
        .seeds = N_EXPECTED,
        .seed_name = seed_name,
        .check_seed = check_seed,
    };
    return corpus_replay(&target, argc, argv);
}
