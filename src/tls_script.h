/*
 * tls_script.h - what scripts reach of TLS: the certificates a
 * start_tls({cert=, key=}) names and the client settings a TLS connect
 * asks for, each loaded once per Lua state and kept in the registry
 * (freed with the state); get_extra_info("tls").
 */
#ifndef LUAECHO_TLS_SCRIPT_H
#define LUAECHO_TLS_SCRIPT_H

#include <lua.h>

#include "conn.h"
#include "tls_context.h"

/* The client settings of the table at 'index' (server_hostname is not
 * one: it is per connection); ca, verify, alpn (a comma-joined string).
 * Raises with what is wrong (a file that cannot be read: its reason). [-0, +0, e] */
struct tls_client *tls_script_client(lua_State *L, int index);
/* A server with this certificate and key. Raises when they cannot be loaded. [-0, +0, e] */
struct tls_server *tls_script_server(lua_State *L, const char *cert, const char *key);
/* get_extra_info("tls"): the table, or nil on a connection without TLS. [-0, +1, e] */
int tls_script_push_info(lua_State *L, struct conn *c);

#endif
