/*
 * module.h - luaecho.core, the host's functions for Lua libraries.
 */
#ifndef LUAECHO_MODULE_H
#define LUAECHO_MODULE_H

#include <lua.h>

/* Register luaecho.core in package.preload and the host's metatables. [-0, +0, e] */
void module_preload(lua_State *L);

#endif
