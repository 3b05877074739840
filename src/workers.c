/*
 * workers.c - N worker threads, and the main thread that coordinates them.
 *
 * Each worker owns a host (its loop and Lua state), loads the script itself
 * and serves every listener: on TCP and UDP it binds the shared address
 * with SO_REUSEPORT, so the kernel spreads the load among them; a Unix
 * socket cannot be shared that way, so the coordinator opens it once and
 * every worker accepts on a duplicate of its own. The coordinator lets go
 * of its copy once they have all started, so the socket closes (and
 * refuses clients, as a closed TCP port does) when every worker has
 * closed the listener. Nothing Lua crosses a thread. The coordinator
 * reaches a worker only by setting its command bits under the group's lock
 * and waking its async handle; workers answer through the group's reply
 * counters and the coordinator's async handle.
 *
 * Start-up goes one worker at a time: the first may pick the port (--port 0)
 * for the others. A hot swap is two-phase: every running worker prepares the
 * new code, and only if all of them could is it committed; otherwise all
 * discard it (workers_reload.c, both sides). A server closed in one worker
 * is closed in all. The process ends when every worker's loop has ended.
 */
#include "workers.h"
#include "workers_group.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <lauxlib.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "canary.h"
#include "channel_redis.h"
#include "console.h"
#include "datagram.h"
#include "exit_guard.h"
#include "log.h"
#include "log_window.h"
#include "reload.h"
#include "runtime.h"
#include "server.h"
#include "server_object.h"

/* ---- The worker side: runs on the worker's thread. ---- */

/* Load the handler script and make a server (or a UDP endpoint) of its
 * Protocol for every listener. Protected. */
static int load_server(lua_State *L)
{
    struct worker *w = lua_touserdata(L, 1);
    struct workers *g = w->group;
    runtime_add_script_dir(L, g->script_dir);
    runtime_refuse_exit(L);
    runtime_load_handler(L, g->script);
    for (int i = 0; i < g->listener_count; i++) {
        lua_pushvalue(L, -1);
        if (g->listeners[i].spec->kind == LISTEN_UDP) {
            w->endpoints[i] = endpoint_new(&w->host.ctx, L, g->listeners[i].name);
        } else {
            w->servers[i] = server_new(&w->host.ctx, L);
            server_object_new(L, w->servers[i]);
        }
    }
    return 0;
}

/* The index of s among w's listeners. */
static int listener_of(const struct worker *w, const struct server *s)
{
    for (int i = 0; i < w->group->listener_count; i++) {
        if (w->servers[i] == s)
            return i;
    }
    return 0;
}

/* Does any listener serve TLS? */
bool workers_serves_tls(const struct workers *g)
{
    for (int i = 0; i < g->listener_count; i++) {
        if (g->listeners[i].spec->tls)
            return true;
    }
    return false;
}

/* The certificate files, loaded (again); NULL and a line in 'error' if not. */
struct tls_server *workers_load_certificates(const struct workers *g, char *error, size_t size)
{
    const struct cli_options *o = g->options;
    struct tls_server_config cfg = {.pairs = o->tls_cert_count, .client_ca = o->tls_client_ca, .alpn = o->tls_alpn};
    for (int i = 0; i < o->tls_cert_count; i++) {
        cfg.certs[i] = o->tls_certs[i];
        cfg.keys[i] = o->tls_keys[i];
    }
    return tls_server_new(&cfg, error, size);
}

/* Serve listener i's connections with w's certificates, if it is a TLS
 * one; start_tls() takes them too. */
void workers_use_certificates(struct worker *w, int i)
{
    host_set_tls(&w->host, w->tls, (uint64_t)ceil(w->group->options->tls_handshake_timeout * 1000));
    if (w->servers[i] && w->group->listeners[i].spec->tls)
        server_use_tls(w->servers[i], w->tls,
                       (uint64_t)ceil(w->group->options->tls_handshake_timeout * 1000));
}

/* Serve the sockets worker 1 handed us. */
static void adopt_handed(struct worker *w)
{
    uv_mutex_lock(&w->group->lock);
    struct handed *list = w->handed;
    size_t count = w->handed_count;
    w->handed = NULL;
    w->handed_count = w->handed_room = 0;
    uv_mutex_unlock(&w->group->lock);
    for (size_t i = 0; i < count; i++)
        server_adopt(w->servers[list[i].listener], list[i].fd);
    free(list);
}

/* Worker 1's listener without SO_REUSEPORT: pass every Nth socket on, in
 * turn, to a running worker. False: serve it here. */
static bool hand_off(struct server *s, int fd, void *data)
{
    struct worker *self = data;
    struct handed item = {.fd = fd, .listener = listener_of(self, s)};
    struct workers *g = self->group;
    struct worker *to = &g->list[g->next_worker++ % (unsigned)g->count];
    if (to == self)
        return false;
    bool handed = false;
    uv_mutex_lock(&g->lock);
    if (to->alive && to->handed_count < to->handed_room) {
        to->handed[to->handed_count++] = item;
        handed = true;
    } else if (to->alive) {
        size_t room = to->handed_room ? 2 * to->handed_room : 64;
        struct handed *bigger = realloc(to->handed, room * sizeof *bigger);
        if (bigger) {
            to->handed = bigger;
            to->handed_room = room;
            to->handed[to->handed_count++] = item;
            handed = true;
        }
    }
    if (handed) {
        to->commands |= CMD_ADOPT;
        uv_async_send(&to->wakeup);
    }
    uv_mutex_unlock(&g->lock);
    return handed;
}

static const char *shutdown_reason(struct workers *g)
{
    uv_mutex_lock(&g->lock);
    const char *why = g->shutdown_why;
    uv_mutex_unlock(&g->lock);
    return why;
}

/* The coordinator (or another worker) has set command bits for us. */
static void on_wakeup(uv_async_t *handle)
{
    struct worker *w = handle->data;
    uv_mutex_lock(&w->group->lock);
    unsigned commands = w->commands;
    unsigned close_listeners = w->close_listeners;
    w->commands = 0;
    w->close_listeners = 0;
    uv_mutex_unlock(&w->group->lock);
    if ((commands & CMD_SHUTDOWN) && !w->host.ctx.shutting_down)
        host_shutdown(&w->host, shutdown_reason(w->group));
    if (commands & CMD_ABORT)
        host_signal(&w->host, atomic_load(&w->group->signals.name), 2);
    if (commands & (CMD_PROMOTE | CMD_ROLLBACK)) /* before a swap asked for after them */
        canary_worker_command(w, commands);
    for (int i = 0; (commands & CMD_CLOSE_SERVER) && i < w->group->listener_count; i++) {
        if ((close_listeners & (1u << i)) && w->servers[i])
            server_close(w->servers[i]);
    }
    if (commands & CMD_PREPARE)
        workers_reload_prepare(w);
    if (commands & CMD_COMMIT)
        workers_reload_commit(w);
    if (commands & CMD_DISCARD)
        workers_reload_discard(w);
    if (commands & CMD_ADOPT)
        adopt_handed(w);
    if (commands & CMD_QUERY)
        console_answer_query(w);
}

/* Set command bits on every running worker but 'except', and wake it;
 * with CMD_CLOSE_SERVER, 'listeners' says which to close. */
static int command_some(struct workers *g, unsigned command, unsigned listeners, const struct worker *except)
{
    int sent = 0;
    uv_mutex_lock(&g->lock);
    for (int i = 0; i < g->count; i++) {
        struct worker *w = &g->list[i];
        if (w == except || !w->alive)
            continue;
        w->commands |= command;
        w->close_listeners |= listeners;
        uv_async_send(&w->wakeup); /* under the lock: the worker closes it only after 'alive' is false */
        sent++;
    }
    uv_mutex_unlock(&g->lock);
    return sent;
}

static int command_all(struct workers *g, unsigned command, const struct worker *except)
{
    return command_some(g, command, 0, except);
}

int workers_command_all(struct workers *g, unsigned command)
{
    return command_all(g, command, NULL);
}

bool workers_shutting_down(struct workers *g)
{
    uv_mutex_lock(&g->lock);
    bool shutting_down = g->shutdown_why != NULL;
    uv_mutex_unlock(&g->lock);
    return shutting_down;
}

/* Shut every worker down, those starting later too, saying 'why' once. */
static void shutdown_all(struct workers *g, const char *why)
{
    uv_mutex_lock(&g->lock);
    if (!g->shutdown_why)
        g->shutdown_why = why;
    uv_mutex_unlock(&g->lock);
    reload_gate_cancel(&g->gate);
    command_all(g, CMD_SHUTDOWN, NULL);
}

/* Are all of w's servers closed? */
static bool all_closed(const struct worker *w)
{
    for (int i = 0; i < w->group->listener_count; i++) {
        if (w->servers[i] && !w->servers[i]->closed)
            return false;
    }
    return true;
}

/* A server closed in one worker (by a script, or on shutdown) closes in all. */
static void on_server_closed(struct server *s, void *data)
{
    struct worker *w = data;
    if (all_closed(w))
        uv_unref((uv_handle_t *)&w->wakeup); /* it kept a socketless worker's loop alive */
    unsigned bit = 1u << listener_of(w, s);
    if (!(atomic_fetch_or(&w->group->listeners_closed, bit) & bit))
        command_some(w->group, CMD_CLOSE_SERVER, bit, w);
}

/* Serve stream listener i: listen, or wait for handed sockets. */
static int listen_stream(struct worker *w, int i)
{
    struct workers *g = w->group;
    struct listener *l = &g->listeners[i];
    struct server *s = w->servers[i];
    int rc;
    if (l->spec->kind == LISTEN_UNIX) {
        int fd = fcntl(l->unix_fd, F_DUPFD_CLOEXEC, 0); /* ours: closed when we close the listener */
        rc = fd < 0 ? uv_translate_sys_error(errno) : server_listen_fd(s, fd, CONN_UNIX, l->name, true);
    } else if (g->hand_off && w->id > 1) {
        server_open_without_socket(s, l->name); /* worker 1 hands it sockets */
        uv_ref((uv_handle_t *)&w->wakeup);
        rc = 0;
    } else {
        rc = server_listen(s, &l->addr, g->count > 1 && !g->hand_off);
        if (rc == 0 && w->id == 1)
            server_sockname(s, &l->addr); /* the real port, for the others */
    }
    if (rc != 0)
        return rc;
    server_count_as(s, i);
    workers_use_certificates(w, i);
    if (g->options->proxy_protocol)
        server_expect_proxy(s, (uint64_t)ceil(g->options->proxy_timeout * 1000)); /* never 0: that is "off" */
    server_set_on_close(s, on_server_closed, w);
    if (g->hand_off && w->id == 1 && l->spec->kind == LISTEN_TCP)
        server_set_hand_off(s, hand_off, w);
    return 0;
}

/* Serve UDP listener i. Without SO_REUSEPORT, only worker 1 does. */
static int listen_datagram(struct worker *w, int i)
{
    struct workers *g = w->group;
    struct listener *l = &g->listeners[i];
    if (g->hand_off && w->id > 1) {
        endpoint_close(w->endpoints[i]);
        w->endpoints[i] = NULL;
        return 0;
    }
    int rc = endpoint_bind(w->endpoints[i], &l->addr, g->count > 1 && !g->hand_off);
    if (rc == 0 && w->id == 1)
        endpoint_sockname(w->endpoints[i], &l->addr); /* the real port, for the others */
    return rc;
}

/* Name listener i as it is printed, with its real port. */
static void name_listener(struct listener *l)
{
    bool bound = l->spec->kind != LISTEN_UNIX && l->addr.sa.sa_family != AF_UNSPEC;
    listen_spec_format(l->spec, bound ? &l->addr : NULL, l->name, sizeof l->name);
}

/* Set up the host, load the script, listen. Returns an exit code. */
static int worker_start(struct worker *w)
{
    struct workers *g = w->group;
    if (host_init(&w->host, g->lua_dir, &g->limits, w->id, &g->accepted) != 0)
        return EXIT_FAILURE_RUNTIME;
    w->host_ready = true;
    w->host.last_to_exit = false; /* the coordinator's signal handles outlive it */
    uv_async_init(&w->host.loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_unref((uv_handle_t *)&w->wakeup);
    char why[1024];
    if (workers_serves_tls(g) && !(w->tls = workers_load_certificates(g, why, sizeof why))) {
        log_error("%s", why);
        return EXIT_FAILURE_RUNTIME;
    }
    struct runtime_error err;
    if (runtime_call(w->host.L, load_server, w, &err) != 0) {
        log_error("cannot load script: %s", err.message);
        log_debug("%s", err.traceback);
        runtime_error_free(&err);
        return EXIT_FAILURE_RUNTIME;
    }
    for (int i = 0; i < g->listener_count; i++) {
        struct listener *l = &g->listeners[i];
        int rc = l->spec->kind == LISTEN_UDP ? listen_datagram(w, i) : listen_stream(w, i);
        if (rc != 0) {
            log_with(LOG_ERROR, &(struct log_fields){.listener = l->name}, "cannot listen on %s: %s", l->name,
                     uv_strerror(rc));
            return EXIT_FAILURE_RUNTIME;
        }
        if (w->id == 1) /* the real port */
            name_listener(l);
        if (w->endpoints[i])
            endpoint_set_listener(w->endpoints[i], l->name);
    }
    for (int i = 0; i < g->listener_count; i++) {
        if (w->endpoints[i])
            endpoint_start(w->endpoints[i]); /* connection_made, once every listener is up */
        w->endpoints[i] = NULL;
    }
    if (g->options->metrics_given)
        host_start_probe(&w->host);
    return EXIT_OK;
}

/* Leave the group: commands sent from now on cannot reach us, and the
 * reload step we can no longer answer counts as answered. */
static void worker_leave(struct worker *w)
{
    struct workers *g = w->group;
    uv_mutex_lock(&g->lock);
    if (w->alive) {
        w->alive = false;
        g->running--;
        if (w->commands & RELOAD_COMMANDS)
            g->replies_got++;
        w->commands = 0;
        for (size_t i = 0; i < w->handed_count; i++)
            close(w->handed[i].fd); /* handed over, never served: the client sees a close */
        free(w->handed);
        w->handed = NULL;
        w->handed_count = w->handed_room = 0;
    }
    uv_mutex_unlock(&g->lock);
    uv_async_send(&g->replies);
}

/* Close the listeners a running worker closed while we were starting:
 * its command reached only the workers alive then. */
static void close_closed_listeners(struct worker *w)
{
    unsigned closed = atomic_load(&w->group->listeners_closed);
    for (int i = 0; i < w->group->listener_count; i++) {
        if ((closed & (1u << i)) && w->servers[i])
            server_close(w->servers[i]);
    }
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    struct workers *g = w->group;
    log_set_worker(w->id);
    int status = worker_start(w);
    uv_mutex_lock(&g->lock);
    w->started = true;
    w->status = status;
    w->alive = status == EXIT_OK;
    if (w->alive)
        g->running++;
    const char *why = g->shutdown_why; /* asked for before we could hear it */
    uv_cond_broadcast(&g->started);
    uv_mutex_unlock(&g->lock);
    if (status == EXIT_OK) /* alive: a listener closed from now on reaches us by command */
        close_closed_listeners(w);
    if (status == EXIT_OK && why)
        host_shutdown(&w->host, why);
    if (status == EXIT_OK)
        host_run(&w->host);
    worker_leave(w);
    if (w->host_ready) {
        reload_discard(w->host.L, &w->pending);
        canary_worker_close(w);
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        host_destroy(&w->host);
        tls_server_free(w->pending_tls);
        tls_server_free(w->tls); /* after the servers and their connections */
    }
}

/* ---- The coordinator side: runs on the main thread. ---- */

/* A worker answered, or left: move the reload on; stop once all have left. */
static void on_replies(uv_async_t *handle)
{
    struct workers *g = handle->data;
    uv_mutex_lock(&g->lock);
    bool answered = g->replies_got >= g->replies_expected;
    int running = g->running;
    uv_mutex_unlock(&g->lock);
    if (running == 0)
        reload_gate_cancel(&g->gate); /* nothing left to swap */
    if (g->phase != PHASE_IDLE && answered)
        workers_reload_advance(g);
    if (running == 0 && g->phase == PHASE_IDLE && !uv_is_closing((uv_handle_t *)handle)) {
        uv_close((uv_handle_t *)handle, NULL);
        reload_trigger_close(&g->trigger);
        console_close(g); /* /healthz said 503 until now */
        channel_redis_stop();
    }
}

/* Start worker w and wait until it listens or has failed. */
static int start_worker(struct workers *g, struct worker *w)
{
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
        log_error("cannot start worker %d", w->id);
        return EXIT_FAILURE_RUNTIME;
    }
    w->thread_started = true;
    uv_mutex_lock(&g->lock);
    while (!w->started)
        uv_cond_wait(&g->started, &g->lock);
    int status = w->status;
    uv_mutex_unlock(&g->lock);
    return status;
}

/* Start the workers in order; on the first failure, stop those running. */
static int start_all(struct workers *g)
{
    for (int i = 0; i < g->count; i++) {
        if (start_worker(g, &g->list[i]) != EXIT_OK) {
            shutdown_all(g, "another worker failed to start");
            return EXIT_FAILURE_RUNTIME;
        }
    }
    return EXIT_OK;
}

static void join_all(struct workers *g)
{
    for (int i = 0; i < g->count; i++) {
        if (g->list[i].thread_started)
            uv_thread_join(&g->list[i].thread);
    }
}

/* The first signal shuts every worker down; the next ones abort. */
static void on_signal(const char *name, int nth, void *data)
{
    struct workers *g = data;
    if (nth == 1)
        shutdown_all(g, name);
    else
        command_all(g, CMD_ABORT, NULL);
}

static int group_init(struct workers *g, const struct cli_options *o, const char *lua_dir, const char *script,
                      const struct limits *limits, int count)
{
    *g = (struct workers){.count = count, .options = o, .lua_dir = lua_dir, .script = script, .limits = *limits,
                          .generation = 1, .started_ns = uv_hrtime()};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    g->started_wall = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    char *copy = strdup(script);
    g->script_dir = copy ? strdup(dirname(copy)) : NULL;
    free(copy);
    g->list = calloc((size_t)count, sizeof *g->list);
    size_t len = strlen(script) + 2;
    g->chunkname = malloc(len);
    if (!g->script_dir || !g->list || !g->chunkname) {
        log_error("out of memory");
        return -1;
    }
    snprintf(g->chunkname, len, "@%s", script);
    for (int i = 0; i < count; i++)
        g->list[i] = (struct worker){.id = i + 1, .group = g};
    atomic_init(&g->accepted, 0);
    atomic_init(&g->listeners_closed, 0);
    for (int i = 0; i < o->listener_count; i++) {
        g->listeners[i] = (struct listener){.spec = &o->listeners[i], .unix_fd = -1};
        name_listener(&g->listeners[i]);
    }
    g->listener_count = o->listener_count;
    uv_mutex_init(&g->lock);
    uv_cond_init(&g->started);
    uv_loop_init(&g->loop);
    uv_async_init(&g->loop, &g->replies, on_replies);
    g->replies.data = g;
    exit_guard_listen(&g->signals, &g->loop, on_signal, g);
    g->listening_for_signals = true;
    return canary_open(g);
}

/* Let go of the coordinator's copies of the Unix sockets: once every
 * worker has its own, and at exit. */
static void close_unix_fds(struct workers *g)
{
    for (int i = 0; i < g->listener_count; i++) {
        struct listener *l = &g->listeners[i];
        if (l->unix_fd >= 0)
            close(l->unix_fd);
        l->unix_fd = -1;
    }
}

/* Every worker has ended: close the Unix sockets and remove their files
 * (unless another process has put its own socket there since). */
static void close_unix_listeners(struct workers *g)
{
    close_unix_fds(g);
    for (int i = 0; i < g->listener_count; i++) {
        struct listener *l = &g->listeners[i];
        if (!l->unix_created)
            continue;
        l->unix_created = false;
        struct stat now;
        if (lstat(l->spec->path, &now) == 0 && now.st_ino == l->unix_file.st_ino && now.st_dev == l->unix_file.st_dev)
            unlink(l->spec->path);
    }
}

static void group_destroy(struct workers *g)
{
    console_close(g);
    canary_close(g);
    channel_redis_stop();
    close_unix_listeners(g);
    if (!uv_is_closing((uv_handle_t *)&g->replies))
        uv_close((uv_handle_t *)&g->replies, NULL);
    if (g->listening_for_signals)
        exit_guard_unlisten(&g->signals);
    reload_trigger_close(&g->trigger);
    host_ignore_late_sighup();
    log_window_flush(true); /* every worker has ended: the counts still open */
    uv_run(&g->loop, UV_RUN_DEFAULT);
    uv_loop_close(&g->loop);
    uv_cond_destroy(&g->started);
    uv_mutex_destroy(&g->lock);
    for (int i = 0; i < g->count; i++)
        free(g->list[i].answer); /* the console's last query */
    free(g->list);
    free(g->script_dir);
    free(g->chunkname);
    free(g->source);
    free(g->first_error);
}

/* Before any worker starts: resolve the addresses, check that a port the
 * workers will share is free, open the Unix sockets. Returns 0, or -1
 * after logging why (the Unix sockets opened so far are closed later). */
static int open_listeners(struct workers *g)
{
    for (int i = 0; i < g->listener_count; i++) {
        struct listener *l = &g->listeners[i];
        const struct listen_spec *spec = l->spec;
        int rc;
        if (spec->kind == LISTEN_UNIX) {
            rc = server_open_unix(spec->path, g->options->unix_mode, &l->unix_fd);
            if (rc == 0 && lstat(spec->path, &l->unix_file) != 0)
                rc = uv_translate_sys_error(errno);
            l->unix_created = rc == 0;
            if (rc != 0) {
                log_with(LOG_ERROR, &(struct log_fields){.listener = l->name}, "cannot listen on %s: %s%s", l->name,
                         uv_strerror(rc), server_unix_hint(rc));
                return -1;
            }
            continue;
        }
        rc = addr_resolve_blocking(&g->loop, spec->host, spec->port, &l->addr);
        if (rc != 0) {
            log_with(LOG_ERROR, &(struct log_fields){.listener = l->name}, "cannot resolve host '%s' (--listen %s): %s",
                     spec->host, l->name, uv_strerror(rc));
            return -1;
        }
        /* With SO_REUSEPORT our workers could join another process's listeners. */
        if (g->count > 1 && !g->hand_off && spec->port != 0 &&
            (rc = spec->kind == LISTEN_UDP ? endpoint_check_free(&l->addr) : server_check_free(&l->addr)) != 0) {
            log_with(LOG_ERROR, &(struct log_fields){.listener = l->name}, "cannot listen on %s: %s", l->name,
                     uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

int workers_serve(const struct cli_options *o, const char *lua_dir, const char *script,
                  const struct limits *limits, int count)
{
    struct workers g;
    if (group_init(&g, o, lua_dir, script, limits, count) != 0) {
        group_destroy(&g);
        return EXIT_FAILURE_RUNTIME;
    }
    /* Without SO_REUSEPORT (or with LUAECHO_NO_REUSEPORT=1, to test it):
     * one listener, in worker 1, hands accepted sockets round. */
    const char *no_reuseport = getenv("LUAECHO_NO_REUSEPORT");
    g.hand_off = count > 1 && ((no_reuseport && strcmp(no_reuseport, "1") == 0) || !server_reuseport_works());
    if (open_listeners(&g) != 0 || console_open(&g) != 0 || workers_reload_start_triggers(&g) != 0 ||
        (o->channel_redis && channel_redis_start(&g.loop, o->channel_redis) != 0)) {
        group_destroy(&g);
        return EXIT_FAILURE_RUNTIME;
    }
    int status = start_all(&g);
    close_unix_fds(&g); /* every worker that started has its own */
    if (status == EXIT_OK) {
        for (int i = 0; i < g.listener_count; i++)
            log_always("listening on %s", g.listeners[i].name);
        if (count > 1 && g.hand_off)
            log_info("%d workers; SO_REUSEPORT unavailable: worker 1 listens and hands connections round", count);
        else if (count > 1)
            log_info("%d workers, sharing the port (SO_REUSEPORT)", count);
        console_announce(&g);
        uv_run(&g.loop, UV_RUN_DEFAULT);
    }
    join_all(&g);
    group_destroy(&g);
    return status;
}
