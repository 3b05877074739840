/*
 * options.c - the command line and --help (see options.h). TARGET is parsed
 * by luaecho's own listen_spec.c, so it reads exactly as --listen does.
 */
#define _GNU_SOURCE
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: luaecho-bench [OPTIONS] TARGET\n"
    "\n"
    "Load generator for luaecho (or any echo-like server). Opens --conns connections to TARGET,\n"
    "sends --size-byte requests, checks every reply, and reports round trips per second,\n"
    "throughput each way and latency percentiles over the measured window.\n"
    "\n"
    "TARGET, as luaecho's --listen takes it:\n"
    "  HOST:PORT | [IPv6]:PORT     TCP\n"
    "  unix:PATH                   a Unix stream socket\n"
    "  udp:HOST:PORT               UDP: one datagram per request, one datagram back\n"
    "  tls:HOST:PORT | tls:unix:PATH   TLS (OpenSSL) over TCP or a Unix socket\n"
    "\n"
    "Load:\n"
    "  --conns N          connections (UDP: sockets) (default 10)\n"
    "  --size BYTES       bytes per request (default 64; at most 16 MiB, UDP 65507 less the prefix)\n"
    "  --duration SEC     length of the measured window (default 5)\n"
    "  --warmup SEC       load before the window that is not measured (default 1)\n"
    "  --pipeline N       requests in flight per connection (default 1)\n"
    "  --rate N           open loop: N requests per second in TOTAL, spread evenly over the\n"
    "                     connections (each gets N/conns per second, phases staggered). Each\n"
    "                     request has a scheduled time and its latency is measured from that\n"
    "                     time, not from when it could be sent, so a stalled server shows in the\n"
    "                     percentiles (no coordinated omission). Without --rate the load is\n"
    "                     closed loop: a request goes out as soon as a slot of --pipeline is free.\n"
    "\n"
    "What comes back:\n"
    "  --expect echo        the bytes sent, checked byte for byte (default)\n"
    "  --expect prefix:STR  STR then the bytes, per chunk the server received (the bundled\n"
    "                       echo.lua answers prefix:echo:); the request bytes never contain a\n"
    "                       byte of STR, so the reply can be parsed however the server chunked it\n"
    "  --expect line        each request is one line (ends in \\n, no other \\n); any one line back\n"
    "                       per line sent, content not checked\n"
    "  --expect none        nothing: a request is done when the kernel took it; replies are counted\n"
    "\n"
    "Server measurements (Linux /proc):\n"
    "  --server-pid PID     the server's CPU time (utime+stime of all its threads) over the\n"
    "                       measured window, per round trip\n"
    "  --hold N             instead of a load run: open N connections, one round trip each, hold\n"
    "                       them idle and report the server's RSS growth per connection over a\n"
    "                       baseline taken after the first N/10 (at most 100) connections; then one\n"
    "                       more round trip on each. Needs --server-pid; TCP, Unix and TLS only.\n"
    "\n"
    "TLS:\n"
    "  --ca FILE            verify the server's certificate chain against FILE (default: no\n"
    "                       verification) and its name against --server-name, else the host\n"
    "  --server-name NAME   SNI name to send (and to verify with --ca)\n"
    "\n"
    "Output:\n"
    "  --json               print one JSON object instead of the text report\n"
    "  --help               this text\n"
    "\n"
    "MB/s is 10^6 bytes per second of request bytes out and reply bytes in (TLS: plaintext).\n"
    "Latencies are in microseconds, from a log-linear histogram (within 0.8 %).\n"
    "\n"
    "Exit status: 0 a clean run; 1 a reply failed verification (the report says which connection,\n"
    "which byte, what was expected and what came), a connection failed, a request went\n"
    "unanswered, or nothing was measured; 2 a bad command line.\n"
    "\n"
    "Example: luaecho lua/echo.lua &  luaecho-bench --expect prefix:echo: 127.0.0.1:2222\n";

const char *expect_name(enum expect_mode mode)
{
    switch (mode) {
    case EXPECT_ECHO: return "echo";
    case EXPECT_PREFIX: return "prefix";
    case EXPECT_LINE: return "line";
    case EXPECT_NONE: return "none";
    }
    return "?";
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "luaecho-bench: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (luaecho-bench --help)\n");
    return 2;
}

static int number(const char *flag, const char *text, double lo, double hi, bool whole, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || v < lo || v > hi || (whole && v != (double)(long long)v)) {
        char range[96];
        snprintf(range, sizeof range, "%s from %g to %g", whole ? "a whole number" : "a number", lo, hi);
        fprintf(stderr, "luaecho-bench: %s '%s': %s (luaecho-bench --help)\n", flag, text, range);
        return -1;
    }
    *out = v;
    return 0;
}

int options_parse(int argc, char **argv, struct bench_options *o)
{
    static const struct option longs[] = {
        {"conns", required_argument, 0, 'c'},    {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'w'},
        {"pipeline", required_argument, 0, 'p'}, {"rate", required_argument, 0, 'r'},
        {"expect", required_argument, 0, 'e'},   {"json", no_argument, 0, 'j'},
        {"server-pid", required_argument, 0, 'P'}, {"hold", required_argument, 0, 'H'},
        {"ca", required_argument, 0, 'C'},       {"server-name", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    *o = (struct bench_options){.conns = 10, .size = 64, .duration = 5, .warmup = 1, .pipeline = 1};
    bool size_given = false;
    opterr = 0;
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "+h", longs, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        switch (ch) {
        case 'c': if (number("--conns", optarg, 1, 100000, true, &v)) return 2; o->conns = (int)v; break;
        case 's':
            if (number("--size", optarg, 1, BENCH_MAX_SIZE, true, &v)) return 2;
            o->size = (size_t)v;
            size_given = true;
            break;
        case 'd': if (number("--duration", optarg, 0.1, 86400, false, &v)) return 2; o->duration = v; break;
        case 'w': if (number("--warmup", optarg, 0, 86400, false, &v)) return 2; o->warmup = v; break;
        case 'p': if (number("--pipeline", optarg, 1, 4096, true, &v)) return 2; o->pipeline = (int)v; break;
        case 'r': if (number("--rate", optarg, 0.001, 1e8, false, &v)) return 2; o->rate = v; break;
        case 'P': if (number("--server-pid", optarg, 1, 4194304, true, &v)) return 2; o->server_pid = (int)v; break;
        case 'H': if (number("--hold", optarg, 1, 1000000, true, &v)) return 2; o->hold = (int)v; break;
        case 'j': o->json = true; break;
        case 'C': o->ca = optarg; break;
        case 'n': o->server_name = optarg; break;
        case 'e':
            if (!strcmp(optarg, "echo")) o->expect = EXPECT_ECHO;
            else if (!strcmp(optarg, "line")) o->expect = EXPECT_LINE;
            else if (!strcmp(optarg, "none")) o->expect = EXPECT_NONE;
            else if (!strncmp(optarg, "prefix:", 7) && optarg[7]) {
                o->expect = EXPECT_PREFIX;
                o->prefix = optarg + 7;
                o->prefix_len = strlen(o->prefix);
            } else
                return bad("--expect '%s': echo, prefix:STR (STR not empty), line or none%s", optarg, "");
            break;
        case 'h': fputs(HELP, stdout); return 0;
        case ':': return bad("%s needs a value%s", flag, "");
        default:
            if (optopt && optopt != '?' && optopt < 128 && !(flag[0] == '-' && flag[1] == '-'))
                return bad("unknown option -%c%s", (char[]){(char)optopt, 0}, "");
            return bad("unknown option %s%s", flag, "");
        }
    }
    if (optind == argc)
        return bad("no TARGET: HOST:PORT, unix:PATH, udp:HOST:PORT or tls:...%s%s", "", "");
    if (optind + 1 < argc)
        return bad("one TARGET only, got '%s' after '%s'", argv[optind + 1], argv[optind]);
    o->target_text = argv[optind];
    const char *why = listen_spec_parse(o->target_text, &o->target);
    if (why)
        return bad("TARGET '%s': %s", o->target_text, why);
    if (o->target.kind != LISTEN_UNIX && o->target.port == 0)
        return bad("TARGET '%s': the port must not be 0%s", o->target_text, "");
    bool udp = o->target.kind == LISTEN_UDP;
    if (udp && o->expect == EXPECT_LINE)
        return bad("--expect line is for streams: a udp: target answers datagrams%s%s", "", "");
    if (udp && o->size + o->prefix_len > BENCH_UDP_MAX) {
        char n[32];
        snprintf(n, sizeof n, "%zu", o->size);
        return bad("--size %s%s: a UDP datagram carries at most 65507 bytes, the reply's prefix included", n,
                   size_given ? "" : " (the default)");
    }
    if (o->hold && !o->server_pid)
        return bad("--hold needs --server-pid PID: it measures that process's memory%s%s", "", "");
    if (o->hold && udp)
        return bad("--hold holds connections: TCP, Unix or TLS targets, not udp:%s%s", "", "");
    if (o->hold && o->expect == EXPECT_NONE)
        return bad("--hold checks a round trip on each connection: not with --expect none%s%s", "", "");
    if ((o->ca || o->server_name) && !o->target.tls)
        return bad("%s is for tls: targets%s", o->ca ? "--ca" : "--server-name", "");
    return -1;
}
