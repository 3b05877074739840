/*
 * tls_accept.c - see tls_accept.h.
 */
#include "tls_accept.h"

#include <stdio.h>

#include "log_window.h"
#include "tls_filter.h"

struct slot {
    const struct tls_accept_owner *owner;
};

const size_t tls_accept_conn_size = sizeof(struct slot);

static void on_data(struct conn *c, const char *base, size_t len)
{
    (void)c, (void)base, (void)len; /* the filter delivers nothing before the handshake */
}

static void on_eof(struct conn *c)
{
    conn_abort(c, "closed by the peer during the TLS handshake");
}

static void on_flow(struct conn *c)
{
    (void)c;
}

static void on_lost(struct conn *c, const char *error)
{
    (void)error;
    struct slot *slot = conn_data(c);
    if (slot->owner)
        slot->owner->lost(slot->owner->data, conn_end_reason(c));
}

const struct conn_events tls_accept_events = {
    .data = on_data,
    .eof = on_eof,
    .pause_writing = on_flow,
    .resume_writing = on_flow,
    .lost = on_lost,
};

void tls_accept_attach(struct conn *c, const struct tls_accept_owner *owner)
{
    conn_set_events(c, &tls_accept_events);
    struct slot *slot = conn_data(c);
    slot->owner = owner;
}

/* Done: serve it; failed: one line per kind of reason, the filter aborts it. */
static void on_done(struct conn *c, const char *error, void *arg)
{
    (void)arg;
    struct slot *slot = conn_data(c);
    if (!error) {
        const struct tls_accept_owner *owner = slot->owner;
        slot->owner = NULL; /* the owner's from here on: its own lost() counts it out */
        owner->ready(c, owner->data);
        return;
    }
    if (conn_is_closing(c))
        return; /* ended for another reason, said elsewhere (a shutdown) */
    char peer[ADDR_STRLEN], key[160], line[512];
    snprintf(key, sizeof key, "tls|%s", error);
    snprintf(line, sizeof line, "TLS handshake with %s failed: %s", addr_format(conn_peer(c), peer, sizeof peer),
             error);
    log_window(key, LOG_WARN, line);
}

int tls_accept_start(struct conn *c, struct tls_server *server, uint64_t timeout_ms)
{
    int rc = tls_filter_start(c, tls_server_ssl(server), server, timeout_ms, on_done, NULL);
    if (rc == 0)
        conn_start(c); /* read the ClientHello */
    return rc;
}
