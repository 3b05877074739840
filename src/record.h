/*
 * record.h - one connection's transcript for --record DIR, in the format
 * docs/deploying.md describes ("luaecho-record 1", then length-prefixed
 * events), gathered in memory and written in batches into a file of the
 * recorder's DIR (record_dir.h). Relies on record_dir.h for the file's
 * place and room. Rule: a record is touched by its connection's loop
 * thread only, and never looks at the bytes it keeps. Every record_*
 * function takes a NULL record and then does nothing, so callers need no
 * test of their own.
 */
#ifndef LUAECHO_RECORD_H
#define LUAECHO_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "stats.h"

#include "record_dir.h"

struct record;

/* Bytes a transcript gathers in memory before they are written (and at
 * its end): one open, write and close per batch, on libuv's thread pool. */
#define RECORD_BATCH (64 * 1024)

/* What a transcript's header says about its connection. */
struct record_header {
    const char *listener; /* "HOST:PORT", "unix:PATH" */
    const char *peer;     /* as the script sees it */
    int generation;       /* of the script serving it */
    int worker;
    uint64_t conn_id;     /* process-wide: with the start time and the worker, the file's name */
};

/* A new transcript, written by requests on 'loop' (NULL for 'r' NULL, or
 * out of memory: then the connection is served unrecorded). Its clock
 * starts now. */
struct record *record_start(struct recorder *r, uv_loop_t *loop, const struct record_header *h);

enum record_event {
    REC_IN,        /* bytes handed to data_received */
    REC_OUT,       /* bytes the script wrote (write, writelines) */
    REC_EOF,       /* the peer half-closed: eof_received */
    REC_WRITE_EOF, /* the script's write_eof() */
    REC_CLOSE,     /* the script's close(), or eof_received's false */
    REC_ABORT,     /* the script's abort(), or a failed callback (its error as the bytes) */
};
void record_event(struct record *rec, enum record_event ev, const char *bytes, size_t len);
/* The connection ended ('error' NULL: cleanly): the end event. The last
 * batch is written after, the file then counted as finished and the
 * record freed: its requests keep the loop running until then. */
void record_end(struct record *rec, enum stats_end why, const char *error);

#endif
