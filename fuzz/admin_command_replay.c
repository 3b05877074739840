/*
 * admin_command_replay.c - the fuzz corpus as a test, without libFuzzer:
 * every file of the corpus directory goes through admin_command_check,
 * and each hand-written seed must parse as the table below says. A file
 * with a name of its own (not libFuzzer's 40-hex-digit hash) must have a
 * row, and every row its file. The walk is corpus.c's.
 *   admin_command_replay DIR    exits 0, or 1 listing each failure
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "admin_command.h"
#include "admin_command_check.h"
#include "corpus.h"
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
    OK("show-generations", ADMIN_SHOW_GENERATIONS),
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
    BAD("bad-show", "show needs one of: info, conns, errors, generations (as in 'show info')"),
    BAD("bad-show-what", "cannot show 'cats': show info, show conns, show errors or show generations"),
    BAD("bad-show-extra", "show needs one of: info, conns, errors, generations (as in 'show info')"),
    BAD("bad-help-arg", "help takes no argument, not 'me' (type help)"),
    BAD("bad-set", "set knows only log-level: set log-level error|warn|info|debug"),
    BAD("bad-set-what", "set knows only log-level: set log-level error|warn|info|debug"),
    BAD("bad-level", "unknown log level 'loud': error, warn, info or debug"),
    BAD("bad-level-missing", "set log-level needs one level: error, warn, info or debug"),
    BAD("bad-binary", "unknown command '\\x00\\xff\\x1b[2J' (type help)"),
    BAD("bad-cr-inside", "cannot show 'info\\x0d': show info, show conns, show errors or show generations"),
    BAD("bad-backslash", "unknown command 'a\\x5cx41' (type help)"),
    BAD("bad-long-word", "unknown command 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' (type help)"),
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

/* The named seed of row i, whose bytes are 'data': as the table says? */
static bool check_seed(size_t i, const unsigned char *data, size_t len)
{
    const struct expect *e = &expected[i];
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

/* The file name of row i. */
static const char *seed_name(size_t i)
{
    return expected[i].name;
}

int main(int argc, char **argv)
{
    static const struct corpus_target target = {
        .name = "admin_command_replay",
        .table = __FILE__,
        .check = admin_command_check,
        .seeds = N_EXPECTED,
        .seed_name = seed_name,
        .check_seed = check_seed,
    };
    return corpus_replay(&target, argc, argv);
}
