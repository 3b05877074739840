/*
 * conn_private.h - the stream connection's struct and the steps its three
 * files take of each other: conn.c (life cycle), conn_read.c (the read
 * path) and conn_write.c (the write path). Included by those three files
 * only, after conn.h: everything else goes through conn.h. It does not
 * include conn.h (a .c and its .h are one unit for check-layers: that
 * would be a circle).
 * Rule: every public call and callback ends with conn_check_state().
 */
#ifndef LUAECHO_CONN_PRIVATE_H
#define LUAECHO_CONN_PRIVATE_H

#include <assert.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"
#include "stats.h"

struct conn_events; /* conn.h's */
struct conn_list;
struct conn_filter;
struct unread;      /* conn_read.c's */

/* Why the owner's close() or write_eof() waits for the filter. */
enum { END_WAITS_NONE, END_WAITS_WRITE_EOF, END_WAITS_CLOSE };

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;      /* what everything but open and addresses uses */
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    const struct conn_events *events;
    struct conn_list *list;
    struct conn *prev, *next;
    union addr peer;             /* who the connection is from (a PROXY header may say) */
    char *error;                 /* why it ended, for lost(); NULL: clean */
    struct unread *unread;       /* bytes to deliver before reading again (conn_unread) */
    void *filter;                /* between the socket and the owner (TLS); NULL: none */
    uv_shutdown_t *shutdown_req; /* allocated only while a shutdown is pending */
    uint32_t high_water, low_water;
    uint64_t id;                 /* process-wide, for the console */
    uint64_t bytes_in, bytes_out;
    uint32_t made;               /* loop time (ms, wrapping) it was made */
    uint32_t last_active;        /* loop time (ms, wrapping) of the last byte in or out */
    uint32_t turn;               /* the loop turn 'full_reads' counts in (wrapping) */
    struct conn *next_deferred;  /* in list->deferred while 'deferred' */
    uint8_t full_reads;
    bool started : 1;            /* conn_start() was called */
    bool want_reading : 1;       /* the owner has not paused reading */
    bool reading : 1;            /* uv_read_start() is in effect */
    bool eof_received : 1;
    bool eof_written : 1;        /* write_eof() was called */
    bool shutdown_done : 1;
    bool closing : 1;
    bool writing_paused : 1;     /* over the high mark: pause_writing() is due or was reported */
    bool pause_due : 1;          /* ... and is still to be reported (see report_pause) */
    bool deferred : 1;           /* read its fill this turn, or has 'unread' bytes: resumes next turn */
    bool unix_socket : 1;        /* a uv_pipe_t */
    bool peer_from_header : 1;   /* 'peer' is a PROXY header's client, not the socket's peer */
    bool end_known : 1;          /* 'end_reason' was given */
    unsigned end_waits : 2;      /* close() or write_eof() asked while the filter was starting */
    unsigned end_reason : 3;     /* enum stats_end */
    alignas(8) unsigned char data[]; /* pointers and ints only: 8 is enough */
};

/* conn_read.c's */
/* Stop reading now (the owner's wish is kept in want_reading). */
void conn_read_stop(struct conn *c);
/* Take c off its list's deferred connections (it is closing). */
void conn_read_forget_deferred(struct conn *c);
/* The list's uv_prepare_t callback: a new loop turn, the connections that
 * sat out read again. */
void conn_read_on_next_turn(uv_prepare_t *handle);

/* conn_write.c's */
/* Report a noted pause, at the end of the public call that caused it. */
void conn_write_report_pause(struct conn *c);
/* Send what the cork holds, if it is c's. */
void conn_write_flush_cork(struct conn *c);
/* Drop what the cork holds, if it is c's (an abort drops the queue too). */
void conn_write_drop_cork(struct conn *c);
/* Is the cork within its bounds? For conn_check_state. */
bool conn_write_cork_ok(const struct conn *c);

/* The filter's operations, or NULL. */
static inline const struct conn_filter *filter_of(const struct conn *c)
{
    return c->filter ? *(const struct conn_filter *const *)c->filter : NULL;
}

/* The rules of the state machine, asserted (debug builds) at the end of
 * every public call and callback, as libuv's stream.c does. */
static inline void conn_check_state(const struct conn *c)
{
    (void)c;
    assert(!c->reading || (c->started && c->want_reading && !c->closing && !c->eof_received));
    assert(!c->deferred || !c->reading);
    assert(!uv_is_closing(&c->h.handle) || c->closing);
    assert(!c->shutdown_req || c->eof_written || c->closing);
    assert(!c->pause_due || c->writing_paused);
    assert(conn_write_cork_ok(c));
}

#endif
