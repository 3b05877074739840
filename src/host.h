/*
 * host.h - one loop and everything on it: the Lua state, the servers, the
 * connections, the signals, and the order things shut down in.
 */
#ifndef LUAECHO_HOST_H
#define LUAECHO_HOST_H

#include <lua.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "context.h"
#include "datagram.h"
#include "exit_guard.h"
#include "server.h"

/* Every limit, each with a flag (see cli_defaults.h for the defaults). 0: off. */
struct limits {
    size_t max_connections;      /* open at once; over it, accepted and closed at once */
    uint64_t idle_timeout_ms;    /* no traffic either way for this long: closed */
    size_t max_write_buffer;     /* bytes queued on one connection: past it, aborted */
    uint64_t script_timeout_ms;  /* one callback or resumption running longer: interrupted */
    size_t lua_memory;           /* bytes the Lua state may hold */
    uint64_t shutdown_timeout_ms;
    struct recorder *recorder;   /* --record DIR, shared by every worker; NULL: off (given with the limits) */
};

struct host {
    uv_loop_t loop;
    lua_State *L;
    struct loop_context ctx;     /* what the files below read; written here only */
    atomic_size_t own_accepted;  /* accepted connections open, when no group shares a count */
    struct conn_list conns;
    struct server_list servers;
    struct endpoint_list endpoints; /* UDP endpoints (datagram.c) */
    struct limits limits;
    struct signal_inbox signals; /* SIGINT/SIGTERM relayed by the exit guard (luaecho run) */
    bool listening_for_signals;
    uv_timer_t shutdown_timer;
    uv_timer_t idle_sweep;       /* runs only with an idle timeout */
    uv_tcp_t reserve_probe;      /* see open_libuv_reserve() */
    bool last_to_exit;           /* its teardown ends the process (not a worker's) */
    struct loop_stats stats;     /* what /metrics reads (stats.h) */
    uv_timer_t probe;            /* with --metrics: loop lag, idle time, Lua memory */
    uint64_t probe_due;          /* uv_hrtime() the probe should fire at */
};

/* Set up the loop, its context and the Lua state (bundled Lua files in
 * lua_dir); signals come later, through host_listen_for_signals() or the
 * coordinator. 'worker_id' and 'accepted' (the process-wide count of
 * accepted connections; NULL: the host's own) go into its context.
 * Returns 0, or -1 after logging why. */
int host_init(struct host *h, const char *lua_dir, const struct limits *limits, int worker_id,
              atomic_size_t *accepted);
/* Shut down on the first SIGINT/SIGTERM (relayed by the exit guard, which
 * hears them all, from process start), abort every connection on the
 * next. For the host that owns the process (luaecho run); the workers'
 * hosts hear them from their coordinator through host_signal(). */
void host_listen_for_signals(struct host *h);
/* The 'nth' signal 'name' reached this host. */
void host_signal(struct host *h, const char *name, int nth);
/* With --metrics: time callbacks, and measure the loop's lag (the delay
 * of a periodic timer), its idle time and the Lua state's memory. Before
 * host_run. */
void host_start_probe(struct host *h);
/* The certificates start_tls() uses by default (the loop keeps no
 * reference: the caller keeps 'tls' alive while it is set). */
void host_set_tls(struct host *h, struct tls_server *tls, uint64_t timeout_ms);
/* Run until nothing is left: the servers closed and the connections gone. */
void host_run(struct host *h);
/* Stop accepting, flush and close every connection; abort what is still
 * open after the shutdown timeout. */
void host_shutdown(struct host *h, const char *why);
/* After closing the process's SIGHUP handle (hot swap): libuv then puts
 * back the default action, and a SIGHUP in the last moments would kill a
 * process on its way out with status 0. SIGINT and SIGTERM need nothing:
 * the exit guard's handles never close, so a signal during teardown still
 * reaches it (and its deadline), even while lua_close runs finalizers. */
void host_ignore_late_sighup(void);
/* Close whatever is left, the loop, then the Lua state. */
void host_destroy(struct host *h);

#endif
