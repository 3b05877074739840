/*
 * server_object.h - the Lua-facing server: server:close(), server:sockname().
 */
#ifndef LUAECHO_SERVER_OBJECT_H
#define LUAECHO_SERVER_OBJECT_H

#include <lua.h>

struct server;

#define SERVER_METATABLE "luaecho.server"

/* Create the metatable once per state. [-0, +0, e] */
void server_object_register(lua_State *L);
/* Push the one Lua object of server s, creating it on first use. [-0, +1, e] */
void server_object_push(lua_State *L, struct server *s);

#endif
