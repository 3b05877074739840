/*
 * watch_set.c - the files --watch follows, through their directories.
 * Relies on libuv's fs events (inotify) on directories, and on stat()
 * following symlinks: the fingerprint of the set is what stat says of
 * each file (device, inode, size, modification time), so a symlink
 * pointed elsewhere, a file renamed over, or one written in place all
 * change it, and an event that changes none of them reloads nothing.
 * Rule: changed() is called only when the fingerprint differs from the
 * one last reported, so one change reloads once however many events it
 * makes. Every directory holding a followed file, or a symlink's target,
 * is watched; the list is brought up to date after every settle.
 */
#define _DEFAULT_SOURCE /* realpath */
#include "watch_set.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#define SETTLE_MS 100

struct watched_dir {
    uv_fs_event_t event;
    struct watch_set *ws;
    char *path;
    bool wanted;
    struct watched_dir *next;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        h = (h ^ (v & 0xff)) * 1099511628211u; /* FNV-1a */
    return h;
}

/* What stat() says of every followed file, folded into one number. */
static uint64_t fingerprint(const struct watch_set *ws)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < ws->count; i++) {
        struct stat st;
        if (stat(ws->files[i], &st) != 0) {
            h = mix(h, (uint64_t)errno);
            continue;
        }
        h = mix(mix(mix(h, (uint64_t)st.st_dev), (uint64_t)st.st_ino), (uint64_t)st.st_size);
        h = mix(mix(h, (uint64_t)st.st_mtim.tv_sec), (uint64_t)st.st_mtim.tv_nsec);
    }
    return h;
}

static void on_settled(uv_timer_t *timer);

/* Does 'name' (an event's file name) name a followed file? */
static bool names_a_file(const struct watch_set *ws, const char *name)
{
    for (size_t i = 0; i < ws->count; i++) {
        const char *slash = strrchr(ws->files[i], '/');
        if (strcmp(slash ? slash + 1 : ws->files[i], name) == 0)
            return true;
    }
    return false;
}

/* Is 'path' followed already? */
static bool names_a_path(const struct watch_set *ws, const char *path)
{
    for (size_t i = 0; i < ws->count; i++) {
        if (strcmp(ws->files[i], path) == 0)
            return true;
    }
    return false;
}

/* An event in a watched directory: a followed file's own name restarts
 * the settle timer (a burst of writes gives one look, once it settles);
 * any other name (a ConfigMap's ..data swap) starts it if it is idle, so
 * a busy directory cannot put the look off for ever. */
static void on_event(uv_fs_event_t *handle, const char *filename, int events, int status)
{
    struct watched_dir *d = handle->data;
    (void)events;
    if (status < 0) {
        log_warn("watching %s failed: %s", d->path, uv_strerror(status));
        return;
    }
    if ((filename && names_a_file(d->ws, filename)) || !uv_is_active((uv_handle_t *)&d->ws->settle))
        uv_timer_start(&d->ws->settle, on_settled, SETTLE_MS, 0);
}

static void free_dir(uv_handle_t *handle)
{
    struct watched_dir *d = handle->data;
    free(d->path);
    free(d);
}

/* Watch 'dir' (again: keep it). Returns 0 or a libuv error. */
static int want_dir(struct watch_set *ws, const char *dir)
{
    for (struct watched_dir *d = ws->dirs; d; d = d->next) {
        if (strcmp(d->path, dir) == 0) {
            d->wanted = true;
            return 0;
        }
    }
    struct watched_dir *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(dir))) {
        free(d);
        return UV_ENOMEM;
    }
    uv_fs_event_init(ws->loop, &d->event);
    d->event.data = d;
    d->ws = ws;
    d->wanted = true;
    d->next = ws->dirs;
    ws->dirs = d;
    uv_unref((uv_handle_t *)&d->event);
    return uv_fs_event_start(&d->event, on_event, dir, 0);
}

/* Watch the directory of 'file', and that of its target if it is a
 * symlink (or under one). Returns 0 or the first directory's error. */
static int want_dirs_of(struct watch_set *ws, const char *file)
{
    char copy[PATH_MAX], real[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", file);
    int rc = want_dir(ws, dirname(copy));
    if (realpath(file, real) && strcmp(real, file) != 0)
        want_dir(ws, dirname(real)); /* best effort: the named directory is what matters */
    return rc;
}

/* Bring the watched directories up to date with the files. */
static void sync_dirs(struct watch_set *ws)
{
    for (struct watched_dir *d = ws->dirs; d; d = d->next)
        d->wanted = false;
    for (size_t i = 0; i < ws->count; i++)
        want_dirs_of(ws, ws->files[i]);
    for (struct watched_dir **p = &ws->dirs; *p;) {
        struct watched_dir *d = *p;
        if (d->wanted) {
            p = &d->next;
            continue;
        }
        *p = d->next;
        uv_close((uv_handle_t *)&d->event, free_dir);
    }
}

static void on_settled(uv_timer_t *timer)
{
    struct watch_set *ws = timer->data;
    uint64_t now = fingerprint(ws);
    sync_dirs(ws); /* a symlink may point elsewhere now */
    if (now == ws->fingerprint)
        return;
    ws->fingerprint = now;
    ws->changed(ws->data);
}

void watch_set_init(struct watch_set *ws, uv_loop_t *loop, void (*changed)(void *data), void *data)
{
    *ws = (struct watch_set){.loop = loop, .changed = changed, .data = data, .open = true};
    uv_timer_init(loop, &ws->settle);
    ws->settle.data = ws;
    uv_unref((uv_handle_t *)&ws->settle);
}

int watch_set_add(struct watch_set *ws, const char *path)
{
    char **bigger = realloc(ws->files, (ws->count + 1) * sizeof *bigger);
    char *copy = strdup(path);
    if (bigger)
        ws->files = bigger;
    if (!bigger || !copy) {
        free(copy);
        log_error("cannot watch %s: %s", path, uv_strerror(UV_ENOMEM));
        return -1;
    }
    memmove(ws->files + ws->fixed + 1, ws->files + ws->fixed, (ws->count - ws->fixed) * sizeof *ws->files);
    ws->files[ws->fixed++] = copy; /* the fixed files come first */
    ws->count++;
    int rc = want_dirs_of(ws, path);
    ws->fingerprint = fingerprint(ws);
    if (rc != 0)
        log_error("cannot watch %s: %s", path, uv_strerror(rc));
    return rc == 0 ? 0 : -1;
}

void watch_set_modules(struct watch_set *ws, char *const *paths, size_t n, bool replace)
{
    if (!ws->open)
        return;
    /* A change not yet acted on (its settle timer still running, or not
     * yet started) must survive the new baseline: the look that sent this
     * list read the script before it. */
    bool pending = fingerprint(ws) != ws->fingerprint;
    for (size_t i = ws->fixed; replace && i < ws->count; i++)
        free(ws->files[i]);
    if (replace)
        ws->count = ws->fixed;
    char **bigger = realloc(ws->files, (ws->count + n + 1) * sizeof *bigger);
    if (!bigger)
        return;
    ws->files = bigger;
    for (size_t i = 0; i < n; i++) {
        if (!names_a_path(ws, paths[i]) && (ws->files[ws->count] = strdup(paths[i])))
            ws->count++;
    }
    sync_dirs(ws);
    ws->fingerprint = fingerprint(ws);
    if (pending) {
        ws->fingerprint = ~ws->fingerprint; /* differs from what the settle will see: it reloads */
        uv_timer_start(&ws->settle, on_settled, SETTLE_MS, 0);
    }
}

void watch_set_close(struct watch_set *ws)
{
    if (!ws->open)
        return;
    ws->open = false;
    uv_close((uv_handle_t *)&ws->settle, NULL);
    for (struct watched_dir *d = ws->dirs, *next; d; d = next) {
        next = d->next;
        uv_close((uv_handle_t *)&d->event, free_dir);
    }
    ws->dirs = NULL;
    for (size_t i = 0; i < ws->count; i++)
        free(ws->files[i]);
    free(ws->files);
    ws->files = NULL;
    ws->count = ws->fixed = 0;
}
