/*
 * server.c - one listening stream socket, TCP or Unix (accept4 serves both).
 * Accepted connections join the loop's list (so shutdown reaches them) and
 * are bound to this server's Protocol. The process-wide count of accepted
 * connections (--max-connections) goes up here at accept and comes down
 * here when one ends. The struct lives until teardown, so the Lua server
 * object may outlive close().
 */
#define _GNU_SOURCE /* SO_REUSEPORT, SOCK_NONBLOCK */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "generations.h"
#include "log.h"

#define LISTEN_BACKLOG 1024
#define ACCEPT_BATCH 64     /* accepts per wake-up, so other work runs too */
#define ACCEPT_RETRY_MS 100 /* pause after running out of descriptors */

/* Process-wide: at most one line a second per kind, whichever worker logs. */
static struct log_rate accept_rate, descriptors_rate, max_connections_rate;

static void connection_lost(void *data, enum stats_end why);
static void proxy_ready(struct conn *c, void *data);
static void tls_ready(struct conn *c, void *data);

struct server *server_new(struct loop_context *ctx, lua_State *L)
{
    struct protocol_class protocol;
    protocol_class_init(L, &protocol); /* may raise: nothing allocated yet */
    struct server *s = calloc(1, sizeof *s);
    if (!s) {
        protocol_class_release(L, &protocol);
        luaL_error(L, "out of memory creating a server");
    }
    s->protocol = protocol;
    s->previous = (struct protocol_class){.table_ref = LUA_NOREF, .meta_ref = LUA_NOREF};
    s->ctx = ctx;
    s->fd = -1;
    s->stats = &ctx->stats->listeners[STATS_SCRIPT_LISTENER];
    s->owner = (struct protocol_owner){.server_ref = LUA_NOREF, .listener = s->listener, .lost = connection_lost,
                                       .data = s};
    s->proxy_owner = (struct proxy_wait_owner){.ready = proxy_ready, .lost = connection_lost, .data = s};
    s->tls_owner = (struct tls_accept_owner){.ready = tls_ready, .lost = connection_lost, .data = s};
    s->closed = true; /* until it listens */
    uv_timer_init(ctx->loop, &s->retry);
    s->retry.data = s;
    s->next = ctx->servers->head;
    ctx->servers->head = s;
    return s;
}

void server_count_as(struct server *s, int listener)
{
    s->stats = &s->ctx->stats->listeners[listener];
}

void server_set_object(struct server *s, int ref)
{
    s->owner.server_ref = ref;
}

void server_set_protocol(struct server *s, const struct protocol_class *cls)
{
    int generation = s->protocol.generation + 1;
    protocol_class_release(s->ctx->L, &s->protocol);
    s->protocol = *cls;
    s->protocol.generation = generation;
}

void server_start_canary(struct server *s, const struct protocol_class *cls)
{
    if (s->previous.table_ref == LUA_NOREF) {
        s->previous = s->protocol; /* its references move, nothing to release */
        s->protocol.table_ref = s->protocol.meta_ref = LUA_NOREF;
    }
    server_set_protocol(s, cls);
}

void server_end_canary(struct server *s)
{
    protocol_class_release(s->ctx->L, &s->previous);
}

/* The class a new connection gets: the newest, but during a canary window
 * only its share, and none once it was rolled back. */
static struct protocol_class *class_for_new(struct server *s)
{
    if (s->previous.table_ref != LUA_NOREF && !generations_serve_newest(s->protocol.generation))
        return &s->previous;
    return &s->protocol;
}

void server_use_tls(struct server *s, struct tls_server *tls, uint64_t timeout_ms)
{
    tls_server_free(s->tls);
    s->tls = tls ? tls_server_ref(tls) : NULL;
    s->tls_timeout_ms = timeout_ms;
}

void server_expect_proxy(struct server *s, uint64_t timeout_ms)
{
    s->proxy_timeout_ms = timeout_ms;
}

const char *server_listener(const struct server *s)
{
    return s->listener;
}

void server_set_on_close(struct server *s, void (*fn)(struct server *s, void *data), void *data)
{
    s->on_close = fn;
    s->on_close_data = data;
}

void server_set_on_finished(struct server *s, void (*fn)(struct server *s, void *data), void *data)
{
    s->on_finished = fn;
    s->on_finished_data = data;
}

void server_set_hand_off(struct server *s, bool (*fn)(struct server *s, int fd, void *data), void *data)
{
    s->hand_off = fn;
    s->hand_off_data = data;
}

/* Count one more accepted connection, or refuse it (and log the refusal)
 * when it would pass --max-connections, which counts the whole process. */
static bool admit(struct server *s)
{
    struct loop_context *ctx = s->ctx;
    size_t open = atomic_fetch_add(ctx->accepted, 1);
    if (ctx->max_connections == 0 || open < ctx->max_connections)
        return true;
    atomic_fetch_sub(ctx->accepted, 1);
    stat_add(&ctx->stats->limits_hit[LIMIT_MAX_CONNECTIONS], 1);
    log_limited_with(&max_connections_rate, LOG_WARN, &(struct log_fields){.listener = s->listener},
                "connection limit reached (%zu open, --max-connections %zu): refusing new connections", open,
                ctx->max_connections);
    return false;
}

static void notify_if_finished(struct server *s)
{
    if (server_is_finished(s) && s->on_finished)
        s->on_finished(s, s->on_finished_data);
}

/* One of its connections has ended (connection_lost has returned). */
static void connection_lost(void *data, enum stats_end why)
{
    struct server *s = data;
    s->connections--;
    stat_sub(&s->stats->open, 1);
    stat_add(&s->stats->ended[why], 1);
    atomic_fetch_sub(s->ctx->accepted, 1);
    notify_if_finished(s);
}

/* Its handshake done: serve it. */
static void tls_ready(struct conn *c, void *data)
{
    struct server *s = data;
    conn_set_events(c, &protocol_events);
    protocol_attach(c, s->ctx->L, &s->owner);
    protocol_connection_made(c, class_for_new(s));
}

/* Its PROXY header read: serve the connection as if just accepted (a TLS
 * listener's shakes hands first). */
static void proxy_ready(struct conn *c, void *data)
{
    struct server *s = data;
    if (s->tls) {
        tls_accept_attach(c, &s->tls_owner);
        if (tls_accept_start(c, s->tls, s->tls_timeout_ms) != 0)
            conn_abort(c, "out of memory starting TLS");
        return;
    }
    conn_set_events(c, &protocol_events);
    protocol_attach(c, s->ctx->L, &s->owner);
    protocol_connection_made(c, class_for_new(s));
}

/* The conn's owner data: the binding, or the PROXY stage before it. */
static size_t conn_data_size(void)
{
    size_t size = protocol_conn_size > proxy_wait_conn_size ? protocol_conn_size : proxy_wait_conn_size;
    return size > tls_accept_conn_size ? size : tls_accept_conn_size;
}

/* Serve one accepted socket, or close it at once over --max-connections. */
static void accept_one(struct server *s, int fd, const struct sockaddr *peer)
{
    struct loop_context *ctx = s->ctx;
    bool admitted = admit(s);
    bool proxied = admitted && s->proxy_timeout_ms > 0;
    bool tls = admitted && !proxied && s->tls; /* behind a PROXY header, TLS starts after it */
    struct conn *c = conn_new(ctx->loop, ctx->conns,
                              proxied ? &proxy_wait_events : tls ? &tls_accept_events : &protocol_events,
                              conn_data_size(), s->kind);
    if (!c) {
        if (admitted)
            atomic_fetch_sub(ctx->accepted, 1);
        close(fd);
        log_limited(&accept_rate, LOG_ERROR, "out of memory accepting a connection");
        return;
    }
    if (proxied)
        proxy_wait_attach(c, &s->proxy_owner); /* counted from here on */
    else if (tls)
        tls_accept_attach(c, &s->tls_owner);
    else
        protocol_attach(c, ctx->L, admitted ? &s->owner : NULL); /* counted from here on */
    if (admitted) {
        s->connections++;
        stat_add(&s->stats->accepted, 1);
        stat_add(&s->stats->open, 1);
    }
    int rc = conn_open(c, fd, peer);
    if (rc != 0) {
        close(fd); /* not the conn's */
        log_limited(&accept_rate, LOG_WARN, "cannot accept a connection: %s", uv_strerror(rc));
    } else if (proxied && (rc = proxy_wait_start(c, s->proxy_timeout_ms)) != 0) {
        log_limited(&accept_rate, LOG_ERROR, "out of memory accepting a connection");
    } else if (tls && (rc = tls_accept_start(c, s->tls, s->tls_timeout_ms)) != 0) {
        log_limited(&accept_rate, LOG_ERROR, "out of memory accepting a connection");
    }
    if (rc != 0 || !admitted) {
        conn_abort(c, NULL); /* no instance: nothing reaches Lua */
        return;
    }
    if (!proxied && !tls)
        protocol_connection_made(c, class_for_new(s));
}

static void on_acceptable(uv_poll_t *poll, int status, int events);

static void on_retry(uv_timer_t *timer)
{
    struct server *s = timer->data;
    if (!s->closed)
        uv_poll_start(&s->poll, UV_READABLE, on_acceptable);
}

/* Out of descriptors: stop accepting for a moment rather than spin on
 * accept(); pending clients wait in the kernel's backlog meanwhile. */
static void pause_accepting(struct server *s, int err)
{
    uv_poll_stop(&s->poll);
    uv_timer_start(&s->retry, on_retry, ACCEPT_RETRY_MS, 0);
    stat_add(&s->ctx->stats->limits_hit[LIMIT_DESCRIPTORS], 1);
    log_limited(&descriptors_rate, LOG_WARN,
                "out of file descriptors (%s) with %zu connection(s) open: not accepting for %d ms "
                "(raise ulimit -n, or lower --max-connections)",
                strerror(err), s->ctx->conns->count, ACCEPT_RETRY_MS);
}

/* The listening socket is readable: accept a batch, then let others run. */
static void on_acceptable(uv_poll_t *poll, int status, int events)
{
    struct server *s = poll->data;
    (void)events;
    if (status < 0) {
        log_limited(&accept_rate, LOG_WARN, "cannot accept a connection: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !s->closed; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(s->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (!s->hand_off || !s->hand_off(s, fd, s->hand_off_data))
                accept_one(s, fd, (struct sockaddr *)&peer);
        } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            pause_accepting(s, errno);
            return;
        } else if (errno != EINTR && errno != ECONNABORTED) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_limited(&accept_rate, LOG_WARN, "cannot accept a connection: %s", strerror(errno));
            return;
        }
    }
}

/* A listening socket: SO_REUSEADDR (a restart need not wait for TIME_WAIT),
 * and SO_REUSEPORT when workers share the address. */
static int open_listener(const union addr *addr, bool reuseport, int *out)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int on = 1;
    socklen_t len = addr->sa.sa_family == AF_INET6 ? sizeof addr->in6 : sizeof addr->in;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
        bind(fd, &addr->sa, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int server_listen_fd(struct server *s, int fd, enum conn_kind kind, const char *listener, bool owned)
{
    s->fd = fd;
    s->owns_fd = owned;
    s->kind = kind;
    snprintf(s->listener, sizeof s->listener, "%s", listener);
    int rc = uv_poll_init_socket(s->ctx->loop, &s->poll, s->fd);
    if (rc != 0)
        return rc;
    s->poll.data = s;
    s->polling = true;
    rc = uv_poll_start(&s->poll, UV_READABLE, on_acceptable);
    if (rc == 0)
        s->closed = false;
    return rc;
}

int server_listen(struct server *s, const union addr *addr, bool reuseport)
{
    int fd = -1; /* set when open_listener succeeds (gcc -O2 cannot tell) */
    int rc = open_listener(addr, reuseport, &fd);
    if (rc != 0)
        return rc;
    union addr real;
    char listener[ADDR_STRLEN];
    s->fd = fd; /* for server_sockname */
    if (server_sockname(s, &real) != 0)
        real = *addr;
    return server_listen_fd(s, fd, CONN_TCP, addr_format(&real, listener, sizeof listener), true);
}

/* Does the kernel list a listening socket bound to 'path' (Linux's
 * /proc/net/unix, flag __SO_ACCEPTCON)? Asking there, rather than
 * connecting, shows no phantom connection to the server that owns it. */
static bool listed_as_listening(const char *path)
{
    FILE *f = fopen("/proc/net/unix", "r");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long flags;
        int end = 0;
        if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %n", &flags, &end) < 1 || end == 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        found = (flags & 0x10000) && strcmp(line + end, path) == 0;
    }
    fclose(f);
    return found;
}

/* Is a process listening on the Unix socket at 'path'? A socket file that
 * refuses connections was left by a process that is gone. */
static bool unix_socket_live(const struct sockaddr_un *sun)
{
    if (listed_as_listening(sun->sun_path))
        return true;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: touch nothing */
    bool live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0 || errno != ECONNREFUSED;
    close(fd);
    return live;
}

int server_open_unix(const char *path, int mode, int *out)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path)
        return UV_ENAMETOOLONG;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return UV_EEXIST;
        if (unix_socket_live(&sun))
            return UV_EADDRINUSE;
        unlink(path); /* left by a process that is gone */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    /* Before listen(): nobody can connect while the mode is still the umask's. */
    if ((mode >= 0 && chmod(path, (mode_t)mode) != 0) || listen(fd, LISTEN_BACKLOG) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        unlink(path);
        return rc;
    }
    *out = fd;
    return 0;
}

const char *server_unix_hint(int rc)
{
    if (rc == UV_EADDRINUSE)
        return " (another process is listening on it; stop it first, it is not removed)";
    if (rc == UV_EEXIST)
        return " (the path exists and is not a socket)";
    if (rc == UV_ENAMETOOLONG)
        return " (a Unix socket path has at most 107 bytes)";
    return "";
}

int server_listen_unix(struct server *s, const char *path, int mode)
{
    int fd;
    int rc = server_open_unix(path, mode, &fd);
    if (rc != 0)
        return rc;
    char listener[SERVER_LISTENER_STRLEN];
    snprintf(listener, sizeof listener, "unix:%s", path);
    struct stat st;
    if (lstat(path, &st) == 0) { /* else nothing to remove later: it is gone already */
        s->unlink_path = true;
        s->path_dev = st.st_dev;
        s->path_ino = st.st_ino;
    }
    return server_listen_fd(s, fd, CONN_UNIX, listener, true);
}

bool server_reuseport_works(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    bool works = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0;
    if (fd >= 0)
        close(fd);
    return works;
}

void server_adopt(struct server *s, int fd)
{
    if (s->closed)
        close(fd);
    else
        accept_one(s, fd, NULL); /* handed over: the socket knows its peer */
}

void server_open_without_socket(struct server *s, const char *listener)
{
    snprintf(s->listener, sizeof s->listener, "%s", listener);
    s->closed = false;
}

int server_check_free(const union addr *addr)
{
    int fd = -1;
    int rc = open_listener(addr, false, &fd);
    if (rc == 0)
        close(fd);
    return rc;
}

int server_sockname(const struct server *s, union addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (s->fd < 0)
        return UV_EBADF;
    if (getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0)
        return uv_translate_sys_error(errno);
    return addr_from_sockaddr(out, (struct sockaddr *)&ss);
}

/* Close the listening socket and its handles; the struct stays. */
static void stop_listening(struct server *s)
{
    if (s->polling) {
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *)&s->poll, NULL);
        s->polling = false;
    }
    if (s->fd >= 0 && s->owns_fd)
        close(s->fd); /* no longer polled: safe to close */
    s->fd = -1;
    struct stat st;
    const char *path = s->listener + strlen("unix:");
    if (s->unlink_path && lstat(path, &st) == 0 && st.st_dev == s->path_dev && st.st_ino == s->path_ino)
        unlink(path); /* still ours: not a socket another process has put there since */
    s->unlink_path = false;
    if (!uv_is_closing((uv_handle_t *)&s->retry))
        uv_close((uv_handle_t *)&s->retry, NULL);
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
        s->on_close(s, s->on_close_data);
    stop_listening(s);
    notify_if_finished(s);
}

void server_close_all(struct server_list *list)
{
    for (struct server *s = list->head; s; s = s->next)
        server_close(s);
}

void server_free_all(struct server_list *list)
{
    while (list->head) {
        struct server *next = list->head->next;
        tls_server_free(list->head->tls);
        free(list->head);
        list->head = next;
    }
}
