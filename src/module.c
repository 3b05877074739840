/*
 * module.c - luaecho.core: what the host offers the Lua libraries in lua/.
 * Callback-style and never suspending: lua/luaecho/init.lua builds the
 * coroutine-friendly `luaecho` module (sleep, open_connection, ...) on it.
 */
#include "module.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "channel_script.h"
#include "client.h"
#include "context.h"
#include "datagram.h"
#include "datagram_open.h"
#include "exit_guard.h"
#include "failure.h"
#include "log.h"
#include "protocol.h"
#include "redis_script.h"
#include "runtime.h"
#include "script_metrics.h"
#include "server_object.h"
#include "timer.h"
#include "transport.h"

#define LOG_FIELDS_MAX 32

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct log_extra *)a)->key, ((const struct log_extra *)b)->key);
}

/* The fields table at 'arg' read into 'out' (sorted by key, so that a
 * line reads the same each time); raises naming the bad key or value. The
 * strings stay valid while the table is on the stack. */
static size_t read_fields(lua_State *L, int arg, struct log_extra *out)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return (size_t)luaL_argerror(
                L, arg, lua_pushfstring(L, "fields' keys must be strings, not a %s", luaL_typename(L, -2)));
        const char *key = lua_tostring(L, -2);
        if (n == LOG_FIELDS_MAX)
            return (size_t)luaL_argerror(L, arg, lua_pushfstring(L, "more than %d fields", LOG_FIELDS_MAX));
        out[n] = (struct log_extra){.key = key};
        if (lua_type(L, -1) == LUA_TSTRING)
            out[n].string = lua_tostring(L, -1);
        else if (lua_isinteger(L, -1))
            out[n].integer = lua_tointeger(L, -1), out[n].is_integer = true;
        else if (lua_type(L, -1) == LUA_TNUMBER)
            out[n].number = lua_tonumber(L, -1);
        else
            return (size_t)luaL_argerror(
                L, arg,
                lua_pushfstring(L, "field '%s' must be a string or a number, not a %s", key, luaL_typename(L, -1)));
        n++;
        lua_pop(L, 1);
    }
    qsort(out, n, sizeof *out, by_key);
    return n;
}

/* core.log(level, message [, fields]): a host log line, at "error",
 * "warn", "info" or "debug", with a table of string or number fields
 * (members of the JSON object; " key=value" after the text line). Errors
 * (a failing streams handler or task) follow the host's error policy
 * (failure.c). */
static int core_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *message = luaL_checkstring(L, 2);
    struct log_extra extra[LOG_FIELDS_MAX];
    struct log_fields fields = {.extra = extra};
    if (!lua_isnoneornil(L, 3))
        fields.extra_count = read_fields(L, 3, extra);
    if (level == LOG_ERROR) {
        failure_log_lua(message, &fields);
        return 0;
    }
    const char *stack = strstr(message, "\nstack traceback:"); /* its own field, as for errors */
    if (stack)
        fields.traceback = stack + 1;
    int len = stack ? (int)(stack - message) : (int)strlen(message);
    log_with((enum log_level)level, &fields, "%.*s", len, message);
    return 0;
}

/* core.now(): monotonic seconds, as asyncio's loop.time(). */
static int core_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
    return 1;
}

/* core.shutdown(why): what SIGTERM does. */
static int core_shutdown(lua_State *L)
{
    const char *why = luaL_checkstring(L, 1);
    struct loop_context *ctx = runtime_context(L);
    if (!ctx->shutting_down) {
        ctx->shutdown(ctx, why);
        exit_guard_shutdown_begun("the script asked to shut down");
    }
    return 0;
}

static const luaL_Reg core_functions[] = {
    {"log", core_log},
    {"now", core_now},
    {"timer", timer_start},
    {"connect", client_connect},
    {"connect_tls", client_connect_tls},
    {"connect_unix", client_connect_unix},
    {"datagram_endpoint", datagram_endpoint},
    {"listen", server_object_listen},
    {"listen_unix", server_object_listen_unix},
    {"on_server_finished", server_object_on_finished},
    {"shutdown", core_shutdown},
    {"redis_connect", redis_script_connect},
    {NULL, NULL},
};

static int open_core(lua_State *L)
{
    luaL_newlib(L, core_functions);
    luaL_getmetatable(L, SERVER_METATABLE);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "server_methods"); /* for wait_closed(), written in Lua */
    lua_pop(L, 1);
    script_metrics_register(L, -1);
    channel_script_register(L, -1);
    return 1;
}

int module_preload(lua_State *L)
{
    transport_register(L);
    protocol_register_hooks();
    datagram_register(L);
    server_object_register(L);
    timer_register(L);
    redis_script_register(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "luaecho.core");
    lua_pop(L, 1);
    return 0;
}
