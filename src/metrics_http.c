/*
 * metrics_http.c - see metrics_http.h. One listener (a uv_tcp_t or a
 * uv_pipe_t) and its clients, each a small struct with a read buffer of
 * HTTP_HEAD_MAX bytes, taken at accept and given back at close.
 * A client's life: reading its head (5 s at most), then writing the one
 * answer (5 s at most), then lingering (1 s at most): our side shut, the
 * bytes it still sends read and dropped until it closes, so that closing
 * with unread bytes does not reset the connection and lose the answer.
 * Relies on http_request.c for the head, server.c for the Unix socket
 * file, addr.c and listen_spec.c for the address. Never blocks but
 * for the address lookup at open.
 * Rule: memory goes only in libuv's close callbacks: a client when both
 * its handles are closed, the endpoint when its last handle is.
 */
#include "metrics_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "exposition.h"
#include "http_request.h"
#include "server.h"

#define MAX_CLIENTS 64
#define HEAD_TIMEOUT_MS 5000   /* no whole head by then: closed without an answer */
#define WRITE_TIMEOUT_MS 5000  /* the answer not taken by then: closed */
#define LINGER_TIMEOUT_MS 1000 /* after the answer, wait this long for the client's close */
#define ACCEPT_RETRY_MS 100    /* out of memory at accept: try again after this */
#define BACKLOG 128

/* A TCP or Unix stream, used through its uv_stream_t. */
union stream {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
};

enum client_state { READING, WRITING, LINGERING, CLOSING };

struct client {
    struct metrics_http *m;
    union stream s;
    uv_timer_t timer;
    uv_write_t write;
    uv_shutdown_t shutdown;
    enum client_state state;
    int open_handles; /* freed when none is left */
    char *buf;        /* HTTP_HEAD_MAX bytes */
    size_t len;
    char *answer;     /* what is being written */
    struct client *prev, *next;
};

struct metrics_http {
    uv_loop_t *loop;
    union stream listener;
    bool is_unix;
    uv_timer_t retry; /* accepting paused after running out of memory */
    const struct metrics_http_ops *ops;
    void *data;
    struct client *clients;
    size_t client_count;
    size_t open_handles; /* the listener, 'retry' and every client: freed at 0 */
    bool closed;
    bool unlink_path; /* remove the Unix socket file at close, if still ours */
    dev_t path_dev;
    ino_t path_ino;
    char path[LISTEN_UNIX_PATH_MAX + 1];
};

/* One handle of the endpoint's is closed; the last frees it. */
static void endpoint_unref(struct metrics_http *m)
{
    if (--m->open_handles == 0)
        free(m);
}

static void on_endpoint_handle_close(uv_handle_t *h)
{
    endpoint_unref(h->data);
}

/* ---- clients ---- */

static void on_client_handle_close(uv_handle_t *h)
{
    struct client *c = h->data;
    if (--c->open_handles > 0)
        return;
    struct metrics_http *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->client_count--;
    free(c->buf);
    free(c->answer);
    free(c);
    endpoint_unref(m);
}

/* Close the client's handles; pending requests are cancelled. Idempotent. */
static void client_close(struct client *c)
{
    if (c->state == CLOSING)
        return;
    c->state = CLOSING;
    uv_close(&c->s.handle, on_client_handle_close);
    uv_close((uv_handle_t *)&c->timer, on_client_handle_close);
}

static void on_client_timeout(uv_timer_t *t)
{
    client_close(t->data);
}

/* Enter 'state' with 'ms' to leave it in. */
static void client_enter(struct client *c, enum client_state state, uint64_t ms)
{
    c->state = state;
    uv_timer_start(&c->timer, on_client_timeout, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct client *c = h->data;
    /* Lingering, the bytes are dropped: the whole buffer is free. */
    size_t used = c->state == READING ? c->len : 0;
    *buf = uv_buf_init(c->buf + used, (unsigned)(HTTP_HEAD_MAX - used));
}

/* ---- answers ---- */

struct route {
    int status;
    const char *reason;
    const char *content_type;
    const char *extra_headers; /* "" or lines ending in CRLF */
};

static const struct route plain = {200, "OK", "text/plain; charset=utf-8", ""};

/* The head and body of an answer into 'out'; 'body' is left out when the
 * request was HEAD, its length kept. */
static void write_answer(struct text_buf *out, const struct route *r, const char *body, size_t body_len,
                         bool head_only)
{
    text_buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                    r->status, r->reason, r->content_type, body_len, r->extra_headers);
    if (!head_only)
        text_buf_add(out, body, body_len);
}

/* An answer with a short fixed body. */
static void write_simple(struct text_buf *out, int status, const char *reason, const char *extra,
                         const char *body, bool head_only)
{
    struct route r = plain;
    r.status = status;
    r.reason = reason;
    r.extra_headers = extra;
    write_answer(out, &r, body, strlen(body), head_only);
}

/* GET or HEAD /metrics: the exposition. False when out of memory. */
static bool write_metrics(struct metrics_http *m, struct text_buf *out, bool head_only)
{
    struct text_buf body;
    text_buf_init(&body);
    m->ops->render(&body, m->data);
    size_t len;
    char *text = text_buf_take(&body, &len);
    if (!text)
        return false;
    struct route r = plain;
    r.content_type = EXPOSITION_CONTENT_TYPE;
    write_answer(out, &r, text, len, head_only);
    free(text);
    return true;
}

/* The answer to a well-formed request 'req'. False when out of memory. */
static bool write_response(struct metrics_http *m, struct text_buf *out, const struct http_request *req)
{
    bool head_only = strcmp(req->method, "HEAD") == 0;
    if (!head_only && strcmp(req->method, "GET") != 0)
        write_simple(out, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed\n", false);
    else if (strcmp(req->path, "/metrics") == 0)
        return write_metrics(m, out, head_only);
    else if (strcmp(req->path, "/healthz") != 0)
        write_simple(out, 404, "Not Found", "", "not found\n", head_only);
    else if (m->ops->healthy(m->data))
        write_simple(out, 200, "OK", "", "ok\n", head_only);
    else
        write_simple(out, 503, "Service Unavailable", "", "shutting down\n", head_only);
    return true;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void after_shutdown(uv_shutdown_t *req, int status)
{
    (void)status; /* lingering or not, the timer ends it */
    (void)req;
}

/* The answer is out: shut our side and drop what the client still sends
 * until it closes (on_read), for LINGER_TIMEOUT_MS at most. */
static void after_write(uv_write_t *req, int status)
{
    struct client *c = req->data;
    if (c->state == CLOSING)
        return; /* cancelled by the close */
    free(c->answer);
    c->answer = NULL;
    if (status < 0 || uv_shutdown(&c->shutdown, &c->s.stream, after_shutdown) != 0) {
        client_close(c);
        return;
    }
    client_enter(c, LINGERING, LINGER_TIMEOUT_MS);
    if (uv_read_start(&c->s.stream, on_alloc, on_read) != 0)
        client_close(c);
}

/* Send what 'out' holds, or close if building it ran out of memory. */
static void send_answer(struct client *c, struct text_buf *out, bool ok)
{
    size_t len;
    char *text = text_buf_take(out, &len);
    if (!ok || !text) {
        free(text);
        text_buf_free(out);
        client_close(c);
        return;
    }
    c->answer = text;
    uv_buf_t buf = uv_buf_init(text, (unsigned)len);
    c->write.data = c;
    client_enter(c, WRITING, WRITE_TIMEOUT_MS);
    if (uv_write(&c->write, &c->s.stream, &buf, 1, after_write) != 0)
        client_close(c);
}

/* The head is settled ('r' is not HTTP_INCOMPLETE): answer it. */
static void answer(struct client *c, enum http_parse r, const struct http_request *req)
{
    uv_read_stop(&c->s.stream);
    struct text_buf out;
    text_buf_init(&out);
    bool ok = true;
    if (r == HTTP_DONE)
        ok = write_response(c->m, &out, req);
    else if (r == HTTP_TOO_LARGE)
        write_simple(&out, 431, "Request Header Fields Too Large", "", "request header fields too large\n", false);
    else
        write_simple(&out, 400, "Bad Request", "", "bad request\n", false);
    send_answer(c, &out, ok);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct client *c = stream->data;
    if (nread < 0) {
        client_close(c); /* the client went (or gave up) before or after its answer */
        return;
    }
    if (c->state != READING || nread == 0)
        return; /* lingering: dropped */
    size_t before = c->len;
    c->len += (size_t)nread;
    /* The parser reads the whole head each time: after the first read
     * (which refuses junk such as a TLS hello at once), only when a line
     * ended or the buffer is full, so a client sending a byte at a time
     * costs one pass per line, not one per byte. The answer is the same:
     * a line found bad before its end is still bad at its end. */
    if (before > 0 && c->len < HTTP_HEAD_MAX && !memchr(c->buf + before, '\n', (size_t)nread))
        return;
    struct http_request req;
    enum http_parse r = http_request_parse(c->buf, c->len, &req);
    if (r != HTTP_INCOMPLETE)
        answer(c, r, &req);
}

/* ---- accepting ---- */

static int stream_init(struct metrics_http *m, union stream *s)
{
    return m->is_unix ? uv_pipe_init(m->loop, &s->pipe, 0) : uv_tcp_init(m->loop, &s->tcp);
}

static void on_reject_close(uv_handle_t *h)
{
    struct metrics_http *m = h->data;
    free(h);
    endpoint_unref(m);
}

/* Take the pending connection and close it at once (too many clients). */
static bool reject_one(struct metrics_http *m)
{
    union stream *s = malloc(sizeof *s);
    if (!s)
        return false;
    stream_init(m, s);
    s->handle.data = m;
    m->open_handles++;
    uv_accept(&m->listener.stream, &s->stream);
    uv_close(&s->handle, on_reject_close);
    return true;
}

/* Take the pending connection as a new client reading its head. */
static bool accept_client(struct metrics_http *m)
{
    struct client *c = calloc(1, sizeof *c);
    char *buf = malloc(HTTP_HEAD_MAX);
    if (!c || !buf) {
        free(c);
        free(buf);
        return false;
    }
    *c = (struct client){.m = m, .buf = buf, .open_handles = 2, .next = m->clients};
    stream_init(m, &c->s);
    uv_timer_init(m->loop, &c->timer);
    c->s.handle.data = c->timer.data = c;
    if (c->next)
        c->next->prev = c;
    m->clients = c;
    m->client_count++;
    m->open_handles++;
    client_enter(c, READING, HEAD_TIMEOUT_MS);
    if (uv_accept(&m->listener.stream, &c->s.stream) != 0 || uv_read_start(&c->s.stream, on_alloc, on_read) != 0)
        client_close(c);
    return true;
}

static void on_retry(uv_timer_t *t);

/* Accept the pending connection, as a client or to close it. Out of
 * memory, it is left pending: libuv stops watching the listener until
 * uv_accept is called, which the retry timer does. */
static void accept_pending(struct metrics_http *m)
{
    bool taken = m->client_count >= MAX_CLIENTS ? reject_one(m) : accept_client(m);
    if (!taken)
        uv_timer_start(&m->retry, on_retry, ACCEPT_RETRY_MS, 0);
}

static void on_retry(uv_timer_t *t)
{
    struct metrics_http *m = t->data;
    if (!m->closed)
        accept_pending(m);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct metrics_http *m = listener->data;
    if (status == 0 && !m->closed)
        accept_pending(m);
}

/* ---- opening and closing ---- */

/* Bind and listen on TCP at 'spec'; 'name' gets the real port. */
static int open_tcp(struct metrics_http *m, const struct listen_spec *spec, char *name)
{
    union addr addr;
    int rc = addr_resolve_blocking(m->loop, spec->host, spec->port, &addr);
    if (rc == 0)
        rc = uv_tcp_bind(&m->listener.tcp, &addr.sa, 0);
    if (rc == 0)
        rc = uv_listen(&m->listener.stream, BACKLOG, on_connection);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (rc == 0)
        rc = uv_tcp_getsockname(&m->listener.tcp, (struct sockaddr *)&ss, &len);
    if (rc == 0)
        rc = addr_from_sockaddr(&addr, (struct sockaddr *)&ss);
    if (rc == 0)
        listen_spec_format(spec, &addr, name, LISTEN_SPEC_STRLEN);
    return rc;
}

/* Listen on a Unix socket at spec->path (server_open_unix replaces a
 * stale file); its inode is kept so that close removes only ours. */
static int open_unix(struct metrics_http *m, const struct listen_spec *spec, char *name)
{
    int fd;
    int rc = server_open_unix(spec->path, -1, &fd);
    if (rc != 0)
        return rc;
    snprintf(m->path, sizeof m->path, "%s", spec->path);
    struct stat st;
    if (lstat(m->path, &st) == 0) { /* else gone already: nothing to remove later */
        m->unlink_path = true;
        m->path_dev = st.st_dev;
        m->path_ino = st.st_ino;
    }
    rc = uv_pipe_open(&m->listener.pipe, fd);
    if (rc != 0)
        close(fd);
    if (rc == 0)
        rc = uv_listen(&m->listener.stream, BACKLOG, on_connection);
    if (rc == 0)
        listen_spec_format(spec, NULL, name, LISTEN_SPEC_STRLEN);
    return rc;
}

/* Remove the Unix socket file if it is still the one we bound. */
static void remove_socket_file(struct metrics_http *m)
{
    if (!m->unlink_path)
        return;
    m->unlink_path = false;
    struct stat now;
    if (lstat(m->path, &now) == 0 && now.st_ino == m->path_ino && now.st_dev == m->path_dev)
        unlink(m->path);
}

int metrics_http_open(struct metrics_http **out, uv_loop_t *loop, const struct listen_spec *spec,
                      const struct metrics_http_ops *ops, void *data, char *name)
{
    if (spec->kind != LISTEN_TCP && spec->kind != LISTEN_UNIX)
        return UV_EINVAL;
    struct metrics_http *m = calloc(1, sizeof *m);
    if (!m)
        return UV_ENOMEM;
    *m = (struct metrics_http){.loop = loop, .is_unix = spec->kind == LISTEN_UNIX, .ops = ops, .data = data};
    int rc = stream_init(m, &m->listener);
    if (rc != 0) {
        free(m);
        return rc;
    }
    uv_timer_init(loop, &m->retry);
    m->listener.handle.data = m->retry.data = m;
    m->open_handles = 2;
    rc = m->is_unix ? open_unix(m, spec, name) : open_tcp(m, spec, name);
    if (rc != 0) {
        metrics_http_close(m); /* freed once the loop runs the close callbacks */
        return rc;
    }
    *out = m;
    return 0;
}

void metrics_http_close(struct metrics_http *m)
{
    if (m->closed)
        return;
    m->closed = true;
    remove_socket_file(m);
    uv_close(&m->listener.handle, on_endpoint_handle_close);
    uv_close((uv_handle_t *)&m->retry, on_endpoint_handle_close);
    for (struct client *c = m->clients; c; c = c->next)
        client_close(c);
}
