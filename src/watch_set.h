/*
 * watch_set.h - the files --watch follows (the script, the TLS files, the
 * modules the script required from its directory) and the one callback a
 * change of any of them makes.
 * Directories are watched, not files: an editor's save-by-rename and a
 * Kubernetes ConfigMap's `..data` symlink swap both replace a file
 * without writing it. An event only wakes the set up; a change is a
 * difference in what stat() (through symlinks) says of the files, checked
 * once events have settled for 100 ms, so a burst of events, or events
 * that change nothing (a ConfigMap's old directory removed), reload once
 * or not at all.
 */
#ifndef LUAECHO_WATCH_SET_H
#define LUAECHO_WATCH_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct watched_dir;

struct watch_set {
    uv_loop_t *loop;
    char **files;       /* followed: the first 'fixed' for good, the rest the modules */
    size_t count, fixed;
    uint64_t fingerprint; /* of the files as last seen */
    struct watched_dir *dirs;
    uv_timer_t settle;
    void (*changed)(void *data);
    void *data;
    bool open;
};

/* Start empty; changed(data) is called on the loop when a followed file
 * has changed. Its handles never keep the loop alive. */
void watch_set_init(struct watch_set *ws, uv_loop_t *loop, void (*changed)(void *data), void *data);
/* Follow 'path' for good (the script, a certificate). Returns 0, or -1
 * after logging why. */
int watch_set_add(struct watch_set *ws, const char *path);
/* Follow these module files from now on: instead of the earlier list
 * ('replace'), or besides it (a candidate that stopped half-way through
 * its requires: the module that broke it must stay followed). */
void watch_set_modules(struct watch_set *ws, char *const *paths, size_t n, bool replace);
void watch_set_close(struct watch_set *ws);

#endif
