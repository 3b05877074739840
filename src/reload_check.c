/*
 * reload_check.c - --reload-check CMD, run against a snapshot of the
 * candidate on the coordinator's loop.
 * Relies on libuv's process and pipe handles and on /bin/sh. The child
 * gets a session (so a process group) of its own: a timeout or a shutdown
 * kills the whole group, whatever the command started, and so does its
 * end, so nothing it left behind outlives the check.
 * Rule: done() is called exactly once, after every handle has closed and
 * the snapshot is gone; the output kept is bounded (the last 4 KiB).
 */
#include "reload_check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TAIL_LINES 10 /* lines of output shown */

/* The snapshot: a private directory and the candidate in it, 0600. */
static int write_snapshot(struct reload_check *c, const char *script, const char *source, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(c->dir, sizeof c->dir, "%s/luaecho-check-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof c->dir || !mkdtemp(c->dir)) {
        int rc = n < 0 || (size_t)n >= sizeof c->dir ? -ENAMETOOLONG : -errno;
        c->dir[0] = '\0';
        return rc;
    }
    const char *name = strrchr(script, '/');
    n = snprintf(c->file, sizeof c->file, "%s/%s", c->dir, name ? name + 1 : script);
    if (n < 0 || (size_t)n >= sizeof c->file) {
        c->file[0] = '\0';
        return -ENAMETOOLONG;
    }
    int fd = open(c->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, source + done, len - done);
        if (n < 0 && errno != EINTR) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        done += n > 0 ? (size_t)n : 0;
    }
    return close(fd) == 0 ? 0 : -errno;
}

/* CMD with every {script} replaced by the snapshot's path, single-quoted
 * for sh. malloc'd, or NULL when out of memory. */
static char *expand_command(const char *cmd, const char *path)
{
    size_t quoted = 2;
    for (const char *p = path; *p; p++)
        quoted += *p == '\'' ? 4 : 1;
    size_t count = 0;
    for (const char *p = strstr(cmd, "{script}"); p; p = strstr(p + 8, "{script}"))
        count++;
    char *out = malloc(strlen(cmd) + count * quoted + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = cmd; *p;) {
        if (strncmp(p, "{script}", 8) != 0) {
            *o++ = *p++;
            continue;
        }
        *o++ = '\'';
        for (const char *q = path; *q; q++) {
            if (*q == '\'') { /* end the quote, an escaped quote, quote again */
                memcpy(o, "'\\''", 4);
                o += 4;
            } else {
                *o++ = *q;
            }
        }
        *o++ = '\'';
        p += 8;
    }
    *o = '\0';
    return out;
}

/* Keep the last RELOAD_CHECK_TAIL bytes of the output. */
static void keep_tail(struct reload_check *c, const char *data, size_t n)
{
    if (n >= RELOAD_CHECK_TAIL) {
        memcpy(c->tail, data + n - RELOAD_CHECK_TAIL, RELOAD_CHECK_TAIL);
        c->tail_len = RELOAD_CHECK_TAIL;
        return;
    }
    size_t keep = c->tail_len + n > RELOAD_CHECK_TAIL ? RELOAD_CHECK_TAIL - n : c->tail_len;
    memmove(c->tail, c->tail + c->tail_len - keep, keep);
    memcpy(c->tail + keep, data, n);
    c->tail_len = keep + n;
}

/* Append the last non-empty lines of the output, each indented, to 'msg'. */
static void append_tail(const struct reload_check *c, char *msg, size_t size)
{
    size_t start = c->tail_len, lines = 0;
    while (start > 0 && lines < TAIL_LINES) {
        size_t end = start;
        while (start > 0 && c->tail[start - 1] != '\n')
            start--;
        bool blank = true;
        for (size_t i = start; i < end; i++)
            blank = blank && (c->tail[i] == ' ' || c->tail[i] == '\r' || c->tail[i] == '\n' || c->tail[i] == '\t');
        lines += blank ? 0 : 1;
        if (start > 0 && lines < TAIL_LINES)
            start--;
    }
    size_t used = strlen(msg);
    snprintf(msg + used, size - used, "%s", lines ? "; its output ended with:" : "; it printed nothing");
    for (size_t i = start; i < c->tail_len;) {
        size_t j = i;
        while (j < c->tail_len && c->tail[j] != '\n')
            j++;
        size_t k = j;
        while (k > i && (c->tail[k - 1] == '\r' || c->tail[k - 1] == ' ' || c->tail[k - 1] == '\t'))
            k--;
        used = strlen(msg);
        if (k > i)
            snprintf(msg + used, size - used, "\n  %.*s", (int)(k - i), c->tail + i);
        i = j + 1;
    }
}

/* Every handle has closed: remove the snapshot and say how it went. */
static void report(struct reload_check *c)
{
    if (c->file[0])
        unlink(c->file);
    if (c->dir[0])
        rmdir(c->dir);
    char msg[RELOAD_CHECK_TAIL + 512] = "";
    bool ok = false;
    if (c->why[0])
        snprintf(msg, sizeof msg, "--reload-check could not start: %s", c->why);
    else if (c->cancelled)
        snprintf(msg, sizeof msg, "reload check stopped: shutting down");
    else if (c->timed_out)
        snprintf(msg, sizeof msg, "reload check timed out after %g s", c->timeout);
    else if (c->term_signal)
        snprintf(msg, sizeof msg, "reload check killed by signal %d (%s)", c->term_signal, strsignal(c->term_signal));
    else if (c->exit_status != 0)
        snprintf(msg, sizeof msg, "reload check exited with status %lld", (long long)c->exit_status);
    else
        ok = true;
    if (!ok && !c->why[0])
        append_tail(c, msg, sizeof msg);
    c->running = false;
    c->done(c->data, ok, ok ? NULL : msg);
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct reload_check *c = handle->data;
    if (--c->open_handles == 0)
        report(c);
}

static void close_all(struct reload_check *c)
{
    uv_handle_t *handles[] = {(uv_handle_t *)&c->timer, (uv_handle_t *)&c->output, (uv_handle_t *)&c->process};
    for (size_t i = 0; i < 3; i++) {
        if (handles[i]->loop && !uv_is_closing(handles[i]))
            uv_close(handles[i], on_handle_closed);
    }
}

/* The command has exited and its output is read (or it timed out): done. */
static void maybe_finish(struct reload_check *c)
{
    if (c->exited && (c->output_done || c->timed_out || c->cancelled))
        close_all(c);
}

/* Kill the command's process group. on_exit calls it once more, just after
 * libuv reaped the shell, for what it left behind: the group's number
 * cannot be another's while any of them lives (POSIX keeps a process group
 * ID from reuse while the group has members); once the group is empty the
 * kill finds nobody. After that, never again. */
static void kill_group(struct reload_check *c)
{
    if (c->process.pid > 0 && !c->exited)
        kill(-c->process.pid, SIGKILL);
}

static void on_exit(uv_process_t *process, int64_t status, int signal)
{
    struct reload_check *c = process->data;
    kill_group(c); /* what it left behind would hold our pipe open (c->exited is still false here) */
    c->exited = true;
    c->exit_status = status;
    c->term_signal = signal;
    maybe_finish(c);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct reload_check *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->readbuf, sizeof c->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct reload_check *c = stream->data;
    if (nread > 0) {
        keep_tail(c, buf->base, (size_t)nread);
    } else if (nread < 0) {
        uv_read_stop(stream);
        c->output_done = true;
        maybe_finish(c);
    }
}

static void on_timeout(uv_timer_t *timer)
{
    struct reload_check *c = timer->data;
    c->timed_out = true;
    kill_group(c);
    maybe_finish(c); /* the command may have exited while its leftovers kept the pipe */
}

extern char **environ;

/* The child's environment: ours, with LUA_PATH_5_4 led by the script's own
 * directory. The snapshot sits alone in a directory of its own, so a check
 * that loads it (`luaecho replay DIR {script}`) finds the modules it
 * requires where the workers will: beside the script. malloc'd (the array
 * and its one new string, env[0]), or NULL when out of memory. */
static char **child_env(const char *script)
{
    const char *slash = strrchr(script, '/');
    int dir_len = slash ? (int)(slash - script) : 1;
    const char *dir = slash ? script : ".";
    const char *rest = getenv("LUA_PATH_5_4") ? getenv("LUA_PATH_5_4") : getenv("LUA_PATH");
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    size_t size = 2 * (size_t)dir_len + (rest ? strlen(rest) : 0) + 64;
    char *path = malloc(size);
    if (!env || !path) {
        free(env);
        free(path);
        return NULL;
    }
    snprintf(path, size, "LUA_PATH_5_4=%.*s/?.lua;%.*s/?/init.lua;%s", dir_len, dir, dir_len, dir, rest ? rest : ";");
    size_t k = 0;
    env[k++] = path;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "LUA_PATH_5_4=", 13) != 0)
            env[k++] = environ[i];
    }
    return env;
}

/* Spawn sh -c CMD with stdout and stderr on one socket pair. */
static int spawn(struct reload_check *c, const char *command, const char *script)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return uv_translate_sys_error(errno);
    uv_pipe_init(c->loop, &c->output, 0);
    c->output.data = c;
    c->open_handles++;
    int rc = uv_pipe_open(&c->output, fds[0]);
    if (rc != 0) {
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
                                     {.flags = UV_INHERIT_FD, .data.fd = fds[1]}};
    char *args[] = {"sh", "-c", (char *)command, NULL};
    char **env = child_env(script);
    if (!env) {
        close(fds[1]);
        return UV_ENOMEM;
    }
    uv_process_options_t options = {.exit_cb = on_exit, .file = "/bin/sh", .args = args, .env = env,
                                    .stdio = stdio, .stdio_count = 3, .flags = UV_PROCESS_DETACHED};
    c->process.data = c;
    c->open_handles++;
    rc = uv_spawn(c->loop, &c->process, &options);
    free(env[0]);
    free(env);
    close(fds[1]);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->output, on_alloc, on_read);
    return rc;
}

void reload_check_start(struct reload_check *c, uv_loop_t *loop, const char *cmd, double timeout,
                        const char *script, const char *source, size_t len, reload_check_cb done, void *data)
{
    *c = (struct reload_check){.loop = loop, .timeout = timeout, .done = done, .data = data, .running = true};
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    int rc = write_snapshot(c, script, source, len);
    char *command = rc == 0 ? expand_command(cmd, c->file) : NULL;
    if (rc != 0)
        snprintf(c->why, sizeof c->why, "cannot write the snapshot in %.150s: %s", c->dir[0] ? c->dir : "TMPDIR",
                 strerror(-rc));
    else if (!command)
        snprintf(c->why, sizeof c->why, "out of memory");
    else if ((rc = spawn(c, command, script)) != 0)
        snprintf(c->why, sizeof c->why, "%s", uv_strerror(rc));
    free(command);
    if (c->why[0]) {
        kill_group(c);
        close_all(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, (uint64_t)(timeout * 1000 + 0.5), 0);
}

void reload_check_cancel(struct reload_check *c)
{
    if (!c->running || c->cancelled)
        return;
    c->cancelled = true;
    kill_group(c);
    maybe_finish(c);
}
