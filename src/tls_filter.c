/*
 * tls_filter.c - see tls_filter.h. OpenSSL reads what conn.c read from
 * the 'in' BIO and writes what goes to the socket into the 'out' BIO;
 * after each step whatever is in 'out' is sent. Plaintext is decrypted
 * into a thread-local buffer (a record is at most 16 KiB) and delivered at
 * once, while the owner reads; what it does not read stays in OpenSSL.
 */
#include "tls_filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "log_window.h"

enum { HANDSHAKE_OK, HANDSHAKE_FAILED, HANDSHAKE_TIMEOUT };

struct tls_filter {
    const struct conn_filter *ops; /* first: conn.c reads it */
    struct conn *conn;
    SSL *ssl;
    BIO *in, *out;                 /* owned by ssl */
    struct tls_server *server;     /* while the handshake runs */
    tls_done_cb done;
    void *arg;
    uv_timer_t *deadline;          /* while the handshake runs; freed in its close callback */
    char *held;                    /* plaintext written before the handshake completed */
    size_t held_len;
    bool established;
    bool ended;                    /* failed: nothing more goes either way */
    bool peer_closed;              /* the peer's close_notify seen: its half-close. Our side stays
                                    * writable (eof_received may keep it open), as on a plain
                                    * connection; only reading is over */
};

static _Thread_local char plain[16384];

static void on_read(struct conn *c, const char *base, size_t len);
static int on_write(struct conn *c, const char *base, size_t len);
static void on_write_eof(struct conn *c);
static bool on_pending(const struct conn *c);
static void on_free(struct conn *c);
static bool on_eof(struct conn *c);
static bool on_starting(const struct conn *c);

static const struct conn_filter tls_ops = {
    .starting = on_starting,
    .eof = on_eof,
    .read = on_read,
    .write = on_write,
    .write_eof = on_write_eof,
    .pending = on_pending,
    .free = on_free,
};

static struct tls_filter *filter_of(const struct conn *c)
{
    struct tls_filter *t = conn_filter(c);
    return t && t->ops == &tls_ops ? t : NULL;
}

bool tls_filter_active(const struct conn *c)
{
    return filter_of(c) != NULL;
}

bool tls_filter_info(struct conn *c, struct tls_info *out)
{
    struct tls_filter *t = filter_of(c);
    if (!t || !t->established)
        return false;
    tls_info_of(t->ssl, out);
    return true;
}

/* Send what OpenSSL wrote. */
static void flush(struct tls_filter *t)
{
    char *data;
    long n = BIO_get_mem_data(t->out, &data);
    if (n > 0)
        conn_filter_send(t->conn, data, (size_t)n);
    (void)BIO_reset(t->out);
}

static void free_handle(uv_handle_t *handle)
{
    free(handle);
}

static void close_deadline(struct tls_filter *t)
{
    if (t->deadline) {
        uv_close((uv_handle_t *)t->deadline, free_handle);
        t->deadline = NULL;
    }
}

/* The handshake is over, either way: let go of what it needed. */
static void handshake_over(struct tls_filter *t, int result)
{
    close_deadline(t);
    tls_server_free(t->server);
    t->server = NULL;
    stat_add(&stats_here()->tls_handshakes[result], 1);
}

/* It failed: tell the owner, then end the connection with the reason. */
static void fail(struct tls_filter *t, const char *reason, int result)
{
    char error[300];
    snprintf(error, sizeof error, "TLS handshake failed: %s", reason);
    t->ended = true;
    handshake_over(t, result);
    tls_done_cb done = t->done;
    t->done = NULL;
    struct conn *c = t->conn;
    if (done)
        done(c, reason, t->arg);
    conn_abort_for(c, END_ERROR, error);
}

/* OpenSSL's reason for the last failure, the queue emptied. */
static void reason_of(struct tls_filter *t, char *out, size_t size)
{
    tls_error_text(t->ssl, out, size);
}

/* The handshake completed: what was written meanwhile goes out, then the
 * owner hears of it. */
static void established(struct tls_filter *t)
{
    t->established = true;
    handshake_over(t, HANDSHAKE_OK);
    if (t->held) {
        char *held = t->held;
        size_t len = t->held_len;
        t->held = NULL;
        t->held_len = 0;
        on_write(t->conn, held, len);
        free(held);
    }
    conn_filter_ready(t->conn); /* a close() asked for meanwhile goes after those bytes */
    tls_done_cb done = t->done;
    t->done = NULL;
    if (done)
        done(t->conn, NULL, t->arg);
}

/* One step of the handshake. True when it is over and reading may go on. */
static bool shake(struct tls_filter *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    flush(t); /* our part of it, also an alert that ends it */
    if (r == 1) {
        established(t);
        return true;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return false;
    char reason[256];
    reason_of(t, reason, sizeof reason);
    fail(t, reason, HANDSHAKE_FAILED);
    return false;
}

/* Hand the plaintext OpenSSL has to the owner, while it reads. */
static void drain(struct tls_filter *t)
{
    struct conn *c = t->conn;
    while (!t->ended && !t->peer_closed && conn_is_reading(c) && !conn_is_closing(c)) {
        ERR_clear_error();
        int n = SSL_read(t->ssl, plain, (int)sizeof plain);
        if (n > 0) {
            conn_filter_deliver(c, plain, (size_t)n);
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        flush(t); /* a TLS 1.3 key update's answer, an alert */
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the end of the peer's stream, not of ours */
            t->peer_closed = true;
            conn_filter_eof(c);
            return;
        }
        t->ended = true;
        char reason[256], error[300];
        reason_of(t, reason, sizeof reason);
        snprintf(error, sizeof error, "TLS error: %s", reason);
        conn_abort_for(c, END_ERROR, error);
        return;
    }
    flush(t);
}

static void on_read(struct conn *c, const char *base, size_t len)
{
    struct tls_filter *t = filter_of(c);
    if (t->ended || t->peer_closed)
        return;
    if (len > 0 && BIO_write(t->in, base, (int)len) != (int)len) {
        conn_abort(c, "out of memory for TLS");
        return;
    }
    if (!t->established && !shake(t))
        return;
    drain(t);
}

static int on_write(struct conn *c, const char *base, size_t len)
{
    struct tls_filter *t = filter_of(c);
    if (t->ended)
        return UV_EPIPE;
    if (!t->established) { /* kept until the handshake is done */
        char *more = realloc(t->held, t->held_len + len);
        if (!more)
            return UV_ENOMEM;
        memcpy(more + t->held_len, base, len);
        t->held = more;
        t->held_len += len;
        return 0;
    }
    while (len > 0) {
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        ERR_clear_error();
        int n = SSL_write(t->ssl, base, chunk);
        if (n <= 0) {
            char reason[256], error[300];
            reason_of(t, reason, sizeof reason);
            snprintf(error, sizeof error, "TLS error: %s", reason);
            conn_abort_for(c, END_ERROR, error);
            return UV_EPROTO;
        }
        base += n;
        len -= (size_t)n;
        flush(t); /* at most a record's worth waits in 'out' */
    }
    return 0;
}

static void on_write_eof(struct conn *c)
{
    struct tls_filter *t = filter_of(c);
    if (!t->established || t->ended)
        return;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* our close_notify; theirs may follow */
    flush(t);
}

static bool on_pending(const struct conn *c)
{
    struct tls_filter *t = filter_of(c);
    return t->established && !t->ended && !t->peer_closed && (SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->in) > 0);
}

/* The peer closed before the handshake was done: it failed. After it, an
 * end without close_notify is an end all the same (as most servers take it). */
static bool on_starting(const struct conn *c)
{
    struct tls_filter *t = filter_of(c);
    return !t->established && !t->ended;
}

static bool on_eof(struct conn *c)
{
    struct tls_filter *t = filter_of(c);
    if (t->established || t->ended)
        return false;
    fail(t, "the peer closed the connection during the handshake", HANDSHAKE_FAILED);
    return true;
}

static void on_free(struct conn *c)
{
    struct tls_filter *t = filter_of(c);
    if (t->done) { /* closed mid-handshake (a shutdown, an abort): whoever waits hears of it */
        tls_done_cb done = t->done;
        t->done = NULL;
        done(c, "the connection closed during the handshake", t->arg);
    }
    conn_set_filter(c, NULL);
    close_deadline(t);
    tls_server_free(t->server);
    SSL_free(t->ssl);
    free(t->held);
    free(t);
}

static void on_deadline(uv_timer_t *timer)
{
    struct tls_filter *t = timer->data;
    t->ended = true;
    fail(t, "not finished in time (--tls-handshake-timeout)", HANDSHAKE_TIMEOUT);
}

int tls_filter_start(struct conn *c, SSL *ssl, struct tls_server *server, uint64_t timeout_ms, tls_done_cb done,
                     void *arg)
{
    struct tls_filter *t = ssl ? calloc(1, sizeof *t) : NULL;
    BIO *in = t ? BIO_new(BIO_s_mem()) : NULL, *out = in ? BIO_new(BIO_s_mem()) : NULL;
    if (!out || (timeout_ms > 0 && !(t->deadline = malloc(sizeof *t->deadline)))) {
        BIO_free(in);
        BIO_free(out);
        free(t ? t->deadline : NULL);
        free(t);
        SSL_free(ssl);
        return UV_ENOMEM;
    }
    BIO_set_mem_eof_return(in, -1); /* empty is "read more", not the end */
    SSL_set_bio(ssl, in, out);
    *t = (struct tls_filter){.ops = &tls_ops, .conn = c, .ssl = ssl, .in = in, .out = out, .done = done,
                             .arg = arg, .deadline = t->deadline, .server = server ? tls_server_ref(server) : NULL};
    if (t->deadline) {
        uv_timer_init(conn_loop(c), t->deadline);
        t->deadline->data = t;
        uv_timer_start(t->deadline, on_deadline, timeout_ms, 0);
    }
    conn_set_filter(c, t);
    if (SSL_is_server(ssl) == 0)
        shake(t); /* a client speaks first */
    return 0;
}
