/*
 * server_object.c - the server as Lua sees it (asyncio's Server).
 * One userdata per server, created on first use and kept in the registry
 * for the server's lifetime, so every get_extra_info("server") is the same
 * object and can be compared or used as a table key.
 */
#include "server_object.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "context.h"
#include "failure.h"
#include "log.h"
#include "runtime.h"
#include "server.h"

struct server_box {
    struct server *server;
    int waiters_ref; /* functions to call once closed and idle, LUA_NOREF: none */
};

static struct server *check_server(lua_State *L)
{
    return ((struct server_box *)luaL_checkudata(L, 1, SERVER_METATABLE))->server;
}

/* server:close(): stop accepting; open connections go on. */
static int server_object_close(lua_State *L)
{
    server_close(check_server(L));
    return 0;
}

/* server:sockname() -> host, port, or a Unix socket's path (nil once closed). */
static int server_object_sockname(lua_State *L)
{
    struct server *s = check_server(L);
    union addr a;
    if (!s->closed && s->kind == CONN_UNIX) {
        lua_pushstring(L, server_listener(s) + strlen("unix:"));
        return 1;
    }
    if (s->closed || server_sockname(s, &a) != 0) {
        lua_pushnil(L);
        return 1;
    }
    char host[ADDR_STRLEN];
    int port = addr_host_port(&a, host, sizeof host);
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 2;
}

/* server:is_serving() -> false once closed. */
static int server_object_is_serving(lua_State *L)
{
    lua_pushboolean(L, !check_server(L)->closed);
    return 1;
}

static int server_object_tostring(lua_State *L)
{
    struct server *s = check_server(L);
    if (!s->closed)
        lua_pushfstring(L, "luaecho.server (%s)", server_listener(s));
    else
        lua_pushliteral(L, "luaecho.server (closed)");
    return 1;
}

int server_object_on_finished(lua_State *L)
{
    struct server_box *box = luaL_checkudata(L, 1, SERVER_METATABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (server_is_finished(box->server)) {
        lua_settop(L, 2);
        lua_call(L, 0, 0);
        return 0;
    }
    if (box->waiters_ref == LUA_NOREF) {
        lua_newtable(L);
        box->waiters_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->waiters_ref);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* Call and forget every waiter (they wake tasks; they do not fail). */
static int notify_waiters(lua_State *L)
{
    struct server_box *box = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, box->waiters_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, box->waiters_ref);
    box->waiters_ref = LUA_NOREF;
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        lua_call(L, 0, 0);
    }
    return 0;
}

/* The server is closed and idle: wake what waits for it (server.c's hook). */
static void on_finished(struct server *s, void *data)
{
    struct server_box *box = data;
    if (box->waiters_ref == LUA_NOREF)
        return;
    struct runtime_error err;
    if (runtime_call(s->ctx->L, notify_waiters, box, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "wait_closed"});
}

static const luaL_Reg server_methods[] = {
    {"close", server_object_close},
    {"sockname", server_object_sockname},
    {"is_serving", server_object_is_serving},
    {NULL, NULL},
};

void server_object_register(lua_State *L)
{
    luaL_newmetatable(L, SERVER_METATABLE);
    luaL_newlib(L, server_methods); /* luaecho's Lua side adds wait_closed() */
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_object_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

void server_object_new(lua_State *L, struct server *s)
{
    struct server_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = (struct server_box){.server = s, .waiters_ref = LUA_NOREF};
    luaL_setmetatable(L, SERVER_METATABLE);
    server_set_object(s, luaL_ref(L, LUA_REGISTRYINDEX)); /* kept for the server's life */
    server_set_on_finished(s, on_finished, box);
}

/* Push the Lua object of s. [-0, +1, -] */
static void push_object(lua_State *L, struct server *s)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->owner.server_ref);
}

/* A listen waiting for its name lookup; holds the Protocol and the callback. */
struct listen_job {
    lua_State *L;
    int protocol_ref;
    int callback_ref;
    int port;
    int status;
    const union addr *addr;
    char host_name[];
};

/* Make the server and listen, then callback(server) or callback(nil, message). */
static int listen_and_deliver(lua_State *L)
{
    struct listen_job *job = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->callback_ref);
    if (job->status != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot resolve %s port %d: %s", job->host_name, job->port, uv_strerror(job->status));
        lua_call(L, 2, 0);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->protocol_ref);
    struct server *s = server_new(runtime_context(L), L);
    server_object_new(L, s);
    int rc = server_listen(s, job->addr, false);
    if (rc != 0) {
        char text[ADDR_STRLEN];
        server_close(s);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot listen on %s: %s", addr_format(job->addr, text, sizeof text), uv_strerror(rc));
    } else {
        push_object(L, s);
        lua_pushnil(L);
    }
    lua_call(L, 2, 0);
    return 0;
}

static void on_listen_resolved(void *data, int status, const union addr *addr)
{
    struct listen_job *job = data;
    job->status = status;
    job->addr = addr;
    struct runtime_error err;
    if (runtime_call(job->L, listen_and_deliver, job, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "listen callback"});
    luaL_unref(job->L, LUA_REGISTRYINDEX, job->protocol_ref);
    luaL_unref(job->L, LUA_REGISTRYINDEX, job->callback_ref);
    free(job);
}

int server_object_listen(lua_State *L)
{
    size_t host_len;
    const char *host = luaL_checklstring(L, 1, &host_len);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port must be 0 to 65535");
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    /* What can raise comes first: nothing of C's is allocated yet. */
    lua_settop(L, 4);
    int callback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int protocol_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct listen_job *job = calloc(1, sizeof *job + host_len + 1);
    if (!job) {
        luaL_unref(L, LUA_REGISTRYINDEX, callback_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, protocol_ref);
        return luaL_error(L, "out of memory for a server");
    }
    memcpy(job->host_name, host, host_len + 1);
    job->L = runtime_context(L)->L; /* the main thread: never a coroutine kept for later */
    job->port = (int)port;
    job->callback_ref = callback_ref;
    job->protocol_ref = protocol_ref;
    int rc = addr_resolve(runtime_context(L)->loop, host, (int)port, on_listen_resolved, job);
    if (rc != 0)
        on_listen_resolved(job, rc, NULL);
    return 0;
}

int server_object_listen_unix(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && strlen(path) == len, 1, "path must be a non-empty string without NUL bytes");
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    struct server *s = server_new(runtime_context(L), L); /* pops the Protocol */
    server_object_new(L, s);
    int rc = server_listen_unix(s, path, -1);
    if (rc != 0) {
        server_close(s);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot listen on unix:%s: %s%s", path, uv_strerror(rc), server_unix_hint(rc));
        return 2;
    }
    push_object(L, s);
    return 1;
}
