/*
 * server.h - one listening stream socket, TCP or Unix: accept, read a
 * PROXY header first when asked, hand each connection to its Protocol,
 * stop accepting on close().
 */
#ifndef LUAECHO_SERVER_H
#define LUAECHO_SERVER_H

#include <lua.h>
#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "addr.h"
#include "context.h"
#include "protocol.h"
#include "proxy_wait.h"
#include "tls_accept.h"

/* "unix:" and the longest path a Unix socket takes (sun_path less its NUL). */
#define SERVER_LISTENER_STRLEN 120

/* The servers of one loop (the context points at it), so shutdown reaches
 * them all. */
struct server_list {
    struct server *head;
};

struct server {
    int fd;              /* the listening socket, -1 when none */
    bool owns_fd;        /* false: another holds it (workers share a Unix socket) */
    bool unlink_path;    /* remove the Unix socket file on close (a script's server) ... */
    dev_t path_dev;      /* ... if it is still the one it bound */
    ino_t path_ino;
    enum conn_kind kind; /* of the connections it accepts */
    char listener[SERVER_LISTENER_STRLEN]; /* "HOST:PORT" or "unix:PATH", the real port */
    uint64_t proxy_timeout_ms; /* 0: no PROXY header; else read one within this */
    struct proxy_wait_owner proxy_owner;
    struct tls_server *tls; /* NULL: plain; else a TLS handshake first, within tls_timeout_ms */
    uint64_t tls_timeout_ms;
    struct tls_accept_owner tls_owner;
    uv_poll_t poll;      /* its readiness: accept() is ours, so running out of
                            descriptors is seen, logged and waited out */
    uv_timer_t retry;    /* accepting paused until it fires */
    bool polling;
    struct loop_context *ctx;
    struct protocol_class protocol;
    struct protocol_class previous; /* a canary's baseline (table_ref LUA_NOREF: none): see server_start_canary */
    struct protocol_owner owner; /* what its connections are attached with */
    size_t connections;  /* open connections it accepted */
    struct listener_stats *stats; /* where they are counted (/metrics) */
    /* Hooks given from above, through the setters below: */
    void (*on_close)(struct server *s, void *data); /* once, when it stops accepting */
    void *on_close_data;
    void (*on_finished)(struct server *s, void *data); /* closed and idle (wait_closed) */
    void *on_finished_data;
    bool (*hand_off)(struct server *s, int fd, void *data); /* see server_set_hand_off */
    void *hand_off_data;
    bool closed;
    struct server *next; /* in ctx->servers */
};

/* A server for the Protocol table on top of the stack, in ctx's list until
 * server_free_all(). Its Lua object comes from server_object_new(). [-1, +0, e] */
struct server *server_new(struct loop_context *ctx, lua_State *L);
/* Set the registry reference of its Lua object (server_object.c's), which
 * its connections report as get_extra_info("server"). */
void server_set_object(struct server *s, int ref);
/* Serve new connections with 'cls' from now on (a hot swap), one
 * generation after the class it replaces, which is released. */
void server_set_protocol(struct server *s, const struct protocol_class *cls);
/* A hot swap with --canary: as server_set_protocol, but the class new
 * connections got so far stays as 'previous', the baseline, for the share
 * of them the canary does not take (generations.h decides); a baseline
 * already held (a canary replaced, or rolled back) stays it. */
void server_start_canary(struct server *s, const struct protocol_class *cls);
/* The canary was promoted: let the baseline go. */
void server_end_canary(struct server *s);
/* Call fn(s, data) once, when it stops accepting (workers close all theirs). */
void server_set_on_close(struct server *s, void (*fn)(struct server *s, void *data), void *data);
/* Call fn(s, data) whenever it is closed and its last connection is gone. */
void server_set_on_finished(struct server *s, void (*fn)(struct server *s, void *data), void *data);
/* Workers without SO_REUSEPORT: the one listener may hand an accepted socket
 * to another worker; fn returns false to serve it here. */
void server_set_hand_off(struct server *s, bool (*fn)(struct server *s, int fd, void *data), void *data);
/* Count its connections as those of --listen number 'listener' (from 0;
 * by default they count as a script's server's). */
void server_count_as(struct server *s, int listener);
/* Bind and listen. With 'reuseport', other sockets (other workers') may
 * listen on the same address and the kernel spreads connections among them.
 * Returns 0 or a libuv error. */
int server_listen(struct server *s, const union addr *addr, bool reuseport);
/* Accept on a listening socket opened by server_open_unix (each worker on
 * a duplicate of one; 'owned': close it with the server). Returns 0 or a
 * libuv error. */
int server_listen_fd(struct server *s, int fd, enum conn_kind kind, const char *listener, bool owned);
/* A listening Unix socket at 'path', permissions 'mode' (-1: the umask's).
 * A socket file no process listens on is replaced. Returns 0, or
 * UV_EADDRINUSE (a live process listens there: nothing was touched),
 * UV_EEXIST (the path is not a socket), or another libuv error. */
int server_open_unix(const char *path, int mode, int *fd);
/* Listen on a new Unix socket at 'path' (see server_open_unix), removed
 * when the server closes. Returns 0 or a libuv error. */
int server_listen_unix(struct server *s, const char *path, int mode);
/* What to add to uv_strerror() for server_open_unix's errors ("" if nothing). */
const char *server_unix_hint(int rc);
/* Read a PROXY protocol header on every connection before serving it,
 * closing those with none within 'timeout_ms'. */
void server_expect_proxy(struct server *s, uint64_t timeout_ms);
/* Serve every connection over TLS with 'tls''s certificates (a reference
 * is taken; the previous one, on a reload, let go): a handshake within
 * 'timeout_ms' (0: no limit) before it is served. */
void server_use_tls(struct server *s, struct tls_server *tls, uint64_t timeout_ms);
/* Stop accepting; open connections go on. Idempotent. */
void server_close(struct server *s);
int server_sockname(const struct server *s, union addr *out);
/* Its listener's name with the real port: "127.0.0.1:2222", "unix:/run/x.sock". */
const char *server_listener(const struct server *s);
/* Can sockets share a port here (SO_REUSEPORT)? */
bool server_reuseport_works(void);
/* Serve a socket another worker accepted (the hand-off fallback). */
void server_adopt(struct server *s, int fd);
/* Count as accepting without a socket of its own: its connections come
 * handed off by another worker's listener, named 'listener'. */
void server_open_without_socket(struct server *s, const char *listener);
/* Is 'addr' free to listen on? Workers share their port with SO_REUSEPORT,
 * which would let them join another process's group: ask first. */
int server_check_free(const union addr *addr);
/* Closed, and its last connection gone: what wait_closed() waits for. */
bool server_is_finished(const struct server *s);

/* Close every server of the list (shutdown). */
void server_close_all(struct server_list *list);
/* Free them all (closed already): only at teardown, after lua_close(). */
void server_free_all(struct server_list *list);

#endif
