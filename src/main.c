/*
 * main.c - start-up and exit codes.
 * Order: parse the command line, find the bundled Lua files, load the
 * script (exit 1 if it cannot), bind (exit 1 if it cannot), say where we
 * listen, serve until shut down, exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lauxlib.h>

#include "addr.h"
#include "channel_hub.h"
#include "cli.h"
#include "ctl.h"
#include "error_ring.h"
#include "exit_guard.h"
#include "host.h"
#include "log.h"
#include "runtime.h"
#include "script_metrics.h"
#include "server.h"
#include "workers.h"

static bool is_file(const char *path)
{
    return access(path, R_OK) == 0;
}

/* The bundled Lua files: $LUAECHO_LUA_DIR, next to an installed binary
 * (BIN/../share/luaecho), else the source tree this binary was built from. */
static void find_lua_dir(char *dir, size_t len)
{
    char probe[PATH_MAX + 32];
    const char *env = getenv("LUAECHO_LUA_DIR");
    if (env && *env) {
        snprintf(dir, len, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    size_t exe_len = sizeof exe;
    if (uv_exepath(exe, &exe_len) == 0) {
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        int n = snprintf(dir, len, "%s/../%s", exe, LUAECHO_INSTALL_LUA_DIR);
        int m = snprintf(probe, sizeof probe, "%s/echo.lua", dir);
        if (n > 0 && (size_t)n < len && m > 0 && (size_t)m < sizeof probe && is_file(probe))
            return;
    }
    snprintf(dir, len, "%s", LUAECHO_SOURCE_LUA_DIR);
}

/* SCRIPT as given, or else among the bundled scripts; the default echo.lua. */
static void find_script(const char *script, const char *lua_dir, char *path, size_t len)
{
    if (!script) {
        snprintf(path, len, "%s/echo.lua", lua_dir);
        return;
    }
    snprintf(path, len, "%s", script);
    if (is_file(script) || script[0] == '/')
        return;
    char bundled[PATH_MAX + 32];
    int n = snprintf(bundled, sizeof bundled, "%s/%s", lua_dir, script);
    if (n > 0 && (size_t)n < sizeof bundled && is_file(bundled))
        snprintf(path, len, "%s", bundled);
}

/* Modules next to the script come first in package.path. [-0, +0, e] */
static void add_script_dir(lua_State *L, const char *path)
{
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    runtime_add_script_dir(L, slash ? dir : ".");
}

static struct limits limits_from(const struct cli_options *o);

struct run_args {
    const char *path;
    int argc;
    char **argv;
    const char *status;
};

/* The 'arg' table, as the lua interpreter sets it: arg[0] is the script. [-0, +0, e] */
static void set_arg_table(lua_State *L, const struct run_args *args)
{
    lua_createtable(L, args->argc, 1);
    lua_pushliteral(L, "luaecho");
    lua_rawseti(L, -2, -1);
    for (int i = 0; i < args->argc; i++) {
        lua_pushstring(L, args->argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
}

/* Push require("luaecho")[name]. [-0, +1, e] */
static void push_luaecho_function(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luaecho");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* Load SCRIPT and start it as the main task, with its arguments. Protected. */
static int start_main_task(lua_State *L)
{
    struct run_args *args = lua_touserdata(L, 1);
    set_arg_table(L, args);
    add_script_dir(L, args->path);
    push_luaecho_function(L, "_run_main");
    if (luaL_loadfilex(L, args->path, "t") != LUA_OK)
        return lua_error(L);
    for (int i = 1; i < args->argc; i++)
        lua_pushstring(L, args->argv[i]);
    lua_call(L, args->argc, 0);
    return 0;
}

/* After the loop: "ok", "failed" or "pending". Protected. */
static int main_task_status(lua_State *L)
{
    struct run_args *args = lua_touserdata(L, 1);
    push_luaecho_function(L, "_main_status");
    lua_call(L, 0, 1);
    const char *status = lua_tostring(L, -1);
    args->status = !status ? "failed" : status[0] == 'o' ? "ok" : status[0] == 'p' ? "pending" : "failed";
    return 0;
}

/* luaecho run SCRIPT [ARGS...]: run the script as a task until nothing is left. */
static int run(const struct cli_options *o, const char *lua_dir)
{
    char script[PATH_MAX + 32];
    find_script(o->script, lua_dir, script, sizeof script);
    struct host h;
    struct limits limits = limits_from(o);
    if (host_init(&h, lua_dir, &limits, 1, NULL) != 0)
        return EXIT_FAILURE_RUNTIME;
    host_listen_for_signals(&h);
    struct run_args args = {.path = script, .argc = o->script_argc, .argv = o->script_argv};
    struct runtime_error err;
    int rc = EXIT_OK;
    if (runtime_call(h.L, start_main_task, &args, &err) != 0) {
        log_error("%s", err.traceback);
        runtime_error_free(&err);
        rc = EXIT_FAILURE_RUNTIME;
    } else {
        host_run(&h);
        if (runtime_call(h.L, main_task_status, &args, NULL) != 0)
            args.status = "failed";
        if (strcmp(args.status, "failed") == 0)
            rc = EXIT_FAILURE_RUNTIME;
        else if (strcmp(args.status, "pending") == 0 && !h.ctx.shutting_down) {
            log_error("%s never finished: it waits for something that can no longer happen", script);
            rc = EXIT_FAILURE_RUNTIME;
        }
    }
    host_destroy(&h);
    return rc;
}

/* The descriptors we may open: raise the soft limit to the hard one first,
 * as nginx does, so the default connection cap is as high as allowed. */
static size_t descriptor_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t wanted = rl.rlim_max;
        rl.rlim_cur = wanted;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
}

/* The limits in force, from the options and the descriptor limit. */
static struct limits limits_from(const struct cli_options *o)
{
    size_t fds = descriptor_limit();
    size_t derived = fds > CLI_DESCRIPTOR_RESERVE + 1 ? fds - CLI_DESCRIPTOR_RESERVE : 1;
    size_t cap = derived;
    if (o->max_connections > 0 && (size_t)o->max_connections <= derived)
        cap = (size_t)o->max_connections;
    else if (o->max_connections > 0)
        log_warn("--max-connections %ld is more than the descriptor limit allows (ulimit -n %zu): using %zu",
                 o->max_connections, fds, derived);
    log_debug("at most %zu connections (descriptor limit %zu)", cap, fds);
    return (struct limits){
        .max_connections = cap,
        .idle_timeout_ms = (uint64_t)(o->idle_timeout * 1000),
        .max_write_buffer = (size_t)o->max_write_buffer,
        .script_timeout_ms = (uint64_t)o->script_timeout,
        .lua_memory = (size_t)o->lua_memory << 20,
        .shutdown_timeout_ms = (uint64_t)(o->shutdown_timeout * 1000),
    };
}

/* luaecho test [ARGS]: busted on Lua 5.4 with luaecho's libraries on the
 * path (through the environment: busted re-executes itself). */
static int test(const struct cli_options *o, const char *lua_dir)
{
    char path[3 * PATH_MAX];
    const char *old = getenv("LUA_PATH_5_4");
    snprintf(path, sizeof path, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, old ? old : ";");
    setenv("LUA_PATH_5_4", path, 1);
    char **argv = calloc((size_t)o->script_argc + 3, sizeof *argv);
    if (!argv)
        return EXIT_FAILURE_RUNTIME;
    argv[0] = "busted";
    argv[1] = "--lua=lua5.4";
    memcpy(argv + 2, o->script_argv, (size_t)o->script_argc * sizeof *argv);
    execvp("busted", argv);
    log_error("cannot run busted: %s (on Debian: apt-get install lua-busted)", strerror(errno));
    free(argv);
    return EXIT_FAILURE_RUNTIME;
}

/* The number of workers: --workers, 0 meaning one per CPU we may run on. */
static int worker_count(const struct cli_options *o)
{
    return o->workers > 0 ? (int)o->workers : (int)uv_available_parallelism();
}

static int serve(const struct cli_options *o, const char *lua_dir)
{
    char script[PATH_MAX + 32];
    find_script(o->script, lua_dir, script, sizeof script);
    struct limits limits = limits_from(o);
    return workers_serve(o, lua_dir, script, &limits, worker_count(o));
}

int main(int argc, char **argv)
{
    /* A script's print() reaches a pipe (containers, tests) line by line. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct cli_options o;
    int rc = cli_parse(&o, argc, argv);
    if (rc != 0)
        return rc;
    if (o.command == CLI_HELP) {
        cli_print_help();
        return EXIT_OK;
    }
    if (o.command == CLI_VERSION) {
        cli_print_version();
        return EXIT_OK;
    }
    if (o.command == CLI_CTL) {
        signal(SIGPIPE, SIG_IGN); /* a console that goes away is an error, not a signal */
        return ctl_main(o.script_argc, o.script_argv);
    }
    log_set_level(o.log_level);
    log_set_format(o.log_format);
    /* A peer that resets while we write is an error on that connection, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    char lua_dir[PATH_MAX];
    find_lua_dir(lua_dir, sizeof lua_dir);
    if (o.command != CLI_TEST && exit_guard_start((uint64_t)(o.shutdown_timeout * 1000)) != 0)
        return EXIT_FAILURE_RUNTIME;
    if (o.command == CLI_TEST)
        return test(&o, lua_dir);
    if (o.command == CLI_RUN && o.channel_redis) {
        fprintf(stderr, "luaecho: --channel-redis is for the server (luaecho [serve] SCRIPT); 'luaecho run' "
                        "publishes within its own process\nTry 'luaecho --help' for more information.\n");
        return EXIT_USAGE;
    }
    channel_hub_configure((size_t)o.channel_buffer, o.channel_redis);
    rc = o.command == CLI_RUN ? run(&o, lua_dir) : serve(&o, lua_dir);
    /* Every loop has ended, and the metrics endpoint: what scripts and
     * failures left for it can go (LeakSanitizer checks that it does). */
    script_metrics_free();
    error_ring_clear();
    return rc;
}
