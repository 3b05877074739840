/*
 * client.h - outgoing connections for Lua: core.connect().
 */
#ifndef LUAECHO_CLIENT_H
#define LUAECHO_CLIENT_H

#include <lua.h>

/* core.connect(host, port, Protocol, callback): resolve host without blocking,
 * connect, make a Protocol instance (connection_made runs first), then call
 * callback(transport, instance), or callback(nil, message) on failure. [-4, +0, e] */
int client_connect(lua_State *L);
/* core.connect_tls(host, port, tlsopts, protocol, callback): the same, then a TLS
 * handshake (tlsopts: server_hostname, ca, verify, alpn) before connection_made. */
int client_connect_tls(lua_State *L);

/* core.connect_unix(path, Protocol, callback): the same for the Unix socket
 * at 'path'. [-3, +0, e] */
int client_connect_unix(lua_State *L);

#endif
