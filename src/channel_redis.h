/*
 * channel_redis.h - --channel-redis: luaecho.channel across instances,
 * on the coordinator's loop (the main thread, where --metrics lives).
 * One Redis connection publishes what this process publishes (the hub's
 * outgoing inbox), as PUBLISH luaecho:channel:TOPIC with the payload
 * ID MESSAGE, ID being this instance's random 16 hex digits; another
 * PSUBSCRIBEs to luaecho:channel:* and hands every message whose ID is not
 * ours to the hub, for every worker's inbox. So a message reaches each
 * instance exactly once: locally from the hub, elsewhere from Redis.
 * Rules: one bridge per process; every function on the coordinator's
 * thread. While Redis
 * is away local delivery goes on; what could not be sent is counted.
 */
#ifndef LUAECHO_CHANNEL_REDIS_H
#define LUAECHO_CHANNEL_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The Redis channel prefix; a topic follows it. */
#define CHANNEL_REDIS_PREFIX "luaecho:channel:"

/* Start the bridge to 'url' (checked already) on 'loop'. Returns 0, or -1
 * after logging why (out of memory). */
int channel_redis_start(uv_loop_t *loop, const char *url);
/* Close both connections and the outbox (idempotent; then run the loop so
 * they finish closing). */
void channel_redis_stop(void);
/* For /metrics: was a bridge started, are both links up, and how many
 * messages could not be sent to Redis (dropped from a full outbox
 * included). */
void channel_redis_status(bool *configured, bool *up, uint64_t *unsent);

#endif
