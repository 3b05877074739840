/*
 * canary.h - after a hot swap with --canary SEC: the window in which only
 * --canary-share of new connections get the new generation, its automatic
 * rollback at --rollback-errors callback errors, its promotion when the
 * window passes cleanly; and, on each worker, what a swap, a promotion or
 * a rollback does to open connections (the reload policy: keep, upgrade,
 * drain). The coordinator decides, process-wide (generations.h holds the
 * counts every worker adds to); workers act on CMD_PROMOTE/CMD_ROLLBACK.
 */
#ifndef LUAECHO_CANARY_H
#define LUAECHO_CANARY_H

struct workers;
struct worker;

/* ---- The coordinator's side (main thread). ---- */

/* At start-up: generation 1 active; with --canary, the window's timer and
 * the alarm the workers ring. Returns 0, or -1 after logging why. */
int canary_open(struct workers *g);
/* A reload committed g->generation: start its canary window, or make it
 * active at once (no --canary). */
void canary_committed(struct workers *g);
/* Close the handles (every worker has ended). Idempotent. */
void canary_close(struct workers *g);

/* ---- A worker's side (its own thread). ---- */

/* Before committing: does this swap start a canary? */
void canary_worker_before_commit(struct worker *w);
/* After committing: apply the new Protocol's reload policy at once (no
 * canary): start draining the older generations when it says "drain". */
void canary_worker_committed(struct worker *w);
/* The coordinator's CMD_PROMOTE / CMD_ROLLBACK, in 'commands'. */
void canary_worker_command(struct worker *w, unsigned commands);
/* At teardown, before the host is destroyed. */
void canary_worker_close(struct worker *w);

#endif
