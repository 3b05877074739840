/*
 * channel_hub.h - luaecho.channel's process-wide hub, no Lua: every loop
 * with a Lua state (each worker, `luaecho run`) opens an inbox, bounded by
 * --channel-buffer, and says which topics it wants; a publish copies the
 * message into every inbox that wants its topic, under that inbox's lock
 * (so the order of one publisher holds), and wakes the inbox's loop, which
 * drains it on its own thread. Nothing is delivered inside a publish. The
 * Redis bridge (channel_redis.c) opens an inbox that wants every topic,
 * marked 'outgoing': it gets what this process publishes and hands back,
 * through channel_hub_publish_remote, what other instances do.
 * Rule: the publisher never waits for more than one inbox's short lock;
 * an inbox that is full drops the message and counts it.
 */
#ifndef LUAECHO_CHANNEL_HUB_H
#define LUAECHO_CHANNEL_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "stats.h"

struct channel_inbox;

/* Called on the inbox's loop for each message, in the order it came. */
typedef void (*channel_deliver_fn)(void *data, const char *topic, size_t topic_len, const char *message,
                                   size_t len);

struct channel_inbox_config {
    uv_loop_t *loop;
    int worker_id;              /* for the log line when it overflows (0: the coordinator) */
    struct loop_stats *stats;   /* delivered and dropped are counted here (NULL: nowhere) */
    channel_deliver_fn deliver;
    void *data;
    bool outgoing;              /* the Redis bridge: every topic, and nothing from Redis */
};

/* Before any inbox opens: the bound of each inbox in bytes (0: the
 * default), and --channel-redis (kept, not copied; NULL: none). */
void channel_hub_configure(size_t buffer_bytes, const char *redis_url);
/* The bound of each inbox, bytes. */
size_t channel_hub_buffer_bytes(void);
/* The --channel-redis URL, or NULL. */
const char *channel_hub_redis_url(void);

/* Open an inbox on cfg->loop (its uv_async_t does not keep the loop
 * alive). NULL: out of memory. */
struct channel_inbox *channel_inbox_open(const struct channel_inbox_config *cfg);
/* Leave the hub at once (no publish reaches it from now on) and close;
 * what it holds is freed once its handle has closed. On its loop's thread. */
void channel_inbox_close(struct channel_inbox *in);
/* One more (want) or one less (unwant) subscriber of 'topic' here.
 * want returns false when out of memory. On its loop's thread. */
bool channel_inbox_want(struct channel_inbox *in, const char *topic, size_t topic_len);
void channel_inbox_unwant(struct channel_inbox *in, const char *topic, size_t topic_len);

/* A message published in this process: every inbox that wants the topic
 * (the bridge's included). From any thread. */
void channel_hub_publish(const char *topic, size_t topic_len, const char *message, size_t len);
/* A message another instance published: every inbox but the bridge's. */
void channel_hub_publish_remote(const char *topic, size_t topic_len, const char *message, size_t len);

#endif
