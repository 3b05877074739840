/*
 * conn.c - one stream connection: TCP or a Unix socket, which libuv and
 * this file treat alike (uv_stream_t) but for the peer and Nagle.
 * Owns the handle, the write queue and the flow-control marks, and reports
 * events through struct conn_events. Knows nothing about Lua.
 *
 * Rules:
 * - The read buffer belongs to the thread's loop: on_read() hands it to the
 *   owner synchronously, so an idle connection holds no read buffer.
 * - Closing is a state: conn_close() and conn_abort() may be called from any
 *   callback, any number of times. uv_close() is reached only through
 *   close_handle(), and memory is released in on_close() and nowhere else.
 */
#define _GNU_SOURCE /* struct ucred */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define READ_BUFFER_SIZE LUAECHO_DEFAULT_READ_CHUNK
/* A connection that fills the read buffer this many times in one loop turn
 * sits out until the next turn: libuv would read up to 32 buffers from it in
 * a row, and 200 flooding clients then delayed everyone else by seconds
 * (with 1: at most 20 ms, measured by spec/integration/backpressure_spec). */
#define FULL_READS_PER_TURN 1

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;      /* what everything but open and addresses uses */
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    const struct conn_events *events;
    struct conn_list *list;
    struct conn *prev, *next;
    union addr peer;             /* who the connection is from (a PROXY header may say) */
    char *error;                 /* why it ended, for lost(); NULL: clean */
    struct unread *unread;       /* bytes to deliver before reading again (conn_unread) */
    void *filter;                /* between the socket and the owner (TLS); NULL: none */
    uv_shutdown_t *shutdown_req; /* allocated only while a shutdown is pending */
    uint32_t high_water, low_water;
    uint64_t id;                 /* process-wide, for the console */
    uint64_t bytes_in, bytes_out;
    uint32_t made;               /* loop time (ms, wrapping) it was made */
    uint32_t last_active;        /* loop time (ms, wrapping) of the last byte in or out */
    uint32_t turn;               /* the loop turn 'full_reads' counts in (wrapping) */
    struct conn *next_deferred;  /* in list->deferred while 'deferred' */
    uint8_t full_reads;
    bool started : 1;            /* conn_start() was called */
    bool want_reading : 1;       /* the owner has not paused reading */
    bool reading : 1;            /* uv_read_start() is in effect */
    bool eof_received : 1;
    bool eof_written : 1;        /* write_eof() was called */
    bool shutdown_done : 1;
    bool closing : 1;
    bool writing_paused : 1;     /* over the high mark: pause_writing() is due or was reported */
    bool pause_due : 1;          /* ... and is still to be reported (see report_pause) */
    bool deferred : 1;           /* read its fill this turn, or has 'unread' bytes: resumes next turn */
    bool unix_socket : 1;        /* a uv_pipe_t */
    bool peer_from_header : 1;   /* 'peer' is a PROXY header's client, not the socket's peer */
    bool end_known : 1;          /* 'end_reason' was given */
    unsigned end_waits : 2;      /* close() or write_eof() asked while the filter was starting */
    unsigned end_reason : 3;     /* enum stats_end */
    alignas(8) unsigned char data[]; /* pointers and ints only: 8 is enough */
};

/* The log line when --max-write-buffer trips: process-wide, one a second. */
static struct log_rate write_buffer_rate;

/* One read buffer per loop: a loop runs on one thread and on_read() consumes
 * the buffer before returning. */
static _Thread_local char read_buffer[READ_BUFFER_SIZE];

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

/* Bytes put back by conn_unread(): rare (after a PROXY header), so one
 * pointer in the connection, not a buffer. */
struct unread {
    size_t len;
    char bytes[];
};

/* A queued write owns a copy of the bytes the kernel did not take at once. */
struct write_req {
    uv_write_t req;
    size_t len;
    char bytes[];
};

/* Ids for the console's 'kill ID': unique in the process. */
static atomic_uint_fast64_t next_id = 1;

static void on_close(uv_handle_t *handle);
static void connected(struct conn *c);

/* The filter's operations, or NULL. */
static const struct conn_filter *filter_of(const struct conn *c)
{
    return c->filter ? *(const struct conn_filter *const *)c->filter : NULL;
}


struct conn *conn_new(uv_loop_t *loop, struct conn_list *list, const struct conn_events *events,
                      size_t data_size, enum conn_kind kind)
{
    struct conn *c = calloc(1, sizeof *c + data_size);
    if (!c)
        return NULL;
    int rc = kind == CONN_UNIX ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
    if (rc != 0) {
        free(c);
        return NULL;
    }
    c->unix_socket = kind == CONN_UNIX;
    c->h.handle.data = c;
    c->events = events;
    c->list = list;
    c->next = list->head;
    if (list->head)
        list->head->prev = c;
    list->head = c;
    list->count++;
    c->want_reading = true;
    c->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    c->made = c->last_active = (uint32_t)uv_now(loop);
    conn_set_write_limits(c, CONN_DEFAULT_HIGH_WATER, CONN_DEFAULT_HIGH_WATER / 4);
    return c;
}

/* The rules of the state machine, asserted (debug builds) at the end of
 * every public call and callback, as libuv's stream.c does. */
static void check_state(const struct conn *c)
{
    (void)c;
    assert(!c->reading || (c->started && c->want_reading && !c->closing && !c->eof_received));
    assert(!c->deferred || !c->reading);
    assert(!uv_is_closing(&c->h.handle) || c->closing);
    assert(!c->shutdown_req || c->eof_written || c->closing);
    assert(!c->pause_due || c->writing_paused);
    assert(cork.conn != c || (cork.n <= CORK_BUFS && cork.copied <= CORK_COPY_AREA));
}

/* The single road to uv_close() (which stops reading too). */
static void close_handle(struct conn *c)
{
    c->closing = true;
    c->reading = false;
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, on_close);
}

static void forget_deferred(struct conn *c)
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

/* Lost the connection: tell the owner once, then free it. */
static void on_close(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    assert(c->closing && !c->reading && !c->shutdown_req);
    if (c->deferred)
        forget_deferred(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->list->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->list->count--;
    c->events->lost(c, c->error);
    if (c->filter)
        filter_of(c)->free(c);
    free(c->error);
    free(c->unread);
    free(c);
}

/* The first reason the connection ends for. */
static void end_for(struct conn *c, enum stats_end why)
{
    if (c->end_known)
        return;
    c->end_known = true;
    c->end_reason = why;
}

enum stats_end conn_end_reason(const struct conn *c)
{
    return c->end_known ? (enum stats_end)c->end_reason : END_CLEAN;
}

void conn_abort(struct conn *c, const char *error)
{
    conn_abort_for(c, error ? END_ERROR : END_CLEAN, error);
}

void conn_abort_for(struct conn *c, enum stats_end why, const char *error)
{
    if (!uv_is_closing(&c->h.handle))
        end_for(c, why);
    if (cork.conn == c) { /* dropped, as the write queue is */
        cork.n = 0;
        cork.bytes = 0;
        cork.copied = 0;
    }
    if (error && !c->error && !uv_is_closing(&c->h.handle))
        c->error = strdup(error);
    close_handle(c);
    check_state(c);
}

int conn_open(struct conn *c, int fd, const struct sockaddr *peer)
{
    int rc = c->unix_socket ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
    if (peer)
        addr_from_sockaddr(&c->peer, peer); /* a peer that reset already has no peername */
    if (rc == 0)
        connected(c);
    return rc;
}

/* The credentials of the Unix peer on socket 'fd'. */
static int credentials_of(uv_os_fd_t fd, union addr *out)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    *out = (union addr){.local = {.family = AF_UNIX}};
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return uv_translate_sys_error(errno);
    out->local = (struct addr_local){.family = AF_UNIX, .pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
    return 0;
}

/* A Unix peer's credentials, from the kernel. */
static void read_credentials(struct conn *c)
{
    uv_os_fd_t fd;
    c->peer = (union addr){.local = {.family = AF_UNIX}};
    if (uv_fileno(&c->h.handle, &fd) == 0)
        credentials_of(fd, &c->peer);
}

/* Remember the peer, and answer small writes at once (echo-style protocols). */
static void connected(struct conn *c)
{
    if (c->unix_socket) {
        read_credentials(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (c->peer.sa.sa_family == AF_UNSPEC && uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_from_sockaddr(&c->peer, (struct sockaddr *)&ss);
    uv_tcp_nodelay(&c->h.tcp, 1);
}

struct connect_req {
    uv_connect_t req;
    conn_connected_cb done;
    void *data;
};

static void on_connect(uv_connect_t *req, int status)
{
    struct connect_req *r = (struct connect_req *)req;
    struct conn *c = req->handle->data;
    if (status == 0)
        connected(c);
    r->done(c, status, r->data);
    free(r);
}

static struct connect_req *connect_req_new(conn_connected_cb done, void *data)
{
    struct connect_req *r = malloc(sizeof *r);
    if (r) {
        r->done = done;
        r->data = data;
    }
    return r;
}

int conn_connect(struct conn *c, const union addr *addr, conn_connected_cb done, void *data)
{
    struct connect_req *r = connect_req_new(done, data);
    if (!r)
        return UV_ENOMEM;
    c->peer = *addr; /* for messages until the connection is up */
    int rc = uv_tcp_connect(&r->req, &c->h.tcp, &addr->sa, on_connect);
    if (rc != 0)
        free(r);
    return rc;
}

int conn_connect_unix(struct conn *c, const char *path, conn_connected_cb done, void *data)
{
    struct connect_req *r = connect_req_new(done, data);
    if (!r)
        return UV_ENOMEM;
    c->peer = (union addr){.local = {.family = AF_UNIX}};
    uv_pipe_connect(&r->req, &c->h.pipe, path, on_connect); /* errors reach on_connect */
    return 0;
}

void conn_set_events(struct conn *c, const struct conn_events *events)
{
    c->events = events;
}

const struct conn_events *conn_get_events(const struct conn *c)
{
    return c->events;
}

void conn_set_peer(struct conn *c, const union addr *peer)
{
    c->peer = *peer;
    c->peer_from_header = true;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(read_buffer, sizeof read_buffer);
}

static void stop_reading(struct conn *c);
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
    stop_reading(c);
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
    stop_reading(c);
    start_reading(c); /* defers: they are delivered on the next turn */
    check_state(c);
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
    check_state(c);
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

static void stop_reading(struct conn *c)
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
    check_state(c);
}

void conn_pause_reading(struct conn *c)
{
    c->want_reading = false;
    stop_reading(c);
    check_state(c);
}

void conn_resume_reading(struct conn *c)
{
    c->want_reading = true;
    start_reading(c);
    check_state(c);
}

bool conn_is_reading(const struct conn *c)
{
    return c->want_reading && !c->closing && !c->eof_received;
}

enum { END_WAITS_NONE, END_WAITS_WRITE_EOF, END_WAITS_CLOSE };

bool conn_is_closing(const struct conn *c)
{
    return c->closing || c->end_waits == END_WAITS_CLOSE;
}

/* Must an end the owner asks for wait for the filter? Then note it. */
static bool end_must_wait(struct conn *c, unsigned which)
{
    if (!c->filter || !filter_of(c)->starting(c))
        return false;
    if (which > c->end_waits)
        c->end_waits = which;
    return true;
}

void conn_filter_ready(struct conn *c)
{
    unsigned which = c->end_waits;
    c->end_waits = END_WAITS_NONE;
    if (which == END_WAITS_CLOSE)
        conn_close(c);
    else if (which == END_WAITS_WRITE_EOF)
        conn_write_eof(c);
}

bool conn_eof_written(const struct conn *c)
{
    return c->eof_written;
}

/* Bytes written and not yet sent: queued, or held by the cork. */
static size_t unsent(const struct conn *c)
{
    return c->h.stream.write_queue_size + (cork.conn == c ? cork.bytes : 0);
}

size_t conn_write_buffer_size(const struct conn *c)
{
    return c->closing && uv_is_closing(&c->h.handle) ? 0 : unsent(c);
}

/* Note crossing the high mark once; report_pause() tells the owner. Not
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
static void report_pause(struct conn *c)
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
    report_pause(c);
    check_state(c);
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
    check_state(c);
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
    report_pause(c);
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
    report_pause(c);
    check_state(c);
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

void conn_filter_deliver(struct conn *c, const char *base, size_t len)
{
    c->events->data(c, base, len);
}

void conn_filter_eof(struct conn *c)
{
    if (c->eof_received || c->closing)
        return;
    c->eof_received = true;
    stop_reading(c);
    c->events->eof(c);
    check_state(c);
}

void conn_filter_defer(struct conn *c)
{
    if (c->reading) {
        stop_reading(c);
        defer(c);
    }
}

void conn_set_filter(struct conn *c, void *state)
{
    c->filter = state;
}

void *conn_filter(const struct conn *c)
{
    return c->filter;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->handle->data;
    free(req);
    c->shutdown_req = NULL;
    c->shutdown_done = true;
    if (status == UV_ECANCELED)
        return;
    if (status < 0)
        conn_abort_for(c, status == UV_ECONNRESET || status == UV_ENOTCONN ? END_RESET : END_ERROR,
                       uv_strerror(status));
    else if (c->closing)
        close_handle(c);
}

/* Ask for a FIN once the queued writes are out. False when it cannot start. */
static bool start_shutdown(struct conn *c)
{
    if (c->shutdown_req)
        return true;
    if (c->shutdown_done)
        return false;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req)
        return false;
    if (uv_shutdown(req, &c->h.stream, on_shutdown) != 0) {
        free(req);
        return false;
    }
    c->shutdown_req = req;
    return true;
}

int conn_write_eof(struct conn *c)
{
    if (c->closing || c->end_waits == END_WAITS_CLOSE)
        return UV_EPIPE;
    if (c->eof_written || end_must_wait(c, END_WAITS_WRITE_EOF))
        return 0;
    c->eof_written = true; /* first: a callback run by the flush cannot write */
    if (c->filter)
        filter_of(c)->write_eof(c); /* the stream's own end (TLS close_notify), held like a write */
    if (cork.conn == c)
        flush_cork(); /* the held writes go before the FIN */
    if (uv_is_closing(&c->h.handle))
        return 0; /* the flush failed: aborted */
    if (!start_shutdown(c))
        conn_abort(c, "cannot half-close the connection");
    report_pause(c);
    check_state(c);
    return 0;
}

void conn_close(struct conn *c)
{
    if (c->closing || end_must_wait(c, END_WAITS_CLOSE))
        return;
    end_for(c, END_CLEAN);
    c->closing = true; /* first: is_closing() holds for anything the flush runs */
    if (c->filter && !c->eof_written)
        filter_of(c)->write_eof(c);
    if (cork.conn == c)
        flush_cork();
    if (uv_is_closing(&c->h.handle))
        return; /* the flush failed: aborted */
    stop_reading(c);
    /* Flush first: the shutdown completes after the last queued write. */
    if (!start_shutdown(c))
        close_handle(c);
    check_state(c);
}

const union addr *conn_peer(const struct conn *c)
{
    return &c->peer;
}

int conn_socket_peer(const struct conn *c, union addr *out)
{
    if (!c->peer_from_header) { /* the same: no system call */
        *out = c->peer;
        return 0;
    }
    if (uv_is_closing(&c->h.handle))
        return UV_EBADF;
    uv_os_fd_t fd;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (uv_fileno(&c->h.handle, &fd) != 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return UV_ENOTCONN;
    if (c->unix_socket)
        return credentials_of(fd, out);
    return addr_from_sockaddr(out, (struct sockaddr *)&ss);
}

bool conn_is_unix(const struct conn *c)
{
    return c->unix_socket;
}

/* One of libuv's name queries on a live connection's handle. */
/* A Unix socket's own path or its peer's, "" when unnamed. Asked of the
 * socket here: libuv 1.44's uv_pipe_getpeername reads sun_path[0] even
 * when the kernel returned no path (an unnamed peer), which valgrind
 * reports as a jump on an uninitialised value. */
static int unix_name(const struct conn *c, bool peer, char *buf, size_t *len)
{
    uv_os_fd_t fd;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    socklen_t sun_len = sizeof sun;
    if (!buf || !len) /* conn_sockname never asks a Unix socket, but gcc -O2 cannot tell */
        return UV_EINVAL;
    if (uv_fileno(&c->h.handle, &fd) != 0)
        return UV_EBADF;
    struct sockaddr *sa = (struct sockaddr *)&sun;
    if ((peer ? getpeername(fd, sa, &sun_len) : getsockname(fd, sa, &sun_len)) != 0)
        return uv_translate_sys_error(errno);
    bool named = sun_len > offsetof(struct sockaddr_un, sun_path);
    size_t path_len = named ? strnlen(sun.sun_path, sizeof sun.sun_path) : 0;
    if (path_len >= *len)
        return UV_ENOBUFS;
    memcpy(buf, sun.sun_path, path_len);
    buf[path_len] = '\0';
    *len = path_len;
    return 0;
}

static int ask_name(const struct conn *c, bool peer, char *buf, size_t *len, struct sockaddr_storage *ss)
{
    if (uv_is_closing(&c->h.handle))
        return UV_EBADF;
    if (c->unix_socket)
        return unix_name(c, peer, buf, len);
    int n = sizeof *ss;
    return peer ? uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)ss, &n)
                : uv_tcp_getsockname(&c->h.tcp, (struct sockaddr *)ss, &n);
}

int conn_sockname(const struct conn *c, union addr *out)
{
    struct sockaddr_storage ss;
    int rc = c->unix_socket ? UV_EAFNOSUPPORT : ask_name(c, false, NULL, NULL, &ss);
    return rc != 0 ? rc : addr_from_sockaddr(out, (struct sockaddr *)&ss);
}

int conn_unix_path(const struct conn *c, bool peer, char *buf, size_t *len)
{
    if (!c->unix_socket)
        return UV_EAFNOSUPPORT;
    return ask_name(c, peer, buf, len, NULL);
}

uv_loop_t *conn_loop(const struct conn *c)
{
    return c->h.handle.loop;
}

void *conn_data(struct conn *c)
{
    return c->data;
}

/* A new loop turn: the connections that sat out read again. */
static void on_next_turn(uv_prepare_t *handle)
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
        check_state(c);
        c = next;
    }
}

void conn_list_init(struct conn_list *list, uv_loop_t *loop, size_t max_write_buffer, struct loop_stats *stats)
{
    list->stats = stats;
    list->max_write_buffer = max_write_buffer;
    uv_prepare_init(loop, &list->next_turn);
    list->next_turn.data = list;
    uv_prepare_start(&list->next_turn, on_next_turn);
    uv_unref((uv_handle_t *)&list->next_turn);
}

void conn_list_close(struct conn_list *list)
{
    if (!uv_is_closing((uv_handle_t *)&list->next_turn))
        uv_close((uv_handle_t *)&list->next_turn, NULL);
}

void conn_list_each(struct conn_list *list, void (*fn)(struct conn *c, void *arg), void *arg)
{
    for (struct conn *c = list->head; c; c = c->next)
        fn(c, arg);
}

void conn_list_expire_idle(struct conn_list *list, uint64_t timeout_ms, struct log_rate *rate)
{
    if (list->head == NULL)
        return;
    uint64_t now = uv_now(list->head->h.handle.loop);
    char reason[96];
    snprintf(reason, sizeof reason, "idle timeout: no traffic for %g s (--idle-timeout)", (double)timeout_ms / 1000);
    for (struct conn *c = list->head; c; c = c->next) {
        if ((uint32_t)now - c->last_active < timeout_ms || uv_is_closing(&c->h.handle))
            continue;
        char peer[ADDR_STRLEN];
        addr_format(&c->peer, peer, sizeof peer);
        log_limited_with(rate, LOG_INFO, &(struct log_fields){.peer = peer}, "closing %s: %s", peer, reason);
        stat_add(&list->stats->limits_hit[LIMIT_IDLE_TIMEOUT], 1);
        conn_abort_for(c, END_IDLE, reason);
    }
}

void conn_list_close_all(struct conn_list *list)
{
    for (struct conn *c = list->head; c; c = c->next) {
        end_for(c, END_SHUTDOWN);
        conn_close(c);
    }
}

void conn_list_abort_all(struct conn_list *list, const char *error)
{
    for (struct conn *c = list->head; c; c = c->next)
        conn_abort_for(c, END_SHUTDOWN, error);
}

struct conn *conn_list_find(struct conn_list *list, uint64_t id)
{
    for (struct conn *c = list->head; c; c = c->next) {
        if (c->id == id)
            return c;
    }
    return NULL;
}

uint64_t conn_id(const struct conn *c)
{
    return c->id;
}

uint64_t conn_age_ms(const struct conn *c)
{
    return (uint32_t)uv_now(c->h.handle.loop) - c->made;
}

uint64_t conn_idle_ms(const struct conn *c)
{
    return (uint32_t)uv_now(c->h.handle.loop) - c->last_active;
}

void conn_traffic(const struct conn *c, uint64_t *in, uint64_t *out)
{
    *in = c->bytes_in;
    *out = c->bytes_out;
}
