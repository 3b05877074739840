/*
 * host.c - the loop of one thread and its shutdown order.
 * The signal inbox (luaecho run) and the timers are unreferenced, so the loop ends by
 * itself once no server listens and no connection is open. Teardown follows
 * libuv's rule: close every handle, run the loop dry, close the loop, and
 * only then close the Lua state.
 */
#include "host.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "channel_script.h"
#include "log.h"
#include "exit_guard.h"
#include "log_window.h"
#include "redis_conn.h"
#include "module.h"
#include "runtime.h"
#include "server.h"
#include "timer.h"

void host_signal(struct host *h, const char *name, int nth)
{
    if (nth == 1 && !h->ctx.shutting_down) {
        host_shutdown(h, name);
        return;
    }
    if (nth == 1)
        return;
    log_warn("%s again: aborting %zu open connection(s) now", name, h->conns.count);
    conn_list_abort_all(&h->conns, "aborted: server shutting down");
}

static void on_signal(const char *name, int nth, void *data)
{
    host_signal(data, name, nth);
}

void host_listen_for_signals(struct host *h)
{
    exit_guard_listen(&h->signals, &h->loop, on_signal, h);
    h->listening_for_signals = true;
}

/* Process-wide: at most one line a second, whichever worker logs. */
static struct log_rate idle_rate;

/* Close idle connections; runs a few times per timeout period. */
static void on_idle_sweep(uv_timer_t *timer)
{
    struct host *h = timer->data;
    conn_list_expire_idle(&h->conns, h->limits.idle_timeout_ms, &idle_rate);
}

static void start_idle_sweep(struct host *h)
{
    uv_timer_init(&h->loop, &h->idle_sweep);
    h->idle_sweep.data = h;
    uint64_t timeout = h->limits.idle_timeout_ms;
    if (timeout == 0)
        return;
    /* A connection is closed between timeout and timeout + period. */
    uint64_t period = timeout / 10 < 10 ? 10 : timeout / 10 > 1000 ? 1000 : timeout / 10;
    uv_timer_start(&h->idle_sweep, on_idle_sweep, period, period);
    uv_unref((uv_handle_t *)&h->idle_sweep);
}

/* libuv keeps one descriptor in reserve per loop, opened with its first
 * stream. Open it now, so the count of open descriptors is the same from
 * start-up on (specs compare it before and after connections). */
static void open_libuv_reserve(struct host *h)
{
    uv_tcp_init(&h->loop, &h->reserve_probe);
    uv_close((uv_handle_t *)&h->reserve_probe, NULL);
}

static void shutdown_hook(struct loop_context *ctx, const char *why)
{
    host_shutdown(ctx->loop->data, why);
}

int host_init(struct host *h, const char *lua_dir, const struct limits *limits, int worker_id,
              atomic_size_t *accepted)
{
    memset(h, 0, sizeof *h);
    int rc = uv_loop_init(&h->loop);
    if (rc != 0) {
        log_error("cannot start the event loop: %s", uv_strerror(rc));
        return -1;
    }
    h->loop.data = h;
    h->last_to_exit = true;
    atomic_init(&h->own_accepted, 0);
    h->limits = *limits;
    stats_bind(&h->stats);
    conn_list_init(&h->conns, &h->loop, limits->max_write_buffer, &h->stats);
    h->ctx = (struct loop_context){
        .stats = &h->stats,
        .loop = &h->loop,
        .worker_id = worker_id,
        .conns = &h->conns,
        .servers = &h->servers,
        .endpoints = &h->endpoints,
        .accepted = accepted ? accepted : &h->own_accepted,
        .max_connections = limits->max_connections,
        .shutdown = shutdown_hook,
    };
    h->L = runtime_open(lua_dir, &h->ctx, limits->lua_memory, limits->script_timeout_ms, module_preload);
    h->ctx.L = h->L;
    if (!h->L) {
        log_error("cannot start Lua: out of memory");
        uv_loop_close(&h->loop);
        return -1;
    }
    if (channel_script_open(&h->ctx) != 0) {
        log_error("cannot start Lua: out of memory");
        runtime_close(h->L);
        uv_loop_close(&h->loop);
        return -1;
    }
    open_libuv_reserve(h);
    uv_timer_init(&h->loop, &h->shutdown_timer);
    h->shutdown_timer.data = h;
    uv_timer_init(&h->loop, &h->probe);
    h->probe.data = h;
    start_idle_sweep(h);
    return 0;
}

/* How often the probe looks: the finest lag it sees is this late. */
#define PROBE_MS 100

static void on_probe(uv_timer_t *timer)
{
    struct host *h = timer->data;
    uint64_t now = uv_hrtime();
    stats_observe(&h->stats.loop_lag, stats_lag_bounds, now > h->probe_due ? now - h->probe_due : 0);
    h->probe_due = now + PROBE_MS * 1000000;
    stat_set(&h->stats.idle_ns, uv_metrics_idle_time(&h->loop));
    stat_set(&h->stats.lua_bytes, runtime_memory(h->L));
}

void host_start_probe(struct host *h)
{
    h->stats.timing = true;
    uv_loop_configure(&h->loop, UV_METRICS_IDLE_TIME);
    stat_set(&h->stats.lua_bytes, runtime_memory(h->L));
    h->probe_due = uv_hrtime() + PROBE_MS * 1000000;
    uv_timer_start(&h->probe, on_probe, PROBE_MS, PROBE_MS);
    uv_unref((uv_handle_t *)&h->probe);
}

void host_set_tls(struct host *h, struct tls_server *tls, uint64_t timeout_ms)
{
    h->ctx.tls = tls;
    h->ctx.tls_timeout_ms = timeout_ms;
}

void host_run(struct host *h)
{
    uv_run(&h->loop, UV_RUN_DEFAULT);
}

static void on_shutdown_timeout(uv_timer_t *timer)
{
    struct host *h = timer->data;
    if (h->conns.count == 0)
        return;
    log_warn("shutdown timeout: aborting %zu connection(s) that did not close in time", h->conns.count);
    conn_list_abort_all(&h->conns, "aborted: shutdown timeout");
}

/* Workers all shut down on the same signal: say so once per process. */
static atomic_bool shutdown_logged;

void host_shutdown(struct host *h, const char *why)
{
    h->ctx.shutting_down = true;
    if (!atomic_exchange(&shutdown_logged, true))
        log_info("shutting down (%s)", why);
    if (h->conns.count > 0)
        log_debug("closing %zu open connection(s); they have %g s to finish", h->conns.count,
                 (double)h->limits.shutdown_timeout_ms / 1000);
    server_close_all(&h->servers);
    endpoint_close_all(&h->endpoints);
    conn_list_close_all(&h->conns);
    timer_unref_all(&h->loop); /* pending Lua timers no longer keep us alive */
    redis_conn_shutdown_all();  /* nor Redis subscriptions (a pending reply still does) */
    uv_timer_start(&h->shutdown_timer, on_shutdown_timeout, h->limits.shutdown_timeout_ms, 0);
    uv_unref((uv_handle_t *)&h->shutdown_timer);
}

static void close_handle(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

void host_ignore_late_sighup(void)
{
    signal(SIGHUP, SIG_IGN);
}

void host_destroy(struct host *h)
{
    server_close_all(&h->servers);
    conn_list_abort_all(&h->conns, "aborted: server stopped");
    endpoint_close_all(&h->endpoints);
    if (h->listening_for_signals)
        exit_guard_unlisten(&h->signals);
    if (h->last_to_exit)
        host_ignore_late_sighup();
    close_handle((uv_handle_t *)&h->shutdown_timer);
    close_handle((uv_handle_t *)&h->idle_sweep);
    close_handle((uv_handle_t *)&h->probe);
    timer_close_all();
    channel_script_close();
    redis_conn_close_all();
    conn_list_close(&h->conns);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&h->loop) != 0)
        log_debug("the event loop still had open handles at exit");
    runtime_close(h->L);
    server_free_all(&h->servers);
    if (h->last_to_exit)
        log_window_flush(true);
}
