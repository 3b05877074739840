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

/* Who made a connection (a server that accepted it), told when it ends:
 * given from above, so this layer never calls up. */
struct protocol_owner {
    int server_ref;                  /* its Lua object, for get_extra_info("server") */
    const char *listener;            /* for get_extra_info("listener"): "HOST:PORT", "unix:PATH" */
    void (*lost)(void *data, enum stats_end why); /* after connection_lost has returned */
    void *data;
};

/* A Protocol table and the metatable its instances get when it has no new(). */
struct protocol_class {
    int table_ref;
    int meta_ref;
    int generation; /* which load of the script it came from (hot swap) */
    bool checked;   /* its first instance was checked for answering any method */
};

/* Make a class of the Protocol table on top of the stack. [-1, +0, e] */
void protocol_class_init(lua_State *L, struct protocol_class *cls);
void protocol_class_release(lua_State *L, struct protocol_class *cls);
/* A second holder of the same class (its own references, same generation):
 * every listener of a script holds one. [-0, +0, e] */
void protocol_class_copy(lua_State *L, const struct protocol_class *from, struct protocol_class *to);

/* The events every Protocol-driven connection is created with, and the owner
 * data it needs: conn_new(loop, list, &protocol_events, protocol_conn_size). */
extern const struct conn_events protocol_events;
/* Hand the transport layer what it reports up (once, at start). */
void protocol_register_hooks(void);
/* For the console: the listener c was accepted on (NULL: an outgoing
 * connection, or one still reading its PROXY header) and the generation
 * of the code serving it (0: none yet). */
void protocol_describe(struct conn *c, const char **listener, int *generation);
extern const size_t protocol_conn_size;

/* Bind a new connection to L (and its owner, or NULL: a client connection
 * or a refused one), before anything else happens to it. */
void protocol_attach(struct conn *c, lua_State *L, const struct protocol_owner *owner);
/* The connection is up: create the instance, call connection_made(transport),
 * then start reading (unless the instance paused reading or closed). */
void protocol_connection_made(struct conn *c, struct protocol_class *cls);
/* Push c's transport and protocol instance (nil, nil once gone). [-0, +2, -] */
void protocol_push(lua_State *L, struct conn *c);
/* The owner c was attached with, or NULL. */
const struct protocol_owner *protocol_owner(struct conn *c);
/* Hand c's live instance to the new class: call cls.upgrade(instance) when the
 * Protocol defines it. A failure is logged and c keeps its old code.
 * Returns true when upgraded. */
bool protocol_upgrade(struct conn *c, const struct protocol_class *cls);

#endif
