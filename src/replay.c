/*
 * replay.c - the replay command's C side: a plain Lua state (the standard
 * libraries, the bundled Lua files on package.path), in which
 * luaecho.replay's main() does everything and returns the exit status.
 * Relies on lua/luaecho/replay.lua and luaecho.testing, which installs its
 * own fake luaecho.core: no loop, no socket, no thread here. Rule: the
 * state is this command's alone, never a serving host's.
 */
#include "replay.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime.h"

/* A traceback for an error that escaped main(). [-1, +1, m] */
static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* CPU seconds after which Lua code raises (0: never), set per connection
 * by luaecho.replay through limit_cpu(). */
static double cpu_deadline;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The count hook: a C hook, so every coroutine made after it was set
 * (streams handlers, tasks) inherits it, which debug.sethook's do not. */
static void cpu_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (cpu_deadline > 0 && cpu_now() > cpu_deadline)
        luaL_error(L, "luaecho replay: the script ran past its CPU limit on this connection");
}

/* limit_cpu(seconds): Lua code raises once this much more CPU is spent;
 * 0 lifts the limit. */
static int limit_cpu(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    cpu_deadline = seconds > 0 ? cpu_now() + seconds : 0;
    return 0;
}

/* list_dir(path) -> the names in it ending in .rec (unsorted); or nil, why,
 * true when path is not a directory (a file, then); or nil, why. */
static int list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(e));
        lua_pushboolean(L, e == ENOTDIR);
        return 3;
    }
    lua_newtable(L);
    int n = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len > 4 && entry->d_name[0] != '.' && strcmp(entry->d_name + len - 4, ".rec") == 0) {
            lua_pushstring(L, entry->d_name); /* may raise: the DIR leaks then, and the process ends */
            lua_rawseti(L, -2, ++n);
        }
    }
    closedir(d);
    return 1;
}

/* require("luaecho.replay").main(argv[1..]) -> exit status. Protected. */
static int run_main(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    const char *lua_dir = lua_touserdata(L, 3);
    runtime_add_script_dir(L, lua_dir); /* package.path: the bundled libraries first */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luaecho.replay");
    lua_call(L, 1, 1);
    lua_pushcfunction(L, list_dir);
    lua_setfield(L, -2, "list_dir");
    lua_pushcfunction(L, limit_cpu);
    lua_setfield(L, -2, "limit_cpu");
    lua_getfield(L, -1, "main");
    luaL_checkstack(L, argc, "too many arguments"); /* a glob of transcripts can be thousands */
    for (int i = 1; i < argc; i++)
        lua_pushstring(L, argv[i]);
    lua_call(L, argc - 1, 1);
    return 1;
}

int replay_main(int argc, char **argv, const char *lua_dir)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "luaecho: replay: cannot start Lua: out of memory\n");
        return 1;
    }
    luaL_openlibs(L);
    lua_sethook(L, cpu_hook, LUA_MASKCOUNT, 10000);
    lua_pushcfunction(L, traceback);
    lua_pushcfunction(L, run_main);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    lua_pushlightuserdata(L, (void *)lua_dir);
    int rc = 1;
    if (lua_pcall(L, 3, 1, 1) != LUA_OK)
        fprintf(stderr, "luaecho: replay failed: %s\n", lua_tostring(L, -1));
    else if (lua_isinteger(L, -1))
        rc = (int)lua_tointeger(L, -1);
    fflush(stdout);
    lua_close(L);
    return rc;
}
