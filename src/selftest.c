/*
 * selftest.c - a candidate script looked at in a throwaway Lua state:
 * loaded under luaecho.testing, its selftest(testing) run, the modules it
 * required from its directory listed.
 * Relies on runtime.c for the state (memory cap, time limit, the one
 * protected call) and on lua/luaecho/testing.lua, which installs the fake
 * luaecho.core: that is why this cannot happen in a serving state, whose
 * luaecho.core is the host's (testing refuses to load there).
 * Rule: the state lives and dies inside selftest_run; nothing of it is
 * kept, so a selftest can neither harm nor help what serves.
 */
#include "selftest.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

struct look {
    const struct selftest_input *in;
    struct selftest_result *out;
    int protocol_ref;
    bool passed;
};

/* No luaecho.core of the host here: luaecho.testing installs its own. */
static int preload_nothing(lua_State *L)
{
    (void)L;
    return 0;
}

/* A candidate's top level already prints in every worker: not again. */
static int print_nothing(lua_State *L)
{
    (void)L;
    return 0;
}

/* require(name). [-0, +1, e] */
static void require(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
}

/* package.preload["luaecho.core"]: luaecho.testing's fake, installed by
 * requiring luaecho.testing. */
static int preload_fake_core(lua_State *L)
{
    require(L, "luaecho.testing");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "luaecho.core");
    return 1;
}

/* setmetatable(object, mt), without marking the object for finalization.
 * The look's state is closed where no guard can stop a __gc that never
 * returns (Lua runs finalizers with hooks off, so --script-timeout cannot
 * either): at start-up, before any worker serves, or on the thread pool.
 * A look needs no finalizer. Lua marks an object for one only when its
 * metatable has __gc at the time of setmetatable, so __gc is hidden for
 * that call and put back. Upvalue 1: the real setmetatable. */
static int setmetatable_unfinalized(lua_State *L)
{
    lua_settop(L, 2);
    int gc = LUA_TNIL;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        gc = lua_rawget(L, 2); /* [3] */
        lua_pushliteral(L, "__gc");
        lua_pushnil(L);
        lua_rawset(L, 2);
    } else {
        lua_pushnil(L);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    int rc = lua_pcall(L, 2, 1, 0); /* [4]: the object, or the error */
    if (gc != LUA_TNIL) {
        lua_pushliteral(L, "__gc");
        lua_pushvalue(L, 3);
        lua_rawset(L, 2); /* its slot is still there: no allocation */
    }
    return rc == LUA_OK ? 1 : lua_error(L);
}

/* Load the candidate as the host does and keep its Protocol in the
 * registry. luaecho.testing loads only when something asks for
 * luaecho.core, or for the selftest: most scripts without one need
 * neither, and start-up stays fast. Protected. */
static int load_candidate(lua_State *L)
{
    struct look *look = lua_touserdata(L, 1);
    runtime_add_script_dir(L, look->in->script_dir);
    runtime_refuse_exit(L);
    lua_pushcfunction(L, print_nothing);
    lua_setglobal(L, "print");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, setmetatable_unfinalized, 1);
    lua_setglobal(L, "setmetatable");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, preload_fake_core);
    lua_setfield(L, -2, "luaecho.core");
    lua_pop(L, 2);
    runtime_load_handler_buffer(L, look->in->source, look->in->len, look->in->chunkname);
    look->protocol_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Protocol.selftest(testing): passed unless it returns false. Protected;
 * an error raised by the selftest is the caller's to report. */
static int call_selftest(lua_State *L)
{
    struct look *look = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, look->protocol_ref);
    if (lua_getfield(L, -1, "selftest") != LUA_TFUNCTION) {
        look->out->verdict = SELFTEST_NONE;
        return 0;
    }
    require(L, "luaecho.testing");
    lua_call(L, 1, 1);
    look->passed = !(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    look->out->verdict = look->passed ? SELFTEST_PASSED : SELFTEST_FAILED;
    return 0;
}

/* Add a copy of the string on top to out->modules (dropped when out of
 * memory: a module not followed is not a failure). [-1, +0, -] */
static void add_module(lua_State *L, struct selftest_result *out)
{
    char **bigger = realloc(out->modules, (out->module_count + 1) * sizeof *bigger);
    char *copy = strdup(lua_tostring(L, -1));
    if (bigger)
        out->modules = bigger;
    if (bigger && copy)
        out->modules[out->module_count++] = copy;
    else
        free(copy);
    lua_pop(L, 1);
}

/* The file of every module in package.loaded found in the script's
 * directory (or below it), luaecho's own libraries excepted. Protected. */
static int list_modules(lua_State *L)
{
    struct look *look = lua_touserdata(L, 1);
    const char *dir = look->in->script_dir;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || strncmp(lua_tostring(L, -1), "luaecho", 7) == 0)
            continue;
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "searchpath");
        lua_pushvalue(L, -3);
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
        lua_call(L, 2, 1);
        if (lua_isstring(L, -1))
            add_module(L, look->out);
        else
            lua_pop(L, 1);
        lua_pop(L, 1); /* package */
    }
    lua_pop(L, 1);
    return 0;
}

/* Move a failed call's message into out->message, prefixed. */
static void take_error(struct selftest_result *out, struct runtime_error *err, const char *prefix)
{
    size_t len = strlen(prefix) + strlen(err->message) + 1;
    out->message = malloc(len);
    if (out->message)
        snprintf(out->message, len, "%s%s", prefix, err->message);
    runtime_error_free(err);
}

void selftest_run(const struct selftest_input *in, struct selftest_result *out)
{
    *out = (struct selftest_result){.verdict = SELFTEST_NOT_LOADED};
    struct look look = {.in = in, .out = out, .protocol_ref = LUA_NOREF};
    lua_State *L = runtime_open(in->lua_dir, NULL, in->memory_limit, in->timeout_ms, preload_nothing);
    if (!L) {
        out->message = strdup("out of memory");
        return;
    }
    struct runtime_error err;
    if (runtime_call(L, load_candidate, &look, &err) != 0) {
        take_error(out, &err, "");
    } else if (runtime_call(L, call_selftest, &look, &err) != 0) {
        out->verdict = SELFTEST_FAILED;
        take_error(out, &err, "");
    } else if (out->verdict == SELFTEST_FAILED) {
        out->message = strdup("selftest(testing) returned false");
    }
    if (runtime_call(L, list_modules, &look, &err) != 0)
        runtime_error_free(&err);
    runtime_close(L);
}

void selftest_free(struct selftest_result *r)
{
    for (size_t i = 0; i < r->module_count; i++)
        free(r->modules[i]);
    free(r->modules);
    free(r->message);
    *r = (struct selftest_result){0};
}
