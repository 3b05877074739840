/*
 * conn_write.c - the write path of a stream connection: what the kernel
 * takes at once is never copied, the rest is queued; writes held while the
 * connection is corked go out in one system call; the flow-control marks,
 * reported after the public call that crossed them; the --max-write-buffer
 * cap; what a filter sends (conn_filter_send).
 * Relies on conn.c for the connection's life cycle and on conn_private.h
 * for its struct.
 * Rule: a write request owns its buffer until after_write(), which may say
 * UV_ECANCELED after a close; the cork holds a string by pointer only
 * when conn_write_holds() said so.
 */
#include "conn.h"
#include "conn_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The log line when --max-write-buffer trips: process-wide, one a second. */
static struct log_rate write_buffer_rate;

/* Writes made while a connection is corked are held by pointer and go out
 * together, in one system call, when it is uncorked: a callback that writes
 * several times (a prefix, then the data; a streams handler's chunks) costs
 * one send. One connection per thread is corked at a time: the one whose
 * data_received is running. */
#define CORK_BUFS 16
#define CORK_BYTES (256 * 1024)
/* Small writes are copied into the cork (cheaper than keeping their
 * strings alive); larger ones are held by pointer. */
#define CORK_COPY_MAX 4096
#define CORK_COPY_AREA (16 * 1024)

struct cork {
    struct conn *conn;
    unsigned n;
    size_t bytes;
    size_t copied; /* bytes used in 'area' */
    uv_buf_t bufs[CORK_BUFS];
    char area[CORK_COPY_AREA];
};

static _Thread_local struct cork cork;

/* A queued write owns a copy of the bytes the kernel did not take at once. */
struct write_req {
    uv_write_t req;
    size_t len;
    char bytes[];
};

/* Bytes written and not yet sent: queued, or held by the cork. */
static size_t unsent(const struct conn *c)
{
    return c->h.stream.write_queue_size + (cork.conn == c ? cork.bytes : 0);
}

size_t conn_write_buffer_size(const struct conn *c)
{
    return c->closing && uv_is_closing(&c->h.handle) ? 0 : unsent(c);
}

/* Note crossing the high mark once; conn_write_report_pause() tells the owner. Not
 * while closing: close() flushes, and a script told to pause then could
 * still write (asyncio never pauses a closing transport). */
static void check_high_water(struct conn *c)
{
    if (!c->writing_paused && !c->closing && c->h.stream.write_queue_size > c->high_water) {
        c->writing_paused = true;
        c->pause_due = true;
    }
}

/* Report a noted pause, at the end of the public call that caused it: a
 * flush inside conn_write() crosses the mark before the write it serves is
 * queued, and the callback may write too; its bytes must follow. */
void conn_write_report_pause(struct conn *c)
{
    if (!c->pause_due)
        return;
    c->pause_due = false;
    if (c->writing_paused && !c->closing)
        c->events->pause_writing(c);
}

static void check_low_water(struct conn *c)
{
    if (c->writing_paused && !uv_is_closing(&c->h.handle) &&
        c->h.stream.write_queue_size <= c->low_water) {
        c->writing_paused = false;
        c->events->resume_writing(c);
    }
}

void conn_set_write_limits(struct conn *c, size_t high, size_t low)
{
    c->high_water = high > UINT32_MAX ? UINT32_MAX : (uint32_t)high; /* a mark past 4 GiB is none */
    c->low_water = low > UINT32_MAX ? UINT32_MAX : (uint32_t)low;
    check_high_water(c);
    conn_write_report_pause(c);
    conn_check_state(c);
}

void conn_get_write_limits(const struct conn *c, size_t *high, size_t *low)
{
    *high = c->high_water;
    *low = c->low_water;
}

/* Bytes the kernel took. */
static void sent(struct conn *c, size_t n)
{
    c->bytes_out += n;
    stat_add(&c->list->stats->bytes_sent, n);
}

static void after_write(uv_write_t *req, int status)
{
    struct conn *c = req->handle->data;
    struct write_req *w = (struct write_req *)req;
    stat_sub(&c->list->stats->write_buffer_bytes, w->len);
    if (status == 0)
        sent(c, w->len);
    free(w);
    if (status == UV_ECANCELED)
        return; /* aborted: on_close() follows */
    if (status < 0) {
        conn_abort_for(c, status == UV_ECONNRESET || status == UV_EPIPE ? END_RESET : END_ERROR, uv_strerror(status));
        return;
    }
    c->last_active = (uint32_t)uv_now(c->h.handle.loop);
    check_low_water(c);
    conn_check_state(c);
}

/* For scripts that ignore pause_writing(): past the list's cap, give up. */
static void check_hard_cap(struct conn *c)
{
    size_t cap = c->list->max_write_buffer;
    if (cap == 0 || c->h.stream.write_queue_size <= cap || uv_is_closing(&c->h.handle))
        return;
    char peer[ADDR_STRLEN], reason[160];
    snprintf(reason, sizeof reason,
             "write buffer over --max-write-buffer (%zu bytes queued, cap %zu): the peer does not read",
             c->h.stream.write_queue_size, cap);
    addr_format(&c->peer, peer, sizeof peer);
    log_limited_with(&write_buffer_rate, LOG_WARN, &(struct log_fields){.peer = peer}, "aborting %s: %s", peer,
                     reason);
    stat_add(&c->list->stats->limits_hit[LIMIT_MAX_WRITE_BUFFER], 1);
    conn_abort_for(c, END_LIMIT, reason);
}

/* Copy what the kernel did not take ('skip' bytes of the buffers were
 * sent) and queue it behind earlier writes. */
static void queue_write(struct conn *c, const uv_buf_t *bufs, unsigned n, size_t skip)
{
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += bufs[i].len;
    len -= skip;
    struct write_req *w = malloc(sizeof *w + len);
    if (!w) {
        conn_abort(c, "out of memory for the write buffer");
        return;
    }
    char *p = w->bytes;
    for (unsigned i = 0; i < n; i++) {
        size_t from = skip < bufs[i].len ? skip : bufs[i].len;
        skip -= from;
        memcpy(p, bufs[i].base + from, bufs[i].len - from);
        p += bufs[i].len - from;
    }
    uv_buf_t buf = {.base = w->bytes, .len = len};
    w->len = len;
    int rc = uv_write(&w->req, &c->h.stream, &buf, 1, after_write);
    if (rc != 0) {
        free(w);
        conn_abort(c, uv_strerror(rc));
        return;
    }
    stat_add(&c->list->stats->write_buffer_bytes, len);
    check_high_water(c);
    check_hard_cap(c);
}

/* Send buffers: what the kernel takes at once is never copied. */
static void write_bufs(struct conn *c, const uv_buf_t *bufs, unsigned n, size_t len)
{
    size_t done = 0;
    if (c->h.stream.write_queue_size == 0) { /* else the kernel's buffer is full anyway */
        int n_sent = uv_try_write(&c->h.stream, bufs, n);
        if (n_sent >= 0) {
            done = (size_t)n_sent;
            sent(c, done);
            c->last_active = (uint32_t)uv_now(c->h.handle.loop);
        } else if (n_sent != UV_EAGAIN) {
            conn_abort_for(c, n_sent == UV_ECONNRESET || n_sent == UV_EPIPE ? END_RESET : END_ERROR,
                           uv_strerror(n_sent));
            return;
        }
    }
    if (done < len)
        queue_write(c, bufs, n, done);
}

/* Send what the cork holds. */
static void flush_cork(void)
{
    struct conn *c = cork.conn;
    unsigned n = cork.n;
    size_t bytes = cork.bytes;
    cork.n = 0;
    cork.bytes = 0;
    cork.copied = 0; /* write_bufs copies what the kernel does not take */
    if (n > 0 && !uv_is_closing(&c->h.handle))
        write_bufs(c, cork.bufs, n, bytes);
}

void conn_cork(struct conn *c)
{
    if (cork.conn == NULL)
        cork.conn = c;
}

void conn_uncork(struct conn *c)
{
    if (cork.conn != c)
        return;
    flush_cork();
    cork.conn = NULL;
    conn_write_report_pause(c);
}

bool conn_write_holds(const struct conn *c, size_t len)
{
    return cork.conn == c && len > CORK_COPY_MAX && !c->filter; /* a filter consumes what it gets */
}

/* Add the bytes to the cork (flushing it first when they do not fit), or
 * send them at once when they are too big to hold. */
static void cork_write(struct conn *c, const char *base, size_t len)
{
    /* Flow control sees only real sends: hold at most the high mark. */
    if (cork.n == CORK_BUFS || cork.bytes + len > CORK_BYTES || cork.bytes + len > c->high_water)
        flush_cork();
    if (uv_is_closing(&c->h.handle)) /* the flush failed: aborted */
        return;
    if (len > c->high_water) { /* too big to hold */
        write_bufs(c, &(uv_buf_t){.base = (char *)base, .len = len}, 1, len);
        return;
    }
    if (len <= CORK_COPY_MAX && cork.copied + len > CORK_COPY_AREA)
        flush_cork();
    cork.bytes += len;
    if (len <= CORK_COPY_MAX) {
        char *copy = cork.area + cork.copied;
        memcpy(copy, base, len);
        cork.copied += len;
        cork.bufs[cork.n++] = (uv_buf_t){.base = copy, .len = len};
    } else {
        cork.bufs[cork.n++] = (uv_buf_t){.base = (char *)base, .len = len}; /* see conn_write_holds */
    }
}

/* Bytes for the socket, after any filter. A filter's own buffer is
 * reused once this returns: the cork may copy it, never hold it. */
static void send_raw(struct conn *c, const char *base, size_t len, bool may_hold)
{
    if (cork.conn == c && (may_hold || len <= CORK_COPY_MAX)) {
        cork_write(c, base, len);
        return;
    }
    if (cork.conn == c)
        flush_cork(); /* in order, behind what it holds */
    if (!uv_is_closing(&c->h.handle))
        write_bufs(c, &(uv_buf_t){.base = (char *)base, .len = len}, 1, len);
}

int conn_write(struct conn *c, const char *base, size_t len)
{
    if (c->closing || c->eof_written || c->end_waits != END_WAITS_NONE)
        return UV_EPIPE;
    if (len == 0)
        return 0;
    int rc = 0;
    if (c->filter)
        rc = filter_of(c)->write(c, base, len);
    else
        send_raw(c, base, len, true);
    conn_write_report_pause(c);
    conn_check_state(c);
    return rc;
}

int conn_filter_send(struct conn *c, const char *base, size_t len)
{
    if (uv_is_closing(&c->h.handle))
        return UV_EPIPE;
    if (len > 0)
        send_raw(c, base, len, false);
    return 0;
}

bool conn_write_cork_ok(const struct conn *c)
{
    return cork.conn != c || (cork.n <= CORK_BUFS && cork.copied <= CORK_COPY_AREA);
}

void conn_write_drop_cork(struct conn *c)
{
    if (cork.conn == c) {
        cork.n = 0;
        cork.bytes = 0;
        cork.copied = 0;
    }
}

void conn_write_flush_cork(struct conn *c)
{
    if (cork.conn == c)
        flush_cork();
}
