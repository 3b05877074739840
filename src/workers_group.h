/*
 * workers_group.h - the group of workers as workers.c keeps it, shared
 * with its hot swap (workers_reload.c), the canary (canary.c) and the
 * files that show it (metrics_series.c, console.c), and nothing else. The rules of who writes what, and under which lock, are those of
 * workers.c: the coordinator's own fields are read and written on the
 * main thread only; the fields marked "under lock" only under g->lock.
 */
#ifndef LUAECHO_WORKERS_GROUP_H
#define LUAECHO_WORKERS_GROUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <uv.h>

#include "cli.h"
#include "datagram.h"
#include "exit_guard.h"
#include "host.h"
#include "reload.h"
#include "reload_gate.h"
#include "server.h"
#include "tls_context.h"

struct console;
struct canary;
struct drain;

enum command {
    CMD_CLOSE_SERVER = 1,
    CMD_SHUTDOWN = 2,
    CMD_PREPARE = 4,
    CMD_COMMIT = 8,
    CMD_DISCARD = 16,
    CMD_ADOPT = 32, /* sockets handed over (no SO_REUSEPORT) wait in 'handed' */
    CMD_ABORT = 64, /* a second signal: abort every connection */
    CMD_QUERY = 128, /* the console asks (show conns, kill): see console.c */
    CMD_PROMOTE = 1024,  /* the canary passed its window: see canary.c */
    CMD_ROLLBACK = 2048, /* the canary reached --rollback-errors: see canary.c */
};
#define RELOAD_COMMANDS (CMD_PREPARE | CMD_COMMIT | CMD_DISCARD)

enum phase { PHASE_IDLE, PHASE_CHECK, PHASE_PREPARE, PHASE_COMMIT, PHASE_DISCARD };

/* How a reload ended: loaded and swapped; not loaded (a load error); or
 * loaded but turned down by its selftest or --reload-check. */
enum reload_result { RELOAD_FAILED, RELOAD_OK, RELOAD_REJECTED };

struct workers;

enum query_kind { QUERY_CONNS, QUERY_KILL };

/* Someone waiting for the outcome of a reload (the console's 'reload'). */
struct reload_waiter {
    void (*done)(void *data, enum reload_result result, const char *error, int generation);
    void *data;
    struct reload_waiter *next;
};

/* A listener of the process, set up before any worker starts. */
struct listener {
    const struct listen_spec *spec;
    union addr addr;   /* TCP, UDP: resolved; worker 1 puts the real port in */
    int unix_fd;       /* Unix: the listening socket, duplicated by every worker; -1 once they have */
    struct stat unix_file; /* ... and its file, removed at exit if still ours */
    bool unix_created; /* 'unix_file' is known */
    char name[LISTEN_SPEC_STRLEN]; /* as printed, with the real port */
};

/* A socket worker 1 accepted and handed over (no SO_REUSEPORT). */
struct handed {
    int fd;
    int listener;
};

struct worker {
    int id; /* 1..N */
    struct workers *group;
    uv_thread_t thread;
    bool thread_started;
    bool host_ready;
    struct host host;
    /* By listener: its server (TCP, Unix), else NULL; servers live until
     * teardown. Its UDP endpoint, until it is started (an endpoint is
     * freed once closed: afterwards only the loop's list reaches it). */
    struct server *servers[CLI_MAX_LISTENERS];
    struct endpoint *endpoints[CLI_MAX_LISTENERS];
    uv_async_t wakeup;
    struct reload_pending pending;
    struct tls_server *tls;         /* the TLS listeners' certificates, loaded by this worker */
    struct tls_server *pending_tls; /* ... and those a reload under way has loaded */
    struct reload_rule rule;        /* the reload policy of the last swap (canary.c) */
    struct drain *drain;            /* its drain of older generations, made when first needed */
    /* Under group->lock: */
    unsigned commands;
    unsigned close_listeners; /* with CMD_CLOSE_SERVER: which (bits by index) */
    struct handed *handed;  /* accepted sockets handed to this worker, not yet served */
    size_t handed_count, handed_room;
    bool started; /* start-up is over; 'status' says how it went */
    int status;
    bool alive;   /* its loop runs, so commands reach it */
    /* The console's query (console.c) and the worker's answer: */
    unsigned query_seq;        /* the query asked */
    enum query_kind query_kind;
    uint64_t query_id;         /* QUERY_KILL: the connection */
    unsigned answer_seq;       /* the query 'answer' is for */
    char *answer;              /* QUERY_CONNS: its rows (malloc'd); QUERY_KILL: non-NULL if it was here */
};

struct workers {
    int count;
    struct worker *list;
    const struct cli_options *options;
    const char *lua_dir;
    const char *script;
    char *script_dir;
    char *chunkname; /* "@SCRIPT", as Lua names a file's chunk */
    struct limits limits;
    struct listener listeners[CLI_MAX_LISTENERS];
    int listener_count;
    uv_loop_t loop;
    uv_async_t replies;
    struct signal_inbox signals; /* SIGINT/SIGTERM, relayed by the exit guard */
    bool listening_for_signals;
    struct reload_trigger trigger;
    struct reload_gate gate;    /* the candidate's selftest and --reload-check */
    uv_mutex_t lock;
    uv_cond_t started;
    atomic_size_t accepted;
    atomic_uint listeners_closed; /* bits by index: closed in every worker */
    bool hand_off;   /* no SO_REUSEPORT: worker 1 listens and hands sockets round */
    unsigned next_worker; /* worker 1's round-robin position */
    /* Under lock: */
    const char *shutdown_why; /* set once a shutdown was asked for: workers that start later follow */
    int running;
    int replies_expected, replies_got, failures;
    char *first_error;
    size_t open, upgraded;
    bool has_upgrade;
    struct reload_rule rule;   /* the reload policy of the code committed (canary.c sets it) */
    /* The coordinator's own: */
    enum phase phase;
    char *source;
    size_t source_len;
    const char *why;
    const char *again; /* a reload asked for while one was under way */
    int generation;
    /* What /metrics and the console show (the coordinator's own): */
    struct console *console;
    struct canary *canary;     /* with --canary: the window and its decision (canary.c) */
    uv_async_t answers;        /* a worker answered the console's query */
    uint64_t started_ns;       /* uv_hrtime() at start-up: the uptime */
    double started_wall;       /* seconds since the epoch, for process_start_time_seconds */
    unsigned long reloads_ok, reloads_failed, reloads_rejected;
    struct reload_waiter *waiting;      /* for the reload under way */
    struct reload_waiter *waiting_next; /* for the one asked for meanwhile */
};


/* Set 'command' for every running worker (and wake it). Returns how many. */
int workers_command_all(struct workers *g, unsigned command);
/* Reload now, as SIGHUP does; 'waiter' (may be NULL) hears the outcome. */
void workers_reload(struct workers *g, const char *why, struct reload_waiter *waiter);
/* Shutting down, or never got to serve? */
bool workers_shutting_down(struct workers *g);

/* workers.c's, for workers_reload.c: */
/* Does any listener serve TLS? */
bool workers_serves_tls(const struct workers *g);
/* The certificate files, loaded (again); NULL and a line in 'error' if not. */
struct tls_server *workers_load_certificates(const struct workers *g, char *error, size_t size);
/* Serve listener i's connections with w's certificates, if it is a TLS
 * one; start_tls() takes them too. */
void workers_use_certificates(struct worker *w, int i);

/* workers_reload.c's, for workers.c: */
/* On the worker's thread, for CMD_PREPARE, CMD_COMMIT, CMD_DISCARD: load
 * the new code (and certificates), put it in force, or drop it; each
 * answers the coordinator. */
void workers_reload_prepare(struct worker *w);
void workers_reload_commit(struct worker *w);
void workers_reload_discard(struct worker *w);
/* Every running worker has answered the current step: take the next. */
void workers_reload_advance(struct workers *g);
/* Before any worker starts: SIGHUP and --watch, and the script's selftest
 * (a script whose selftest fails never serves). Returns 0, or -1 after
 * logging why. */
int workers_reload_start_triggers(struct workers *g);

#endif
