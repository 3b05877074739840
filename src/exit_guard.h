/*
 * exit_guard.h - the process ends on time once asked to, whatever a script
 * does.
 *
 * A shutdown relies on the serving loops, and a loop can be stuck where no
 * hook reaches: in a C function that runs for seconds (a pathological
 * string.find), or in a __gc finalizer (Lua turns hooks off while one runs),
 * during a callback or in lua_close() at exit. So one thread with a loop of
 * its own listens for SIGINT and SIGTERM beside the serving loops: the first
 * allows --shutdown-timeout plus a grace period, a second one the grace
 * period alone. Past that, it logs what was stuck and ends the process with
 * status 1.
 *
 * It is also the one receiver of SIGINT and SIGTERM: started first, it
 * relays every signal to the loop that shuts down (the coordinator of the
 * workers, or the host of `luaecho run`), so none is lost, even one that
 * comes before that loop is ready. The loops still do the shutdown itself.
 */
#ifndef LUAECHO_EXIT_GUARD_H
#define LUAECHO_EXIT_GUARD_H

#include <stdint.h>
#include <uv.h>

/* For the teardown after the connections are gone (connection_lost
 * callbacks, closing the Lua state). */
#define EXIT_GUARD_GRACE_MS 1000

/* Start the guard (once per process), before any loop handles signals.
 * Returns 0, or -1 after logging why. */
int exit_guard_start(uint64_t shutdown_timeout_ms);
/* Where the guard delivers the signals: an async handle on the loop that
 * shuts down, which calls on_signal(name, nth, data) there for each one
 * in order ("SIGINT", 1 for the first, 2 and on for the next). */
struct signal_inbox {
    uv_async_t async;
    const char *_Atomic name; /* of the last signal */
    _Atomic int count;        /* relayed so far */
    int handled;              /* ... and passed to on_signal (the loop's thread) */
    void (*on_signal)(const char *name, int nth, void *data);
    void *data;
};
/* Deliver every SIGINT/SIGTERM to 'inbox' on 'loop' (unreferenced), those
 * that came before too. One inbox at a time. */
void exit_guard_listen(struct signal_inbox *inbox, uv_loop_t *loop,
                       void (*on_signal)(const char *name, int nth, void *data), void *data);
/* Stop delivering, and close the inbox's handle (the loop then runs it closed). */
void exit_guard_unlisten(struct signal_inbox *inbox);
/* A shutdown began without a signal ('what' began it, for the log line):
 * the same deadline as after a first signal. Any thread. */
void exit_guard_shutdown_begun(const char *what);

#endif
