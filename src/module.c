/*
 * module.c - luaecho.core: what the host offers the Lua libraries in lua/.
 * Handler scripts use the friendlier `luaecho` module built on it.
 */
#include "module.h"

#include <lauxlib.h>

#include "log.h"
#include "server_object.h"
#include "transport.h"

/* core.log(level, message): a host log line, at "error", "warn", "info" or "debug". */
static int core_log(lua_State *L)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *message = luaL_checkstring(L, 2);
    log_msg((enum log_level)level, "%s", message);
    return 0;
}

static const luaL_Reg core_functions[] = {
    {"log", core_log},
    {NULL, NULL},
};

static int open_core(lua_State *L)
{
    luaL_newlib(L, core_functions);
    return 1;
}

void module_preload(lua_State *L)
{
    transport_register(L);
    server_object_register(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "luaecho.core");
    lua_pop(L, 1);
}
