/*
 * drain.c - see drain.h. A 100 ms timer, running only while a drain is
 * under way and never keeping the loop alive, walks the loop's
 * connections: one idle for a second with nothing left to send is
 * closed, and at the deadline every one still open is.
 */
#include "drain.h"

#include <stdlib.h>

#include "log.h"
#include "protocol.h"

#define TICK_MS 100
#define IDLE_MS 1000

struct drain {
    uv_timer_t timer;
    struct conn_list *conns;
    int generation;     /* connections of older generations are drained */
    uint64_t deadline;  /* uv_now() when every one still open is closed */
    double timeout;
    size_t closed;      /* by this drain: it says it is done only if it did something */
};

struct sweep {
    struct drain *d;
    bool late;          /* past the deadline */
    size_t closed, left;
};

/* Is c a connection a server accepted that runs an older generation? */
static bool older(const struct drain *d, struct conn *c)
{
    const char *listener;
    int generation;
    protocol_describe(c, &listener, &generation);
    return listener && generation > 0 && generation < d->generation && !conn_is_closing(c);
}

static void sweep_one(struct conn *c, void *arg)
{
    struct sweep *s = arg;
    if (!older(s->d, c))
        return;
    if (s->late || (conn_write_buffer_size(c) == 0 && conn_idle_ms(c) >= IDLE_MS)) {
        conn_close(c);
        s->closed++;
    } else {
        s->left++;
    }
}

static void on_tick(uv_timer_t *timer)
{
    struct drain *d = timer->data;
    struct sweep s = {.d = d, .late = uv_now(timer->loop) >= d->deadline};
    conn_list_each(d->conns, sweep_one, &s);
    d->closed += s.closed;
    if (s.late && s.closed > 0)
        log_info("drain: closed %zu connection(s) of generations before %d still open after drain_timeout (%g s)",
                 s.closed, d->generation, d->timeout);
    if (s.left == 0) {
        uv_timer_stop(timer);
        if (d->closed > 0)
            log_info("drain: no connection of a generation before %d is left", d->generation);
    }
}

struct drain *drain_new(uv_loop_t *loop, struct conn_list *conns)
{
    struct drain *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    uv_timer_init(loop, &d->timer);
    uv_unref((uv_handle_t *)&d->timer);
    d->timer.data = d;
    d->conns = conns;
    return d;
}

void drain_start(struct drain *d, int generation, double timeout)
{
    d->generation = generation;
    d->timeout = timeout;
    d->deadline = uv_now(d->timer.loop) + (uint64_t)(timeout * 1000);
    d->closed = 0;
    uv_timer_start(&d->timer, on_tick, TICK_MS, TICK_MS);
}

static void on_close(uv_handle_t *handle)
{
    free(handle->data);
}

void drain_free(struct drain *d)
{
    if (d)
        uv_close((uv_handle_t *)&d->timer, on_close);
}
