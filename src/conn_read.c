/*
 * conn_read.c - the read path of a stream connection: reads into the
 * loop's buffer, through the filter (if any) to the owner; pausing and
 * resuming; bytes put back (conn_unread), delivered on the next turn before
 * the socket is read again; a connection that reads its fill sits out a
 * turn; end of stream; what a filter hands up (conn_filter_deliver, _eof,
 * _defer).
 * Relies on conn.c for the connection's life cycle and on conn_private.h
 * for its struct.
 * Rule: the read buffer belongs to the thread's loop: on_read() hands it to
 * the owner synchronously, so an idle connection holds no read buffer.
 */
#include "conn.h"
#include "conn_private.h"

#include <stdlib.h>
#include <string.h>

#define READ_BUFFER_SIZE LUAECHO_DEFAULT_READ_CHUNK
/* A connection that fills the read buffer this many times in one loop turn
 * sits out until the next turn: libuv would read up to 32 buffers from it in
 * a row, and 200 flooding clients then delayed everyone else by seconds
 * (with 1: at most 20 ms, measured by spec/integration/backpressure_spec). */
#define FULL_READS_PER_TURN 1

/* One read buffer per loop: a loop runs on one thread and on_read() consumes
 * the buffer before returning. */
static _Thread_local char read_buffer[READ_BUFFER_SIZE];

/* Bytes put back by conn_unread(): rare (after a PROXY header), so one
 * pointer in the connection, not a buffer. */
struct unread {
    size_t len;
    char bytes[];
};

void conn_read_forget_deferred(struct conn *c)
{
    struct conn **p = &c->list->deferred;
    while (*p && *p != c)
        p = &(*p)->next_deferred;
    if (*p)
        *p = c->next_deferred;
    c->deferred = false;
    if (!c->list->deferred)
        uv_unref((uv_handle_t *)&c->list->next_turn);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(read_buffer, sizeof read_buffer);
}

static void start_reading(struct conn *c);
static void defer(struct conn *c);

/* Read the buffer full too often this turn: sit out until the next. */
static void count_full_read(struct conn *c)
{
    if (c->turn != (uint32_t)c->list->turn) {
        c->turn = (uint32_t)c->list->turn;
        c->full_reads = 0;
    }
    if (++c->full_reads < FULL_READS_PER_TURN || !c->reading || c->deferred)
        return;
    conn_read_stop(c);
    defer(c);
}

int conn_unread(struct conn *c, const char *base, size_t len)
{
    size_t before = c->unread ? c->unread->len : 0;
    struct unread *u = realloc(c->unread, sizeof *u + before + len);
    if (!u)
        return UV_ENOMEM; /* what was put back before is still there */
    memcpy(u->bytes + before, base, len); /* after the bytes already put back */
    u->len = before + len;
    c->unread = u;
    conn_read_stop(c);
    start_reading(c); /* defers: they are delivered on the next turn */
    conn_check_state(c);
    return 0;
}

/* Bytes from the socket (or put back): through the filter, if any. */
static void take(struct conn *c, const char *base, size_t len)
{
    const struct conn_filter *f = filter_of(c);
    if (f)
        f->read(c, base, len);
    else
        c->events->data(c, base, len);
}

/* Hand the bytes put back to the owner, as if just read. */
static void deliver_unread(struct conn *c)
{
    struct unread *u = c->unread;
    c->unread = NULL;
    c->last_active = (uint32_t)uv_now(c->h.handle.loop);
    take(c, u->bytes, u->len);
    free(u);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;
    if (nread > 0) {
        c->last_active = (uint32_t)uv_now(stream->loop);
        c->bytes_in += (uint64_t)nread;
        stat_add(&c->list->stats->bytes_received, (uint64_t)nread);
        take(c, buf->base, (size_t)nread);
        if ((size_t)nread == sizeof read_buffer)
            count_full_read(c);
    } else if (nread == UV_EOF && !c->eof_received && c->filter && filter_of(c)->eof(c)) {
        /* the filter ended the connection (a TLS handshake cut short) */
    } else if (nread == UV_EOF && !c->eof_received) {
        c->eof_received = true;
        c->reading = false;
        uv_read_stop(stream);
        c->events->eof(c);
    } else if (nread < 0) {
        conn_abort_for(c, nread == UV_ECONNRESET ? END_RESET : END_ERROR, uv_strerror((int)nread));
    }
    conn_check_state(c);
}

/* A deferred connection has stopped reading, so libuv no longer counts its
 * handle: 'next_turn' is referenced while any waits, or a loop with nothing
 * else (its server closed) would end with their bytes unread. */
static void defer(struct conn *c)
{
    if (c->deferred)
        return;
    c->deferred = true;
    c->next_deferred = c->list->deferred;
    c->list->deferred = c;
    uv_ref((uv_handle_t *)&c->list->next_turn);
}

static void start_reading(struct conn *c)
{
    if (c->reading || !c->started || !c->want_reading || c->closing || c->eof_received)
        return;
    const struct conn_filter *f = filter_of(c);
    if (c->unread || (f && f->pending(c))) { /* those bytes come first, on the next turn: not inside a callback */
        defer(c);
        return;
    }
    int rc = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (rc != 0)
        conn_abort(c, uv_strerror(rc));
    else
        c->reading = true;
}

void conn_read_stop(struct conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop(&c->h.stream);
    c->reading = false;
}

void conn_start(struct conn *c)
{
    c->started = true;
    start_reading(c);
    conn_check_state(c);
}

void conn_pause_reading(struct conn *c)
{
    c->want_reading = false;
    conn_read_stop(c);
    conn_check_state(c);
}

void conn_resume_reading(struct conn *c)
{
    c->want_reading = true;
    start_reading(c);
    conn_check_state(c);
}

bool conn_is_reading(const struct conn *c)
{
    return c->want_reading && !c->closing && !c->eof_received;
}

void conn_filter_deliver(struct conn *c, const char *base, size_t len)
{
    c->events->data(c, base, len);
}

void conn_filter_eof(struct conn *c)
{
    if (c->eof_received || c->closing)
        return;
    c->eof_received = true;
    conn_read_stop(c);
    c->events->eof(c);
    conn_check_state(c);
}

void conn_filter_defer(struct conn *c)
{
    if (c->reading) {
        conn_read_stop(c);
        defer(c);
    }
}

/* A new loop turn: the connections that sat out read again. */
void conn_read_on_next_turn(uv_prepare_t *handle)
{
    struct conn_list *list = handle->data;
    list->turn++;
    struct conn *c = list->deferred;
    list->deferred = NULL;
    uv_unref((uv_handle_t *)handle); /* until one is deferred again */
    while (c) {
        struct conn *next = c->next_deferred;
        c->deferred = false;
        bool can_take = c->started && c->want_reading && !c->closing && !c->eof_received;
        if (c->unread && can_take)
            deliver_unread(c);
        else if (c->filter && can_take && filter_of(c)->pending(c))
            filter_of(c)->read(c, NULL, 0);
        start_reading(c);
        conn_check_state(c);
        c = next;
    }
}
