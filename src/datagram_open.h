/*
 * datagram_open.h - core.datagram_endpoint(), for luaecho.create_datagram_endpoint.
 */
#ifndef LUAECHO_DATAGRAM_OPEN_H
#define LUAECHO_DATAGRAM_OPEN_H

#include <lua.h>

/* core.datagram_endpoint(Protocol, local_host, local_port, remote_host,
 * remote_port, callback): resolve the hosts without blocking (either
 * address may be nil, not both), bind (to the wildcard of the remote's
 * family when no local address is given), connect to the remote when
 * given, start the endpoint (connection_made runs first), then call
 * callback(transport, instance), or callback(nil, "cannot ...: reason").
 * Raises at once when the Protocol has no datagram_received. [-6, +0, e] */
int datagram_endpoint(lua_State *L);

#endif
