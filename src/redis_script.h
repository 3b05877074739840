/*
 * redis_script.h - Redis for Lua, callback-style: core.redis_connect(url
 * [, on_state [, on_message [, max_pending]]]) -> a client userdata with
 * call(fn, ...), subscribe(name, is_pattern), unsubscribe, close, is_up,
 * pending. lua/luaecho/redis.lua builds luaecho.redis on it.
 */
#ifndef LUAECHO_REDIS_SCRIPT_H
#define LUAECHO_REDIS_SCRIPT_H

#include <lua.h>

#define REDIS_METATABLE "luaecho.redis_conn"

/* The metatable and the weak table of clients, once per state. [-0, +0, e] */
void redis_script_register(lua_State *L);
/* core.redis_connect(url [, on_state [, on_message [, max_pending]]]) ->
 * client, or nil, message for a bad URL. [-(1..4), +(1|2), e] */
int redis_script_connect(lua_State *L);

#endif
