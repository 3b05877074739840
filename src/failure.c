/*
 * failure.c - the error policy: one log line per kind of failure (with
 * its traceback), a count of the repeats, and the connection aborted.
 */
#include "failure.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "error_ring.h"
#include "generations.h"
#include "log_window.h"

static const char *const kind_names[] = {
    [RUNTIME_ERROR_SCRIPT] = "error",
    [RUNTIME_ERROR_TIMEOUT] = "timeout",
    [RUNTIME_ERROR_MEMORY] = "memory",
};

/* The script's "file.lua:LINE" in 'message' (the first one), or "". Peers
 * ("127.0.0.1:5000:") are not places: a place names a .lua file. */
static void place_of(const char *message, char *out, size_t size)
{
    out[0] = '\0';
    for (const char *p = strstr(message, ".lua:"); p; p = strstr(p + 1, ".lua:")) {
        const char *digits = p + 5, *end = digits;
        while (isdigit((unsigned char)*end))
            end++;
        if (end == digits || *end != ':')
            continue;
        const char *start = p;
        while (start > message && !isspace((unsigned char)start[-1]) && start[-1] != '\'')
            start--;
        snprintf(out, size, "%.*s", (int)(end - start), start);
        return;
    }
}

/* Where a failure came from, for its key: the script's file:line, or for
 * an error without one, the start of its message (digits dropped: ports
 * and counts differ between repeats of one failure). */
static void origin_of(const char *message, char *out, size_t size)
{
    place_of(message, out, size);
    if (out[0] != '\0')
        return;
    size_t n = 0;
    for (const char *p = message; *p && *p != '\n' && n + 1 < size && n < 60; p++) {
        if (!isdigit((unsigned char)*p))
            out[n++] = *p;
    }
    out[n] = '\0';
}

/* For /metrics: the failure by callback, and a limit that caused it. */
static void count(const struct runtime_error *err, const char *callback)
{
    stats_callback_failed(callback);
    if (err->kind == RUNTIME_ERROR_TIMEOUT)
        stat_add(&stats_here()->limits_hit[LIMIT_SCRIPT_TIMEOUT], 1);
    else if (err->kind == RUNTIME_ERROR_MEMORY)
        stat_add(&stats_here()->limits_hit[LIMIT_LUA_MEMORY], 1);
}

void failure_report(struct runtime_error *err, const struct failure *where)
{
    char peer[ADDR_STRLEN] = "", place[160], key[200], line[8192];
    if (where->conn)
        addr_format(conn_peer(where->conn), peer, sizeof peer);
    origin_of(err->message, place, sizeof place);
    snprintf(key, sizeof key, "%s|%s|%s", kind_names[err->kind], where->callback, place);
    /* The traceback is the message, a newline and the stack: the line says
     * the message and the stack goes in its own field (on the lines after
     * it, in text: the same bytes as the traceback whole). */
    size_t mlen = strlen(err->message);
    bool split = strncmp(err->traceback, err->message, mlen) == 0 && err->traceback[mlen] == '\n';
    snprintf(line, sizeof line, "%s failed%s%s%s: %s", where->callback, where->conn ? " for " : "", peer,
             where->note ? where->note : "", split ? err->message : err->traceback);
    struct log_fields fields = {
        .callback = where->callback,
        .peer = where->conn ? peer : NULL,
        .listener = where->listener,
        .generation = where->generation,
        .traceback = split ? err->traceback + mlen + 1 : NULL,
    };
    log_window_with(key, LOG_ERROR, &fields, line);
    error_ring_add(&(struct error_entry_in){
        .callback = where->callback,
        .peer = fields.peer,
        .worker = log_worker(),
        .generation = where->code_generation ? where->code_generation : where->generation,
        .message = err->message,
        .traceback = fields.traceback,
    });
    count(err, where->callback);
    if (where->code_generation) /* a canary's errors decide its rollback */
        generations_count_error(where->code_generation, err->message);
    if (where->conn && !where->keep)
        conn_abort_for(where->conn, err->kind == RUNTIME_ERROR_SCRIPT ? END_SCRIPT_ERROR : END_LIMIT, err->message);
    runtime_error_free(err);
}

void failure_log_lua(const char *message, const struct log_fields *fields)
{
    char place[160], key[200], head[8192];
    origin_of(message, place, sizeof place);
    const char *peer = strstr(message, " for "); /* "stream handler failed for PEER: ..." */
    size_t what = peer ? (size_t)(peer - message) : strcspn(message, ":\n");
    snprintf(key, sizeof key, "lua|%.*s|%s", (int)(what < 60 ? what : 60), message, place);
    struct log_fields f = fields ? *fields : (struct log_fields){0};
    const char *stack = strstr(message, "\nstack traceback:");
    if (stack && (size_t)(stack - message) < sizeof head) {
        snprintf(head, sizeof head, "%.*s", (int)(stack - message), message);
        f.traceback = stack + 1;
        message = head;
    }
    log_window_with(key, LOG_ERROR, &f, message);
    error_ring_add(&(struct error_entry_in){.callback = f.callback, .peer = f.peer, .worker = log_worker(),
                                            .generation = f.generation, .message = message,
                                            .traceback = f.traceback});
    stats_callback_failed("handler or task");
}
