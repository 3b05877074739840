/*
 * redis_script.c - what scripts reach of Redis, callback-style: the
 * core.redis_connect() userdata that lua/luaecho/redis.lua builds the task
 * form on. Relies on redis_conn.c for the link and runtime_call for every
 * call into Lua.
 * Rules: C holds no strong reference to a connection's userdata or to its
 * on_state/on_message functions (they are the userdata's user values, and
 * the userdata is found again through a weak table), so a client its script
 * dropped, or the generation a reload replaced, is collected and its
 * connection closed; only a pending command's callback is referenced, until
 * it is called, once. Replies become Lua values inside the protected call.
 */
#include "redis_script.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "failure.h"
#include "redis_conn.h"
#include "runtime.h"

#define ARGS_ON_STACK 16

/* The userdata: 'conn' is NULL once closed. */
struct redis_box {
    struct redis_conn *conn;
    lua_State *L; /* the state's main thread */
    char described[64 + REDIS_URL_HOST_MAX + REDIS_URL_PATH_MAX];
};

/* A command awaiting its reply: the callback to call once. */
struct redis_request {
    lua_State *L;
    int fn_ref;
    char described[64 + REDIS_URL_HOST_MAX + REDIS_URL_PATH_MAX];
};

/* The weak table conn -> userdata (its address is the registry key). */
static const char weak_boxes_key = 'w';

/* Push luaecho.errors.new(kind, message, {code = code}) or, when that module
 * is not loaded, a plain table of the same fields. [-0, +1, e] */
static void push_error(lua_State *L, const char *kind, const char *message, size_t len, const char *code,
                       size_t code_len)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "luaecho.errors");
    lua_remove(L, -2);
    bool have_errors = lua_istable(L, -1);
    if (have_errors) {
        lua_getfield(L, -1, "new");
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
    }
    lua_pushstring(L, kind);
    lua_pushlstring(L, message, len);
    lua_createtable(L, 0, 3);
    if (code) {
        lua_pushlstring(L, code, code_len);
        lua_setfield(L, -2, "code");
    }
    if (have_errors) {
        lua_call(L, 3, 1);
        return;
    }
    lua_insert(L, -3); /* fields, kind, message */
    lua_setfield(L, -3, "message");
    lua_setfield(L, -2, "kind");
}

/* An error reply ("WRONGTYPE Operation against ...") as an error of kind
 * "redis" with its first word as 'code'. [-0, +1, e] */
static void push_reply_error(lua_State *L, const redisReply *r)
{
    const char *space = memchr(r->str, ' ', r->len);
    size_t code_len = space ? (size_t)(space - r->str) : r->len;
    push_error(L, "redis", r->str, r->len, r->str, code_len);
}

/* A reply as a Lua value: strings, integers, nil, arrays as tables with
 * 'n' (nil elements are holes, as table.pack makes them), an error inside
 * an array as an error table. [-0, +1, e] */
static void push_reply(lua_State *L, const redisReply *r)
{
    luaL_checkstack(L, 4, "a Redis reply nested too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        return;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        return;
    case REDIS_REPLY_ERROR:
        push_reply_error(L, r);
        return;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, r->elements > 0x7fffffff ? 0 : (int)r->elements, 1);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_pushinteger(L, (lua_Integer)r->elements);
        lua_setfield(L, -2, "n");
        return;
    default:
        lua_pushnil(L);
    }
}

/* What a reply callback is called with. */
struct delivery {
    struct redis_request *request;
    const redisReply *reply;
    enum redis_conn_error error;
};

/* Push the error for a command that got no reply. [-0, +1, e] */
static void push_no_reply(lua_State *L, enum redis_conn_error error, const char *described)
{
    const char *message;
    switch (error) {
    case REDIS_CONN_DISCONNECTED:
        message = lua_pushfstring(L, "the link to %s failed or was lost before the reply came (it reconnects by itself)", described);
        break;
    case REDIS_CONN_CLOSED:
        message = lua_pushfstring(L, "the client of %s was closed before the reply", described);
        break;
    default:
        message = lua_pushfstring(L, "no reply from %s (%s)", described, redis_conn_error_name(error));
    }
    push_error(L, redis_conn_error_name(error), message, strlen(message), NULL, 0);
    lua_remove(L, -2);
}

/* Call the request's callback with (reply) or (nil, err). Protected. */
static int deliver_reply(lua_State *L)
{
    struct delivery *d = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->request->fn_ref);
    if (!d->reply) {
        lua_pushnil(L);
        push_no_reply(L, d->error, d->request->described);
    } else if (d->reply->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        push_reply_error(L, d->reply);
    } else {
        push_reply(L, d->reply);
        lua_pushnil(L);
    }
    lua_call(L, 2, 0);
    return 0;
}

static void on_reply(struct redis_conn *conn, const struct redisReply *reply, enum redis_conn_error error, void *data)
{
    (void)conn;
    struct redis_request *request = data;
    struct delivery d = {.request = request, .reply = reply, .error = error};
    struct runtime_error err;
    if (runtime_call(request->L, deliver_reply, &d, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "luaecho.redis reply callback"});
    luaL_unref(request->L, LUA_REGISTRYINDEX, request->fn_ref);
    free(request);
}

/* Push the userdata of 'conn', or nothing and false when it was collected.
 * [-0, +(0|1), -] */
static bool push_box(lua_State *L, struct redis_conn *conn)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weak_boxes_key);
    lua_rawgetp(L, -1, conn);
    lua_remove(L, -2);
    if (lua_isuserdata(L, -1))
        return true;
    lua_pop(L, 1);
    return false;
}

/* What an event callback is called with. */
struct event {
    struct redis_conn *conn;
    bool up;
    const char *reason;
    const char *pattern, *channel, *payload;
    size_t pattern_len, channel_len, payload_len;
};

/* on_state(up, reason). Protected. */
static int deliver_state(lua_State *L)
{
    struct event *e = lua_touserdata(L, 1);
    if (!push_box(L, e->conn) || lua_getiuservalue(L, -1, 1) != LUA_TFUNCTION)
        return 0;
    lua_pushboolean(L, e->up);
    if (e->reason)
        lua_pushstring(L, e->reason);
    else
        lua_pushnil(L);
    lua_call(L, 2, 0);
    return 0;
}

/* on_message(message, channel, pattern). Protected. */
static int deliver_message(lua_State *L)
{
    struct event *e = lua_touserdata(L, 1);
    if (!push_box(L, e->conn) || lua_getiuservalue(L, -1, 2) != LUA_TFUNCTION)
        return 0;
    lua_pushlstring(L, e->payload, e->payload_len);
    lua_pushlstring(L, e->channel, e->channel_len);
    if (e->pattern)
        lua_pushlstring(L, e->pattern, e->pattern_len);
    else
        lua_pushnil(L);
    lua_call(L, 3, 0);
    return 0;
}

static void on_state(struct redis_conn *conn, bool up, const char *reason, void *data)
{
    struct redis_box *box = data;
    if (!box)
        return;
    struct event e = {.conn = conn, .up = up, .reason = reason};
    struct runtime_error err;
    if (runtime_call(box->L, deliver_state, &e, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "luaecho.redis on_state"});
}

static void on_message(struct redis_conn *conn, const char *pattern, size_t pattern_len, const char *channel,
                       size_t channel_len, const char *payload, size_t payload_len, void *data)
{
    struct redis_box *box = data;
    if (!box)
        return;
    struct event e = {.conn = conn, .pattern = pattern, .pattern_len = pattern_len, .channel = channel,
                      .channel_len = channel_len, .payload = payload, .payload_len = payload_len};
    struct runtime_error err;
    if (runtime_call(box->L, deliver_message, &e, &err) != 0)
        failure_report(&err, &(struct failure){.callback = "luaecho.redis subscriber"});
}

/* The connection is going (closed, or the loop's teardown). */
static void on_closed(struct redis_conn *conn, void *data)
{
    (void)conn;
    struct redis_box *box = data;
    if (box)
        box->conn = NULL;
}

static const struct redis_conn_events events = {
    .state = on_state,
    .message = on_message,
    .closed = on_closed,
};

/* Push nil and an error table for a refusal; returns 2. [-0, +2, e] */
static int push_refusal(lua_State *L, struct redis_box *box, int error)
{
    const char *where = box->described;
    lua_pushnil(L);
    const char *message;
    switch (error) {
    case REDIS_CONN_DISCONNECTED:
        message = lua_pushfstring(L, "not connected to %s (it reconnects by itself); the command was not sent",
                                  where);
        break;
    case REDIS_CONN_BUSY:
        message = lua_pushfstring(L, "%d replies from %s already awaited (the pending bound); the command was not "
                                     "sent", (int)redis_conn_pending(box->conn), where);
        break;
    case REDIS_CONN_CLOSED:
        message = lua_pushfstring(L, "the client of %s is closed; the command was not sent", where);
        break;
    default:
        message = lua_pushfstring(L, "the command to %s was not sent (%s)", where,
                                  redis_conn_error_name((enum redis_conn_error)error));
    }
    push_error(L, redis_conn_error_name((enum redis_conn_error)error), message, strlen(message), NULL, 0);
    lua_remove(L, -2);
    return 2;
}

/* The arguments from 'first' to the top as strings (numbers converted in
 * place); the arrays are the stack's or a scratch userdata's. [-0, +(0|1), v] */
static int collect_args(lua_State *L, int first, const char ***argv, size_t **lens, const char **small_argv,
                        size_t *small_lens)
{
    int n = lua_gettop(L) - first + 1;
    luaL_argcheck(L, n > 0, first, "a Redis command needs at least its name");
    *argv = small_argv, *lens = small_lens;
    if (n > ARGS_ON_STACK) {
        void *scratch = lua_newuserdatauv(L, (size_t)n * (sizeof **argv + sizeof **lens), 0);
        *argv = scratch;
        *lens = (size_t *)((char *)scratch + (size_t)n * sizeof **argv);
    }
    for (int i = 0; i < n; i++) {
        int t = lua_type(L, first + i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_argerror(L, first + i,
                          lua_pushfstring(L, "Redis arguments are strings or numbers, not a %s", lua_typename(L, t)));
        (*argv)[i] = lua_tolstring(L, first + i, &(*lens)[i]);
    }
    return n;
}

/* conn:call(fn, name, args...): send the command; fn(reply) or fn(nil, err)
 * is called once with its reply. Returns true, or nil, err when the
 * command was refused at once (fn is then never called). */
static int redis_call(lua_State *L)
{
    struct redis_box *box = luaL_checkudata(L, 1, REDIS_METATABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    const char *small_argv[ARGS_ON_STACK];
    size_t small_lens[ARGS_ON_STACK];
    const char **argv;
    size_t *lens;
    int argc = collect_args(L, 3, &argv, &lens, small_argv, small_lens);
    if (!box->conn)
        return push_refusal(L, box, REDIS_CONN_CLOSED);
    lua_pushvalue(L, 2);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: nothing of C's is allocated yet */
    struct redis_request *request = malloc(sizeof *request);
    if (!request) {
        luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
        return luaL_error(L, "out of memory for a Redis command");
    }
    request->fn_ref = fn_ref;
    request->L = box->L;
    memcpy(request->described, box->described, sizeof request->described);
    int refused = redis_conn_command(box->conn, argc, argv, lens, on_reply, request);
    if (refused != REDIS_CONN_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, request->fn_ref);
        free(request);
        return push_refusal(L, box, refused);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:subscribe(name, is_pattern): messages go to the on_message given
 * to redis_connect; kept across reconnects. Returns true or nil, err. */
static int redis_subscribe(lua_State *L)
{
    struct redis_box *box = luaL_checkudata(L, 1, REDIS_METATABLE);
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);
    bool pattern = lua_toboolean(L, 3);
    if (!box->conn)
        return push_refusal(L, box, REDIS_CONN_CLOSED);
    int refused = redis_conn_subscribe(box->conn, name, len, pattern);
    if (refused != REDIS_CONN_OK)
        return push_refusal(L, box, refused);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:unsubscribe(name, is_pattern). No-op when absent or closed. */
static int redis_unsubscribe(lua_State *L)
{
    struct redis_box *box = luaL_checkudata(L, 1, REDIS_METATABLE);
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);
    if (box->conn)
        redis_conn_unsubscribe(box->conn, name, len, lua_toboolean(L, 3));
    return 0;
}

/* conn:close(): pending callbacks get a "closed" error on the next loop
 * turn. Idempotent; also what the garbage collector does. */
static int redis_close(lua_State *L)
{
    struct redis_box *box = luaL_checkudata(L, 1, REDIS_METATABLE);
    if (box->conn) {
        redis_conn_set_data(box->conn, NULL);
        redis_conn_close(box->conn);
        box->conn = NULL;
    }
    return 0;
}

/* conn:is_up() -> whether the link is up now. */
static int redis_is_up(lua_State *L)
{
    struct redis_box *box = luaL_checkudata(L, 1, REDIS_METATABLE);
    lua_pushboolean(L, box->conn && redis_conn_is_up(box->conn));
    return 1;
}

/* conn:pending() -> replies awaited now. */
static int redis_pending(lua_State *L)
{
    struct redis_box *box = luaL_checkudata(L, 1, REDIS_METATABLE);
    lua_pushinteger(L, box->conn ? (lua_Integer)redis_conn_pending(box->conn) : 0);
    return 1;
}

/* Read connect's optional settings: on_state, on_message, max_pending, name. */
static void read_options(lua_State *L, struct redis_conn_options *options)
{
    luaL_argcheck(L, lua_isnoneornil(L, 2) || lua_isfunction(L, 2), 2, "on_state must be a function or nil");
    luaL_argcheck(L, lua_isnoneornil(L, 3) || lua_isfunction(L, 3), 3, "on_message must be a function or nil");
    lua_Integer max_pending = luaL_optinteger(L, 4, 1024);
    luaL_argcheck(L, max_pending >= 1 && max_pending <= 1000000, 4, "max_pending must be from 1 to 1000000");
    *options = (struct redis_conn_options){.name = "luaecho.redis", .max_pending = (size_t)max_pending};
}

/* core.redis_connect(url [, on_state [, on_message [, max_pending]]]) ->
 * conn, or nil, message for a bad URL. Connects in the background. */
int redis_script_connect(lua_State *L)
{
    const char *text = luaL_checkstring(L, 1);
    struct redis_conn_options options;
    read_options(L, &options);
    struct redis_url url;
    char error[REDIS_URL_ERROR_MAX];
    if (redis_url_parse(text, &url, error) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "bad Redis URL: %s", error);
        return 2;
    }
    struct redis_box *box = lua_newuserdatauv(L, sizeof *box, 2);
    *box = (struct redis_box){.L = runtime_context(L)->L};
    redis_url_describe(&url, box->described, sizeof box->described);
    luaL_setmetatable(L, REDIS_METATABLE);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &weak_boxes_key);
    struct redis_conn *conn = redis_conn_open(runtime_context(L)->loop, &url, &options, &events, box);
    if (!conn)
        return luaL_error(L, "out of memory for a Redis connection");
    box->conn = conn; /* from here on, the userdata's __gc closes it */
    lua_pushvalue(L, -2);
    lua_rawsetp(L, -2, conn);
    lua_pop(L, 1);
    return 1;
}

void redis_script_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"call", redis_call},
        {"subscribe", redis_subscribe},
        {"unsubscribe", redis_unsubscribe},
        {"close", redis_close},
        {"is_up", redis_is_up},
        {"pending", redis_pending},
        {NULL, NULL},
    };
    luaL_newmetatable(L, REDIS_METATABLE);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, redis_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &weak_boxes_key);
}
