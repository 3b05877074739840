/*
 * admin_command.c - see admin_command.h. One console line split into words
 * (spaces and tabs) and matched against the few commands there are.
 * Relies on nothing but log.h's enum (the level names are matched here,
 * so the parser stays pure and its fuzz target links nothing else).
 * Rule: every byte of 'error' is printable ASCII, whatever the line held:
 * it is written to a terminal as it is.
 */
#include "admin_command.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* More words than any command takes: enough to tell "too many". */
#define MAX_WORDS 4
/* A word quoted in an error message is cut to this many bytes of text. */
#define QUOTE_MAX 40

struct word {
    const char *p;
    size_t n;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Split 'line' into at most MAX_WORDS words; returns how many there are
 * (MAX_WORDS also meaning "that many or more"). */
static size_t split_words(const char *line, size_t len, struct word *w)
{
    size_t count = 0, i = 0;
    while (count < MAX_WORDS) {
        while (i < len && is_blank(line[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && !is_blank(line[i]))
            i++;
        w[count++] = (struct word){line + start, i - start};
    }
    return count;
}

static bool word_is(const struct word *w, const char *s)
{
    return w->n == strlen(s) && memcmp(w->p, s, w->n) == 0;
}

/* 'w' as safe text for an error message: bytes that are not printable
 * ASCII (and the backslash, so \xNN is never ambiguous) become \xNN; cut
 * at QUOTE_MAX bytes of text with "..." after. 'out' has QUOTE_MAX + 4. */
static const char *quote_word(const struct word *w, char out[QUOTE_MAX + 4])
{
    size_t o = 0;
    for (size_t i = 0; i < w->n; i++) {
        unsigned char c = (unsigned char)w->p[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need > QUOTE_MAX) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (plain)
            out[o] = (char)c;
        else
            snprintf(out + o, 5, "\\x%02x", c);
        o += need;
    }
    out[o] = '\0';
    return out;
}

static void fail(struct admin_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct admin_command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd->error, sizeof cmd->error, fmt, ap);
    va_end(ap);
    cmd->verb = ADMIN_INVALID;
}

/* A connection id: decimal digits only, 1 to 2^63 (what show conns lists). */
static bool parse_id(const struct word *w, uint64_t *id)
{
    const uint64_t max = (uint64_t)1 << 63;
    uint64_t v = 0;
    if (w->n == 0)
        return false;
    for (size_t i = 0; i < w->n; i++) {
        char c = w->p[i];
        if (c < '0' || c > '9')
            return false;
        unsigned d = (unsigned)(c - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *id = v;
    return v >= 1;
}

static bool parse_level(const struct word *w, int *level)
{
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {{"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}};
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
        if (word_is(w, levels[i].name)) {
            *level = (int)levels[i].level;
            return true;
        }
    }
    return false;
}

/* "help", "reload", "quit": no argument. */
static void parse_bare(const struct word *w, size_t count, enum admin_verb verb, struct admin_command *cmd)
{
    char q[QUOTE_MAX + 4];
    if (count > 1)
        fail(cmd, "%.*s takes no argument, not '%s' (type help)", (int)w[0].n, w[0].p, quote_word(&w[1], q));
    else
        cmd->verb = verb;
}

static void parse_show(const struct word *w, size_t count, struct admin_command *cmd)
{
    char q[QUOTE_MAX + 4];
    if (count != 2) {
        fail(cmd, "show needs one of: info, conns, errors, generations (as in 'show info')");
        return;
    }
    if (word_is(&w[1], "info"))
        cmd->verb = ADMIN_SHOW_INFO;
    else if (word_is(&w[1], "conns"))
        cmd->verb = ADMIN_SHOW_CONNS;
    else if (word_is(&w[1], "errors"))
        cmd->verb = ADMIN_SHOW_ERRORS;
    else if (word_is(&w[1], "generations"))
        cmd->verb = ADMIN_SHOW_GENERATIONS;
    else
        fail(cmd, "cannot show '%s': show info, show conns, show errors or show generations", quote_word(&w[1], q));
}

static void parse_kill(const struct word *w, size_t count, struct admin_command *cmd)
{
    char q[QUOTE_MAX + 4];
    if (count != 2)
        fail(cmd, "kill needs one connection id, a number (see show conns)");
    else if (!parse_id(&w[1], &cmd->id))
        fail(cmd, "kill '%s': a connection id is a number from 1 (see show conns)", quote_word(&w[1], q));
    else
        cmd->verb = ADMIN_KILL;
}

static void parse_set(const struct word *w, size_t count, struct admin_command *cmd)
{
    char q[QUOTE_MAX + 4];
    if (count < 2 || !word_is(&w[1], "log-level"))
        fail(cmd, "set knows only log-level: set log-level error|warn|info|debug");
    else if (count != 3)
        fail(cmd, "set log-level needs one level: error, warn, info or debug");
    else if (!parse_level(&w[2], &cmd->level))
        fail(cmd, "unknown log level '%s': error, warn, info or debug", quote_word(&w[2], q));
    else
        cmd->verb = ADMIN_SET_LOG_LEVEL;
}

void admin_command_parse(const char *line, size_t len, struct admin_command *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    struct word w[MAX_WORDS];
    size_t count = split_words(line, len, w);
    char q[QUOTE_MAX + 4];
    if (count == 0)
        cmd->verb = ADMIN_EMPTY;
    else if (word_is(&w[0], "help"))
        parse_bare(w, count, ADMIN_HELP, cmd);
    else if (word_is(&w[0], "reload"))
        parse_bare(w, count, ADMIN_RELOAD, cmd);
    else if (word_is(&w[0], "quit"))
        parse_bare(w, count, ADMIN_QUIT, cmd);
    else if (word_is(&w[0], "show"))
        parse_show(w, count, cmd);
    else if (word_is(&w[0], "kill"))
        parse_kill(w, count, cmd);
    else if (word_is(&w[0], "set"))
        parse_set(w, count, cmd);
    else
        fail(cmd, "unknown command '%s' (type help)", quote_word(&w[0], q));
}
