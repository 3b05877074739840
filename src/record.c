/*
 * record.c - one connection's transcript: "luaecho-record 1\n", then
 * events "NAME MICROSECONDS LENGTH\n" + LENGTH bytes + "\n" (the header's
 * fields are events at time 0, before any other). Binary-safe: the bytes
 * are never looked at.
 * Relies on record_dir.c for the directory and its bound, and on libuv's
 * thread pool. Events gather in memory; a batch of RECORD_BATCH bytes (and
 * the last one, at the end) is written by one work item on the pool, an
 * open(O_APPEND), write, close, off the loop's thread: a disk that blocks
 * (the kernel throttling dirty pages) never stalls the loop, and no
 * descriptor is held between batches. One batch at a time per record; the
 * record outlives its connection until its last batch is written.
 * Rule: a transcript that cannot be written (an I/O error, the bound
 * reached with only open transcripts in DIR, a disk too slow for
 * RECORD_BEHIND bytes) is cut: it keeps what it has, without an end
 * event, and records nothing more.
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

/* Bytes a record may gather while its last batch is still being
 * written: past them the disk is not keeping up, and it is cut. */
#define RECORD_BEHIND (16 * RECORD_BATCH)

struct record {
    struct recorder *dir;
    uv_loop_t *loop;
    uint64_t start_ns;
    char name[96];    /* in DIR */
    char *buf;        /* the batch being gathered */
    size_t len, cap;
    char *spare;      /* a written batch's buffer, kept for the next while talking */
    size_t spare_cap;
    uv_work_t work;   /* the batch being written, on the thread pool */
    char *out;        /* ... its bytes */
    size_t out_len, out_cap, out_done;
    int out_flags;    /* O_EXCL for the first batch: the file is new */
    int error;        /* its error (a libuv code), 0: none */
    uint64_t written; /* bytes in the file */
    bool busy;        /* a batch is being written */
    bool ended;       /* record_end() was called: free once written */
    bool created;     /* the file exists (first batch written) */
    bool cut;
    bool server_ended; /* the script closed or aborted */
};

static const char *const event_names[] = {
    [REC_IN] = "in",         [REC_OUT] = "out",     [REC_EOF] = "eof",
    [REC_WRITE_EOF] = "write_eof", [REC_CLOSE] = "close", [REC_ABORT] = "abort",
};

static struct log_rate io_rate, bound_rate;

static void next_batch(struct record *rec);

/* Cut the transcript: nothing more is gathered, the batch is dropped. */
static void cut(struct record *rec)
{
    rec->cut = true;
    free(rec->buf);
    free(rec->spare);
    rec->buf = rec->spare = NULL;
    rec->len = rec->cap = rec->spare_cap = 0;
}

static void path_of(const struct record *rec, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", recorder_dir(rec->dir), rec->name);
}

/* On libuv's thread pool: the batch appended to the file, in one open,
 * write(s), close. Touches only what start_batch() handed over. */
static void write_batch(uv_work_t *work)
{
    struct record *rec = work->data;
    char path[4096];
    path_of(rec, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | rec->out_flags, 0600);
    if (fd < 0) {
        rec->error = -errno;
        return;
    }
    while (rec->out_done < rec->out_len) {
        ssize_t n = write(fd, rec->out + rec->out_done, rec->out_len - rec->out_done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rec->error = n < 0 ? -errno : UV_EIO;
            break;
        }
        rec->out_done += (size_t)n;
    }
    if (close(fd) != 0 && !rec->error && errno != EINTR)
        rec->error = -errno;
}

/* Back on the loop: count what reached the file, then go on. The batch's
 * buffer becomes the next one while the connection is talking. */
static void after_batch(uv_work_t *work, int status)
{
    struct record *rec = work->data;
    rec->created = rec->created || rec->out_done > 0 || (!rec->error && status == 0);
    rec->written += rec->out_done;
    recorder_unreserve(rec->dir, rec->out_len - rec->out_done);
    if (rec->error || status != 0) {
        char path[4096];
        path_of(rec, path, sizeof path);
        log_limited(&io_rate, LOG_WARN, "--record: cannot write %s: %s; this transcript is cut short", path,
                    uv_strerror(rec->error ? rec->error : status));
        cut(rec);
    }
    if (!rec->cut && rec->len > 0 && !rec->spare) {
        rec->spare = rec->out;
        rec->spare_cap = rec->out_cap;
    } else {
        free(rec->out);
    }
    rec->out = NULL;
    rec->busy = false;
    next_batch(rec);
}

/* Hand the gathered batch to the thread pool (write_batch). */
static void start_batch(struct record *rec)
{
    if (!recorder_reserve(rec->dir, rec->len)) {
        char path[4096];
        path_of(rec, path, sizeof path);
        log_limited(&bound_rate, LOG_WARN, "--record-max reached: no room for %s even with every finished "
                    "transcript deleted, so it is cut short (raise --record-max)", path);
        cut(rec);
        next_batch(rec);
        return;
    }
    rec->out = rec->buf;
    rec->out_cap = rec->cap;
    rec->out_len = rec->len;
    rec->out_done = 0;
    rec->out_flags = rec->created ? 0 : O_EXCL;
    rec->error = 0;
    rec->buf = rec->spare; /* NULL for a connection gone quiet: it keeps no buffer */
    rec->cap = rec->spare_cap;
    rec->spare = NULL;
    rec->spare_cap = 0;
    rec->len = 0;
    rec->busy = true;
    rec->work.data = rec;
    uv_queue_work(rec->loop, &rec->work, write_batch, after_batch);
}

/* What comes next for an idle record: its next batch, or its end. */
static void next_batch(struct record *rec)
{
    if (rec->busy)
        return;
    if (!rec->cut && rec->len > 0 && (rec->ended || rec->len >= RECORD_BATCH)) {
        start_batch(rec);
        return;
    }
    if (rec->ended) {
        if (rec->created)
            recorder_finished(rec->dir, rec->name, rec->written);
        free(rec->buf);
        free(rec->spare);
        free(rec);
    }
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
        cut(rec);
        return;
    }
    memcpy(rec->buf + rec->len, head, (size_t)n);
    if (len)
        memcpy(rec->buf + rec->len + n, bytes, len);
    rec->len += (size_t)n + len;
    rec->buf[rec->len++] = '\n';
    if (rec->len < RECORD_BATCH)
        return;
    if (rec->busy && rec->len > RECORD_BEHIND) {
        log_limited(&io_rate, LOG_WARN, "--record: the disk does not keep up with %s (%d KiB waiting): it is cut "
                    "short", rec->name, RECORD_BEHIND / 1024);
        cut(rec);
    }
    next_batch(rec);
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
        cut(rec);
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

struct record *record_start(struct recorder *r, uv_loop_t *loop, const struct record_header *h)
{
    if (!r)
        return NULL;
    struct record *rec = calloc(1, sizeof *rec);
    if (!rec)
        return NULL;
    rec->dir = r;
    rec->loop = loop;
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
    /* A clean end the script did not ask for is the host's: a drain, say
     * (a peer's EOF that eof_received answered is recorded as a close). */
    const char *who = rec->server_ended ? "server" : why == END_RESET || why == END_ERROR ? "peer" : "host";
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
    rec->ended = true;
    next_batch(rec);
}
