/*
 * redis_uv.c - hiredis async contexts on a libuv loop (redis_uv.h).
 * Relies on hiredis calling the ev hooks below and, once, 'cleanup'.
 * Rule: after cleanup the context is gone: 'ac' is cleared before the
 * handle is closed, and a late poll callback finds NULL.
 */
#include "redis_uv.h"

#include <stdlib.h>

struct redis_uv {
    redisAsyncContext *ac; /* NULL after cleanup */
    uv_poll_t handle;
    int events;
};

/* An error status means the socket has an error pending: let hiredis try
 * what it waits for, so it reads the error and tears the context down. */
static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct redis_uv *p = handle->data;
    int ready = status < 0 ? p->events : events;
    if (p->ac && (ready & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ready & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void set_events(struct redis_uv *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void add_read(void *data)
{
    struct redis_uv *p = data;
    set_events(p, p->events | UV_READABLE);
}

static void del_read(void *data)
{
    struct redis_uv *p = data;
    set_events(p, p->events & ~UV_READABLE);
}

static void add_write(void *data)
{
    struct redis_uv *p = data;
    set_events(p, p->events | UV_WRITABLE);
}

static void del_write(void *data)
{
    struct redis_uv *p = data;
    set_events(p, p->events & ~UV_WRITABLE);
}

static void on_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void cleanup(void *data)
{
    struct redis_uv *p = data;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, on_closed);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -1;
    struct redis_uv *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->ac = ac;
    p->handle.data = p;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}

uv_handle_t *redis_uv_handle(redisAsyncContext *ac)
{
    struct redis_uv *p = ac->ev.data;
    return p ? (uv_handle_t *)&p->handle : NULL;
}
