/*
 * datagram_open.c - core.datagram_endpoint(): a UDP endpoint a script makes
 * (luaecho.create_datagram_endpoint): resolve its addresses without
 * blocking, bind, connect to the remote when given, start it, and report
 * to a Lua callback exactly once, as client.c does for core.connect().
 */
#include "datagram_open.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "context.h"
#include "datagram.h"
#include "failure.h"
#include "runtime.h"

/* A pending core.datagram_endpoint(): its Lua values by registry reference
 * until it reports, successful or not, exactly once. */
struct endpoint_job {
    lua_State *L;
    struct loop_context *ctx;
    int protocol_ref;
    int callback_ref;
    const char *local_host, *remote_host; /* in 'names'; NULL: not given */
    int local_port, remote_port;
    union addr local, remote;
    struct endpoint *endpoint; /* once created */
    const char *failure;       /* what went wrong, for the callback */
    char *reason;              /* why, when it is not a libuv error (malloc'd) */
    const char *failed_host;
    int failed_port;
    int status;
    char names[];
};

/* callback(transport, instance) or callback(nil, "cannot ..."). */
static int deliver(lua_State *L)
{
    struct endpoint_job *job = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->callback_ref);
    if (job->endpoint) {
        endpoint_push(L, job->endpoint);
    } else {
        lua_pushnil(L);
        if (job->reason)
            lua_pushfstring(L, "%s: %s", job->failure, job->reason);
        else if (job->failed_host)
            lua_pushfstring(L, "%s %s port %d: %s", job->failure, job->failed_host, job->failed_port,
                            uv_strerror(job->status));
        else
            lua_pushfstring(L, "%s: %s", job->failure, uv_strerror(job->status));
    }
    lua_call(L, 2, 0);
    return 0;
}

static void finish(struct endpoint_job *job)
{
    struct runtime_error err;
    if (runtime_call(job->L, deliver, job, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "datagram endpoint callback"});
    luaL_unref(job->L, LUA_REGISTRYINDEX, job->protocol_ref);
    luaL_unref(job->L, LUA_REGISTRYINDEX, job->callback_ref);
    free(job->reason);
    free(job);
}

static void fail(struct endpoint_job *job, const char *what, const char *host, int port, int status)
{
    job->failure = what;
    job->failed_host = host;
    job->failed_port = port;
    job->status = status;
    finish(job);
}

static int create_endpoint(lua_State *L)
{
    struct endpoint_job *job = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->protocol_ref);
    job->endpoint = endpoint_new(job->ctx, L, "luaecho.create_datagram_endpoint()");
    return 0;
}

/* Both addresses known: create, bind, connect, start, report. */
static void open_endpoint(struct endpoint_job *job)
{
    if (job->ctx->shutting_down) {
        fail(job, "cannot create a datagram endpoint", NULL, 0, UV_ECANCELED);
        return;
    }
    struct runtime_error err;
    if (runtime_call(job->L, create_endpoint, job, &err) != 0) {
        job->reason = strdup(err.message); /* NULL: said as "not enough memory" */
        runtime_error_free(&err);
        fail(job, "cannot create a datagram endpoint", NULL, 0, UV_ENOMEM);
        return;
    }
    struct endpoint *e = job->endpoint;
    job->endpoint = NULL; /* until it is started: the callback gets nil */
    if (!job->local_host) { /* the wildcard of the remote's family, any port */
        memset(&job->local, 0, sizeof job->local);
        if (job->remote.sa.sa_family == AF_INET6)
            uv_ip6_addr("::", 0, &job->local.in6);
        else
            uv_ip4_addr("0.0.0.0", 0, &job->local.in);
    }
    int rc = endpoint_bind(e, &job->local, false);
    if (rc != 0) {
        endpoint_close(e);
        fail(job, "cannot bind to", job->local_host ? job->local_host : "the wildcard address",
             job->local_host ? job->local_port : 0, rc);
        return;
    }
    if (job->remote_host) {
        rc = endpoint_connect(e, &job->remote);
        if (rc != 0) {
            endpoint_close(e);
            fail(job, "cannot connect to", job->remote_host, job->remote_port, rc);
            return;
        }
    }
    endpoint_start(e);
    job->endpoint = e;
    finish(job);
}

static void on_remote_resolved(void *data, int status, const union addr *addr)
{
    struct endpoint_job *job = data;
    if (status != 0) {
        fail(job, "cannot resolve", job->remote_host, job->remote_port, status);
        return;
    }
    job->remote = *addr;
    open_endpoint(job);
}

static void resolve_remote(struct endpoint_job *job)
{
    if (!job->remote_host) {
        open_endpoint(job);
        return;
    }
    int rc = addr_resolve(job->ctx->loop, job->remote_host, job->remote_port, on_remote_resolved, job);
    if (rc != 0)
        fail(job, "cannot resolve", job->remote_host, job->remote_port, rc);
}

static void on_local_resolved(void *data, int status, const union addr *addr)
{
    struct endpoint_job *job = data;
    if (status != 0) {
        fail(job, "cannot resolve", job->local_host, job->local_port, status);
        return;
    }
    job->local = *addr;
    resolve_remote(job);
}

/* An optional host at 'idx' (nil or a string). [-0, +0, e] */
static const char *opt_host(lua_State *L, int idx, size_t *len)
{
    *len = 0;
    return lua_isnoneornil(L, idx) ? NULL : luaL_checklstring(L, idx, len);
}

int datagram_endpoint(lua_State *L)
{
    size_t local_len, remote_len;
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *local_host = opt_host(L, 2, &local_len);
    lua_Integer local_port = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, local_port >= 0 && local_port <= 65535, 3, "port must be 0 to 65535");
    const char *remote_host = opt_host(L, 4, &remote_len);
    lua_Integer remote_port = luaL_optinteger(L, 5, 0);
    if (remote_host)
        luaL_argcheck(L, remote_port > 0 && remote_port <= 65535, 5, "port must be 1 to 65535");
    luaL_checktype(L, 6, LUA_TFUNCTION);
    if (!local_host && !remote_host)
        return luaL_error(L, "luaecho.create_datagram_endpoint(): give a local address, a remote one, or both");
    endpoint_check_protocol(L, 1, "luaecho.create_datagram_endpoint()", "the");
    /* What can raise comes first: nothing of C's is allocated yet. */
    lua_settop(L, 6);
    int callback_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the callback */
    lua_pushvalue(L, 1);
    int protocol_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct endpoint_job *job = calloc(1, sizeof *job + local_len + 1 + remote_len + 1);
    if (!job) {
        luaL_unref(L, LUA_REGISTRYINDEX, protocol_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, callback_ref);
        return luaL_error(L, "out of memory for a datagram endpoint");
    }
    if (local_host) {
        memcpy(job->names, local_host, local_len + 1);
        job->local_host = job->names;
    }
    if (remote_host) {
        memcpy(job->names + local_len + 1, remote_host, remote_len + 1);
        job->remote_host = job->names + local_len + 1;
    }
    job->ctx = runtime_context(L);
    job->L = job->ctx->L; /* the main thread: never a coroutine kept for later */
    job->local_port = (int)local_port;
    job->remote_port = (int)remote_port;
    job->protocol_ref = protocol_ref;
    job->callback_ref = callback_ref;
    if (!local_host) {
        resolve_remote(job);
        return 0;
    }
    int rc = addr_resolve(job->ctx->loop, local_host, (int)local_port, on_local_resolved, job);
    if (rc != 0)
        fail(job, "cannot resolve", job->local_host, job->local_port, rc);
    return 0;
}
