/*
 * reload.h - hot swap: load the served script again on SIGHUP, or when it
 * changes on disk (--watch), without dropping a connection or a byte.
 */
#ifndef LUAECHO_RELOAD_H
#define LUAECHO_RELOAD_H

#include <stdbool.h>
#include <uv.h>

struct host;
struct server;

struct reload {
    struct host *host;
    struct server *server;
    char *path;        /* the script, as first loaded */
    char *dir;         /* its directory: modules there reload with it */
    char *name;        /* its file name, to pick its events out of the directory's */
    uv_signal_t sighup;
    uv_fs_event_t watch;
    uv_timer_t settle; /* a burst of writes gives one reload, after it settles */
    bool watching;
};

/* Reload s's script on SIGHUP, and on changes when 'watch'. Returns 0, or
 * -1 after logging why (the directory cannot be watched). */
int reload_init(struct reload *r, struct host *h, struct server *s, const char *path, bool watch);
/* Load the script again; on success the server's new connections get the
 * new Protocol, and live ones its upgrade(instance) when defined. */
void reload_now(struct reload *r, const char *why);
/* Close its handles (before host_destroy runs the loop dry). */
void reload_close(struct reload *r);

#endif
