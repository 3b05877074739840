/*
 * http_request_replay.c - the fuzz corpus as a test, without libFuzzer:
 * every file of the corpus directory goes through http_request_check
 * (whole and its prefixes), and each hand-written seed must parse as the
 * table below says. A file with a name of its own (not libFuzzer's
 * 40-hex-digit hash) must have a row, and every row its file.
 *   http_request_replay DIR    exits 0, or 1 listing each failure
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"
#include "http_request_check.h"

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

/* Read all of 'path' into a fresh buffer; NULL on failure. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *data = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            unsigned char *more = realloc(data, cap);
            if (!more)
                break;
            data = more;
        }
        size_t n = fread(data + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    bool ok = !ferror(f) && data;
    fclose(f);
    if (!ok) {
        free(data);
        return NULL;
    }
    return data;
}

/* libFuzzer names what it finds by the SHA-1 of its contents. */
static bool is_hash_name(const char *name)
{
    return strlen(name) == 40 && strspn(name, "0123456789abcdef") == 40;
}

static const struct expect *find_expect(const char *name)
{
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (strcmp(expected[i].name, name) == 0)
            return &expected[i];
    return NULL;
}

/* The named seed 'e', whose bytes are 'data': as the table says? */
static bool check_expect(const struct expect *e, const unsigned char *data, size_t len)
{
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

/* One corpus file: the promises, and its row if it has a name. */
static bool replay_file(const char *dir, const char *name, bool *seen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    unsigned char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "%s: cannot read\n", path);
        return false;
    }
    char why[256];
    bool ok = http_request_check(data, len, why, sizeof why);
    if (!ok)
        fprintf(stderr, "%s: %s\n", name, why);
    const struct expect *e = find_expect(name);
    if (e) {
        seen[e - expected] = true;
        ok = check_expect(e, data, len) && ok;
    } else if (!is_hash_name(name)) {
        fprintf(stderr, "%s: a named seed with no row in the table of %s\n", name, __FILE__);
        ok = false;
    }
    free(data);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    bool seen[N_EXPECTED] = {false};
    size_t files = 0, failures = 0;
    for (struct dirent *ent; (ent = readdir(d));) {
        if (ent->d_name[0] == '.')
            continue;
        files++;
        if (!replay_file(argv[1], ent->d_name, seen))
            failures++;
    }
    closedir(d);
    for (size_t i = 0; i < N_EXPECTED; i++) {
        if (!seen[i]) {
            fprintf(stderr, "%s: in the table, missing from %s\n", expected[i].name, argv[1]);
            failures++;
        }
    }
    printf("http_request_replay: %zu files, %zu named seeds checked, %zu failures\n", files,
           N_EXPECTED, failures);
    return failures ? 1 : 0;
}
