/*
 * error_ring.c - see error_ring.h. A fixed ring of ERROR_RING_SIZE
 * entries; the oldest is dropped for the newest.
 */
#include "error_ring.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
    struct timespec when;
    char *callback, *peer, *message, *traceback;
    int worker, generation;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry ring[ERROR_RING_SIZE];
static unsigned next, count;

static char *copy(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void entry_free(struct entry *e)
{
    free(e->callback);
    free(e->peer);
    free(e->message);
    free(e->traceback);
    *e = (struct entry){0};
}

void error_ring_add(const struct error_entry_in *in)
{
    struct entry e = {.worker = in->worker, .generation = in->generation};
    clock_gettime(CLOCK_REALTIME, &e.when);
    e.callback = copy(in->callback);
    e.peer = copy(in->peer);
    e.message = copy(in->message ? in->message : "");
    e.traceback = copy(in->traceback);
    pthread_mutex_lock(&lock);
    entry_free(&ring[next]);
    ring[next] = e;
    next = (next + 1) % ERROR_RING_SIZE;
    if (count < ERROR_RING_SIZE)
        count++;
    pthread_mutex_unlock(&lock);
}

/* "2026-12-06T23:59:01.123Z", as the JSON log lines write time. */
static void format_time(const struct timespec *t, char *out, size_t size)
{
    struct tm tm;
    gmtime_r(&t->tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03ldZ", t->tv_nsec / 1000000);
}

/* Each line of 'text' indented by two spaces. */
static void indented(struct text_buf *out, const char *text)
{
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        text_buf_add(out, "  ", 2);
        text_buf_add(out, p, n);
        text_buf_add(out, "\n", 1);
        p += n;
        if (*p == '\n')
            p++;
    }
}

static void format_entry(struct text_buf *out, const struct entry *e)
{
    char when[40];
    format_time(&e->when, when, sizeof when);
    text_buf_printf(out, "%s %s %s worker %d", when, e->callback ? e->callback : "-", e->peer ? e->peer : "-",
                    e->worker);
    if (e->generation > 0)
        text_buf_printf(out, " generation %d", e->generation);
    text_buf_add(out, ": ", 2);
    /* One line per entry: a message's own newlines go with the traceback. */
    size_t first = strcspn(e->message, "\n");
    text_buf_add(out, e->message, first);
    text_buf_add(out, "\n", 1);
    if (e->message[first] == '\n')
        indented(out, e->message + first + 1);
    if (e->traceback)
        indented(out, e->traceback);
}

void error_ring_format(struct text_buf *out)
{
    pthread_mutex_lock(&lock);
    if (count == 0)
        text_buf_puts(out, "no errors\n");
    for (unsigned i = 0; i < count; i++)
        format_entry(out, &ring[(next + ERROR_RING_SIZE - count + i) % ERROR_RING_SIZE]);
    pthread_mutex_unlock(&lock);
}

void error_ring_clear(void)
{
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < ERROR_RING_SIZE; i++)
        entry_free(&ring[i]);
    next = count = 0;
    pthread_mutex_unlock(&lock);
}
