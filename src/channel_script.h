/*
 * channel_script.h - luaecho.channel as the Lua state of one loop sees it:
 * core.channel_publish, core.channel_subscribe (a subscription object with
 * close()) and core.channel_redis_url, on the hub (channel_hub.h). One per
 * loop, kept by the loop's thread. Subscriptions belong to the script
 * generation in force when they were made; reload.c says when one begins,
 * commits or is discarded.
 */
#ifndef LUAECHO_CHANNEL_SCRIPT_H
#define LUAECHO_CHANNEL_SCRIPT_H

#include <lua.h>

#include "context.h"

#define CHANNEL_SUBSCRIPTION_METATABLE "luaecho.channel_subscription"

/* This thread's loop joins the hub (after its Lua state is open, before a
 * script loads). Returns 0, or -1 out of memory. */
int channel_script_open(struct loop_context *ctx);
/* Leave the hub and close the handles (before the loop is run dry). */
void channel_script_close(void);
/* Put the channel_* functions in the table at 'index' (luaecho.core) and
 * make the subscription metatable. [-0, +0, e] */
void channel_script_register(lua_State *L, int index);
/* A reload loads new code: what it subscribes belongs to the next
 * generation (begin to loaded); then it is committed (the next generation
 * runs: what its upgrade() subscribes is its own) or discarded (its
 * subscriptions are closed). */
void channel_script_reload_begin(void);
void channel_script_reload_loaded(void);
void channel_script_reload_commit(void);
void channel_script_reload_discard(void);

#endif
