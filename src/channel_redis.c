/*
 * channel_redis.c - see channel_redis.h. Relies on redis_conn.h (the
 * connections: reconnection with backoff, PSUBSCRIBE kept across
 * reconnects) and channel_hub.h (the outgoing inbox; fan-out of what
 * other instances publish). Runs on the coordinator's thread.
 * Rule: the link's state is told once per change: one line when Redis
 * goes away (local delivery goes on, messages to other instances are
 * counted as unsent), one when both connections are back.
 */
#include "channel_redis.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel_hub.h"
#include "log.h"
#include "redis_conn.h"
#include "redis_url.h"
#include "stats.h"

#define ID_LEN 16
#define PREFIX_LEN (sizeof CHANNEL_REDIS_PREFIX - 1)
/* PUBLISHes awaiting their reply at most: past it, messages wait in the
 * backlog (bounded by --channel-buffer) until replies come back. */
#define IN_FLIGHT 4096

/* A message waiting for room on the publishing link. */
struct waiting {
    struct waiting *next;
    size_t topic_len, len;
    char bytes[]; /* the topic, then the message */
};

struct bridge {
    uv_loop_t *loop;
    struct redis_url url;
    char described[REDIS_URL_HOST_MAX + 64];
    char id[ID_LEN + 1];                /* this instance, in hex */
    struct redis_conn *pub, *sub;
    struct channel_inbox *outbox;
    struct loop_stats outbox_stats;     /* its drops count as unsent */
    bool pub_up, sub_up, was_up, ever_up, warned;
    char *buf;                          /* the channel name and the payload being sent */
    size_t room;
    struct waiting *head, *tail;        /* the backlog, oldest first */
    size_t backlog_bytes;
};

static struct bridge *bridge;
static atomic_bool configured, link_up;
static _Atomic uint64_t unsent;

void channel_redis_status(bool *is_configured, bool *up, uint64_t *not_sent)
{
    *is_configured = atomic_load(&configured);
    *up = atomic_load(&link_up);
    *not_sent = atomic_load(&unsent);
    if (bridge)
        *not_sent += stat_get(&bridge->outbox_stats.channel_dropped);
}

/* Both links up, or not: one line when they are (again), one when either
 * is lost (or the first attempt fails), none per failed attempt. */
static void note_state(struct bridge *b, bool went_down, const char *reason)
{
    bool up = b->pub_up && b->sub_up;
    atomic_store(&link_up, up);
    if (up && !b->was_up) {
        log_info("channel: Redis at %s is %s: messages cross instances%s", b->described,
                 b->ever_up ? "back" : "up", b->ever_up ? " again" : "");
        b->ever_up = true;
        b->warned = false;
    } else if (!up && went_down && !b->warned) { /* not while the second link is still coming up */
        log_warn("channel: Redis at %s is unreachable (%s): local subscribers are still served; messages to "
                 "and from other instances are lost until it is back",
                 b->described, reason ? reason : "not connected");
        b->warned = true;
    }
    b->was_up = up;
}

static void drain_backlog(struct bridge *b);

static void on_state(struct redis_conn *conn, bool up, const char *reason, void *data)
{
    struct bridge *b = data;
    if (!b)
        return;
    if (conn == b->pub)
        b->pub_up = up;
    else
        b->sub_up = up;
    if (!up)
        drain_backlog(b); /* lost with the link: counted as unsent */
    note_state(b, !up, reason);
}

/* luaecho:channel:TOPIC and ID MESSAGE from another instance: to the hub. */
static void on_message(struct redis_conn *conn, const char *pattern, size_t pattern_len, const char *channel,
                       size_t channel_len, const char *payload, size_t payload_len, void *data)
{
    (void)conn, (void)pattern, (void)pattern_len;
    struct bridge *b = data;
    if (!b || channel_len <= PREFIX_LEN || memcmp(channel, CHANNEL_REDIS_PREFIX, PREFIX_LEN) != 0)
        return;
    if (payload_len < ID_LEN + 1 || payload[ID_LEN] != ' ') {
        log_debug("channel: ignored a message on %.*s without an instance id", (int)channel_len, channel);
        return;
    }
    if (memcmp(payload, b->id, ID_LEN) == 0)
        return; /* ours, back from Redis: delivered here already */
    channel_hub_publish_remote(channel + PREFIX_LEN, channel_len - PREFIX_LEN, payload + ID_LEN + 1,
                               payload_len - ID_LEN - 1);
}

/* Make room for n bytes in b->buf. */
static bool reserve(struct bridge *b, size_t n)
{
    if (n <= b->room)
        return true;
    char *bigger = realloc(b->buf, n);
    if (!bigger)
        return false;
    b->buf = bigger;
    b->room = n;
    return true;
}

static void on_published(struct redis_conn *conn, const struct redisReply *reply, enum redis_conn_error error,
                         void *data);

/* PUBLISH luaecho:channel:TOPIC "ID MESSAGE" now. */
static void publish_now(struct bridge *b, const char *topic, size_t topic_len, const char *message, size_t len)
{
    size_t name_len = PREFIX_LEN + topic_len, payload_len = ID_LEN + 1 + len;
    if (!reserve(b, name_len + payload_len)) {
        atomic_fetch_add(&unsent, 1);
        return;
    }
    memcpy(b->buf, CHANNEL_REDIS_PREFIX, PREFIX_LEN);
    memcpy(b->buf + PREFIX_LEN, topic, topic_len);
    char *payload = b->buf + name_len;
    memcpy(payload, b->id, ID_LEN);
    payload[ID_LEN] = ' ';
    memcpy(payload + ID_LEN + 1, message, len);
    const char *argv[] = {"PUBLISH", b->buf, payload};
    const size_t lens[] = {7, name_len, payload_len};
    if (redis_conn_command(b->pub, 3, argv, lens, on_published, b) != 0) /* hiredis copied it, or refused */
        atomic_fetch_add(&unsent, 1);
}

/* Send what waits while the link is up and has room; drop it all when down. */
static void drain_backlog(struct bridge *b)
{
    while (b->head && (!b->pub_up || redis_conn_pending(b->pub) < IN_FLIGHT)) {
        struct waiting *w = b->head;
        b->head = w->next;
        if (!b->head)
            b->tail = NULL;
        b->backlog_bytes -= sizeof *w + w->topic_len + w->len;
        if (b->pub_up)
            publish_now(b, w->bytes, w->topic_len, w->bytes + w->topic_len, w->len);
        else
            atomic_fetch_add(&unsent, 1);
        free(w);
    }
}

static void on_published(struct redis_conn *conn, const struct redisReply *reply, enum redis_conn_error error,
                         void *data)
{
    (void)conn;
    struct bridge *b = data;
    if (!reply || error != REDIS_CONN_OK)
        atomic_fetch_add(&unsent, 1);
    if (b)
        drain_backlog(b);
}

/* Keep a copy for later, within --channel-buffer; false: no room. */
static bool wait_for_room(struct bridge *b, const char *topic, size_t topic_len, const char *message, size_t len)
{
    size_t need = sizeof(struct waiting) + topic_len + len;
    if (b->backlog_bytes + need > channel_hub_buffer_bytes())
        return false;
    struct waiting *w = malloc(need);
    if (!w)
        return false;
    *w = (struct waiting){.topic_len = topic_len, .len = len};
    memcpy(w->bytes, topic, topic_len);
    memcpy(w->bytes + topic_len, message, len);
    if (b->tail)
        b->tail->next = w;
    else
        b->head = w;
    b->tail = w;
    b->backlog_bytes += need;
    return true;
}

/* A message this process published, from the outbox: to Redis, in order. */
static void send_out(void *data, const char *topic, size_t topic_len, const char *message, size_t len)
{
    struct bridge *b = data;
    if (!b->pub_up) {
        atomic_fetch_add(&unsent, 1);
    } else if (b->head || redis_conn_pending(b->pub) >= IN_FLIGHT) {
        if (!wait_for_room(b, topic, topic_len, message, len))
            atomic_fetch_add(&unsent, 1);
    } else {
        publish_now(b, topic, topic_len, message, len);
    }
}

static void on_closed(struct redis_conn *conn, void *data)
{
    struct bridge *b = data;
    if (!b)
        return;
    if (conn == b->pub)
        b->pub = NULL;
    else if (conn == b->sub)
        b->sub = NULL;
}

static const struct redis_conn_events events = {
    .state = on_state,
    .message = on_message,
    .closed = on_closed,
};

/* 16 random hex digits: this instance, for as long as it runs. */
static void make_id(char *out)
{
    unsigned char bytes[ID_LEN / 2];
    if (uv_random(NULL, NULL, bytes, sizeof bytes, 0, NULL) != 0) {
        uint64_t t = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
        memcpy(bytes, &t, sizeof bytes);
    }
    for (size_t i = 0; i < sizeof bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* Open both connections and the outbox. False: out of memory (the caller frees). */
static bool open_links(struct bridge *b)
{
    const struct redis_conn_options options = {.name = "--channel-redis", .max_pending = IN_FLIGHT};
    b->pub = redis_conn_open(b->loop, &b->url, &options, &events, b);
    b->sub = redis_conn_open(b->loop, &b->url, &options, &events, b);
    if (!b->pub || !b->sub)
        return false;
    if (redis_conn_subscribe(b->sub, CHANNEL_REDIS_PREFIX "*", PREFIX_LEN + 1, true) != 0)
        return false;
    b->outbox = channel_inbox_open(&(struct channel_inbox_config){
        .loop = b->loop, .stats = &b->outbox_stats, .deliver = send_out, .data = b, .outgoing = true});
    return b->outbox != NULL;
}

int channel_redis_start(uv_loop_t *loop, const char *url)
{
    struct bridge *b = calloc(1, sizeof *b);
    char error[REDIS_URL_ERROR_MAX];
    if (!b || redis_url_parse(url, &b->url, error) != 0) {
        log_error("--channel-redis: %s", b ? error : "out of memory");
        free(b);
        return -1;
    }
    b->loop = loop;
    redis_url_describe(&b->url, b->described, sizeof b->described);
    make_id(b->id);
    bridge = b;
    atomic_store(&configured, true);
    if (!open_links(b)) {
        log_error("--channel-redis: out of memory");
        channel_redis_stop();
        return -1;
    }
    log_info("channel: instance %s publishes and subscribes through Redis at %s", b->id, b->described);
    return 0;
}

void channel_redis_stop(void)
{
    struct bridge *b = bridge;
    if (!b)
        return;
    if (b->outbox)
        channel_inbox_close(b->outbox);
    b->outbox = NULL;
    b->pub_up = false;
    drain_backlog(b); /* freed, counted as unsent */
    if (b->pub) {
        redis_conn_set_data(b->pub, NULL);
        redis_conn_close(b->pub);
    }
    if (b->sub) {
        redis_conn_set_data(b->sub, NULL);
        redis_conn_close(b->sub);
    }
    atomic_fetch_add(&unsent, stat_get(&b->outbox_stats.channel_dropped)); /* the count outlives the bridge */
    atomic_store(&link_up, false);
    free(b->buf);
    free(b);
    bridge = NULL;
}
