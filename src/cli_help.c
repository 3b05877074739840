/*
 * cli_help.c - what luaecho --help and --version print: the commands, the
 * options with their defaults, the limits, and the notes a user asks next.
 * Relies on cli_defaults.h for the defaults cli.c applies, so the text and
 * the behaviour cannot disagree.
 * Rule: a new flag appears here, in docs/luaecho.1 and in the docs, in the
 * same change as its parsing in cli.c.
 */
#include "cli.h"

#include <lua.h>
#include <stdio.h>
#include <uv.h>

#include "cli_defaults.h"

/* Commands, options and limits: what they do and their defaults. */
static void print_commands(void)
{
    printf(
        "Usage: luaecho [serve] [OPTIONS] [SCRIPT]\n"
        "       luaecho run [OPTIONS] SCRIPT [ARGS...]\n"
        "       luaecho test [BUSTED ARGS...]\n"
        "       luaecho ctl [--admin SPEC] COMMAND...\n"
        "       luaecho replay DIR|FILE SCRIPT\n"
        "\n"
        "A TCP server whose behaviour is a Lua 5.4 script, in the style of Python\n"
        "asyncio's Protocol and Streams APIs.\n"
        "\n"
        "Commands:\n"
        "  serve   (the default) listen on HOST:PORT (or every --listen SPEC) and\n"
        "          serve each connection with SCRIPT. SCRIPT returns a Protocol table (connection_made,\n"
        "          data_received, eof_received, connection_lost, ...) or a streams\n"
        "          handler function(reader, writer). Without SCRIPT: the bundled\n"
        "          echo.lua, which answers \"echo:\" followed by what it received.\n"
        "  run     run SCRIPT as a program (a client, or a server it starts itself),\n"
        "          with ARGS in its 'arg' table, until it has nothing left to do.\n"
        "  test    run busted (Lua 5.4) on your handler specs, with luaecho's Lua\n"
        "          libraries on the path: require \"luaecho.testing\" drives a\n"
        "          handler with no sockets and a virtual clock.\n"
        "  ctl     send one COMMAND (help, show info, show conns, show errors,\n"
        "          show generations, kill ID, reload, set log-level LEVEL) to the\n"
        "          admin console of a server started with --admin SPEC (or\n"
        "          $LUAECHO_ADMIN) and\n"
        "          print the answer; exit 1 if the server answers an error\n"
        "  replay  replay the transcripts --record wrote against SCRIPT, with no\n"
        "          sockets and a virtual clock; exit 1 if any output differs\n"
        "          (luaecho replay --help)\n"
        "\n");
}

static void print_options(void)
{
    printf(
        "Options:\n"
        "  -H, --host HOST             address to listen on: an IPv4 or IPv6 literal\n"
        "                              or a host name (default " DEFAULT_HOST ",\n"
        "                              or $LUAECHO_HOST)\n"
        "  -p, --port PORT             TCP port, 0 to let the system pick a free one\n"
        "                              (default %d, or $LUAECHO_PORT)\n"
        "      --listen SPEC           listen here instead of -H/-p; repeat it to serve\n"
        "                              several listeners with the one SCRIPT. SPEC is\n"
        "                              HOST:PORT ([::1]:PORT for IPv6), unix:PATH (a\n"
        "                              Unix socket), udp:HOST:PORT (datagrams, for a\n"
        "                              Protocol with datagram_received), or\n"
        "                              tls:HOST:PORT / tls:unix:PATH (TLS: see --tls-cert)\n"
        "      --unix-mode OCTAL       permissions of the Unix sockets, e.g. 660\n"
        "                              (default: from the umask)\n"
        "      --proxy-protocol        TCP and Unix listeners sit behind a load\n"
        "                              balancer that sends a PROXY protocol header\n"
        "                              (v1 or v2, e.g. HAProxy's send-proxy): the\n"
        "                              script sees the client's address as peername\n"
        "      --proxy-timeout SEC     close a connection whose PROXY header is not\n"
        "                              complete in SEC seconds (default %g)\n"
        "      --tls-cert FILE         the certificate (PEM, the chain after it) of\n"
        "                              the tls: listeners; with --tls-key FILE, its\n"
        "                              key. Repeat the pair for more names: the\n"
        "                              client's SNI name picks one, the first is\n"
        "                              the default\n"
        "      --tls-client-ca FILE    ask every TLS client for a certificate that\n"
        "                              FILE's CA signed (mutual TLS)\n"
        "      --tls-handshake-timeout SEC  close a TLS connection whose handshake\n"
        "                              is not done in SEC seconds (default %g)\n"
        "      --tls-alpn LIST         ALPN protocols offered, e.g. h2,http/1.1\n"
        "      --metrics SPEC          serve Prometheus metrics on HOST:PORT or\n"
        "                              unix:PATH: GET /metrics, GET /healthz\n"
        "      --admin SPEC            an admin console on unix:PATH (mode 0600) or\n"
        "                              a loopback HOST:PORT; use it with\n"
        "                              'luaecho ctl', socat or nc -U\n"
        "      --admin-allow-remote    allow --admin on an address that is not\n"
        "                              loopback (anyone who reaches it controls\n"
        "                              the server)\n"
        "      --log-level LEVEL       error, warn, info or debug (default info)\n"
        "      --log-format FORMAT     text (default) or json: each line on stderr\n"
        "                              one JSON object (time, level, msg, ...); the\n"
        "                              \"listening on\" line stays text in both\n"
        "      --shutdown-timeout SEC  on SIGINT/SIGTERM, how long open connections\n"
        "                              may take to flush and close before they are\n"
        "                              aborted (default %g)\n"
        "      --watch                 reload SCRIPT when it, or a module it required\n"
        "                              from its directory, changes on disk\n"
        "      --reload-check CMD      before a swap, run CMD (sh -c; {script} is a\n"
        "                              copy of the new script); a non-zero exit\n"
        "                              rejects the swap\n"
        "      --reload-check-timeout SEC  kill CMD and reject the swap after SEC\n"
        "                              seconds (default %g)\n"
        "      --canary SEC            after a hot swap, for SEC seconds only\n"
        "                              --canary-share of new connections get the new\n"
        "                              code; rolled back at --rollback-errors errors,\n"
        "                              promoted when the window passes (default 0: off)\n"
        "      --canary-share PERCENT  1 to 100 (default 100)\n"
        "      --rollback-errors N     callback errors of the canary that roll it\n"
        "                              back (default 5)\n"
        "      --workers N             serve with N threads, each with its own loop,\n"
        "                              Lua state and copy of SCRIPT, sharing the port;\n"
        "                              0: one per CPU (default 1). Globals and\n"
        "                              upvalues of SCRIPT are per worker\n"
        "      --channel-redis URL     luaecho.channel across instances through Redis:\n"
        "                              redis://[user:password@]host[:port][/db] or\n"
        "                              unix:/path (the server only, not 'run')\n"
        "      --record DIR            write each connection's transcript (bytes in\n"
        "                              and out, their timing, the end) to its own\n"
        "                              file in DIR (made 0700; files 0600). They\n"
        "                              hold client data: see 'luaecho replay'\n"
        "      --record-max BYTES      bound DIR by deleting the oldest transcripts\n"
        "                              (suffixes k, M, G; default 64M)\n"
        "\n",
        DEFAULT_PORT, LUAECHO_DEFAULT_PROXY_TIMEOUT_MS / 1000.0, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_RELOAD_CHECK_TIMEOUT);
}

static void print_limits(void)
{
    printf(
        "Limits (0 turns one off; --max-connections can only be lowered):\n"
        "      --max-connections N     connections open at once; one more is accepted\n"
        "                              and closed at once (default, and 0: the\n"
        "                              descriptor limit, ulimit -n, less %d)\n"
        "      --idle-timeout SEC      close a connection with no traffic either way\n"
        "                              for SEC seconds (default 0: off)\n"
        "      --max-write-buffer BYTES  abort a connection whose unsent output passes\n"
        "                              BYTES (suffixes k, M, G; default 16M), for\n"
        "                              scripts that ignore pause_writing()\n"
        "      --script-timeout MS     interrupt a callback that runs longer than MS\n"
        "                              milliseconds and abort its connection\n"
        "                              (default %d)\n"
        "      --lua-memory MB         cap on the Lua state's memory, in MiB; a\n"
        "                              callback over it fails and its connection is\n"
        "                              aborted (default %d)\n"
        "      --channel-buffer BYTES  what each worker's luaecho.channel inbox holds\n"
        "                              (suffixes k, M, G; at least 1k; default 16M);\n"
        "                              a message past it is dropped and counted\n",
        CLI_DESCRIPTOR_RESERVE, DEFAULT_SCRIPT_TIMEOUT, DEFAULT_LUA_MEMORY);
}

/* What a user asks next: scripts, hot swap, the log line, exit codes. */
static void print_notes(void)
{
    printf(
        "  -V, --version               print the version and exit\n"
        "  -h, --help                  print this help and exit\n"
        "\n"
        "SCRIPT is a path; one not found from the working directory is looked up\n"
        "among the bundled scripts, so 'luaecho examples/simple_echo.lua' works\n"
        "from anywhere.\n"
        "\n"
        "Hot swap: SIGHUP (kill -HUP PID) or --watch loads SCRIPT again. New\n"
        "connections get the new code; open ones keep theirs, unless the new\n"
        "Protocol defines upgrade(instance) or sets reload_policy (\"keep\",\n"
        "\"upgrade\", \"drain\"). A script that fails to load, or whose\n"
        "selftest(testing) or --reload-check fails, is logged and the\n"
        "server keeps the code it had.\n"
        "\n"
        "Once listening, luaecho prints one line per listener to stderr:\n"
        "  luaecho: listening on HOST:PORT     (or unix:PATH, or udp:HOST:PORT)\n"
        "Its own log lines go to stderr; a script's print() goes to stdout.\n"
        "\n"
        "Exit status: 0 after a clean shutdown (SIGINT, SIGTERM, or the script\n"
        "closed its server and the last connection ended); 1 when the script cannot\n"
        "load, its selftest fails, the address cannot be bound or the --record DIR\n"
        "cannot be used; 2 for a bad command line.\n"
        "\n"
        "Try it:  luaecho --port 2222   then, elsewhere:   telnet localhost 2222\n");
}

void cli_print_help(void)
{
    print_commands();
    print_options();
    print_limits();
    print_notes();
}

void cli_print_version(void)
{
    printf("luaecho %s (libuv %s, %s)\n", LUAECHO_VERSION, uv_version_string(), LUA_RELEASE);
}
