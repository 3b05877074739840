/* The ceiling of scripts/bench: a bare libuv echo server in C, with nothing a
 * scripted server could do less of.
 *
 *   libuv-echo PORT          TCP on 127.0.0.1:PORT
 *   libuv-echo unix:PATH     a Unix stream socket at PATH (removed first and at exit)
 *   libuv-echo udp:PORT      UDP on 127.0.0.1:PORT: each datagram sent back as is
 *
 * One read buffer shared by every connection (the loop runs the read callbacks
 * one at a time, and a reply is written before the next read), replies sent
 * with uv_try_write / uv_udp_try_send first; only what the kernel does not take
 * at once is copied and queued, and reading on that connection stops until it
 * has gone (so a peer that does not read cannot grow the server). Runs until
 * SIGINT or SIGTERM. */
#include <uv.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF_SIZE 65536

static char shared_buf[BUF_SIZE];
static uv_loop_t *loop;
static const char *unix_path;

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} pending_write;

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(shared_buf, BUF_SIZE);
}

static void close_cb(uv_handle_t *h) { free(h); }

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status) {
  pending_write *w = (pending_write *)req;
  uv_stream_t *s = req->handle;
  free(w->buf.base);
  free(w);
  if (status < 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  if (!uv_is_closing((uv_handle_t *)s)) uv_read_start(s, alloc_cb, read_cb);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  if (n == 0) return;
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
  int r = uv_try_write(s, &out, 1);
  if (r == n) return;
  if (r < 0 && r != UV_EAGAIN) {
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  size_t done = r > 0 ? (size_t)r : 0;
  pending_write *w = malloc(sizeof *w);
  char *copy = malloc((size_t)n - done);
  if (!w || !copy) {
    free(w);
    free(copy);
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  memcpy(copy, buf->base + done, (size_t)n - done);
  w->buf = uv_buf_init(copy, (unsigned)((size_t)n - done));
  uv_read_stop(s);
  if (uv_write(&w->req, s, &w->buf, 1, write_cb) < 0) {
    free(copy);
    free(w);
    uv_close((uv_handle_t *)s, close_cb);
  }
}

static void connection_cb(uv_stream_t *server, int status) {
  if (status < 0) return;
  uv_stream_t *c;
  if (server->type == UV_TCP) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) return;
    uv_tcp_init(loop, t);
    c = (uv_stream_t *)t;
  } else {
    uv_pipe_t *p = malloc(sizeof *p);
    if (!p) return;
    uv_pipe_init(loop, p, 0);
    c = (uv_stream_t *)p;
  }
  if (uv_accept(server, c) != 0) {
    uv_close((uv_handle_t *)c, close_cb);
    return;
  }
  if (server->type == UV_TCP) uv_tcp_nodelay((uv_tcp_t *)c, 1);
  uv_read_start(c, alloc_cb, read_cb);
}

/* UDP: the datagram goes back from the shared buffer; a copy only if the
 * socket's send buffer is full. */
typedef struct {
  uv_udp_send_t req;
  uv_buf_t buf;
} pending_send;

static void send_cb(uv_udp_send_t *req, int status) {
  (void)status;
  pending_send *p = (pending_send *)req;
  free(p->buf.base);
  free(p);
}

static void udp_recv_cb(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
                        unsigned flags) {
  (void)flags;
  if (n <= 0 || !addr) return;  /* nothing read, or an error: skip */
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
  int r = uv_udp_try_send(u, &out, 1, addr);
  if (r != UV_EAGAIN) return;  /* sent, or an error we do not retry (UDP) */
  pending_send *p = malloc(sizeof *p);
  char *copy = malloc((size_t)n);
  if (!p || !copy) {
    free(p);
    free(copy);
    return;
  }
  memcpy(copy, buf->base, (size_t)n);
  p->buf = uv_buf_init(copy, (unsigned)n);
  if (uv_udp_send(&p->req, u, &p->buf, 1, addr, send_cb) < 0) {
    free(copy);
    free(p);
  }
}

static void signal_cb(uv_signal_t *s, int signum) {
  (void)signum;
  (void)s;
  uv_stop(loop);
}

static void fail(const char *what, int err) {
  fprintf(stderr, "libuv-echo: %s: %s\n", what, uv_strerror(err));
  exit(1);
}

static int parse_port(const char *s) {
  char *end;
  long p = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || p < 1 || p > 65535) {
    fprintf(stderr, "usage: libuv-echo PORT | unix:PATH | udp:PORT\n");
    exit(2);
  }
  return (int)p;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: libuv-echo PORT | unix:PATH | udp:PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  const char *spec = argv[1];
  static uv_tcp_t tcp;
  static uv_pipe_t pipe_server;
  static uv_udp_t udp;
  struct sockaddr_in addr;
  int r;
  if (strncmp(spec, "unix:", 5) == 0) {
    unix_path = spec + 5;
    unlink(unix_path);
    uv_pipe_init(loop, &pipe_server, 0);
    if ((r = uv_pipe_bind(&pipe_server, unix_path)) != 0) fail("bind", r);
    if ((r = uv_listen((uv_stream_t *)&pipe_server, 4096, connection_cb)) != 0) fail("listen", r);
  } else if (strncmp(spec, "udp:", 4) == 0) {
    uv_ip4_addr("127.0.0.1", parse_port(spec + 4), &addr);
    uv_udp_init(loop, &udp);
    if ((r = uv_udp_bind(&udp, (const struct sockaddr *)&addr, 0)) != 0) fail("bind", r);
    int size = 4 << 20;
    uv_recv_buffer_size((uv_handle_t *)&udp, &size);
    size = 4 << 20;
    uv_send_buffer_size((uv_handle_t *)&udp, &size);
    if ((r = uv_udp_recv_start(&udp, alloc_cb, udp_recv_cb)) != 0) fail("recv", r);
  } else {
    uv_ip4_addr("127.0.0.1", parse_port(spec), &addr);
    uv_tcp_init(loop, &tcp);
    if ((r = uv_tcp_bind(&tcp, (const struct sockaddr *)&addr, 0)) != 0) fail("bind", r);
    if ((r = uv_listen((uv_stream_t *)&tcp, 4096, connection_cb)) != 0) fail("listen", r);
  }
  static uv_signal_t sigint, sigterm;
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, signal_cb, SIGINT);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, signal_cb, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  if (unix_path) unlink(unix_path);
  return 0;
}
