/*
 * exit_guard.c - a thread that ends the process when a shutdown overruns.
 * Its loop holds SIGINT and SIGTERM handles (libuv tells every loop that
 * listens for a signal) and one timer: the deadline. Other threads arm the
 * deadline through an async handle. The thread is never joined: it ends
 * with the process.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "exit_guard.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

static uv_loop_t loop;
static uv_signal_t sigint, sigterm;
static uv_timer_t deadline;
static uv_async_t wakeup;
static uv_thread_t thread;
static uint64_t shutdown_timeout_ms;
static bool started;

/* Under 'lock': the armed deadline (uv_hrtime, ns; 0: none) and why; the
 * signals seen, and who they are relayed to. */
static uv_mutex_t lock;
static uint64_t due_ns;
static char why[200];
static int signals_seen;
static const char *last_signal;
static struct signal_inbox *inbox; /* where they go */

/* Arm the deadline 'ms' from now, unless an earlier one is armed. */
static void arm(uint64_t ms, const char *reason)
{
    uint64_t at = uv_hrtime() + ms * 1000000;
    uv_mutex_lock(&lock);
    if (due_ns == 0 || at < due_ns) {
        due_ns = at;
        snprintf(why, sizeof why, "%s", reason);
    }
    uv_mutex_unlock(&lock);
}

static void on_deadline(uv_timer_t *timer)
{
    (void)timer;
    uv_mutex_lock(&lock);
    log_error("%s, and a callback is still stuck where --script-timeout cannot interrupt it (a long C call "
              "such as string.find, or a __gc finalizer): exiting now",
              why);
    _exit(1);
}

/* (Re)start the timer for the armed deadline. On the guard's thread. */
static void start_timer(void)
{
    uv_mutex_lock(&lock);
    uint64_t at = due_ns;
    uv_mutex_unlock(&lock);
    if (at == 0)
        return;
    uint64_t now = uv_hrtime();
    uv_timer_start(&deadline, on_deadline, at > now ? (at - now + 999999) / 1000000 : 0, 0);
}

static void on_wakeup(uv_async_t *handle)
{
    (void)handle;
    start_timer();
}

/* Tell the inbox's loop that signals up to the current count came. Under lock. */
static void deliver(void)
{
    if (!inbox || signals_seen == 0)
        return;
    atomic_store(&inbox->name, last_signal);
    atomic_store(&inbox->count, signals_seen);
    uv_async_send(&inbox->async);
}

/* Count the signal and pass it on. Returns the count. */
static int relay_signal(const char *name)
{
    uv_mutex_lock(&lock);
    int count = ++signals_seen;
    last_signal = name;
    deliver();
    uv_mutex_unlock(&lock);
    return count;
}

/* On the inbox's loop: each signal not yet passed on, in order. */
static void on_delivery(uv_async_t *handle)
{
    struct signal_inbox *in = handle->data;
    int count = atomic_load(&in->count);
    for (; in->handled < count; in->handled++)
        in->on_signal(atomic_load(&in->name), in->handled + 1, in->data);
}

void exit_guard_listen(struct signal_inbox *in, uv_loop_t *loop,
                       void (*on_signal)(const char *name, int nth, void *data), void *data)
{
    *in = (struct signal_inbox){.on_signal = on_signal, .data = data};
    uv_async_init(loop, &in->async, on_delivery);
    in->async.data = in;
    uv_unref((uv_handle_t *)&in->async);
    if (!started)
        return;
    uv_mutex_lock(&lock);
    inbox = in;
    deliver();
    uv_mutex_unlock(&lock);
}

void exit_guard_unlisten(struct signal_inbox *in)
{
    if (started) {
        uv_mutex_lock(&lock);
        if (inbox == in)
            inbox = NULL;
        uv_mutex_unlock(&lock);
    }
    if (!uv_is_closing((uv_handle_t *)&in->async))
        uv_close((uv_handle_t *)&in->async, NULL);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    (void)handle;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    char reason[160];
    if (relay_signal(name) == 1) {
        snprintf(reason, sizeof reason, "still running %g s after %s (--shutdown-timeout %g s, then %g s to finish)",
                 (double)(shutdown_timeout_ms + EXIT_GUARD_GRACE_MS) / 1000, name, (double)shutdown_timeout_ms / 1000,
                 (double)EXIT_GUARD_GRACE_MS / 1000);
        arm(shutdown_timeout_ms + EXIT_GUARD_GRACE_MS, reason);
        log_debug("%s: the process ends within %g s, whatever the scripts do", name,
                  (double)(shutdown_timeout_ms + EXIT_GUARD_GRACE_MS) / 1000);
    } else {
        snprintf(reason, sizeof reason, "still running %g s after a second %s", (double)EXIT_GUARD_GRACE_MS / 1000,
                 name);
        arm(EXIT_GUARD_GRACE_MS, reason);
    }
    start_timer();
}

static void run(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "exit-guard");
    uv_run(&loop, UV_RUN_DEFAULT);
}

int exit_guard_start(uint64_t timeout_ms)
{
    shutdown_timeout_ms = timeout_ms;
    int rc = uv_mutex_init(&lock);
    if (rc == 0)
        rc = uv_loop_init(&loop);
    if (rc == 0) {
        uv_timer_init(&loop, &deadline);
        uv_async_init(&loop, &wakeup, on_wakeup);
        uv_signal_init(&loop, &sigint);
        uv_signal_init(&loop, &sigterm);
        rc = uv_signal_start(&sigint, on_signal, SIGINT);
    }
    if (rc == 0)
        rc = uv_signal_start(&sigterm, on_signal, SIGTERM);
    if (rc == 0)
        rc = uv_thread_create(&thread, run, NULL);
    if (rc != 0) {
        log_error("cannot start the shutdown guard: %s", uv_strerror(rc));
        return -1;
    }
    started = true;
    return 0;
}

void exit_guard_shutdown_begun(const char *what)
{
    if (!started)
        return;
    char reason[160];
    snprintf(reason, sizeof reason, "still running %g s after %s",
             (double)(shutdown_timeout_ms + EXIT_GUARD_GRACE_MS) / 1000, what);
    arm(shutdown_timeout_ms + EXIT_GUARD_GRACE_MS, reason);
    uv_async_send(&wakeup);
}
