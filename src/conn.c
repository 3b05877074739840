/*
 * conn.c - one stream connection: TCP or a Unix socket, which libuv and
 * this file treat alike (uv_stream_t) but for the peer and Nagle.
 * Owns the handle and its life cycle: made, opened or connected, its peer
 * and names, the filter's start (an end asked while it starts waits for
 * it), half-close, close and abort, the list and the idle check. Reports
 * events through struct conn_events. Knows nothing about Lua.
 * The read path is conn_read.c, the write path (queue, cork, flow-control
 * marks, the write cap) conn_write.c; the struct the three share is in
 * conn_private.h.
 *
 * Rules:
 * - Closing is a state: conn_close() and conn_abort() may be called from any
 *   callback, any number of times. uv_close() is reached only through
 *   close_handle(), and memory is released in on_close() and nowhere else.
 */
#define _GNU_SOURCE /* struct ucred */
#include "conn.h"
#include "conn_private.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Ids for the console's 'kill ID': unique in the process. */
static atomic_uint_fast64_t next_id = 1;

static void on_close(uv_handle_t *handle);
static void connected(struct conn *c);

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

/* The single road to uv_close() (which stops reading too). */
static void close_handle(struct conn *c)
{
    c->closing = true;
    c->reading = false;
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, on_close);
}

/* Lost the connection: tell the owner once, then free it. */
static void on_close(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    assert(c->closing && !c->reading && !c->shutdown_req);
    if (c->deferred)
        conn_read_forget_deferred(c);
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
    conn_write_drop_cork(c); /* dropped, as the write queue is */
    if (error && !c->error && !uv_is_closing(&c->h.handle))
        c->error = strdup(error);
    close_handle(c);
    conn_check_state(c);
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
    conn_write_flush_cork(c); /* the held writes go before the FIN */
    if (uv_is_closing(&c->h.handle))
        return 0; /* the flush failed: aborted */
    if (!start_shutdown(c))
        conn_abort(c, "cannot half-close the connection");
    conn_write_report_pause(c);
    conn_check_state(c);
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
    conn_write_flush_cork(c);
    if (uv_is_closing(&c->h.handle))
        return; /* the flush failed: aborted */
    conn_read_stop(c);
    /* Flush first: the shutdown completes after the last queued write. */
    if (!start_shutdown(c))
        close_handle(c);
    conn_check_state(c);
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

void conn_list_init(struct conn_list *list, uv_loop_t *loop, size_t max_write_buffer, struct loop_stats *stats)
{
    list->stats = stats;
    list->max_write_buffer = max_write_buffer;
    uv_prepare_init(loop, &list->next_turn);
    list->next_turn.data = list;
    uv_prepare_start(&list->next_turn, conn_read_on_next_turn);
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
