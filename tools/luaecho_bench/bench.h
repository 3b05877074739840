/*
 * bench.h - the state of one luaecho-bench run, shared by its files:
 * main.c (the phases), conn.c (transports), verify.c (the request pattern
 * and what comes back), report.c (text and JSON), procstat.c (/proc).
 * One thread, one libuv loop; nothing here is locked.
 */
#ifndef LUAECHO_BENCH_BENCH_H
#define LUAECHO_BENCH_BENCH_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "histogram.h"
#include "options.h"

enum phase { PHASE_SETUP, PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN, PHASE_HOLD, PHASE_DONE };
enum conn_state { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_PRIMING, C_READY, C_CLOSED };

/* A request sent and not yet answered. */
struct inflight {
    uint64_t start_ns;  /* latency counts from here: the scheduled time (--rate) or the send */
    uint64_t sent_ns;
    uint64_t end;       /* the request's end in the connection's stream of request bytes */
};

struct bench;

struct bconn {
    struct bench *b;
    int id;
    enum conn_state state;
    bool handle_live, primed;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_udp_t udp;
    } h;
    uv_connect_t connect_req;
    SSL *ssl;
    BIO *rbio, *wbio;             /* TLS on memory BIOs: ciphertext in, ciphertext out */
    size_t off;                   /* where this connection's bytes start in the pattern */
    uint64_t sent, recvd;         /* request bytes sent; reply data bytes verified */
    uint64_t k;                   /* --rate: requests scheduled so far */
    uint64_t t0;                  /* --rate: when request 0 is due */
    struct inflight *ring;
    int ring_head, ring_n, ring_cap;
    bool in_prefix;               /* --expect prefix: inside STR */
    size_t pfx_pos;
    uint64_t chunk_data;          /* data bytes since the last STR */
};

struct bench {
    struct bench_options o;
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    SSL_CTX *ssl_ctx;
    char tls_version[32], tls_cipher[64];
    unsigned char *pat;           /* the request bytes: pat[0..plen), plen a multiple of --size */
    size_t plen;
    struct bconn *conns;
    int nconns;
    enum phase phase;
    /* opening connections */
    bool setting_up;
    int setup_target, next_open, connecting, primed, failed;
    void (*setup_done)(struct bench *);
    /* --rate */
    double interval_ns;           /* per connection */
    int tfd;
    uv_poll_t tpoll;
    uint64_t armed_ns;
    uv_timer_t phase_timer, setup_timer, loss_timer;
    /* counts */
    uint64_t outstanding;         /* requests in flight on live connections */
    uint64_t rt_window, rt_total, bytes_out, bytes_in, lost, errors, verify_failures, unanswered, checked;
    char first_error[256], verify_msg[512];
    struct histogram hist;
    uint64_t t_start, t_meas, t_end;
    double srv_cpu0, srv_cpu1, me0, me1;
    /* --hold */
    long long rss0, rss1;
    int hold_base_up, hold_up, hold_sent, hold_answered;
    unsigned char rbuf[65536], pbuf[65536];
};

/* main.c */
void bench_conn_ready(struct bench *b, struct bconn *c);  /* connected, handshake done */
void bench_request_done(struct bench *b, struct bconn *c, uint64_t now);
void bench_conn_gone(struct bench *b, struct bconn *c);   /* closed by an error or a failed check */
void bench_error(struct bench *b, struct bconn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* conn.c */
int conn_prepare(struct bench *b);                        /* resolve, TLS context; -1 (said why) */
void conn_open(struct bench *b, struct bconn *c);
void conn_send_request(struct bench *b, struct bconn *c, uint64_t start);
void conn_close(struct bconn *c);                         /* idempotent */

/* verify.c */
int pattern_make(struct bench *b);
size_t pattern_pos(const struct bench *b, const struct bconn *c, uint64_t stream_offset);
void verify_stream(struct bench *b, struct bconn *c, const unsigned char *p, size_t n, uint64_t now);
void verify_datagram(struct bench *b, struct bconn *c, const unsigned char *p, size_t n, uint64_t now);

/* report.c */
void report_load(const struct bench *b);
void report_hold(const struct bench *b);

/* procstat.c */
double proc_cpu_s(int pid);             /* utime + stime of all its threads; -1 */
long long proc_rss_kib(int pid);        /* VmRSS; -1 */
double self_cpu_s(void);

#endif
