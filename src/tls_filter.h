/*
 * tls_filter.h - TLS between a connection and its owner: OpenSSL on
 * memory BIOs, fed with the bytes conn.c reads and sending what OpenSSL
 * writes through conn.c's queue, so the owner reads and writes plaintext
 * and every rule of conn.c (corking, flow control, half-close, closing)
 * holds as for a plain connection. Also the stage before a TLS listener's
 * connection is served: the handshake, within a deadline, then the owner's
 * ready() (the server binds its Protocol: connection_made runs after the
 * handshake).
 */
#ifndef LUAECHO_TLS_FILTER_H
#define LUAECHO_TLS_FILTER_H

#include <stdint.h>

#include "conn.h"
#include "tls_context.h"

/* The handshake's end: 'error' NULL when it completed, else why it
 * failed (the connection is aborted with that reason once this returns). */
typedef void (*tls_done_cb)(struct conn *c, const char *error, void *arg);

/* Start TLS on c with 'ssl' (ours from now on; NULL: out of memory, the
 * connection is aborted). 'server' (NULL for a client) is held while the
 * handshake runs. Bytes written before it completes wait for it. A
 * handshake not done within 'timeout_ms' (0: no limit) fails. Returns 0
 * or a libuv error (c is then aborted). */
int tls_filter_start(struct conn *c, SSL *ssl, struct tls_server *server, uint64_t timeout_ms, tls_done_cb done,
                     void *arg);
/* TLS on c (completed handshake)? If so, what get_extra_info shows. */
bool tls_filter_info(struct conn *c, struct tls_info *out);
/* Is TLS on c, or starting? */
bool tls_filter_active(const struct conn *c);

#endif
