/*
 * tls_script.c - see tls_script.h.
 */
#include "tls_script.h"

#include <lauxlib.h>
#include <string.h>

#include "tls_filter.h"

static const char cache_key = 'k';

/* The registry's table of loaded settings, by key, on the stack. [-0, +1, e] */
static void push_cache(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
}

struct boxed {
    struct tls_client *client;
    struct tls_server *server;
};

static int boxed_gc(lua_State *L)
{
    struct boxed *b = lua_touserdata(L, 1);
    tls_client_free(b->client);
    tls_server_free(b->server);
    b->client = NULL;
    b->server = NULL;
    return 0;
}

/* The cached box under 'key', or a new empty one stored there. [-0, +0, e] */
static struct boxed *boxed(lua_State *L, const char *key, bool *fresh)
{
    push_cache(L);
    if (lua_getfield(L, -1, key) == LUA_TUSERDATA) {
        struct boxed *b = lua_touserdata(L, -1);
        lua_pop(L, 2);
        *fresh = false;
        return b;
    }
    lua_pop(L, 1);
    struct boxed *b = lua_newuserdatauv(L, sizeof *b, 0);
    *b = (struct boxed){0};
    if (luaL_newmetatable(L, "luaecho.tls_settings")) {
        lua_pushcfunction(L, boxed_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, key);
    lua_pop(L, 1);
    *fresh = true;
    return b;
}

static const char *opt_string(lua_State *L, int index, const char *name)
{
    lua_getfield(L, index, name);
    const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "start_tls(): %s must be a string", name);
    lua_pop(L, 1); /* still anchored by the options table */
    return s;
}

struct tls_client *tls_script_client(lua_State *L, int index)
{
    index = lua_absindex(L, index);
    const char *ca = opt_string(L, index, "ca");
    const char *alpn = opt_string(L, index, "alpn");
    lua_getfield(L, index, "verify");
    bool verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_pushfstring(L, "client\n%s\n%s\n%s", ca ? ca : "", verify ? "1" : "0", alpn ? alpn : "");
    bool fresh;
    struct boxed *b = boxed(L, lua_tostring(L, -1), &fresh);
    lua_pop(L, 1);
    if (b->client)
        return b->client;
    char error[512];
    b->client = tls_client_new(&(struct tls_client_config){.ca = ca, .verify = verify, .alpn = alpn}, error,
                               sizeof error);
    if (!b->client)
        luaL_error(L, "%s", error);
    return b->client;
}

struct tls_server *tls_script_server(lua_State *L, const char *cert, const char *key)
{
    lua_pushfstring(L, "server\n%s\n%s", cert, key);
    bool fresh;
    struct boxed *b = boxed(L, lua_tostring(L, -1), &fresh);
    lua_pop(L, 1);
    if (b->server)
        return b->server;
    struct tls_server_config cfg = {.certs = {cert}, .keys = {key}, .pairs = 1};
    char error[512];
    b->server = tls_server_new(&cfg, error, sizeof error);
    if (!b->server)
        luaL_error(L, "%s", error);
    return b->server;
}

static void set_string(lua_State *L, const char *name, const char *value)
{
    if (value && *value) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
}

int tls_script_push_info(lua_State *L, struct conn *c)
{
    struct tls_info info;
    if (!c || !tls_filter_info(c, &info)) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 6);
    set_string(L, "version", info.version);
    set_string(L, "cipher", info.cipher);
    set_string(L, "server_name", info.server_name);
    set_string(L, "alpn", info.alpn);
    set_string(L, "peer_subject", info.peer_subject);
    lua_pushboolean(L, info.peer_verified);
    lua_setfield(L, -2, "peer_verified");
    return 1;
}
