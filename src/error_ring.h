/*
 * error_ring.h - the last errors of the whole process, for the console's
 * `show errors`: every failed callback, also those the log's rate limit
 * folded into a count, kept with when, where and the traceback. Any
 * thread adds (under a lock, a copy of the strings); the coordinator
 * formats.
 */
#ifndef LUAECHO_ERROR_RING_H
#define LUAECHO_ERROR_RING_H

#include "text_buf.h"

#define ERROR_RING_SIZE 50

struct error_entry_in {
    const char *callback;  /* NULL: none */
    const char *peer;      /* NULL: none */
    int worker;
    int generation;        /* 0: not known */
    const char *message;
    const char *traceback; /* the stack; NULL: none */
};

void error_ring_add(const struct error_entry_in *e);
/* Oldest first: "TIME CALLBACK PEER worker N generation N: MESSAGE" and
 * the traceback's lines indented by two spaces; "no errors" if none. */
void error_ring_format(struct text_buf *out);
/* Free what the ring holds (at exit). */
void error_ring_clear(void);

#endif
