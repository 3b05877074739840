/*
 * tls_context.h - OpenSSL contexts set up the way luaecho serves and
 * connects: TLS 1.2 and 1.3 only, OpenSSL's default ciphers, no
 * renegotiation, no compression, buffers released while idle. A server
 * context holds one certificate per --tls-cert/--tls-key pair and picks
 * one by the client's SNI name (the first pair by default); a client
 * context verifies against a CA file or the system's store. Loading
 * reads files: at start-up and on a reload, never per connection. Pure
 * OpenSSL: no libuv, no Lua.
 */
#ifndef LUAECHO_TLS_CONTEXT_H
#define LUAECHO_TLS_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define TLS_MAX_PAIRS 16

struct tls_server_config {
    const char *certs[TLS_MAX_PAIRS]; /* PEM, the chain may follow */
    const char *keys[TLS_MAX_PAIRS];
    int pairs;
    const char *client_ca;            /* ask for and verify a client certificate; NULL: none */
    const char *alpn;                 /* "h2,http/1.1"; NULL: none */
};

struct tls_server;

/* Load every pair (each key checked against its certificate), the CA and
 * the ALPN list. NULL on failure, with one line in 'error' naming the
 * file and why. */
struct tls_server *tls_server_new(const struct tls_server_config *cfg, char *error, size_t size);
/* Another reference: a session holds one while it shakes hands (the SNI
 * and ALPN callbacks read the server). One loop's: not thread-safe. */
struct tls_server *tls_server_ref(struct tls_server *s);
/* Let go of a reference; the last frees it. Established sessions keep
 * their certificates (OpenSSL counts its own references). */
void tls_server_free(struct tls_server *s);
/* A new server-side SSL (accept state) with the default certificate;
 * the SNI callback switches it. NULL when out of memory. */
SSL *tls_server_ssl(struct tls_server *s);

struct tls_client_config {
    const char *ca;     /* PEM CA file; NULL: the system's store */
    bool verify;        /* false only when the script asks */
    const char *alpn;   /* comma list; NULL: none */
};

struct tls_client;

struct tls_client *tls_client_new(const struct tls_client_config *cfg, char *error, size_t size);
void tls_client_free(struct tls_client *c);
/* A new client-side SSL (connect state): SNI and, when verifying, the
 * host name checked against 'server_hostname' (NULL: neither). */
SSL *tls_client_ssl(struct tls_client *c, const char *server_hostname);

/* What get_extra_info("tls") shows of an established session. */
struct tls_info {
    const char *version;     /* "TLSv1.3" */
    const char *cipher;      /* "TLS_AES_256_GCM_SHA384" */
    const char *server_name; /* SNI, NULL: none */
    char alpn[64];           /* "" : none */
    char peer_subject[256];  /* "CN=client", "": no certificate */
    bool peer_verified;
};

void tls_info_of(SSL *ssl, struct tls_info *out);
/* Why a handshake or a read failed, one line: the verification result
 * when that is the reason ("certificate verify failed: certificate has
 * expired"), else OpenSSL's error queue (which this empties). */
void tls_error_text(SSL *ssl, char *out, size_t size);

#endif
