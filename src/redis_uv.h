/*
 * redis_uv.h - hiredis' async contexts driven by a libuv loop: the adapter
 * that <hiredis/adapters/libuv.h> is, with one fix. hiredis 0.14's adapter
 * drops a poll callback whose status is an error, and libuv reports a
 * socket's POLLERR that way (UV_EBADF), so a refused connect was never seen
 * and the link hung until some timeout. Here an error status lets hiredis
 * read and write, so it meets the socket's error itself and reports it.
 * Rule: one uv_poll_t per context, closed by hiredis' cleanup hook only.
 */
#ifndef LUAECHO_REDIS_UV_H
#define LUAECHO_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attach 'ac' to 'loop'. Returns 0, or -1 (out of memory, or a bad socket). */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);
/* The poll handle of an attached context (for uv_ref/uv_unref). */
uv_handle_t *redis_uv_handle(redisAsyncContext *ac);

#endif
