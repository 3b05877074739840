/*
 * server.h - one listening socket: accept, hand each connection to its
 * Protocol, stop accepting on close().
 */
#ifndef LUAECHO_SERVER_H
#define LUAECHO_SERVER_H

#include <lua.h>
#include <stdbool.h>
#include <uv.h>

#include "addr.h"
#include "protocol.h"

struct host;

struct server {
    int fd;              /* the listening socket, -1 when none */
    uv_poll_t poll;      /* its readiness: accept() is ours, so running out of
                            descriptors is seen, logged and waited out */
    uv_timer_t retry;    /* accepting paused until it fires */
    bool polling;
    struct host *host;
    struct protocol_class protocol;
    int object_ref;      /* the Lua server object, LUA_NOREF until first asked for */
    size_t connections;  /* open connections it accepted */
    int waiters_ref;     /* functions to call once closed and idle, LUA_NOREF: none */
    void (*on_close)(struct server *s); /* told once, when it stops accepting (workers) */
    void *on_close_data;
    /* Workers without SO_REUSEPORT: the one listener may hand an accepted
     * socket to another worker; returns false to serve it here. */
    bool (*hand_off)(struct server *s, int fd);
    bool closed;
    struct server *next; /* the host's list */
};

/* A server for the Protocol table on top of the stack, owned by the host
 * until host_destroy(). [-1, +0, e] */
struct server *server_new(struct host *h, lua_State *L);
/* Bind and listen. With 'reuseport', other sockets (other workers') may
 * listen on the same address and the kernel spreads connections among them.
 * Returns 0 or a libuv error. */
int server_listen(struct server *s, const union addr *addr, bool reuseport);
/* Stop accepting; open connections go on. Idempotent. */
void server_close(struct server *s);
int server_sockname(const struct server *s, union addr *out);
/* Can sockets share a port here (SO_REUSEPORT)? */
bool server_reuseport_works(void);
/* Serve a socket another worker accepted (the hand-off fallback). */
void server_adopt(struct server *s, int fd);
/* Count as accepting without a socket of its own: its connections come
 * handed off by another worker's listener. */
void server_open_without_socket(struct server *s);
/* Is 'addr' free to listen on? Workers share their port with SO_REUSEPORT,
 * which would let them join another process's group: ask first. */
int server_check_free(const union addr *addr);
/* Closed, and its last connection gone: what wait_closed() waits for. */
bool server_is_finished(const struct server *s);

void server_connection_added(struct server *s);
void server_connection_removed(struct server *s);
/* Free it (closed already): only from host_destroy(), after lua_close(). */
void server_free(struct server *s);

#endif
