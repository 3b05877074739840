/*
 * listen_spec.c - --listen SPEC, parsed and printed.
 */
#include "listen_spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE_HINT "use HOST:PORT, [IPv6]:PORT, unix:PATH, udp:HOST:PORT or tls:HOST:PORT"

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return false;
    }
    return true;
}

/* "word:" followed by something other than a port: a scheme we do not know. */
static bool unknown_scheme(const char *text)
{
    const char *colon = strchr(text, ':');
    if (!colon || colon == text)
        return false;
    for (const char *p = text; p < colon; p++) {
        if (!isalpha((unsigned char)*p))
            return false;
    }
    return !all_digits(colon + 1);
}

static const char *parse_port(const char *s, int *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!all_digits(s) || *end != '\0' || errno != 0 || v > 65535)
        return "the port must be a number from 0 to 65535";
    *port = (int)v;
    return NULL;
}

/* Dots and digits only, yet not an IPv4 address: a typo, not a host name. */
static bool malformed_ipv4(const char *host)
{
    for (const char *p = host; *p; p++) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return false;
    }
    struct sockaddr_in in;
    return uv_ip4_addr(host, 0, &in) != 0;
}

/* HOST:PORT or [IPv6]:PORT into out->host and out->port. */
static const char *parse_host_port(const char *text, struct listen_spec *out)
{
    const char *port;
    size_t host_len;
    const char *host = text;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close)
            return "an IPv6 address in brackets needs its ']'";
        if (close[1] != ':')
            return "needs a port after the address: [IPv6]:PORT";
        host = text + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon)
            return "needs a port: HOST:PORT";
        host_len = (size_t)(colon - text);
        port = colon + 1;
        if (memchr(text, ':', host_len))
            return "an IPv6 address needs brackets, as in [::1]:2222";
    }
    if (host_len == 0)
        return "needs a host before the port (0.0.0.0 or [::] for every address)";
    if (host_len >= sizeof out->host)
        return "the host name is too long";
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    struct sockaddr_in6 in6;
    if (text[0] == '[' && uv_ip6_addr(out->host, 0, &in6) != 0)
        return "the address in brackets is not an IPv6 address";
    if (malformed_ipv4(out->host))
        return "the host is not a valid IPv4 address";
    return parse_port(port, &out->port);
}

/* A plain spec, or the rest of a tls: one. */
static const char *parse_plain(const char *text, struct listen_spec *out)
{
    if (strncmp(text, "unix:", 5) == 0) {
        out->kind = LISTEN_UNIX;
        const char *path = text + 5;
        if (*path == '\0')
            return "needs a path after unix:";
        if (strlen(path) > LISTEN_UNIX_PATH_MAX)
            return "the path is too long for a Unix socket (at most 107 bytes)";
        memcpy(out->path, path, strlen(path) + 1);
        return NULL;
    }
    out->kind = LISTEN_TCP;
    if (strncmp(text, "udp:", 4) == 0) {
        out->kind = LISTEN_UDP;
        text += 4;
    } else if (strncmp(text, "tcp:", 4) == 0) {
        text += 4;
    } else if (unknown_scheme(text)) {
        static char wrong[96]; /* the command line is parsed once, on one thread */
        snprintf(wrong, sizeof wrong, "unknown scheme '%.*s:' (" USAGE_HINT ")", (int)strcspn(text, ":"), text);
        return wrong;
    }
    if (*text == '\0')
        return "needs HOST:PORT (" USAGE_HINT ")";
    return parse_host_port(text, out);
}

const char *listen_spec_parse(const char *text, struct listen_spec *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "tls:", 4) != 0)
        return parse_plain(text, out);
    const char *why = parse_plain(text + 4, out);
    if (!why && out->kind == LISTEN_UDP)
        return "TLS runs over TCP or a Unix socket: tls:HOST:PORT or tls:unix:PATH (DTLS is not supported)";
    out->tls = true;
    return why;
}

bool listen_spec_same(const struct listen_spec *a, const struct listen_spec *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == LISTEN_UNIX)
        return strcmp(a->path, b->path) == 0;
    return a->port != 0 && a->port == b->port && strcmp(a->host, b->host) == 0;
}

const char *listen_spec_format(const struct listen_spec *spec, const union addr *bound, char *buf, size_t len)
{
    if (spec->kind == LISTEN_UNIX) {
        snprintf(buf, len, "%sunix:%s", spec->tls ? "tls:" : "", spec->path);
        return buf;
    }
    const char *scheme = spec->kind == LISTEN_UDP ? "udp:" : spec->tls ? "tls:" : "";
    char address[ADDR_STRLEN];
    if (bound)
        addr_format(bound, address, sizeof address);
    else if (strchr(spec->host, ':'))
        snprintf(address, sizeof address, "[%.60s]:%d", spec->host, spec->port);
    else
        snprintf(address, sizeof address, "%.60s:%d", spec->host, spec->port);
    snprintf(buf, len, "%s%s", scheme, address);
    return buf;
}
