/*
 * timer.h - one-shot timers for Lua: core.timer(seconds, fn) -> handle.
 */
#ifndef LUAECHO_TIMER_H
#define LUAECHO_TIMER_H

#include <lua.h>
#include <uv.h>

#define TIMER_METATABLE "luaecho.timer"

/* Create the metatable once per state. [-0, +0, e] */
void timer_register(lua_State *L);
/* core.timer(seconds, fn): call fn() once after 'seconds'. [-2, +1, e] */
int timer_start(lua_State *L);
/* Let the loop end while Lua timers are pending (shutdown). */
void timer_unref_all(uv_loop_t *loop);
/* Close every timer of this thread's loop still pending (teardown): their
 * functions are not called. */
void timer_close_all(void);

#endif
