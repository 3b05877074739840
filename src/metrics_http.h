/*
 * metrics_http.h - the metrics endpoint: a small HTTP/1.x server on the
 * coordinator's loop (never a serving loop) that answers GET /metrics
 * with what 'render' writes, GET /healthz with 200 "ok" (503 "shutting
 * down" once 'healthy' says no), HEAD alike, and 404 for any other path,
 * 405 for any other method. Each answer closes the connection. A head
 * over HTTP_HEAD_MAX gets 431, a malformed one 400; a client that sends no
 * whole head within 5 s is closed. At most 64 clients at once: more are
 * closed at accept.
 */
#ifndef LUAECHO_METRICS_HTTP_H
#define LUAECHO_METRICS_HTTP_H

#include <stdbool.h>
#include <uv.h>

#include "listen_spec.h"
#include "text_buf.h"

struct metrics_http_ops {
    /* Append the whole exposition to 'out' (on the loop's thread). */
    void (*render)(struct text_buf *out, void *data);
    /* Serving? false: /healthz answers 503. */
    bool (*healthy)(void *data);
};

struct metrics_http;

/* Listen on 'spec' (LISTEN_TCP or LISTEN_UNIX; a Unix socket file left
 * by a dead process is replaced, a live one refused, the file removed at
 * close if still ours). On success *out is the endpoint and 'name' (at
 * least LISTEN_SPEC_STRLEN bytes) its address as printed, with the real
 * port. Returns 0, or a libuv error (nothing is left open). */
int metrics_http_open(struct metrics_http **out, uv_loop_t *loop, const struct listen_spec *spec,
                      const struct metrics_http_ops *ops, void *data, char *name);
/* Stop listening and close every client; the memory goes in libuv's close
 * callbacks, so the loop must run once more. */
void metrics_http_close(struct metrics_http *m);

#endif
