/*
 * channel_hub.c - the hub of luaecho.channel: the list of inboxes (under a
 * read-write lock: publishers read it, opening and closing an inbox write
 * it) and each inbox's queue and topics (under the inbox's own mutex).
 * Relies on libuv (uv_async_t, locks), channel_topics.c and log.c.
 * Rules: a message is copied once per inbox, so no memory is shared
 * between threads once the lock is let go; an inbox's memory goes only in
 * its handle's close callback, after it has left the list. An inbox's
 * handle does not keep its loop alive, but while it holds a message its
 * own loop published.
 */
#include "channel_hub.h"

#include <stdlib.h>
#include <string.h>

#include "channel_topics.h"
#include "log.h"

#define DEFAULT_BUFFER ((size_t)16 << 20)

struct message {
    struct message *next;
    size_t topic_len, len;
    char bytes[]; /* the topic, then the message */
};

struct channel_inbox {
    uv_async_t wakeup;
    struct channel_inbox_config cfg;
    uv_thread_t owner;          /* the loop's thread */
    bool held;                  /* its own publish keeps the loop alive until drained (owner's) */
    struct channel_inbox *next; /* in the hub's list, under hub_lock */
    uv_mutex_t lock;
    /* Under 'lock': */
    struct message *head, *tail;
    size_t bytes;
    struct topic_map topics; /* topic -> count of subscribers on this loop */
};

static uv_once_t hub_once = UV_ONCE_INIT;
static uv_rwlock_t hub_lock;
static struct channel_inbox *inboxes;
static size_t buffer_bytes = DEFAULT_BUFFER;
static const char *redis_url;
static struct log_rate overflow_rate, memory_rate;

static void init_hub(void)
{
    uv_rwlock_init(&hub_lock);
}

void channel_hub_configure(size_t bytes, const char *url)
{
    buffer_bytes = bytes ? bytes : DEFAULT_BUFFER;
    redis_url = url;
}

size_t channel_hub_buffer_bytes(void)
{
    return buffer_bytes;
}

const char *channel_hub_redis_url(void)
{
    return redis_url;
}

/* A message's cost against the bound: its bytes and its header. */
static size_t cost(size_t topic_len, size_t len)
{
    return sizeof(struct message) + topic_len + len;
}

/* Take everything queued at once, then deliver it outside the lock: a
 * subscriber may publish, even to this inbox. */
static void on_wakeup(uv_async_t *handle)
{
    struct channel_inbox *in = handle->data;
    uv_mutex_lock(&in->lock);
    struct message *m = in->head;
    in->head = in->tail = NULL;
    in->bytes = 0;
    uv_mutex_unlock(&in->lock);
    if (in->held)
        uv_unref((uv_handle_t *)handle);
    in->held = false;
    while (m) {
        struct message *next = m->next;
        if (in->cfg.stats)
            stat_add(&in->cfg.stats->channel_delivered, 1);
        in->cfg.deliver(in->cfg.data, m->bytes, m->topic_len, m->bytes + m->topic_len, m->len);
        free(m);
        m = next;
    }
}

struct channel_inbox *channel_inbox_open(const struct channel_inbox_config *cfg)
{
    uv_once(&hub_once, init_hub);
    struct channel_inbox *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->cfg = *cfg;
    in->owner = uv_thread_self();
    if (uv_mutex_init(&in->lock) != 0) {
        free(in);
        return NULL;
    }
    uv_async_init(cfg->loop, &in->wakeup, on_wakeup);
    in->wakeup.data = in;
    uv_unref((uv_handle_t *)&in->wakeup);
    uv_rwlock_wrlock(&hub_lock);
    in->next = inboxes;
    inboxes = in;
    uv_rwlock_wrunlock(&hub_lock);
    return in;
}

static void on_closed(uv_handle_t *handle)
{
    struct channel_inbox *in = handle->data;
    for (struct message *m = in->head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    topic_map_free(&in->topics);
    uv_mutex_destroy(&in->lock);
    free(in);
}

void channel_inbox_close(struct channel_inbox *in)
{
    uv_rwlock_wrlock(&hub_lock);
    for (struct channel_inbox **p = &inboxes; *p; p = &(*p)->next) {
        if (*p == in) {
            *p = in->next;
            break;
        }
    }
    uv_rwlock_wrunlock(&hub_lock);
    uv_close((uv_handle_t *)&in->wakeup, on_closed);
}

bool channel_inbox_want(struct channel_inbox *in, const char *topic, size_t topic_len)
{
    uv_mutex_lock(&in->lock);
    struct topic_entry *e = topic_map_add(&in->topics, topic, topic_len);
    if (e)
        e->count++;
    uv_mutex_unlock(&in->lock);
    return e != NULL;
}

void channel_inbox_unwant(struct channel_inbox *in, const char *topic, size_t topic_len)
{
    uv_mutex_lock(&in->lock);
    struct topic_entry *e = topic_map_find(&in->topics, topic, topic_len);
    if (e && --e->count <= 0)
        topic_map_remove(&in->topics, e);
    uv_mutex_unlock(&in->lock);
}

enum outcome { NOT_WANTED, QUEUED, DROPPED_FULL, DROPPED_MEMORY };

/* Queue a copy of the message in 'in' if it wants the topic and has room. */
static enum outcome offer(struct channel_inbox *in, const char *topic, size_t topic_len, const char *message,
                          size_t len)
{
    enum outcome outcome = QUEUED;
    size_t need = cost(topic_len, len);
    uv_mutex_lock(&in->lock);
    if (!in->cfg.outgoing && !topic_map_find(&in->topics, topic, topic_len)) {
        outcome = NOT_WANTED;
    } else if (in->bytes + need > buffer_bytes) {
        outcome = DROPPED_FULL;
    } else {
        struct message *m = malloc(need);
        if (!m) {
            outcome = DROPPED_MEMORY;
        } else {
            *m = (struct message){.topic_len = topic_len, .len = len};
            memcpy(m->bytes, topic, topic_len);
            memcpy(m->bytes + topic_len, message, len);
            if (in->tail)
                in->tail->next = m;
            else
                in->head = m;
            in->tail = m;
            in->bytes += need;
        }
    }
    if (outcome >= DROPPED_FULL && in->cfg.stats)
        stat_add(&in->cfg.stats->channel_dropped, 1); /* its writers take turns under the lock */
    uv_mutex_unlock(&in->lock);
    if (outcome != QUEUED)
        return outcome;
    uv_async_send(&in->wakeup);
    uv_thread_t self = uv_thread_self();
    if (!in->held && uv_thread_equal(&in->owner, &self)) {
        /* Published on this loop (luaecho run's only one): deliver before
         * the loop may end. Others' loops live while they serve. */
        uv_ref((uv_handle_t *)&in->wakeup);
        in->held = true;
    }
    return outcome;
}

/* Say once a second at most that messages were dropped, and where. */
static void log_dropped(const struct channel_inbox *in, enum outcome why, const char *topic, size_t topic_len)
{
    char where[64];
    if (in->cfg.outgoing)
        snprintf(where, sizeof where, "the outbox to Redis");
    else
        snprintf(where, sizeof where, "worker %d's inbox", in->cfg.worker_id);
    if (why == DROPPED_MEMORY)
        log_limited(&memory_rate, LOG_WARN, "channel: dropped a message on '%.*s' for %s: out of memory",
                    (int)(topic_len > 64 ? 64 : topic_len), topic, where);
    else
        log_limited(&overflow_rate, LOG_WARN,
                    "channel: dropped a message on '%.*s': %s is full (--channel-buffer %zu bytes); its "
                    "subscribers fall behind the publishers",
                    (int)(topic_len > 64 ? 64 : topic_len), topic, where, buffer_bytes);
}

/* Offer the message to every inbox ('remote': not to the bridge's). */
static void fan_out(const char *topic, size_t topic_len, const char *message, size_t len, bool remote)
{
    uv_once(&hub_once, init_hub);
    uv_rwlock_rdlock(&hub_lock);
    for (struct channel_inbox *in = inboxes; in; in = in->next) {
        if (remote && in->cfg.outgoing)
            continue;
        enum outcome outcome = offer(in, topic, topic_len, message, len);
        if (outcome >= DROPPED_FULL)
            log_dropped(in, outcome, topic, topic_len);
    }
    uv_rwlock_rdunlock(&hub_lock);
}

void channel_hub_publish(const char *topic, size_t topic_len, const char *message, size_t len)
{
    fan_out(topic, topic_len, message, len, false);
}

void channel_hub_publish_remote(const char *topic, size_t topic_len, const char *message, size_t len)
{
    fan_out(topic, topic_len, message, len, true);
}
