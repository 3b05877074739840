/*
 * main.c - luaecho-bench: the run's phases on one libuv loop.
 *
 *   setup    open the connections (64 connecting at a time), one round trip
 *            each (the priming request, not measured)
 *   warmup   load, not measured
 *   measure  load; round trips completed in the window are counted, their
 *            latencies recorded, the server's CPU time read at both ends
 *   drain    no new requests; wait (2 s at most) for those in flight
 *
 * --hold replaces warmup..drain: a baseline of connections, the server's RSS,
 * the rest, the RSS again, one more round trip on every connection.
 *
 * Closed loop, a connection sends whenever fewer than --pipeline requests are
 * in flight. Open loop (--rate), request k of a connection is due at
 * t0 + k * interval and goes out at that time (a timerfd armed at the next
 * due time, nanosecond resolution) or, if the pipeline is full, as soon as a
 * slot frees; its latency counts from its due time either way.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define CONNECT_BATCH 64
#define SETUP_TIMEOUT_MS 10000
#define DRAIN_MS 2000
#define HOLD_ANSWER_MS 5000
#define UDP_LOSS_NS 1000000000ull

static int live; /* primed connections still open */

static void finish(struct bench *b);

static void setup_check(struct bench *b)
{
    if (!b->setting_up)
        return;
    if (b->primed + b->failed >= b->setup_target) {
        b->setting_up = false;
        uv_timer_stop(&b->setup_timer);
        b->setup_done(b);
        return;
    }
    while (b->next_open < b->setup_target && b->connecting < CONNECT_BATCH) {
        struct bconn *c = &b->conns[b->next_open++];
        b->connecting++;
        conn_open(b, c);
        if (!b->setting_up)
            return;
    }
}

static void on_setup_timeout(uv_timer_t *t)
{
    struct bench *b = t->data;
    for (int i = b->next_open; i < b->setup_target; i++) {
        b->conns[i].state = C_CLOSED;
        b->failed++;
        b->errors++;
    }
    b->next_open = b->setup_target;
    for (int i = 0; i < b->setup_target && b->setting_up; i++) {
        struct bconn *c = &b->conns[i];
        if (c->state != C_CLOSED && !c->primed)
            bench_error(b, c, "not connected and answered within %d s", SETUP_TIMEOUT_MS / 1000);
    }
    if (!b->first_error[0])
        snprintf(b->first_error, sizeof b->first_error, "connections not opened within %d s", SETUP_TIMEOUT_MS / 1000);
    setup_check(b);
}

static void start_setup(struct bench *b, int target, void (*done)(struct bench *))
{
    b->setup_target = target;
    b->setup_done = done;
    b->setting_up = true;
    uv_timer_start(&b->setup_timer, on_setup_timeout, SETUP_TIMEOUT_MS, 0);
    setup_check(b);
}

static void prime(struct bench *b, struct bconn *c)
{
    c->primed = true;
    c->state = C_READY;
    b->primed++;
    b->connecting--;
    live++;
    setup_check(b);
}

void bench_conn_ready(struct bench *b, struct bconn *c)
{
    if (b->o.expect == EXPECT_NONE) {
        prime(b, c);
        return;
    }
    c->state = C_PRIMING;
    conn_send_request(b, c, uv_hrtime());
}

void bench_conn_gone(struct bench *b, struct bconn *c)
{
    if (c->state == C_CLOSED)
        return;
    bool setup = !c->primed;
    b->outstanding -= (uint64_t)c->ring_n;
    c->ring_n = 0;
    conn_close(c);
    if (setup) {
        b->failed++;
        b->connecting--;
        setup_check(b);
        return;
    }
    live--;
    if (b->phase == PHASE_DONE || b->phase == PHASE_SETUP)
        return;
    if (!live || ((b->phase == PHASE_DRAIN || b->phase == PHASE_HOLD) && !b->outstanding))
        finish(b);
}

void bench_error(struct bench *b, struct bconn *c, const char *fmt, ...)
{
    if (b->phase == PHASE_DONE || c->state == C_CLOSED)
        return;
    b->errors++;
    if (!b->first_error[0]) {
        int n = snprintf(b->first_error, sizeof b->first_error, "connection %d: ", c->id);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->first_error + n, sizeof b->first_error - (size_t)n, fmt, ap);
        va_end(ap);
    }
    bench_conn_gone(b, c);
}

/* ---- sending */

static uint64_t next_due(const struct bench *b, const struct bconn *c)
{
    return c->t0 + (uint64_t)((double)c->k * b->interval_ns);
}

static void arm_at(struct bench *b, uint64_t t)
{
    struct itimerspec its = {{0, 0}, {(time_t)(t / 1000000000u), (long)(t % 1000000000u)}};
    if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
        its.it_value.tv_nsec = 1;
    timerfd_settime(b->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    b->armed_ns = t;
}

static void pump(struct bench *b, struct bconn *c, uint64_t now)
{
    if (b->phase != PHASE_WARMUP && b->phase != PHASE_MEASURE)
        return;
    while (c->state == C_READY && c->ring_n < b->o.pipeline) {
        uint64_t start = now;
        if (b->o.rate > 0) {
            start = next_due(b, c);
            if (start > now)
                break;
        }
        c->k++;
        conn_send_request(b, c, start);
    }
    if (b->o.rate > 0 && c->state == C_READY && c->ring_n < b->o.pipeline && next_due(b, c) < b->armed_ns)
        arm_at(b, next_due(b, c));
}

static void on_tick(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct bench *b = p->data;
    uint64_t expirations;
    if (read(b->tfd, &expirations, sizeof expirations) < 0) {
        /* spurious wake-up: nothing expired */
    }
    b->armed_ns = UINT64_MAX;
    uint64_t now = uv_hrtime();
    for (int i = 0; i < b->nconns; i++)
        pump(b, &b->conns[i], now);
}

void bench_request_done(struct bench *b, struct bconn *c, uint64_t now)
{
    struct inflight f = c->ring[c->ring_head];
    c->ring_head = (c->ring_head + 1) % c->ring_cap;
    c->ring_n--;
    b->outstanding--;
    b->rt_total++;
    if (!c->primed) {
        prime(b, c);
        return;
    }
    switch (b->phase) {
    case PHASE_MEASURE:
        b->rt_window++;
        hist_record(&b->hist, now > f.start_ns ? now - f.start_ns : 0);
        break;
    case PHASE_HOLD:
        b->hold_answered++;
        /* fall through */
    case PHASE_DRAIN:
        if (!b->outstanding)
            finish(b);
        return;
    default:
        break;
    }
    pump(b, c, now);
}

/* ---- phases */

static void on_drain_timeout(uv_timer_t *t)
{
    struct bench *b = t->data;
    b->unanswered = b->outstanding;
    b->errors += b->unanswered;
    if (b->unanswered && !b->first_error[0])
        snprintf(b->first_error, sizeof b->first_error, "%llu requests still unanswered %d s after the last was sent",
                 (unsigned long long)b->unanswered, (b->phase == PHASE_HOLD ? HOLD_ANSWER_MS : DRAIN_MS) / 1000);
    finish(b);
}

static void end_measure(uv_timer_t *t)
{
    struct bench *b = t->data;
    b->t_end = uv_hrtime();
    b->srv_cpu1 = b->o.server_pid ? proc_cpu_s(b->o.server_pid) : -1;
    b->me1 = self_cpu_s();
    b->phase = PHASE_DRAIN;
    if (!b->outstanding)
        finish(b);
    else
        uv_timer_start(&b->phase_timer, on_drain_timeout, DRAIN_MS, 0);
}

static void begin_measure(struct bench *b)
{
    b->phase = PHASE_MEASURE;
    b->t_meas = uv_hrtime();
    b->srv_cpu0 = b->o.server_pid ? proc_cpu_s(b->o.server_pid) : -1;
    b->me0 = self_cpu_s();
    uv_timer_start(&b->phase_timer, end_measure, (uint64_t)(b->o.duration * 1000 + 0.5), 0);
}

static void on_warm(uv_timer_t *t)
{
    begin_measure(t->data);
}

static void start_run(struct bench *b)
{
    if (!live) {
        finish(b);
        return;
    }
    uint64_t now = uv_hrtime();
    b->t_start = now;
    if (b->o.rate > 0) {
        b->interval_ns = (double)b->nconns * 1e9 / b->o.rate;
        for (int i = 0; i < b->nconns; i++)
            b->conns[i].t0 = now + (uint64_t)(b->interval_ns * i / b->nconns);
    }
    b->phase = PHASE_WARMUP;
    if (b->o.warmup > 0)
        uv_timer_start(&b->phase_timer, on_warm, (uint64_t)(b->o.warmup * 1000 + 0.5), 0);
    else
        begin_measure(b);
    for (int i = 0; i < b->nconns; i++)
        pump(b, &b->conns[i], now);
}

static void on_loss_tick(uv_timer_t *t)
{
    struct bench *b = t->data;
    uint64_t now = uv_hrtime();
    for (int i = 0; i < b->nconns; i++) {
        struct bconn *c = &b->conns[i];
        if (c->state == C_CLOSED || c->state == C_IDLE)
            continue;
        while (c->ring_n && now - c->ring[c->ring_head].sent_ns > UDP_LOSS_NS) {
            c->ring_head = (c->ring_head + 1) % c->ring_cap;
            c->ring_n--;
            b->outstanding--;
            b->lost++;
        }
        if (c->state == C_PRIMING && !c->ring_n)
            conn_send_request(b, c, now); /* the priming datagram was lost: again */
        else
            pump(b, c, now);
    }
    if ((b->phase == PHASE_DRAIN || b->phase == PHASE_HOLD) && !b->outstanding)
        finish(b);
}

/* ---- --hold */

static void hold_measure(uv_timer_t *t)
{
    struct bench *b = t->data;
    b->rss1 = proc_rss_kib(b->o.server_pid);
    b->phase = PHASE_HOLD;
    uint64_t now = uv_hrtime();
    for (int i = 0; i < b->nconns; i++)
        if (b->conns[i].state == C_READY) {
            b->hold_sent++;
            conn_send_request(b, &b->conns[i], now);
        }
    if (!b->outstanding)
        finish(b);
    else
        uv_timer_start(&b->phase_timer, on_drain_timeout, HOLD_ANSWER_MS, 0);
}

static void hold_all_ready(struct bench *b)
{
    b->hold_up = b->primed;
    uv_timer_start(&b->phase_timer, hold_measure, 1000, 0);
}

static void hold_baseline(uv_timer_t *t)
{
    struct bench *b = t->data;
    b->rss0 = proc_rss_kib(b->o.server_pid);
    b->hold_base_up = b->primed;
    start_setup(b, b->nconns, hold_all_ready);
}

static void hold_base_ready(struct bench *b)
{
    uv_timer_start(&b->phase_timer, hold_baseline, 500, 0);
}

static void finish(struct bench *b)
{
    if (b->phase == PHASE_DONE)
        return;
    if (b->phase == PHASE_WARMUP || b->phase == PHASE_MEASURE) { /* every connection gone early */
        if (b->phase == PHASE_WARMUP)
            begin_measure(b);
        b->t_end = uv_hrtime();
        b->srv_cpu1 = b->o.server_pid ? proc_cpu_s(b->o.server_pid) : -1;
        b->me1 = self_cpu_s();
    }
    b->phase = PHASE_DONE;
    b->setting_up = false;
    uv_close((uv_handle_t *)&b->phase_timer, NULL);
    uv_close((uv_handle_t *)&b->setup_timer, NULL);
    uv_close((uv_handle_t *)&b->loss_timer, NULL);
    if (b->o.rate > 0)
        uv_close((uv_handle_t *)&b->tpoll, NULL);
    for (int i = 0; i < b->nconns; i++)
        conn_close(&b->conns[i]);
}

static int raise_nofile(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 0;
    if (rl.rlim_cur < rl.rlim_max && (rlim_t)need > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)need > rl.rlim_cur) {
        fprintf(stderr, "luaecho-bench: %d connections need more file descriptors than ulimit -n allows (%llu)\n",
                need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct bench bench;
    struct bench *b = &bench;
    int rc = options_parse(argc, argv, &b->o);
    if (rc >= 0)
        return rc;
    if (b->o.server_pid && proc_cpu_s(b->o.server_pid) < 0) {
        fprintf(stderr, "luaecho-bench: --server-pid %d: no such process (/proc/%d/stat cannot be read)\n",
                b->o.server_pid, b->o.server_pid);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    b->nconns = b->o.hold ? b->o.hold : b->o.conns;
    if (raise_nofile(b->nconns + 32) || conn_prepare(b) || pattern_make(b))
        return 1;
    b->conns = calloc((size_t)b->nconns, sizeof *b->conns);
    if (!b->conns)
        return 1;
    size_t msgs = b->plen / b->o.size;
    for (int i = 0; i < b->nconns; i++) {
        struct bconn *c = &b->conns[i];
        c->b = b;
        c->id = i;
        c->off = (size_t)(((uint64_t)i * 2654435761u) % msgs) * b->o.size;
        c->ring_cap = b->o.pipeline;
        c->ring = calloc((size_t)c->ring_cap, sizeof *c->ring);
        if (!c->ring)
            return 1;
        c->in_prefix = true;
    }
    hist_init(&b->hist);
    b->srv_cpu0 = b->srv_cpu1 = -1;
    b->rss0 = b->rss1 = -1;
    b->armed_ns = UINT64_MAX;
    b->tfd = -1;
    b->loop = uv_default_loop();
    uv_timer_init(b->loop, &b->phase_timer);
    uv_timer_init(b->loop, &b->setup_timer);
    uv_timer_init(b->loop, &b->loss_timer);
    b->phase_timer.data = b->setup_timer.data = b->loss_timer.data = b;
    if (b->o.target.kind == LISTEN_UDP)
        uv_timer_start(&b->loss_timer, on_loss_tick, 100, 100);
    if (b->o.rate > 0) {
        b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (b->tfd < 0 || uv_poll_init(b->loop, &b->tpoll, b->tfd)) {
            perror("luaecho-bench: timerfd");
            return 1;
        }
        b->tpoll.data = b;
        uv_poll_start(&b->tpoll, UV_READABLE, on_tick);
    }
    if (b->o.hold) {
        int base = b->o.hold >= 2 ? b->o.hold / 10 : 0;
        if (base > 100)
            base = 100;
        if (b->o.hold >= 2 && base < 1)
            base = 1;
        start_setup(b, base, hold_base_ready);
    } else {
        start_setup(b, b->nconns, start_run);
    }
    uv_run(b->loop, UV_RUN_DEFAULT);
    if (b->tfd >= 0)
        close(b->tfd);
    uv_loop_close(b->loop);

    if (b->o.hold)
        report_hold(b);
    else
        report_load(b);
    if (b->verify_msg[0])
        fprintf(stderr, "luaecho-bench: verification failed: %s\n", b->verify_msg);
    bool ok = !b->verify_failures && !b->errors &&
              (b->o.hold ? b->hold_answered == b->hold_sent && b->hold_sent > 0 : b->rt_window > 0);

    for (int i = 0; i < b->nconns; i++)
        free(b->conns[i].ring);
    free(b->conns);
    free(b->pat);
    SSL_CTX_free(b->ssl_ctx);
    return ok ? 0 : 1;
}
