/*
 * datagram_transport.c - the transport Lua holds for a UDP endpoint
 * ("luaecho.datagram_transport", asyncio's DatagramTransport): sendto(),
 * close(), abort(), is_closing(), get_extra_info(), the write buffer's size
 * and marks, and its __tostring.
 * Relies on datagram.c for the endpoint (through datagram_private.h) and on
 * transport.c for reading write marks and pushing addresses as the stream
 * transport does.
 * Rule: the box outlives its endpoint (datagram.c clears box->endpoint when
 * it frees it), so every method checks for that: each then either raises
 * "datagram transport is closed" or is a no-op, and none raises once it has
 * started sending.
 */
#include "datagram.h"
#include "datagram_private.h"

#include <lauxlib.h>
#include <string.h>

#include "lua_class.h"
#include "runtime.h"
#include "transport.h"

static struct datagram_box *check_box(lua_State *L)
{
    return lua_class_check(L, DATAGRAM_TRANSPORT_METATABLE);
}

/* The endpoint, or a Lua error naming the method once it is closing or gone. */
static struct endpoint *check_open(lua_State *L, const char *method)
{
    struct endpoint *e = check_box(L)->endpoint;
    if (!e || e->closing)
        luaL_error(L, "transport:%s(): datagram transport is closed", method);
    return e;
}

/* An IP literal and a port at 'idx', 'idx' + 1 into 'out'. [-0, +0, e] */
static void check_address(lua_State *L, int idx, union addr *out)
{
    const char *host = luaL_checkstring(L, idx);
    lua_Integer port = luaL_checkinteger(L, idx + 1);
    if (port < 1 || port > 65535)
        luaL_error(L, "transport:sendto(): port must be 1 to 65535, not %I", port);
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, (int)port, &out->in) != 0 && uv_ip6_addr(host, (int)port, &out->in6) != 0)
        luaL_error(L, "transport:sendto(): host must be an IP address, not '%s'", host);
}

static bool same_address(const union addr *a, const union addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return a->in6.sin6_port == b->in6.sin6_port &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof a->in6.sin6_addr) == 0;
}

/* sendto(data [, host, port]): host an IP literal (no lookup per datagram).
 * A connected endpoint sends to its remote (an address given must be that
 * one). Send errors go to error_received, as asyncio's. */
static int dgram_sendto(lua_State *L)
{
    struct endpoint *e = check_open(L, "sendto");
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    union addr to;
    bool addressed = !lua_isnoneornil(L, 3) || !lua_isnoneornil(L, 4);
    if (addressed)
        check_address(L, 3, &to);
    char remote[ADDR_STRLEN];
    if (e->connected && addressed && !same_address(&to, &e->remote))
        return luaL_error(L, "transport:sendto(): the endpoint is connected to %s: send without host and port",
                          addr_format(&e->remote, remote, sizeof remote));
    if (!e->connected && !addressed)
        return luaL_error(L, "transport:sendto(): the endpoint has no remote address: give host and port");
    /* Nothing raises from here on. */
    int rc = endpoint_send(e, data, len, e->connected ? NULL : &to);
    if (rc != 0)
        endpoint_dispatch(e, EV_ERROR, uv_strerror(rc));
    endpoint_report_pause(e);
    return 0;
}

static int dgram_close(lua_State *L)
{
    struct endpoint *e = check_box(L)->endpoint;
    if (e)
        endpoint_close(e);
    return 0;
}

static int dgram_abort(lua_State *L)
{
    struct endpoint *e = check_box(L)->endpoint;
    if (e)
        endpoint_abort(e, NULL);
    return 0;
}

static int dgram_is_closing(lua_State *L)
{
    struct endpoint *e = check_box(L)->endpoint;
    lua_pushboolean(L, !e || e->closing);
    return 1;
}

static int dgram_get_write_buffer_size(lua_State *L)
{
    struct endpoint *e = check_box(L)->endpoint;
    lua_pushinteger(L, e && !uv_is_closing((uv_handle_t *)&e->udp) ? (lua_Integer)e->udp.send_queue_size : 0);
    return 1;
}

/* set_write_buffer_limits([high [, low]]), read as transport.c reads it. */
static int dgram_set_write_buffer_limits(lua_State *L)
{
    struct endpoint *e = check_box(L)->endpoint;
    size_t high, low;
    transport_check_write_limits(L, &high, &low);
    if (e && !e->closing) {
        e->high_water = high;
        e->low_water = low;
        endpoint_check_high_water(e);
        endpoint_report_pause(e);
    }
    return 0;
}

/* get_write_buffer_limits() -> low, high, in asyncio's order. */
static int dgram_get_write_buffer_limits(lua_State *L)
{
    struct endpoint *e = check_box(L)->endpoint;
    lua_pushinteger(L, (lua_Integer)(e ? e->low_water : CONN_DEFAULT_HIGH_WATER / 4));
    lua_pushinteger(L, (lua_Integer)(e ? e->high_water : CONN_DEFAULT_HIGH_WATER));
    return 2;
}

/* get_extra_info(name [, default]): "sockname" -> host, port (until close);
 * "peername" -> host, port of a connected endpoint; "listener" (the spec it
 * serves, when a listener made it); "worker"; "generation". */
static int dgram_get_extra_info(lua_State *L)
{
    struct datagram_box *box = check_box(L);
    struct endpoint *e = box->endpoint;
    const char *name = luaL_checkstring(L, 2);
    lua_settop(L, 3); /* the default, nil when absent */
    union addr a;
    if (strcmp(name, "peername") == 0 && box->connected)
        return transport_push_address(L, &box->remote);
    if (!e)
        return 1;
    if (strcmp(name, "sockname") == 0 && !uv_is_closing((uv_handle_t *)&e->udp) && endpoint_sockname(e, &a) == 0)
        return transport_push_address(L, &a);
    if (strcmp(name, "listener") == 0 && e->listener) {
        lua_pushstring(L, e->listener);
        return 1;
    }
    if (strcmp(name, "worker") == 0) {
        lua_pushinteger(L, runtime_context(L)->worker_id);
        return 1;
    }
    if (strcmp(name, "generation") == 0) {
        lua_pushinteger(L, e->generation);
        return 1;
    }
    return 1;
}

static int dgram_tostring(lua_State *L)
{
    struct datagram_box *box = check_box(L);
    struct endpoint *e = box->endpoint;
    if (!e) {
        lua_pushliteral(L, "luaecho.datagram_transport (closed)");
        return 1;
    }
    union addr a;
    char local[ADDR_STRLEN] = "unbound", remote[ADDR_STRLEN + 4] = "";
    if (!uv_is_closing((uv_handle_t *)&e->udp) && endpoint_sockname(e, &a) == 0)
        addr_format(&a, local, sizeof local);
    if (e->connected) {
        char peer[ADDR_STRLEN];
        snprintf(remote, sizeof remote, " -> %s", addr_format(&e->remote, peer, sizeof peer));
    }
    lua_pushfstring(L, "luaecho.datagram_transport (udp %s%s%s)", local, remote, e->closing ? ", closing" : "");
    return 1;
}

static const luaL_Reg datagram_methods[] = {
    {"sendto", dgram_sendto},
    {"close", dgram_close},
    {"abort", dgram_abort},
    {"is_closing", dgram_is_closing},
    {"get_extra_info", dgram_get_extra_info},
    {"get_write_buffer_size", dgram_get_write_buffer_size},
    {"set_write_buffer_limits", dgram_set_write_buffer_limits},
    {"get_write_buffer_limits", dgram_get_write_buffer_limits},
    {NULL, NULL},
};

void datagram_register(lua_State *L)
{
    lua_class_register(L, DATAGRAM_TRANSPORT_METATABLE, datagram_methods, dgram_tostring);
}
