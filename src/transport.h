/*
 * transport.h - the Lua-facing transport: a userdata box pointing at a conn.
 */
#ifndef LUAECHO_TRANSPORT_H
#define LUAECHO_TRANSPORT_H

#include <lua.h>
#include <stdbool.h>

#include "addr.h"
#include "record.h"

struct conn;

#define TRANSPORT_METATABLE "luaecho.transport"

/* What get_extra_info() answers beyond addresses: kept up to date by the
 * protocol layer above, which owns it, and read here. */
struct transport_info {
    int generation; /* of the script serving the connection (hot swap) */
    int server_ref; /* the Lua server object that accepted it; LUA_NOREF: none */
    const char *listener; /* its listener, "HOST:PORT" or "unix:PATH"; NULL: none */
    struct record *record; /* --record: its transcript (the protocol layer's); NULL: none */
};

/* The box Lua holds. 'conn' is cleared when the connection is freed, so a
 * transport kept in a Lua table afterwards is harmless; 'info' too, once
 * connection_lost has returned. */
struct transport {
    struct conn *conn;
    const struct transport_info *info;
    union addr peer;        /* kept: connection_lost and later code may still ask */
    union addr socket_peer; /* the socket's own peer (not a PROXY header's client) */
};

/* Push host, port of 'a'. [-0, +2, e] */
int transport_push_address(lua_State *L, const union addr *a);
/* The arguments 2 and 3 of set_write_buffer_limits([high [, low]]), read
 * as asyncio does (low defaults to high/4, high to 4*low, 64 KiB when both
 * are absent; at most the maximum), or a Lua error naming the method.
 * Shared by the datagram transport. [-0, +0, e] */
void transport_check_write_limits(lua_State *L, size_t *high, size_t *low);

/* The protocol layer's: the handshake start_tls() began is done. */
void transport_on_tls_started(void (*fn)(struct conn *c));

/* Create the metatable once per state. [-0, +0, e] */
void transport_register(lua_State *L);
/* Send what c's callback wrote while corked (conn_cork), and let go of the
 * strings kept alive for it. Allocates nothing. [-0, +0, -] */
void transport_uncork(lua_State *L, struct conn *c);
/* Push a new transport for c, answering get_extra_info() from 'info'. [-0, +1, e] */
struct transport *transport_new(lua_State *L, struct conn *c, const struct transport_info *info);

#endif
