/*
 * stats.c - see stats.h.
 */
#include "stats.h"

#include <string.h>

static struct loop_stats sink;
static _Thread_local struct loop_stats *bound;

void stats_bind(struct loop_stats *s)
{
    bound = s;
}

struct loop_stats *stats_here(void)
{
    return bound ? bound : &sink;
}

/* Callbacks: most take microseconds; a stuck one is cut at --script-timeout. */
const double stats_callback_bounds[STATS_BUCKETS] = {0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005,
                                                     0.01,    0.05,    0.1,    0.5,    1,     5};
/* Loop lag: the probe's timer fires within a millisecond on an idle loop. */
const double stats_lag_bounds[STATS_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                0.05,   0.1,   0.25,   0.5,   1,    2.5};

void stats_observe(struct stats_histogram *h, const double *bounds, uint64_t ns)
{
    double seconds = (double)ns / 1e9;
    int i = 0;
    while (i < STATS_BUCKETS && seconds > bounds[i])
        i++;
    stat_add(&h->counts[i], 1);
    stat_add(&h->sum_ns, ns);
}

/* As failure reports name them, and as the label says them. */
static const char *const callback_names[STATS_CALLBACKS][2] = {
    {"connection_made", "connection_made"},
    {"data_received", "data_received"},
    {"eof_received", "eof_received"},
    {"connection_lost", "connection_lost"},
    {"pause_writing", "pause_writing"},
    {"resume_writing", "resume_writing"},
    {"datagram_received", "datagram_received"},
    {"error_received", "error_received"},
    {"upgrade", "upgrade"},
    {"timer callback", "timer"},
    {"connect callback", "connect"},
    {"listen callback", "listen"},
    {"handler or task", "handler_or_task"}, /* a streams handler or a task that raised */
    {"channel subscriber", "channel_subscriber"},
    {"", "other"},
};

void stats_callback_failed(const char *callback)
{
    int i = 0;
    while (i < STATS_CALLBACKS - 1 && strcmp(callback, callback_names[i][0]) != 0)
        i++;
    stat_add(&stats_here()->callback_errors[i], 1);
}

const char *stats_callback_name(int i)
{
    return callback_names[i][1];
}

const char *stats_end_name(enum stats_end e)
{
    static const char *const names[END_REASONS] = {"clean", "reset", "error", "script_error",
                                                   "limit", "idle",  "shutdown"};
    return names[e];
}

const char *stats_limit_name(enum stats_limit l)
{
    static const char *const names[LIMIT_KINDS] = {"max_connections", "max_write_buffer", "idle_timeout",
                                                   "script_timeout",  "lua_memory",       "descriptors",
                                                   "proxy_timeout"};
    return names[l];
}
