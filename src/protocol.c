/*
 * protocol.c - the Protocol side of a connection.
 * Each connection holds a registry reference to its protocol instance and to
 * its transport box, from connection_made until connection_lost; both are
 * released exactly once, in on_lost(). A failing method is logged with its
 * traceback and the peer, and aborts that connection alone.
 */
#include "protocol.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <string.h>

#include "addr.h"
#include "context.h"
#include "failure.h"
#include "generations.h"
#include "log.h"
#include "record.h"
#include "runtime.h"
#include "transport.h"

/* What each connection keeps for Lua, in its conn_data() area. */
struct binding {
    lua_State *L;
    const struct protocol_owner *owner;
    struct transport *transport;
    int instance_ref;
    int transport_ref;
    struct transport_info info; /* generation, server: what the transport reports */
};

const size_t protocol_conn_size = sizeof(struct binding);

enum event { EV_MADE, EV_DATA, EV_EOF, EV_PAUSE, EV_RESUME, EV_LOST, EV_TLS };

static const char *const method_names[] = {
    [EV_MADE] = "connection_made", [EV_DATA] = "data_received",   [EV_EOF] = "eof_received",
    [EV_PAUSE] = "pause_writing",  [EV_RESUME] = "resume_writing", [EV_LOST] = "connection_lost",
    [EV_TLS] = "tls_started",
};

/* One method call, prepared in C, made under protection. */
struct call {
    struct conn *conn;
    enum event event;
    const char *bytes; /* data_received's data, connection_lost's error */
    size_t len;
    bool result;
};

void protocol_class_init(lua_State *L, struct protocol_class *cls)
{
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "__index");
    cls->meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    cls->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    cls->generation = 1;
    cls->checked = false;
}

void protocol_class_release(lua_State *L, struct protocol_class *cls)
{
    luaL_unref(L, LUA_REGISTRYINDEX, cls->meta_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, cls->table_ref);
    cls->meta_ref = cls->table_ref = LUA_NOREF;
}

void protocol_class_copy(lua_State *L, const struct protocol_class *from, struct protocol_class *to)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, from->table_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, from->meta_ref);
    int meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *to = *from;
    to->meta_ref = meta_ref;
    to->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void protocol_attach(struct conn *c, lua_State *L, const struct protocol_owner *owner)
{
    struct binding *b = conn_data(c);
    *b = (struct binding){.L = L, .owner = owner, .instance_ref = LUA_NOREF, .transport_ref = LUA_NOREF,
                          .info = {.server_ref = owner ? owner->server_ref : LUA_NOREF,
                                   .listener = owner ? owner->listener : NULL}};
}

void protocol_push(lua_State *L, struct conn *c)
{
    struct binding *b = conn_data(c);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->transport_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->instance_ref);
}

const struct protocol_owner *protocol_owner(struct conn *c)
{
    return ((struct binding *)conn_data(c))->owner;
}

struct upgrade_args {
    struct conn *conn;
    const struct protocol_class *cls;
    bool upgraded;
};

/* NewProtocol.upgrade(instance), when NewProtocol has one. */
static int call_upgrade(lua_State *L)
{
    struct upgrade_args *args = lua_touserdata(L, 1);
    struct binding *b = conn_data(args->conn);
    lua_rawgeti(L, LUA_REGISTRYINDEX, args->cls->table_ref);
    if (lua_getfield(L, -1, "upgrade") == LUA_TNIL)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->instance_ref);
    lua_call(L, 1, 0);
    args->upgraded = true;
    return 0;
}

bool protocol_upgrade(struct conn *c, const struct protocol_class *cls)
{
    struct binding *b = conn_data(c);
    if (b->instance_ref == LUA_NOREF || conn_is_closing(c))
        return false;
    struct upgrade_args args = {.conn = c, .cls = cls};
    struct runtime_error err;
    if (runtime_call(b->L, call_upgrade, &args, &err) != 0) {
        char note[64];
        snprintf(note, sizeof note, ", which keeps generation %d", b->info.generation);
        failure_report(&err, &(struct failure){.callback = "upgrade", .conn = c, .keep = true, .note = note,
                                               .generation = b->info.generation});
        return false;
    }
    if (args.upgraded && b->owner) { /* counted where it is served now */
        generations_count_conn(b->info.generation, -1);
        generations_count_conn(cls->generation, +1);
    }
    if (args.upgraded)
        b->info.generation = cls->generation;
    return args.upgraded;
}

/* Push the arguments of the call's method after self; return their count. [-0, +n, e] */
static int push_arguments(lua_State *L, const struct call *call, const struct binding *b)
{
    switch (call->event) {
    case EV_MADE:
        lua_rawgeti(L, LUA_REGISTRYINDEX, b->transport_ref);
        return 1;
    case EV_DATA:
        lua_pushlstring(L, call->bytes, call->len);
        return 1;
    case EV_LOST:
        if (call->bytes)
            lua_pushstring(L, call->bytes);
        else
            lua_pushnil(L);
        return 1;
    default:
        return 0;
    }
}

/* instance:method(args...), skipped when the instance has no such method. */
static int call_method(lua_State *L)
{
    struct call *call = lua_touserdata(L, 1);
    struct binding *b = conn_data(call->conn);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->instance_ref);     /* self */
    if (lua_getfield(L, -1, method_names[call->event]) == LUA_TNIL)
        return 0;
    lua_insert(L, -2);                                      /* method, self */
    int nargs = 1 + push_arguments(L, call, b);
    lua_call(L, nargs, 1);
    call->result = lua_toboolean(L, -1);
    return 0;
}


/* Call one method of c's instance; its result as a boolean. */
static bool dispatch(struct conn *c, enum event event, const char *bytes, size_t len)
{
    struct binding *b = conn_data(c);
    if (b->instance_ref == LUA_NOREF)
        return false;
    struct call call = {.conn = c, .event = event, .bytes = bytes, .len = len};
    struct runtime_error err;
    if (runtime_call(b->L, call_method, &call, &err) != 0) {
        if (event != EV_LOST) /* the failure aborts the connection: the script's own end, for the transcript */
            record_event(b->info.record, REC_ABORT, err.message, err.message ? strlen(err.message) : 0);
        failure_report(&err, &(struct failure){.callback = method_names[event], .conn = c,
                                               .code_generation = b->info.generation});
        return false;
    }
    return call.result;
}

/* Create the instance (Protocol.new() or a table inheriting from Protocol)
 * and the transport, and keep both referenced. */
struct made_args {
    struct conn *conn;
    struct protocol_class *cls;
};

/* Does the instance on top answer any Protocol method? [-0, +0, e] */
static bool answers_any_method(lua_State *L)
{
    for (size_t i = 0; i < sizeof method_names / sizeof *method_names; i++) {
        bool found = lua_getfield(L, -1, method_names[i]) != LUA_TNIL;
        lua_pop(L, 1);
        if (found)
            return true;
    }
    return false;
}

/* A Protocol whose instances answer no method serves nothing, silently:
 * say so once per class (its first instance), with the usual cause. */
static void check_first_instance(lua_State *L, struct protocol_class *cls)
{
    if (cls->checked)
        return;
    cls->checked = true;
    if (!answers_any_method(L))
        log_warn("a protocol instance answers none of the Protocol's methods (connection_made, data_received, "
                 "eof_received, pause_writing, resume_writing, connection_lost), so no callback runs for its "
                 "connections: if Protocol.new() builds the instance, give it the Protocol as its metatable, "
                 "e.g. return setmetatable({}, {__index = Protocol}) (said once per load of the script)");
}

static int make_instance(lua_State *L)
{
    struct made_args *args = lua_touserdata(L, 1);
    struct protocol_class *cls = args->cls;
    struct binding *b = conn_data(args->conn);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cls->table_ref);
    if (lua_getfield(L, -1, "new") != LUA_TNIL) {
        lua_call(L, 0, 1);
        if (!lua_istable(L, -1))
            return luaL_error(L, "Protocol.new() must return a table, not %s", luaL_typename(L, -1));
    } else {
        lua_createtable(L, 0, 1); /* most keep one field, their transport */
        lua_rawgeti(L, LUA_REGISTRYINDEX, cls->meta_ref);
        lua_setmetatable(L, -2);
    }
    check_first_instance(L, cls);
    /* The instance is kept last: once it is, connection_lost is due, so
     * nothing after it may raise (out of memory). */
    struct transport *transport = transport_new(L, args->conn, &b->info);
    b->transport_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    b->transport = transport;
    b->instance_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    b->info.generation = cls->generation;
    if (b->owner) /* a server's connection: show generations counts it until on_lost */
        generations_count_conn(cls->generation, +1);
    return 0;
}

/* With --record, a server's connection gets a transcript from here on. */
static void start_record(struct conn *c, struct binding *b, const struct protocol_class *cls)
{
    const struct loop_context *ctx = runtime_context(b->L);
    if (!ctx->recorder || !b->owner)
        return;
    char peer[ADDR_STRLEN + 32];
    struct record_header h = {.listener = b->owner->listener, .peer = addr_format(conn_peer(c), peer, sizeof peer),
                              .generation = cls->generation, .worker = ctx->worker_id, .conn_id = conn_id(c)};
    b->info.record = record_start(ctx->recorder, ctx->loop, &h);
}

void protocol_connection_made(struct conn *c, struct protocol_class *cls)
{
    struct binding *b = conn_data(c);
    start_record(c, b, cls);
    struct made_args args = {.conn = c, .cls = cls};
    struct runtime_error err;
    if (runtime_call(b->L, make_instance, &args, &err) != 0) {
        failure_report(&err, &(struct failure){.callback = "creating the protocol instance", .conn = c,
                                               .code_generation = cls->generation});
        return;
    }
    dispatch(c, EV_MADE, NULL, 0);
    conn_start(c);
}

/* data_received, with c's writes corked: they go out in one send after it. */
static void on_data(struct conn *c, const char *base, size_t len)
{
    conn_cork(c);
    record_event(((struct binding *)conn_data(c))->info.record, REC_IN, base, len);
    dispatch(c, EV_DATA, base, len);
    transport_uncork(((struct binding *)conn_data(c))->L, c);
}

/* asyncio's rule: a true result keeps our side open; otherwise close. */
static void on_eof(struct conn *c)
{
    struct record *rec = ((struct binding *)conn_data(c))->info.record;
    record_event(rec, REC_EOF, NULL, 0);
    if (!dispatch(c, EV_EOF, NULL, 0)) {
        if (!conn_is_closing(c))
            record_event(rec, REC_CLOSE, NULL, 0);
        conn_close(c);
    }
}

static void on_pause_writing(struct conn *c)
{
    dispatch(c, EV_PAUSE, NULL, 0);
}

static void on_resume_writing(struct conn *c)
{
    dispatch(c, EV_RESUME, NULL, 0);
}

/* The last call: connection_lost, then let go of everything Lua. */
static void on_lost(struct conn *c, const char *error)
{
    struct binding *b = conn_data(c);
    dispatch(c, EV_LOST, error, 0);
    if (b->owner && b->instance_ref != LUA_NOREF)
        generations_count_conn(b->info.generation, -1);
    if (b->transport) { /* it may outlive us in a Lua table */
        b->transport->conn = NULL;
        b->transport->info = NULL;
    }
    luaL_unref(b->L, LUA_REGISTRYINDEX, b->transport_ref);
    luaL_unref(b->L, LUA_REGISTRYINDEX, b->instance_ref);
    b->instance_ref = b->transport_ref = LUA_NOREF;
    record_end(b->info.record, conn_end_reason(c), error);
    b->info.record = NULL;
    if (b->owner)
        b->owner->lost(b->owner->data, conn_end_reason(c));
}

void protocol_describe(struct conn *c, const char **listener, int *generation)
{
    *listener = NULL;
    *generation = 0;
    if (conn_get_events(c) != &protocol_events)
        return;
    struct binding *b = conn_data(c);
    *listener = b->owner ? b->owner->listener : NULL;
    *generation = b->info.generation;
}

/* The handshake start_tls() began is done: tls_started(), if the
 * instance has it. */
static void on_tls_started(struct conn *c)
{
    if (conn_get_events(c) == &protocol_events && !conn_is_closing(c))
        dispatch(c, EV_TLS, NULL, 0);
}

void protocol_register_hooks(void)
{
    transport_on_tls_started(on_tls_started);
}

const struct conn_events protocol_events = {
    .data = on_data,
    .eof = on_eof,
    .pause_writing = on_pause_writing,
    .resume_writing = on_resume_writing,
    .lost = on_lost,
};
