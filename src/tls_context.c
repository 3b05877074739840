/*
 * tls_context.c - see tls_context.h.
 */
#include "tls_context.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

struct tls_server {
    int refs;                    /* its owner's, and each session's still shaking hands */
    SSL_CTX *ctx[TLS_MAX_PAIRS]; /* one per pair; ctx[0] is the default */
    int count;
    unsigned char alpn[256];     /* the wire format: length-prefixed names */
    size_t alpn_len;
};

struct tls_client {
    SSL_CTX *ctx;
    bool verify;
};

/* OpenSSL's last error as text ("key values mismatch"), the queue emptied. */
static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return reason ? reason : "unknown OpenSSL error";
}

/* Can the file be read? If not, why (as the system says). */
static bool readable(const char *path, const char *what, char *error, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(error, size, "cannot load %s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* "h2,http/1.1" as ALPN's wire format. False when a name is empty or too long. */
static bool alpn_wire(const char *list, unsigned char *out, size_t room, size_t *len)
{
    *len = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || *len + 1 + n > room)
            return false;
        out[(*len)++] = (unsigned char)n;
        memcpy(out + *len, p, n);
        *len += n;
        p += n;
        if (*p == ',')
            p++;
    }
    return *len > 0;
}

/* What every context of ours has. */
static SSL_CTX *context_new(const SSL_METHOD *method)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* An idle session holds no read or write buffer (about 34 KiB each otherwise). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* The pair's certificate and key, the key checked against it. */
static bool load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *error, size_t size)
{
    if (!readable(cert, "certificate", error, size) || !readable(key, "key", error, size))
        return false;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(error, size, "cannot load certificate %s: %s (a PEM certificate, its chain after it)", cert,
                 openssl_reason());
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(error, size, "cannot load key %s: %s (a PEM private key, not encrypted)", key, openssl_reason());
        return false;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(error, size, "the key %s does not match the certificate %s", key, cert);
        return false;
    }
    return true;
}

/* Ask for a client certificate and accept only one that 'ca' signed. */
static bool require_client_cert(SSL_CTX *ctx, const char *ca, char *error, size_t size)
{
    if (!readable(ca, "client CA", error, size))
        return false;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 || !names) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(error, size, "cannot load client CA %s: %s", ca, openssl_reason());
        return false;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return true;
}

/* The client's SNI name picks the first pair whose certificate names it. */
static int on_server_name(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    struct tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    for (int i = 0; i < s->count; i++) {
        X509 *cert = SSL_CTX_get0_certificate(s->ctx[i]);
        if (cert && X509_check_host(cert, name, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, s->ctx[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* no match: the default pair, as nginx does */
}

/* The first of our protocols the client offers; none in common: no ALPN. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    (void)ssl;
    struct tls_server *s = arg;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, s->alpn, (unsigned)s->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

static bool server_pair(struct tls_server *s, const struct tls_server_config *cfg, int i, char *error, size_t size)
{
    SSL_CTX *ctx = s->ctx[i] = context_new(TLS_server_method());
    if (!ctx) {
        snprintf(error, size, "out of memory for TLS");
        return false;
    }
    /* Sessions resumed with a client certificate need a context id. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"luaecho", 7);
    if (!load_pair(ctx, cfg->certs[i], cfg->keys[i], error, size))
        return false;
    if (cfg->client_ca && !require_client_cert(ctx, cfg->client_ca, error, size))
        return false;
    SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    if (s->alpn_len > 0)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
    return true;
}

struct tls_server *tls_server_new(const struct tls_server_config *cfg, char *error, size_t size)
{
    struct tls_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(error, size, "out of memory for TLS");
        return NULL;
    }
    s->refs = 1;
    if (cfg->alpn && !alpn_wire(cfg->alpn, s->alpn, sizeof s->alpn, &s->alpn_len)) {
        snprintf(error, size, "--tls-alpn '%s': a list of protocol names separated by commas, such as h2,http/1.1",
                 cfg->alpn);
        free(s);
        return NULL;
    }
    for (int i = 0; i < cfg->pairs && i < TLS_MAX_PAIRS; i++) {
        s->count = i + 1;
        if (!server_pair(s, cfg, i, error, size)) {
            tls_server_free(s);
            return NULL;
        }
    }
    return s;
}

struct tls_server *tls_server_ref(struct tls_server *s)
{
    s->refs++;
    return s;
}

void tls_server_free(struct tls_server *s)
{
    if (!s || --s->refs > 0)
        return;
    for (int i = 0; i < s->count; i++)
        SSL_CTX_free(s->ctx[i]);
    free(s);
}

SSL *tls_server_ssl(struct tls_server *s)
{
    SSL *ssl = SSL_new(s->ctx[0]);
    if (ssl)
        SSL_set_accept_state(ssl);
    return ssl;
}

struct tls_client *tls_client_new(const struct tls_client_config *cfg, char *error, size_t size)
{
    struct tls_client *c = calloc(1, sizeof *c);
    if (!c || !(c->ctx = context_new(TLS_client_method()))) {
        free(c);
        snprintf(error, size, "out of memory for TLS");
        return NULL;
    }
    c->verify = cfg->verify;
    unsigned char alpn[256];
    size_t alpn_len;
    bool ok = true;
    if (cfg->alpn && (!alpn_wire(cfg->alpn, alpn, sizeof alpn, &alpn_len) ||
                      SSL_CTX_set_alpn_protos(c->ctx, alpn, (unsigned)alpn_len) != 0)) {
        snprintf(error, size, "alpn: a list of protocol names, such as {\"h2\", \"http/1.1\"}");
        ok = false;
    } else if (cfg->ca && !readable(cfg->ca, "CA file", error, size)) {
        ok = false;
    } else if (cfg->ca ? SSL_CTX_load_verify_locations(c->ctx, cfg->ca, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        snprintf(error, size, "cannot load CA %s: %s", cfg->ca ? cfg->ca : "store", openssl_reason());
        ok = false;
    }
    if (!ok) {
        tls_client_free(c);
        return NULL;
    }
    if (c->verify)
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    return c;
}

void tls_client_free(struct tls_client *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *tls_client_ssl(struct tls_client *c, const char *server_hostname)
{
    SSL *ssl = SSL_new(c->ctx);
    if (!ssl)
        return NULL;
    SSL_set_connect_state(ssl);
    if (!server_hostname)
        return ssl;
    bool ip = is_ip_literal(server_hostname);
    if (!ip)
        SSL_set_tlsext_host_name(ssl, server_hostname); /* SNI never names an address */
    if (c->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_hostname)
                    : X509_VERIFY_PARAM_set1_host(param, server_hostname, 0);
        if (ok != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

void tls_info_of(SSL *ssl, struct tls_info *out)
{
    *out = (struct tls_info){.version = SSL_get_version(ssl), .cipher = SSL_get_cipher_name(ssl)};
    out->server_name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    const unsigned char *alpn;
    unsigned int alpn_len;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn_len > 0 && alpn_len < sizeof out->alpn) {
        memcpy(out->alpn, alpn, alpn_len);
        out->alpn[alpn_len] = '\0';
    }
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer)
        return;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(bio, out->peer_subject, (int)sizeof out->peer_subject - 1);
        out->peer_subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(bio);
    out->peer_verified = SSL_get_verify_result(ssl) == X509_V_OK;
}

void tls_error_text(SSL *ssl, char *out, size_t size)
{
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (verify != X509_V_OK) {
        ERR_clear_error();
        snprintf(out, size, "certificate verify failed: %s", X509_verify_cert_error_string(verify));
        return;
    }
    snprintf(out, size, "%s", openssl_reason());
}
