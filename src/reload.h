/*
 * reload.h - hot swap of the served script, in two halves.
 * Triggers (coordinator side): SIGHUP, and with --watch a change of the
 * script, of a module it required from its directory, or of a TLS file
 * (watch_set.c: through symlinks, settled for 100 ms). Swapping (worker side): every worker
 * prepares the new code, and only when all of them could is it committed;
 * otherwise all discard it, so no worker runs other code than the rest.
 */
#ifndef LUAECHO_RELOAD_H
#define LUAECHO_RELOAD_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "protocol.h"
#include "watch_set.h"
#include "reload_policy.h"

struct server;
struct loop_context;

typedef void (*reload_fire_cb)(void *data, const char *why);

struct reload_trigger {
    char *path;        /* the script */
    char *dir;         /* its directory, watched (an editor may replace the file by rename) */
    char *name;        /* its file name, to pick its events out of the directory's */
    reload_fire_cb fire;
    void *data;
    uv_signal_t sighup;
    struct watch_set watched; /* with --watch: the script, its modules, the certificates */
    bool watching;
};

/* Call fire(data, why) on SIGHUP, and when 'watch', on changes of 'path'.
 * The handles are unreferenced: they never keep the loop alive.
 * Returns 0, or -1 after logging why. */
int reload_trigger_init(struct reload_trigger *t, uv_loop_t *loop, const char *path, bool watch,
                        reload_fire_cb fire, void *data);
/* With --watch: a change of 'path' (a certificate, a key) reloads too.
 * Returns 0, or -1 after logging why. */
int reload_trigger_watch_file(struct reload_trigger *t, uv_loop_t *loop, const char *path);
/* With --watch: follow these module files (the script's, from its
 * directory) from now on; 'complete' (the script loaded) replaces the
 * last list given, otherwise they are added to it. */
void reload_trigger_watch_modules(struct reload_trigger *t, char *const *paths, size_t n, bool complete);
/* Close its handles (then run the loop so they finish closing). */
void reload_trigger_close(struct reload_trigger *t);

/* New code loaded by one worker, waiting for the word to commit. */
struct reload_pending {
    struct protocol_class protocol;
    const char *dir;   /* the script's directory, whose modules were set aside */
    int modules_ref;   /* ... and those modules, to put back if it is discarded */
    bool modules_set_aside;
    bool has_upgrade;
    bool ready;
    struct reload_rule rule; /* its Protocol's reload_policy (reload_policy.h) */
    bool canary;       /* set before committing: --canary, so the swap starts a canary (see reload_commit) */
};

/* Load 'source' (the script's text, named 'chunkname' in messages) into a
 * fresh environment, after setting aside the modules required from 'dir'
 * (so the candidate loads them afresh). With 'datagrams' (a UDP
 * listener's name; NULL: none), the new Protocol must serve datagrams, as
 * at start. Returns 0, or -1 and a malloc'd message in *error; then
 * everything is as it was, modules included. */
int reload_prepare(lua_State *L, const char *dir, const char *chunkname, const char *source, size_t len,
                   const char *datagrams, struct reload_pending *pending, char **error);
/* Serve the new connections of the 'n' servers (NULL entries skipped)
 * with the pending code (generation+1), and with the "upgrade" policy call
 * its upgrade(instance) for their open connections; every UDP endpoint of
 * ctx that serves a listener has its one instance upgraded or replaced.
 * A canary (pending->canary) keeps the previous class for the rest of the
 * new connections and leaves open ones alone: its policy applies when it
 * is promoted (canary.c). Counts the open connections and those upgraded. */
void reload_commit(struct loop_context *ctx, struct server *const *servers, size_t n,
                   struct reload_pending *pending, size_t *open, size_t *upgraded);
/* Drop the pending code and put the modules set aside back. */
void reload_discard(lua_State *L, struct reload_pending *pending);

#endif
