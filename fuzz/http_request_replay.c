/*
 * http_request_replay.c - the fuzz corpus as a test, without libFuzzer:
 * every file of the corpus directory goes through http_request_check
 * (whole and its prefixes), and each hand-written seed must parse as the
 * table below says. A file with a name of its own (not libFuzzer's
 * 40-hex-digit hash) must have a row, and every row its file. The walk
 * is corpus.c's.
 *   http_request_replay DIR    exits 0, or 1 listing each failure
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "http_request.h"
#include "http_request_check.h"
#include "corpus.h"

/* What a named seed must give; method and path only for HTTP_DONE. */
struct expect {
    const char *name;
    enum http_parse result;
    const char *method;
    const char *path;
    int minor;
    size_t head_len;
};

#define BAD(n) {.name = (n), .result = HTTP_BAD}
#define INCOMPLETE(n) {.name = (n), .result = HTTP_INCOMPLETE}
#define TOO_LARGE(n) {.name = (n), .result = HTTP_TOO_LARGE}

static const struct expect expected[] = {
    {"get_metrics", HTTP_DONE, "GET", "/metrics", 1, 34},
    {"get-healthz-http10", HTTP_DONE, "GET", "/healthz", 0, 25},
    {"get-no-headers", HTTP_DONE, "GET", "/metrics", 1, 25},
    {"head-metrics", HTTP_DONE, "HEAD", "/metrics", 1, 35},
    {"get-query", HTTP_DONE, "GET", "/metrics", 1, 48},
    {"get-bare-lf", HTTP_DONE, "GET", "/metrics", 1, 51},
    {"post-body-after-head", HTTP_DONE, "POST", "/metrics", 1, 54},
    {"get-curl", HTTP_DONE, "GET", "/metrics", 1, 85},
    {"get-empty-value", HTTP_DONE, "GET", "/", 1, 34},
    {"get-obs-text-value", HTTP_DONE, "GET", "/healthz", 1, 40},
    {"get-longest-method", HTTP_DONE, "ABCDEFGHIJKLMNO", "/", 1, 39},
    {"get-longest-path", HTTP_DONE, "GET", NULL, 1, 1040},
    {"get-head-exactly-max", HTTP_DONE, "GET", "/metrics", 1, HTTP_HEAD_MAX},
    INCOMPLETE("incomplete-request-line"),
    INCOMPLETE("incomplete-headers"),
    INCOMPLETE("incomplete-cr-at-end"),
    BAD("bad-version-http2"),
    BAD("bad-version-http09"),
    BAD("bad-lowercase-version"),
    BAD("bad-absolute-form"),
    BAD("bad-asterisk-form"),
    BAD("bad-control-byte-in-path"),
    BAD("bad-nul-in-header"),
    BAD("bad-control-byte-in-header-name"),
    BAD("bad-cr-inside-line"),
    BAD("bad-obs-fold"),
    BAD("bad-space-before-colon"),
    BAD("bad-method-too-long"),
    BAD("bad-path-too-long"),
    BAD("bad-empty-request-line"),
    BAD("bad-double-space"),
    BAD("bad-no-version"),
    BAD("bad-trailing-space-after-version"),
    BAD("bad-header-without-colon"),
    BAD("bad-del-in-value"),
    TOO_LARGE("too-large-headers"),
    TOO_LARGE("too-large-one-line"),
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

/* The named seed of row i, whose bytes are 'data': as the table says? */
static bool check_seed(size_t i, const unsigned char *data, size_t len)
{
    const struct expect *e = &expected[i];
    struct http_request req;
    enum http_parse r = http_request_parse((const char *)data, len, &req);
    if (r != e->result) {
        fprintf(stderr, "%s: %s, expected %s\n", e->name, http_parse_name(r), http_parse_name(e->result));
        return false;
    }
    if (r != HTTP_DONE)
        return true;
    bool ok = strcmp(req.method, e->method) == 0 && (!e->path || strcmp(req.path, e->path) == 0) &&
              req.minor == e->minor && req.head_len == e->head_len;
    if (!ok)
        fprintf(stderr, "%s: request differs from the table (%s %s HTTP/1.%d, head of %zu bytes)\n",
                e->name, req.method, req.path, req.minor, req.head_len);
    return ok;
}

/* The file name of row i. */
static const char *seed_name(size_t i)
{
    return expected[i].name;
}

int main(int argc, char **argv)
{
    static const struct corpus_target target = {
        .name = "http_request_replay",
        .table = __FILE__,
        .check = http_request_check,
        .seeds = N_EXPECTED,
        .seed_name = seed_name,
        .check_seed = check_seed,
    };
    return corpus_replay(&target, argc, argv);
}
