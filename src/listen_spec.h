/*
 * listen_spec.h - what --listen SPEC says: HOST:PORT (IPv6 as [::1]:PORT,
 * "tcp:" optional), unix:PATH or udp:HOST:PORT. Parsing checks everything
 * that can be checked without the network (tls: in front of a TCP or Unix
 * spec asks for TLS); printing gives the form a user
 * types, with the real port once bound.
 */
#ifndef LUAECHO_LISTEN_SPEC_H
#define LUAECHO_LISTEN_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

enum listen_kind { LISTEN_TCP, LISTEN_UNIX, LISTEN_UDP };

/* A Unix socket path has at most this many bytes (sun_path, less its NUL). */
#define LISTEN_UNIX_PATH_MAX 107
/* Room for any listener's name: "tls:unix:" and a path, or "udp:[v6]:port". */
#define LISTEN_SPEC_STRLEN 128

struct listen_spec {
    enum listen_kind kind;
    char host[256];  /* TCP and UDP: a name or an address, no brackets */
    int port;        /* 0: any free port */
    char path[LISTEN_UNIX_PATH_MAX + 1]; /* unix */
    bool tls;        /* tls:HOST:PORT, tls:unix:PATH: a TLS handshake first */
};

/* Parse 'text' into 'out'. Returns NULL, or what is wrong with it (a
 * static string, to follow "--listen 'TEXT': "). */
const char *listen_spec_parse(const char *text, struct listen_spec *out);
/* Do two specs name the same listener? (Port 0 never clashes.) */
bool listen_spec_same(const struct listen_spec *a, const struct listen_spec *b);
/* "127.0.0.1:2222", "unix:/run/x.sock", "udp:[::1]:5353" into buf
 * (LISTEN_SPEC_STRLEN bytes); 'bound' (NULL: the spec's own host and port)
 * gives the real address of a TCP or UDP listener. */
const char *listen_spec_format(const struct listen_spec *spec, const union addr *bound, char *buf, size_t len);

#endif
