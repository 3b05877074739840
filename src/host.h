/*
 * host.h - one loop and everything on it: the Lua state, the servers, the
 * connections, the signals, and the order things shut down in.
 */
#ifndef LUAECHO_HOST_H
#define LUAECHO_HOST_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conn.h"

struct server;

struct host {
    uv_loop_t loop;
    lua_State *L;
    struct conn_list conns;
    struct server *servers;
    uv_signal_t sigint, sigterm;
    uv_timer_t shutdown_timer;
    uint64_t shutdown_timeout_ms;
    bool shutting_down;
};

/* Set up the loop, the Lua state (bundled Lua files in lua_dir) and the
 * signal handlers. Returns 0, or -1 after logging why. */
int host_init(struct host *h, const char *lua_dir, double shutdown_timeout);
/* Run until nothing is left: the servers closed and the connections gone. */
void host_run(struct host *h);
/* Stop accepting, flush and close every connection; abort what is still
 * open after the shutdown timeout. */
void host_shutdown(struct host *h, const char *why);
/* Close whatever is left, the loop, then the Lua state. */
void host_destroy(struct host *h);

#endif
