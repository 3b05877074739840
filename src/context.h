/*
 * context.h - what every file on one loop may read about that loop: one
 * small struct, as luv's luv_ctx_t. The host fills it in and is the only
 * file that writes it; the files below the host read it (through
 * runtime_context() when all they have is a lua_State) and reach back up
 * only through the hook it carries. Lists kept here are owned and written
 * by their own files (conn.c, server.c), through their functions.
 */
#ifndef LUAECHO_CONTEXT_H
#define LUAECHO_CONTEXT_H

#include <lua.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct conn_list;
struct server_list;
struct endpoint_list;
struct tls_server;
struct recorder;

struct loop_context {
    uv_loop_t *loop;
    lua_State *L;                /* the state's main thread: never a coroutine kept for later */
    int worker_id;               /* 1..N with --workers, else 1 */
    bool shutting_down;
    struct conn_list *conns;     /* every connection of the loop, for shutdown */
    struct server_list *servers; /* every server of the loop, for shutdown */
    struct endpoint_list *endpoints; /* every UDP endpoint of the loop, for shutdown */
    /* --max-connections counts the whole process: the count of accepted
     * connections open, shared by every worker, and the cap (0: none). */
    atomic_size_t *accepted;
    size_t max_connections;
    struct loop_stats *stats;    /* what /metrics and the console read (stats.h) */
    struct tls_server *tls;      /* the --tls-cert pairs (start_tls's default); NULL: none */
    uint64_t tls_timeout_ms;     /* --tls-handshake-timeout */
    struct recorder *recorder;   /* --record DIR (process-wide, record_dir.h); NULL: off */
    /* Given from above: shut the loop down as SIGTERM does (a script's
     * luaecho.core.shutdown). */
    void (*shutdown)(struct loop_context *ctx, const char *why);
};

#endif
