/*
 * admin.h - the admin console: a line protocol on the coordinator's loop
 * (never a serving loop), for a person with socat or nc and for `luaecho
 * ctl`. A client sends one command per line; each answer is one or more
 * lines and then an empty line; an answer that is an error is one line
 * starting "error: ". A session runs one command at a time (lines sent
 * meanwhile wait); an unknown or malformed command answers an error line
 * and the session goes on. A line over ADMIN_LINE_MAX bytes answers an
 * error line and closes. When the client half-closes, the session closes
 * once the command under way has answered. At most 16 sessions at once.
 */
#ifndef LUAECHO_ADMIN_H
#define LUAECHO_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "listen_spec.h"
#include "log.h"

#define ADMIN_LINE_MAX 1024

/* One command waiting for its answer. */
struct admin_request;

/* What the commands do, given by the coordinator. Each must call
 * admin_answer() on the request exactly once: at once or later, on the
 * loop's thread, even if the client has gone meanwhile. */
struct admin_ops {
    void (*show_info)(struct admin_request *r, void *data);
    void (*show_conns)(struct admin_request *r, void *data);
    void (*show_errors)(struct admin_request *r, void *data);
    void (*show_generations)(struct admin_request *r, void *data);
    void (*kill)(struct admin_request *r, uint64_t id, void *data);
    void (*reload)(struct admin_request *r, void *data);
    void (*set_log_level)(struct admin_request *r, enum log_level level, void *data);
};

/* The answer: 'text' (copied; lines separated by '\n', a final '\n'
 * optional) if ok, else the error message (one line, written "error: TEXT").
 * The request is freed. */
void admin_answer(struct admin_request *r, bool ok, const char *text);

struct admin;

/* Listen on 'spec' (LISTEN_UNIX: created mode 0600; LISTEN_TCP). A TCP
 * address that is not loopback is refused (returns UV_EACCES) unless
 * 'allow_remote'. On success *out is the console and 'name' (at least
 * LISTEN_SPEC_STRLEN bytes) its address as printed. Returns 0, or a libuv
 * error (nothing left open). */
int admin_open(struct admin **out, uv_loop_t *loop, const struct listen_spec *spec, bool allow_remote,
               const struct admin_ops *ops, void *data, char *name);
/* Stop listening, close every session (requests still out are answered
 * into the void); memory goes in libuv's close callbacks. */
void admin_close(struct admin *a);

#endif
