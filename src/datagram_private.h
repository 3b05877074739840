/*
 * datagram_private.h - what datagram.c and datagram_transport.c share of a
 * UDP endpoint: the endpoint itself, the box Lua holds, the Protocol's
 * events and the few steps the transport's methods take.
 * Included by those two files only, after datagram.h: everything else
 * reaches an endpoint through datagram.h. It does not include datagram.h
 * itself (a .c and its .h are one unit for check-layers: that would be a
 * circle). The endpoint's fields are datagram.c's to change but
 * for what a transport method sets (its write marks).
 */
#ifndef LUAECHO_DATAGRAM_PRIVATE_H
#define LUAECHO_DATAGRAM_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "addr.h"
#include "protocol.h"

struct endpoint_list; /* datagram.h's */

#define DATAGRAM_TRANSPORT_METATABLE "luaecho.datagram_transport"

/* What Lua holds. 'endpoint' is cleared when the endpoint is freed. */
struct datagram_box {
    struct endpoint *endpoint;
    union addr remote; /* kept: "peername" answers after close */
    bool connected;
};

struct endpoint {
    uv_udp_t udp;
    struct endpoint_list *list;
    struct endpoint *prev, *next;
    struct loop_context *ctx;
    lua_State *L;
    struct protocol_class cls;
    int instance_ref;
    int transport_ref;
    struct datagram_box *box;
    int generation;       /* of the code serving the instance */
    const char *listener; /* get_extra_info("listener"); not ours */
    union addr remote;
    bool connected;
    bool receiving;       /* uv_udp_recv_start was called */
    bool closing;         /* close() or abort() asked: no more sends */
    bool writing_paused;  /* over the high mark: pause_writing() is due or was reported */
    bool pause_due;
    size_t high_water, low_water;
    char *error;          /* the first reason it closed, for connection_lost; NULL: clean */
};

enum event { EV_MADE, EV_DATAGRAM, EV_ERROR, EV_PAUSE, EV_RESUME, EV_LOST };

/* Call the instance's method for 'event' ('bytes': error_received's and
 * connection_lost's error); a failure is logged and e goes on serving. */
void endpoint_dispatch(struct endpoint *e, enum event event, const char *bytes);
/* Close now, dropping queued datagrams; 'error' (copied) goes to connection_lost. */
void endpoint_abort(struct endpoint *e, const char *error);
/* Send 'len' bytes to 'to' (NULL: the connected remote). Returns 0, or a
 * libuv error for error_received. Never raises. */
int endpoint_send(struct endpoint *e, const char *data, size_t len, const union addr *to);
/* Note crossing the high mark; endpoint_report_pause() tells the instance. */
void endpoint_check_high_water(struct endpoint *e);
/* Report a noted pause at the end of the call that caused it. */
void endpoint_report_pause(struct endpoint *e);

#endif
