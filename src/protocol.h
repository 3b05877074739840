/*
 * protocol.h - connection events turned into calls of a Lua Protocol's
 * methods, in asyncio's order: connection_made, data_received*,
 * eof_received?, connection_lost once; pause_writing/resume_writing between.
 */
#ifndef LUAECHO_PROTOCOL_H
#define LUAECHO_PROTOCOL_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "conn.h"

struct server;

/* A Protocol table and the metatable its instances get when it has no new(). */
struct protocol_class {
    int table_ref;
    int meta_ref;
    int generation; /* which load of the script it came from (hot swap) */
};

/* Make a class of the Protocol table on top of the stack. [-1, +0, e] */
void protocol_class_init(lua_State *L, struct protocol_class *cls);
void protocol_class_release(lua_State *L, struct protocol_class *cls);

/* The events every Protocol-driven connection is created with, and the owner
 * data it needs: conn_new(loop, list, &protocol_events, protocol_conn_size). */
extern const struct conn_events protocol_events;
extern const size_t protocol_conn_size;

/* Bind a new connection to L (and the server that accepted it, or NULL),
 * before anything else happens to it. */
void protocol_attach(struct conn *c, lua_State *L, struct server *server);
/* The connection is up: create the instance, call connection_made(transport),
 * then start reading (unless the instance paused reading or closed). */
void protocol_connection_made(struct conn *c, const struct protocol_class *cls);
/* Push c's transport and protocol instance (nil, nil once gone). [-0, +2, -] */
void protocol_push(lua_State *L, struct conn *c);
/* The server that accepted c, or NULL. */
struct server *protocol_server(struct conn *c);
/* The generation of the code serving c. */
int protocol_generation(struct conn *c);
/* Hand c's live instance to the new class: call cls.upgrade(instance) when the
 * Protocol defines it. A failure is logged and c keeps its old code.
 * Returns true when upgraded. */
bool protocol_upgrade(struct conn *c, const struct protocol_class *cls);

#endif
