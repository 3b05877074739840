/*
 * drain.h - reload_policy = "drain" on one loop: the connections its
 * servers accepted that run an older generation than the one drained to
 * are closed gracefully (close(): the queue flushed, then the FIN) once
 * their write buffer is empty and they have been idle for a second, and
 * at the latest when drain_timeout has passed; each gets connection_lost.
 * Relies on conn.c's idle clock and protocol.c's generation of each
 * connection. Rule: it only ever asks for a close, from its own timer,
 * never from inside a callback of the connection it closes.
 */
#ifndef LUAECHO_DRAIN_H
#define LUAECHO_DRAIN_H

#include <uv.h>

#include "conn.h"

struct drain;

/* A drain for the connections of 'conns', on 'loop' (NULL: out of memory). */
struct drain *drain_new(uv_loop_t *loop, struct conn_list *conns);
/* Drain the connections of generations before 'generation' within
 * 'timeout' seconds (a drain under way is replaced: the newer one covers
 * every older generation). */
void drain_start(struct drain *d, int generation, double timeout);
/* Stop and free it (its memory goes in the timer's close callback). */
void drain_free(struct drain *d);

#endif
