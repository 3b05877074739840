/*
 * redis_conn.h - one Redis connection on a uv_loop_t, on hiredis' async API
 * (driven by the loop through redis_uv.c). No Lua: src/redis_script.c
 * (luaecho.redis) and the channel bridge (--channel-redis) build on it.
 *
 * What it does:
 *  - connects in the background to a parsed URL (redis_url.h), sends AUTH and
 *    SELECT first when the URL has them, and only then reports "up"; the
 *    first attempt lets hiredis look the host name up (blocking, once, so
 *    commands can queue at once), every later one looks it up in libuv's
 *    thread pool;
 *  - reconnects by itself after a failed attempt or a lost link, with a
 *    backoff doubling from backoff_min_ms to backoff_max_ms; an attempt that
 *    is not up within connect_timeout_ms is abandoned and counts as failed;
 *  - logs one warning when the link goes down (or the first attempt fails)
 *    and one line when it is up again, never one per attempt;
 *  - a command connection: commands with a reply callback, at most
 *    max_pending waiting for their replies; while the first attempt is in
 *    progress commands are queued (within that bound) so a caller can use a
 *    connection it just opened; after that, while down, they are refused at
 *    once (REDIS_CONN_DISCONNECTED) and never queued;
 *  - a subscriber connection (redis_conn_subscribe turns one into it, for
 *    good): SUBSCRIBE/PSUBSCRIBE with one message callback, the set of
 *    channels and patterns kept here and subscribed again after a reconnect;
 *  - close: no event afterwards but the pending reply callbacks, each
 *    called once with REDIS_CONN_CLOSED on the next loop turn, and
 *    'closed'; the memory goes then too.
 *
 * Rules for callers:
 *  - Every function is called on the loop's own thread. Callbacks run on it
 *    too, from the loop, never from inside the call that caused them (a
 *    refused command reports through its return value, not its callback;
 *    redis_conn_close answers the pending ones on the next loop turn).
 *  - A command's reply callback is called exactly once unless the command
 *    was refused (non-zero return).
 *  - Any callback may call any function here, redis_conn_close on its own
 *    connection included.
 *  - Loop lifetime: a connection keeps its loop alive only while a reply is
 *    pending or while it has subscriptions; after redis_conn_shutdown_all on
 *    that thread, only while a reply is pending. redis_conn_close_all (at
 *    teardown, before the loop is run dry) closes every connection of the
 *    thread, as if by redis_conn_close.
 */
#ifndef LUAECHO_REDIS_CONN_H
#define LUAECHO_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis_url.h"

struct redis_conn;
struct redisReply; /* hiredis' reply: type, integer, str/len, elements/element */

/* Why a command got no reply from Redis. */
enum redis_conn_error {
    REDIS_CONN_OK = 0,
    REDIS_CONN_DISCONNECTED = -1, /* not connected (refused at once), or the link went down before the reply */
    REDIS_CONN_BUSY = -2,         /* max_pending replies already awaited: refused at once */
    REDIS_CONN_CLOSED = -3,       /* redis_conn_close was called */
    REDIS_CONN_SUBSCRIBER = -4,   /* a command other than (P)SUBSCRIBE on a subscriber connection */
    REDIS_CONN_NOMEM = -5,        /* out of memory: refused at once */
};

/* A short constant text for 'error' ("disconnected", "busy", "closed", ...). */
const char *redis_conn_error_name(enum redis_conn_error error);

struct redis_conn_events {
    /* The link went up (true; 'reason' is NULL) or down (false; 'reason'
     * says why in one line: "connection refused", "WRONGPASS ...",
     * "connect timed out", "server closed the connection"). Called once per
     * change, not per failed attempt. May be NULL. */
    void (*state)(struct redis_conn *conn, bool up, const char *reason, void *data);
    /* A message on a subscriber connection: 'pattern' is NULL for a
     * SUBSCRIBE'd channel, else the PSUBSCRIBE pattern that matched. The
     * strings live until the callback returns. May be NULL. */
    void (*message)(struct redis_conn *conn, const char *pattern, size_t pattern_len, const char *channel,
                    size_t channel_len, const char *payload, size_t payload_len, void *data);
    /* The connection's memory is about to go (after redis_conn_close or
     * redis_conn_close_all): forget the pointer. May be NULL. */
    void (*closed)(struct redis_conn *conn, void *data);
};

struct redis_conn_options {
    const char *name;          /* for log lines, e.g. "luaecho.redis" or "--channel-redis" */
    size_t max_pending;        /* 0: 1024 */
    uint64_t backoff_min_ms;   /* 0: 100 */
    uint64_t backoff_max_ms;   /* 0: 5000 */
    uint64_t connect_timeout_ms; /* 0: 3000 */
};

/* A reply (NULL with 'error' set when none came; an error reply is a reply
 * of type REDIS_REPLY_ERROR with 'error' REDIS_CONN_OK). The reply is freed
 * when the callback returns. */
typedef void redis_conn_reply_fn(struct redis_conn *conn, const struct redisReply *reply,
                                 enum redis_conn_error error, void *data);

/* Open a connection to 'url' on 'loop' and start connecting. 'events' must
 * outlive the connection; 'data' is handed to every event. NULL when out of
 * memory. Never calls an event before returning. */
struct redis_conn *redis_conn_open(uv_loop_t *loop, const struct redis_url *url,
                                   const struct redis_conn_options *options, const struct redis_conn_events *events,
                                   void *data);

/* Send the command argv[0..argc) (binary-safe, lengths in 'lens');
 * 'done' is called once with its reply. Returns 0, or a negative
 * redis_conn_error when refused at once ('done' is then never called). */
int redis_conn_command(struct redis_conn *conn, int argc, const char *const *argv, const size_t *lens,
                       redis_conn_reply_fn *done, void *data);

/* Subscribe to 'name' (a channel, or a pattern when 'pattern'), now if up,
 * else on the next connect; kept across reconnects. Makes 'conn' a
 * subscriber connection (commands already sent still get their replies).
 * Subscribing twice is one subscription. Returns 0, REDIS_CONN_CLOSED or
 * REDIS_CONN_NOMEM. */
int redis_conn_subscribe(struct redis_conn *conn, const char *name, size_t len, bool pattern);
/* Drop that subscription (no-op when absent). */
void redis_conn_unsubscribe(struct redis_conn *conn, const char *name, size_t len, bool pattern);

bool redis_conn_is_up(const struct redis_conn *conn);
/* Replies awaited now. */
size_t redis_conn_pending(const struct redis_conn *conn);
/* The URL as given to open, without its password. */
const char *redis_conn_describe(const struct redis_conn *conn);
/* Change the 'data' handed to events (NULL: still called, with NULL). */
void redis_conn_set_data(struct redis_conn *conn, void *data);

/* Close: on the next loop turn the pending replies get REDIS_CONN_CLOSED
 * and 'closed' is called; no other event after this call. Idempotent. */
void redis_conn_close(struct redis_conn *conn);

/* Shutdown began on this thread: subscriptions no longer keep the loop alive. */
void redis_conn_shutdown_all(void);
/* Teardown: close every connection of this thread. */
void redis_conn_close_all(void);

#endif
