/*
 * ctl.c - see ctl.h. A plain blocking client: connect to the console,
 * send the command as one line, half-close, read the answer to EOF (the
 * console closes after answering a client that has half-closed), all
 * within 30 s. Relies on listen_spec.c for the console's address; no
 * libuv loop. Rule: stdout gets only the answer, so scripts can read it.
 */
#include "ctl.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "listen_spec.h"

#define CTL_TIMEOUT_MS 30000

static const char usage_line[] = "usage: luaecho ctl [--admin SPEC] COMMAND...";

static const char help_text[] =
    "usage: luaecho ctl [--admin SPEC] COMMAND...\n"
    "Send one command to a running luaecho's admin console and print its answer.\n"
    "\n"
    "  --admin SPEC   the console, as given to the server's --admin: unix:PATH or\n"
    "                 HOST:PORT (default: $LUAECHO_ADMIN)\n"
    "  --help         this text\n"
    "\n"
    "Commands: help, show info, show conns, show errors, show generations,\n"
    "kill ID, reload, set log-level LEVEL (error, warn, info or debug).\n"
    "\n"
    "The answer is printed on stdout and the exit status is 0; an error answer\n"
    "is printed on stderr and the status is 1, as when the console cannot be\n"
    "reached or does not answer within 30 s; a usage mistake exits with 2.\n";

/* What the command line says. */
struct ctl_args {
    const char *admin;   /* as typed, for messages */
    const char *origin;  /* "--admin" or "LUAECHO_ADMIN" */
    int first;           /* argv index of the command's first word */
};

static int usage(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "luaecho ctl: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

/* Fill 'args'; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct ctl_args *args)
{
    *args = (struct ctl_args){.origin = "--admin"};
    int i = 1;
    while (i < argc) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help_text, stdout);
            return fflush(stdout) == 0 ? 0 : 1;
        } else if (strcmp(a, "--admin") == 0) {
            if (i + 1 >= argc)
                return usage("--admin needs a value: unix:PATH or HOST:PORT%s%s", "", "");
            args->admin = argv[i + 1];
            i += 2;
        } else if (strncmp(a, "--admin=", 8) == 0) {
            args->admin = a + 8;
            i++;
        } else if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage("unknown option '%s' (%s)", a, usage_line);
        } else {
            break;
        }
    }
    args->first = i;
    if (i >= argc)
        return usage("no command given (%s%s)", usage_line, "");
    if (!args->admin) {
        args->admin = getenv("LUAECHO_ADMIN");
        args->origin = "LUAECHO_ADMIN";
    }
    if (!args->admin || !*args->admin)
        return usage("no console given: use --admin SPEC or set LUAECHO_ADMIN (the server's --admin)%s%s", "", "");
    return -1;
}

/* The console's address from args->admin; returns -1, or 2 after saying why. */
static int parse_console(const struct ctl_args *args, struct listen_spec *spec)
{
    const char *wrong = listen_spec_parse(args->admin, spec);
    if (!wrong && spec->kind == LISTEN_UDP)
        wrong = "the console is a stream socket: unix:PATH or HOST:PORT";
    else if (!wrong && spec->kind == LISTEN_TCP && spec->port == 0)
        wrong = "needs the console's port (the server prints it)";
    if (!wrong)
        return -1;
    fprintf(stderr, "luaecho ctl: %s '%s': %s\n", args->origin, args->admin, wrong);
    return 2;
}

/* The command's words joined by spaces, ending in a newline; NULL after
 * saying why (a newline inside a word would send two commands). */
static char *join_command(int argc, char **argv, int first)
{
    size_t len = 1;
    for (int i = first; i < argc; i++) {
        if (strpbrk(argv[i], "\r\n")) {
            usage("a command is one line: no line break in '%s'%s", argv[i], "");
            return NULL;
        }
        len += strlen(argv[i]) + 1;
    }
    char *line = malloc(len);
    if (!line) {
        fprintf(stderr, "luaecho ctl: out of memory\n");
        return NULL;
    }
    size_t o = 0;
    for (int i = first; i < argc; i++) {
        size_t n = strlen(argv[i]);
        memcpy(line + o, argv[i], n);
        o += n;
        line[o++] = i + 1 < argc ? ' ' : '\n';
    }
    line[o] = '\0';
    return line;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A blocking connect on 'fd' bounded by the deadline (SO_SNDTIMEO bounds
 * connect(2) for TCP and Unix sockets alike). Returns 0 or an errno. */
static int connect_until(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
    if (left <= 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        return left <= 0 ? ETIMEDOUT : errno;
    while (connect(fd, sa, len) != 0) {
        if (errno != EINTR)
            return errno == EINPROGRESS || errno == EAGAIN ? ETIMEDOUT : errno;
    }
    return 0;
}

static int connect_unix(const struct listen_spec *spec, int64_t deadline, int *out)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", spec->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int err = connect_until(fd, (struct sockaddr *)&sun, sizeof sun, deadline);
    if (err != 0)
        close(fd);
    else
        *out = fd;
    return err;
}

/* Each address the host has, in turn. Returns 0, an errno, or after
 * getaddrinfo fails -1 with 'gai' set. */
static int connect_tcp(const struct listen_spec *spec, int64_t deadline, int *out, int *gai)
{
    char port[16];
    snprintf(port, sizeof port, "%d", spec->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    *gai = getaddrinfo(spec->host, port, &hints, &res);
    if (*gai != 0)
        return -1;
    int err = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        err = connect_until(fd, ai->ai_addr, ai->ai_addrlen, deadline);
        if (err == 0) {
            *out = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* Connect, or say why not. Returns the socket or -1. */
static int open_console(const struct ctl_args *args, const struct listen_spec *spec, int64_t deadline)
{
    int fd = -1, gai = 0;
    int err = spec->kind == LISTEN_UNIX ? connect_unix(spec, deadline, &fd) : connect_tcp(spec, deadline, &fd, &gai);
    if (err == 0)
        return fd;
    fprintf(stderr, "luaecho ctl: cannot connect to %s: %s (is luaecho running with --admin %s?)\n", args->admin,
            err < 0 ? gai_strerror(gai) : strerror(err), args->admin);
    return -1;
}

/* Wait for 'events' on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_for(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0 || (n < 0 && errno != EINTR))
            return n > 0 ? 1 : -1;
    }
}

/* Send 'line' and half-close. Returns 0, or an errno (ETIMEDOUT). */
static int send_line(int fd, const char *line, int64_t deadline)
{
    size_t len = strlen(line), sent = 0;
    while (sent < len) {
        int ready = wait_for(fd, POLLOUT, deadline);
        if (ready <= 0)
            return ready == 0 ? ETIMEDOUT : errno;
        ssize_t n = send(fd, line + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            sent += (size_t)n;
        else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return errno;
    }
    return shutdown(fd, SHUT_WR) == 0 ? 0 : errno;
}

struct answer_buf {
    char *data;
    size_t len, cap;
};

/* Read to EOF into 'b'. Returns 0, or an errno (ETIMEDOUT, ENOMEM). */
static int read_answer(int fd, struct answer_buf *b, int64_t deadline)
{
    for (;;) {
        if (b->cap - b->len < 4096) {
            size_t cap = b->cap ? b->cap * 2 : 8192;
            char *more = realloc(b->data, cap);
            if (!more)
                return ENOMEM;
            b->data = more;
            b->cap = cap;
        }
        int ready = wait_for(fd, POLLIN, deadline);
        if (ready <= 0)
            return ready == 0 ? ETIMEDOUT : errno;
        ssize_t n = recv(fd, b->data + b->len, b->cap - b->len, MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n > 0)
            b->len += (size_t)n;
        else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return errno;
    }
}

/* Print the answer without its final empty line: stdout, or stderr for
 * an error answer. Returns the exit status. */
static int print_answer(const struct ctl_args *args, const struct answer_buf *b)
{
    size_t len = b->len;
    bool whole = len == 0 || (len == 1 && b->data[0] == '\n') || (len >= 2 && memcmp(b->data + len - 2, "\n\n", 2) == 0);
    if (len > 0 && whole)
        len--; /* the empty line that ends an answer */
    bool error = len >= 7 && memcmp(b->data, "error: ", 7) == 0;
    FILE *out = error ? stderr : stdout;
    if ((len > 0 && fwrite(b->data, 1, len, out) != len) || fflush(out) != 0) {
        fprintf(stderr, "luaecho ctl: cannot write the answer: %s\n", strerror(errno));
        return 1;
    }
    if (!whole) {
        fprintf(stderr, "%sluaecho ctl: the answer from %s was cut short\n", b->data[len - 1] == '\n' ? "" : "\n",
                args->admin);
        return 1;
    }
    return error ? 1 : 0;
}

/* Send 'line', read the answer, print it. Returns the exit status. */
static int exchange(const struct ctl_args *args, const struct listen_spec *spec, const char *line)
{
    int64_t deadline = now_ms() + CTL_TIMEOUT_MS;
    int fd = open_console(args, spec, deadline);
    if (fd < 0)
        return 1;
    struct answer_buf b = {0};
    int err = send_line(fd, line, deadline);
    if (err == 0)
        err = read_answer(fd, &b, deadline);
    close(fd);
    int status = 1;
    if (err == ETIMEDOUT)
        fprintf(stderr, "luaecho ctl: no answer from %s within %d s\n", args->admin, CTL_TIMEOUT_MS / 1000);
    else if (err != 0)
        fprintf(stderr, "luaecho ctl: talking to %s: %s\n", args->admin, strerror(err));
    else
        status = print_answer(args, &b);
    free(b.data);
    return status;
}

int ctl_main(int argc, char **argv)
{
    struct ctl_args args;
    int status = parse_args(argc, argv, &args);
    if (status >= 0)
        return status;
    struct listen_spec spec;
    status = parse_console(&args, &spec);
    if (status >= 0)
        return status;
    char *line = join_command(argc, argv, args.first);
    if (!line)
        return 2;
    status = exchange(&args, &spec, line);
    free(line);
    return status;
}
