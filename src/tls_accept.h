/*
 * tls_accept.h - the stage before a TLS listener's connection is served,
 * as proxy_wait.h is for the PROXY header: the server handshake within
 * --tls-handshake-timeout, then the owner's ready() (the server binds its
 * Protocol, so connection_made runs after the handshake). A failed
 * handshake ends the connection with one rate-limited line and reaches
 * no Lua.
 */
#ifndef LUAECHO_TLS_ACCEPT_H
#define LUAECHO_TLS_ACCEPT_H

#include <stdint.h>

#include "conn.h"
#include "tls_context.h"

struct tls_accept_owner {
    void (*ready)(struct conn *c, void *data);    /* handshake done: serve it */
    void (*lost)(void *data, enum stats_end why); /* it ended, whenever: while this stage owned it */
    void *data;
};

extern const struct conn_events tls_accept_events;
extern const size_t tls_accept_conn_size;

/* c (created with tls_accept_events, or handed over to them) reports to
 * 'owner' from now on. */
void tls_accept_attach(struct conn *c, const struct tls_accept_owner *owner);
/* Shake hands as the server, with 'server''s certificates. Returns 0, or a
 * libuv error (then abort c). */
int tls_accept_start(struct conn *c, struct tls_server *server, uint64_t timeout_ms);

#endif
