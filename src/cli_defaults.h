/*
 * cli_defaults.h - the defaults of the command line's flags, as cli.c
 * applies them and cli_help.c prints them.
 * The numbers come from lua/luaecho/defaults.lua, through the build
 * (luaecho_defaults.h): change them there, never here, so the host, the
 * fake host and --help agree.
 */
#ifndef LUAECHO_CLI_DEFAULTS_H
#define LUAECHO_CLI_DEFAULTS_H

#include "luaecho_defaults.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT LUAECHO_DEFAULT_PORT
#define DEFAULT_SHUTDOWN_TIMEOUT (LUAECHO_DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000.0)
#define DEFAULT_TLS_HANDSHAKE_TIMEOUT (LUAECHO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS / 1000.0)
#define DEFAULT_MAX_WRITE_BUFFER ((long long)LUAECHO_DEFAULT_MAX_WRITE_BUFFER)
#define DEFAULT_SCRIPT_TIMEOUT LUAECHO_DEFAULT_SCRIPT_TIMEOUT_MS
#define DEFAULT_LUA_MEMORY LUAECHO_DEFAULT_LUA_MEMORY_MIB
#define DEFAULT_RELOAD_CHECK_TIMEOUT (LUAECHO_DEFAULT_RELOAD_CHECK_TIMEOUT_MS / 1000.0)

#endif
