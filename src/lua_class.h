/*
 * lua_class.h - userdata classes whose methods check 'self' cheaply.
 * Every method of such a class holds the class's metatable as its first
 * upvalue, so checking its first argument is a pointer comparison. Rule:
 * a function that checks self with lua_class_check must be registered by
 * lua_class_register (it reads upvalue 1).
 */
#ifndef LUAECHO_LUA_CLASS_H
#define LUAECHO_LUA_CLASS_H

#include <lauxlib.h>
#include <lua.h>

/* Create the metatable 'name' (as luaL_newmetatable: luaL_setmetatable and
 * luaL_checkudata work with it too), its __index table of 'methods' and its
 * __tostring, each closing over the metatable. [-0, +0, m] */
void lua_class_register(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction tostring);
/* The userdata at index 1 when its metatable is this method's class, else
 * the error luaL_checkudata raises ("bad argument #1 to 'write' (name
 * expected, got ...)"). [-0, +0, v] */
void *lua_class_check(lua_State *L, const char *name);

#endif
