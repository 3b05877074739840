/*
 * cli.h - the command line: commands, options, environment defaults, --help.
 * Parsing never exits; main() turns the result into an exit code.
 */
#ifndef LUAECHO_CLI_H
#define LUAECHO_CLI_H

#include <stdbool.h>

#include "luaecho_defaults.h"

#include "listen_spec.h"
#include "log.h"

enum cli_command { CLI_SERVE, CLI_RUN, CLI_TEST, CLI_CTL, CLI_HELP, CLI_VERSION };

#define CLI_MAX_LISTENERS 16
#define CLI_MAX_TLS_PAIRS 16

struct cli_options {
    enum cli_command command;
    const char *host;        /* -H/--host, LUAECHO_HOST */
    int port;                /* -p/--port, LUAECHO_PORT; 0 picks a free port */
    bool host_or_port_given; /* -H or -p on the command line (not with --listen) */
    /* --listen SPEC..., or the one TCP listener -H/-p give: */
    struct listen_spec listeners[CLI_MAX_LISTENERS];
    int listener_count;
    int unix_mode;           /* --unix-mode: permissions of Unix sockets; -1: the umask's */
    bool proxy_protocol;     /* --proxy-protocol: stream listeners read a PROXY header first */
    double proxy_timeout;    /* --proxy-timeout: seconds */
    bool proxy_timeout_given;
    /* TLS listeners' certificates: --tls-cert/--tls-key pairs, in order. */
    const char *tls_certs[CLI_MAX_TLS_PAIRS];
    const char *tls_keys[CLI_MAX_TLS_PAIRS];
    int tls_cert_count, tls_key_count;
    const char *tls_client_ca;      /* --tls-client-ca: mutual TLS */
    const char *tls_alpn;           /* --tls-alpn LIST */
    double tls_handshake_timeout;   /* --tls-handshake-timeout: seconds */
    bool tls_handshake_timeout_given;
    struct listen_spec metrics; /* --metrics SPEC: where /metrics is served */
    bool metrics_given;
    struct listen_spec admin;   /* --admin SPEC: the admin console */
    bool admin_given;
    bool admin_allow_remote;    /* --admin-allow-remote */
    enum log_level log_level;
    enum log_format log_format; /* --log-format */
    double shutdown_timeout; /* seconds */
    bool watch;              /* --watch: reload SCRIPT when it changes */
    long workers;            /* threads serving; 0: one per CPU */
    long max_connections;    /* 0: derived from the descriptor limit only */
    double idle_timeout;     /* seconds, 0: off */
    long long max_write_buffer; /* bytes, 0: off */
    long script_timeout;     /* milliseconds, 0: off */
    long lua_memory;         /* MiB, 0: off */
    long long channel_buffer; /* --channel-buffer: bytes each loop's luaecho.channel inbox holds */
    const char *channel_redis; /* --channel-redis URL: luaecho.channel across instances; NULL: none */
    const char *script;      /* NULL: the bundled echo.lua */
    int script_argc;         /* run: SCRIPT's own arguments, starting with SCRIPT; */
    char **script_argv;      /* test: busted's arguments; ctl: its own, from "ctl" */
};

/* Descriptors kept back from --max-connections' default for the host's own
 * use (stdio, the loop, signals, the listener, files a script opens). */
#define CLI_DESCRIPTOR_RESERVE LUAECHO_DEFAULT_DESCRIPTOR_RESERVE

/* Exit codes, as the README documents them. */
enum { EXIT_OK = 0, EXIT_FAILURE_RUNTIME = 1, EXIT_USAGE = 2 };

/* Fill 'o' from the environment and argv. Returns 0, or EXIT_USAGE after
 * printing one line saying what is wrong and one pointing at --help. */
int cli_parse(struct cli_options *o, int argc, char **argv);
void cli_print_help(void);
void cli_print_version(void);

#endif
