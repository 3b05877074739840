/*
 * redis_conn.c - one Redis connection on a loop (redis_conn.h), on hiredis'
 * async API, driven by the loop through redis_uv.c.
 * Relies on hiredis 0.14's rules: a context may be freed inside a reply
 * callback (it defers the free) but not inside its connect callback, and it
 * calls every callback still registered with a NULL reply when it frees a
 * context; after a failed connect or a lost link it frees the context itself.
 * Rules here: the hiredis context is freed only inside a reply callback or
 * from this file's timer, never from a connect or disconnect callback; the
 * connection's own memory goes only in on_timer_closed(), after its context
 * is gone; a callback from a context that is no longer conn->ac is stale and
 * ignored.
 */
#include "redis_conn.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_uv.h"

enum link_state {
    FIRST_ATTEMPT, /* the first connect attempt: commands are queued */
    CONNECTING,    /* a later attempt: commands are refused */
    UP,
    WAITING,       /* backing off before the next attempt */
    CLOSING,       /* closed: waiting for the timer to free it */
};

/* One command awaiting its reply; hiredis' privdata. */
struct pending {
    struct redis_conn *conn;
    redis_conn_reply_fn *done;
    void *data;
    bool answered; /* told CLOSED already: the reply is only freed */
    struct pending *prev, *next;
};

/* A name lookup in flight. It may outlive the attempt that started it
 * (given up at the connect timeout), never the connection: the memory
 * waits for every lookup's callback. */
struct lookup {
    uv_getaddrinfo_t req;
    struct redis_conn *conn;
    unsigned attempt;
};

/* A channel or pattern kept for the next connect. */
struct subscription {
    bool pattern;
    size_t len;
    struct subscription *next;
    char name[];
};

struct redis_conn {
    uv_loop_t *loop;
    struct redis_url url;
    char described[REDIS_URL_PATH_MAX + REDIS_URL_HOST_MAX + 32];
    struct redis_conn_options options;
    const struct redis_conn_events *events;
    void *data;
    redisAsyncContext *ac; /* NULL while waiting or closing */
    uv_timer_t timer;      /* backoff, connect timeout, the deferred free */
    enum link_state state;
    int reported;          /* -1 nothing yet, 0 down, 1 up: what 'state' was told */
    int setup_left;        /* AUTH and SELECT replies still awaited */
    uint64_t backoff_ms;
    uint64_t down_since;   /* uv_now of the outage's start */
    unsigned attempts;     /* failed attempts in this outage */
    char start_error[REDIS_URL_HOST_MAX + 256]; /* why an attempt could not even start (reported from the timer) */
    unsigned attempt_seq;  /* which attempt a lookup belongs to */
    struct lookup *lookup; /* the current attempt's, while in flight */
    int lookups;           /* in flight, the current one and abandoned ones */
    bool free_waits;       /* closed: the memory goes when the last lookup ends */
    bool subscriber;
    struct subscription *subscriptions;
    size_t subscription_count;
    struct pending *pending;
    size_t pending_count;
    struct redis_conn *prev, *next; /* in 'open_conns' */
};

/* This thread's connections not yet freed, and whether its loop is shutting down. */
static _Thread_local struct redis_conn *open_conns;
static _Thread_local bool shutting_down;

static void start_attempt(struct redis_conn *conn);
static void on_timer_closed(uv_handle_t *handle);

const char *redis_conn_error_name(enum redis_conn_error error)
{
    switch (error) {
    case REDIS_CONN_OK: return "ok";
    case REDIS_CONN_DISCONNECTED: return "disconnected";
    case REDIS_CONN_BUSY: return "busy";
    case REDIS_CONN_CLOSED: return "closed";
    case REDIS_CONN_SUBSCRIBER: return "subscriber";
    case REDIS_CONN_NOMEM: return "out of memory";
    }
    return "unknown";
}

/* Whether the connection should keep its loop alive now. */
static bool wants_ref(const struct redis_conn *conn)
{
    if (conn->state == CLOSING)
        return true; /* its timer must run for the memory to go */
    return conn->pending_count > 0 || (conn->subscription_count > 0 && !shutting_down);
}

static void set_ref(uv_handle_t *handle, bool ref)
{
    if (ref)
        uv_ref(handle);
    else
        uv_unref(handle);
}

static void update_ref(struct redis_conn *conn)
{
    bool ref = wants_ref(conn);
    set_ref((uv_handle_t *)&conn->timer, ref);
    if (conn->ac && redis_uv_handle(conn->ac))
        set_ref(redis_uv_handle(conn->ac), ref);
}

/* Tell the owner about a change of state, once per change. */
static void report(struct redis_conn *conn, bool up, const char *reason)
{
    if (conn->reported == (int)up)
        return;
    conn->reported = up;
    if (conn->events->state)
        conn->events->state(conn, up, reason, conn->data);
}

static void on_timer(uv_timer_t *timer);

/* The attempt or the link failed for 'reason': say so once per outage,
 * then wait before the next attempt. The context is already detached. */
static void link_failed(struct redis_conn *conn, const char *reason)
{
    if (conn->state == CLOSING)
        return;
    bool first_failure = conn->reported != 0;
    if (first_failure) {
        conn->down_since = uv_now(conn->loop);
        conn->attempts = 0;
        if (conn->reported == 1)
            log_warn("%s: lost the connection to %s: %s; reconnecting with backoff up to %g s", conn->options.name,
                     conn->described, reason, (double)conn->options.backoff_max_ms / 1000);
        else
            log_warn("%s: cannot connect to %s: %s; retrying with backoff up to %g s", conn->options.name,
                     conn->described, reason, (double)conn->options.backoff_max_ms / 1000);
    } else {
        log_debug("%s: %s still unreachable: %s", conn->options.name, conn->described, reason);
    }
    conn->attempts++;
    conn->state = WAITING;
    uint64_t delay = conn->reported == 1 ? conn->options.backoff_min_ms : conn->backoff_ms;
    conn->backoff_ms = delay * 2 > conn->options.backoff_max_ms ? conn->options.backoff_max_ms : delay * 2;
    uv_timer_start(&conn->timer, on_timer, delay, 0);
    update_ref(conn);
    report(conn, false, reason);
}

/* AUTH and SELECT done (or none needed): the link is up. */
static void link_up(struct redis_conn *conn)
{
    uv_timer_stop(&conn->timer);
    conn->state = UP;
    if (conn->reported == 0)
        log_info("%s: connected to %s after %.1f s and %u failed attempts", conn->options.name,
                 conn->described, (double)(uv_now(conn->loop) - conn->down_since) / 1000, conn->attempts);
    else
        log_debug("%s: connected to %s", conn->options.name, conn->described);
    conn->backoff_ms = conn->options.backoff_min_ms;
    report(conn, true, NULL);
}

/* The reply to AUTH or SELECT ('privdata' is the connection). */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_conn *conn = privdata;
    redisReply *reply = r;
    if (!reply || ac != conn->ac || conn->state == CLOSING)
        return; /* the context is going: its disconnect callback says why */
    if (reply->type == REDIS_REPLY_ERROR) {
        char reason[256];
        snprintf(reason, sizeof reason, "%.*s", (int)reply->len, reply->str);
        conn->ac = NULL;
        redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
        link_failed(conn, reason);
        return;
    }
    if (--conn->setup_left == 0)
        link_up(conn);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *conn = ac->data;
    if (ac != conn->ac || conn->state == CLOSING)
        return;
    if (status != REDIS_OK) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s", ac->errstr[0] ? ac->errstr : "connect failed");
        conn->ac = NULL; /* hiredis frees it when this returns */
        link_failed(conn, reason);
        return;
    }
    if (conn->setup_left == 0)
        link_up(conn);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *conn = ac->data;
    if (ac != conn->ac || conn->state == CLOSING)
        return;
    conn->ac = NULL; /* hiredis frees it when this returns */
    link_failed(conn, status == REDIS_OK || !ac->errstr[0] ? "the connection was closed" : ac->errstr);
}

/* A command's reply, or NULL when its context went first. */
static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct pending *p = privdata;
    if (p->answered) { /* told CLOSED already, and unlinked then */
        free(p);
        return;
    }
    struct redis_conn *conn = p->conn;
    if (p->prev)
        p->prev->next = p->next;
    else
        conn->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    conn->pending_count--;
    redis_conn_reply_fn *done = p->done;
    void *data = p->data;
    free(p);
    update_ref(conn);
    if (conn->state == CLOSING)
        done(conn, NULL, REDIS_CONN_CLOSED, data);
    else
        done(conn, r, r ? REDIS_CONN_OK : REDIS_CONN_DISCONNECTED, data);
}

/* Whether 'name' of 'len' bytes is one of the connection's subscriptions. */
static struct subscription **find_subscription(struct redis_conn *conn, const char *name, size_t len, bool pattern)
{
    struct subscription **at = &conn->subscriptions;
    for (; *at; at = &(*at)->next)
        if ((*at)->pattern == pattern && (*at)->len == len && memcmp((*at)->name, name, len) == 0)
            return at;
    return NULL;
}

static bool is_string(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

/* Every reply hiredis routes to a channel or a pattern: confirmations,
 * which need nothing, and messages, handed on while still subscribed. */
static void on_subscription_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_conn *conn = privdata;
    redisReply *reply = r;
    if (!reply || ac != conn->ac || conn->state == CLOSING || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 3)
        return;
    redisReply **e = reply->element;
    if (!is_string(e[0]) || !is_string(e[1]) || !is_string(e[2]))
        return;
    bool pmessage = reply->elements == 4 && strcmp(e[0]->str, "pmessage") == 0 && is_string(e[3]);
    if (!pmessage && strcmp(e[0]->str, "message") != 0)
        return;
    if (!find_subscription(conn, e[1]->str, e[1]->len, pmessage) || !conn->events->message)
        return; /* unsubscribed already: in flight before the UNSUBSCRIBE */
    if (pmessage)
        conn->events->message(conn, e[1]->str, e[1]->len, e[2]->str, e[2]->len, e[3]->str, e[3]->len, conn->data);
    else
        conn->events->message(conn, NULL, 0, e[1]->str, e[1]->len, e[2]->str, e[2]->len, conn->data);
}

/* Send (P)SUBSCRIBE or (P)UNSUBSCRIBE for one name on the current context. */
static void send_subscription(struct redis_conn *conn, const char *name, size_t len, bool pattern, bool on)
{
    const char *verb = on ? (pattern ? "PSUBSCRIBE" : "SUBSCRIBE") : (pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE");
    const char *argv[] = {verb, name};
    size_t lens[] = {strlen(verb), len};
    redisAsyncCommandArgv(conn->ac, on ? on_subscription_reply : NULL, on ? conn : NULL, 2, argv, lens);
}

/* AUTH and SELECT as the URL asks, then the subscriptions: the first
 * commands of every new context, ahead of anything a caller sends. */
static void send_setup(struct redis_conn *conn)
{
    const struct redis_url *u = &conn->url;
    conn->setup_left = 0;
    if (u->has_password) {
        const char *argv[] = {"AUTH", u->user, u->password};
        size_t lens[] = {4, strlen(u->user), strlen(u->password)};
        bool with_user = u->user[0] != '\0';
        const char **args = with_user ? argv : (const char *[]){"AUTH", u->password};
        const size_t *arglens = with_user ? lens : (const size_t[]){4, strlen(u->password)};
        if (redisAsyncCommandArgv(conn->ac, on_setup_reply, conn, with_user ? 3 : 2, args, arglens) == REDIS_OK)
            conn->setup_left++;
    }
    if (u->db != 0 && redisAsyncCommand(conn->ac, on_setup_reply, conn, "SELECT %d", u->db) == REDIS_OK)
        conn->setup_left++;
    for (struct subscription *s = conn->subscriptions; s; s = s->next)
        send_subscription(conn, s->name, s->len, s->pattern, true);
}

/* A new hiredis context for 'host' (an address: no lookup happens in
 * hiredis) or, when NULL, the URL's socket path, attached to the loop;
 * NULL with 'reason' filled in when it cannot even start. */
static redisAsyncContext *new_context(struct redis_conn *conn, const char *host, char *reason, size_t size)
{
    redisAsyncContext *ac = host ? redisAsyncConnect(host, conn->url.port) : redisAsyncConnectUnix(conn->url.path);
    if (!ac) {
        snprintf(reason, size, "out of memory");
        return NULL;
    }
    if (ac->err) {
        snprintf(reason, size, "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    if (redis_uv_attach(ac, conn->loop) != 0) {
        snprintf(reason, size, "cannot watch its socket");
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = conn;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

/* Connect to 'host' (an address; NULL: the URL's socket path). One that
 * cannot even start is reported from the timer, never from here. */
static void connect_to(struct redis_conn *conn, const char *host)
{
    conn->ac = new_context(conn, host, conn->start_error, sizeof conn->start_error);
    if (conn->ac)
        send_setup(conn);
    else
        uv_timer_start(&conn->timer, on_timer, 0, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lookup *l = req->data;
    struct redis_conn *conn = l->conn;
    bool current = l->attempt == conn->attempt_seq && conn->lookup == l;
    conn->lookups--;
    if (conn->lookup == l)
        conn->lookup = NULL;
    free(l);
    if (conn->state == CLOSING) {
        if (conn->free_waits && conn->lookups == 0)
            uv_close((uv_handle_t *)&conn->timer, on_timer_closed);
    } else if (current && status < 0) {
        char reason[512];
        snprintf(reason, sizeof reason, "cannot look up %s: %s", conn->url.host, uv_strerror(status));
        uv_timer_stop(&conn->timer);
        link_failed(conn, reason);
    } else if (current) {
        const struct addrinfo *pick = res; /* IPv4 first, as hiredis itself does */
        for (const struct addrinfo *a = res; a; a = a->ai_next)
            if (a->ai_family == AF_INET) {
                pick = a;
                break;
            }
        char ip[INET6_ADDRSTRLEN] = "";
        const void *where = pick->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                                                       : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
        inet_ntop(pick->ai_family, where, ip, sizeof ip);
        connect_to(conn, ip);
        update_ref(conn);
    }
    uv_freeaddrinfo(res);
}

/* Look the host up without blocking the loop (hiredis would, inside its
 * connect), then connect to what it names. */
static void start_lookup(struct redis_conn *conn)
{
    struct lookup *l = calloc(1, sizeof *l);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int err = l ? uv_getaddrinfo(conn->loop, &l->req, on_resolved, conn->url.host, NULL, &hints) : UV_ENOMEM;
    if (err != 0) {
        free(l);
        snprintf(conn->start_error, sizeof conn->start_error, "cannot look up %s: %s", conn->url.host,
                 uv_strerror(err));
        uv_timer_start(&conn->timer, on_timer, 0, 0);
        return;
    }
    l->req.data = l;
    l->conn = conn;
    l->attempt = conn->attempt_seq;
    conn->lookup = l;
    conn->lookups++;
}

static bool is_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* One connect attempt: its deadline, then the lookup or the connect. The
 * first attempt leaves the lookup to hiredis (blocking, once) so that
 * commands can queue in its context at once; reconnections look up in
 * libuv's thread pool, so a DNS outage never stalls the loop again and again. */
static void start_attempt(struct redis_conn *conn)
{
    conn->state = conn->reported == -1 ? FIRST_ATTEMPT : CONNECTING;
    conn->attempt_seq++;
    uv_timer_start(&conn->timer, on_timer, conn->options.connect_timeout_ms, 0);
    if (conn->url.is_unix)
        connect_to(conn, NULL);
    else if (conn->state == FIRST_ATTEMPT || is_address(conn->url.host))
        connect_to(conn, conn->url.host);
    else
        start_lookup(conn);
    update_ref(conn);
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct redis_conn *conn = handle->data;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        open_conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    if (conn->events->closed)
        conn->events->closed(conn, conn->data);
    while (conn->subscriptions) {
        struct subscription *s = conn->subscriptions;
        conn->subscriptions = s->next;
        free(s);
    }
    free(conn);
}

/* A closed connection's pending commands answered CLOSED; hiredis' NULL
 * replies, when it frees the context, then only free them. */
static void answer_closed(struct redis_conn *conn)
{
    struct pending *p = conn->pending;
    conn->pending = NULL;
    conn->pending_count = 0;
    while (p) {
        struct pending *next = p->next;
        p->answered = true;
        p->done(conn, NULL, REDIS_CONN_CLOSED, p->data);
        p = next;
    }
}

/* The one timer: the next attempt, an attempt's deadline, or the free. */
static void on_timer(uv_timer_t *timer)
{
    struct redis_conn *conn = timer->data;
    switch (conn->state) {
    case WAITING:
        start_attempt(conn);
        break;
    case FIRST_ATTEMPT:
    case CONNECTING: {
        redisAsyncContext *ac = conn->ac;
        conn->ac = NULL;
        if (ac) {
            redisAsyncFree(ac); /* its pending commands fail: disconnected */
            link_failed(conn, "connect timed out");
        } else if (conn->lookup) {
            conn->lookup = NULL; /* abandoned: its result will be ignored */
            link_failed(conn, "the name lookup timed out");
        } else {
            link_failed(conn, conn->start_error);
        }
        break;
    }
    case UP:
        break;
    case CLOSING:
        answer_closed(conn);
        if (conn->ac) {
            redisAsyncContext *ac = conn->ac;
            conn->ac = NULL;
            redisAsyncFree(ac);
        }
        if (conn->lookup)
            uv_cancel((uv_req_t *)&conn->lookup->req); /* it ends sooner, or not: its callback frees */
        if (conn->lookups > 0)
            conn->free_waits = true; /* on_resolved closes the timer */
        else
            uv_close((uv_handle_t *)&conn->timer, on_timer_closed);
        break;
    }
}

struct redis_conn *redis_conn_open(uv_loop_t *loop, const struct redis_url *url,
                                   const struct redis_conn_options *options, const struct redis_conn_events *events,
                                   void *data)
{
    struct redis_conn *conn = calloc(1, sizeof *conn);
    if (!conn)
        return NULL;
    conn->loop = loop;
    conn->url = *url;
    redis_url_describe(url, conn->described, sizeof conn->described);
    conn->options = *options;
    if (!conn->options.name)
        conn->options.name = "redis";
    if (!conn->options.max_pending)
        conn->options.max_pending = 1024;
    if (!conn->options.backoff_min_ms)
        conn->options.backoff_min_ms = 100;
    if (!conn->options.backoff_max_ms)
        conn->options.backoff_max_ms = 5000;
    if (!conn->options.connect_timeout_ms)
        conn->options.connect_timeout_ms = 3000;
    conn->backoff_ms = conn->options.backoff_min_ms;
    conn->events = events;
    conn->data = data;
    conn->reported = -1;
    uv_timer_init(loop, &conn->timer);
    conn->timer.data = conn;
    conn->next = open_conns;
    if (open_conns)
        open_conns->prev = conn;
    open_conns = conn;
    /* The first attempt starts now so commands can queue behind it; one
     * that cannot even start is reported from the timer, not from here. */
    start_attempt(conn);
    return conn;
}

/* Whether a command may be sent now, as a redis_conn_error. */
static int can_send(const struct redis_conn *conn)
{
    if (conn->state == CLOSING)
        return REDIS_CONN_CLOSED;
    if (conn->subscriber)
        return REDIS_CONN_SUBSCRIBER;
    if (!conn->ac || (conn->state != UP && conn->state != FIRST_ATTEMPT))
        return REDIS_CONN_DISCONNECTED;
    if (conn->pending_count >= conn->options.max_pending)
        return REDIS_CONN_BUSY;
    return REDIS_CONN_OK;
}

int redis_conn_command(struct redis_conn *conn, int argc, const char *const *argv, const size_t *lens,
                       redis_conn_reply_fn *done, void *data)
{
    int refused = can_send(conn);
    if (refused != REDIS_CONN_OK)
        return refused;
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        return REDIS_CONN_NOMEM;
    *p = (struct pending){.conn = conn, .done = done, .data = data, .next = conn->pending};
    if (redisAsyncCommandArgv(conn->ac, on_reply, p, argc, (const char **)argv, lens) != REDIS_OK) {
        free(p); /* hiredis refuses only a context that is going away or out of memory */
        return conn->ac->err == REDIS_ERR_OOM ? REDIS_CONN_NOMEM : REDIS_CONN_DISCONNECTED;
    }
    if (conn->pending)
        conn->pending->prev = p;
    conn->pending = p;
    conn->pending_count++;
    update_ref(conn);
    return REDIS_CONN_OK;
}

int redis_conn_subscribe(struct redis_conn *conn, const char *name, size_t len, bool pattern)
{
    if (conn->state == CLOSING)
        return REDIS_CONN_CLOSED;
    conn->subscriber = true;
    if (find_subscription(conn, name, len, pattern))
        return REDIS_CONN_OK;
    struct subscription *s = malloc(sizeof *s + len + 1);
    if (!s)
        return REDIS_CONN_NOMEM;
    *s = (struct subscription){.pattern = pattern, .len = len, .next = conn->subscriptions};
    memcpy(s->name, name, len);
    s->name[len] = '\0';
    conn->subscriptions = s;
    conn->subscription_count++;
    if (conn->ac) /* else the next connect subscribes (send_setup) */
        send_subscription(conn, name, len, pattern, true);
    update_ref(conn);
    return REDIS_CONN_OK;
}

void redis_conn_unsubscribe(struct redis_conn *conn, const char *name, size_t len, bool pattern)
{
    struct subscription **at = find_subscription(conn, name, len, pattern);
    if (!at || conn->state == CLOSING)
        return;
    struct subscription *s = *at;
    *at = s->next;
    free(s);
    conn->subscription_count--;
    if (conn->ac)
        send_subscription(conn, name, len, pattern, false);
    update_ref(conn);
}

bool redis_conn_is_up(const struct redis_conn *conn)
{
    return conn->state == UP;
}

size_t redis_conn_pending(const struct redis_conn *conn)
{
    return conn->pending_count;
}

const char *redis_conn_describe(const struct redis_conn *conn)
{
    return conn->described;
}

void redis_conn_set_data(struct redis_conn *conn, void *data)
{
    conn->data = data;
}

void redis_conn_close(struct redis_conn *conn)
{
    if (conn->state == CLOSING)
        return;
    conn->state = CLOSING;
    uv_timer_stop(&conn->timer);
    uv_timer_start(&conn->timer, on_timer, 0, 0); /* answers and frees outside any caller's call */
    update_ref(conn);
}

void redis_conn_shutdown_all(void)
{
    shutting_down = true;
    for (struct redis_conn *c = open_conns; c; c = c->next)
        update_ref(c);
}

void redis_conn_close_all(void)
{
    for (struct redis_conn *c = open_conns; c; c = c->next)
        redis_conn_close(c);
}
