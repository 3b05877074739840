/*
 * proxy_wait.c - a connection's PROXY header, read before it is served.
 * The bytes usually arrive in one read and are parsed where they lie;
 * only a header split across reads is copied (at most one read past
 * PROXY_HEADER_MAX). A connection that sends a bad header, none in time,
 * or closes first, is closed with one line (rate-limited by kind) and
 * never reaches the script. Everything here is freed in the timer's close
 * callback, the one place it can be.
 */
#include "proxy_wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "log_window.h"
#include "proxy_header.h"

struct proxy_wait {
    uv_timer_t timer;
    struct conn *conn;
    uint64_t timeout_ms;
    char *buf; /* the header so far, when it came in pieces */
    size_t len;
};

/* What a waiting connection keeps in its owner data area. */
struct slot {
    struct proxy_wait *wait; /* NULL once it is over */
    const struct proxy_wait_owner *owner;
};

const size_t proxy_wait_conn_size = sizeof(struct slot);

static void on_timer_closed(uv_handle_t *handle)
{
    struct proxy_wait *w = handle->data;
    free(w->buf);
    free(w);
}

/* The wait is over, whichever way: the slot lets go of it. */
static void end_wait(struct slot *slot)
{
    struct proxy_wait *w = slot->wait;
    slot->wait = NULL;
    if (w)
        uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

/* Close c without serving it, saying why once per kind of reason. */
static void reject(struct conn *c, const char *reason)
{
    char peer[ADDR_STRLEN], key[160], line[400];
    snprintf(key, sizeof key, "proxy|%s", reason);
    snprintf(line, sizeof line,
             "closing %s before serving it: %s; with --proxy-protocol every connection starts with one "
             "(HAProxy: send-proxy or send-proxy-v2)",
             addr_format(conn_peer(c), peer, sizeof peer), reason); /* the socket's: no header yet */
    log_window(key, LOG_WARN, line);
    conn_abort(c, reason);
}

static void on_timeout(uv_timer_t *timer)
{
    struct proxy_wait *w = timer->data;
    char reason[96];
    snprintf(reason, sizeof reason, "no complete PROXY header within %g s (--proxy-timeout)",
             (double)w->timeout_ms / 1000);
    stat_add(&stats_here()->limits_hit[LIMIT_PROXY_TIMEOUT], 1);
    reject(w->conn, reason);
}

/* The header is read: the rest of the bytes go back, and c to its owner. */
static void finish(struct conn *c, const struct proxy_header *h, const char *rest, size_t rest_len)
{
    struct slot *slot = conn_data(c);
    const struct proxy_wait_owner *owner = slot->owner;
    if (!h->local)
        conn_set_peer(c, &h->source);
    if (rest_len > 0 && conn_unread(c, rest, rest_len) != 0) {
        conn_abort(c, "out of memory after the PROXY header");
        return;
    }
    end_wait(slot); /* 'rest' may lie in its buffer: copied above */
    owner->ready(c, owner->data); /* the slot is the owner's area from here on */
}

/* Keep the bytes so far, for a header that comes in pieces. */
static int keep(struct proxy_wait *w, const char *base, size_t len)
{
    char *bigger = realloc(w->buf, w->len + len);
    if (!bigger)
        return -1;
    memcpy(bigger + w->len, base, len);
    w->buf = bigger;
    w->len += len;
    return 0;
}

static void on_data(struct conn *c, const char *base, size_t len)
{
    struct slot *slot = conn_data(c);
    struct proxy_wait *w = slot->wait;
    if (!w)
        return;
    if (w->len > 0) {
        if (keep(w, base, len) != 0) {
            conn_abort(c, "out of memory reading a PROXY header");
            return;
        }
        base = w->buf;
        len = w->len;
    }
    struct proxy_header h;
    size_t consumed = 0;
    switch (proxy_header_parse(base, len, &h, &consumed)) {
    case PROXY_DONE:
        finish(c, &h, base + consumed, len - consumed);
        return;
    case PROXY_NEED_MORE:
        if (w->len == 0 && keep(w, base, len) != 0)
            conn_abort(c, "out of memory reading a PROXY header");
        return;
    case PROXY_INVALID:
    case PROXY_TOO_LONG:
        reject(c, h.reason ? h.reason : "not a PROXY header");
        return;
    }
}

static void on_eof(struct conn *c)
{
    reject(c, "the peer closed before its PROXY header was complete");
}

static void on_flow(struct conn *c)
{
    (void)c; /* nothing is written while waiting */
}

static void on_lost(struct conn *c, const char *error)
{
    (void)error;
    struct slot *slot = conn_data(c);
    end_wait(slot);
    if (slot->owner)
        slot->owner->lost(slot->owner->data, conn_end_reason(c));
}

const struct conn_events proxy_wait_events = {
    .data = on_data,
    .eof = on_eof,
    .pause_writing = on_flow,
    .resume_writing = on_flow,
    .lost = on_lost,
};

void proxy_wait_attach(struct conn *c, const struct proxy_wait_owner *owner)
{
    *(struct slot *)conn_data(c) = (struct slot){.owner = owner};
}

int proxy_wait_start(struct conn *c, uint64_t timeout_ms)
{
    struct slot *slot = conn_data(c);
    struct proxy_wait *w = calloc(1, sizeof *w);
    if (!w)
        return UV_ENOMEM;
    w->conn = c;
    w->timeout_ms = timeout_ms;
    uv_timer_init(conn_loop(c), &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_timeout, timeout_ms, 0);
    slot->wait = w;
    conn_start(c);
    return 0;
}
