/*
 * reload_check.h - --reload-check CMD: a shell command that judges a
 * candidate script before it serves anyone, run on the coordinator's loop
 * (never a serving one) against a snapshot copy of the candidate.
 * A non-zero exit, a signal or the timeout rejects; the last lines of what
 * it printed (stdout and stderr, in order) say why.
 */
#ifndef LUAECHO_RELOAD_CHECK_H
#define LUAECHO_RELOAD_CHECK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* ok, or false and a one-or-more-line message saying why. */
typedef void (*reload_check_cb)(void *data, bool ok, const char *message);

#define RELOAD_CHECK_TAIL 4096 /* bytes of output kept: the last ones */

struct reload_check {
    uv_loop_t *loop;
    uv_process_t process;
    uv_pipe_t output;   /* the child's stdout and stderr, one stream */
    uv_timer_t timer;   /* its timeout */
    char dir[PATH_MAX];   /* the snapshot's private directory (0700) */
    char file[PATH_MAX];  /* ... and the snapshot (0600), named as the script */
    char why[256];        /* it could not start: why */
    char tail[RELOAD_CHECK_TAIL];
    char readbuf[4096];
    size_t tail_len;
    double timeout;     /* seconds */
    int64_t exit_status;
    int term_signal;
    int open_handles;   /* handles not yet closed */
    bool running, exited, output_done, timed_out, cancelled, reported;
    reload_check_cb done;
    void *data;
};

/* Copy the candidate ('source', the script's text; 'script' its path) to
 * a snapshot, put its shell-quoted path where CMD says {script}, and run
 * CMD with sh -c in a process group of its own, killed after 'timeout'
 * seconds. done() is called once, from a close callback on the loop (so
 * never inside this call), also when it could not start, saying why. */
void reload_check_start(struct reload_check *c, uv_loop_t *loop, const char *cmd, double timeout,
                       const char *script, const char *source, size_t len, reload_check_cb done, void *data);
/* Kill a check that runs (shutdown): it ends rejected, "stopped". */
void reload_check_cancel(struct reload_check *c);

#endif
