/*
 * client.c - core.connect(): resolve, connect, hand the connection to a
 * Protocol exactly as an accepted one is, and report to a Lua callback.
 * A pending connect holds its Lua values by registry reference until it
 * reports, successful or not, exactly once.
 */
#include "client.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "conn.h"
#include "context.h"
#include "failure.h"
#include "log.h"
#include "protocol.h"
#include "runtime.h"
#include "tls_filter.h"
#include "tls_script.h"

struct connect_job {
    lua_State *L;
    struct loop_context *ctx;
    struct protocol_class protocol;
    int callback_ref;
    int port;
    struct conn *conn;    /* once connected */
    const char *failure;  /* what went wrong, for the callback */
    int status;
    char *message;        /* NULL, or what went wrong, whole (a TLS handshake's failure) */
    struct tls_client *tls; /* TLS over the connection (the state's cache owns it); NULL: none */
    char *server_hostname;  /* for SNI and the certificate check */
    char host_name[];
};

/* callback(transport, instance) or callback(nil, "cannot connect ..."). */
static int deliver(lua_State *L)
{
    struct connect_job *job = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->callback_ref);
    if (job->conn) {
        protocol_push(L, job->conn);
    } else {
        lua_pushnil(L);
        if (job->message)
            lua_pushstring(L, job->message);
        else if (job->port < 0) /* a Unix socket's path */
            lua_pushfstring(L, "%s unix:%s: %s", job->failure, job->host_name, uv_strerror(job->status));
        else
            lua_pushfstring(L, "%s %s port %d: %s", job->failure, job->host_name, job->port,
                            uv_strerror(job->status));
    }
    lua_call(L, 2, 0);
    return 0;
}

static void finish(struct connect_job *job)
{
    struct runtime_error err;
    if (runtime_call(job->L, deliver, job, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "connect callback"});
    protocol_class_release(job->L, &job->protocol);
    luaL_unref(job->L, LUA_REGISTRYINDEX, job->callback_ref);
    free(job->message);
    free(job->server_hostname);
    free(job);
}

static void fail(struct connect_job *job, const char *what, int status)
{
    job->failure = what;
    job->status = status;
    finish(job);
}

/* The TLS handshake is over: serve the connection, or report why not
 * (the filter then aborts it: no instance, nothing reaches Lua). */
static void on_tls_done(struct conn *c, const char *error, void *data)
{
    struct connect_job *job = data;
    if (error) {
        size_t size = strlen(error) + strlen(job->host_name) + 64;
        job->message = malloc(size);
        if (job->message)
            snprintf(job->message, size, "TLS handshake with %s port %d failed: %s", job->host_name, job->port,
                     error);
        fail(job, "cannot connect to", UV_EPROTO);
        return;
    }
    job->conn = c;
    protocol_connection_made(c, &job->protocol);
    finish(job);
}

static void on_connected(struct conn *c, int status, void *data)
{
    struct connect_job *job = data;
    if (status != 0) {
        conn_abort(c, NULL); /* no instance yet: nothing reaches Lua */
        fail(job, "cannot connect to", status);
        return;
    }
    if (job->tls) {
        uint64_t timeout = job->ctx->tls_timeout_ms ? job->ctx->tls_timeout_ms
                                                    : LUAECHO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS;
        if (tls_filter_start(c, tls_client_ssl(job->tls, job->server_hostname), NULL, timeout, on_tls_done, job) !=
            0) {
            conn_abort(c, NULL);
            fail(job, "cannot connect to", UV_ENOMEM);
            return;
        }
        conn_start(c); /* the server's answers */
        return;
    }
    job->conn = c;
    protocol_connection_made(c, &job->protocol);
    finish(job);
}

static void on_resolved(void *data, int status, const union addr *addr)
{
    struct connect_job *job = data;
    if (status != 0) {
        fail(job, "cannot resolve", status);
        return;
    }
    struct conn *c = conn_new(job->ctx->loop, job->ctx->conns, &protocol_events, protocol_conn_size, CONN_TCP);
    if (!c) {
        fail(job, "cannot connect to", UV_ENOMEM);
        return;
    }
    protocol_attach(c, job->L, NULL);
    status = conn_connect(c, addr, on_connected, job);
    if (status != 0) {
        conn_abort(c, NULL);
        fail(job, "cannot connect to", status);
    }
}

/* The job of a connect: the Protocol and the callback, arguments 'arg'
 * and 'arg' + 1 (the last two, popped), and 'name'. Raises before C
 * allocates. */
static struct connect_job *new_job(lua_State *L, int arg, const char *name, size_t name_len, int port)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    luaL_checktype(L, arg + 1, LUA_TFUNCTION);
    lua_settop(L, arg + 1);
    int callback_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the callback */
    struct protocol_class protocol;
    protocol_class_init(L, &protocol);                 /* pops the Protocol */
    struct connect_job *job = calloc(1, sizeof *job + name_len + 1);
    if (!job) {
        protocol_class_release(L, &protocol);
        luaL_unref(L, LUA_REGISTRYINDEX, callback_ref);
        luaL_error(L, "out of memory for a connection");
        return NULL;
    }
    memcpy(job->host_name, name, name_len + 1);
    job->ctx = runtime_context(L);
    job->L = job->ctx->L; /* the main thread: never a coroutine kept for later */
    job->port = port;
    job->callback_ref = callback_ref;
    job->protocol = protocol;
    return job;
}

int client_connect(lua_State *L)
{
    size_t host_len;
    const char *host = luaL_checklstring(L, 1, &host_len);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port > 0 && port <= 65535, 2, "port must be 1 to 65535");
    struct connect_job *job = new_job(L, 3, host, host_len, (int)port);
    int rc = addr_resolve(job->ctx->loop, host, (int)port, on_resolved, job);
    if (rc != 0)
        fail(job, "cannot resolve", rc);
    return 0;
}

int client_connect_tls(lua_State *L)
{
    size_t host_len;
    const char *host = luaL_checklstring(L, 1, &host_len);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port > 0 && port <= 65535, 2, "port must be 1 to 65535");
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TFUNCTION);
    struct tls_client *tls = tls_script_client(L, 3); /* raises before anything is allocated */
    lua_getfield(L, 3, "server_hostname");
    char *server_hostname = strdup(lua_isstring(L, -1) ? lua_tostring(L, -1) : host);
    lua_pop(L, 1);
    lua_remove(L, 3);
    if (!server_hostname)
        return luaL_error(L, "out of memory for a connection");
    struct connect_job *job = new_job(L, 3, host, host_len, (int)port); /* the types are checked: only OOM raises */
    job->tls = tls;
    job->server_hostname = server_hostname;
    int rc = addr_resolve(job->ctx->loop, host, (int)port, on_resolved, job);
    if (rc != 0)
        fail(job, "cannot resolve", rc);
    return 0;
}

int client_connect_unix(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && strlen(path) == len, 1, "path must be a non-empty string without NUL bytes");
    luaL_argcheck(L, len < 108, 1, "a Unix socket path has at most 107 bytes");
    struct connect_job *job = new_job(L, 2, path, len, -1);
    struct conn *c = conn_new(job->ctx->loop, job->ctx->conns, &protocol_events, protocol_conn_size, CONN_UNIX);
    if (!c) {
        fail(job, "cannot connect to", UV_ENOMEM);
        return 0;
    }
    protocol_attach(c, job->L, NULL);
    int rc = conn_connect_unix(c, path, on_connected, job);
    if (rc != 0) {
        conn_abort(c, NULL);
        fail(job, "cannot connect to", rc);
    }
    return 0;
}
