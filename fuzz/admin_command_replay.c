/*
 * admin_command_replay.c - the fuzz corpus as a test, without libFuzzer:
 * every file of the corpus directory goes through admin_command_check,
 * and each hand-written seed must parse as the table below says. A file
 * with a name of its own (not libFuzzer's 40-hex-digit hash) must have a
 * row, and every row its file.
 *   admin_command_replay DIR    exits 0, or 1 listing each failure
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_command.h"
#include "admin_command_check.h"
#include "log.h"

/* What a named seed must give; 'error' NULL: no error text. */
struct expect {
    const char *name;
    enum admin_verb verb;
    uint64_t id;
    int level;
    const char *error;
};

#define OK(n, v) {.name = (n), .verb = (v)}
#define BAD(n, e) {.name = (n), .verb = ADMIN_INVALID, .error = (e)}
#define KILL_NEEDS_ID "kill needs one connection id, a number (see show conns)"
#define NOT_AN_ID "': a connection id is a number from 1 (see show conns)"

static const struct expect expected[] = {
    OK("help", ADMIN_HELP),
    OK("show-info", ADMIN_SHOW_INFO),
    OK("show-conns", ADMIN_SHOW_CONNS),
    OK("show-errors", ADMIN_SHOW_ERRORS),
    {"kill-1", ADMIN_KILL, 1, 0, NULL},
    {"kill-max", ADMIN_KILL, (uint64_t)1 << 63, 0, NULL},
    {"kill-tabs", ADMIN_KILL, 42, 0, NULL},
    {"kill-leading-zeros", ADMIN_KILL, 7, 0, NULL},
    OK("reload", ADMIN_RELOAD),
    {"set-log-level-debug", ADMIN_SET_LOG_LEVEL, 0, LOG_DEBUG, NULL},
    {"set-log-level-error", ADMIN_SET_LOG_LEVEL, 0, LOG_ERROR, NULL},
    OK("quit", ADMIN_QUIT),
    OK("empty", ADMIN_EMPTY),
    OK("blanks", ADMIN_EMPTY),
    OK("crlf", ADMIN_SHOW_INFO),
    OK("only-cr", ADMIN_EMPTY),
    BAD("bad-unknown", "unknown command 'foo' (type help)"),
    BAD("bad-uppercase", "unknown command 'HELP' (type help)"),
    BAD("bad-kill-none", KILL_NEEDS_ID),
    BAD("bad-kill-two", KILL_NEEDS_ID),
    BAD("bad-kill-zero", "kill '0" NOT_AN_ID),
    BAD("bad-kill-overflow", "kill '9223372036854775809" NOT_AN_ID),
    BAD("bad-kill-overflow-u64", "kill '18446744073709551616" NOT_AN_ID),
    BAD("bad-kill-junk", "kill '12x" NOT_AN_ID),
    BAD("bad-kill-sign", "kill '+1" NOT_AN_ID),
    BAD("bad-show", "show needs one of: info, conns, errors (as in 'show info')"),
    BAD("bad-show-what", "cannot show 'cats': show info, show conns or show errors"),
    BAD("bad-show-extra", "show needs one of: info, conns, errors (as in 'show info')"),
    BAD("bad-help-arg", "help takes no argument, not 'me' (type help)"),
    BAD("bad-set", "set knows only log-level: set log-level error|warn|info|debug"),
    BAD("bad-set-what", "set knows only log-level: set log-level error|warn|info|debug"),
    BAD("bad-level", "unknown log level 'loud': error, warn, info or debug"),
    BAD("bad-level-missing", "set log-level needs one level: error, warn, info or debug"),
    BAD("bad-binary", "unknown command '\\x00\\xff\\x1b[2J' (type help)"),
    BAD("bad-cr-inside", "cannot show 'info\\x0d': show info, show conns or show errors"),
    BAD("bad-backslash", "unknown command 'a\\x5cx41' (type help)"),
    BAD("bad-long-word", "unknown command 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' (type help)"),
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
    struct admin_command c;
    admin_command_parse((const char *)data, len, &c);
    bool ok = c.verb == e->verb && c.id == e->id && c.level == e->level &&
              strcmp(c.error, e->error ? e->error : "") == 0;
    if (!ok)
        fprintf(stderr, "%s: verb %d id %llu level %d error '%s', expected verb %d id %llu level %d error '%s'\n",
                e->name, (int)c.verb, (unsigned long long)c.id, c.level, c.error, (int)e->verb,
                (unsigned long long)e->id, e->level, e->error ? e->error : "");
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
    bool ok = admin_command_check(data, len, why, sizeof why);
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
    printf("admin_command_replay: %zu files, %zu named seeds checked, %zu failures\n", files, N_EXPECTED,
           failures);
    return failures ? 1 : 0;
}
