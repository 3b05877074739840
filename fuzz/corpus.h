/*
 * corpus.h - a fuzz corpus replayed as a test, without libFuzzer: the part
 * the three replays (proxy_header, http_request, admin_command) share.
 * Every file of the corpus directory goes through the target's check, and
 * each hand-written seed must parse as the target's table says. A file
 * with a name of its own (not libFuzzer's 40-hex-digit hash) must have a
 * row, and every row its file. A replay gives its parts in a struct
 * corpus_target and calls corpus_replay from main.
 */
#ifndef LUAECHO_CORPUS_H
#define LUAECHO_CORPUS_H

#include <stdbool.h>
#include <stddef.h>

struct corpus_target {
    const char *name;  /* the program, for its summary line */
    const char *table; /* the file holding the table of seeds, for messages */
    /* The promises kept for any input: false with 'why' filled in. */
    bool (*check)(const unsigned char *data, size_t len, char *why, size_t why_len);
    size_t seeds;                     /* rows in the table */
    const char *(*seed_name)(size_t); /* the file name of row i */
    /* Seed i, whose bytes are 'data': as its row says? Prints why not. */
    bool (*check_seed)(size_t i, const unsigned char *data, size_t len);
};

/* Replay the corpus directory named by argv[1] ("usage" and 2 unless argc
 * is 2); prints each failure and a summary line, returns main's status. */
int corpus_replay(const struct corpus_target *t, int argc, char **argv);

#endif
