/*
 * replay.h - luaecho replay DIR|FILE SCRIPT: the transcripts --record
 * wrote, replayed against SCRIPT by lua/luaecho/replay.lua on
 * luaecho.testing (no sockets, a virtual clock).
 * Relies on nothing of the serving host. Rule: it never opens a loop or a
 * socket; everything it decides is in the Lua module.
 */
#ifndef LUAECHO_REPLAY_H
#define LUAECHO_REPLAY_H

/* argv[0] is "replay"; the bundled Lua files are in lua_dir. Returns the
 * exit status: 0 all match, 1 a difference (or a failure), 2 usage. */
int replay_main(int argc, char **argv, const char *lua_dir);

#endif
