/*
 * workers.h - serving with N worker threads, each with its own loop, Lua
 * state and copy of the script, listening on one address (SO_REUSEPORT).
 * The main thread coordinates: start-up, hot swap, and waiting for the end.
 */
#ifndef LUAECHO_WORKERS_H
#define LUAECHO_WORKERS_H

#include "cli.h"
#include "host.h"

/* Serve 'script' with 'count' workers until they have all finished.
 * Returns the process exit code: 0, or 1 when start-up failed. */
int workers_serve(const struct cli_options *o, const char *lua_dir, const char *script,
                  const struct limits *limits, int count);

#endif
