/*
 * server.c - one listening TCP socket.
 * Accepted connections join the host's list (so shutdown reaches them) and
 * are bound to this server's Protocol. The struct lives until the host is
 * destroyed, so the Lua server object may outlive close().
 */
#define _GNU_SOURCE /* SO_REUSEPORT, SOCK_NONBLOCK */
#include "server.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "server_object.h"

#define LISTEN_BACKLOG 1024

struct server *server_new(struct host *h, lua_State *L)
{
    struct protocol_class protocol;
    protocol_class_init(L, &protocol); /* may raise: nothing allocated yet */
    struct server *s = calloc(1, sizeof *s);
    if (!s) {
        protocol_class_release(L, &protocol);
        luaL_error(L, "out of memory creating a server");
    }
    s->protocol = protocol;
    s->host = h;
    s->object_ref = LUA_NOREF;
    s->waiters_ref = LUA_NOREF;
    s->closed = true; /* until it listens */
    uv_tcp_init(&h->loop, &s->listener);
    s->listener.data = s;
    s->next = h->servers;
    h->servers = s;
    return s;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *s = listener->data;
    struct host *h = s->host;
    if (status < 0) {
        log_limited(&h->rates.accept_error, LOG_WARN, "cannot accept a connection: %s%s", uv_strerror(status),
                    status == UV_EMFILE || status == UV_ENFILE ? " (out of file descriptors: lower "
                                                                 "--max-connections or raise ulimit -n)" : "");
        return;
    }
    bool refuse = host_refuse_connection(h);
    struct conn *c = conn_new(&h->loop, &h->conns, &protocol_events, protocol_conn_size);
    if (!c) {
        if (!refuse)
            host_connection_ended(h);
        log_limited(&h->rates.accept_error, LOG_ERROR, "out of memory accepting a connection");
        return;
    }
    protocol_attach(c, h->L, refuse ? NULL : s);
    int rc = conn_accept(c, listener);
    if (rc != 0 || refuse) {
        if (rc != 0)
            log_limited(&h->rates.accept_error, LOG_WARN, "cannot accept a connection: %s", uv_strerror(rc));
        conn_abort(c, NULL); /* no instance: nothing reaches Lua */
        return;
    }
    protocol_connection_made(c, &s->protocol);
}

/* A socket of the address's family with SO_REUSEPORT set, for the listener. */
static int open_reuseport_socket(struct server *s, const union addr *addr)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    int rc = uv_tcp_open(&s->listener, fd);
    if (rc != 0)
        close(fd);
    return rc;
}

int server_listen(struct server *s, const union addr *addr, bool reuseport)
{
    int rc = reuseport ? open_reuseport_socket(s, addr) : 0;
    if (rc == 0)
        rc = uv_tcp_bind(&s->listener, &addr->sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc == 0)
        s->closed = false;
    return rc;
}

int server_sockname(const struct server *s, union addr *out)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    return rc != 0 ? rc : addr_from_sockaddr(out, (struct sockaddr *)&ss);
}

bool server_is_finished(const struct server *s)
{
    return s->closed && s->connections == 0;
}

void server_close(struct server *s)
{
    bool was_open = !s->closed;
    s->closed = true;
    if (was_open && s->on_close)
        s->on_close(s);
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
    if (server_is_finished(s))
        server_object_notify_finished(s->host->L, s);
}

void server_connection_added(struct server *s)
{
    s->connections++;
}

void server_connection_removed(struct server *s)
{
    s->connections--;
    host_connection_ended(s->host);
    if (server_is_finished(s))
        server_object_notify_finished(s->host->L, s);
}

void server_free(struct server *s)
{
    free(s);
}
