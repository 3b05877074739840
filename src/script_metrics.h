/*
 * script_metrics.h - the metrics scripts make with `require
 * "luaecho.metrics"`: counters, gauges and histograms with labels, kept
 * in C for the whole process (every worker's series side by side, each
 * with its 'worker' label) so the coordinator renders them while the
 * workers serve, and so they survive a reload. A family is made under a
 * lock; a value is written only by the worker that owns its series,
 * with relaxed atomics, and read by the coordinator the same way.
 */
#ifndef LUAECHO_SCRIPT_METRICS_H
#define LUAECHO_SCRIPT_METRICS_H

#include <lua.h>

#include "text_buf.h"

/* Add the primitives lua/luaecho/metrics.lua builds on to the table at
 * 'index' (luaecho.core). The worker a series belongs to is the state's
 * loop context's worker_id. */
void script_metrics_register(lua_State *L, int index);
/* Append every script family, all workers' series, in the exposition
 * format (exposition.h). Safe on any thread, while workers write. */
void script_metrics_render(struct text_buf *out);
/* Free every family and series, at exit: once no worker runs Lua any more
 * and nothing renders (after the workers are joined and the metrics
 * endpoint is closed). Handles given out before are invalid after. */
void script_metrics_free(void);

#endif
