/*
 * transport.h - the Lua-facing transport: a userdata box pointing at a conn.
 */
#ifndef LUAECHO_TRANSPORT_H
#define LUAECHO_TRANSPORT_H

#include <lua.h>

#include "addr.h"

struct conn;

#define TRANSPORT_METATABLE "luaecho.transport"

/* The box Lua holds. 'conn' is cleared when the connection is freed, so a
 * transport kept in a Lua table afterwards is harmless. */
struct transport {
    struct conn *conn;
    union addr peer; /* kept: connection_lost and later code may still ask */
};

/* Create the metatable once per state. [-0, +0, e] */
void transport_register(lua_State *L);
/* Send what c's callback wrote while corked (conn_cork), and let go of the
 * strings kept alive for it. Allocates nothing. [-0, +0, -] */
void transport_uncork(lua_State *L, struct conn *c);
/* Push a new transport for c. [-0, +1, e] */
struct transport *transport_new(lua_State *L, struct conn *c);

#endif
