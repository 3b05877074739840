/*
 * admin_command.h - one line of the admin console parsed into a command:
 * pure, no allocation, no I/O (admin.c calls it; fuzz/ holds its
 * libFuzzer target).
 */
#ifndef LUAECHO_ADMIN_COMMAND_H
#define LUAECHO_ADMIN_COMMAND_H

#include <stddef.h>
#include <stdint.h>

enum admin_verb {
    ADMIN_EMPTY,       /* a blank line: answered with nothing */
    ADMIN_HELP,
    ADMIN_SHOW_INFO,
    ADMIN_SHOW_CONNS,
    ADMIN_SHOW_ERRORS,
    ADMIN_SHOW_GENERATIONS,
    ADMIN_KILL,        /* 'id' */
    ADMIN_RELOAD,
    ADMIN_SET_LOG_LEVEL, /* 'level' */
    ADMIN_QUIT,        /* "quit": close the session */
    ADMIN_INVALID,     /* 'error' says why, for "error: ..." */
};

struct admin_command {
    enum admin_verb verb;
    uint64_t id;
    int level;         /* an enum log_level */
    char error[160];
};

/* Parse one line (no newline; a trailing '\r' is ignored). */
void admin_command_parse(const char *line, size_t len, struct admin_command *cmd);

#endif
