/*
 * selftest.h - a candidate script looked at in a Lua state of its own,
 * before it serves anyone: loaded under luaecho.testing (the fake host:
 * virtual clock, no sockets), its Protocol's selftest(testing) called when
 * it has one, and the files of the modules it required from its own
 * directory listed (what --watch follows).
 * The state is thrown away afterwards: nothing it did reaches a serving
 * state. Runs on whichever thread calls it, and blocks that thread for at
 * most the time limit given.
 */
#ifndef LUAECHO_SELFTEST_H
#define LUAECHO_SELFTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct selftest_input {
    const char *lua_dir;    /* the bundled Lua files */
    const char *script_dir; /* the script's directory: its modules are found there */
    const char *source;     /* the candidate's text */
    size_t len;
    const char *chunkname;  /* "@path", as Lua names a file's chunk */
    uint64_t timeout_ms;    /* the whole look, load and selftest (0: none) */
    size_t memory_limit;    /* bytes, 0: none */
};

enum selftest_verdict {
    SELFTEST_NONE,      /* the Protocol has no selftest */
    SELFTEST_PASSED,
    SELFTEST_FAILED,    /* it raised or returned false: 'message' says what */
    SELFTEST_NOT_LOADED /* the script does not load under luaecho.testing: 'message' says why */
};

struct selftest_result {
    enum selftest_verdict verdict;
    char *message;  /* malloc'd, or NULL */
    char **modules; /* malloc'd paths of the modules it loaded from script_dir */
    size_t module_count;
};

/* Load the candidate in a fresh state and run its selftest. Never fails
 * as a whole: the verdict says what happened. Free with selftest_free. */
void selftest_run(const struct selftest_input *in, struct selftest_result *out);
void selftest_free(struct selftest_result *r);

#endif
