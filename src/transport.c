/*
 * transport.c - transport:write() and friends, asyncio's Transport in Lua.
 * Every method checks its arguments and names itself in errors. Once the
 * connection is closing or gone: write, writelines and write_eof raise
 * "transport is closed"; close, abort, pause_reading and resume_reading do
 * nothing; the queries answer as for a closed transport.
 */
#include "transport.h"

#include <lauxlib.h>
#include <string.h>

#include "addr.h"
#include "conn.h"
#include "context.h"
#include "lua_class.h"
#include "runtime.h"
#include "tls_filter.h"
#include "tls_script.h"

/* Strings written while their connection is corked: kept alive here until
 * transport_uncork() has sent them (conn_write.c holds only pointers). */
static const char anchors_key = 0;
static _Thread_local int anchored;

/* Keep the string at 'idx' alive until the next uncork. Raises when out of
 * memory, so it must run before conn_write: a write either succeeds with
 * its bytes kept alive until sent, or fails leaving nothing behind. [-0, +0, m] */
static void anchor(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key);
    lua_pushvalue(L, idx);
    lua_rawseti(L, -2, anchored + 1);
    anchored++; /* only once the slot is set: clearing it must allocate nothing */
    lua_pop(L, 1);
}

/* The transcript of the transport at 1 (--record), or NULL. [-0, +0, -] */
static struct record *transport_record(lua_State *L)
{
    const struct transport *t = lua_touserdata(L, 1);
    return t->info ? t->info->record : NULL;
}

/* Write the string at 'idx' (its bytes and length given), anchored first
 * when the cork may hold it; recorded for --record. */
static void write_string(lua_State *L, struct conn *c, int idx, const char *data, size_t len)
{
    if (conn_write_holds(c, len))
        anchor(L, idx);
    record_event(transport_record(L), REC_OUT, data, len);
    conn_write(c, data, len);
}

void transport_uncork(lua_State *L, struct conn *c)
{
    conn_uncork(c);
    if (anchored == 0)
        return;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key); /* clearing slots allocates nothing */
    for (; anchored > 0; anchored--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, anchored);
    }
    lua_pop(L, 1);
}

static struct transport *check_transport(lua_State *L)
{
    return lua_class_check(L, TRANSPORT_METATABLE);
}

/* The connection, or a Lua error naming the method when it is closing or gone. */
static struct conn *check_writable(lua_State *L, const char *method)
{
    struct conn *c = check_transport(L)->conn;
    if (!c || conn_is_closing(c))
        luaL_error(L, "transport:%s(): transport is closed", method);
    if (conn_eof_written(c))
        luaL_error(L, "transport:%s(): cannot write after write_eof()", method);
    return c;
}

static int transport_write(lua_State *L)
{
    struct conn *c = check_writable(L, "write");
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len); /* a number becomes a string in place */
    write_string(L, c, 2, data, len);
    return 0;
}

static int transport_writelines(lua_State *L)
{
    struct conn *c = check_writable(L, "writelines");
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer n = luaL_len(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, 2, i) != LUA_TSTRING)
            return luaL_error(L, "transport:writelines(): item %d is a %s, not a string", (int)i,
                              luaL_typename(L, -1));
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *data = lua_tolstring(L, -1, &len);
    write_string(L, c, -1, data, len);
    return 0;
}

static int transport_write_eof(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    if (!c || conn_is_closing(c))
        return luaL_error(L, "transport:write_eof(): transport is closed");
    if (!conn_eof_written(c))
        record_event(transport_record(L), REC_WRITE_EOF, NULL, 0);
    conn_write_eof(c);
    return 0;
}

static int transport_can_write_eof(lua_State *L)
{
    check_transport(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int transport_close(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    if (c && !conn_is_closing(c))
        record_event(transport_record(L), REC_CLOSE, NULL, 0);
    if (c)
        conn_close(c);
    return 0;
}

static int transport_abort(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    if (c && !conn_is_closing(c))
        record_event(transport_record(L), REC_ABORT, NULL, 0);
    if (c)
        conn_abort(c, NULL);
    return 0;
}

static int transport_is_closing(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    lua_pushboolean(L, !c || conn_is_closing(c));
    return 1;
}

int transport_push_address(lua_State *L, const union addr *a)
{
    char host[ADDR_STRLEN];
    int port = addr_host_port(a, host, sizeof host);
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 2;
}

/* A Unix socket's path, its own or its peer's ("" once closed, or for a
 * peer that never bound one, as most clients do). [-0, +1, e] */
static int push_unix_path(lua_State *L, const struct transport *t, bool peer)
{
    char path[256];
    size_t len = sizeof path;
    if (t->conn && conn_unix_path(t->conn, peer, path, &len) == 0)
        lua_pushlstring(L, path, len);
    else
        lua_pushliteral(L, "");
    return 1;
}

/* An address of a transport: a Unix socket's peer by its path, others by
 * host and port. [-0, +1|2, e] */
static int push_peer(lua_State *L, const struct transport *t, const union addr *a)
{
    if (a->sa.sa_family == AF_UNIX)
        return push_unix_path(L, t, true);
    if (a->sa.sa_family == AF_UNSPEC)
        return 1; /* the default */
    return transport_push_address(L, a);
}

/* {pid=, uid=, gid=} of a Unix socket's peer, as the kernel gave them. [-0, +1, e] */
static int push_credentials(lua_State *L, const union addr *a)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, a->local.pid);
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, a->local.uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, a->local.gid);
    lua_setfield(L, -2, "gid");
    return 1;
}

/* get_extra_info(name [, default]): "peername" -> host, port (a Unix
 * socket's peer: its path, often ""); "socket_peername" (the load balancer
 * behind --proxy-protocol, else the same); "sockname"; "peercred" -> {pid,
 * uid, gid} (Unix sockets); "listener"; "server"; "generation" (of the
 * script serving it, for hot swap); "worker". The peers are known for the
 * transport's whole life; "sockname" until close() or abort(); the others
 * until connection_lost has returned. */
static int transport_get_extra_info(lua_State *L)
{
    struct transport *t = check_transport(L);
    struct conn *c = t->conn;
    const char *name = luaL_checkstring(L, 2);
    lua_settop(L, 3); /* the default, nil when absent */
    union addr a;
    if (strcmp(name, "peername") == 0)
        return push_peer(L, t, &t->peer);
    if (strcmp(name, "socket_peername") == 0)
        return push_peer(L, t, &t->socket_peer);
    if (strcmp(name, "peercred") == 0 && t->socket_peer.sa.sa_family == AF_UNIX)
        return push_credentials(L, &t->socket_peer);
    if (c && strcmp(name, "sockname") == 0 && !conn_is_closing(c)) {
        if (conn_is_unix(c))
            return push_unix_path(L, t, false);
        if (conn_sockname(c, &a) == 0)
            return transport_push_address(L, &a);
    }
    if (c && strcmp(name, "worker") == 0) {
        lua_pushinteger(L, runtime_context(L)->worker_id);
        return 1;
    }
    if (t->info && strcmp(name, "generation") == 0) {
        lua_pushinteger(L, t->info->generation);
        return 1;
    }
    if (t->info && strcmp(name, "listener") == 0 && t->info->listener) {
        lua_pushstring(L, t->info->listener);
        return 1;
    }
    if (strcmp(name, "tls") == 0)
        return tls_script_push_info(L, c);
    if (t->info && strcmp(name, "server") == 0 && t->info->server_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->info->server_ref);
        return 1;
    }
    return 1;
}

static void (*tls_started_hook)(struct conn *c);

void transport_on_tls_started(void (*fn)(struct conn *c))
{
    tls_started_hook = fn;
}

static void tls_done(struct conn *c, const char *error, void *arg)
{
    (void)arg;
    if (!error && tls_started_hook)
        tls_started_hook(c); /* a failure ends the connection: connection_lost(err) says why */
}

/* The SSL of a server-side start_tls: the given certificate, else the --tls-cert pairs. [-0, +0, e] */
static SSL *server_ssl(lua_State *L, struct tls_server **server)
{
    const char *cert = NULL, *key = NULL;
    if (lua_istable(L, 2)) {
        cert = (lua_getfield(L, 2, "cert"), lua_tostring(L, -1));
        key = (lua_getfield(L, 2, "key"), lua_tostring(L, -1));
        lua_pop(L, 2); /* the options table keeps the strings */
    }
    if ((cert == NULL) != (key == NULL))
        luaL_error(L, "start_tls(): give opts.cert and opts.key together (PEM files)");
    *server = cert ? tls_script_server(L, cert, key) : runtime_context(L)->tls;
    if (!*server)
        luaL_error(L, "start_tls(): no certificate: give {cert = FILE, key = FILE}, or serve a TLS listener "
                      "with --tls-cert and --tls-key");
    return tls_server_ssl(*server);
}

/* The SSL of a client-side start_tls (a connection the script opened). [-0, +0, e] */
static SSL *client_ssl(lua_State *L)
{
    if (!lua_istable(L, 2)) {
        lua_newtable(L);
        lua_replace(L, 2);
    }
    struct tls_client *client = tls_script_client(L, 2);
    lua_getfield(L, 2, "server_hostname");
    const char *host = lua_tostring(L, -1);
    SSL *ssl = tls_client_ssl(client, host);
    lua_pop(L, 1);
    return ssl;
}

/* start_tls([opts [, early]]): a TLS handshake on a plain connection,
 * from now on. 'early': bytes the script was given already that belong
 * to the TLS stream (what followed STARTTLS in the same read); they go to
 * the handshake first, on the next loop turn. */
static int transport_start_tls(lua_State *L)
{
    struct transport *t = check_transport(L);
    struct conn *c = t->conn;
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    size_t early_len = 0;
    const char *early = luaL_optlstring(L, 3, "", &early_len);
    lua_settop(L, 3);
    if (!c || conn_is_closing(c))
        return luaL_error(L, "start_tls(): the connection is closed");
    if (tls_filter_active(c))
        return luaL_error(L, "start_tls(): the connection uses TLS already");
    bool accepted = t->info && t->info->listener;
    struct tls_server *server = NULL;
    SSL *ssl = accepted ? server_ssl(L, &server) : client_ssl(L);
    uint64_t timeout = runtime_context(L)->tls_timeout_ms;
    if (tls_filter_start(c, ssl, server, timeout ? timeout : LUAECHO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS, tls_done,
                         NULL) != 0 ||
        (early_len > 0 && conn_unread(c, early, early_len) != 0)) {
        conn_abort(c, "out of memory starting TLS");
        return luaL_error(L, "start_tls(): out of memory");
    }
    return 0;
}

static int transport_pause_reading(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    if (c)
        conn_pause_reading(c);
    return 0;
}

static int transport_resume_reading(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    if (c)
        conn_resume_reading(c);
    return 0;
}

static int transport_is_reading(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    lua_pushboolean(L, c && conn_is_reading(c));
    return 1;
}

static int transport_get_write_buffer_size(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    lua_pushinteger(L, c ? (lua_Integer)conn_write_buffer_size(c) : 0);
    return 1;
}

/* Argument 'arg' of set_write_buffer_limits: nil (-1), or an integer mark
 * in 0..CONN_MAX_WATER; anything else raises, as asyncio's ValueError. */
static lua_Integer check_mark(lua_State *L, int arg, const char *name)
{
    if (lua_isnoneornil(L, arg))
        return -1;
    lua_Integer mark = luaL_checkinteger(L, arg);
    if (mark < 0 || mark > CONN_MAX_WATER)
        luaL_error(L, "transport:set_write_buffer_limits(): %s must be between 0 and %I bytes, not %I", name,
                   (lua_Integer)CONN_MAX_WATER, mark);
    return mark;
}

void transport_check_write_limits(lua_State *L, size_t *high_out, size_t *low_out)
{
    lua_Integer high = check_mark(L, 2, "high");
    lua_Integer low = check_mark(L, 3, "low");
    if (high < 0)
        high = low < 0 ? CONN_DEFAULT_HIGH_WATER : low > CONN_MAX_WATER / 4 ? CONN_MAX_WATER : 4 * low;
    if (low < 0)
        low = high / 4;
    if (low > high)
        luaL_error(L, "transport:set_write_buffer_limits(): high (%I) must be >= low (%I) >= 0", high, low);
    *high_out = (size_t)high;
    *low_out = (size_t)low;
}

static int transport_set_write_buffer_limits(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    size_t high, low;
    transport_check_write_limits(L, &high, &low);
    if (c && !conn_is_closing(c))
        conn_set_write_limits(c, high, low);
    return 0;
}

/* get_write_buffer_limits() -> low, high, in asyncio's order. */
static int transport_get_write_buffer_limits(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    size_t high = CONN_DEFAULT_HIGH_WATER, low = CONN_DEFAULT_HIGH_WATER / 4;
    if (c)
        conn_get_write_limits(c, &high, &low);
    lua_pushinteger(L, (lua_Integer)low);
    lua_pushinteger(L, (lua_Integer)high);
    return 2;
}

static int transport_tostring(lua_State *L)
{
    struct conn *c = check_transport(L)->conn;
    char peer[ADDR_STRLEN];
    if (c)
        lua_pushfstring(L, "luaecho.transport (%s%s)", addr_format(conn_peer(c), peer, sizeof peer),
                        conn_is_closing(c) ? ", closing" : "");
    else
        lua_pushliteral(L, "luaecho.transport (closed)");
    return 1;
}

static const luaL_Reg transport_methods[] = {
    {"write", transport_write},
    {"writelines", transport_writelines},
    {"write_eof", transport_write_eof},
    {"can_write_eof", transport_can_write_eof},
    {"close", transport_close},
    {"abort", transport_abort},
    {"is_closing", transport_is_closing},
    {"get_extra_info", transport_get_extra_info},
    {"start_tls", transport_start_tls},
    {"pause_reading", transport_pause_reading},
    {"resume_reading", transport_resume_reading},
    {"is_reading", transport_is_reading},
    {"get_write_buffer_size", transport_get_write_buffer_size},
    {"set_write_buffer_limits", transport_set_write_buffer_limits},
    {"get_write_buffer_limits", transport_get_write_buffer_limits},
    {NULL, NULL},
};

void transport_register(lua_State *L)
{
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
    lua_class_register(L, TRANSPORT_METATABLE, transport_methods, transport_tostring);
}

struct transport *transport_new(lua_State *L, struct conn *c, const struct transport_info *info)
{
    struct transport *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->conn = c;
    t->info = info;
    t->peer = *conn_peer(c);
    if (conn_socket_peer(c, &t->socket_peer) != 0) /* a peer gone already: its header's is what we have */
        t->socket_peer = t->peer;
    luaL_setmetatable(L, TRANSPORT_METATABLE);
    return t;
}
