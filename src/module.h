/*
 * module.h - luaecho.core, the host's functions for Lua libraries.
 */
#ifndef LUAECHO_MODULE_H
#define LUAECHO_MODULE_H

#include <lua.h>

/* Register luaecho.core in package.preload and the host's metatables.
 * A lua_CFunction, for runtime_open(). [-0, +0, e] */
int module_preload(lua_State *L);

#endif
