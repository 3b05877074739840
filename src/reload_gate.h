/*
 * reload_gate.h - what a candidate script must pass before the workers
 * are asked to load it: its selftest(testing), run once in a state of its
 * own on libuv's thread pool, then --reload-check CMD, on the
 * coordinator's loop. Neither makes a serving loop wait. The look at the
 * candidate also tells --watch which modules it required.
 * At start-up only the selftest runs, at once, before any worker starts.
 */
#ifndef LUAECHO_RELOAD_GATE_H
#define LUAECHO_RELOAD_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "cli.h"
#include "reload.h"
#include "reload_check.h"
#include "selftest.h"

/* ok, or false and why the candidate was rejected. */
typedef void (*reload_gate_cb)(void *data, bool ok, const char *message);

struct reload_gate {
    uv_loop_t *loop;
    const struct cli_options *options; /* --reload-check, its timeout, --script-timeout, --lua-memory */
    const char *script;
    struct reload_trigger *trigger;    /* told the modules to follow */
    struct selftest_input input;
    struct selftest_result result;
    uv_work_t work;
    struct reload_check check;
    bool busy, cancelled;
    reload_gate_cb done;
    void *data;
};

void reload_gate_init(struct reload_gate *gate, uv_loop_t *loop, const struct cli_options *o, const char *lua_dir,
                      const char *script, const char *script_dir, const char *chunkname,
                      struct reload_trigger *trigger, reload_gate_cb done, void *data);
/* Judge the candidate 'source' (kept alive by the caller until done()).
 * done() is called once, later, on the loop. */
void reload_gate_start(struct reload_gate *gate, const char *source, size_t len);
/* Start-up: run the script's selftest now. Returns 0, or -1 after
 * logging why the script may not serve. */
int reload_gate_at_start(struct reload_gate *gate, const char *source, size_t len);
/* Shutting down: stop a check under way (it ends rejected). */
void reload_gate_cancel(struct reload_gate *gate);

#endif
