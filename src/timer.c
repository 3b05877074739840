/*
 * timer.c - Lua timers on uv_timer_t.
 * A pending timer keeps its function and its handle object referenced, so a
 * script may drop the handle and still get its call. A timer fires once,
 * then closes; cancel() closes it early. Memory goes in on_closed() only.
 */
#include "timer.h"

#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "context.h"
#include "failure.h"
#include "log.h"
#include "runtime.h"

struct timer;

/* What Lua holds; 'timer' is cleared when the timer closes. */
struct timer_box {
    struct timer *timer;
    bool cancelled;
};

struct timer {
    uv_timer_t handle;
    lua_State *L;
    struct timer_box *box;
    int fn_ref;
    int box_ref;
    struct timer *prev, *next; /* in 'open_timers' */
};

/* This thread's timers not yet closed (one loop per thread), so teardown
 * can close those still pending: a loop closes only with no handle open. */
static _Thread_local struct timer *open_timers;

static void on_closed(uv_handle_t *handle)
{
    struct timer *t = handle->data;
    if (t->prev)
        t->prev->next = t->next;
    else
        open_timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->box->timer = NULL;
    luaL_unref(t->L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(t->L, LUA_REGISTRYINDEX, t->box_ref);
    free(t);
}

static void close_timer(struct timer *t)
{
    if (!uv_is_closing((uv_handle_t *)&t->handle))
        uv_close((uv_handle_t *)&t->handle, on_closed);
}

static int call_function(lua_State *L)
{
    struct timer *t = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    lua_call(L, 0, 0);
    return 0;
}

/* A failing callback is logged with its traceback; nothing else is touched. */
static void on_fire(uv_timer_t *handle)
{
    struct timer *t = handle->data;
    struct runtime_error err;
    if (runtime_call(t->L, call_function, t, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "timer callback"});
    close_timer(t);
}

int timer_start(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, isfinite(seconds) && seconds >= 0 && seconds < 1e9, 1, "seconds must be a number >= 0");
    struct loop_context *ctx = runtime_context(L);
    struct timer_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = (struct timer_box){0};
    luaL_setmetatable(L, TIMER_METATABLE);
    /* What can raise comes first: nothing of C's is allocated yet. */
    lua_pushvalue(L, 2);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    int box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct timer *t = calloc(1, sizeof *t);
    if (!t) {
        luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, box_ref);
        return luaL_error(L, "out of memory for a timer");
    }
    uv_timer_init(ctx->loop, &t->handle);
    t->handle.data = t;
    t->L = ctx->L; /* the main thread: never a coroutine kept for later */
    t->box = box;
    t->fn_ref = fn_ref;
    t->box_ref = box_ref;
    t->next = open_timers;
    if (open_timers)
        open_timers->prev = t;
    open_timers = t;
    box->timer = t;
    uv_update_time(ctx->loop); /* count from now, not from the start of this loop turn */
    uv_timer_start(&t->handle, on_fire, (uint64_t)ceil(seconds * 1000), 0);
    if (ctx->shutting_down)
        uv_unref((uv_handle_t *)&t->handle);
    return 1;
}

/* handle:cancel(): the function will not be called. No-op once it was. */
static int timer_cancel(lua_State *L)
{
    struct timer_box *box = luaL_checkudata(L, 1, TIMER_METATABLE);
    if (box->timer) {
        box->cancelled = true;
        uv_timer_stop(&box->timer->handle);
        close_timer(box->timer);
    }
    return 0;
}

/* handle:cancelled() -> true after cancel() stopped it. */
static int timer_cancelled(lua_State *L)
{
    struct timer_box *box = luaL_checkudata(L, 1, TIMER_METATABLE);
    lua_pushboolean(L, box->cancelled);
    return 1;
}

void timer_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"cancel", timer_cancel},
        {"cancelled", timer_cancelled},
        {NULL, NULL},
    };
    luaL_newmetatable(L, TIMER_METATABLE);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

static void unref_timer(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (handle->type == UV_TIMER)
        uv_unref(handle);
}

void timer_unref_all(uv_loop_t *loop)
{
    uv_walk(loop, unref_timer, NULL);
}

void timer_close_all(void)
{
    for (struct timer *t = open_timers; t; t = t->next)
        close_timer(t); /* unlinked later, in on_closed */
}
