/*
 * datagram.h - one UDP endpoint served by a Lua Protocol, as asyncio's
 * DatagramProtocol: one instance per endpoint, connection_made(transport),
 * datagram_received(data, host, port), error_received(err),
 * connection_lost(err) when the endpoint closes. Its transport (a Lua
 * userdata of its own, "luaecho.datagram_transport") has sendto(), close(),
 * abort(), get_extra_info(), get_write_buffer_size() and flow control.
 */
#ifndef LUAECHO_DATAGRAM_H
#define LUAECHO_DATAGRAM_H

#include <lua.h>
#include <stdbool.h>

#include "addr.h"
#include "context.h"
#include "protocol.h"

struct endpoint;

/* The endpoints of one loop (the context points at it), so shutdown
 * reaches them all. */
struct endpoint_list {
    struct endpoint *head;
};

/* Create the transport's metatable once per state. [-0, +0, e] */
void datagram_register(lua_State *L);

/* Raise, naming 'what' and 'whose' Protocol ("the script's"), unless the
 * value at 'idx' is a Protocol table that can serve datagrams (has
 * datagram_received): what endpoint_new checks, for a reload and a
 * script's own endpoint to check first. [-0, +0, e] */
void endpoint_check_protocol(lua_State *L, int idx, const char *what, const char *whose);
/* An endpoint for the Protocol table on top of the stack, in ctx's list.
 * Raises (nothing allocated) when the Protocol has no datagram_received,
 * naming 'what' (e.g. "udp:127.0.0.1:2222") in the message. [-1, +0, e] */
struct endpoint *endpoint_new(struct loop_context *ctx, lua_State *L, const char *what);
/* Bind to 'local' (SO_REUSEPORT with 'reuseport': workers share it).
 * Returns 0 or a libuv error. */
int endpoint_bind(struct endpoint *e, const union addr *local, bool reuseport);
/* Is the UDP address 'addr' free? Workers share their port with
 * SO_REUSEPORT, which would let them join another process's group: ask
 * first. Returns 0 or a libuv error. */
int endpoint_check_free(const union addr *addr);
/* Send to 'remote' by default, and hear only from it (asyncio's
 * remote_addr). Returns 0 or a libuv error. */
int endpoint_connect(struct endpoint *e, const union addr *remote);
/* What get_extra_info("listener") answers (kept by pointer: it must
 * outlive the endpoint); NULL: nil. */
void endpoint_set_listener(struct endpoint *e, const char *spec);
int endpoint_sockname(const struct endpoint *e, union addr *out);
/* Create the instance, call connection_made(transport), start receiving.
 * A failure is logged and the endpoint closed. */
void endpoint_start(struct endpoint *e);
/* Push the endpoint's transport and instance (nil, nil once gone). [-0, +2, -] */
void endpoint_push(lua_State *L, struct endpoint *e);
/* Hot swap: serve with 'cls' from now on (one generation on; the endpoint
 * takes its own references). With an upgrade() in the new Protocol, the
 * instance is upgraded; otherwise a new instance gets connection_made with
 * the same transport. Returns true when it was upgraded. */
bool endpoint_set_protocol(struct endpoint *e, const struct protocol_class *cls);
/* Hot swap every endpoint of the list that serves a listener (see
 * endpoint_set_listener) and is open, as endpoint_set_protocol does. The
 * list is the only way to them: an endpoint is freed once closed. */
void endpoint_list_swap_listeners(struct endpoint_list *list, const struct protocol_class *cls);
/* Close: connection_lost(nil) follows from the loop. Idempotent. */
void endpoint_close(struct endpoint *e);
void endpoint_close_all(struct endpoint_list *list);

#endif
