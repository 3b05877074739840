/*
 * tls-load.c - TLS echo load generator (one thread, epoll, OpenSSL).
 *
 * Load mode: N connections each complete a TLS handshake and one verified echo,
 * then send SIZE-byte messages one at a time (request/response), wait for every
 * byte to come back and compare it with what was sent.  After --warmup seconds
 * the next --duration seconds are measured: round trips, latency (exact p50/p99
 * from every sample), and, with --server-pid, the server's CPU time (utime +
 * stime of the process, all its threads, and its child processes) over exactly
 * that window.
 *
 *   tls-load --port 9443 --conns 10 --size 1024 --duration 5 --warmup 1 --line
 *
 * Hold mode: open --hold-baseline connections (handshake + one small echo
 * each), read the server's RSS, open the rest up to --hold N, read the RSS
 * again midway through --hold-seconds of idleness, then check one more echo on
 * every connection.  The growth divided by (N - baseline) is the memory per
 * idle TLS connection, free of the one-time costs of the first connections.
 *
 *   tls-load --port 9443 --hold 2000 --hold-baseline 100 --hold-seconds 6 --server-pid PID
 *
 * Messages: --line makes every message end in '\n' with no other '\n' inside
 * (HAProxy 2.6's Lua echo reads lines).  Certificate verification is off
 * unless --ca FILE is given (then the chain must verify against it, and the
 * name against --server-name when given).
 *
 * The last line of stdout is one JSON object.  Exit status: 0 clean run,
 * 1 usage or setup error, 2 the run saw errors, 3 watchdog.
 *
 * Build: cc -O2 -Wall -Wextra -o tls-load tls-load.c $(pkg-config --cflags --libs openssl)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF (64 * 1024)
#define MAX_MSG (1024 * 1024)
#define HOLD_MSG 32
#define MAX_PIDS 256

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- options */

static struct {
    const char *host, *port, *ca, *server_name;
    int conns, line, quiet, hold, hold_baseline, batch;
    size_t size;
    double duration, warmup, drain, connect_timeout, hold_seconds;
    int srv_roots[16], n_srv_roots;
} opt = {
    .host = "127.0.0.1", .conns = 10, .size = 1024, .duration = 5, .warmup = 1, .drain = 3,
    .connect_timeout = 20, .hold_seconds = 6, .hold_baseline = 100, .batch = 64,
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tls-load --port P [--host H] [--conns N] [--size BYTES] [--duration S] [--warmup S]\n"
            "                [--drain S] [--line] [--ca FILE [--server-name NAME]] [--server-pid PID]...\n"
            "                [--connect-timeout S] [--connect-batch K] [--quiet]\n"
            "       tls-load --port P --hold N [--hold-baseline B] [--hold-seconds S] [--server-pid PID] ...\n");
}

/* ---------------------------------------------------------------- server accounting */

static int srv_pids[MAX_PIDS], n_srv_pids;

/* the roots and all their descendants, found once (servers do not fork while measured) */
static void find_server_pids(void)
{
    static int pid_of[32768], ppid_of[32768];
    int np = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && np < 32768) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *p = strrchr(buf, ')');
        int ppid;
        if (p && sscanf(p + 1, " %*c %d", &ppid) == 1) {
            pid_of[np] = atoi(e->d_name);
            ppid_of[np++] = ppid;
        }
    }
    if (d)
        closedir(d);
    n_srv_pids = 0;
    for (int i = 0; i < opt.n_srv_roots; i++)
        srv_pids[n_srv_pids++] = opt.srv_roots[i];
    for (int q = 0; q < n_srv_pids; q++)
        for (int i = 0; i < np && n_srv_pids < MAX_PIDS; i++)
            if (ppid_of[i] == srv_pids[q])
                srv_pids[n_srv_pids++] = pid_of[i];
}

/* utime + stime (seconds) of the server processes; each process's figure covers all its threads */
static double server_cpu_s(void)
{
    double ticks = 0;
    for (int i = 0; i < n_srv_pids; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", srv_pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            return -1;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *p = strrchr(buf, ')');
        unsigned long long ut, st;
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
            return -1;
        ticks += (double)(ut + st);
    }
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* sum over the server processes of a /proc/PID/status field in KiB (VmRSS, RssAnon) */
static long long server_status_kib(const char *field)
{
    long long total = 0;
    size_t fl = strlen(field);
    for (int i = 0; i < n_srv_pids; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", srv_pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            return -1;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
                total += atoll(line + fl + 1);
                break;
            }
        fclose(f);
    }
    return total;
}

/* busy jiffies of the whole machine (all CPUs), to estimate what other processes used */
static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    if (n < 7)
        return -1;
    /* user nice system [idle iowait] irq softirq; steal is not ours nor theirs */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- message pattern */

/* Byte k of connection i's stream is pat[(k + off_i) % plen]; pat is followed by
 * a wrapped copy of its start so a message never has to be split. plen is a
 * multiple of the message size, so with --line each message ends in '\n'. */
static unsigned char *pat;
static size_t plen, pmsgs, msg_size;

static void make_pattern(size_t size, int line)
{
    msg_size = size;
    pmsgs = (size_t)(1u << 20) / size + 2;
    plen = pmsgs * size;
    pat = malloc(plen + size);
    if (!pat) {
        perror("malloc");
        exit(1);
    }
    uint32_t s = 2463534242u;
    for (size_t k = 0; k < plen; k++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        unsigned char b = (unsigned char)(s >> 11);
        if (line)
            b = (k % size == size - 1) ? '\n' : (b == '\n' ? '#' : b);
        pat[k] = b;
    }
    memcpy(pat + plen, pat, size);
}

/* ---------------------------------------------------------------- connections */

enum { S_TCP, S_HANDSHAKE, S_ACTIVE, S_CLOSED };

struct conn {
    int fd, id, state, want_out, primed;
    SSL *ssl;
    size_t off;                 /* pattern offset of this connection */
    uint64_t sent, recvd;       /* stream bytes */
    uint64_t queued;            /* stream bytes the client means to have sent */
    uint64_t t_sent;            /* when the current message was queued */
};

static SSL_CTX *ctx;
static int epfd;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static struct conn *conns;
static int n_conns, next_connect, connecting, primed_count, closed_count;
static unsigned char rbuf[RBUF];

/* phases of a load run; window = [t_meas, t_end) */
static int measuring_done; /* past t_end: stop queueing */
static uint64_t t_meas = UINT64_MAX, t_end = UINT64_MAX;
static uint64_t *lat;
static size_t n_lat, cap_lat;
static uint64_t rt_window, rt_total;
static uint64_t mismatched, excess, connect_fail, conn_err;
static char first_err[300];
static char tls_version[32], tls_cipher[64];

static void note_err(const char *fmt, const char *what, int id)
{
    if (!first_err[0])
        snprintf(first_err, sizeof first_err, fmt, what, id);
}

static void ssl_err_text(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "%s", errno ? strerror(errno) : "unexpected EOF");
    ERR_clear_error();
}

static void conn_close(struct conn *c)
{
    if (c->state == S_CLOSED)
        return;
    if (!c->primed)
        connecting--;
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = S_CLOSED;
    closed_count++;
}

static void conn_fail(struct conn *c, const char *what)
{
    char e[160];
    ssl_err_text(e, sizeof e);
    char msg[200];
    snprintf(msg, sizeof msg, "%s: %s", what, e);
    if (c->primed)
        conn_err++;
    else
        connect_fail++;
    note_err("%s (connection %d)", msg, c->id);
    conn_close(c);
}

static void set_interest(struct conn *c, int out)
{
    if (c->state == S_CLOSED || c->want_out == out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void queue_message(struct conn *c, uint64_t now, size_t bytes)
{
    c->queued += bytes;
    c->t_sent = now;
}

/* 1 = everything queued is written, 0 = waiting for the socket, -1 = closed */
static int flush(struct conn *c)
{
    while (c->sent < c->queued) {
        size_t want = (size_t)(c->queued - c->sent);
        if (want > 16384)
            want = 16384;
        const unsigned char *p = pat + (c->off + c->sent) % plen;
        /* never cross the end of the wrapped copy */
        size_t room = (size_t)(pat + plen + msg_size - p);
        if (want > room)
            want = room;
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(c->ssl, p, (int)want);
        if (n > 0) {
            c->sent += (uint64_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
            set_interest(c, 1);
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        conn_fail(c, "SSL_write");
        return -1;
    }
    set_interest(c, 0);
    return 1;
}

static void record_latency(uint64_t ns)
{
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 65536;
        lat = realloc(lat, cap_lat * sizeof *lat);
        if (!lat) {
            perror("realloc");
            exit(1);
        }
    }
    lat[n_lat++] = ns;
}

static int hold_mode;

static void received(struct conn *c, const unsigned char *buf, size_t n, uint64_t now)
{
    uint64_t outstanding = c->sent - c->recvd;
    if (n > outstanding) {
        excess += n - outstanding;
        note_err("%s (connection %d)", "excess bytes from the server", c->id);
        n = (size_t)outstanding;
    }
    const unsigned char *want = pat + (c->off + c->recvd) % plen;
    size_t room = (size_t)(pat + plen + msg_size - want);
    size_t k = 0;
    while (k < n) { /* the expected bytes may wrap around the pattern */
        size_t m = n - k < room ? n - k : room;
        if (memcmp(buf + k, want, m) != 0) {
            for (size_t i = 0; i < m; i++)
                mismatched += buf[k + i] != want[i];
            note_err("%s (connection %d)", "echoed bytes differ from those sent", c->id);
        }
        k += m;
        want = pat + (c->off + c->recvd + k) % plen;
        room = (size_t)(pat + plen + msg_size - want);
    }
    c->recvd += n;
    if (c->recvd < c->queued)
        return;
    /* the whole message came back */
    rt_total++;
    if (!c->primed) {
        c->primed = 1;
        primed_count++;
        connecting--;
    } else if (now >= t_meas && now < t_end) {
        rt_window++;
        record_latency(now - c->t_sent);
    }
    if (!hold_mode && !measuring_done) {
        queue_message(c, now, msg_size);
        flush(c);
    }
}

static void on_readable(struct conn *c, uint64_t now)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, rbuf, sizeof rbuf);
        if (n > 0) {
            received(c, rbuf, (size_t)n, now);
            if (c->state == S_CLOSED)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e == SSL_ERROR_WANT_WRITE) {
            set_interest(c, 1);
            return;
        }
        conn_fail(c, e == SSL_ERROR_ZERO_RETURN ? "server closed the TLS session" : "SSL_read");
        return;
    }
}

static void handshake(struct conn *c, uint64_t now)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        c->state = S_ACTIVE;
        if (!tls_version[0]) {
            snprintf(tls_version, sizeof tls_version, "%s", SSL_get_version(c->ssl));
            snprintf(tls_cipher, sizeof tls_cipher, "%s", SSL_get_cipher_name(c->ssl));
        }
        queue_message(c, now, hold_mode ? HOLD_MSG : msg_size);
        if (flush(c) >= 0)
            on_readable(c, now);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        set_interest(c, 0);
    else if (e == SSL_ERROR_WANT_WRITE)
        set_interest(c, 1);
    else
        conn_fail(c, "TLS handshake");
}

static void start_connect(struct conn *c)
{
    c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        connect_fail++;
        note_err("socket: %s (connection %d)", strerror(errno), c->id);
        c->state = S_CLOSED;
        closed_count++;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = S_TCP;
    connecting++;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) {
        connect_fail++;
        note_err("connect: %s (connection %d)", strerror(errno), c->id);
        conn_close(c);
    }
}

static void on_event(struct conn *c, uint32_t ev, uint64_t now)
{
    if (c->state == S_TCP) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            connect_fail++;
            note_err("connect: %s (connection %d)", strerror(err), c->id);
            conn_close(c);
            return;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        if (opt.server_name) {
            SSL_set_tlsext_host_name(c->ssl, opt.server_name);
            if (opt.ca)
                SSL_set1_host(c->ssl, opt.server_name);
        }
        c->state = S_HANDSHAKE;
    }
    if (c->state == S_HANDSHAKE) {
        handshake(c, now);
        return;
    }
    if (c->state != S_ACTIVE)
        return;
    if ((ev & EPOLLOUT) || c->sent < c->queued) {
        if (flush(c) < 0)
            return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(c, now);
}

/* open connections up to `upto`, at most opt.batch at once, until all are primed or
 * closed or the deadline passes; returns the number primed */
static void run_loop(uint64_t until, int (*done)(void));

static int upto_target;
static int setup_done(void)
{
    while (next_connect < upto_target && connecting < opt.batch)
        start_connect(&conns[next_connect++]);
    return next_connect >= upto_target && connecting == 0;
}

static void run_loop(uint64_t until, int (*done)(void))
{
    struct epoll_event evs[256];
    while (!(done && done())) {
        uint64_t now = now_ns();
        if (now >= until)
            break;
        uint64_t left_ms = (until - now) / 1000000u;
        int timeout = left_ms > 20 ? 20 : (int)left_ms + 1;
        int n = epoll_wait(epfd, evs, 256, timeout);
        now = now_ns();
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events, now);
    }
}

static void setup_upto(int target)
{
    upto_target = target;
    run_loop(now_ns() + (uint64_t)(opt.connect_timeout * 1e9), setup_done);
    /* anything not primed by now failed its setup */
    for (int i = 0; i < target; i++) {
        struct conn *c = &conns[i];
        if (c->state != S_CLOSED && !c->primed) {
            connect_fail++;
            note_err("%s (connection %d)", "no handshake and echo before --connect-timeout", c->id);
            conn_close(c);
        }
    }
    for (int i = next_connect; i < target; i++) {
        conns[i].state = S_CLOSED;
        connect_fail++;
    }
    next_connect = target;
}

static int all_answered(void)
{
    for (int i = 0; i < n_conns; i++)
        if (conns[i].state == S_ACTIVE && conns[i].recvd < conns[i].queued)
            return 0;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double q)
{
    if (!n_lat)
        return 0;
    size_t k = (size_t)(q * (double)n_lat);
    if (k >= n_lat)
        k = n_lat - 1;
    return (double)lat[k] / 1e3;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "{\"ok\":false,\"first_error\":\"watchdog: the run did not finish in time\"}\n";
    if (write(1, msg, sizeof msg - 1) < 0) {
    }
    _exit(3);
}

static int num_arg(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"conns", 1, 0, 'c'}, {"size", 1, 0, 's'},
        {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"drain", 1, 0, 'D'}, {"line", 0, 0, 'l'},
        {"ca", 1, 0, 'C'}, {"server-name", 1, 0, 'n'}, {"server-pid", 1, 0, 'P'},
        {"connect-timeout", 1, 0, 't'}, {"connect-batch", 1, 0, 'b'}, {"hold", 1, 0, 'o'},
        {"hold-baseline", 1, 0, 'B'}, {"hold-seconds", 1, 0, 'S'}, {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        const char *bad = NULL;
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = optarg; break;
        case 'c': if (num_arg(optarg, 1, 100000, &v)) bad = "--conns"; else opt.conns = (int)v; break;
        case 's': if (num_arg(optarg, 1, MAX_MSG, &v)) bad = "--size"; else opt.size = (size_t)v; break;
        case 'd': if (num_arg(optarg, 0.1, 600, &v)) bad = "--duration"; else opt.duration = v; break;
        case 'w': if (num_arg(optarg, 0, 60, &v)) bad = "--warmup"; else opt.warmup = v; break;
        case 'D': if (num_arg(optarg, 0.1, 60, &v)) bad = "--drain"; else opt.drain = v; break;
        case 'l': opt.line = 1; break;
        case 'C': opt.ca = optarg; break;
        case 'n': opt.server_name = optarg; break;
        case 'P':
            if (num_arg(optarg, 1, 1e9, &v) || opt.n_srv_roots == 16) bad = "--server-pid";
            else opt.srv_roots[opt.n_srv_roots++] = (int)v;
            break;
        case 't': if (num_arg(optarg, 0.1, 600, &v)) bad = "--connect-timeout"; else opt.connect_timeout = v; break;
        case 'b': if (num_arg(optarg, 1, 10000, &v)) bad = "--connect-batch"; else opt.batch = (int)v; break;
        case 'o': if (num_arg(optarg, 1, 1000000, &v)) bad = "--hold"; else opt.hold = (int)v; break;
        case 'B': if (num_arg(optarg, 0, 1000000, &v)) bad = "--hold-baseline"; else opt.hold_baseline = (int)v; break;
        case 'S': if (num_arg(optarg, 1, 600, &v)) bad = "--hold-seconds"; else opt.hold_seconds = v; break;
        case 'q': opt.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
        if (bad) {
            fprintf(stderr, "tls-load: bad value for %s: %s\n", bad, optarg);
            return 1;
        }
    }
    if (!opt.port || optind < argc) {
        usage(stderr);
        return 1;
    }
    if (opt.line && opt.size < 2) {
        fprintf(stderr, "tls-load: --line needs --size >= 2\n");
        return 1;
    }
    hold_mode = opt.hold > 0;
    if (hold_mode && opt.hold_baseline >= opt.hold) {
        fprintf(stderr, "tls-load: --hold-baseline must be below --hold\n");
        return 1;
    }
    if (hold_mode)
        opt.size = HOLD_MSG;
    n_conns = hold_mode ? opt.hold : opt.conns;

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int gr = getaddrinfo(opt.host, opt.port, &hints, &ai);
    if (gr) {
        fprintf(stderr, "tls-load: %s:%s: %s\n", opt.host, opt.port, gai_strerror(gr));
        return 1;
    }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)n_conns + 16 > rl.rlim_cur) {
        fprintf(stderr, "tls-load: %d connections need more file descriptors than ulimit -n (%llu)\n", n_conns,
                (unsigned long long)rl.rlim_cur);
        return 1;
    }

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every connection a full handshake */
    if (opt.ca) {
        if (SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1) {
            fprintf(stderr, "tls-load: cannot load the CA file %s\n", opt.ca);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    double budget = 2 * opt.connect_timeout + 5 +
                    (hold_mode ? opt.hold_seconds + 10 : opt.warmup + opt.duration + opt.drain);
    alarm((unsigned)budget + 1);

    make_pattern(opt.size, opt.line);
    conns = calloc((size_t)n_conns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || epfd < 0) {
        perror("setup");
        return 1;
    }
    for (int i = 0; i < n_conns; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
        conns[i].off = (size_t)(((uint64_t)i * 2654435761u) % pmsgs) * opt.size;
    }
    if (opt.n_srv_roots) {
        find_server_pids();
        if (server_cpu_s() < 0) {
            fprintf(stderr, "tls-load: cannot read /proc/%d/stat\n", opt.srv_roots[0]);
            return 1;
        }
    }

    uint64_t t_start = now_ns();
    if (hold_mode) {
        setup_upto(opt.hold_baseline);
        run_loop(now_ns() + 1000000000u, NULL); /* let the server settle */
        long long rss0 = opt.n_srv_roots ? server_status_kib("VmRSS") : -1;
        long long anon0 = opt.n_srv_roots ? server_status_kib("RssAnon") : -1;
        int base_up = primed_count;
        setup_upto(opt.hold);
        double setup_s = (double)(now_ns() - t_start) / 1e9;
        int up = primed_count;
        if (!opt.quiet) {
            printf("HOLDING %d of %d TLS connections for %.1f s (setup %.2f s)\n", up, opt.hold, opt.hold_seconds,
                   setup_s);
            fflush(stdout);
        }
        uint64_t t0 = now_ns();
        run_loop(t0 + (uint64_t)(opt.hold_seconds * 0.5e9), NULL);
        long long rss1 = opt.n_srv_roots ? server_status_kib("VmRSS") : -1;
        long long anon1 = opt.n_srv_roots ? server_status_kib("RssAnon") : -1;
        run_loop(t0 + (uint64_t)(opt.hold_seconds * 1e9), NULL);
        int dropped = 0;
        for (int i = 0; i < n_conns; i++)
            dropped += conns[i].primed && conns[i].state == S_CLOSED;
        /* one more echo on every connection */
        uint64_t now = now_ns();
        for (int i = 0; i < n_conns; i++)
            if (conns[i].state == S_ACTIVE) {
                queue_message(&conns[i], now, HOLD_MSG);
                flush(&conns[i]);
            }
        run_loop(now_ns() + 5000000000u, all_answered);
        int verified = 0;
        for (int i = 0; i < n_conns; i++)
            verified += conns[i].state == S_ACTIVE && conns[i].recvd == conns[i].queued &&
                        conns[i].queued == 2 * HOLD_MSG;
        int held = up - base_up;
        double per = (rss0 >= 0 && rss1 >= 0 && held > 0) ? (double)(rss1 - rss0) * 1024.0 / held : -1;
        double per_anon = (anon0 >= 0 && anon1 >= 0 && held > 0) ? (double)(anon1 - anon0) * 1024.0 / held : -1;
        int ok = up == n_conns && verified == n_conns && !mismatched && !excess;
        printf("{\"mode\":\"hold\",\"requested\":%d,\"baseline\":%d,\"established\":%d,\"setup_s\":%.2f,"
               "\"hold_s\":%.1f,\"dropped\":%d,\"verified_after\":%d,\"errors\":%llu,"
               "\"rss_baseline_kib\":%lld,\"rss_hold_kib\":%lld,\"bytes_per_conn\":%.0f,"
               "\"anon_baseline_kib\":%lld,\"anon_hold_kib\":%lld,\"anon_bytes_per_conn\":%.0f,"
               "\"tls\":\"%s %s\",\"first_error\":\"%s\",\"ok\":%s}\n",
               n_conns, opt.hold_baseline, up, setup_s, opt.hold_seconds, dropped, verified,
               (unsigned long long)(connect_fail + conn_err + mismatched + excess), rss0, rss1, per, anon0, anon1,
               per_anon, tls_version, tls_cipher, first_err, ok ? "true" : "false");
        return ok ? 0 : 2;
    }

    setup_upto(n_conns);
    uint64_t t0 = now_ns();
    double setup_s = (double)(t0 - t_start) / 1e9;
    t_meas = t0 + (uint64_t)(opt.warmup * 1e9);
    t_end = t_meas + (uint64_t)(opt.duration * 1e9);
    run_loop(t_meas, NULL);
    double srv0 = opt.n_srv_roots ? server_cpu_s() : -1, me0 = self_cpu_s(), all0 = machine_busy_s();
    uint64_t w0 = now_ns();
    run_loop(t_end, NULL);
    double srv1 = opt.n_srv_roots ? server_cpu_s() : -1, me1 = self_cpu_s(), all1 = machine_busy_s();
    double win = (double)(now_ns() - w0) / 1e9;
    measuring_done = 1;
    run_loop(now_ns() + (uint64_t)(opt.drain * 1e9), all_answered);

    uint64_t unfinished = 0;
    int alive = 0;
    for (int i = 0; i < n_conns; i++)
        if (conns[i].state == S_ACTIVE) {
            alive++;
            if (conns[i].recvd < conns[i].queued) {
                unfinished++;
                note_err("%s (connection %d)", "a message was not echoed back in full before --drain ended", i);
            }
        }
    qsort(lat, n_lat, sizeof *lat, cmp_u64);
    double mean = 0;
    for (size_t i = 0; i < n_lat; i++)
        mean += (double)lat[i];
    mean = n_lat ? mean / (double)n_lat / 1e3 : 0;
    double srv_cpu = (srv0 >= 0 && srv1 >= 0) ? srv1 - srv0 : -1;
    double me = me1 - me0;
    double other = (all0 >= 0 && all1 >= 0) ? (all1 - all0) - me - (srv_cpu > 0 ? srv_cpu : 0) : -1;
    if (other < 0 && other > -1)
        other = 0;
    uint64_t errors = connect_fail + conn_err + mismatched + excess + unfinished;
    int ok = rt_window > 0 && errors == 0;
    if (!opt.quiet)
        fprintf(stderr,
                "tls-load %s:%s %d conns x %zu B%s, %s %s: %llu round trips in %.2f s (%.0f/s), p50 %.1f us, "
                "p99 %.1f us, server cpu %.2f s, errors %llu%s%s\n",
                opt.host, opt.port, n_conns, opt.size, opt.line ? " lines" : "", tls_version, tls_cipher,
                (unsigned long long)rt_window, win, (double)rt_window / win, pct(0.5), pct(0.99), srv_cpu,
                (unsigned long long)errors, first_err[0] ? ": " : "", first_err);
    printf("{\"mode\":\"load\",\"conns\":%d,\"size\":%zu,\"line\":%s,\"warmup_s\":%.2f,\"duration_s\":%.3f,"
           "\"setup_s\":%.3f,\"tls\":\"%s %s\",\"round_trips\":%llu,\"rt_per_s\":%.1f,"
           "\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
           "\"errors\":%llu,\"mismatched_bytes\":%llu,\"excess_bytes\":%llu,\"connect_failures\":%llu,"
           "\"conn_errors\":%llu,\"unfinished\":%llu,\"conns_ok_at_end\":%d,"
           "\"server_cpu_s\":%.3f,\"server_cpu_us_per_rt\":%.3f,\"client_cpu_pct\":%.1f,\"other_cpu_pct\":%.1f,"
           "\"first_error\":\"%s\",\"ok\":%s}\n",
           n_conns, opt.size, opt.line ? "true" : "false", opt.warmup, win, setup_s, tls_version, tls_cipher,
           (unsigned long long)rt_window, (double)rt_window / win, pct(0.5), pct(0.9), pct(0.99),
           n_lat ? (double)lat[n_lat - 1] / 1e3 : 0, mean, (unsigned long long)errors,
           (unsigned long long)mismatched, (unsigned long long)excess, (unsigned long long)connect_fail,
           (unsigned long long)conn_err, (unsigned long long)unfinished, alive, srv_cpu,
           (srv_cpu >= 0 && rt_window) ? srv_cpu * 1e6 / (double)rt_window : -1, 100.0 * me / win,
           other >= 0 ? 100.0 * other / win : -1, first_err, ok ? "true" : "false");
    return ok ? 0 : 2;
}
