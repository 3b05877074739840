/*
 * conn.h - one stream connection (TCP or a Unix socket): reads into the loop's buffer, a write queue
 * with flow-control marks, half-close, graceful and abortive closing.
 * Knows nothing about Lua: it reports what happens through struct conn_events.
 */
#ifndef LUAECHO_CONN_H
#define LUAECHO_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "addr.h"
#include "log.h"
#include "luaecho_defaults.h"
#include "stats.h"

struct conn;

/* What a connection reports to its owner. Every callback may call back into
 * conn_* on the same connection, including conn_close and conn_abort. */
struct conn_events {
    void (*data)(struct conn *c, const char *base, size_t len);
    void (*eof)(struct conn *c);            /* the peer half-closed */
    void (*pause_writing)(struct conn *c);  /* write buffer rose above the high mark */
    void (*resume_writing)(struct conn *c); /* ... and drained to the low mark */
    void (*lost)(struct conn *c, const char *error); /* last call; NULL error: clean close */
};

/* A filter between the socket and the owner (TLS): it gets the bytes
 * read and the owner's writes, and passes on what it makes of them with
 * conn_filter_deliver() and conn_filter_send(). Its state begins with a
 * pointer to these operations. */
struct conn_filter {
    void (*read)(struct conn *c, const char *base, size_t len); /* len 0: look at what it holds */
    int (*write)(struct conn *c, const char *base, size_t len); /* 0 or a libuv error */
    void (*write_eof)(struct conn *c);  /* our side ends: say so inside the stream, before the FIN */
    bool (*pending)(const struct conn *c); /* holds bytes for the owner (read stopped meanwhile) */
    bool (*eof)(struct conn *c);        /* the socket's end: true if the filter dealt with it */
    bool (*starting)(const struct conn *c); /* still setting up (a TLS handshake): an end the
                                               owner asks for waits for conn_filter_ready() */
    void (*free)(struct conn *c);       /* the connection is gone */
};

/* The connections of one loop, so shutdown can reach them all, and the
 * limits they share. */
struct conn_list {
    struct conn *head;
    size_t count;
    size_t max_write_buffer; /* abort past this many queued bytes; 0: no cap */
    uint64_t turn;           /* loop iterations, counted by 'next_turn' */
    uv_prepare_t next_turn;  /* resumes the connections read enough last turn (referenced while any wait) */
    struct conn *deferred;   /* ... those connections */
    struct loop_stats *stats; /* bytes in and out, bytes queued */
};

#define CONN_DEFAULT_HIGH_WATER LUAECHO_DEFAULT_HIGH_WATER
#define CONN_MAX_WATER LUAECHO_DEFAULT_MAX_WATER /* flow-control marks are 32-bit */

/* Set up the per-loop parts of a list (before any conn_new); abort a
 * connection with more than 'max_write_buffer' bytes queued (0: no cap). */
void conn_list_init(struct conn_list *list, uv_loop_t *loop, size_t max_write_buffer, struct loop_stats *stats);
/* Close them (every connection is gone already). */
void conn_list_close(struct conn_list *list);

enum conn_kind { CONN_TCP, CONN_UNIX };

/* A new, unconnected connection with 'data_size' bytes of zeroed owner data.
 * NULL when out of memory. Once created it ends only through its lost() call. */
struct conn *conn_new(uv_loop_t *loop, struct conn_list *list, const struct conn_events *events,
                      size_t data_size, enum conn_kind kind);
/* Report to 'events' from now on: a connection whose first bytes belong
 * to a stage before its owner (the PROXY header) changes hands. */
void conn_set_events(struct conn *c, const struct conn_events *events);
/* Whom c reports to now (its owner data means what that owner says). */
const struct conn_events *conn_get_events(const struct conn *c);
/* Adopt an accepted socket; 'peer' is the address accept() gave (NULL:
 * ask the socket). Returns 0 or a libuv error (then abort the conn, and
 * close fd: it is not the conn's). */
int conn_open(struct conn *c, int fd, const struct sockaddr *peer);
/* Connect to 'addr'; 'done' gets 0 or a libuv error (then abort the conn). */
typedef void (*conn_connected_cb)(struct conn *c, int status, void *data);
int conn_connect(struct conn *c, const union addr *addr, conn_connected_cb done, void *data);
/* Connect a CONN_UNIX connection to the socket at 'path'. */
int conn_connect_unix(struct conn *c, const char *path, conn_connected_cb done, void *data);
/* Start reading, unless the owner paused reading before. */
void conn_start(struct conn *c);

/* Queue bytes; what the kernel takes at once is never copied. Returns 0,
 * or UV_EPIPE when the connection is closing or write_eof() was called. A
 * failed write aborts the connection (the error reaches lost()). While c is
 * corked, a write for which conn_write_holds() is true is held by pointer:
 * the caller keeps the bytes alive until conn_uncork(). Flow-control events
 * caused by a write are reported after it has been queued, as asyncio does. */
int conn_write(struct conn *c, const char *base, size_t len);
/* Would conn_write(c, .., len) hold the bytes by pointer? Ask before
 * writing: a caller that cannot keep the bytes alive must not write them. */
bool conn_write_holds(const struct conn *c, size_t len);
/* Hold c's writes until conn_uncork(c), then send them in one call. */
void conn_cork(struct conn *c);
void conn_uncork(struct conn *c);
/* Half-close our side once the queued bytes are out. */
int conn_write_eof(struct conn *c);
/* Flush, then close. Idempotent. */
void conn_close(struct conn *c);
/* Close now and drop the write buffer; 'error' (copied) goes to lost(). Idempotent. */
void conn_abort(struct conn *c, const char *error);
/* The same, saying why for the metrics (conn_abort: END_ERROR with an
 * error, else END_CLEAN). The first reason given is kept. */
void conn_abort_for(struct conn *c, enum stats_end why, const char *error);
/* Why the connection ended, or is ending (END_CLEAN until one is known). */
enum stats_end conn_end_reason(const struct conn *c);
/* For the console: a process-wide id, how long ago it was made and last had traffic (ms),
 * the bytes it read and wrote. */
uint64_t conn_id(const struct conn *c);
uint64_t conn_age_ms(const struct conn *c);
uint64_t conn_idle_ms(const struct conn *c);
void conn_traffic(const struct conn *c, uint64_t *in, uint64_t *out);

/* Put 'state' (which begins with a pointer to its operations) between
 * the socket and the owner, from the next byte read on; NULL: none. */
void conn_set_filter(struct conn *c, void *state);
void *conn_filter(const struct conn *c);
/* For the filter: bytes for the owner, as if read; the owner's end of
 * stream (the filter saw it inside the stream); bytes for the socket. */
void conn_filter_deliver(struct conn *c, const char *base, size_t len);
void conn_filter_eof(struct conn *c);
int conn_filter_send(struct conn *c, const char *base, size_t len);
/* Read again on the next loop turn even with nothing new from the socket
 * (the filter holds bytes that reading was paused for). */
void conn_filter_defer(struct conn *c);
/* The filter is set up: a close() or write_eof() the owner asked for
 * meanwhile happens now, after what it wrote meanwhile. */
void conn_filter_ready(struct conn *c);

/* Put bytes back (copied): they are delivered, as read, on the next loop
 * turn once reading is on, before anything more is read from the socket.
 * Returns 0 or UV_ENOMEM. */
int conn_unread(struct conn *c, const char *base, size_t len);

void conn_pause_reading(struct conn *c);
void conn_resume_reading(struct conn *c);
bool conn_is_reading(const struct conn *c);
bool conn_is_closing(const struct conn *c);
bool conn_eof_written(const struct conn *c);

size_t conn_write_buffer_size(const struct conn *c);
/* Set the flow-control marks; low <= high. May call pause_writing() at once. */
void conn_set_write_limits(struct conn *c, size_t high, size_t low);
void conn_get_write_limits(const struct conn *c, size_t *high, size_t *low);

/* The peer as it was at accept time (or as a PROXY header named it):
 * still known after the connection ended. A Unix peer has its credentials. */
const union addr *conn_peer(const struct conn *c);
/* The peer the socket itself is connected to: conn_peer() unless a PROXY
 * header named another (then the load balancer's, asked of the live
 * socket). Returns 0, or UV_EBADF once closing, or UV_ENOTCONN. */
int conn_socket_peer(const struct conn *c, union addr *out);
/* The client's address from a PROXY header. */
void conn_set_peer(struct conn *c, const union addr *peer);
bool conn_is_unix(const struct conn *c);
/* Our own address (TCP); UV_EBADF once the connection is closing. */
int conn_sockname(const struct conn *c, union addr *out);
/* A Unix socket's own path or its peer's ('peer'), as libuv's
 * uv_pipe_getsockname/getpeername; UV_EBADF once closing. */
int conn_unix_path(const struct conn *c, bool peer, char *buf, size_t *len);
uv_loop_t *conn_loop(const struct conn *c);
void *conn_data(struct conn *c);

/* Call fn(c, arg) for every connection of a list; fn must not free any. */
void conn_list_each(struct conn_list *list, void (*fn)(struct conn *c, void *arg), void *arg);
/* Abort every connection with no traffic either way for 'timeout_ms'. */
void conn_list_expire_idle(struct conn_list *list, uint64_t timeout_ms, struct log_rate *rate);
/* Shutdown helpers over every connection of a list. */
void conn_list_close_all(struct conn_list *list);
void conn_list_abort_all(struct conn_list *list, const char *error);
/* The connection with this id, or NULL. */
struct conn *conn_list_find(struct conn_list *list, uint64_t id);

#endif
