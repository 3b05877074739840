/*
 * record.c - one connection's transcript: "luaecho-record 1\n", then
 * events "NAME MICROSECONDS LENGTH\n" + LENGTH bytes + "\n" (the header's
 * fields are events at time 0, before any other). Binary-safe: the bytes
 * are never looked at.
 * Relies on record_dir.c for the directory and its bound, and on libuv's
 * fs requests, which run on its thread pool. Events gather in memory; a
 * batch of RECORD_BATCH bytes (and the last one, at the end) is written by
 * an open(O_APPEND), write, close chain off the loop's thread, so a disk
 * that blocks (the kernel throttling dirty pages) never stalls the loop,
 * and no descriptor is held between batches. One chain at a time per
 * record; the record outlives its connection until its chain is done.
 * Rule: a transcript that cannot be written (an I/O error, the bound
 * reached with only open transcripts in DIR, a disk too slow for
 * RECORD_BEHIND bytes) is cut: it keeps what it has, without an end
 * event, and records nothing more.
 */
#include "record.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
    uv_fs_t req;      /* the chain in flight: open, write..., close */
    char *out;        /* the batch it writes */
    size_t out_len, out_done;
    uv_file fd;
    int error;        /* the chain's first error (a libuv code), 0: none */
    uint64_t written; /* bytes in the file */
    bool busy;        /* a chain is in flight */
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
    rec->buf = NULL;
    rec->len = rec->cap = 0;
}

static void path_of(const struct record *rec, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", recorder_dir(rec->dir), rec->name);
}

/* The chain is over: count what reached the file, then go on. */
static void after_close(uv_fs_t *req)
{
    struct record *rec = req->data;
    uv_fs_req_cleanup(req);
    rec->written += rec->out_done;
    recorder_unreserve(rec->dir, rec->out_len - rec->out_done);
    if (rec->error) {
        char path[4096];
        path_of(rec, path, sizeof path);
        log_limited(&io_rate, LOG_WARN, "--record: cannot write %s: %s; this transcript is cut short", path,
                    uv_strerror(rec->error));
        cut(rec);
    }
    free(rec->out);
    rec->out = NULL;
    rec->busy = false;
    next_batch(rec);
}

/* Write what is left of the batch, or close once it is all written. */
static void after_write(uv_fs_t *req)
{
    struct record *rec = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n > 0)
        rec->out_done += (size_t)n;
    else
        rec->error = n < 0 ? (int)n : UV_EIO;
    if (!rec->error && rec->out_done < rec->out_len) {
        uv_buf_t b = uv_buf_init(rec->out + rec->out_done, (unsigned)(rec->out_len - rec->out_done));
        if ((rec->error = uv_fs_write(rec->loop, req, rec->fd, &b, 1, -1, after_write)) == 0)
            return;
    }
    if (uv_fs_close(rec->loop, req, rec->fd, after_close) != 0)
        after_close(req);
}

static void after_open(uv_fs_t *req)
{
    struct record *rec = req->data;
    ssize_t fd = req->result;
    uv_fs_req_cleanup(req);
    if (fd < 0) {
        rec->error = (int)fd;
        after_close(req);
        return;
    }
    rec->fd = (uv_file)fd;
    rec->created = true;
    uv_buf_t b = uv_buf_init(rec->out, (unsigned)rec->out_len);
    if ((rec->error = uv_fs_write(rec->loop, req, rec->fd, &b, 1, -1, after_write)) != 0 &&
        uv_fs_close(rec->loop, req, rec->fd, after_close) != 0)
        after_close(req);
}

/* Hand the gathered batch to a chain: open (created, the first time),
 * write, close, on libuv's thread pool. */
static void start_batch(struct record *rec)
{
    char path[4096];
    path_of(rec, path, sizeof path);
    if (!recorder_reserve(rec->dir, rec->len)) {
        log_limited(&bound_rate, LOG_WARN, "--record-max reached: no room for %s even with every finished "
                    "transcript deleted, so it is cut short (raise --record-max)", path);
        cut(rec);
        next_batch(rec);
        return;
    }
    rec->out = rec->buf;
    rec->out_len = rec->len;
    rec->out_done = 0;
    rec->error = 0;
    rec->buf = NULL;
    rec->len = rec->cap = 0; /* a connection gone quiet keeps no buffer */
    rec->busy = true;
    rec->req.data = rec;
    int flags = UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_APPEND | (rec->created ? 0 : UV_FS_O_EXCL);
    if ((rec->error = uv_fs_open(rec->loop, &rec->req, path, flags, 0600, after_open)) != 0)
        after_close(&rec->req);
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
    rec->ended = true;
    next_batch(rec);
}
