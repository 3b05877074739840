/*
 * cli.c - luaecho [serve] [OPTIONS] [SCRIPT] and luaecho run [OPTIONS] SCRIPT [ARGS...].
 * Values are checked here, completely: a malformed flag or environment value
 * is one clear line and exit 2, never a surprise later.
 * What --help and --version print is cli_help.c's; the defaults both show
 * are cli_defaults.h's.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_defaults.h"
#include "luaecho_defaults.h"
#include "redis_url.h"

enum {
    OPT_LOG_LEVEL = 256,
    OPT_LOG_FORMAT,
    OPT_SHUTDOWN_TIMEOUT,
    OPT_WATCH,
    OPT_MAX_CONNECTIONS,
    OPT_IDLE_TIMEOUT,
    OPT_MAX_WRITE_BUFFER,
    OPT_SCRIPT_TIMEOUT,
    OPT_LUA_MEMORY,
    OPT_WORKERS,
    OPT_LISTEN,
    OPT_UNIX_MODE,
    OPT_PROXY_PROTOCOL,
    OPT_PROXY_TIMEOUT,
    OPT_METRICS,
    OPT_ADMIN,
    OPT_ADMIN_ALLOW_REMOTE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_TLS_HANDSHAKE_TIMEOUT,
    OPT_TLS_ALPN,
    OPT_RELOAD_CHECK,
    OPT_RELOAD_CHECK_TIMEOUT,
    OPT_CANARY,
    OPT_CANARY_SHARE,
    OPT_ROLLBACK_ERRORS,
    OPT_CHANNEL_BUFFER,
    OPT_CHANNEL_REDIS,
    OPT_RECORD,
    OPT_RECORD_MAX,
};

static const struct option long_options[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"unix-mode", required_argument, NULL, OPT_UNIX_MODE},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"proxy-timeout", required_argument, NULL, OPT_PROXY_TIMEOUT},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
    {"tls-handshake-timeout", required_argument, NULL, OPT_TLS_HANDSHAKE_TIMEOUT},
    {"tls-alpn", required_argument, NULL, OPT_TLS_ALPN},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"admin-allow-remote", no_argument, NULL, OPT_ADMIN_ALLOW_REMOTE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
    {"watch", no_argument, NULL, OPT_WATCH},
    {"reload-check", required_argument, NULL, OPT_RELOAD_CHECK},
    {"reload-check-timeout", required_argument, NULL, OPT_RELOAD_CHECK_TIMEOUT},
    {"canary", required_argument, NULL, OPT_CANARY},
    {"canary-share", required_argument, NULL, OPT_CANARY_SHARE},
    {"rollback-errors", required_argument, NULL, OPT_ROLLBACK_ERRORS},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"max-write-buffer", required_argument, NULL, OPT_MAX_WRITE_BUFFER},
    {"script-timeout", required_argument, NULL, OPT_SCRIPT_TIMEOUT},
    {"lua-memory", required_argument, NULL, OPT_LUA_MEMORY},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"channel-buffer", required_argument, NULL, OPT_CHANNEL_BUFFER},
    {"channel-redis", required_argument, NULL, OPT_CHANNEL_REDIS},
    {"record", required_argument, NULL, OPT_RECORD},
    {"record-max", required_argument, NULL, OPT_RECORD_MAX},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Print one line about a bad command line and one pointing at --help. */
static int usage_error(const char *fmt, const char *what, const char *value)
{
    fprintf(stderr, "luaecho: ");
    fprintf(stderr, fmt, what, value);
    fprintf(stderr, "\nTry 'luaecho --help' for more information.\n");
    return EXIT_USAGE;
}

/* A decimal integer in [min, max], nothing else (no sign games, no trailing junk). */
static bool parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

/* A decimal integer in [min, max] that fits a long long. */
static bool parse_long(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A byte count with an optional k, M or G suffix (powers of 1024). */
static bool parse_bytes(const char *s, long long max, long long *out)
{
    char digits[32];
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof digits)
        return false;
    memcpy(digits, s, len + 1);
    long long unit = 1;
    switch (digits[len - 1]) {
    case 'k': case 'K': unit = 1LL << 10; break;
    case 'm': case 'M': unit = 1LL << 20; break;
    case 'g': case 'G': unit = 1LL << 30; break;
    default: break;
    }
    if (unit != 1)
        digits[len - 1] = '\0';
    long long v;
    if (!parse_long(digits, 0, max / unit, &v))
        return false;
    *out = v * unit;
    return true;
}

/* A finite number of seconds in [0, max]. */
static bool parse_seconds(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 || v > max)
        return false;
    *out = v;
    return true;
}

/* Defaults, then the environment: flags parsed afterwards override both. */
static int apply_environment(struct cli_options *o)
{
    *o = (struct cli_options){
        .command = CLI_SERVE,
        .host = DEFAULT_HOST,
        .port = DEFAULT_PORT,
        .log_level = LOG_INFO,
        .log_format = LOG_FORMAT_TEXT,
        .shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT,
        .canary_share = 100,
        .rollback_errors = 5,
        .max_write_buffer = DEFAULT_MAX_WRITE_BUFFER,
        .script_timeout = DEFAULT_SCRIPT_TIMEOUT,
        .lua_memory = DEFAULT_LUA_MEMORY,
        .channel_buffer = LUAECHO_DEFAULT_CHANNEL_BUFFER,
        .workers = 1,
        .unix_mode = -1,
        .proxy_timeout = LUAECHO_DEFAULT_PROXY_TIMEOUT_MS / 1000.0,
        .tls_handshake_timeout = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        .reload_check_timeout = DEFAULT_RELOAD_CHECK_TIMEOUT,
        .record_max = 64LL << 20,
    };
    const char *host = getenv("LUAECHO_HOST");
    if (host && *host)
        o->host = host;
    const char *port = getenv("LUAECHO_PORT");
    if (port && *port && !parse_int(port, 0, 65535, &o->port))
        return usage_error("%s must be a port number from 0 to 65535, not '%s'", "LUAECHO_PORT", port);
    return 0;
}

/* An integer option in [min, max], or the usage error naming it. */
static int apply_long(const char *value, long long min, long long max, const char *flag, const char *what,
                      long *out)
{
    long long v;
    if (!parse_long(value, min, max, &v)) {
        char wanted[96];
        snprintf(wanted, sizeof wanted, "%s from %lld to %lld", what, min, max);
        fprintf(stderr, "luaecho: %s must be %s, not '%s'\nTry 'luaecho --help' for more information.\n", flag,
                wanted, value);
        return EXIT_USAGE;
    }
    *out = (long)v;
    return 0;
}

/* --listen SPEC: one more listener, checked as far as it can be here. */
static int add_listener(struct cli_options *o, const char *text)
{
    if (o->listener_count == CLI_MAX_LISTENERS)
        return usage_error("%s: at most %s listeners", "--listen", "16");
    struct listen_spec *spec = &o->listeners[o->listener_count];
    const char *wrong = listen_spec_parse(text, spec);
    if (wrong) {
        fprintf(stderr, "luaecho: --listen '%s': %s\nTry 'luaecho --help' for more information.\n", text, wrong);
        return EXIT_USAGE;
    }
    for (int i = 0; i < o->listener_count; i++) {
        if (listen_spec_same(&o->listeners[i], spec))
            return usage_error("--listen '%s' is given twice%s", text, "");
    }
    o->listener_count++;
    return 0;
}

/* An option that says where and how to listen. */
static int apply_listen_option(struct cli_options *o, int opt, const char *value)
{
    switch (opt) {
    case 'H':
        if (*value == '\0')
            return usage_error("%s needs a host name or address%s", "--host", "");
        o->host = value;
        o->host_or_port_given = true;
        return 0;
    case 'p':
        if (!parse_int(value, 0, 65535, &o->port))
            return usage_error("%s must be a port number from 0 to 65535, not '%s'", "--port", value);
        o->host_or_port_given = true;
        return 0;
    case OPT_LISTEN:
        return add_listener(o, value);
    case OPT_UNIX_MODE: {
        char *end;
        errno = 0;
        long mode = strtol(value, &end, 8);
        if (*value == '\0' || *end != '\0' || errno != 0 || mode < 0 || mode > 0777)
            return usage_error("%s must be octal permissions from 0 to 777, such as 660, not '%s'", "--unix-mode",
                               value);
        o->unix_mode = (int)mode;
        return 0;
    }
    case OPT_PROXY_PROTOCOL:
        o->proxy_protocol = true;
        return 0;
    case OPT_PROXY_TIMEOUT:
        if (!parse_seconds(value, 3600, &o->proxy_timeout) || o->proxy_timeout < 0.001)
            return usage_error("%s must be a number of seconds from 0.001 to 3600, not '%s'", "--proxy-timeout",
                               value);
        o->proxy_timeout_given = true;
        return 0;
    default:
        return 0;
    }
}

/* --metrics or --admin SPEC: a stream address, not UDP. */
static int parse_endpoint(const char *flag, const char *value, struct listen_spec *out)
{
    const char *why = listen_spec_parse(value, out);
    if (why) {
        char what[LISTEN_SPEC_STRLEN + 32];
        snprintf(what, sizeof what, "%s '%.*s'", flag, LISTEN_SPEC_STRLEN, value);
        return usage_error("%s: %s", what, why);
    }
    if (out->kind == LISTEN_UDP)
        return usage_error("%s must be HOST:PORT or unix:PATH, not a UDP address ('%s')", flag, value);
    return 0;
}

/* The flags of /metrics and the admin console. */
static int apply_observe_option(struct cli_options *o, int opt, const char *value)
{
    switch (opt) {
    case OPT_METRICS:
        o->metrics_given = true;
        return parse_endpoint("--metrics", value, &o->metrics);
    case OPT_ADMIN:
        o->admin_given = true;
        return parse_endpoint("--admin", value, &o->admin);
    default:
        o->admin_allow_remote = true;
        return 0;
    }
}

/* "h2,http/1.1": names of 1 to 255 bytes, separated by commas. */
static bool alpn_list_ok(const char *list)
{
    for (const char *p = list;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255)
            return false;
        p += n;
        if (*p == '\0')
            return true;
        p++;
    }
}

/* The TLS listeners' flags. */
static int apply_tls_option(struct cli_options *o, int opt, const char *value)
{
    switch (opt) {
    case OPT_TLS_CERT:
    case OPT_TLS_KEY: {
        int *count = opt == OPT_TLS_CERT ? &o->tls_cert_count : &o->tls_key_count;
        if (*count == CLI_MAX_TLS_PAIRS)
            return usage_error("at most %s certificate pairs%s", "16", "");
        (opt == OPT_TLS_CERT ? o->tls_certs : o->tls_keys)[(*count)++] = value;
        return 0;
    }
    case OPT_TLS_CLIENT_CA:
        o->tls_client_ca = value;
        return 0;
    case OPT_TLS_HANDSHAKE_TIMEOUT:
        if (!parse_seconds(value, 3600, &o->tls_handshake_timeout) || o->tls_handshake_timeout < 0.001)
            return usage_error("%s must be a number of seconds from 0.001 to 3600, not '%s'",
                               "--tls-handshake-timeout", value);
        o->tls_handshake_timeout_given = true;
        return 0;
    default:
        if (!alpn_list_ok(value))
            return usage_error("%s must be protocol names separated by commas, such as h2,http/1.1, not '%s'",
                               "--tls-alpn", value);
        o->tls_alpn = value;
        return 0;
    }
}

/* The canary's flags. */
static int apply_canary_option(struct cli_options *o, int opt, const char *value)
{
    if (opt == OPT_CANARY_SHARE)
        return apply_long(value, 1, 100, "--canary-share", "a percent", &o->canary_share);
    if (opt == OPT_ROLLBACK_ERRORS)
        return apply_long(value, 1, 1000000, "--rollback-errors", "a number of errors", &o->rollback_errors);
    if (!parse_seconds(value, 86400, &o->canary))
        return usage_error("%s must be a number of seconds from 0 (off) to 86400, not '%s'", "--canary", value);
    return 0;
}

/* One option and its value. */
static int apply_option(struct cli_options *o, int opt, const char *value, const char *word)
{
    if (opt >= OPT_CANARY && opt <= OPT_ROLLBACK_ERRORS)
        return apply_canary_option(o, opt, value);
    if (opt >= OPT_METRICS && opt <= OPT_ADMIN_ALLOW_REMOTE) /* the enum keeps each group together */
        return apply_observe_option(o, opt, value);
    if (opt >= OPT_TLS_CERT && opt <= OPT_TLS_ALPN)
        return apply_tls_option(o, opt, value);
    switch (opt) {
    case 'H':
    case 'p':
    case OPT_LISTEN:
    case OPT_UNIX_MODE:
    case OPT_PROXY_PROTOCOL:
    case OPT_PROXY_TIMEOUT:
        return apply_listen_option(o, opt, value);
    case OPT_LOG_LEVEL:
        if (!log_parse_level(value, &o->log_level))
            return usage_error("%s must be error, warn, info or debug, not '%s'", "--log-level", value);
        return 0;
    case OPT_LOG_FORMAT:
        if (!log_parse_format(value, &o->log_format))
            return usage_error("%s must be text or json, not '%s'", "--log-format", value);
        return 0;
    case OPT_SHUTDOWN_TIMEOUT:
        if (!parse_seconds(value, 86400, &o->shutdown_timeout))
            return usage_error("%s must be a number of seconds from 0 to 86400, not '%s'",
                               "--shutdown-timeout", value);
        return 0;
    case OPT_WATCH:
        o->watch = true;
        return 0;
    case OPT_RELOAD_CHECK:
        if (!*value)
            return usage_error("%s needs a shell command, such as 'luac5.4 -p {script}'%s", "--reload-check", "");
        o->reload_check = value;
        return 0;
    case OPT_RELOAD_CHECK_TIMEOUT:
        if (!parse_seconds(value, 86400, &o->reload_check_timeout) || o->reload_check_timeout < 0.001)
            return usage_error("%s must be a number of seconds from 0.001 to 86400, not '%s'",
                               "--reload-check-timeout", value);
        return 0;
    case OPT_MAX_CONNECTIONS:
        return apply_long(value, 0, 10000000, "--max-connections", "a number of connections", &o->max_connections);
    case OPT_IDLE_TIMEOUT:
        if (!parse_seconds(value, 86400 * 30, &o->idle_timeout)) /* ms fit in 32 bits */
            return usage_error("%s must be a number of seconds, 0 for none, not '%s'", "--idle-timeout", value);
        return 0;
    case OPT_MAX_WRITE_BUFFER:
        if (!parse_bytes(value, 1LL << 40, &o->max_write_buffer))
            return usage_error("%s must be a number of bytes (suffix k, M or G allowed), 0 for no cap, not '%s'",
                               "--max-write-buffer", value);
        return 0;
    case OPT_SCRIPT_TIMEOUT:
        return apply_long(value, 0, 3600000, "--script-timeout", "a number of milliseconds", &o->script_timeout);
    case OPT_LUA_MEMORY:
        return apply_long(value, 0, 1 << 20, "--lua-memory", "a number of MiB", &o->lua_memory);
    case OPT_WORKERS:
        return apply_long(value, 0, 256, "--workers", "a number of threads", &o->workers);
    case OPT_CHANNEL_BUFFER:
        if (!parse_bytes(value, 1LL << 40, &o->channel_buffer) || o->channel_buffer < 1024)
            return usage_error("%s must be a number of bytes, at least 1k (suffix k, M or G allowed), not '%s'",
                               "--channel-buffer", value);
        return 0;
    case OPT_CHANNEL_REDIS: {
        struct redis_url url;
        char why[REDIS_URL_ERROR_MAX];
        if (redis_url_parse(value, &url, why) != 0)
            return usage_error("--channel-redis: %s%s", why, "");
        o->channel_redis = value;
        return 0;
    }
    case OPT_RECORD:
        if (*value == '\0')
            return usage_error("%s needs a directory%s", "--record", "");
        o->record_dir = value;
        return 0;
    case OPT_RECORD_MAX:
        o->record_max_given = true;
        if (!parse_bytes(value, 1LL << 50, &o->record_max) || o->record_max < 1024)
            return usage_error("%s must be a number of bytes, at least 1k (suffix k, M or G allowed), not '%s'",
                               "--record-max", value);
        return 0;
    case 'V':
        o->command = CLI_VERSION;
        return 0;
    case 'h':
        o->command = CLI_HELP;
        return 0;
    case ':':
        return usage_error("option '%s' needs a value%s", word, "");
    default:
        return usage_error("unknown option '%s'%s", word, "");
    }
}

/* getopt_long over argv; 'optstring' starting with '+' stops at the first operand. */
static int parse_options(struct cli_options *o, int argc, char **argv, const char *optstring)
{
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, optstring, long_options, NULL)) != -1) {
        const char *word = argv[optind - 1];
        if (opt == '?' && optopt && optopt < 256) {
            static char shortopt[3] = "-?";
            shortopt[1] = (char)optopt;
            word = shortopt;
        }
        int rc = apply_option(o, opt, optarg, word);
        if (rc != 0)
            return rc;
        if (o->command == CLI_HELP || o->command == CLI_VERSION)
            return 0;
    }
    return 0;
}

/* The operands after the options: at most SCRIPT for serve; SCRIPT [ARGS] for run. */
static int apply_operands(struct cli_options *o, int argc, char **argv)
{
    int rest = argc - optind;
    if (o->command == CLI_RUN) {
        if (rest < 1)
            return usage_error("%s needs a SCRIPT to run%s", "run", "");
        o->script = argv[optind];
        o->script_argc = rest;
        o->script_argv = argv + optind;
        return 0;
    }
    if (rest > 1)
        return usage_error("unexpected argument '%s' (serve takes one SCRIPT)%s", argv[optind + 1], "");
    if (rest == 1)
        o->script = argv[optind];
    return 0;
}

/* A host that is a loopback address as written (a name other than
 * localhost would need resolving: not counted as one). */
static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

/* --metrics, --admin: for serving; a console anyone can reach only when asked. */
static int settle_observers(struct cli_options *o)
{
    if ((o->record_dir || o->record_max_given) && o->command != CLI_SERVE)
        return usage_error("%s is for serving (luaecho [serve])%s", o->record_dir ? "--record" : "--record-max", "");
    if (o->record_max_given && !o->record_dir)
        return usage_error("%s needs --record DIR%s", "--record-max", "");
    if ((o->metrics_given || o->admin_given) && o->command != CLI_SERVE)
        return usage_error("%s is for serving (luaecho [serve])%s", o->metrics_given ? "--metrics" : "--admin", "");
    if (o->admin_allow_remote && !o->admin_given)
        return usage_error("%s needs --admin SPEC%s", "--admin-allow-remote", "");
    if (o->admin_given && o->admin.kind == LISTEN_TCP && !o->admin_allow_remote && !is_loopback(o->admin.host)) {
        char name[LISTEN_SPEC_STRLEN];
        return usage_error("--admin %s is not a loopback address: add --admin-allow-remote to allow it%s",
                           listen_spec_format(&o->admin, NULL, name, sizeof name), "");
    }
    for (int i = 0; i < o->listener_count; i++) {
        if ((o->metrics_given && listen_spec_same(&o->metrics, &o->listeners[i])) ||
            (o->admin_given && listen_spec_same(&o->admin, &o->listeners[i])))
            return usage_error("--%s cannot use the address of a --listen listener%s",
                               o->metrics_given && listen_spec_same(&o->metrics, &o->listeners[i]) ? "metrics"
                                                                                                  : "admin",
                               "");
    }
    if (o->metrics_given && o->admin_given && listen_spec_same(&o->metrics, &o->admin))
        return usage_error("%s and --admin cannot share an address%s", "--metrics", "");
    return 0;
}

/* The first TLS option given, for a message; NULL: none. */
static const char *tls_option_given(const struct cli_options *o)
{
    return o->tls_cert_count ? "--tls-cert"
           : o->tls_key_count ? "--tls-key"
           : o->tls_client_ca ? "--tls-client-ca"
           : o->tls_alpn ? "--tls-alpn"
           : o->tls_handshake_timeout_given ? "--tls-handshake-timeout"
                                            : NULL;
}

/* TLS options need a tls: listener, and a tls: listener its certificates. */
static int settle_tls(struct cli_options *o)
{
    const struct listen_spec *tls = NULL;
    for (int i = 0; i < o->listener_count && !tls; i++)
        tls = o->listeners[i].tls ? &o->listeners[i] : NULL;
    const char *option = tls_option_given(o);
    if (option && !tls)
        return usage_error("%s needs a TLS listener: add --listen tls:HOST:PORT%s", option, "");
    if (!tls)
        return 0;
    char name[LISTEN_SPEC_STRLEN];
    listen_spec_format(tls, NULL, name, sizeof name);
    if (o->tls_cert_count == 0 || o->tls_key_count == 0)
        return usage_error("--listen %s: needs --tls-cert FILE and --tls-key FILE%s", name, "");
    if (o->tls_cert_count != o->tls_key_count) {
        char counts[64];
        snprintf(counts, sizeof counts, "%d --tls-cert, %d --tls-key", o->tls_cert_count, o->tls_key_count);
        return usage_error("--tls-cert and --tls-key come in pairs, one key for each certificate: %s%s", counts, "");
    }
    return 0;
}

/* The listeners, once every flag is in: --listen's, or -H/-p's one; and
 * the flags that only mean something with some kind of listener. */
static int settle_listeners(struct cli_options *o)
{
    bool listen_given = o->listener_count > 0;
    if (listen_given && o->command != CLI_SERVE)
        return usage_error("%s is for serving (luaecho [serve]); a 'run' script listens itself%s", "--listen", "");
    if (listen_given && o->host_or_port_given)
        return usage_error("--listen and -H/--host or -p/--port cannot be used together: give every address "
                           "with --listen, e.g. --listen %s%s", "127.0.0.1:2222", "");
    if (!listen_given) {
        struct listen_spec *spec = &o->listeners[0];
        *spec = (struct listen_spec){.kind = LISTEN_TCP, .port = o->port};
        if (strlen(o->host) >= sizeof spec->host)
            return usage_error("%s: the host name is too long%s", "--host", "");
        memcpy(spec->host, o->host, strlen(o->host) + 1);
        o->listener_count = 1;
    }
    bool has_unix = false, has_stream = false;
    for (int i = 0; i < o->listener_count; i++) {
        has_unix = has_unix || o->listeners[i].kind == LISTEN_UNIX;
        has_stream = has_stream || o->listeners[i].kind != LISTEN_UDP;
    }
    if (o->unix_mode >= 0 && !has_unix)
        return usage_error("%s applies to Unix socket listeners: add --listen unix:PATH%s", "--unix-mode", "");
    if (o->proxy_protocol && !has_stream)
        return usage_error("%s applies to TCP and Unix listeners, and every listener is UDP%s", "--proxy-protocol",
                           "");
    if (o->proxy_protocol && o->command != CLI_SERVE)
        return usage_error("%s is for serving (luaecho [serve])%s", "--proxy-protocol", "");
    if (o->proxy_timeout_given && !o->proxy_protocol)
        return usage_error("%s needs --proxy-protocol%s", "--proxy-timeout", "");
    return settle_tls(o);
}

int cli_parse(struct cli_options *o, int argc, char **argv)
{
    int rc = apply_environment(o);
    if (rc != 0)
        return rc;
    /* The command word, when there is one, comes first. */
    int first = 1;
    const char *optstring = ":H:p:Vh";
    if (argc > 1 && strcmp(argv[1], "serve") == 0) {
        first = 2;
    } else if (argc > 1 && strcmp(argv[1], "test") == 0) {
        o->command = CLI_TEST; /* everything after it is busted's */
        o->script_argc = argc - 2;
        o->script_argv = argv + 2;
        return 0;
    } else if (argc > 1 && (strcmp(argv[1], "ctl") == 0 || strcmp(argv[1], "replay") == 0)) {
        o->command = argv[1][0] == 'c' ? CLI_CTL : CLI_REPLAY; /* their own arguments: ctl.c, replay.c */
        o->script_argc = argc - 1;
        o->script_argv = argv + 1;
        return 0;
    } else if (argc > 1 && strcmp(argv[1], "run") == 0) {
        o->command = CLI_RUN;
        optstring = "+:H:p:Vh"; /* options after SCRIPT belong to the script */
        first = 2;
    }
    optind = first;
    rc = parse_options(o, argc, argv, optstring);
    if (rc != 0 || o->command == CLI_HELP || o->command == CLI_VERSION)
        return rc;
    rc = apply_operands(o, argc, argv);
    if (rc == 0)
        rc = settle_listeners(o);
    return rc != 0 ? rc : settle_observers(o);
}
