/*
 * channel_script.c - luaecho.channel's C side for one loop: the Lua
 * functions, this loop's subscribers by topic, delivery from its inbox,
 * and the sweep of subscriptions whose generation has gone.
 * Relies on channel_hub.c (the inbox), runtime_call (every subscriber is
 * called on its own, protected) and failure.c (a failing subscriber is
 * logged like any callback; the others still get the message).
 * Rules: a subscription's memory goes only when no delivery is under way
 * (closing one during a delivery marks it, the delivery skips it, and it
 * is unlinked afterwards); a subscription open keeps its object and its
 * function referenced, so a script may drop the object and still be called.
 *
 * Generations: a subscription belongs to the generation in force on this
 * loop when it was made (while a reload loads, the new one). One of an
 * older generation is closed once no connection of this loop runs that
 * generation's code any more: a 1 s timer walks the connection list, while
 * such subscriptions exist.
 */
#include "channel_script.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "channel_hub.h"
#include "channel_topics.h"
#include "conn.h"
#include "failure.h"
#include "protocol.h"
#include "runtime.h"
#include "stats.h"

#define TOPIC_MAX 1024
#define SWEEP_MS 1000

struct channel_sub;

/* What Lua holds; 'sub' is NULL once closed. */
struct sub_box {
    struct channel_sub *sub;
};

struct channel_sub {
    struct channel_sub *prev, *next; /* in its topic's list */
    struct channel_sub *dead_next;   /* closed during a delivery, to unlink after it */
    struct topic_entry *topic;
    struct sub_box *box;
    int fn_ref, box_ref;
    int generation;
    bool closed;
};

struct channel_state {
    struct loop_context *ctx;
    struct channel_inbox *inbox;
    struct topic_map subs;       /* topic -> its subscribers, in the order made */
    size_t count, old;           /* subscriptions open; of an older generation */
    int generation, loading;     /* in force; of the code a reload loads (== generation: none) */
    int making;                  /* the generation new subscriptions get */
    int delivering;              /* a delivery is under way: unlink nothing */
    struct channel_sub *dead;
    uv_timer_t sweep;
};

static _Thread_local struct channel_state *here;

/* Take 'sub' out of its topic's list; the last one out tells the hub. */
static void unlink_sub(struct channel_state *st, struct channel_sub *sub)
{
    struct topic_entry *e = sub->topic;
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        e->first = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    else
        e->last = sub->prev;
    if (!e->first) {
        channel_inbox_unwant(st->inbox, e->name, e->len);
        topic_map_remove(&st->subs, e);
    }
    free(sub);
}

/* Close 'sub': no call from now on. Idempotent. */
static void close_sub(lua_State *L, struct channel_state *st, struct channel_sub *sub)
{
    if (sub->closed)
        return;
    sub->closed = true;
    sub->box->sub = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, sub->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, sub->box_ref);
    st->count--;
    if (sub->generation < st->generation)
        st->old--;
    if (st->delivering) {
        sub->dead_next = st->dead;
        st->dead = sub;
    } else {
        unlink_sub(st, sub);
    }
}

static void unlink_dead(struct channel_state *st)
{
    while (st->dead) {
        struct channel_sub *sub = st->dead;
        st->dead = sub->dead_next;
        unlink_sub(st, sub);
    }
}

struct delivery {
    struct channel_sub *sub;
    const char *topic, *message;
    size_t topic_len, len;
};

/* fn(message, topic). Protected. */
static int call_subscriber(lua_State *L)
{
    struct delivery *d = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->sub->fn_ref);
    lua_pushlstring(L, d->message, d->len);
    lua_pushlstring(L, d->topic, d->topic_len);
    lua_call(L, 2, 0);
    return 0;
}

/* A message from the inbox: every subscriber of its topic made before it
 * arrived, each in its own protected call. */
static void deliver(void *data, const char *topic, size_t topic_len, const char *message, size_t len)
{
    struct channel_state *st = data;
    struct topic_entry *e = topic_map_find(&st->subs, topic, topic_len);
    if (!e)
        return;
    struct delivery d = {.topic = topic, .topic_len = topic_len, .message = message, .len = len};
    struct channel_sub *last = e->last;
    st->delivering++;
    for (struct channel_sub *sub = e->first; sub; sub = sub->next) {
        if (!sub->closed) {
            d.sub = sub;
            struct runtime_error err;
            if (runtime_call(st->ctx->L, call_subscriber, &d, &err) != 0)
                failure_report(&err, &(struct failure){.callback = "channel subscriber",
                                                       .code_generation = sub->generation});
        }
        if (sub == last)
            break;
    }
    if (--st->delivering == 0)
        unlink_dead(st);
}

/* ---- Generations ---- */

/* Mark the generations some connection of this loop still runs. */
static void note_generation(struct conn *c, void *arg)
{
    bool *in_use = arg;
    const char *listener;
    int generation;
    protocol_describe(c, &listener, &generation);
    if (generation > 0)
        in_use[generation % 64] = true; /* a generation 64 reloads old shares a slot: kept, not lost */
}

/* Close the subscriptions of older generations that no connection runs. */
static void on_sweep(uv_timer_t *timer)
{
    struct channel_state *st = timer->data;
    if (st->old == 0) {
        uv_timer_stop(timer);
        return;
    }
    bool in_use[64] = {false};
    conn_list_each(st->ctx->conns, note_generation, in_use);
    for (size_t b = 0; b < st->subs.nbuckets; b++) {
        for (struct topic_entry *e = st->subs.buckets[b], *next_e; e; e = next_e) {
            next_e = e->next; /* closing the last subscriber frees e */
            for (struct channel_sub *sub = e->first, *next; sub; sub = next) {
                next = sub->next;
                if (sub->generation < st->generation && !in_use[sub->generation % 64])
                    close_sub(st->ctx->L, st, sub);
            }
        }
    }
}

void channel_script_reload_begin(void)
{
    if (here)
        here->loading = here->making = here->generation + 1;
}

void channel_script_reload_loaded(void)
{
    if (here)
        here->making = here->generation; /* until the commit, the running code subscribes */
}

/* Close every subscription of 'generation' (a load that was discarded). */
static void close_generation(struct channel_state *st, int generation)
{
    for (size_t b = 0; b < st->subs.nbuckets; b++) {
        for (struct topic_entry *e = st->subs.buckets[b], *next_e; e; e = next_e) {
            next_e = e->next;
            for (struct channel_sub *sub = e->first, *next; sub; sub = next) {
                next = sub->next;
                if (sub->generation == generation)
                    close_sub(st->ctx->L, st, sub);
            }
        }
    }
}

void channel_script_reload_discard(void)
{
    if (!here || here->loading == here->generation)
        return;
    close_generation(here, here->loading);
    here->loading = here->making = here->generation;
}

void channel_script_reload_commit(void)
{
    struct channel_state *st = here;
    if (!st || st->loading == st->generation)
        return;
    st->generation = st->making = st->loading;
    st->old = st->count;
    for (size_t b = 0; b < st->subs.nbuckets; b++) { /* those the new code made are not old */
        for (struct topic_entry *e = st->subs.buckets[b]; e; e = e->next) {
            for (struct channel_sub *sub = e->first; sub; sub = sub->next)
                st->old -= !sub->closed && sub->generation == st->generation;
        }
    }
    if (st->old > 0 && !uv_is_active((uv_handle_t *)&st->sweep))
        uv_timer_start(&st->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}

/* ---- The Lua functions ---- */

static struct channel_state *state_of(lua_State *L)
{
    if (!here)
        luaL_error(L, "luaecho.channel is not available on this thread");
    return here;
}

/* The topic at 'arg', checked. */
static const char *check_topic(lua_State *L, int arg, const char *fname, size_t *len)
{
    const char *topic = luaL_checklstring(L, arg, len);
    if (*len == 0 || *len > TOPIC_MAX)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s: a topic is 1 to %d bytes", fname, TOPIC_MAX));
    return topic;
}

/* core.channel_publish(topic, message): queued for every subscriber, here
 * and in every worker (and instance); none is called before this returns. */
static int channel_publish(lua_State *L)
{
    struct channel_state *st = state_of(L);
    size_t topic_len, len;
    const char *topic = check_topic(L, 1, "publish", &topic_len);
    const char *message = luaL_checklstring(L, 2, &len);
    stat_add(&st->ctx->stats->channel_published, 1);
    channel_hub_publish(topic, topic_len, message, len);
    return 0;
}

/* core.channel_subscribe(topic, fn) -> a subscription. */
static int channel_subscribe(lua_State *L)
{
    struct channel_state *st = state_of(L);
    size_t topic_len;
    const char *topic = check_topic(L, 1, "subscribe", &topic_len);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct sub_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->sub = NULL;
    luaL_setmetatable(L, CHANNEL_SUBSCRIPTION_METATABLE);
    /* What can raise comes first: nothing of C's is allocated yet. */
    lua_pushvalue(L, 2);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    int box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct channel_sub *sub = calloc(1, sizeof *sub);
    struct topic_entry *e = sub ? topic_map_add(&st->subs, topic, topic_len) : NULL;
    if (e && !e->first && !channel_inbox_want(st->inbox, topic, topic_len)) {
        topic_map_remove(&st->subs, e);
        e = NULL;
    }
    if (!e) {
        free(sub);
        luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, box_ref);
        return luaL_error(L, "out of memory for a channel subscription");
    }
    *sub = (struct channel_sub){.topic = e, .box = box, .fn_ref = fn_ref, .box_ref = box_ref,
                                .generation = st->making, .prev = e->last};
    if (e->last)
        ((struct channel_sub *)e->last)->next = sub;
    else
        e->first = sub;
    e->last = sub;
    box->sub = sub;
    st->count++;
    return 1;
}

/* subscription:close(): no call from now on. Idempotent. */
static int subscription_close(lua_State *L)
{
    struct sub_box *box = luaL_checkudata(L, 1, CHANNEL_SUBSCRIPTION_METATABLE);
    if (box->sub && here)
        close_sub(L, here, box->sub);
    return 0;
}

/* subscription:closed() -> true once closed (by close() or a sweep). */
static int subscription_closed(lua_State *L)
{
    struct sub_box *box = luaL_checkudata(L, 1, CHANNEL_SUBSCRIPTION_METATABLE);
    lua_pushboolean(L, box->sub == NULL);
    return 1;
}

/* core.channel_redis_url() -> the --channel-redis URL, or nil. */
static int channel_redis_url(lua_State *L)
{
    const char *url = channel_hub_redis_url();
    if (url)
        lua_pushstring(L, url);
    else
        lua_pushnil(L);
    return 1;
}

void channel_script_register(lua_State *L, int index)
{
    static const luaL_Reg functions[] = {
        {"channel_publish", channel_publish},
        {"channel_subscribe", channel_subscribe},
        {"channel_redis_url", channel_redis_url},
        {NULL, NULL},
    };
    static const luaL_Reg methods[] = {
        {"close", subscription_close},
        {"closed", subscription_closed},
        {NULL, NULL},
    };
    index = lua_absindex(L, index);
    if (luaL_newmetatable(L, CHANNEL_SUBSCRIPTION_METATABLE)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, subscription_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, index);
    luaL_setfuncs(L, functions, 0);
    lua_pop(L, 1);
}

/* ---- Life cycle ---- */

int channel_script_open(struct loop_context *ctx)
{
    struct channel_state *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    *st = (struct channel_state){.ctx = ctx, .generation = 1, .loading = 1, .making = 1};
    st->inbox = channel_inbox_open(&(struct channel_inbox_config){
        .loop = ctx->loop, .worker_id = ctx->worker_id, .stats = ctx->stats, .deliver = deliver, .data = st});
    if (!st->inbox) {
        free(st);
        return -1;
    }
    uv_timer_init(ctx->loop, &st->sweep);
    st->sweep.data = st;
    uv_unref((uv_handle_t *)&st->sweep);
    here = st;
    return 0;
}

static void free_state(uv_handle_t *handle)
{
    struct channel_state *st = handle->data;
    for (size_t b = 0; b < st->subs.nbuckets; b++) { /* the Lua state goes next, with every reference */
        for (struct topic_entry *e = st->subs.buckets[b]; e; e = e->next) {
            for (struct channel_sub *sub = e->first, *next; sub; sub = next) {
                next = sub->next;
                sub->box->sub = NULL;
                free(sub);
            }
        }
    }
    topic_map_free(&st->subs);
    free(st);
}

void channel_script_close(void)
{
    struct channel_state *st = here;
    if (!st)
        return;
    here = NULL;
    channel_inbox_close(st->inbox);
    uv_close((uv_handle_t *)&st->sweep, free_state);
}
