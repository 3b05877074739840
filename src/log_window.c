/*
 * log_window.c - one line, then a count, per kind of repeated failure.
 * A small table of open windows under one mutex: failures are rare next to
 * traffic, and a flood of one kind touches one entry. When the table is
 * full, the oldest window is summed up early to make room. A thread of its
 * own, started at the first repeat, writes each summary when its window
 * ends and otherwise sleeps: no loop wakes up for it.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "log_window.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WINDOWS 64
#define KEY_MAX 200
#define FIRST_LINE_MAX 300
#define FIELD_MAX 96

struct window {
    bool open;
    enum log_level level;
    uint64_t started_ms;
    unsigned repeats;
    char key[KEY_MAX];
    char first_line[FIRST_LINE_MAX]; /* what the summary repeats */
    /* and the fields of the first line that the summary repeats: */
    char callback[FIELD_MAX], peer[FIELD_MAX], listener[FIELD_MAX];
    int generation;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct window windows[WINDOWS];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_cond_t repeated; /* a window got its first repeat */
static bool summarizing;        /* the thread runs */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Close w, writing how many repeats it held back, if any. Under lock. */
static void close_window(struct window *w, uint64_t now)
{
    if (w->repeats > 0) {
        struct log_fields f = {
            .callback = w->callback[0] ? w->callback : NULL,
            .peer = w->peer[0] ? w->peer : NULL,
            .listener = w->listener[0] ? w->listener : NULL,
            .generation = w->generation,
            .suppressed = w->repeats,
        };
        log_with(w->level, &f, "%s (and %u more like it in the last %g s)", w->first_line, w->repeats,
                 (double)((now - w->started_ms + 500) / 1000));
    }
    w->open = false;
}

/* The open window for 'key', or NULL. Under lock. */
static struct window *find(const char *key)
{
    for (int i = 0; i < WINDOWS; i++) {
        if (windows[i].open && strcmp(windows[i].key, key) == 0)
            return &windows[i];
    }
    return NULL;
}

/* A free entry, summing up the oldest window when none is. Under lock. */
static struct window *claim(uint64_t now)
{
    struct window *oldest = &windows[0];
    for (int i = 0; i < WINDOWS; i++) {
        if (!windows[i].open)
            return &windows[i];
        if (windows[i].started_ms < oldest->started_ms)
            oldest = &windows[i];
    }
    close_window(oldest, now);
    return oldest;
}

static void summarize_later(void);

static void copy_first_line(char *out, const char *message)
{
    size_t len = strcspn(message, "\n");
    if (len >= FIRST_LINE_MAX)
        len = FIRST_LINE_MAX - 1;
    memcpy(out, message, len);
    out[len] = '\0';
}

void log_window(const char *key, enum log_level level, const char *message)
{
    log_window_with(key, level, NULL, message);
}

void log_window_with(const char *key, enum log_level level, const struct log_fields *fields, const char *message)
{
    if (!log_enabled(level))
        return;
    uint64_t now = now_ms();
    pthread_mutex_lock(&lock);
    struct window *w = find(key);
    if (w && now - w->started_ms >= LOG_WINDOW_MS) {
        close_window(w, now);
        w = NULL;
    }
    if (w) {
        if (w->repeats++ == 0)
            summarize_later();
        pthread_mutex_unlock(&lock);
        return;
    }
    w = claim(now);
    *w = (struct window){.open = true, .level = level, .started_ms = now};
    snprintf(w->key, sizeof w->key, "%s", key);
    copy_first_line(w->first_line, message);
    if (fields) {
        snprintf(w->callback, sizeof w->callback, "%s", fields->callback ? fields->callback : "");
        snprintf(w->peer, sizeof w->peer, "%s", fields->peer ? fields->peer : "");
        snprintf(w->listener, sizeof w->listener, "%s", fields->listener ? fields->listener : "");
        w->generation = fields->generation;
    }
    log_with(level, fields, "%s", message); /* under the lock: its summary cannot come first */
    pthread_mutex_unlock(&lock);
}

/* Close the windows that have ended (all of them with 'all'); returns when
 * the next one with repeats ends (0: none). Under lock. */
static uint64_t close_ended(bool all, uint64_t now)
{
    uint64_t next = 0;
    for (int i = 0; i < WINDOWS; i++) {
        struct window *w = &windows[i];
        if (!w->open)
            continue;
        uint64_t end = w->started_ms + LOG_WINDOW_MS;
        if (all || now >= end)
            close_window(w, now);
        else if (w->repeats > 0 && (next == 0 || end < next))
            next = end;
    }
    return next;
}

void log_window_flush(bool all)
{
    pthread_mutex_lock(&lock);
    close_ended(all, now_ms());
    pthread_mutex_unlock(&lock);
}

/* The summarizing thread: sleep until the next window with repeats ends. */
static void *summarize(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "log-window");
    pthread_mutex_lock(&lock);
    for (;;) {
        uint64_t next = close_ended(false, now_ms());
        if (next == 0) {
            pthread_cond_wait(&repeated, &lock);
            continue;
        }
        struct timespec at = {.tv_sec = (time_t)(next / 1000), .tv_nsec = (long)(next % 1000) * 1000000};
        pthread_cond_timedwait(&repeated, &lock, &at);
    }
    return NULL;
}

static void init_once(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the clock now_ms() reads */
    pthread_cond_init(&repeated, &attr);
    pthread_condattr_destroy(&attr);
}

/* A window has repeats to sum up: make sure the thread will. Under lock. */
static void summarize_later(void)
{
    pthread_once(&once, init_once);
    if (!summarizing) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        summarizing = pthread_create(&thread, &attr, summarize, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_cond_signal(&repeated);
}
