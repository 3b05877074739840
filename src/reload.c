/*
 * reload.c - hot swap of the served script.
 * Preparing loads the script into a fresh environment; nothing changes if
 * that fails. Committing replaces the server's Protocol (its generation goes
 * up by one): open connections keep their instances, and the old code with
 * them, unless the new Protocol defines upgrade(instance), which is then
 * called for each of them, a failure affecting that connection alone.
 */
#include "reload.h"

#include <lauxlib.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "channel_script.h"
#include "context.h"
#include "log.h"
#include "runtime.h"
#include "datagram.h"
#include "server.h"
#include "watch_set.h"

static void on_sighup(uv_signal_t *handle, int signum)
{
    (void)signum;
    struct reload_trigger *t = handle->data;
    t->fire(t->data, "SIGHUP");
}

/* A followed file has changed (watch_set.c judged it). */
static void on_changed(void *data)
{
    struct reload_trigger *t = data;
    t->fire(t->data, "file changed");
}

int reload_trigger_watch_file(struct reload_trigger *t, uv_loop_t *loop, const char *path)
{
    (void)loop;
    return t->watching ? watch_set_add(&t->watched, path) : 0;
}

void reload_trigger_watch_modules(struct reload_trigger *t, char *const *paths, size_t n, bool complete)
{
    if (t->watching)
        watch_set_modules(&t->watched, paths, n, complete);
}

static int start_watching(struct reload_trigger *t, uv_loop_t *loop)
{
    watch_set_init(&t->watched, loop, on_changed, t);
    t->watching = true;
    if (watch_set_add(&t->watched, t->path) != 0)
        return -1;
    log_info("watching %s for changes", t->path);
    return 0;
}

/* path, its directory and its file name, as separate strings. */
static bool split_path(struct reload_trigger *t, const char *path)
{
    char *copy1 = strdup(path), *copy2 = strdup(path);
    t->path = strdup(path);
    t->dir = copy1 ? strdup(dirname(copy1)) : NULL;
    t->name = copy2 ? strdup(basename(copy2)) : NULL;
    free(copy1);
    free(copy2);
    return t->path && t->dir && t->name;
}

int reload_trigger_init(struct reload_trigger *t, uv_loop_t *loop, const char *path, bool watch,
                        reload_fire_cb fire, void *data)
{
    *t = (struct reload_trigger){.fire = fire, .data = data};
    if (!split_path(t, path)) {
        log_error("out of memory");
        return -1;
    }
    uv_signal_init(loop, &t->sighup);
    t->sighup.data = t;
    uv_signal_start(&t->sighup, on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&t->sighup);
    return watch ? start_watching(t, loop) : 0;
}

static void close_handle(uv_handle_t *handle)
{
    if (handle->loop && !uv_is_closing(handle))
        uv_close(handle, NULL);
}

void reload_trigger_close(struct reload_trigger *t)
{
    close_handle((uv_handle_t *)&t->sighup);
    if (t->watching)
        watch_set_close(&t->watched);
    free(t->path);
    free(t->dir);
    free(t->name);
    t->path = t->dir = t->name = NULL; /* the handles stay until their close callbacks */
}

struct prepare_args {
    const char *dir, *chunkname, *source, *datagrams;
    size_t len;
    struct reload_pending *pending;
};

/* Set the script's own modules aside, load it, make a class of it. Protected. */
static int prepare(lua_State *L)
{
    struct prepare_args *args = lua_touserdata(L, 1);
    args->pending->modules_ref = runtime_forget_modules(L, args->dir);
    args->pending->modules_set_aside = true;
    runtime_load_handler_buffer(L, args->source, args->len, args->chunkname);
    if (args->datagrams)
        endpoint_check_protocol(L, -1, args->datagrams, "the script's");
    args->pending->has_upgrade = lua_getfield(L, -1, "upgrade") == LUA_TFUNCTION;
    lua_pop(L, 1);
    args->pending->rule = reload_policy_read(L, -1);
    protocol_class_init(L, &args->pending->protocol);
    args->pending->ready = true;
    return 0;
}

int reload_prepare(lua_State *L, const char *dir, const char *chunkname, const char *source, size_t len,
                   const char *datagrams, struct reload_pending *pending, char **error)
{
    *pending = (struct reload_pending){.dir = dir, .modules_ref = LUA_NOREF};
    struct prepare_args args = {.dir = dir, .chunkname = chunkname, .source = source, .len = len,
                                .datagrams = datagrams, .pending = pending};
    struct runtime_error err;
    channel_script_reload_begin(); /* what the new code subscribes is its generation's */
    int rc = runtime_call(L, prepare, &args, &err);
    channel_script_reload_loaded();
    if (rc != 0) {
        *error = err.message;
        err.message = NULL;
        runtime_error_free(&err);
        reload_discard(L, pending);
        return -1;
    }
    return 0;
}

static int restore_modules(lua_State *L)
{
    struct reload_pending *pending = lua_touserdata(L, 1);
    runtime_restore_modules(L, pending->dir, pending->modules_ref);
    return 0;
}

/* Put back the modules prepare() set aside (a failed or discarded reload
 * leaves everything as it was). */
static void put_modules_back(lua_State *L, struct reload_pending *pending)
{
    if (!pending->modules_set_aside)
        return;
    pending->modules_set_aside = false;
    struct runtime_error err;
    if (runtime_call(L, restore_modules, pending, &err) != 0) {
        log_error("cannot restore the modules of %s after a failed reload: %s", pending->dir, err.message);
        runtime_error_free(&err);
    }
}

struct commit {
    struct loop_context *ctx;
    struct server *const *servers;
    size_t n;
    struct reload_pending *pending;
    size_t open, upgraded;
};

/* The listener being swapped that serves c, or NULL. */
static struct server *swapped(const struct commit *commit, struct conn *c)
{
    if (conn_get_events(c) != &protocol_events)
        return NULL; /* still reading its PROXY header: its owner data is not a binding yet */
    const struct protocol_owner *owner = protocol_owner(c);
    for (size_t i = 0; i < commit->n; i++) {
        if (commit->servers[i] && owner == &commit->servers[i]->owner)
            return commit->servers[i];
    }
    return NULL;
}

static void upgrade_one(struct conn *c, void *arg)
{
    struct commit *commit = arg;
    struct server *s = swapped(commit, c);
    if (!s || conn_is_closing(c))
        return;
    commit->open++;
    const struct reload_pending *p = commit->pending;
    if (!p->canary && p->rule.policy == RELOAD_UPGRADE && protocol_upgrade(c, &s->protocol))
        commit->upgraded++;
}

/* Every listener gets its own references to the new class. Protected:
 * taking a reference may run out of memory. */
static int commit_all(lua_State *L)
{
    struct commit *commit = lua_touserdata(L, 1);
    for (size_t i = 0; i < commit->n; i++) {
        if (commit->servers[i]) {
            struct protocol_class copy;
            protocol_class_copy(L, &commit->pending->protocol, &copy);
            if (commit->pending->canary)
                server_start_canary(commit->servers[i], &copy);
            else
                server_set_protocol(commit->servers[i], &copy);
        }
    }
    endpoint_list_swap_listeners(commit->ctx->endpoints, &commit->pending->protocol);
    return 0;
}

void reload_commit(struct loop_context *ctx, struct server *const *servers, size_t n,
                   struct reload_pending *pending, size_t *open, size_t *upgraded)
{
    lua_State *L = ctx->L;
    struct commit commit = {.ctx = ctx, .servers = servers, .n = n, .pending = pending};
    channel_script_reload_commit(); /* before upgrade(): the new generation runs from here */
    struct runtime_error err;
    if (runtime_call(L, commit_all, &commit, &err) != 0) {
        log_error("reload: cannot hand the new code to every listener: %s", err.message);
        runtime_error_free(&err);
    }
    if (pending->modules_set_aside) /* the new code keeps the modules it loaded */
        luaL_unref(L, LUA_REGISTRYINDEX, pending->modules_ref);
    pending->modules_set_aside = false;
    conn_list_each(ctx->conns, upgrade_one, &commit);
    protocol_class_release(L, &pending->protocol);
    pending->ready = false;
    *open = commit.open;
    *upgraded = commit.upgraded;
}

void reload_discard(lua_State *L, struct reload_pending *pending)
{
    channel_script_reload_discard();
    if (pending->ready)
        protocol_class_release(L, &pending->protocol);
    pending->ready = false;
    put_modules_back(L, pending);
}
