/*
 * replay.h - luaecho replay DIR|FILE SCRIPT: the transcripts --record
 * wrote, replayed against SCRIPT by lua/luaecho/replay.lua on
 * luaecho.testing (no sockets, a virtual clock).
 */
#ifndef LUAECHO_REPLAY_H
#define LUAECHO_REPLAY_H

/* argv[0] is "replay"; the bundled Lua files are in lua_dir. Returns the
 * exit status: 0 all match, 1 a difference (or a failure), 2 usage. */
int replay_main(int argc, char **argv, const char *lua_dir);

#endif
