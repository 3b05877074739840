/*
 * record_dir.c - the --record directory and its --record-max bound.
 * Relies on POSIX files and libuv's mutex. The finished transcripts form
 * a queue, oldest first; reserving bytes past the bound deletes from its
 * head. Rule: 'total' counts every byte written or reserved in DIR, and
 * changes only under the lock, so workers never overshoot together.
 */
#include "record_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

struct finished {
    char *name;
    uint64_t size;
};

struct recorder {
    char *dir;
    char *script;
    uint64_t max;
    uv_mutex_t lock;
    uint64_t total;          /* bytes in DIR's transcripts, written or reserved */
    struct finished *queue;  /* [head, head + count): oldest first */
    size_t head, count, cap;
};

/* Append a finished file to the queue (called under the lock, or alone at start-up). */
static bool queue_push(struct recorder *r, const char *name, uint64_t size)
{
    if (r->head > 0 && r->head + r->count == r->cap) { /* room at the front: slide down */
        memmove(r->queue, r->queue + r->head, r->count * sizeof *r->queue);
        r->head = 0;
    }
    if (r->head + r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct finished *q = realloc(r->queue, cap * sizeof *q);
        if (!q)
            return false;
        r->queue = q;
        r->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return false;
    r->queue[r->head + r->count++] = (struct finished){.name = copy, .size = size};
    r->total += size;
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct finished *)a)->name, ((const struct finished *)b)->name);
}

static bool is_transcript_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && name[0] != '.' && strcmp(name + n - 4, ".rec") == 0;
}

/* The transcripts an earlier run left, oldest (by name) first. */
static int scan_existing(struct recorder *r, char *why, size_t len)
{
    DIR *d = opendir(r->dir);
    if (!d) {
        snprintf(why, len, "--record %s: cannot read the directory: %s", r->dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!is_transcript_name(e->d_name) || fstatat(dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (!queue_push(r, e->d_name, (uint64_t)st.st_size)) {
            closedir(d);
            snprintf(why, len, "--record %s: out of memory listing its transcripts", r->dir);
            return -1;
        }
    }
    closedir(d);
    if (r->count > 1)
        qsort(r->queue + r->head, r->count, sizeof *r->queue, by_name);
    return 0;
}

/* DIR exists (made 0700 if it did not) and takes a new file. */
static int check_dir(const char *dir, char *why, size_t len)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, len, "--record %s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(why, len, "--record %s: not a directory", dir);
        return -1;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.luaecho-probe-%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, len, "--record %s: cannot create files in it: %s", dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

struct recorder *recorder_open(const char *dir, uint64_t max_bytes, const char *script, char *why, size_t len)
{
    if (strlen(dir) > 3000) {
        snprintf(why, len, "--record: the directory's path is too long");
        return NULL;
    }
    if (check_dir(dir, why, len) != 0)
        return NULL;
    struct recorder *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(dir)) || !(r->script = strdup(script)) || uv_mutex_init(&r->lock) != 0) {
        snprintf(why, len, "--record %s: out of memory", dir);
        if (r) {
            free(r->dir);
            free(r->script);
        }
        free(r);
        return NULL;
    }
    r->max = max_bytes;
    if (scan_existing(r, why, len) != 0) {
        recorder_close(r);
        return NULL;
    }
    return r;
}

void recorder_close(struct recorder *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        free(r->queue[r->head + i].name);
    free(r->queue);
    uv_mutex_destroy(&r->lock);
    free(r->dir);
    free(r->script);
    free(r);
}

const char *recorder_dir(const struct recorder *r)
{
    return r->dir;
}

const char *recorder_script(const struct recorder *r)
{
    return r->script;
}

/* Delete the oldest finished transcript (under the lock). */
static void delete_oldest(struct recorder *r)
{
    struct finished *f = &r->queue[r->head++];
    r->count--;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->dir, f->name);
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("--record-max: cannot delete %s: %s", path, strerror(errno));
    r->total -= f->size < r->total ? f->size : r->total;
    free(f->name);
}

bool recorder_reserve(struct recorder *r, uint64_t n)
{
    uv_mutex_lock(&r->lock);
    while (r->total + n > r->max && r->count > 0)
        delete_oldest(r);
    bool ok = r->total + n <= r->max;
    if (ok)
        r->total += n;
    uv_mutex_unlock(&r->lock);
    return ok;
}

void recorder_unreserve(struct recorder *r, uint64_t n)
{
    uv_mutex_lock(&r->lock);
    r->total -= n < r->total ? n : r->total;
    uv_mutex_unlock(&r->lock);
}

void recorder_finished(struct recorder *r, const char *name, uint64_t size)
{
    uv_mutex_lock(&r->lock);
    r->total -= size < r->total ? size : r->total; /* counted again as a finished file */
    if (!queue_push(r, name, size))
        r->total += size; /* out of memory: never deleted, but still counted */
    uv_mutex_unlock(&r->lock);
}
