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

#define SETTLE_MS 100

static void on_sighup(uv_signal_t *handle, int signum)
{
    (void)signum;
    struct reload_trigger *t = handle->data;
    t->fire(t->data, "SIGHUP");
}

static void on_settled(uv_timer_t *timer)
{
    struct reload_trigger *t = timer->data;
    t->fire(t->data, "file changed");
}

/* An event in the script's directory: (re)start the settle timer when it
 * names the script, whether written in place or replaced by a rename. */
static void on_dir_event(uv_fs_event_t *handle, const char *filename, int events, int status)
{
    struct reload_trigger *t = handle->data;
    (void)events;
    if (status < 0) {
        log_warn("watching %s failed: %s", t->dir, uv_strerror(status));
        return;
    }
    if (filename && strcmp(filename, t->name) == 0)
        uv_timer_start(&t->settle, on_settled, SETTLE_MS, 0);
}

/* A file other than the script that --watch follows, in its directory. */
struct watched_file {
    uv_fs_event_t watch;
    struct reload_trigger *trigger;
    struct watched_file *next;
    char *name;
};

static void on_file_event(uv_fs_event_t *handle, const char *filename, int events, int status)
{
    (void)events;
    struct watched_file *w = handle->data;
    if (status == 0 && filename && strcmp(filename, w->name) == 0)
        uv_timer_start(&w->trigger->settle, on_settled, SETTLE_MS, 0);
}

static void free_watched(uv_handle_t *handle)
{
    struct watched_file *w = handle->data;
    free(w->name);
    free(w);
}

int reload_trigger_watch_file(struct reload_trigger *t, uv_loop_t *loop, const char *path)
{
    if (!t->watching)
        return 0;
    struct watched_file *w = calloc(1, sizeof *w);
    char *copy1 = strdup(path), *copy2 = strdup(path);
    int rc = UV_ENOMEM;
    if (w && copy1 && copy2 && (w->name = strdup(basename(copy2)))) {
        uv_fs_event_init(loop, &w->watch);
        w->watch.data = w;
        w->trigger = t;
        w->next = t->files;
        t->files = w;
        rc = uv_fs_event_start(&w->watch, on_file_event, dirname(copy1), 0);
        uv_unref((uv_handle_t *)&w->watch);
    } else if (w) {
        free(w);
    }
    free(copy1);
    free(copy2);
    if (rc != 0)
        log_error("cannot watch %s: %s", path, uv_strerror(rc));
    return rc == 0 ? 0 : -1;
}

static int start_watching(struct reload_trigger *t, uv_loop_t *loop)
{
    uv_fs_event_init(loop, &t->watch);
    t->watch.data = t;
    t->watching = true;
    int rc = uv_fs_event_start(&t->watch, on_dir_event, t->dir, 0);
    if (rc != 0) {
        log_error("cannot watch %s: %s", t->dir, uv_strerror(rc));
        return -1;
    }
    uv_unref((uv_handle_t *)&t->watch);
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
    uv_timer_init(loop, &t->settle);
    t->settle.data = t;
    uv_unref((uv_handle_t *)&t->settle);
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
    close_handle((uv_handle_t *)&t->settle);
    if (t->watching)
        close_handle((uv_handle_t *)&t->watch);
    for (struct watched_file *w = t->files, *next; w; w = next) {
        next = w->next;
        uv_close((uv_handle_t *)&w->watch, free_watched);
    }
    t->files = NULL;
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
    if (commit->pending->has_upgrade && protocol_upgrade(c, &s->protocol))
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
