/*
 * generations.h - the process-wide table of the script's generations (one
 * row per load that served): when it was loaded, its state (canary,
 * active, old, rolled-back), its open connections and its callback
 * errors; and the canary's share of new connections.
 * Relies on nothing but libuv's mutex: every worker thread counts into it,
 * the coordinator decides and shows. Rule: only the coordinator changes a
 * state (generations_add, _promote, _roll_back); workers only count and
 * read, so what a worker sees is always a state the coordinator set.
 */
#ifndef LUAECHO_GENERATIONS_H
#define LUAECHO_GENERATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text_buf.h"

enum generation_state { GENERATION_CANARY, GENERATION_ACTIVE, GENERATION_OLD, GENERATION_ROLLED_BACK };

/* The table never holds more rows than this: see generations_add. */
#define GENERATIONS_MAX 16
#define GENERATIONS_ERROR_MAX 200

struct generation_row {
    int generation;
    enum generation_state state;
    double loaded_at;        /* seconds since the epoch */
    uint64_t loaded_ns;      /* uv_hrtime() then: a canary's window starts here */
    long connections;        /* open now, every worker's */
    uint64_t errors;         /* callback errors of its code, every worker's */
    uint64_t window_errors;  /* ... while it was a canary */
    uint64_t alarm_ns;       /* when window_errors reached the threshold; 0: not (yet) */
    char first_error[GENERATIONS_ERROR_MAX]; /* the first error's message, its first line */
};

/* Empty the table and make 'generation' the active one (start-up). */
void generations_reset(int generation);
/* A reload committed 'generation'. As a canary (share PERCENT of new
 * connections, rolled back at 'rollback_errors' errors), the active one
 * stays the baseline and a canary it replaces becomes old; otherwise it
 * is active and every other row old. Rows past GENERATIONS_MAX go, old
 * ones without connections first (oldest first). */
void generations_add(int generation, bool canary, int share, int rollback_errors);
/* fn(data) is called (on the counting worker's thread, no lock held) when
 * a canary's errors reach its threshold. */
void generations_set_alarm(void (*fn)(void *data), void *data);
/* A connection of 'generation' opened (+1) or ended (-1). Unknown: ignored. */
void generations_count_conn(int generation, int delta);
/* A callback of 'generation''s code failed with 'message'. */
void generations_count_error(int generation, const char *message);
/* Should a new connection get 'generation' (the newest class) rather than
 * the previous one? A canary: every k-th, by one process-wide counter, so
 * that after n connections exactly ceil(n * share / 100) got it; rolled
 * back: never; otherwise always. */
bool generations_serve_newest(int generation);
/* The state of 'generation' (GENERATION_OLD when not in the table). */
enum generation_state generations_state(int generation);
/* The canary is promoted: active, and the active one old. */
void generations_promote(int generation);
/* The canary is rolled back; 'why' is kept for show generations. */
void generations_roll_back(int generation, const char *why);
/* The row of 'generation', and of the active one (either may be NULL).
 * Returns false when 'generation' is not in the table. */
bool generations_get(int generation, struct generation_row *row, struct generation_row *active);
/* Every row, oldest first; returns how many. */
size_t generations_snapshot(struct generation_row rows[GENERATIONS_MAX]);
/* The console's `show generations`: a header, one line per row, and the
 * reason of the last rollback. */
void generations_format(struct text_buf *out);
/* "canary", "active", "old", "rolled-back" */
const char *generations_state_name(enum generation_state state);

#endif
