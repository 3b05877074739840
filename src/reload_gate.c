/*
 * reload_gate.c - the checks a candidate passes before the workers load it:
 * the selftest (selftest.c, on libuv's thread pool), then --reload-check
 * (reload_check.c, a child process watched from the coordinator's loop).
 * Relies on the coordinator keeping the candidate's text alive until
 * done(), and on reload.c's trigger to follow the modules the look found.
 * Rule: a candidate that does not load under luaecho.testing is not
 * rejected here: the workers load it next and report the load error as
 * such ("failed"), so only a check's own verdict is a rejection.
 * The look runs a script's top level once more, in a state of its own, so
 * it happens only when something needs it: --watch (to learn the modules)
 * or a script whose text names a selftest.
 */
#define _GNU_SOURCE /* memmem */
#include "reload_gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void reload_gate_init(struct reload_gate *gate, uv_loop_t *loop, const struct cli_options *o, const char *lua_dir,
                      const char *script, const char *script_dir, const char *chunkname,
                      struct reload_trigger *trigger, reload_gate_cb done, void *data)
{
    /* A selftest is bounded by --script-timeout, or when that is off by
     * --reload-check-timeout: a reload must end. */
    uint64_t timeout_ms = o->script_timeout > 0 ? (uint64_t)o->script_timeout
                                                : (uint64_t)(o->reload_check_timeout * 1000 + 0.5);
    *gate = (struct reload_gate){
        .loop = loop, .options = o, .script = script, .trigger = trigger, .done = done, .data = data,
        .input = {.lua_dir = lua_dir, .script_dir = script_dir, .chunkname = chunkname, .timeout_ms = timeout_ms,
                  .memory_limit = (size_t)o->lua_memory * 1024 * 1024},
    };
}

static void finish(struct reload_gate *gate, bool ok, const char *message)
{
    gate->busy = false;
    gate->done(gate->data, ok, message);
}

static void on_checked(void *data, bool ok, const char *message)
{
    finish(data, ok, message);
}

/* Does the candidate need the look? Without --watch only a selftest does,
 * and a script that has one says so in its text. */
static bool look_needed(const struct reload_gate *gate, const char *source, size_t len)
{
    return gate->options->watch || memmem(source, len, "selftest", strlen("selftest")) != NULL;
}

/* Past the selftest: run --reload-check, or pass. */
static void run_check(struct reload_gate *gate)
{
    const char *cmd = gate->options->reload_check;
    if (!cmd) {
        finish(gate, true, NULL);
        return;
    }
    log_info("running --reload-check on %s", gate->script);
    reload_check_start(&gate->check, gate->loop, cmd, gate->options->reload_check_timeout, gate->script,
                       gate->input.source, gate->input.len, on_checked, gate);
}

static void run_selftest(uv_work_t *work)
{
    struct reload_gate *gate = work->data;
    selftest_run(&gate->input, &gate->result);
}

/* The selftest's verdict: reject, or go on to --reload-check. */
static void after_selftest(uv_work_t *work, int status)
{
    struct reload_gate *gate = work->data;
    (void)status;
    struct selftest_result *r = &gate->result;
    reload_trigger_watch_modules(gate->trigger, r->modules, r->module_count, r->verdict != SELFTEST_NOT_LOADED);
    char message[8192];
    bool failed = r->verdict == SELFTEST_FAILED;
    if (failed)
        snprintf(message, sizeof message, "selftest failed: %s", r->message ? r->message : "out of memory");
    else if (r->verdict == SELFTEST_PASSED)
        log_info("selftest of %s passed", gate->script);
    else if (r->verdict == SELFTEST_NOT_LOADED)
        log_debug("no selftest: %s does not load under luaecho.testing: %s", gate->script,
                  r->message ? r->message : "out of memory");
    selftest_free(r);
    if (failed || gate->cancelled) {
        finish(gate, false, failed ? message : "reload check stopped: shutting down");
        return;
    }
    run_check(gate);
}

void reload_gate_start(struct reload_gate *gate, const char *source, size_t len)
{
    gate->busy = true;
    gate->cancelled = false;
    gate->input.source = source;
    gate->input.len = len;
    if (!look_needed(gate, source, len)) {
        run_check(gate);
        return;
    }
    gate->work.data = gate;
    int rc = uv_queue_work(gate->loop, &gate->work, run_selftest, after_selftest);
    if (rc != 0) {
        log_error("cannot run the selftest: %s", uv_strerror(rc));
        gate->result = (struct selftest_result){.verdict = SELFTEST_NOT_LOADED};
        after_selftest(&gate->work, rc);
    }
}

int reload_gate_at_start(struct reload_gate *gate, const char *source, size_t len)
{
    if (!look_needed(gate, source, len))
        return 0;
    gate->input.source = source;
    gate->input.len = len;
    uint64_t started = uv_hrtime();
    selftest_run(&gate->input, &gate->result);
    log_debug("looked at %s under luaecho.testing in %.1f ms", gate->script, (double)(uv_hrtime() - started) / 1e6);
    struct selftest_result *r = &gate->result;
    reload_trigger_watch_modules(gate->trigger, r->modules, r->module_count, r->verdict != SELFTEST_NOT_LOADED);
    int rc = 0;
    if (r->verdict == SELFTEST_FAILED) {
        log_error("cannot serve %s: its selftest failed: %s", gate->script, r->message ? r->message : "out of memory");
        rc = -1;
    } else if (r->verdict == SELFTEST_PASSED) {
        log_info("selftest of %s passed", gate->script);
    }
    selftest_free(r);
    gate->input.source = NULL;
    return rc;
}

void reload_gate_cancel(struct reload_gate *gate)
{
    if (!gate->busy)
        return;
    gate->cancelled = true; /* a selftest running on the pool ends by its time limit */
    reload_check_cancel(&gate->check);
}
