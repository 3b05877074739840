/*
 * canary.c - see canary.h. The coordinator owns the decision: a timer for
 * the window, and an async handle the worker whose error reached the
 * threshold rings (generations.c calls it). The table's state changes the
 * moment the coordinator decides, so every worker's next accept already
 * follows it; the commands then move or drain the open connections.
 * Rule: a worker acts only on what the table says of each server's
 * newest generation, so a promotion or rollback that arrives after a
 * newer swap changes nothing.
 */
#include "canary.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>

#include "channel_script.h"
#include "drain.h"
#include "generations.h"
#include "log.h"
#include "protocol.h"
#include "workers_group.h"

struct canary {
    struct workers *g;
    uv_timer_t window;
    uv_async_t alarm;
    int generation; /* the canary under way; 0: none */
    int handles;    /* not yet closed: freed at 0 */
};

/* ---- The coordinator's side. ---- */

/* Rung on a worker's thread (generations.c, no lock held). */
static void ring(void *data)
{
    struct canary *k = data;
    uv_async_send(&k->alarm);
}

/* The window passed with fewer errors than the threshold. */
static void on_window_end(uv_timer_t *timer)
{
    struct canary *k = timer->data;
    struct generation_row row;
    if (!k->generation || !generations_get(k->generation, &row, NULL))
        return;
    generations_promote(k->generation);
    log_info("promoted generation %d: %llu error(s) in its %g s canary window; every new connection gets it",
             k->generation, (unsigned long long)row.window_errors, k->g->options->canary);
    k->generation = 0;
    uv_mutex_lock(&k->g->lock); /* workers write the rule at a commit */
    struct reload_rule rule = k->g->rule;
    uv_mutex_unlock(&k->g->lock);
    if (rule.policy == RELOAD_DRAIN)
        log_info("draining connections of generations before %d (drain_timeout %g s)", row.generation,
                 rule.drain_timeout);
    workers_command_all(k->g, CMD_PROMOTE);
}

/* A worker counted the canary's last allowed error: roll it back. */
static void on_alarm(uv_async_t *handle)
{
    struct canary *k = handle->data;
    struct generation_row row, active = {0};
    if (!k->generation || !generations_get(k->generation, &row, &active) || row.state != GENERATION_CANARY ||
        row.alarm_ns == 0)
        return;
    char why[GENERATIONS_ERROR_MAX + 120];
    /* The threshold, and when it was reached: more may have come since. */
    snprintf(why, sizeof why, "rolled back generation %d to %d: %ld errors in %.1f s, first: %s", row.generation,
             active.generation, k->g->options->rollback_errors, (double)(row.alarm_ns - row.loaded_ns) / 1e9,
             row.first_error);
    generations_roll_back(k->generation, why);
    uv_timer_stop(&k->window);
    k->generation = 0;
    log_warn("%s", why);
    workers_command_all(k->g, CMD_ROLLBACK);
}

int canary_open(struct workers *g)
{
    generations_reset(g->generation);
    if (g->options->canary <= 0)
        return 0;
    struct canary *k = calloc(1, sizeof *k);
    if (!k) {
        log_error("out of memory");
        return -1;
    }
    k->g = g;
    uv_timer_init(&g->loop, &k->window);
    k->window.data = k;
    uv_unref((uv_handle_t *)&k->window);
    uv_async_init(&g->loop, &k->alarm, on_alarm);
    k->alarm.data = k;
    uv_unref((uv_handle_t *)&k->alarm);
    k->handles = 2;
    g->canary = k;
    generations_set_alarm(ring, k);
    return 0;
}

void canary_committed(struct workers *g)
{
    struct canary *k = g->canary;
    const struct cli_options *o = g->options;
    if (!k) {
        generations_add(g->generation, false, 100, 0);
        return;
    }
    struct generation_row active = {0};
    if (k->generation)
        log_info("generation %d replaces canary generation %d before its window ended", g->generation, k->generation);
    generations_add(g->generation, true, (int)o->canary_share, (int)o->rollback_errors);
    generations_get(g->generation, NULL, &active);
    k->generation = g->generation;
    uv_timer_start(&k->window, on_window_end, (uint64_t)ceil(o->canary * 1000), 0);
    log_info("generation %d is a canary for %g s: %ld%% of new connections get it, the others generation %d; "
             "%ld error(s) roll it back; open connections keep their code until it is promoted",
             g->generation, o->canary, o->canary_share, active.generation, o->rollback_errors);
}

static void on_closed(uv_handle_t *handle)
{
    struct canary *k = handle->data;
    if (--k->handles == 0)
        free(k);
}

void canary_close(struct workers *g)
{
    struct canary *k = g->canary;
    if (!k)
        return;
    g->canary = NULL;
    generations_set_alarm(NULL, NULL);
    uv_close((uv_handle_t *)&k->window, on_closed);
    uv_close((uv_handle_t *)&k->alarm, on_closed);
}

/* ---- A worker's side. ---- */

void canary_worker_before_commit(struct worker *w)
{
    w->pending.canary = w->group->canary != NULL;
    w->rule = w->pending.rule; /* kept for the promotion */
    uv_mutex_lock(&w->group->lock);
    w->group->rule = w->rule; /* every worker loaded the same text: the same rule */
    uv_mutex_unlock(&w->group->lock);
}

/* Start draining the generations before 'generation' on w's loop. */
static void start_drain(struct worker *w, int generation)
{
    if (!w->drain)
        w->drain = drain_new(&w->host.loop, &w->host.conns);
    if (!w->drain) {
        log_error("drain: out of memory: connections of older generations keep their code");
        return;
    }
    drain_start(w->drain, generation, w->rule.drain_timeout);
}

/* The newest generation w's servers serve (0: none). */
static int newest(const struct worker *w)
{
    for (int i = 0; i < w->group->listener_count; i++) {
        if (w->servers[i])
            return w->servers[i]->protocol.generation;
    }
    return 0;
}

void canary_worker_committed(struct worker *w)
{
    if (!w->pending.canary && w->rule.policy == RELOAD_DRAIN && newest(w) > 0)
        start_drain(w, newest(w));
}

/* Open connections of one server, moved to another class. */
struct move {
    struct server *s;
    const struct protocol_class *to;
    int from;      /* move those of this generation; 0: of any older one */
    size_t seen, moved;
};

static void move_one(struct conn *c, void *arg)
{
    struct move *m = arg;
    if (conn_get_events(c) != &protocol_events || protocol_owner(c) != &m->s->owner || conn_is_closing(c))
        return;
    const char *listener;
    int generation;
    protocol_describe(c, &listener, &generation);
    if (generation == 0 || (m->from ? generation != m->from : generation >= m->to->generation))
        return;
    m->seen++;
    if (protocol_upgrade(c, m->to))
        m->moved++;
}

/* The canary of s was promoted: drop the baseline, apply the policy. */
static void promote(struct worker *w, struct server *s, struct move *m)
{
    server_end_canary(s);
    if (w->rule.policy == RELOAD_UPGRADE) {
        struct move one = {.s = s, .to = &s->protocol};
        conn_list_each(&w->host.conns, move_one, &one);
        m->seen += one.seen;
        m->moved += one.moved;
    }
}

static void promote_all(struct worker *w)
{
    struct move m = {0};
    bool promoted = false;
    for (int i = 0; i < w->group->listener_count; i++) {
        struct server *s = w->servers[i];
        if (s && s->previous.table_ref != LUA_NOREF && generations_state(s->protocol.generation) == GENERATION_ACTIVE) {
            promote(w, s, &m);
            promoted = true;
        }
    }
    if (promoted && w->rule.policy == RELOAD_DRAIN)
        start_drain(w, newest(w));
    if (m.seen > 0)
        log_info("upgraded %zu of %zu open connection(s) to generation %d", m.moved, m.seen, newest(w));
}

/* The canary of s was rolled back: its connections go back to the
 * baseline by the baseline's upgrade(instance), where it has one. */
static void roll_back_all(struct worker *w)
{
    struct move m = {0};
    int bad = 0, to = 0;
    for (int i = 0; i < w->group->listener_count; i++) {
        struct server *s = w->servers[i];
        if (!s || s->previous.table_ref == LUA_NOREF ||
            generations_state(s->protocol.generation) != GENERATION_ROLLED_BACK)
            continue;
        bad = s->protocol.generation;
        to = s->previous.generation;
        struct move one = {.s = s, .to = &s->previous, .from = bad};
        conn_list_each(&w->host.conns, move_one, &one);
        m.seen += one.seen;
        m.moved += one.moved;
    }
    channel_script_rolled_back();
    if (m.moved > 0)
        log_info("rollback: moved %zu open connection(s) back from generation %d to %d by its upgrade()", m.moved,
                 bad, to);
    if (m.seen > m.moved)
        log_warn("rollback: %zu open connection(s) keep generation %d's instance and code (generation %d's "
                 "upgrade() is missing or failed)",
                 m.seen - m.moved, bad, to);
}

void canary_worker_command(struct worker *w, unsigned commands)
{
    if (commands & CMD_PROMOTE)
        promote_all(w);
    if (commands & CMD_ROLLBACK)
        roll_back_all(w);
}

void canary_worker_close(struct worker *w)
{
    drain_free(w->drain);
    w->drain = NULL;
}
