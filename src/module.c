/*
 * module.c - luaecho.core: what the host offers the Lua libraries in lua/.
 * Callback-style and never suspending: lua/luaecho/init.lua builds the
 * coroutine-friendly `luaecho` module (sleep, open_connection, ...) on it.
 */
#include "module.h"

#include <lauxlib.h>

#include "client.h"
#include "context.h"
#include "datagram.h"
#include "exit_guard.h"
#include "failure.h"
#include "log.h"
#include "runtime.h"
#include "server_object.h"
#include "timer.h"
#include "transport.h"

/* core.log(level, message): a host log line, at "error", "warn", "info" or
 * "debug". Errors (a failing streams handler or task) follow the host's
 * error policy (failure.c). */
static int core_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *message = luaL_checkstring(L, 2);
    if (level == LOG_ERROR)
        failure_log_lua(message, NULL);
    else
        log_msg((enum log_level)level, "%s", message);
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
    {"connect_unix", client_connect_unix},
    {"datagram_endpoint", datagram_endpoint},
    {"listen", server_object_listen},
    {"listen_unix", server_object_listen_unix},
    {"on_server_finished", server_object_on_finished},
    {"shutdown", core_shutdown},
    {NULL, NULL},
};

static int open_core(lua_State *L)
{
    luaL_newlib(L, core_functions);
    luaL_getmetatable(L, SERVER_METATABLE);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "server_methods"); /* for wait_closed(), written in Lua */
    lua_pop(L, 1);
    return 1;
}

int module_preload(lua_State *L)
{
    transport_register(L);
    datagram_register(L);
    server_object_register(L);
    timer_register(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "luaecho.core");
    lua_pop(L, 1);
    return 0;
}
