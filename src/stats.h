/*
 * stats.h - what one loop counts for /metrics and the console: traffic,
 * connections by listener and by how they ended, callback failures and
 * durations, limits hit, loop lag. Each loop counts into its own struct
 * without locks: only the loop's thread writes (a relaxed load and store,
 * no locked instruction), and the coordinator reads with relaxed loads
 * while it serves a scrape, so a scrape never stops a serving loop and a
 * stuck callback never stops a scrape. A thread binds its loop's struct
 * once (stats_bind); code that has no context at hand counts through
 * stats_here().
 */
#ifndef LUAECHO_STATS_H
#define LUAECHO_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef _Atomic uint64_t stat_t;

/* How a served connection ended (the first reason wins). */
enum stats_end {
    END_CLEAN,        /* closed by either side in the ordinary way */
    END_RESET,        /* the peer reset it */
    END_ERROR,        /* a socket error, or a client that broke the protocol (a bad PROXY header) */
    END_SCRIPT_ERROR, /* a callback failed */
    END_LIMIT,        /* --max-write-buffer, --script-timeout, --lua-memory */
    END_IDLE,         /* --idle-timeout */
    END_SHUTDOWN,     /* the server shut down */
    END_REASONS
};

enum stats_limit {
    LIMIT_MAX_CONNECTIONS,
    LIMIT_MAX_WRITE_BUFFER,
    LIMIT_IDLE_TIMEOUT,
    LIMIT_SCRIPT_TIMEOUT,
    LIMIT_LUA_MEMORY,
    LIMIT_DESCRIPTORS,
    LIMIT_PROXY_TIMEOUT,
    LIMIT_KINDS
};

/* The callbacks failures are counted by ("other": any not listed). */
#define STATS_CALLBACKS 15

/* Buckets (upper bounds, seconds) of the two histograms. */
#define STATS_BUCKETS 12

struct stats_histogram {
    stat_t counts[STATS_BUCKETS + 1]; /* not cumulative; the last: above every bound */
    stat_t sum_ns;
};

/* By listener: the --listen ones by index, then the servers scripts start. */
#define STATS_LISTENERS (16 + 1)
#define STATS_SCRIPT_LISTENER 16

struct listener_stats {
    stat_t open, accepted;
    stat_t ended[END_REASONS];
};

struct loop_stats {
    stat_t bytes_received, bytes_sent;
    stat_t datagrams_received, datagrams_sent;
    stat_t callback_errors[STATS_CALLBACKS];
    stat_t limits_hit[LIMIT_KINDS];
    stat_t tls_handshakes[3];  /* completed, failed, timed out */
    /* luaecho.channel (channel_hub.c): published by this loop's scripts;
     * taken from its inbox for its subscribers; dropped, its inbox full.
     * 'channel_dropped' is written by the publishing thread, under the
     * inbox's lock, so its writers still take turns. */
    stat_t channel_published, channel_delivered, channel_dropped;
    struct stats_histogram callback_seconds;
    struct stats_histogram loop_lag;
    /* Published by the loop's probe (host.c), with --metrics: */
    stat_t idle_ns;            /* libuv's idle time */
    stat_t lua_bytes;          /* the Lua state's memory */
    stat_t write_buffer_bytes; /* queued on every connection */
    bool timing;               /* measure callbacks (set before the loop runs) */
    struct listener_stats listeners[STATS_LISTENERS];
};

static inline void stat_add(stat_t *s, uint64_t n)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + n, memory_order_relaxed);
}
static inline void stat_sub(stat_t *s, uint64_t n)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) - n, memory_order_relaxed);
}
static inline void stat_set(stat_t *s, uint64_t v)
{
    atomic_store_explicit(s, v, memory_order_relaxed);
}
static inline uint64_t stat_get(const stat_t *s)
{
    return atomic_load_explicit((stat_t *)s, memory_order_relaxed);
}

/* This thread counts into 's' from now on (NULL: into a sink nobody reads). */
void stats_bind(struct loop_stats *s);
/* This thread's loop's counters; never NULL. */
struct loop_stats *stats_here(void);

/* Count one observation of 'ns' nanoseconds into h, whose bucket bounds are 'bounds'. */
void stats_observe(struct stats_histogram *h, const double *bounds, uint64_t ns);
/* The bounds, seconds, in increasing order. */
extern const double stats_callback_bounds[STATS_BUCKETS];
extern const double stats_lag_bounds[STATS_BUCKETS];

/* A failed callback, counted by its name. */
void stats_callback_failed(const char *callback);
/* The name counter i counts ("other" for the last). */
const char *stats_callback_name(int i);
const char *stats_end_name(enum stats_end e);
const char *stats_limit_name(enum stats_limit l);

#endif
