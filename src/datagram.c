/*
 * datagram.c - UDP endpoints served by a Lua Protocol, as asyncio's
 * DatagramProtocol and DatagramTransport (core.datagram_endpoint(), which
 * makes one for a script, is datagram_open.c).
 * One uv_udp_t per endpoint, in its loop's endpoint list. The endpoint holds
 * registry references to its instance, its transport box and its class from
 * endpoint_start until its close callback, the one place it is freed: there
 * connection_lost(err) runs once, the box forgets the endpoint (a transport
 * kept in Lua afterwards raises "datagram transport is closed" or does
 * nothing) and the references go. A failing callback is logged and the
 * endpoint goes on serving; only a failed start closes it.
 * The transport's methods are datagram_transport.c's; the endpoint and the
 * steps they take are shared with it through datagram_private.h.
 */
#define _GNU_SOURCE /* SO_REUSEPORT, SOCK_NONBLOCK */
#include "datagram.h"
#include "datagram_private.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "failure.h"
#include "log.h"
#include "runtime.h"

/* Room for the largest datagram (65507 bytes over IPv4, 65527 over IPv6). */
#define RECV_BUFFER_SIZE 65536

/* Every endpoint of a thread receives into this one buffer: its datagram
 * is copied into a Lua string before the next one is read. */
static _Thread_local char recv_buffer[RECV_BUFFER_SIZE];

static struct log_rate truncated_rate;
static struct log_rate dropped_rate;

/* A datagram the kernel did not take at once, with its bytes. */
struct send_req {
    uv_udp_send_t req;
    char bytes[];
};


static const char *const method_names[] = {
    [EV_MADE] = "connection_made", [EV_DATAGRAM] = "datagram_received", [EV_ERROR] = "error_received",
    [EV_PAUSE] = "pause_writing",  [EV_RESUME] = "resume_writing",      [EV_LOST] = "connection_lost",
};

/* --- naming ------------------------------------------------------------ */

/* " for udp:127.0.0.1:5000" (the listener's name, or the socket's address
 * in the same form): where a failure happened, after the callback's name
 * in its log line. */
static const char *endpoint_note(const struct endpoint *e, char *buf, size_t len)
{
    union addr a;
    char where[ADDR_STRLEN];
    if (e->listener)
        snprintf(buf, len, " for %s", e->listener);
    else if (!uv_is_closing((const uv_handle_t *)&e->udp) && endpoint_sockname(e, &a) == 0)
        snprintf(buf, len, " for udp:%s", addr_format(&a, where, sizeof where));
    else
        snprintf(buf, len, " for a datagram endpoint");
    return buf;
}

/* --- calls into Lua ------------------------------------------------------ */

/* One method call, prepared in C, made under protection. */
struct call {
    struct endpoint *e;
    enum event event;
    const char *bytes; /* the datagram; error_received's and connection_lost's error */
    size_t len;
    const struct sockaddr *from;
};

/* instance:method(args...), skipped when the instance has no such method. */
static int call_method(lua_State *L)
{
    struct call *call = lua_touserdata(L, 1);
    struct endpoint *e = call->e;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->instance_ref); /* self */
    if (lua_getfield(L, -1, method_names[call->event]) == LUA_TNIL)
        return 0;
    lua_insert(L, -2); /* method, self */
    int nargs = 1;
    switch (call->event) {
    case EV_MADE:
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->transport_ref);
        nargs++;
        break;
    case EV_DATAGRAM: {
        lua_pushlstring(L, call->bytes, call->len);
        union addr from;
        if (call->from && addr_from_sockaddr(&from, call->from) == 0) {
            char host[ADDR_STRLEN];
            int port = addr_host_port(&from, host, sizeof host);
            lua_pushstring(L, host);
            lua_pushinteger(L, port);
        } else {
            lua_pushnil(L);
            lua_pushnil(L);
        }
        nargs += 3;
        break;
    }
    case EV_ERROR:
    case EV_LOST:
        if (call->bytes)
            lua_pushstring(L, call->bytes);
        else
            lua_pushnil(L);
        nargs++;
        break;
    default:
        break;
    }
    lua_call(L, nargs, 0);
    return 0;
}

/* Call one method of e's instance. A failure is logged and e goes on
 * serving; the error is handed back in 'failed' when asked for (then the
 * caller reports it). Returns 0 or -1. */
static int dispatch_call(struct endpoint *e, struct call *call, struct runtime_error *failed)
{
    if (e->instance_ref == LUA_NOREF)
        return 0;
    struct runtime_error err;
    if (runtime_call(e->L, call_method, call, &err) == 0)
        return 0;
    if (failed) {
        *failed = err;
        return -1;
    }
    char note[ADDR_STRLEN + 32];
    failure_report(&err, &(struct failure){.callback = method_names[call->event], .keep = true,
                                           .note = endpoint_note(e, note, sizeof note),
                                           .listener = e->listener, .code_generation = e->generation});
    return -1;
}

void endpoint_dispatch(struct endpoint *e, enum event event, const char *bytes)
{
    struct call call = {.e = e, .event = event, .bytes = bytes};
    dispatch_call(e, &call, NULL);
}

/* --- closing ------------------------------------------------------------- */

static void unlink_endpoint(struct endpoint *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else if (e->list->head == e)
        e->list->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

/* The one place an endpoint is freed: connection_lost, then let go of
 * everything Lua. */
static void on_closed(uv_handle_t *handle)
{
    struct endpoint *e = handle->data;
    unlink_endpoint(e);
    endpoint_dispatch(e, EV_LOST, e->error);
    if (e->box) /* it may outlive us in a Lua table */
        e->box->endpoint = NULL;
    luaL_unref(e->L, LUA_REGISTRYINDEX, e->transport_ref);
    luaL_unref(e->L, LUA_REGISTRYINDEX, e->instance_ref);
    if (e->cls.table_ref != LUA_NOREF)
        protocol_class_release(e->L, &e->cls);
    free(e->error);
    free(e);
}

static void close_handle(struct endpoint *e)
{
    e->closing = true;
    if (!uv_is_closing((uv_handle_t *)&e->udp))
        uv_close((uv_handle_t *)&e->udp, on_closed);
}

/* Keep the first reason only. */
static void note_error(struct endpoint *e, const char *error)
{
    if (!e->error && error)
        e->error = strdup(error); /* NULL when out of memory: connection_lost(nil) then */
}

/* Close now, dropping queued datagrams; 'error' (copied) goes to connection_lost. */
void endpoint_abort(struct endpoint *e, const char *error)
{
    note_error(e, error);
    close_handle(e);
}

void endpoint_close(struct endpoint *e)
{
    if (e->receiving) { /* as asyncio: no datagram is delivered after close() */
        uv_udp_recv_stop(&e->udp);
        e->receiving = false;
    }
    e->closing = true;
    if (e->udp.send_queue_count == 0)
        close_handle(e);
    /* else on_sent() closes once the queue is empty */
}

void endpoint_close_all(struct endpoint_list *list)
{
    for (struct endpoint *e = list->head; e; e = e->next)
        endpoint_close(e);
}

/* --- flow control -------------------------------------------------------- */

void endpoint_check_high_water(struct endpoint *e)
{
    if (!e->writing_paused && !e->closing && e->udp.send_queue_size > e->high_water) {
        e->writing_paused = true;
        e->pause_due = true;
    }
}

/* Report a noted pause at the end of the call that caused it. */
void endpoint_report_pause(struct endpoint *e)
{
    if (!e->pause_due)
        return;
    e->pause_due = false;
    if (e->writing_paused && !e->closing)
        endpoint_dispatch(e, EV_PAUSE, NULL);
}

static void check_low_water(struct endpoint *e)
{
    if (e->writing_paused && !e->closing && e->udp.send_queue_size <= e->low_water) {
        e->writing_paused = false;
        endpoint_dispatch(e, EV_RESUME, NULL);
    }
}

/* --- receiving and sending ----------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(recv_buffer, sizeof recv_buffer);
}

static void on_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags)
{
    struct endpoint *e = udp->data;
    if (e->closing)
        return;
    if (nread == 0 && !from)
        return; /* libuv: nothing more to read now */
    if (nread < 0) {
        endpoint_dispatch(e, EV_ERROR, uv_strerror((int)nread));
        return;
    }
    if (flags & UV_UDP_PARTIAL) {
        char note[ADDR_STRLEN + 32];
        log_limited(&truncated_rate, LOG_WARN, "dropped a datagram truncated to %zd bytes%s", nread,
                    endpoint_note(e, note, sizeof note));
        return;
    }
    stat_add(&e->ctx->stats->datagrams_received, 1);
    stat_add(&e->ctx->stats->bytes_received, (uint64_t)nread);
    struct call call = {.e = e, .event = EV_DATAGRAM, .bytes = buf->base, .len = (size_t)nread, .from = from};
    dispatch_call(e, &call, NULL);
}

static void on_sent(uv_udp_send_t *req, int status)
{
    struct endpoint *e = req->handle->data;
    free(req);
    if (status == UV_ECANCELED)
        return; /* closing: on_closed() follows */
    if (status < 0 && !e->closing)
        endpoint_dispatch(e, EV_ERROR, uv_strerror(status));
    check_low_water(e);
    if (e->closing && e->udp.send_queue_count == 0)
        close_handle(e);
}

static void count_sent(struct endpoint *e, size_t len)
{
    stat_add(&e->ctx->stats->datagrams_sent, 1);
    stat_add(&e->ctx->stats->bytes_sent, len);
}

/* Send 'len' bytes to 'to' (NULL: the connected remote). Returns 0, or a
 * libuv error for error_received. Never raises. */
int endpoint_send(struct endpoint *e, const char *data, size_t len, const union addr *to)
{
    const struct sockaddr *sa = to ? &to->sa : NULL;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int rc = uv_udp_try_send(&e->udp, &buf, 1, sa);
    if (rc >= 0) {
        count_sent(e, len);
        return 0;
    }
    if (rc != UV_EAGAIN)
        return rc;
    size_t cap = e->ctx->conns ? e->ctx->conns->max_write_buffer : 0;
    if (cap != 0 && e->udp.send_queue_size + len > cap) {
        char note[ADDR_STRLEN + 32];
        stat_add(&e->ctx->stats->limits_hit[LIMIT_MAX_WRITE_BUFFER], 1);
        log_limited(&dropped_rate, LOG_WARN,
                    "dropped a datagram of %zu bytes%s: its send queue is over --max-write-buffer "
                    "(%zu bytes queued, cap %zu)",
                    len, endpoint_note(e, note, sizeof note), e->udp.send_queue_size, cap);
        return 0;
    }
    struct send_req *req = malloc(sizeof *req + (len ? len : 1));
    if (!req)
        return UV_ENOMEM;
    memcpy(req->bytes, data, len);
    buf = uv_buf_init(req->bytes, (unsigned)len);
    rc = uv_udp_send(&req->req, &e->udp, &buf, 1, sa, on_sent);
    if (rc != 0) {
        free(req);
        return rc;
    }
    count_sent(e, len); /* queued: the kernel takes it once the socket can */
    endpoint_check_high_water(e);
    return 0;
}

/* --- the instance -------------------------------------------------------- */

struct made_args {
    struct endpoint *e;
    const struct protocol_class *cls;
    int instance_ref; /* out: the new instance */
};

/* Does the Protocol at 'idx' serve datagrams? [-0, +0, e] */
static bool has_datagram_received(lua_State *L, int idx)
{
    bool found = lua_getfield(L, idx, "datagram_received") != LUA_TNIL;
    lua_pop(L, 1);
    return found;
}

/* Create an instance of cls (Protocol.new() or a table inheriting from the
 * Protocol) and, the first time, the transport box; keep both referenced. */
static int make_instance(lua_State *L)
{
    struct made_args *args = lua_touserdata(L, 1);
    struct endpoint *e = args->e;
    if (e->transport_ref == LUA_NOREF) {
        struct datagram_box *box = lua_newuserdatauv(L, sizeof *box, 0);
        *box = (struct datagram_box){.endpoint = e, .remote = e->remote, .connected = e->connected};
        luaL_setmetatable(L, DATAGRAM_TRANSPORT_METATABLE);
        e->transport_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        e->box = box;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, args->cls->table_ref);
    if (lua_getfield(L, -1, "new") != LUA_TNIL) {
        lua_call(L, 0, 1);
        if (!lua_istable(L, -1))
            return luaL_error(L, "Protocol.new() must return a table, not %s", luaL_typename(L, -1));
    } else {
        lua_createtable(L, 0, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, args->cls->meta_ref);
        lua_setmetatable(L, -2);
    }
    if (!has_datagram_received(L, -1))
        log_warn("a datagram protocol instance has no datagram_received, so no datagram reaches it: if "
                 "Protocol.new() builds the instance, give it the Protocol as its metatable, e.g. return "
                 "setmetatable({}, {__index = Protocol})");
    args->instance_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

void endpoint_start(struct endpoint *e)
{
    struct made_args args = {.e = e, .cls = &e->cls, .instance_ref = LUA_NOREF};
    struct runtime_error err;
    char note[ADDR_STRLEN + 32];
    if (runtime_call(e->L, make_instance, &args, &err) != 0) {
        note_error(e, err.message);
        failure_report(&err, &(struct failure){.callback = "creating the datagram protocol instance",
                                               .keep = true, .note = endpoint_note(e, note, sizeof note),
                                               .listener = e->listener});
        close_handle(e);
        return;
    }
    e->instance_ref = args.instance_ref;
    e->generation = e->cls.generation;
    struct call call = {.e = e, .event = EV_MADE};
    if (dispatch_call(e, &call, &err) != 0) {
        note_error(e, err.message);
        failure_report(&err, &(struct failure){.callback = "connection_made", .keep = true,
                                               .note = endpoint_note(e, note, sizeof note),
                                               .listener = e->listener});
        close_handle(e);
        return;
    }
    if (e->closing)
        return; /* connection_made closed it */
    int rc = uv_udp_recv_start(&e->udp, on_alloc, on_recv);
    e->receiving = rc == 0;
    if (rc != 0) {
        log_error("cannot receive datagrams%s: %s", endpoint_note(e, note, sizeof note), uv_strerror(rc));
        endpoint_abort(e, uv_strerror(rc));
    }
}

void endpoint_push(lua_State *L, struct endpoint *e)
{
    if (!e) {
        lua_pushnil(L);
        lua_pushnil(L);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->transport_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->instance_ref);
}

/* --- creating ------------------------------------------------------------ */

/* Raise unless the value at 'idx' is a Protocol table with datagram_received. [-0, +0, e] */
static void check_protocol(lua_State *L, int idx, const char *what, const char *whose)
{
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: %s Protocol must be a table, not %s", what, whose, luaL_typename(L, idx));
    if (!has_datagram_received(L, idx))
        luaL_error(L,
                   "%s: %s Protocol has no datagram_received(data, host, port), so it cannot serve datagrams "
                   "(a streams handler function(reader, writer) serves only stream listeners)",
                   what, whose);
}

void endpoint_check_protocol(lua_State *L, int idx, const char *what, const char *whose)
{
    check_protocol(L, idx, what, whose);
}

struct endpoint *endpoint_new(struct loop_context *ctx, lua_State *L, const char *what)
{
    check_protocol(L, -1, what, "the script's");
    /* What can raise comes first: nothing of C's is allocated yet. */
    struct protocol_class cls;
    protocol_class_init(L, &cls); /* pops the Protocol */
    struct endpoint *e = calloc(1, sizeof *e);
    if (!e) {
        protocol_class_release(L, &cls);
        luaL_error(L, "%s: out of memory for a datagram endpoint", what);
        return NULL;
    }
    e->ctx = ctx;
    e->L = ctx->L;
    e->list = ctx->endpoints;
    e->cls = cls;
    e->instance_ref = e->transport_ref = LUA_NOREF;
    e->high_water = CONN_DEFAULT_HIGH_WATER;
    e->low_water = CONN_DEFAULT_HIGH_WATER / 4;
    uv_udp_init(ctx->loop, &e->udp); /* no socket yet: it cannot fail */
    e->udp.data = e;
    e->next = e->list->head;
    if (e->next)
        e->next->prev = e;
    e->list->head = e;
    return e;
}

int endpoint_bind(struct endpoint *e, const union addr *local, bool reuseport)
{
    if (reuseport) {
        /* libuv 1.44 has no UV_UDP_REUSEPORT: our own socket, then its option. */
        int fd = socket(local->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return uv_translate_sys_error(errno);
        int one = 1;
        int rc = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
            rc = uv_translate_sys_error(errno);
        else
            rc = uv_udp_open(&e->udp, fd);
        if (rc != 0) {
            close(fd);
            return rc;
        }
    }
    return uv_udp_bind(&e->udp, &local->sa, 0);
}

int endpoint_check_free(const union addr *addr)
{
    int fd = socket(addr->sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    socklen_t len = addr->sa.sa_family == AF_INET6 ? sizeof addr->in6 : sizeof addr->in;
    int rc = bind(fd, &addr->sa, len) == 0 ? 0 : uv_translate_sys_error(errno); /* no SO_REUSEPORT */
    close(fd);
    return rc;
}

int endpoint_connect(struct endpoint *e, const union addr *remote)
{
    int rc = uv_udp_connect(&e->udp, &remote->sa);
    if (rc != 0)
        return rc;
    e->remote = *remote;
    e->connected = true;
    if (e->box) {
        e->box->remote = *remote;
        e->box->connected = true;
    }
    return 0;
}

void endpoint_set_listener(struct endpoint *e, const char *spec)
{
    e->listener = spec;
}

void endpoint_list_swap_listeners(struct endpoint_list *list, const struct protocol_class *cls)
{
    for (struct endpoint *e = list->head; e; e = e->next) {
        if (e->listener && !e->closing)
            endpoint_set_protocol(e, cls);
    }
}

int endpoint_sockname(const struct endpoint *e, union addr *out)
{
    int len = sizeof *out;
    memset(out, 0, sizeof *out);
    return uv_udp_getsockname(&e->udp, &out->sa, &len);
}

/* --- hot swap ------------------------------------------------------------ */

struct swap_args {
    struct endpoint *e;
    const struct protocol_class *from;
    struct protocol_class cls; /* out: our own copy */
    bool copied;
    bool upgraded;
    int instance_ref;          /* out: a fresh instance, when not upgraded */
};

static int swap_protocol(lua_State *L)
{
    struct swap_args *args = lua_touserdata(L, 1);
    struct endpoint *e = args->e;
    protocol_class_copy(L, args->from, &args->cls);
    args->copied = true;
    lua_rawgeti(L, LUA_REGISTRYINDEX, args->cls.table_ref);
    if (!has_datagram_received(L, -1))
        return luaL_error(L, "the new Protocol has no datagram_received(data, host, port), so it cannot serve "
                             "datagrams");
    if (lua_getfield(L, -1, "upgrade") != LUA_TNIL) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->instance_ref);
        lua_call(L, 1, 0);
        args->upgraded = true;
        return 0;
    }
    lua_pop(L, 2);
    struct made_args made = {.e = e, .cls = &args->cls, .instance_ref = LUA_NOREF};
    lua_pushcfunction(L, make_instance);
    lua_pushlightuserdata(L, &made);
    lua_call(L, 1, 0);
    args->instance_ref = made.instance_ref;
    return 0;
}

bool endpoint_set_protocol(struct endpoint *e, const struct protocol_class *cls)
{
    if (e->closing || e->instance_ref == LUA_NOREF)
        return false;
    struct swap_args args = {.e = e, .from = cls, .instance_ref = LUA_NOREF};
    struct runtime_error err;
    if (runtime_call(e->L, swap_protocol, &args, &err) != 0) {
        if (args.copied)
            protocol_class_release(e->L, &args.cls);
        char note[ADDR_STRLEN + 80], where[ADDR_STRLEN + 32];
        snprintf(note, sizeof note, "%s, which keeps generation %d", endpoint_note(e, where, sizeof where),
                 e->generation);
        failure_report(&err, &(struct failure){.callback = "upgrade", .keep = true, .note = note,
                                               .generation = e->generation, .listener = e->listener});
        return false;
    }
    protocol_class_release(e->L, &e->cls);
    e->cls = args.cls;
    e->cls.generation = e->generation + 1;
    e->generation = e->cls.generation;
    if (args.upgraded)
        return true;
    luaL_unref(e->L, LUA_REGISTRYINDEX, e->instance_ref); /* the old instance goes without a call */
    e->instance_ref = args.instance_ref;
    endpoint_dispatch(e, EV_MADE, NULL); /* a failure is logged; the new instance goes on serving */
    return false;
}
