/*
 * failure.h - what a failed protected call leads to, decided in one place.
 * Every caller of runtime_call that can fail hands the error here with
 * where it happened; this decides the log line (the callback, the peer,
 * the traceback), its rate limit (log_window.h, keyed on the kind of
 * failure, the callback and the script's file:line) and what happens to
 * the connection (aborted with the error, which connection_lost gets).
 */
#ifndef LUAECHO_FAILURE_H
#define LUAECHO_FAILURE_H

#include "conn.h"
#include "log.h"
#include "runtime.h"

/* Where a call failed. */
struct failure {
    const char *callback; /* "data_received", "timer callback", "upgrade", ... */
    struct conn *conn;    /* the connection it ran for: named, and aborted unless 'keep' */
    bool keep;            /* the connection goes on (a failed upgrade keeps its old code) */
    const char *note;     /* said after the peer (", which keeps generation 2"); NULL: nothing */
    int generation;       /* the generation the note names, for JSON logs; 0: none */
    const char *listener; /* the listener it serves, for JSON logs (a UDP endpoint's); NULL: none */
    int code_generation;  /* the generation of the code that failed, for `show errors`; 0: not known */
};

/* Log the failure, abort its connection, and free 'err'. */
void failure_report(struct runtime_error *err, const struct failure *where);
/* core.log("error", message, fields) from the Lua libraries (a streams
 * handler or a task that failed) or a script: the same rate limit, keyed
 * on the message. 'fields' carries the script's extras (NULL: none); a
 * "\nstack traceback:" in the message becomes the traceback field. */
void failure_log_lua(const char *message, const struct log_fields *fields);

#endif
