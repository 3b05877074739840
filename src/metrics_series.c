/*
 * metrics_series.c - see metrics_series.h. Runs on the coordinator's
 * thread. Every per-loop series carries worker="N" (also with one
 * worker, so a dashboard does not change when --workers does); what
 * belongs to the process (reloads, the generation, process_*) does not.
 */
#include "metrics_series.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "channel_redis.h"
#include "exposition.h"
#include "script_metrics.h"
#include "stats.h"
#include "workers_group.h"

#define W_LABEL(buf) {"worker", buf}

static void worker_label(const struct worker *w, char *buf, size_t size)
{
    snprintf(buf, size, "%d", w->id);
}

/* A counter or gauge with one value per worker. */
static void per_worker(struct text_buf *out, struct workers *g, const char *name, const char *help, const char *type,
                       size_t offset)
{
    expo_family(out, name, help, type);
    for (int i = 0; i < g->count; i++) {
        char id[16];
        worker_label(&g->list[i], id, sizeof id);
        const stat_t *value = (const stat_t *)((const char *)&g->list[i].host.stats + offset);
        expo_sample(out, name, NULL, (struct expo_label[]){W_LABEL(id)}, 1, NULL, (double)stat_get(value));
    }
}

/* The name of listener slot j, or NULL when it is not a stream listener
 * (a UDP one), or the scripts' slot that nobody used. */
static const char *listener_name(struct workers *g, int j)
{
    if (j < g->listener_count)
        return g->listeners[j].spec->kind == LISTEN_UDP ? NULL : g->listeners[j].name;
    if (j != STATS_SCRIPT_LISTENER)
        return NULL;
    for (int i = 0; i < g->count; i++) {
        if (stat_get(&g->list[i].host.stats.listeners[j].accepted) > 0)
            return "script";
    }
    return NULL;
}

/* By worker and listener; 'reason' >= 0: the closed counter of that reason. */
static void listener_samples(struct text_buf *out, struct workers *g, const char *name, int what)
{
    for (int i = 0; i < g->count; i++) {
        char id[16];
        worker_label(&g->list[i], id, sizeof id);
        for (int j = 0; j < STATS_LISTENERS; j++) {
            const char *listener = listener_name(g, j);
            if (!listener)
                continue;
            const struct listener_stats *ls = &g->list[i].host.stats.listeners[j];
            struct expo_label labels[] = {W_LABEL(id), {"listener", listener}};
            if (what == -1) {
                expo_sample(out, name, NULL, labels, 2, NULL, (double)stat_get(&ls->open));
            } else if (what == -2) {
                expo_sample(out, name, NULL, labels, 2, NULL, (double)stat_get(&ls->accepted));
            } else {
                for (int r = 0; r < END_REASONS; r++)
                    expo_sample(out, name, NULL, labels, 2, &(struct expo_label){"reason", stats_end_name(r)},
                                (double)stat_get(&ls->ended[r]));
            }
        }
    }
}

static void connections(struct text_buf *out, struct workers *g)
{
    expo_family(out, "luaecho_connections_open", "Connections open now, by listener.", "gauge");
    listener_samples(out, g, "luaecho_connections_open", -1);
    expo_family(out, "luaecho_connections_accepted_total", "Connections accepted and served, by listener.",
                "counter");
    listener_samples(out, g, "luaecho_connections_accepted_total", -2);
    expo_family(out, "luaecho_connections_closed_total",
                "Connections ended, by listener and reason (clean, reset, error, script_error, limit, idle, "
                "shutdown).",
                "counter");
    listener_samples(out, g, "luaecho_connections_closed_total", 0);
}

static void histogram(struct text_buf *out, struct workers *g, const char *name, const char *help,
                      const double *bounds, size_t offset)
{
    expo_family(out, name, help, "histogram");
    for (int i = 0; i < g->count; i++) {
        char id[16];
        worker_label(&g->list[i], id, sizeof id);
        const struct stats_histogram *h =
            (const struct stats_histogram *)((const char *)&g->list[i].host.stats + offset);
        uint64_t counts[STATS_BUCKETS + 1];
        for (int b = 0; b <= STATS_BUCKETS; b++)
            counts[b] = stat_get(&h->counts[b]);
        expo_histogram(out, name, (struct expo_label[]){W_LABEL(id)}, 1, bounds, counts, STATS_BUCKETS,
                       (double)stat_get(&h->sum_ns) / 1e9);
    }
}

/* A counter by worker and one more label, from an array of counters. */
static void labelled(struct text_buf *out, struct workers *g, const char *name, const char *help, const char *label,
                     size_t offset, int n, const char *(*label_of)(int))
{
    expo_family(out, name, help, "counter");
    for (int i = 0; i < g->count; i++) {
        char id[16];
        worker_label(&g->list[i], id, sizeof id);
        const stat_t *values = (const stat_t *)((const char *)&g->list[i].host.stats + offset);
        for (int k = 0; k < n; k++)
            expo_sample(out, name, NULL, (struct expo_label[]){W_LABEL(id), {label, label_of(k)}}, 2, NULL,
                        (double)stat_get(&values[k]));
    }
}

static const char *handshake_label(int k)
{
    static const char *const names[] = {"ok", "failed", "timeout"};
    return names[k];
}

static const char *limit_label(int k)
{
    return stats_limit_name((enum stats_limit)k);
}

static void loop_series(struct text_buf *out, struct workers *g)
{
    histogram(out, g, "luaecho_callback_duration_seconds",
              "Time each call from the host into the script took (connection_made, data_received, ...).",
              stats_callback_bounds, offsetof(struct loop_stats, callback_seconds));
    histogram(out, g, "luaecho_event_loop_lag_seconds",
              "How late a 100 ms timer of the event loop fired: the time a callback held the loop.",
              stats_lag_bounds, offsetof(struct loop_stats, loop_lag));
    expo_family(out, "luaecho_event_loop_idle_seconds_total", "Time the event loop waited for events (libuv).",
                "counter");
    for (int i = 0; i < g->count; i++) {
        char id[16];
        worker_label(&g->list[i], id, sizeof id);
        expo_sample(out, "luaecho_event_loop_idle_seconds_total", NULL, (struct expo_label[]){W_LABEL(id)}, 1, NULL,
                    (double)stat_get(&g->list[i].host.stats.idle_ns) / 1e9);
    }
    per_worker(out, g, "luaecho_lua_memory_bytes", "Memory the worker's Lua state holds.", "gauge",
               offsetof(struct loop_stats, lua_bytes));
    per_worker(out, g, "luaecho_write_buffer_bytes", "Bytes written by scripts that wait in write queues.", "gauge",
               offsetof(struct loop_stats, write_buffer_bytes));
    labelled(out, g, "luaecho_limits_hit_total", "Times a limit was reached, by limit.", "limit",
             offsetof(struct loop_stats, limits_hit), LIMIT_KINDS, limit_label);
    labelled(out, g, "luaecho_tls_handshakes_total", "TLS handshakes, by result (ok, failed, timeout).", "result",
             offsetof(struct loop_stats, tls_handshakes), 3, handshake_label);
}

static void traffic(struct text_buf *out, struct workers *g)
{
    per_worker(out, g, "luaecho_bytes_received_total", "Bytes received from clients (streams and datagrams).",
               "counter", offsetof(struct loop_stats, bytes_received));
    per_worker(out, g, "luaecho_bytes_sent_total", "Bytes sent to clients (streams and datagrams).", "counter",
               offsetof(struct loop_stats, bytes_sent));
    per_worker(out, g, "luaecho_datagrams_received_total", "UDP datagrams received.", "counter",
               offsetof(struct loop_stats, datagrams_received));
    per_worker(out, g, "luaecho_datagrams_sent_total", "UDP datagrams sent (or queued to send).", "counter",
               offsetof(struct loop_stats, datagrams_sent));
    labelled(out, g, "luaecho_callback_errors_total", "Callbacks that raised an error, by callback.", "callback",
             offsetof(struct loop_stats, callback_errors), STATS_CALLBACKS, stats_callback_name);
}

static void process_wide(struct text_buf *out, struct workers *g)
{
    expo_family(out, "luaecho_reloads_total", "Hot swaps (SIGHUP, --watch, the console's reload), by result.",
                "counter");
    expo_sample(out, "luaecho_reloads_total", NULL, (struct expo_label[]){{"result", "ok"}}, 1, NULL,
                (double)g->reloads_ok);
    expo_sample(out, "luaecho_reloads_total", NULL, (struct expo_label[]){{"result", "failed"}}, 1, NULL,
                (double)g->reloads_failed);
    expo_family(out, "luaecho_script_generation", "The load of the script new connections get (1 at start).",
                "gauge");
    expo_sample(out, "luaecho_script_generation", NULL, NULL, 0, NULL, g->generation);
    expo_family(out, "luaecho_workers", "Worker threads serving.", "gauge");
    expo_sample(out, "luaecho_workers", NULL, NULL, 0, NULL, g->count);
    expo_family(out, "luaecho_build_info", "The version of luaecho serving (always 1).", "gauge");
    expo_sample(out, "luaecho_build_info", NULL, (struct expo_label[]){{"version", LUAECHO_VERSION}}, 1, NULL, 1);
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* not the one reading the folder */
}

/* The series Prometheus' client libraries export for any process. */
static void process_series(struct text_buf *out, struct workers *g)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    expo_family(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter");
    expo_sample(out, "process_cpu_seconds_total", NULL, NULL, 0, NULL, cpu);
    long pages_virtual = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages_virtual, &pages_resident) != 2)
            pages_virtual = pages_resident = 0;
        fclose(f);
    }
    double page = (double)sysconf(_SC_PAGESIZE);
    expo_family(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
    expo_sample(out, "process_resident_memory_bytes", NULL, NULL, 0, NULL, (double)pages_resident * page);
    expo_family(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
    expo_sample(out, "process_virtual_memory_bytes", NULL, NULL, 0, NULL, (double)pages_virtual * page);
    expo_family(out, "process_open_fds", "Number of open file descriptors.", "gauge");
    expo_sample(out, "process_open_fds", NULL, NULL, 0, NULL, (double)open_fds());
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    expo_family(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge");
    expo_sample(out, "process_max_fds", NULL, NULL, 0, NULL, (double)rl.rlim_cur);
    expo_family(out, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                "gauge");
    expo_sample(out, "process_start_time_seconds", NULL, NULL, 0, NULL, g->started_wall);
}

/* luaecho.channel: per worker (channel_hub.c). */
static void channel_series(struct text_buf *out, struct workers *g)
{
    per_worker(out, g, "luaecho_channel_published_total", "Messages the worker's scripts published (luaecho.channel).",
               "counter", offsetof(struct loop_stats, channel_published));
    per_worker(out, g, "luaecho_channel_delivered_total",
               "Messages taken from the worker's inbox for its subscribers.", "counter",
               offsetof(struct loop_stats, channel_delivered));
    per_worker(out, g, "luaecho_channel_dropped_total",
               "Messages dropped because the worker's inbox was full (--channel-buffer).", "counter",
               offsetof(struct loop_stats, channel_dropped));
    bool configured, up;
    uint64_t unsent;
    channel_redis_status(&configured, &up, &unsent);
    if (!configured)
        return;
    expo_family(out, "luaecho_channel_redis_up", "1 while both links to --channel-redis are up, else 0.", "gauge");
    expo_sample(out, "luaecho_channel_redis_up", NULL, NULL, 0, NULL, up ? 1 : 0);
    expo_family(out, "luaecho_channel_redis_unsent_total",
                "Messages published here that could not be sent to --channel-redis (down, or the outbox full).",
                "counter");
    expo_sample(out, "luaecho_channel_redis_unsent_total", NULL, NULL, 0, NULL, (double)unsent);
}

void metrics_series_render(struct text_buf *out, struct workers *g)
{
    connections(out, g);
    traffic(out, g);
    channel_series(out, g);
    loop_series(out, g);
    process_wide(out, g);
    process_series(out, g);
    script_metrics_render(out);
}
