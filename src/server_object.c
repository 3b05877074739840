/*
 * server_object.c - the server as Lua sees it (asyncio's Server).
 * One userdata per server, created on first use and kept in the registry
 * for the server's lifetime, so every get_extra_info("server") is the same
 * object and can be compared or used as a table key.
 */
#include "server_object.h"

#include <lauxlib.h>

#include "addr.h"
#include "server.h"

struct server_box {
    struct server *server;
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

/* server:sockname() -> host, port (nil once closed). */
static int server_object_sockname(lua_State *L)
{
    struct server *s = check_server(L);
    union addr a;
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
    union addr a;
    char text[ADDR_STRLEN];
    if (!s->closed && server_sockname(s, &a) == 0)
        lua_pushfstring(L, "luaecho.server (%s)", addr_format(&a, text, sizeof text));
    else
        lua_pushliteral(L, "luaecho.server (closed)");
    return 1;
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
    luaL_newlib(L, server_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_object_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

void server_object_push(lua_State *L, struct server *s)
{
    if (s->object_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->object_ref);
        return;
    }
    struct server_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->server = s;
    luaL_setmetatable(L, SERVER_METATABLE);
    lua_pushvalue(L, -1);
    s->object_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
