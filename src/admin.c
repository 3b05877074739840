/*
 * admin.c - see admin.h. The console's listening socket and its sessions,
 * on the coordinator's loop. Relies on admin_command.c to parse a line, on
 * server.c to open a Unix socket (a stale file replaced, a live one
 * refused), on addr.c to resolve a TCP address, and on the coordinator's
 * admin_ops for every command but help and quit.
 * Rules: nothing here blocks (an answer is queued, never waited for). A
 * session has at most one request out; the request finds its session
 * through a pointer the session clears when it closes, so an answer that
 * comes after the session has gone is dropped. Memory goes in close
 * callbacks only.
 */
#include "admin.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "admin_command.h"
#include "server.h"

/* Sessions serving commands at once; one more is told so and closed. */
#define SESSIONS_MAX 16
/* Sessions of any state (closing, refused): past this, closed unanswered. */
#define SESSIONS_HELD_MAX 64
/* After our side is shut down, how long the client's last bytes are read
 * and dropped: closing with unread bytes would send a reset that can
 * overtake the error line written just before. */
#define LINGER_MS 2000
/* Answers not yet taken by the kernel past which no more commands are
 * read: a client that sends and never reads cannot grow our memory. */
#define WRITE_QUEUE_MAX (256 * 1024)
/* Out of memory for a session: accept again after this. */
#define ACCEPT_RETRY_MS 100
#define BACKLOG 16

#define HELP_TEXT                                                                                       \
    "help                 this list\n"                                                                \
    "show info            version, pid, uptime, workers, listeners, generation, connections, limits\n" \
    "show conns           one row per open connection\n"                                              \
    "show errors          the last callback errors (at most 50), oldest first, with tracebacks\n"     \
    "show generations     each load of the script: loaded at, state, connections, errors\n"           \
    "kill ID              close connection ID (see show conns); its connection_lost runs\n"           \
    "reload               load the script again, as SIGHUP does\n"                                    \
    "set log-level LEVEL  error, warn, info or debug\n"                                               \
    "quit                 end this session\n"

union admin_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
};

enum session_state {
    SESSION_OPEN,      /* reading and answering commands */
    SESSION_DRAINING,  /* no more commands: the answers go out, then our side shuts down */
    SESSION_LINGERING, /* shut down: the client's last bytes dropped until its EOF */
    SESSION_CLOSED,    /* its handles are closing */
};

struct session {
    struct admin *admin;
    union admin_stream stream;
    uv_timer_t linger;
    uv_shutdown_t shutdown;
    int handles; /* open handles (stream, timer): freed at 0 */
    enum session_state state;
    bool counted;     /* one of the SESSIONS_MAX */
    bool reading;
    bool eof;         /* the client has half-closed */
    bool dispatching; /* inside an op: an answer given at once is picked up there */
    struct admin_request *pending;
    struct session *prev, *next;
    size_t len;
    char in[ADMIN_LINE_MAX + 1]; /* bytes not yet handled: at most a line and its newline */
};

struct admin_request {
    struct session *session; /* NULL once the session has closed */
};

struct admin {
    uv_loop_t *loop;
    const struct admin_ops *ops;
    void *data;
    union admin_stream listener;
    uv_timer_t retry; /* accepting paused after running out of memory */
    int handles;      /* the listener and 'retry' while open */
    bool is_unix;
    bool closing;
    bool unlink_path; /* the Unix socket file we made, removed at close if still ours */
    dev_t path_dev;
    ino_t path_ino;
    char path[LISTEN_UNIX_PATH_MAX + 1];
    int counted; /* sessions serving commands */
    int held;    /* sessions of any state */
    struct session *sessions;
};

/* An answer on its way: owns its bytes until after_write. */
struct answer {
    uv_write_t req;
    size_t len;
    char data[];
};

static void session_process(struct session *s);
static void session_close(struct session *s);

static void admin_maybe_free(struct admin *a)
{
    if (a->closing && a->handles == 0 && !a->sessions)
        free(a);
}

static void on_session_closed(uv_handle_t *h)
{
    struct session *s = h->data;
    if (--s->handles > 0)
        return;
    struct admin *a = s->admin;
    if (s->prev)
        s->prev->next = s->next;
    else
        a->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    a->held--;
    free(s);
    admin_maybe_free(a);
}

/* It no longer serves commands: its place is free for another. */
static void session_uncount(struct session *s)
{
    if (s->counted) {
        s->counted = false;
        s->admin->counted--;
    }
}

/* Close at once: bytes not yet written are dropped, a request still out
 * answers into the void. Idempotent. */
static void session_close(struct session *s)
{
    if (s->state == SESSION_CLOSED)
        return;
    session_uncount(s);
    s->state = SESSION_CLOSED;
    if (s->pending) {
        s->pending->session = NULL;
        s->pending = NULL;
    }
    uv_close(&s->stream.handle, on_session_closed);
    uv_close((uv_handle_t *)&s->linger, on_session_closed);
}

static void after_write(uv_write_t *req, int status)
{
    struct session *s = req->handle->data;
    free(req);
    if (status < 0)
        session_close(s); /* the client has gone (or UV_ECANCELED: closing already) */
    else if (s->state == SESSION_OPEN && !s->pending)
        session_process(s); /* the queue may have fallen below WRITE_QUEUE_MAX */
}

/* Queue 'w' (its len set) on the session; it is the stream's, or freed. */
static void session_send(struct session *s, struct answer *w)
{
    if (!w) {
        session_close(s); /* out of memory: nothing better to say */
        return;
    }
    if (s->state == SESSION_CLOSED) {
        free(w);
        return;
    }
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, &s->stream.stream, &buf, 1, after_write) != 0) {
        free(w);
        session_close(s);
    }
}

/* 'text' as an answer on the wire: an error is one line "error: TEXT";
 * an answer keeps its lines but the empty ones (an empty line ends an
 * answer) and ends with a newline; then the empty line. NULL: no memory. */
static struct answer *answer_new(bool ok, const char *text)
{
    size_t n = strlen(text);
    while (!ok && n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    struct answer *w = malloc(sizeof *w + n + sizeof "error: \n\n");
    if (!w)
        return NULL;
    char *out = w->data;
    size_t o = 0;
    if (!ok) {
        memcpy(out, "error: ", 7);
        o = 7;
        for (size_t i = 0; i < n; i++)
            out[o++] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
        out[o++] = '\n';
    } else {
        for (size_t i = 0; i < n; i++) {
            if (text[i] != '\n' || (o > 0 && out[o - 1] != '\n'))
                out[o++] = text[i];
        }
        if (o > 0 && out[o - 1] != '\n')
            out[o++] = '\n';
    }
    out[o++] = '\n';
    w->len = o;
    return w;
}

static void session_answer(struct session *s, bool ok, const char *text)
{
    session_send(s, answer_new(ok, text ? text : ""));
}

void admin_answer(struct admin_request *r, bool ok, const char *text)
{
    struct session *s = r->session;
    free(r);
    if (!s)
        return; /* the session closed while the command ran */
    s->pending = NULL;
    session_answer(s, ok, text);
    if (!s->dispatching)
        session_process(s); /* the lines that waited for this answer */
}

static void after_shutdown(uv_shutdown_t *req, int status);

/* No more commands: write what is queued, shut our side down, then close
 * (after lingering, unless the client has half-closed already). */
static void session_finish(struct session *s)
{
    if (s->state != SESSION_OPEN)
        return;
    session_uncount(s);
    s->state = SESSION_DRAINING;
    uv_read_stop(&s->stream.stream);
    s->reading = false;
    if (uv_shutdown(&s->shutdown, &s->stream.stream, after_shutdown) != 0)
        session_close(s);
}

static void on_linger_end(uv_timer_t *t)
{
    session_close(t->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void after_shutdown(uv_shutdown_t *req, int status)
{
    struct session *s = req->handle->data;
    if (s->state != SESSION_DRAINING)
        return; /* closed meanwhile (status is UV_ECANCELED) */
    if (status < 0 || s->eof) {
        session_close(s);
        return;
    }
    s->state = SESSION_LINGERING;
    s->len = 0;
    uv_timer_start(&s->linger, on_linger_end, LINGER_MS, 0);
    if (uv_read_start(&s->stream.stream, on_alloc, on_read) != 0)
        session_close(s);
}

static void set_reading(struct session *s, bool on)
{
    if (on == s->reading)
        return;
    s->reading = on;
    if (!on)
        uv_read_stop(&s->stream.stream);
    else if (uv_read_start(&s->stream.stream, on_alloc, on_read) != 0)
        session_close(s);
}

/* Call the op for a command that has one; it answers now or later. */
static void session_dispatch(struct session *s, const struct admin_command *cmd)
{
    struct admin_request *r = malloc(sizeof *r);
    if (!r) {
        session_answer(s, false, "out of memory");
        return;
    }
    *r = (struct admin_request){.session = s};
    s->pending = r;
    s->dispatching = true;
    const struct admin_ops *ops = s->admin->ops;
    void *data = s->admin->data;
    if (cmd->verb == ADMIN_SHOW_INFO && ops->show_info)
        ops->show_info(r, data);
    else if (cmd->verb == ADMIN_SHOW_CONNS && ops->show_conns)
        ops->show_conns(r, data);
    else if (cmd->verb == ADMIN_SHOW_ERRORS && ops->show_errors)
        ops->show_errors(r, data);
    else if (cmd->verb == ADMIN_SHOW_GENERATIONS && ops->show_generations)
        ops->show_generations(r, data);
    else if (cmd->verb == ADMIN_KILL && ops->kill)
        ops->kill(r, cmd->id, data);
    else if (cmd->verb == ADMIN_RELOAD && ops->reload)
        ops->reload(r, data);
    else if (cmd->verb == ADMIN_SET_LOG_LEVEL && ops->set_log_level)
        ops->set_log_level(r, (enum log_level)cmd->level, data);
    else
        admin_answer(r, false, "this command is not available here");
    s->dispatching = false;
}

/* Handle the first 'n' bytes of the buffer as a line, then drop them and
 * 'skip' more (its newline). */
static void session_take_line(struct session *s, size_t n, size_t skip)
{
    struct admin_command cmd;
    admin_command_parse(s->in, n, &cmd);
    s->len -= n + skip;
    memmove(s->in, s->in + n + skip, s->len);
    switch (cmd.verb) {
    case ADMIN_EMPTY:
        break;
    case ADMIN_HELP:
        session_answer(s, true, HELP_TEXT);
        break;
    case ADMIN_QUIT:
        session_finish(s);
        break;
    case ADMIN_INVALID:
        session_answer(s, false, cmd.error);
        break;
    default:
        session_dispatch(s, &cmd);
        break;
    }
}

/* Handle the lines buffered, one command at a time: stop at one whose
 * answer is pending, or when the client is not reading its answers. Read
 * more only when nothing waits. */
static void session_process(struct session *s)
{
    while (s->state == SESSION_OPEN && !s->pending &&
           uv_stream_get_write_queue_size(&s->stream.stream) <= WRITE_QUEUE_MAX) {
        char *nl = memchr(s->in, '\n', s->len);
        if (nl) {
            session_take_line(s, (size_t)(nl - s->in), 1);
        } else if (s->len > ADMIN_LINE_MAX) {
            session_answer(s, false, "line too long (at most 1024 bytes): closing");
            session_finish(s);
        } else if (s->eof && s->len > 0) {
            session_take_line(s, s->len, 0); /* a last line with no newline */
        } else if (s->eof) {
            session_finish(s);
        } else {
            set_reading(s, true);
            return;
        }
    }
    if (s->state == SESSION_OPEN)
        set_reading(s, false);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct session *s = h->data;
    if (s->state == SESSION_LINGERING)
        *buf = uv_buf_init(s->in, sizeof s->in); /* dropped: no line is read any more */
    else
        *buf = uv_buf_init(s->in + s->len, (unsigned)(sizeof s->in - s->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct session *s = stream->data;
    if (s->state == SESSION_LINGERING) {
        if (nread < 0)
            session_close(s); /* its EOF (or an error): our last bytes have arrived */
        return;
    }
    if (s->state != SESSION_OPEN)
        return;
    if (nread > 0) {
        s->len += (size_t)nread;
        session_process(s);
    } else if (nread == UV_EOF) {
        s->eof = true;
        s->reading = false; /* libuv stops reading at EOF */
        session_process(s);
    } else if (nread < 0) {
        session_close(s);
    }
}

/* A new session (in the list, its handles open), or NULL. */
static struct session *session_new(struct admin *a)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    int rc = a->is_unix ? uv_pipe_init(a->loop, &s->stream.pipe, 0) : uv_tcp_init(a->loop, &s->stream.tcp);
    if (rc != 0) {
        free(s);
        return NULL;
    }
    uv_timer_init(a->loop, &s->linger);
    s->admin = a;
    s->handles = 2;
    s->stream.handle.data = s;
    s->linger.data = s;
    s->next = a->sessions;
    if (a->sessions)
        a->sessions->prev = s;
    a->sessions = s;
    a->held++;
    return s;
}

static void on_retry(uv_timer_t *t);

/* Take the connection waiting on the listener. Out of memory, it is left
 * waiting: libuv stops watching the listener until uv_accept is called,
 * which the retry timer does. */
static void accept_pending(struct admin *a)
{
    struct session *s = session_new(a);
    if (!s) {
        log_error("admin console: out of memory for a session; trying again in %d ms", ACCEPT_RETRY_MS);
        uv_timer_start(&a->retry, on_retry, ACCEPT_RETRY_MS, 0);
        return;
    }
    if (uv_accept(&a->listener.stream, &s->stream.stream) != 0 || a->held > SESSIONS_HELD_MAX) {
        session_close(s);
        return;
    }
    if (a->counted >= SESSIONS_MAX) {
        log_debug("admin console: a session refused, %d are open", SESSIONS_MAX);
        session_answer(s, false, "too many console sessions");
        session_finish(s);
        return;
    }
    s->counted = true;
    a->counted++;
    set_reading(s, true);
}

static void on_retry(uv_timer_t *t)
{
    struct admin *a = t->data;
    if (!a->closing)
        accept_pending(a);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct admin *a = server->data;
    if (status == 0 && !a->closing)
        accept_pending(a);
}

static bool is_loopback(const union addr *addr)
{
    if (addr->sa.sa_family == AF_INET)
        return (ntohl(addr->in.sin_addr.s_addr) >> 24) == 127;
    if (addr->sa.sa_family != AF_INET6)
        return false;
    const struct in6_addr *a6 = &addr->in6.sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
}

/* A listening TCP socket on spec's loopback address; 'bound' its address. */
static int open_tcp(uv_loop_t *loop, const struct listen_spec *spec, bool allow_remote, int *out,
                    union addr *bound)
{
    union addr addr;
    int rc = addr_resolve_blocking(loop, spec->host, spec->port, &addr);
    if (rc != 0)
        return rc;
    if (!allow_remote && !is_loopback(&addr))
        return UV_EACCES;
    int fd = socket(addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int one = 1;
    struct sockaddr_storage ss;
    socklen_t len = addr.sa.sa_family == AF_INET ? sizeof addr.in : sizeof addr.in6;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || bind(fd, &addr.sa, len) != 0 ||
        listen(fd, BACKLOG) != 0 || getsockname(fd, (struct sockaddr *)&ss, &(socklen_t){sizeof ss}) != 0) {
        rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    rc = addr_from_sockaddr(bound, (struct sockaddr *)&ss);
    if (rc != 0)
        close(fd);
    else
        *out = fd;
    return rc;
}

/* A listening Unix socket, mode 0600, its file remembered to remove it. */
static int open_unix(struct admin *a, const struct listen_spec *spec, int *out)
{
    int rc = server_open_unix(spec->path, 0600, out);
    if (rc != 0)
        return rc;
    struct stat st;
    if (lstat(spec->path, &st) == 0) { /* else it is gone already: nothing to remove */
        a->unlink_path = true;
        a->path_dev = st.st_dev;
        a->path_ino = st.st_ino;
        snprintf(a->path, sizeof a->path, "%s", spec->path);
    }
    a->is_unix = true;
    return 0;
}

/* Remove the socket file, if it is still the one we made (another
 * process may have replaced it since). */
static void remove_socket_file(struct admin *a)
{
    struct stat now;
    if (a->unlink_path && lstat(a->path, &now) == 0 && now.st_ino == a->path_ino && now.st_dev == a->path_dev)
        unlink(a->path);
    a->unlink_path = false;
}

static void on_admin_handle_closed(uv_handle_t *h)
{
    struct admin *a = h->data;
    a->handles--;
    admin_maybe_free(a);
}

/* Close the listener and the retry timer; 'a' goes when they and every
 * session are closed. */
static void close_admin_handles(struct admin *a)
{
    a->closing = true;
    remove_socket_file(a);
    uv_close(&a->listener.handle, on_admin_handle_closed);
    uv_close((uv_handle_t *)&a->retry, on_admin_handle_closed);
}

/* Serve the listening socket 'fd' on the loop. On failure the handle is
 * closed (and with it 'fd'), freeing 'a' in its callback. */
static int start_listening(struct admin *a, int fd)
{
    int rc = a->is_unix ? uv_pipe_init(a->loop, &a->listener.pipe, 0) : uv_tcp_init(a->loop, &a->listener.tcp);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    uv_timer_init(a->loop, &a->retry);
    a->listener.handle.data = a->retry.data = a;
    a->handles = 2;
    rc = a->is_unix ? uv_pipe_open(&a->listener.pipe, fd) : uv_tcp_open(&a->listener.tcp, fd);
    if (rc != 0)
        close(fd); /* not the handle's: uv_close will not close it */
    else
        rc = uv_listen(&a->listener.stream, BACKLOG, on_connection);
    if (rc != 0)
        close_admin_handles(a);
    return rc;
}

int admin_open(struct admin **out, uv_loop_t *loop, const struct listen_spec *spec, bool allow_remote,
               const struct admin_ops *ops, void *data, char *name)
{
    if (spec->kind != LISTEN_TCP && spec->kind != LISTEN_UNIX)
        return UV_EINVAL;
    struct admin *a = malloc(sizeof *a);
    if (!a)
        return UV_ENOMEM;
    *a = (struct admin){.loop = loop, .ops = ops, .data = data};
    union addr bound;
    int fd;
    int rc = spec->kind == LISTEN_UNIX ? open_unix(a, spec, &fd) : open_tcp(loop, spec, allow_remote, &fd, &bound);
    if (rc != 0) {
        free(a);
        return rc;
    }
    rc = start_listening(a, fd);
    if (rc != 0)
        return rc;
    listen_spec_format(spec, spec->kind == LISTEN_TCP ? &bound : NULL, name, LISTEN_SPEC_STRLEN);
    *out = a;
    return 0;
}

void admin_close(struct admin *a)
{
    if (a->closing)
        return;
    close_admin_handles(a);
    for (struct session *s = a->sessions; s; s = s->next)
        session_close(s);
}
