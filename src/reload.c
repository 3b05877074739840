/*
 * reload.c - hot swap of the served script.
 * A reload loads the script into a fresh environment. If that fails, the
 * log says why and nothing changes. If it works, the server's Protocol is
 * replaced (its generation goes up by one): open connections keep their
 * instances, and the old code with them, unless the new Protocol defines
 * upgrade(instance), which is then called for each of them.
 * The handles are unreferenced: watching never keeps the process alive.
 */
#include "reload.h"

#include <lauxlib.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "log.h"
#include "protocol.h"
#include "runtime.h"
#include "server.h"

#define SETTLE_MS 100

struct load_args {
    const struct reload *reload;
    struct protocol_class protocol;
    bool has_upgrade;
};

/* Forget the script's own modules, load it, make a class of it. Protected. */
static int load_again(lua_State *L)
{
    struct load_args *args = lua_touserdata(L, 1);
    runtime_forget_modules(L, args->reload->dir);
    runtime_load_handler(L, args->reload->path);
    args->has_upgrade = lua_getfield(L, -1, "upgrade") == LUA_TFUNCTION;
    lua_pop(L, 1);
    protocol_class_init(L, &args->protocol);
    return 0;
}

struct upgrade_count {
    const struct server *server;
    const struct protocol_class *protocol;
    size_t open, upgraded;
};

static void upgrade_one(struct conn *c, void *arg)
{
    struct upgrade_count *count = arg;
    if (protocol_server(c) != count->server || conn_is_closing(c))
        return;
    count->open++;
    if (protocol_upgrade(c, count->protocol))
        count->upgraded++;
}

void reload_now(struct reload *r, const char *why)
{
    lua_State *L = r->host->L;
    struct server *s = r->server;
    struct load_args args = {.reload = r};
    struct runtime_error err;
    if (runtime_call(L, load_again, &args, &err) != 0) {
        log_error("reload (%s) failed, still serving generation %d: %s", why, s->protocol.generation,
                  err.message);
        runtime_error_free(&err);
        return;
    }
    args.protocol.generation = s->protocol.generation + 1;
    protocol_class_release(L, &s->protocol);
    s->protocol = args.protocol;
    log_info("reloaded %s (generation %d)", r->path, s->protocol.generation);
    struct upgrade_count count = {.server = s, .protocol = &s->protocol};
    conn_list_each(&r->host->conns, upgrade_one, &count);
    if (count.open == 0)
        return;
    if (args.has_upgrade)
        log_info("upgraded %zu of %zu open connection(s) to generation %d", count.upgraded, count.open,
                 s->protocol.generation);
    else
        log_info("%zu open connection(s) keep the code they started with (the script has no upgrade())",
                 count.open);
}

static void on_sighup(uv_signal_t *handle, int signum)
{
    (void)signum;
    reload_now(handle->data, "SIGHUP");
}

static void on_settled(uv_timer_t *timer)
{
    reload_now(timer->data, "file changed");
}

/* An event in the script's directory: (re)start the settle timer when it
 * names the script, whether written in place or replaced by a rename. */
static void on_dir_event(uv_fs_event_t *handle, const char *filename, int events, int status)
{
    struct reload *r = handle->data;
    (void)events;
    if (status < 0) {
        log_warn("watching %s failed: %s", r->dir, uv_strerror(status));
        return;
    }
    if (filename && strcmp(filename, r->name) == 0)
        uv_timer_start(&r->settle, on_settled, SETTLE_MS, 0);
}

static int start_watching(struct reload *r)
{
    uv_fs_event_init(&r->host->loop, &r->watch);
    r->watch.data = r;
    r->watching = true;
    int rc = uv_fs_event_start(&r->watch, on_dir_event, r->dir, 0);
    if (rc != 0) {
        log_error("cannot watch %s: %s", r->dir, uv_strerror(rc));
        return -1;
    }
    uv_unref((uv_handle_t *)&r->watch);
    log_info("watching %s for changes", r->path);
    return 0;
}

int reload_init(struct reload *r, struct host *h, struct server *s, const char *path, bool watch)
{
    *r = (struct reload){.host = h, .server = s, .path = strdup(path)};
    char *copy1 = strdup(path), *copy2 = strdup(path);
    r->dir = copy1 ? strdup(dirname(copy1)) : NULL;
    r->name = copy2 ? strdup(basename(copy2)) : NULL;
    free(copy1);
    free(copy2);
    if (!r->path || !r->dir || !r->name) {
        reload_close(r);
        log_error("out of memory");
        return -1;
    }
    uv_signal_init(&h->loop, &r->sighup);
    r->sighup.data = r;
    uv_signal_start(&r->sighup, on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&r->sighup);
    uv_timer_init(&h->loop, &r->settle);
    r->settle.data = r;
    uv_unref((uv_handle_t *)&r->settle);
    return watch ? start_watching(r) : 0;
}

static void close_handle(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

void reload_close(struct reload *r)
{
    if (r->sighup.loop) { /* the handles were set up */
        close_handle((uv_handle_t *)&r->sighup);
        close_handle((uv_handle_t *)&r->settle);
        if (r->watching)
            close_handle((uv_handle_t *)&r->watch);
    }
    free(r->path);
    free(r->dir);
    free(r->name);
    r->path = r->dir = r->name = NULL; /* the handles stay as they are until their close callbacks */
}
