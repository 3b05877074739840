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
/* Make the one Lua object of server s, right after server_new(): its
 * connections report it as get_extra_info("server"). [-0, +0, e] */
void server_object_new(lua_State *L, struct server *s);

/* core.on_server_finished(server, fn): call fn() once the server is closed
 * and its last connection gone (at once if it already is). [-2, +0, e] */
int server_object_on_finished(lua_State *L);

/* core.listen(host, port, Protocol, callback): resolve host without blocking,
 * bind and listen, then callback(server) or callback(nil, message). [-4, +0, e] */
int server_object_listen(lua_State *L);

/* core.listen_unix(path, Protocol) -> server, or nil and a message: listen
 * on a Unix socket at once (no lookup to wait for). [-2, +1|2, e] */
int server_object_listen_unix(lua_State *L);

#endif
