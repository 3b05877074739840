/*
 * console.c - see console.h. The coordinator's half runs on the main
 * thread; console_answer_query() runs on each worker's. A query (show
 * conns, kill) is asked of every running worker at once through its
 * command bits, one query at a time (others wait in line); each worker
 * leaves its answer under the group's lock and wakes 'answers'. The
 * query is answered when every worker asked has answered, or after one
 * second without those still stuck in a callback.
 */
#include "console.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "conn.h"
#include "error_ring.h"
#include "generations.h"
#include "log.h"
#include "metrics_http.h"
#include "metrics_series.h"
#include "protocol.h"
#include "workers_group.h"

#define QUERY_TIMEOUT_MS 1000

struct query {
    struct admin_request *r;
    enum query_kind kind;
    uint64_t id;
    struct query *next;
};

struct console {
    struct workers *g;
    struct metrics_http *http;
    char http_name[LISTEN_SPEC_STRLEN];
    struct admin *admin;
    char admin_name[LISTEN_SPEC_STRLEN];
    uv_async_t answers;
    uv_timer_t deadline;
    struct query *queue;   /* its head is asked of the workers */
    unsigned seq;          /* of the query asked */
    bool *asked;           /* by worker: asked the current query */
    int handles;           /* of ours not yet closed: freed at 0 */
};

/* ---- The worker side. ---- */

struct rows {
    struct text_buf *out;
    int worker;
};

/* "3.2s" */
static void add_seconds(struct text_buf *out, uint64_t ms)
{
    text_buf_printf(out, " %.1fs", (double)ms / 1000);
}

static void add_row(struct conn *c, void *arg)
{
    struct rows *rows = arg;
    struct text_buf *out = rows->out;
    const char *listener;
    int generation;
    protocol_describe(c, &listener, &generation);
    char peer[ADDR_STRLEN];
    addr_format(conn_peer(c), peer, sizeof peer);
    uint64_t in, sent;
    conn_traffic(c, &in, &sent);
    text_buf_printf(out, "%" PRIu64 " %d %s %s", conn_id(c), rows->worker, listener ? listener : "-", peer);
    add_seconds(out, conn_age_ms(c));
    add_seconds(out, conn_idle_ms(c));
    text_buf_printf(out, " %" PRIu64 " %" PRIu64 " %zu %d %s\n", in, sent, conn_write_buffer_size(c), generation,
                    conn_is_closing(c) ? "closing" : conn_is_reading(c) ? "reading" : "paused");
}

static void collect(struct conn *c, void *arg)
{
    struct conn ***next = arg;
    *(*next)++ = c;
}

/* The rows of w's connections, oldest first (the list has the newest
 * first), or "" when it has none. */
static char *conn_rows(struct worker *w)
{
    size_t n = w->host.conns.count;
    struct conn **all = malloc((n ? n : 1) * sizeof *all), **next = all;
    if (!all)
        return NULL;
    conn_list_each(&w->host.conns, collect, &next);
    struct text_buf out;
    text_buf_init(&out);
    struct rows rows = {.out = &out, .worker = w->id};
    while (next > all)
        add_row(*--next, &rows);
    free(all);
    return text_buf_take(&out, NULL);
}

/* Abort connection 'id' if it is ours: its connection_lost runs. */
static char *kill_conn(struct worker *w, uint64_t id)
{
    struct conn *c = conn_list_find(&w->host.conns, id);
    if (!c || conn_is_closing(c))
        return NULL;
    char peer[ADDR_STRLEN];
    addr_format(conn_peer(c), peer, sizeof peer);
    log_with(LOG_INFO, &(struct log_fields){.peer = peer}, "closing %s: killed from the admin console", peer);
    conn_abort_for(c, END_ERROR, "killed from the admin console");
    return strdup("killed");
}

void console_answer_query(struct worker *w)
{
    struct workers *g = w->group;
    uv_mutex_lock(&g->lock);
    unsigned seq = w->query_seq;
    enum query_kind kind = w->query_kind;
    uint64_t id = w->query_id;
    uv_mutex_unlock(&g->lock);
    char *answer = kind == QUERY_CONNS ? conn_rows(w) : kill_conn(w, id);
    uv_mutex_lock(&g->lock);
    free(w->answer);
    w->answer = answer;
    w->answer_seq = seq;
    uv_mutex_unlock(&g->lock);
    uv_async_send(&g->console->answers);
}

/* ---- The coordinator side. ---- */

static void ask_next(struct console *con);

/* Ask every running worker the query at the head of the line. */
static void ask(struct console *con)
{
    struct workers *g = con->g;
    struct query *q = con->queue;
    con->seq++;
    uv_mutex_lock(&g->lock);
    for (int i = 0; i < g->count; i++) {
        struct worker *w = &g->list[i];
        con->asked[i] = w->alive;
        w->query_seq = con->seq;
        w->query_kind = q->kind;
        w->query_id = q->id;
    }
    uv_mutex_unlock(&g->lock);
    workers_command_all(g, CMD_QUERY);
}

/* Workers asked that have not answered yet (under g->lock). */
static int missing(struct console *con)
{
    int n = 0;
    for (int i = 0; i < con->g->count; i++) {
        if (con->asked[i] && con->g->list[i].answer_seq != con->seq)
            n++;
    }
    return n;
}

static void answer_conns(struct console *con, struct text_buf *out)
{
    struct workers *g = con->g;
    text_buf_puts(out, "id worker listener peer age idle in out buffered generation state\n");
    for (int i = 0; i < g->count; i++) {
        struct worker *w = &g->list[i];
        if (!con->asked[i])
            continue;
        if (w->answer_seq == con->seq && w->answer)
            text_buf_puts(out, w->answer);
        else if (w->answer_seq == con->seq)
            text_buf_printf(out, "# worker %d could not list its connections: out of memory\n", w->id);
        else
            text_buf_printf(out,
                            "# worker %d did not answer within 1 s (a callback is running); its connections are "
                            "not listed\n",
                            w->id);
    }
}

static void answer_kill(struct console *con, const struct query *q, struct text_buf *out, bool *ok)
{
    struct workers *g = con->g;
    int stuck = 0;
    for (int i = 0; i < g->count; i++) {
        struct worker *w = &g->list[i];
        if (con->asked[i] && w->answer_seq == con->seq && w->answer) {
            text_buf_printf(out, "killed connection %" PRIu64, q->id);
            *ok = true;
            return;
        }
        if (con->asked[i] && w->answer_seq != con->seq)
            stuck = w->id;
    }
    *ok = false;
    if (stuck)
        text_buf_printf(out, "no connection %" PRIu64 " in the workers that answered; worker %d did not answer "
                             "within 1 s (a callback is running): try again",
                        q->id, stuck);
    else
        text_buf_printf(out, "no connection %" PRIu64 " (see show conns)", q->id);
}

/* Answer the query at the head of the line with what the workers said. */
static void finish_query(struct console *con)
{
    struct query *q = con->queue;
    con->queue = q->next;
    uv_timer_stop(&con->deadline);
    struct text_buf out;
    text_buf_init(&out);
    bool ok = true;
    uv_mutex_lock(&con->g->lock);
    if (q->kind == QUERY_CONNS)
        answer_conns(con, &out);
    else
        answer_kill(con, q, &out, &ok);
    uv_mutex_unlock(&con->g->lock);
    char *text = text_buf_take(&out, NULL);
    admin_answer(q->r, text ? ok : false, text ? text : "out of memory");
    free(text);
    free(q);
    ask_next(con);
}

static void on_deadline(uv_timer_t *timer)
{
    finish_query(timer->data);
}

static void on_answers(uv_async_t *handle)
{
    struct console *con = handle->data;
    if (!con->queue)
        return;
    uv_mutex_lock(&con->g->lock);
    bool all = missing(con) == 0;
    uv_mutex_unlock(&con->g->lock);
    if (all)
        finish_query(con);
}

static void ask_next(struct console *con)
{
    if (!con->queue)
        return;
    ask(con);
    uv_timer_start(&con->deadline, on_deadline, QUERY_TIMEOUT_MS, 0);
    uv_async_send(&con->answers); /* nobody to ask: answer at once */
}

static void enqueue(struct console *con, struct admin_request *r, enum query_kind kind, uint64_t id)
{
    struct query *q = malloc(sizeof *q);
    if (!q) {
        admin_answer(r, false, "out of memory");
        return;
    }
    *q = (struct query){.r = r, .kind = kind, .id = id};
    struct query **end = &con->queue;
    while (*end)
        end = &(*end)->next;
    *end = q;
    if (con->queue == q)
        ask_next(con);
}

/* ---- The commands. ---- */

static void show_conns(struct admin_request *r, void *data)
{
    enqueue(data, r, QUERY_CONNS, 0);
}

static void kill_one(struct admin_request *r, uint64_t id, void *data)
{
    enqueue(data, r, QUERY_KILL, id);
}

static void show_errors(struct admin_request *r, void *data)
{
    (void)data;
    struct text_buf out;
    text_buf_init(&out);
    error_ring_format(&out);
    char *text = text_buf_take(&out, NULL);
    admin_answer(r, text != NULL, text ? text : "out of memory");
    free(text);
}

/* Read from the process-wide table at once: no worker is asked. */
static void show_generations(struct admin_request *r, void *data)
{
    (void)data;
    struct text_buf out;
    text_buf_init(&out);
    generations_format(&out);
    char *text = text_buf_take(&out, NULL);
    admin_answer(r, text != NULL, text ? text : "out of memory");
    free(text);
}

/* "max-connections=100 idle-timeout=0s ..." (0: off) */
static void add_limits(struct text_buf *out, const struct limits *l)
{
    text_buf_printf(out, "limits: max-connections=%zu idle-timeout=%gs max-write-buffer=%zu script-timeout=%gms "
                         "lua-memory=%zuMiB shutdown-timeout=%gs\n",
                    l->max_connections, (double)l->idle_timeout_ms / 1000, l->max_write_buffer,
                    (double)l->script_timeout_ms, l->lua_memory / (1024 * 1024),
                    (double)l->shutdown_timeout_ms / 1000);
}

static void show_info(struct admin_request *r, void *data)
{
    struct console *con = data;
    struct workers *g = con->g;
    struct text_buf out;
    text_buf_init(&out);
    text_buf_printf(&out, "version: %s\npid: %ld\nuptime: %.1f s\nworkers: %d\nlisteners:", LUAECHO_VERSION,
                    (long)getpid(), (double)(uv_hrtime() - g->started_ns) / 1e9, g->count);
    for (int i = 0; i < g->listener_count; i++)
        text_buf_printf(&out, " %s", g->listeners[i].name);
    text_buf_printf(&out, "\ngeneration: %d\nconnections: %zu\n", g->generation, atomic_load(&g->accepted));
    add_limits(&out, &g->limits);
    text_buf_printf(&out, "log level: %s\n", log_level_name(log_level()));
    if (con->http && g->options->metrics.kind == LISTEN_UNIX)
        text_buf_printf(&out, "metrics: %s\n", con->http_name);
    else if (con->http)
        text_buf_printf(&out, "metrics: http://%s/metrics\n", con->http_name);
    if (workers_shutting_down(g))
        text_buf_puts(&out, "state: shutting down\n");
    char *text = text_buf_take(&out, NULL);
    admin_answer(r, text != NULL, text ? text : "out of memory");
    free(text);
}

struct reload_request {
    struct reload_waiter waiter;
    struct admin_request *r;
};

static void reload_done(void *data, enum reload_result result, const char *error, int generation)
{
    struct reload_request *rr = data;
    char text[8192];
    if (result == RELOAD_OK)
        snprintf(text, sizeof text, "reloaded: generation %d", generation);
    else
        snprintf(text, sizeof text, "reload %s, still serving generation %d: %s",
                 result == RELOAD_REJECTED ? "rejected" : "failed", generation, error);
    admin_answer(rr->r, result == RELOAD_OK, text);
    free(rr);
}

static void reload(struct admin_request *r, void *data)
{
    struct console *con = data;
    if (workers_shutting_down(con->g)) {
        admin_answer(r, false, "shutting down: nothing to reload");
        return;
    }
    struct reload_request *rr = malloc(sizeof *rr);
    if (!rr) {
        admin_answer(r, false, "out of memory");
        return;
    }
    rr->r = r;
    rr->waiter = (struct reload_waiter){.done = reload_done, .data = rr};
    workers_reload(con->g, "admin console", &rr->waiter);
}

static void set_log_level(struct admin_request *r, enum log_level level, void *data)
{
    (void)data;
    log_set_level(level);
    char text[64];
    snprintf(text, sizeof text, "log level: %s", log_level_name(level));
    admin_answer(r, true, text);
}

static const struct admin_ops admin_ops = {
    .show_info = show_info,
    .show_conns = show_conns,
    .show_errors = show_errors,
    .show_generations = show_generations,
    .kill = kill_one,
    .reload = reload,
    .set_log_level = set_log_level,
};

/* ---- /metrics ---- */

static void render(struct text_buf *out, void *data)
{
    struct console *con = data;
    metrics_series_render(out, con->g);
}

static bool healthy(void *data)
{
    struct console *con = data;
    return !workers_shutting_down(con->g);
}

static const struct metrics_http_ops metrics_ops = {.render = render, .healthy = healthy};

/* ---- Opening and closing. ---- */

/* What to add to the error: a Unix socket's hint (a live one is not replaced). */
static const char *hint(const struct listen_spec *spec, int rc)
{
    return spec->kind == LISTEN_UNIX ? server_unix_hint(rc) : "";
}

static int open_endpoints(struct console *con)
{
    const struct cli_options *o = con->g->options;
    char name[LISTEN_SPEC_STRLEN];
    int rc;
    if (o->metrics_given &&
        (rc = metrics_http_open(&con->http, &con->g->loop, &o->metrics, &metrics_ops, con, con->http_name)) != 0) {
        log_error("cannot serve metrics on %s: %s%s", listen_spec_format(&o->metrics, NULL, name, sizeof name),
                  uv_strerror(rc), hint(&o->metrics, rc));
        return -1;
    }
    if (o->admin_given && (rc = admin_open(&con->admin, &con->g->loop, &o->admin, o->admin_allow_remote,
                                           &admin_ops, con, con->admin_name)) != 0) {
        log_error("cannot open the admin console on %s: %s%s", listen_spec_format(&o->admin, NULL, name, sizeof name),
                  rc == UV_EACCES ? "not a loopback address (add --admin-allow-remote to allow it)" : uv_strerror(rc),
                  rc == UV_EACCES ? "" : hint(&o->admin, rc));
        return -1;
    }
    return 0;
}

int console_open(struct workers *g)
{
    const struct cli_options *o = g->options;
    if (!o->metrics_given && !o->admin_given)
        return 0;
    struct console *con = calloc(1, sizeof *con);
    bool *asked = calloc((size_t)g->count, sizeof *asked);
    if (!con || !asked) {
        free(con);
        free(asked);
        log_error("out of memory");
        return -1;
    }
    con->g = g;
    con->asked = asked;
    g->console = con;
    uv_async_init(&g->loop, &con->answers, on_answers);
    con->answers.data = con;
    uv_timer_init(&g->loop, &con->deadline);
    con->deadline.data = con;
    con->handles = 2;
    return open_endpoints(con);
}

void console_announce(struct workers *g)
{
    struct console *con = g->console;
    if (con && con->http && g->options->metrics.kind == LISTEN_UNIX)
        log_always("metrics on %s (GET /metrics)", con->http_name);
    else if (con && con->http)
        log_always("metrics on http://%s/metrics", con->http_name);
    if (con && con->admin)
        log_always("admin console on %s", con->admin_name);
}

static void on_closed(uv_handle_t *handle)
{
    struct console *con = handle->data;
    if (--con->handles == 0) {
        free(con->asked);
        free(con);
    }
}

void console_close(struct workers *g)
{
    struct console *con = g->console;
    if (!con)
        return;
    g->console = NULL;
    while (con->queue) { /* nobody left to ask */
        struct query *q = con->queue;
        con->queue = q->next;
        admin_answer(q->r, false, "the server has stopped");
        free(q);
    }
    if (con->http)
        metrics_http_close(con->http);
    if (con->admin)
        admin_close(con->admin);
    uv_close((uv_handle_t *)&con->answers, on_closed);
    uv_close((uv_handle_t *)&con->deadline, on_closed);
}
