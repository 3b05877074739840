/*
 * runtime.c - the Lua state: libraries, script loading, the protected call.
 * Every call from C into Lua goes through runtime_call(): a traceback handler,
 * lua_pcall, and the error handed back as C strings, with the stack restored.
 * Nothing here knows about connections; callers apply their error policy.
 */
#include "runtime.h"

#include <lauxlib.h>
#include <lualib.h>
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "context.h"
#include "log.h"
#include "stats.h"
#include "watchdog.h"

/* What the allocator and the time-limit hook need; every thread of the
 * state finds it in its extra space (new threads copy the main one's). */
struct limits_state {
    size_t used, limit;     /* bytes */
    uint64_t timeout_ns;    /* 0: no time limit */
    struct watchdog_slot watchdog; /* deadline_ns: of the outermost runtime_call running */
    int depth;              /* runtime_call nesting */
    bool timed_out;         /* the hook raised since the last failed call */
    struct loop_stats *stats; /* callback durations, with --metrics */
};

static struct limits_state *limits_of(lua_State *L)
{
    return *(struct limits_state **)lua_getextraspace(L);
}

/* lua_Alloc that counts, and refuses past the limit (Lua then collects
 * garbage and tries once more before raising a memory error). */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct limits_state *ls = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        ls->used -= old;
        return NULL;
    }
    if (ls->limit && nsize > old && ls->used + (nsize - old) > ls->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        ls->used = ls->used - old + nsize;
    return p;
}

/* The hook the watchdog arms on an overrunning Lua thread: past the
 * deadline, raise, and stay armed so that every instruction raises again:
 * a script that catches the error cannot carry on. Otherwise (the call
 * ended before the hook ran) disarm. */
static void on_overrun(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct limits_state *ls = limits_of(L);
    uint64_t deadline = atomic_load(&ls->watchdog.deadline_ns);
    if (deadline == 0 || uv_hrtime() < deadline) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    ls->timed_out = true;
    luaL_where(L, 0); /* the looping function itself (level 1 would be its caller) */
    lua_pushfstring(L, "script timeout: ran longer than %d ms (--script-timeout)", (int)(ls->timeout_ns / 1000000));
    lua_concat(L, 2);
    lua_error(L);
}

static int on_panic(lua_State *L)
{
    log_error("unprotected Lua error: %s", lua_tostring(L, -1));
    abort();
}

/* Registry keys: addresses of static variables, never strings. */
static const char context_key = 0;
static const char last_message_key = 0;

static int call_tostring(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    return 1;
}

/* The error object as text, without raising: its __tostring is called
 * protected, since the error path must end its connection whatever the
 * error value does. [-0, +1, m] */
static const char *error_text(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
        return lua_pushstring(L, lua_tostring(L, idx));
    if (luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL)
        return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
    lua_pop(L, 1);
    lua_pushcfunction(L, call_tostring);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
        return lua_tostring(L, -1);
    lua_pop(L, 1);
    return lua_pushfstring(L, "(error object is a %s value whose __tostring failed)", luaL_typename(L, idx));
}

/* Message handler: keep the bare message aside, return it with a traceback. */
static int msghandler(lua_State *L)
{
    const char *msg = error_text(L, 1);
    lua_pushstring(L, msg);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &last_message_key);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static char *copy_string(const char *s)
{
    return strdup(s ? s : "(no message)");
}

/* After a failed pcall: turn the error on the stack into C strings. [-1, +0, -] */
static void take_error(lua_State *L, int status, struct runtime_error *err)
{
    struct limits_state *ls = limits_of(L);
    if (err) {
        err->kind = status == LUA_ERRMEM ? RUNTIME_ERROR_MEMORY
                    : ls->timed_out      ? RUNTIME_ERROR_TIMEOUT
                                         : RUNTIME_ERROR_SCRIPT;
        const char *traceback = lua_tostring(L, -1);
        if (status == LUA_ERRMEM || status == LUA_ERRERR) {
            if (status == LUA_ERRMEM && ls->limit)
                traceback = "not enough memory (the --lua-memory cap may be reached)";
            err->message = copy_string(traceback);
            err->traceback = copy_string(traceback);
        } else {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &last_message_key);
            err->message = copy_string(lua_tostring(L, -1));
            err->traceback = copy_string(traceback);
            lua_pop(L, 1);
        }
    }
    ls->timed_out = false;
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &last_message_key);
}

int runtime_call(lua_State *L, lua_CFunction fn, void *ud, struct runtime_error *err)
{
    struct limits_state *ls = limits_of(L);
    /* L runs now, even when a coroutine called the C code that called us
     * (a write inside coroutine.wrap that reports pause_writing). */
    lua_State *previous = watchdog_running;
    watchdog_running = L;
    uint64_t started = 0; /* of the outermost call: the one timed */
    if (ls->depth++ == 0 && (ls->timeout_ns || ls->stats->timing)) {
        started = uv_hrtime();
        if (ls->timeout_ns)
            watchdog_call_started(&ls->watchdog, started + ls->timeout_ns);
    }
    int base = lua_gettop(L);
    lua_pushcfunction(L, msghandler); /* light C functions: */
    lua_pushcfunction(L, fn);         /* pushing them cannot fail */
    lua_pushlightuserdata(L, ud);
    int status = lua_pcall(L, 1, 0, base + 1);
    if (--ls->depth == 0) {
        if (ls->timeout_ns)
            watchdog_call_ended(&ls->watchdog);
        if (lua_gethookmask(L))
            lua_sethook(L, NULL, 0, 0); /* armed, and the call is over */
        if (ls->stats->timing)
            stats_observe(&ls->stats->callback_seconds, stats_callback_bounds, uv_hrtime() - started);
    }
    watchdog_running = previous;
    if (status != LUA_OK)
        take_error(L, status, err); /* pops the error */
    lua_pop(L, 1);                  /* the message handler */
    assert(lua_gettop(L) == base);  /* checked in debug builds, never hidden by a settop */
    return status == LUA_OK ? 0 : -1;
}

void runtime_error_free(struct runtime_error *err)
{
    free(err->message);
    free(err->traceback);
    err->message = err->traceback = NULL;
}

/* package.path = bundled files first, then Lua's default. [-0, +0, e] */
static void set_package_path(lua_State *L, const char *lua_dir)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

/* print(...) as Lua's, but each line is written whole under stdout's lock,
 * so lines printed by different workers never interleave. */
static int line_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    flockfile(stdout);
    fwrite(line, 1, len, stdout);
    fflush(stdout);
    funlockfile(stdout);
    return 0;
}

/* Call upvalue 1 with the arguments while Lua code runs in 'co', so the
 * watchdog interrupts the coroutine that loops, not the one that resumed it.
 * An error is passed on as it is (the original added the position). */
static int call_tracking(lua_State *L, lua_State *co)
{
    lua_State *previous = watchdog_running;
    watchdog_running = co;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    watchdog_running = previous;
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* coroutine.resume and coroutine.close (which runs the coroutine's pending
 * __close handlers in it), tracked. */
static int tracked_on_thread(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co != NULL, 1, "coroutine");
    return call_tracking(L, co);
}

/* What coroutine.wrap returns, tracked the same way: upvalue 1 is the
 * original wrapped function, upvalue 2 its coroutine. */
static int tracked_wrapped(lua_State *L)
{
    return call_tracking(L, lua_tothread(L, lua_upvalueindex(2)));
}

static int tracked_wrap(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);    /* the original wrapper */
    lua_getupvalue(L, -1, 1);             /* ... and its coroutine */
    lua_pushcclosure(L, tracked_wrapped, 2);
    return 1;
}

/* Replace coroutine[name] by a C closure over the original. [-0, +0, e] */
static void track(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

struct open_args {
    const char *lua_dir;
    struct loop_context *ctx;
    lua_CFunction preload;
};

static int open_libraries(lua_State *L)
{
    struct open_args *args = lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_register(L, "print", line_print);
    track(L, "resume", tracked_on_thread);
    track(L, "close", tracked_on_thread);
    track(L, "wrap", tracked_wrap);
    set_package_path(L, args->lua_dir);
    lua_pushlightuserdata(L, args->ctx);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &context_key);
    lua_pushcfunction(L, args->preload);
    lua_call(L, 0, 0);
    return 0;
}

lua_State *runtime_open(const char *lua_dir, struct loop_context *ctx, size_t memory_limit, uint64_t timeout_ms,
                        lua_CFunction preload)
{
    struct limits_state *ls = calloc(1, sizeof *ls);
    if (!ls)
        return NULL;
    ls->timeout_ns = timeout_ms * 1000000;
    ls->stats = ctx && ctx->stats ? ctx->stats : stats_here();
    lua_State *L = lua_newstate(limited_alloc, ls);
    if (!L) {
        free(ls);
        return NULL;
    }
    *(struct limits_state **)lua_getextraspace(L) = ls;
    lua_atpanic(L, on_panic);
    if (timeout_ms)
        watchdog_watch(&ls->watchdog, ls->timeout_ns, on_overrun);
    struct open_args args = {.lua_dir = lua_dir, .ctx = ctx, .preload = preload};
    if (runtime_call(L, open_libraries, &args, NULL) != 0) {
        runtime_close(L);
        return NULL;
    }
    ls->limit = memory_limit; /* capped once the libraries are in: a tiny cap still starts */
    /* Most of what a server allocates (each chunk's string) dies young: the
     * generational collector spends less on it than the incremental one
     * (measured: 16 KiB echoes, 10.3 -> 9.5 us of CPU per round trip). */
    lua_gc(L, LUA_GCGEN, 0, 0);
    return L;
}

void runtime_close(lua_State *L)
{
    struct limits_state *ls = limits_of(L);
    if (ls->timeout_ns)
        watchdog_unwatch(&ls->watchdog);
    lua_close(L);
    free(ls);
}

size_t runtime_memory(lua_State *L)
{
    return limits_of(L)->used;
}

struct loop_context *runtime_context(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &context_key);
    struct loop_context *ctx = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ctx;
}

/* Push require("luaecho.loader")[name]. [-0, +1, e] */
static void push_loader(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luaecho.loader");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* The loader is Lua (lua/luaecho/loader.lua), shared with luaecho.testing. */
void runtime_load_handler(lua_State *L, const char *path)
{
    push_loader(L, "load_file");
    lua_pushstring(L, path);
    lua_call(L, 1, 1);
}

void runtime_load_handler_buffer(lua_State *L, const char *source, size_t len, const char *chunkname)
{
    push_loader(L, "load");
    lua_pushlstring(L, source, len);
    lua_pushstring(L, chunkname);
    lua_call(L, 2, 1);
}

void runtime_add_script_dir(lua_State *L, const char *dir)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

/* os.exit() in a served handler: it would end every worker at once, and no
 * connection would get connection_lost. */
static int refused_exit(lua_State *L)
{
    return luaL_error(L, "os.exit() would end every worker at once, with no connection_lost: close the server "
                         "(transport:get_extra_info(\"server\"):close()) or send the process SIGTERM");
}

/* Is module 'name' (at idx) a file in 'dir'? [-0, +0, e] */
static bool found_in_dir(lua_State *L, int idx, const char *dir)
{
    idx = lua_absindex(L, idx);
    const char *name = lua_tostring(L, idx);
    if (strncmp(name, "luaecho", 7) == 0)
        return false; /* the host's libraries are not reloaded */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, idx);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_call(L, 2, 1);
    bool found = !lua_isnil(L, -1);
    lua_pop(L, 2);
    return found;
}

/* Move every module of 'dir' from package.loaded into the table on top
 * (or drop it, when 'keep' is false). [-0, +0, e] */
static void take_modules(lua_State *L, const char *dir, bool keep)
{
    int kept = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING && found_in_dir(L, -2, dir)) {
            if (keep) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, kept); /* kept[name] = module */
            } else {
                lua_pop(L, 1);
            }
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, -4); /* clearing a visited key is allowed during lua_next */
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

int runtime_forget_modules(lua_State *L, const char *dir)
{
    lua_newtable(L);
    take_modules(L, dir, true);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void runtime_restore_modules(lua_State *L, const char *dir, int ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    take_modules(L, dir, false); /* what the candidate loaded goes */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    while (lua_next(L, -3) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4); /* loaded[name] = module */
    }
    lua_pop(L, 2);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

void runtime_refuse_exit(lua_State *L)
{
    lua_getglobal(L, "os");
    lua_pushcfunction(L, refused_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
}
