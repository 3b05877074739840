/*
 * proxy_wait.h - the stage before a connection behind a load balancer is
 * served: read its PROXY protocol header (v1 or v2, told apart by its
 * first bytes), within a time limit, then hand the connection on with its
 * peer set to the client the header names.
 */
#ifndef LUAECHO_PROXY_WAIT_H
#define LUAECHO_PROXY_WAIT_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/* What the stage reports to whoever accepted the connection. */
struct proxy_wait_owner {
    /* The header was read: c's peer is the client it names (a v2 LOCAL or
     * v1 UNKNOWN header keeps the socket's), the bytes after it are put
     * back (conn_unread), and c reports to nothing until the owner calls
     * conn_set_events. Reading is started. */
    void (*ready)(struct conn *c, void *data);
    /* c ended before its header was read (malformed, too slow, closed). */
    void (*lost)(void *data, enum stats_end why);
    void *data;
};

/* The events and owner data a waiting connection is created with:
 * conn_new(loop, list, &proxy_wait_events, size, kind), 'size' at least
 * proxy_wait_conn_size. */
extern const struct conn_events proxy_wait_events;
extern const size_t proxy_wait_conn_size;

/* Bind a new connection to 'owner', before anything else happens to it:
 * from here on its end reaches owner->lost. */
void proxy_wait_attach(struct conn *c, const struct proxy_wait_owner *owner);
/* Once it is open: start reading c's header; close c if it is not complete
 * within 'timeout_ms'. Returns 0 or UV_ENOMEM (then abort c). */
int proxy_wait_start(struct conn *c, uint64_t timeout_ms);

#endif
