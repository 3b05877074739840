/*
 * report.c - what a run found: a text report for people, or (--json) one
 * JSON object on one line. The figures are the same in both.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

static const char *transport_name(const struct bench *b)
{
    switch (b->o.target.kind) {
    case LISTEN_UDP: return "udp";
    case LISTEN_UNIX: return b->o.target.tls ? "tls+unix" : "unix";
    default: return b->o.target.tls ? "tls" : "tcp";
    }
}

static void json_string(const char *s)
{
    if (!s || !s[0]) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

static void expect_text(const struct bench *b, char *buf, size_t n)
{
    if (b->o.expect == EXPECT_PREFIX)
        snprintf(buf, n, "prefix:%s", b->o.prefix);
    else
        snprintf(buf, n, "%s", expect_name(b->o.expect));
}

void report_load(const struct bench *b)
{
    const struct bench_options *o = &b->o;
    double win = b->t_end > b->t_meas ? (double)(b->t_end - b->t_meas) / 1e9 : 0;
    double rps = win > 0 ? (double)b->rt_window / win : 0;
    double out = win > 0 ? (double)b->bytes_out / win / 1e6 : 0, in = win > 0 ? (double)b->bytes_in / win / 1e6 : 0;
    double srv = b->srv_cpu0 >= 0 && b->srv_cpu1 >= 0 ? b->srv_cpu1 - b->srv_cpu0 : -1;
    double srv_rt = srv >= 0 && b->rt_window ? srv * 1e6 / (double)b->rt_window : -1;
    double me = win > 0 ? (b->me1 - b->me0) / win * 100 : 0;
    const struct histogram *h = &b->hist;
    uint64_t p50 = hist_quantile(h, 0.5), p90 = hist_quantile(h, 0.9), p99 = hist_quantile(h, 0.99),
             p999 = hist_quantile(h, 0.999);
    char expect[300];
    expect_text(b, expect, sizeof expect);
    int alive = 0;
    for (int i = 0; i < b->nconns; i++)
        alive += b->conns[i].primed;
    if (o->json) {
        printf("{\"mode\":\"load\",\"target\":");
        json_string(o->target_text);
        printf(",\"transport\":\"%s\",\"conns\":%d,\"connected\":%d,\"size\":%zu,\"pipeline\":%d,", transport_name(b),
               o->conns, alive, o->size, o->pipeline);
        if (o->rate > 0)
            printf("\"rate\":%.3f,\"rate_per\":\"total\",", o->rate);
        else
            printf("\"rate\":null,\"rate_per\":null,");
        printf("\"expect\":");
        json_string(expect);
        printf(",\"warmup_s\":%.3f,\"duration_s\":%.3f,\"round_trips\":%llu,\"rt_per_s\":%.1f,"
               "\"mb_per_s_out\":%.3f,\"mb_per_s_in\":%.3f,"
               "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
               "\"errors\":%llu,\"unanswered\":%llu,\"lost_datagrams\":%llu,\"verification_failures\":%llu,"
               "\"verified\":%llu,\"first_error\":",
               o->warmup, win, (unsigned long long)b->rt_window, rps, out, in, us(p50), us(p90), us(p99), us(p999),
               us(h->max), hist_mean(h) / 1e3, (unsigned long long)b->errors, (unsigned long long)b->unanswered,
               (unsigned long long)b->lost, (unsigned long long)b->verify_failures, (unsigned long long)b->checked);
        json_string(b->first_error);
        printf(",\"verification\":");
        json_string(b->verify_msg);
        printf(",\"tls\":");
        char tls[100] = "";
        if (b->tls_version[0])
            snprintf(tls, sizeof tls, "%s %s", b->tls_version, b->tls_cipher);
        json_string(tls);
        if (o->server_pid)
            printf(",\"server_pid\":%d,\"server_cpu_s\":%.3f,\"server_cpu_us_per_rt\":%.3f", o->server_pid, srv, srv_rt);
        else
            printf(",\"server_pid\":null,\"server_cpu_s\":null,\"server_cpu_us_per_rt\":null");
        printf(",\"client_cpu_pct\":%.1f,\"ok\":%s}\n", me,
               !b->verify_failures && !b->errors && b->rt_window ? "true" : "false");
        return;
    }
    printf("luaecho-bench %s (%s): %d connections, %zu B requests, pipeline %d, expect %s\n", o->target_text,
           transport_name(b), o->conns, o->size, o->pipeline, expect);
    if (o->rate > 0)
        printf("  load             open loop, %.6g requests/s in total (%.6g/s per connection), latency from the "
               "scheduled time\n", o->rate, o->rate / o->conns);
    else
        printf("  load             closed loop\n");
    if (b->tls_version[0])
        printf("  tls              %s %s\n", b->tls_version, b->tls_cipher);
    printf("  window           %.2f s after %.2g s of warmup; %d of %d connections opened\n", win, o->warmup, alive,
           o->conns);
    printf("  %-16s %llu (%.0f/s)\n", o->expect == EXPECT_NONE ? "requests" : "round trips",
           (unsigned long long)b->rt_window, rps);
    if (o->rate > 0 && rps < o->rate * 0.95)
        printf("  note             below the --rate asked (%.6g/s): the latencies include the queueing\n", o->rate);
    printf("  throughput       out %.3f MB/s, in %.3f MB/s\n", out, in);
    if (o->expect != EXPECT_NONE)
        printf("  latency (us)     p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n", us(p50), us(p90),
               us(p99), us(p999), us(h->max), hist_mean(h) / 1e3);
    else
        printf("  latency (us)     until the kernel took it: p50 %.1f  p99 %.1f  max %.1f\n", us(p50), us(p99),
               us(h->max));
    if (o->server_pid) {
        if (srv_rt >= 0)
            printf("  server cpu       %.2f us per %s (pid %d: %.3f s in the window)\n", srv_rt,
                   o->expect == EXPECT_NONE ? "request" : "round trip", o->server_pid, srv);
        else
            printf("  server cpu       unknown (pid %d)\n", o->server_pid);
    }
    printf("  client cpu       %.0f %% of one core%s\n", me, me > 90 ? " (saturated: the figures are the client's)" : "");
    printf("  errors           %llu%s%s\n", (unsigned long long)b->errors, b->first_error[0] ? ": " : "", b->first_error);
    if (o->target.kind == LISTEN_UDP)
        printf("  lost datagrams   %llu\n", (unsigned long long)b->lost);
    if (b->verify_failures)
        printf("  verification     FAILED on %llu connection(s): %s\n", (unsigned long long)b->verify_failures,
               b->verify_msg);
    else if (o->expect == EXPECT_NONE)
        printf("  verification     none (--expect none)\n");
    else if (o->expect == EXPECT_LINE)
        printf("  verification     ok (%llu lines counted)\n", (unsigned long long)b->checked);
    else
        printf("  verification     ok (%llu bytes checked byte for byte)\n", (unsigned long long)b->checked);
}

void report_hold(const struct bench *b)
{
    const struct bench_options *o = &b->o;
    int held = b->hold_up - b->hold_base_up;
    double per = b->rss0 >= 0 && b->rss1 >= 0 && held > 0 ? (double)(b->rss1 - b->rss0) * 1024.0 / held : -1;
    bool ok = !b->verify_failures && !b->errors && b->hold_answered == b->hold_sent && b->hold_sent > 0;
    if (o->json) {
        printf("{\"mode\":\"hold\",\"target\":");
        json_string(o->target_text);
        printf(",\"transport\":\"%s\",\"requested\":%d,\"baseline_conns\":%d,\"established\":%d,\"answered_after\":%d,"
               "\"server_pid\":%d,\"rss_baseline_kib\":%lld,\"rss_hold_kib\":%lld,\"held\":%d,\"bytes_per_conn\":%.0f,"
               "\"errors\":%llu,\"verification_failures\":%llu,\"first_error\":",
               transport_name(b), o->hold, b->hold_base_up, b->hold_up, b->hold_answered, o->server_pid, b->rss0,
               b->rss1, held, per, (unsigned long long)b->errors, (unsigned long long)b->verify_failures);
        json_string(b->first_error);
        printf(",\"verification\":");
        json_string(b->verify_msg);
        printf(",\"ok\":%s}\n", ok ? "true" : "false");
        return;
    }
    printf("luaecho-bench %s (%s): holding %d idle connections, server pid %d\n", o->target_text, transport_name(b),
           o->hold, o->server_pid);
    printf("  established      %d of %d (baseline after the first %d)\n", b->hold_up, o->hold, b->hold_base_up);
    printf("  server rss       %lld KiB at the baseline, %lld KiB holding all\n", b->rss0, b->rss1);
    if (per >= 0)
        printf("  per connection   %.0f B (RSS growth over the baseline / %d connections)\n", per, held);
    else
        printf("  per connection   unknown\n");
    printf("  answered after   %d of %d\n", b->hold_answered, b->hold_sent);
    printf("  errors           %llu%s%s\n", (unsigned long long)b->errors, b->first_error[0] ? ": " : "", b->first_error);
    if (b->verify_failures)
        printf("  verification     FAILED: %s\n", b->verify_msg);
}
