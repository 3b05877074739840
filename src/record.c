/*
 * record.c - one connection's transcript: "luaecho-record 1\n", then
 * events "NAME MICROSECONDS LENGTH\n" + LENGTH bytes + "\n" (the header's
 * fields are events at time 0, before any other). Binary-safe: the bytes
 * are never looked at.
 * Relies on record_dir.c for the directory and its bound. Events gather
 * in memory and go to the file RECORD_BATCH bytes at a time and at the
 * end, each batch one open(O_APPEND), write and close on the loop's
 * thread: no descriptor is held between batches, and a batch is one
 * system call's worth of page cache (docs/deploying.md has the cost).
 * Rule: a transcript that cannot be written (an I/O error, or the bound
 * reached with only open transcripts in DIR) is cut: it keeps what it has,
 * without an end event, and records nothing more.
 */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

struct record {
    struct recorder *dir;
    uint64_t start_ns;
    char name[96];    /* in DIR */
    char *buf;
    size_t len, cap;
    uint64_t written; /* bytes in the file */
    bool created;     /* the file exists (first batch written) */
    bool cut;
    bool server_ended; /* the script closed or aborted */
};

static const char *const event_names[] = {
    [REC_IN] = "in",         [REC_OUT] = "out",     [REC_EOF] = "eof",
    [REC_WRITE_EOF] = "write_eof", [REC_CLOSE] = "close", [REC_ABORT] = "abort",
};

static struct log_rate io_rate, bound_rate;

/* The batch is written (or dropped): a connection gone quiet keeps no
 * batch-sized buffer, one still talking keeps a small one. */
static void empty_batch(struct record *rec)
{
    rec->len = 0;
    if (rec->cap > 4096 || rec->cut) {
        free(rec->buf);
        rec->buf = NULL;
        rec->cap = 0;
    }
}

/* Write the gathered bytes to the file; on failure cut the transcript. */
static void flush(struct record *rec)
{
    if (rec->cut || rec->len == 0)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", recorder_dir(rec->dir), rec->name);
    if (!recorder_reserve(rec->dir, rec->len)) {
        log_limited(&bound_rate, LOG_WARN, "--record-max reached: no room for %s even with every finished "
                    "transcript deleted, so it is cut short (raise --record-max)", path);
        rec->cut = true;
        empty_batch(rec);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (rec->created ? 0 : O_EXCL), 0600);
    size_t done = 0;
    while (fd >= 0 && done < rec->len) {
        ssize_t n = write(fd, rec->buf + done, rec->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int saved = errno;
    if (fd >= 0)
        close(fd);
    rec->created = rec->created || fd >= 0;
    rec->written += done;
    recorder_unreserve(rec->dir, rec->len - done);
    if (done < rec->len) {
        log_limited(&io_rate, LOG_WARN, "--record: cannot write %s: %s; this transcript is cut short", path,
                    strerror(fd < 0 || done == 0 ? saved : EIO));
        rec->cut = true;
    }
    empty_batch(rec);
}

/* Room for 'n' more bytes in the batch. */
static bool reserve(struct record *rec, size_t n)
{
    if (rec->len + n <= rec->cap)
        return true;
    size_t cap = rec->cap ? rec->cap : 1024;
    while (cap < rec->len + n)
        cap *= 2;
    char *buf = realloc(rec->buf, cap);
    if (!buf)
        return false;
    rec->buf = buf;
    rec->cap = cap;
    return true;
}

/* Append one event; the batch goes to the file once it is big enough. */
static void append(struct record *rec, const char *name, uint64_t us, const char *bytes, size_t len)
{
    if (rec->cut)
        return;
    char head[64];
    int n = snprintf(head, sizeof head, "%s %" PRIu64 " %zu\n", name, us, len);
    if (!reserve(rec, (size_t)n + len + 1)) {
        log_limited(&io_rate, LOG_WARN, "--record: out of memory: %s is cut short", rec->name);
        rec->cut = true;
        return;
    }
    memcpy(rec->buf + rec->len, head, (size_t)n);
    if (len)
        memcpy(rec->buf + rec->len + n, bytes, len);
    rec->len += (size_t)n + len;
    rec->buf[rec->len++] = '\n';
    if (rec->len >= RECORD_BATCH)
        flush(rec);
}

static void append_text(struct record *rec, const char *name, const char *text)
{
    append(rec, name, 0, text, strlen(text));
}

/* The header: the format line, then its fields as events at time 0. */
static void write_header(struct record *rec, const struct record_header *h, const char *started)
{
    static const char magic[] = "luaecho-record 1\n";
    if (!reserve(rec, sizeof magic)) {
        rec->cut = true;
        return;
    }
    memcpy(rec->buf, magic, sizeof magic - 1);
    rec->len = sizeof magic - 1;
    char number[32];
    append_text(rec, "listener", h->listener ? h->listener : "");
    append_text(rec, "peer", h->peer ? h->peer : "");
    append_text(rec, "script", recorder_script(rec->dir));
    snprintf(number, sizeof number, "%d", h->generation);
    append_text(rec, "generation", number);
    snprintf(number, sizeof number, "%d", h->worker);
    append_text(rec, "worker", number);
    append_text(rec, "start", started);
}

struct record *record_start(struct recorder *r, const struct record_header *h)
{
    if (!r)
        return NULL;
    struct record *rec = calloc(1, sizeof *rec);
    if (!rec)
        return NULL;
    rec->dir = r;
    rec->start_ns = uv_hrtime();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[32], started[64];
    int us = (int)(now.tv_nsec / 1000);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    snprintf(rec->name, sizeof rec->name, "%s.%06dZ-%d-%" PRIu64 ".rec", stamp, us, h->worker,
             h->conn_id);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(started, sizeof started, "%s.%06dZ", stamp, us);
    write_header(rec, h, started);
    return rec;
}

static uint64_t elapsed_us(const struct record *rec)
{
    return (uv_hrtime() - rec->start_ns) / 1000;
}

void record_event(struct record *rec, enum record_event ev, const char *bytes, size_t len)
{
    if (!rec)
        return;
    if (ev == REC_CLOSE || ev == REC_ABORT) {
        if (rec->server_ended)
            return; /* the first way the script ended it is the one that counts */
        rec->server_ended = true;
    }
    append(rec, event_names[ev], elapsed_us(rec), bytes, len);
}

/* The end event's text: who ended the connection, why, and the error. */
static void format_end(const struct record *rec, enum stats_end why, const char *error, char *out, size_t len)
{
    const char *who = rec->server_ended                                 ? "server"
                      : why == END_RESET || why == END_ERROR || why == END_CLEAN ? "peer"
                                                                         : "host";
    if (error)
        snprintf(out, len, "%s %s: %s", who, stats_end_name(why), error);
    else
        snprintf(out, len, "%s %s", who, stats_end_name(why));
}

void record_end(struct record *rec, enum stats_end why, const char *error)
{
    if (!rec)
        return;
    char text[1024];
    format_end(rec, why, error, text, sizeof text);
    append(rec, "end", elapsed_us(rec), text, strlen(text));
    flush(rec);
    if (rec->created)
        recorder_finished(rec->dir, rec->name, rec->written);
    free(rec->buf);
    free(rec);
}
