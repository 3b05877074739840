/*
 * watchdog.c - one thread that interrupts overrunning Lua calls.
 * It wakes a few times per timeout period, and for every watched loop whose
 * current call is past its deadline, sends SIGURG to that loop's thread.
 * The handler runs there, between two instructions of whatever Lua code is
 * looping, and arms the hook on it: lua_sethook is documented to be safe
 * from a signal handler. SIGURG is ignored by default, so a stray one is
 * harmless; SA_RESTART keeps system calls from failing with EINTR.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "watchdog.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

#define SIGNAL SIGURG

_Thread_local lua_State *watchdog_running;
_Atomic bool watchdog_sleeping;

static lua_Hook armed_hook;
static uv_mutex_t lock;
static uv_cond_t changed;
static uv_thread_t thread;
static bool running;
static struct watchdog_slot *slots;
static uint64_t period_ns;
static uv_once_t once = UV_ONCE_INIT;

static void on_signal(int signum)
{
    (void)signum;
    lua_State *L = watchdog_running;
    if (L)
        lua_sethook(L, armed_hook, LUA_MASKCOUNT, 1);
}

/* Signal every loop thread whose current call has overrun; returns true
 * when a call runs or started since the last look ('seen' sums the
 * counts). Under lock. */
static bool check_slots(uint64_t *seen)
{
    uint64_t now = uv_hrtime(), calls = 0;
    bool running = false;
    for (struct watchdog_slot *s = slots; s; s = s->next) {
        uint64_t deadline = atomic_load(&s->deadline_ns);
        if (deadline != 0 && now > deadline)
            pthread_kill(s->thread, SIGNAL);
        running = running || deadline != 0;
        calls += atomic_load_explicit(&s->calls, memory_order_relaxed);
    }
    bool active = running || calls != *seen;
    *seen = calls;
    return active;
}

/* Look every period while calls come; after a period with none, sleep
 * until one starts. 'sleeping' is set before the last look, and a call
 * sets its deadline before reading it: one of the two always sees the
 * other, so an overrunning call is never missed. */
static void watch(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "watchdog"); /* for top -H, and the specs */
    uint64_t seen = 0;
    uv_mutex_lock(&lock);
    while (slots) {
        uv_cond_timedwait(&changed, &lock, period_ns);
        if (check_slots(&seen))
            continue;
        atomic_store(&watchdog_sleeping, true);
        if (!check_slots(&seen) && slots)
            uv_cond_wait(&changed, &lock);
        atomic_store(&watchdog_sleeping, false);
    }
    uv_mutex_unlock(&lock);
}

void watchdog_wake(void)
{
    uv_mutex_lock(&lock);
    uv_cond_signal(&changed);
    uv_mutex_unlock(&lock);
}

static void init_once(void)
{
    uv_mutex_init(&lock);
    uv_cond_init(&changed);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGNAL, &sa, NULL);
}

void watchdog_watch(struct watchdog_slot *slot, uint64_t timeout_ns, lua_Hook hook)
{
    uv_once(&once, init_once);
    slot->thread = uv_thread_self();
    slot->timeout_ns = timeout_ns;
    atomic_init(&slot->deadline_ns, 0);
    atomic_init(&slot->calls, 0);
    uv_mutex_lock(&lock);
    armed_hook = hook;
    /* Check a few times per period of the shortest timeout: an overrun is
     * caught within about a tenth of it (at least every 5 ms). */
    uint64_t period = timeout_ns / 10 < 5000000 ? 5000000 : timeout_ns / 10;
    if (period_ns == 0 || period < period_ns)
        period_ns = period;
    slot->next = slots;
    slots = slot;
    if (!running) {
        running = true;
        uv_thread_create(&thread, watch, NULL);
    }
    uv_mutex_unlock(&lock);
}

void watchdog_unwatch(struct watchdog_slot *slot)
{
    uv_mutex_lock(&lock);
    struct watchdog_slot **p = &slots;
    while (*p && *p != slot)
        p = &(*p)->next;
    if (*p)
        *p = slot->next;
    bool last = slots == NULL && running;
    if (last)
        running = false;
    uv_cond_signal(&changed);
    uv_mutex_unlock(&lock);
    if (last)
        uv_thread_join(&thread);
}
