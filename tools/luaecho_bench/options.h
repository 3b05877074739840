/*
 * options.h - luaecho-bench's command line: every flag checked completely;
 * a wrong one is one line on stderr and exit status 2, --help the whole text.
 */
#ifndef LUAECHO_BENCH_OPTIONS_H
#define LUAECHO_BENCH_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "listen_spec.h"

enum expect_mode { EXPECT_ECHO, EXPECT_PREFIX, EXPECT_LINE, EXPECT_NONE };

#define BENCH_MAX_SIZE (16u << 20)
#define BENCH_UDP_MAX 65507u

struct bench_options {
    const char *target_text;
    struct listen_spec target;
    int conns;
    size_t size;
    double duration, warmup;
    int pipeline;
    double rate;               /* requests per second over all connections together; 0: closed loop */
    enum expect_mode expect;
    const char *prefix;        /* EXPECT_PREFIX */
    size_t prefix_len;
    bool json;
    int server_pid;            /* 0: none */
    int hold;                  /* 0: a load run */
    const char *ca, *server_name;
};

/* Fill 'o' from argv. Returns -1 when the run should go on, else the exit
 * status (0 after --help, 2 after a bad flag, already reported). */
int options_parse(int argc, char **argv, struct bench_options *o);
const char *expect_name(enum expect_mode mode);

#endif
