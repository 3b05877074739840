/*
 * workers_reload.c - the workers' hot swap, both sides of its two phases.
 * The coordinator (main thread) reads the script once, has the reload
 * gate check it (selftest, --reload-check), then sends PREPARE to every
 * running worker and, only when all of them could load it, COMMIT;
 * otherwise DISCARD. The waiters hear the outcome once (ok, failed,
 * rejected); a reload asked for meanwhile starts after it. Each worker
 * (its own thread) prepares, commits or discards in its own Lua state,
 * with the TLS certificates, and answers through reply().
 * Relies on workers.c for the group, the commands and the certificates
 * (workers_group.h), on reload.c for the swap in one Lua state and on
 * reload_gate.c for the checks.
 * Rule: the coordinator's fields are touched on the main thread only, the
 * reply counters only under g->lock; a worker touches its own fields.
 */
#include "workers_group.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canary.h"
#include "log.h"
#include "reload.h"
#include "reload_gate.h"

/* ---- The worker side: runs on the worker's thread. ---- */

/* Answer the coordinator's current command. */
static void reply(struct workers *g, bool ok, char *error, size_t open, size_t upgraded, bool has_upgrade)
{
    uv_mutex_lock(&g->lock);
    g->replies_got++;
    if (!ok) {
        g->failures++;
        if (!g->first_error)
            g->first_error = error;
        else
            free(error);
    }
    g->open += open;
    g->upgraded += upgraded;
    g->has_upgrade = g->has_upgrade || has_upgrade;
    uv_mutex_unlock(&g->lock);
    uv_async_send(&g->replies);
}

/* A reload loads the certificates again, with the script. */
static bool prepare_certificates(struct worker *w, char **error)
{
    if (!workers_serves_tls(w->group))
        return true;
    char why[1024];
    w->pending_tls = workers_load_certificates(w->group, why, sizeof why);
    if (!w->pending_tls && !*error)
        *error = strdup(why);
    return w->pending_tls != NULL;
}

void workers_reload_prepare(struct worker *w)
{
    struct workers *g = w->group;
    char *error = NULL;
    const char *datagrams = NULL;
    for (int i = 0; i < g->listener_count && !datagrams; i++) {
        if (g->listeners[i].spec->kind == LISTEN_UDP)
            datagrams = g->listeners[i].name;
    }
    int rc = reload_prepare(w->host.L, g->script_dir, g->chunkname, g->source, g->source_len, datagrams,
                            &w->pending, &error);
    bool ok = rc == 0 && prepare_certificates(w, &error);
    reply(g, ok, error, 0, 0, w->pending.has_upgrade);
}

void workers_reload_commit(struct worker *w)
{
    size_t open = 0, upgraded = 0;
    bool has_upgrade = w->pending.has_upgrade;
    canary_worker_before_commit(w);
    if (w->pending.ready)
        reload_commit(&w->host.ctx, w->servers, (size_t)w->group->listener_count, &w->pending, &open, &upgraded);
    canary_worker_committed(w);
    if (w->pending_tls) { /* new handshakes get the new certificates; open connections keep theirs */
        tls_server_free(w->tls);
        w->tls = w->pending_tls;
        w->pending_tls = NULL;
        for (int i = 0; i < w->group->listener_count; i++)
            workers_use_certificates(w, i);
    }
    reply(w->group, true, NULL, open, upgraded, has_upgrade);
}

void workers_reload_discard(struct worker *w)
{
    reload_discard(w->host.L, &w->pending);
    tls_server_free(w->pending_tls);
    w->pending_tls = NULL;
    reply(w->group, true, NULL, 0, 0, false);
}

/* ---- The coordinator side: runs on the main thread. ---- */

static void start_reload(struct workers *g, const char *why);
static void append_waiters(struct reload_waiter **list, struct reload_waiter *more);

/* Send a reload step to every running worker; move on at once if none runs. */
static void send_step(struct workers *g, enum phase phase, unsigned command)
{
    g->phase = phase;
    uv_mutex_lock(&g->lock);
    g->replies_got = 0;
    g->replies_expected = g->count; /* fixed below, once we know who was reached */
    uv_mutex_unlock(&g->lock);
    int sent = workers_command_all(g, command);
    uv_mutex_lock(&g->lock);
    g->replies_expected = sent;
    uv_mutex_unlock(&g->lock);
    uv_async_send(&g->replies); /* re-check: everybody may have answered already */
}

/* Tell those waiting for this reload how it went. */
static void notify_waiting(struct workers *g, enum reload_result result, const char *error)
{
    if (result == RELOAD_OK)
        g->reloads_ok++;
    else if (result == RELOAD_REJECTED)
        g->reloads_rejected++;
    else
        g->reloads_failed++;
    struct reload_waiter *list = g->waiting;
    g->waiting = NULL;
    while (list) {
        struct reload_waiter *next = list->next; /* 'done' may free the waiter */
        list->done(list->data, result, error, g->generation);
        list = next;
    }
}

static void finish_reload(struct workers *g)
{
    free(g->source);
    free(g->first_error);
    g->source = g->first_error = NULL;
    g->phase = PHASE_IDLE;
    if (g->again) {
        const char *why = g->again;
        g->again = NULL;
        start_reload(g, why);
    }
}

static void log_committed(struct workers *g)
{
    log_info("reloaded %s%s (generation %d)", g->script, workers_serves_tls(g) ? " and the TLS certificates" : "",
             g->generation);
    if (g->open == 0 || g->canary) /* canary.c says what happens at promotion */
        return;
    if (g->rule.policy == RELOAD_DRAIN)
        log_info("draining connections of generations before %d (drain_timeout %g s)", g->generation,
                 g->rule.drain_timeout);
    else if (g->rule.policy == RELOAD_UPGRADE)
        log_info("upgraded %zu of %zu open connection(s) to generation %d", g->upgraded, g->open, g->generation);
    else if (g->has_upgrade)
        log_info("%zu open connection(s) keep the code they started with (reload_policy \"keep\")", g->open);
    else
        log_info("%zu open connection(s) keep the code they started with (the script has no upgrade())", g->open);
}

/* Every running worker has answered the current step: take the next. */
void workers_reload_advance(struct workers *g)
{
    switch (g->phase) {
    case PHASE_PREPARE:
        if (g->failures == 0) {
            send_step(g, PHASE_COMMIT, CMD_COMMIT);
            return;
        }
        log_error("reload (%s) failed, still serving generation %d: %s", g->why, g->generation,
                  g->first_error ? g->first_error : "a worker could not load it");
        send_step(g, PHASE_DISCARD, CMD_DISCARD);
        return;
    case PHASE_COMMIT:
        g->generation++;
        log_committed(g);
        canary_committed(g);
        notify_waiting(g, RELOAD_OK, NULL);
        finish_reload(g);
        return;
    case PHASE_DISCARD:
        notify_waiting(g, RELOAD_FAILED, g->first_error ? g->first_error : "a worker could not load it");
        finish_reload(g);
        return;
    case PHASE_CHECK: /* the gate answers, not the workers */
    case PHASE_IDLE:
        return;
    }
}

/* The candidate's checks are over: load it everywhere, or reject it. */
static void on_gate_done(void *data, bool ok, const char *message)
{
    struct workers *g = data;
    if (ok) {
        send_step(g, PHASE_PREPARE, CMD_PREPARE);
        return;
    }
    log_error("reload (%s) rejected, still serving generation %d: %s", g->why, g->generation, message);
    notify_waiting(g, RELOAD_REJECTED, message);
    finish_reload(g);
    uv_async_send(&g->replies); /* the workers may all have ended meanwhile */
}

/* Read the whole script: every worker compiles the very same text. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            char *bigger = realloc(buf, cap = cap ? 2 * cap : 16384);
            if (!bigger)
                break;
            buf = bigger;
        }
        size_t n = fread(buf + size, 1, cap - size, f);
        size += n;
        if (n == 0)
            break;
    }
    bool ok = !ferror(f) && buf;
    fclose(f);
    if (!ok) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

static void start_reload(struct workers *g, const char *why)
{
    if (g->phase != PHASE_IDLE) {
        g->again = why;
        return;
    }
    g->why = why;
    append_waiters(&g->waiting, g->waiting_next); /* this reload is theirs */
    g->waiting_next = NULL;
    g->source = read_file(g->script, &g->source_len);
    if (!g->source) {
        char error[PATH_MAX + 160];
        snprintf(error, sizeof error, "cannot read %s: %s", g->script, strerror(errno));
        log_error("reload (%s) failed, still serving generation %d: %s", why, g->generation, error);
        notify_waiting(g, RELOAD_FAILED, error);
        return;
    }
    uv_mutex_lock(&g->lock);
    g->failures = 0;
    g->open = g->upgraded = 0;
    g->has_upgrade = false;
    uv_mutex_unlock(&g->lock);
    g->phase = PHASE_CHECK;
    reload_gate_start(&g->gate, g->source, g->source_len);
}

static void on_reload_fired(void *data, const char *why)
{
    start_reload(data, why);
}

static void append_waiters(struct reload_waiter **list, struct reload_waiter *more)
{
    while (*list)
        list = &(*list)->next;
    *list = more;
}

void workers_reload(struct workers *g, const char *why, struct reload_waiter *waiter)
{
    if (waiter) {
        waiter->next = NULL;
        append_waiters(&g->waiting_next, waiter); /* the next reload to start is theirs */
    }
    start_reload(g, why);
}

/* --watch follows the certificate files of the TLS listeners too. */
static int watch_certificates(struct workers *g)
{
    const struct cli_options *o = g->options;
    int rc = 0;
    for (int i = 0; i < o->tls_cert_count && rc == 0; i++) {
        rc = reload_trigger_watch_file(&g->trigger, &g->loop, o->tls_certs[i]);
        if (rc == 0)
            rc = reload_trigger_watch_file(&g->trigger, &g->loop, o->tls_keys[i]);
    }
    if (rc == 0 && o->tls_client_ca)
        rc = reload_trigger_watch_file(&g->trigger, &g->loop, o->tls_client_ca);
    return rc;
}

/* Before any worker starts: SIGHUP and --watch, and the script's selftest
 * (a script whose selftest fails never serves). Returns 0, or -1 after
 * logging why. */
int workers_reload_start_triggers(struct workers *g)
{
    if (reload_trigger_init(&g->trigger, &g->loop, g->script, g->options->watch, on_reload_fired, g) != 0 ||
        watch_certificates(g) != 0)
        return -1;
    reload_gate_init(&g->gate, &g->loop, g->options, g->lua_dir, g->script, g->script_dir, g->chunkname,
                     &g->trigger, on_gate_done, g);
    size_t len = 0;
    char *source = read_file(g->script, &len);
    int rc = source ? reload_gate_at_start(&g->gate, source, len) : 0; /* unreadable: the workers say so */
    free(source);
    return rc;
}
