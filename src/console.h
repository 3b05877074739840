/*
 * console.h - what the coordinator shows of the group: the metrics
 * endpoint (--metrics) and the admin console (--admin) on the main
 * thread's loop, and the part of the console's queries each worker
 * answers on its own thread (its connections, a kill). A worker stuck in
 * a callback cannot answer: the coordinator waits for it one second, then
 * answers without it and says so.
 */
#ifndef LUAECHO_CONSOLE_H
#define LUAECHO_CONSOLE_H

struct workers;
struct worker;

/* Open what the options ask for (before the workers start). Returns 0,
 * or -1 after logging why. */
int console_open(struct workers *g);
/* Print where they are, once the listeners are up. */
void console_announce(struct workers *g);
/* Close them: every worker has ended. Idempotent. */
void console_close(struct workers *g);
/* On worker w's thread: answer the console's query. */
void console_answer_query(struct worker *w);

#endif
