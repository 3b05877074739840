/*
 * watchdog.h - interrupting a Lua callback that runs past --script-timeout,
 * at no cost to the callbacks that do not.
 *
 * A count hook checking the clock made every Lua instruction slower (50%
 * more instructions on the streams path). Instead, one thread watches the
 * deadlines of every loop; when a call overruns, it sends a signal to that
 * loop's thread, whose handler arms a hook on the Lua thread running there
 * (as lua.c does for Ctrl-C). The hook then raises the timeout error.
 *
 * While no call starts for a whole period the thread sleeps, waking no
 * one: the first call after that wakes it (one mutex and signal), so an
 * idle server costs nothing, and a busy one only its two stores per call.
 */
#ifndef LUAECHO_WATCHDOG_H
#define LUAECHO_WATCHDOG_H

#include <lua.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* One loop thread's entry in the watchdog's list. */
struct watchdog_slot {
    uv_thread_t thread;
    _Atomic uint64_t deadline_ns; /* of the call running there; 0: none */
    _Atomic uint64_t calls;       /* started so far (written by its loop thread only) */
    uint64_t timeout_ns;
    struct watchdog_slot *next;
};

/* Is the watchdog thread asleep? Then the next call must wake it. */
extern _Atomic bool watchdog_sleeping;
void watchdog_wake(void);

/* A call starts on the slot's thread, to end by 'deadline_ns'. */
static inline void watchdog_call_started(struct watchdog_slot *slot, uint64_t deadline_ns)
{
    uint64_t calls = atomic_load_explicit(&slot->calls, memory_order_relaxed);
    atomic_store_explicit(&slot->calls, calls + 1, memory_order_relaxed);
    atomic_store(&slot->deadline_ns, deadline_ns); /* then read 'sleeping': see watch() */
    if (atomic_load(&watchdog_sleeping))
        watchdog_wake();
}

static inline void watchdog_call_ended(struct watchdog_slot *slot)
{
    atomic_store(&slot->deadline_ns, 0);
}

/* Watch the calling thread's calls, each allowed 'timeout_ns'. 'hook' is
 * armed on the Lua thread running when one overruns. */
void watchdog_watch(struct watchdog_slot *slot, uint64_t timeout_ns, lua_Hook hook);
void watchdog_unwatch(struct watchdog_slot *slot);

/* The Lua thread (state or coroutine) now running on this OS thread: the
 * one to interrupt. runtime_call and coroutine resumptions keep it. */
extern _Thread_local lua_State *watchdog_running;

#endif
