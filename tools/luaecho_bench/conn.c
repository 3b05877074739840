/*
 * conn.c - the transports: a TCP or Unix stream (uv_tcp_t, uv_pipe_t), TLS
 * over either (OpenSSL on memory BIOs: the ciphertext read is fed in, what
 * OpenSSL writes is taken out and queued with uv_write), and a connected UDP
 * socket (one datagram per request). Plain requests are written straight
 * from the pattern, which lives as long as the run: no copy.
 */
#include "bench.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

struct wreq {
    union {
        uv_write_t write;
        uv_udp_send_t send;
    } req;
    struct bconn *c;
    bool completes;   /* --expect none: the request is done once written */
    unsigned char data[];
};

static void tls_why(struct bconn *c, char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (v != X509_V_OK && c->b->o.ca)
        snprintf(buf, n, "certificate verification failed: %s", X509_verify_cert_error_string(v));
    else if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "the server closed the connection");
    ERR_clear_error();
}

int conn_prepare(struct bench *b)
{
    const struct listen_spec *t = &b->o.target;
    if (t->kind == LISTEN_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)&b->addr;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", t->path);
        b->addrlen = sizeof *un;
    } else {
        char port[16];
        snprintf(port, sizeof port, "%d", t->port);
        struct addrinfo hints = {.ai_socktype = t->kind == LISTEN_UDP ? SOCK_DGRAM : SOCK_STREAM}, *ai;
        int r = getaddrinfo(t->host[0] ? t->host : "127.0.0.1", port, &hints, &ai);
        if (r) {
            fprintf(stderr, "luaecho-bench: %s: %s\n", b->o.target_text, gai_strerror(r));
            return -1;
        }
        memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
        b->addrlen = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    if (!t->tls)
        return 0;
    b->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!b->ssl_ctx)
        return -1;
    SSL_CTX_set_min_proto_version(b->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(b->ssl_ctx, SSL_SESS_CACHE_OFF);
    if (b->o.ca) {
        if (SSL_CTX_load_verify_locations(b->ssl_ctx, b->o.ca, NULL) != 1) {
            fprintf(stderr, "luaecho-bench: --ca %s: cannot load it as PEM certificates\n", b->o.ca);
            return -1;
        }
        SSL_CTX_set_verify(b->ssl_ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(b->ssl_ctx, SSL_VERIFY_NONE, NULL);
    }
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct bconn *c = h->data;
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
}

void conn_close(struct bconn *c)
{
    c->state = C_CLOSED;
    if (c->handle_live && !uv_is_closing(&c->h.handle)) {
        if (c->b->o.target.kind == LISTEN_UDP)
            uv_udp_recv_stop(&c->h.udp);
        else
            uv_read_stop(&c->h.stream);
        uv_close(&c->h.handle, on_closed);
    }
}

/* A write or a datagram send is done: free it; with --expect none, its
 * request is done too. 'what' names it in an error. */
static void sent(struct wreq *w, int status, const char *what)
{
    struct bconn *c = w->c;
    bool completes = w->completes;
    free(w);
    if (c->state == C_CLOSED)
        return;
    if (status < 0) {
        bench_error(c->b, c, "%s: %s", what, uv_strerror(status));
        return;
    }
    if (completes)
        bench_request_done(c->b, c, uv_hrtime());
}

static void on_written(uv_write_t *req, int status)
{
    sent((struct wreq *)req, status, "write");
}

static void write_bytes(struct bconn *c, const void *data, size_t n, bool copy, bool completes)
{
    struct wreq *w = malloc(sizeof *w + (copy ? n : 0));
    if (!w) {
        bench_error(c->b, c, "out of memory");
        return;
    }
    w->c = c;
    w->completes = completes;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)n);
    if (copy) {
        memcpy(w->data, data, n);
        buf.base = (char *)w->data;
    }
    int r = uv_write(&w->req.write, &c->h.stream, &buf, 1, on_written);
    if (r < 0) {
        free(w);
        bench_error(c->b, c, "write: %s", uv_strerror(r));
    }
}

/* Queue what OpenSSL has written; the last piece carries 'completes'. */
static void tls_flush(struct bconn *c, bool completes)
{
    size_t n;
    while (c->state != C_CLOSED && (n = BIO_ctrl_pending(c->wbio)) > 0) {
        struct wreq *w = malloc(sizeof *w + n);
        if (!w) {
            bench_error(c->b, c, "out of memory");
            return;
        }
        w->c = c;
        int got = BIO_read(c->wbio, w->data, (int)n);
        w->completes = completes && BIO_ctrl_pending(c->wbio) == 0;
        uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)(got > 0 ? got : 0));
        int r = uv_write(&w->req.write, &c->h.stream, &buf, 1, on_written);
        if (r < 0) {
            free(w);
            bench_error(c->b, c, "write: %s", uv_strerror(r));
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct bconn *c = h->data;
    *buf = uv_buf_init((char *)c->b->rbuf, sizeof c->b->rbuf);
}

static void tls_handshake(struct bconn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    tls_flush(c, false);
    if (c->state == C_CLOSED)
        return;
    if (r == 1) {
        struct bench *b = c->b;
        if (!b->tls_version[0]) {
            snprintf(b->tls_version, sizeof b->tls_version, "%s", SSL_get_version(c->ssl));
            snprintf(b->tls_cipher, sizeof b->tls_cipher, "%s", SSL_get_cipher_name(c->ssl));
        }
        bench_conn_ready(b, c);
        return;
    }
    if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
        return;
    char why[200];
    tls_why(c, why, sizeof why);
    bench_error(c->b, c, "TLS handshake: %s", why);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct bconn *c = s->data;
    struct bench *b = c->b;
    if (nread == 0 || c->state == C_CLOSED)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            bench_error(b, c, "the server closed the connection");
        else
            bench_error(b, c, "read: %s", uv_strerror((int)nread));
        return;
    }
    uint64_t now = uv_hrtime();
    if (!c->ssl) {
        verify_stream(b, c, (const unsigned char *)buf->base, (size_t)nread, now);
        return;
    }
    BIO_write(c->rbio, buf->base, (int)nread);
    if (c->state == C_HANDSHAKE) {
        tls_handshake(c);
        if (c->state == C_HANDSHAKE || c->state == C_CLOSED)
            return;
    }
    while (c->state != C_CLOSED) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, b->pbuf, sizeof b->pbuf);
        if (n > 0) {
            verify_stream(b, c, b->pbuf, (size_t)n, now);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        char why[200];
        if (e == SSL_ERROR_ZERO_RETURN)
            snprintf(why, sizeof why, "the server ended the TLS session");
        else
            tls_why(c, why, sizeof why);
        bench_error(b, c, "TLS read: %s", why);
        return;
    }
    if (c->state != C_CLOSED)
        tls_flush(c, false); /* a key update's answer, say */
}

static void on_connected(uv_connect_t *req, int status)
{
    struct bconn *c = req->data;
    struct bench *b = c->b;
    if (c->state == C_CLOSED)
        return;
    if (status < 0) {
        bench_error(b, c, "connect to %s: %s", b->o.target_text, uv_strerror(status));
        return;
    }
    int r = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (r < 0) {
        bench_error(b, c, "read: %s", uv_strerror(r));
        return;
    }
    if (!b->o.target.tls) {
        bench_conn_ready(b, c);
        return;
    }
    c->ssl = SSL_new(b->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        bench_error(b, c, "TLS: out of memory");
        return;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    const char *name = b->o.server_name;
    if (name)
        SSL_set_tlsext_host_name(c->ssl, name);
    if (b->o.ca) {
        const char *check = name ? name : b->o.target.kind == LISTEN_TCP ? b->o.target.host : NULL;
        if (check && check[0] && !SSL_set1_host(c->ssl, check)) {
            bench_error(b, c, "TLS: cannot check the name %s", check);
            return;
        }
    }
    c->state = C_HANDSHAKE;
    tls_handshake(c);
}

static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    on_alloc(h, hint, buf);
}

static void on_udp_read(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
    struct bconn *c = u->data;
    if (c->state == C_CLOSED || (nread == 0 && !from))
        return;
    if (nread < 0) {
        bench_error(c->b, c, "udp: %s", uv_strerror((int)nread));
        return;
    }
    if (flags & UV_UDP_PARTIAL) {
        bench_error(c->b, c, "udp: a datagram larger than 64 KiB came back");
        return;
    }
    verify_datagram(c->b, c, (const unsigned char *)buf->base, (size_t)nread, uv_hrtime());
}

static void on_udp_sent(uv_udp_send_t *req, int status)
{
    sent((struct wreq *)req, status, "udp send");
}

void conn_open(struct bench *b, struct bconn *c)
{
    int r;
    c->state = C_CONNECTING;
    c->h.handle.data = c;
    c->connect_req.data = c;
    switch (b->o.target.kind) {
    case LISTEN_UDP:
        uv_udp_init(b->loop, &c->h.udp);
        c->handle_live = true;
        r = uv_udp_connect(&c->h.udp, (const struct sockaddr *)&b->addr);
        if (!r)
            r = uv_udp_recv_start(&c->h.udp, on_udp_alloc, on_udp_read);
        if (r < 0) {
            bench_error(b, c, "udp %s: %s", b->o.target_text, uv_strerror(r));
            return;
        }
        bench_conn_ready(b, c);
        return;
    case LISTEN_UNIX:
        uv_pipe_init(b->loop, &c->h.pipe, 0);
        c->handle_live = true;
        uv_pipe_connect(&c->connect_req, &c->h.pipe, b->o.target.path, on_connected);
        return;
    case LISTEN_TCP:
        uv_tcp_init(b->loop, &c->h.tcp);
        c->handle_live = true;
        uv_tcp_nodelay(&c->h.tcp, 1);
        r = uv_tcp_connect(&c->connect_req, &c->h.tcp, (const struct sockaddr *)&b->addr, on_connected);
        if (r < 0)
            bench_error(b, c, "connect to %s: %s", b->o.target_text, uv_strerror(r));
        return;
    }
}

void conn_send_request(struct bench *b, struct bconn *c, uint64_t start)
{
    uint64_t now = uv_hrtime();
    size_t pos = pattern_pos(b, c, c->sent);
    const unsigned char *data = b->pat + pos;
    size_t n = b->o.size;
    struct inflight *f = &c->ring[(c->ring_head + c->ring_n) % c->ring_cap];
    f->start_ns = start;
    f->sent_ns = now;
    f->end = c->sent + n;
    c->ring_n++;
    b->outstanding++;
    c->sent += n;
    if (b->phase == PHASE_MEASURE)
        b->bytes_out += n;
    bool completes = b->o.expect == EXPECT_NONE;
    if (b->o.target.kind == LISTEN_UDP) {
        uv_buf_t buf = uv_buf_init((char *)data, (unsigned)n);
        if (!completes) {
            int r = uv_udp_try_send(&c->h.udp, &buf, 1, NULL);
            if (r == (int)n)
                return;
            if (r != UV_EAGAIN && r != UV_ENOSYS) {
                bench_error(b, c, "udp send: %s", uv_strerror(r));
                return;
            }
        }
        struct wreq *w = malloc(sizeof *w);
        if (!w) {
            bench_error(b, c, "out of memory");
            return;
        }
        w->c = c;
        w->completes = completes;
        int r = uv_udp_send(&w->req.send, &c->h.udp, &buf, 1, NULL, on_udp_sent);
        if (r < 0) {
            free(w);
            bench_error(b, c, "udp send: %s", uv_strerror(r));
        }
        return;
    }
    if (!c->ssl) {
        write_bytes(c, data, n, false, completes);
        return;
    }
    ERR_clear_error();
    int w = SSL_write(c->ssl, data, (int)n);
    if (w != (int)n) {
        char why[200];
        tls_why(c, why, sizeof why);
        bench_error(b, c, "TLS write: %s", why);
        return;
    }
    tls_flush(c, completes);
}
