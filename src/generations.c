/*
 * generations.c - see generations.h. One static table under one mutex:
 * counting is a lock and an add, done when a connection starts or ends or
 * a callback fails, never per byte. The canary's share is a process-wide
 * counter, so the split is exact whatever worker accepts.
 */
#include "generations.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* Rows kept even when they could go: the recent history is what an
 * operator asks about after a bad deploy. */
#define KEEP_RECENT 8

static struct {
    uv_mutex_t lock;
    struct generation_row rows[GENERATIONS_MAX]; /* oldest first */
    size_t count;
    int share;              /* the canary's percent of new connections */
    int rollback_errors;    /* its threshold */
    uint64_t picks;         /* new connections since the canary started */
    char last_rollback[GENERATIONS_ERROR_MAX + 120];
    void (*alarm)(void *data);
    void *alarm_data;
} table;

static uv_once_t once = UV_ONCE_INIT;

static void init_lock(void)
{
    uv_mutex_init(&table.lock);
}

static void lock(void)
{
    uv_once(&once, init_lock);
    uv_mutex_lock(&table.lock);
}

static void unlock(void)
{
    uv_mutex_unlock(&table.lock);
}

static struct generation_row *find(int generation)
{
    for (size_t i = 0; i < table.count; i++) {
        if (table.rows[i].generation == generation)
            return &table.rows[i];
    }
    return NULL;
}

static void add_row(int generation, enum generation_state state)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    table.rows[table.count++] = (struct generation_row){
        .generation = generation,
        .state = state,
        .loaded_at = (double)now.tv_sec + (double)now.tv_nsec / 1e9,
        .loaded_ns = uv_hrtime(),
    };
}

void generations_reset(int generation)
{
    lock();
    table.count = 0;
    table.picks = 0;
    table.last_rollback[0] = '\0';
    add_row(generation, GENERATION_ACTIVE);
    unlock();
}

void generations_set_alarm(void (*fn)(void *data), void *data)
{
    lock();
    table.alarm = fn;
    table.alarm_data = data;
    unlock();
}

static void drop_row(size_t i)
{
    memmove(&table.rows[i], &table.rows[i + 1], (table.count - i - 1) * sizeof table.rows[0]);
    table.count--;
}

/* Forget old rows with no connection left beyond the KEEP_RECENT newest;
 * then, if the table is still full, the oldest old row whatever it holds
 * (its connections go on, uncounted). */
static void make_room(void)
{
    for (size_t i = 0; i < table.count && table.count > KEEP_RECENT;) {
        const struct generation_row *r = &table.rows[i];
        bool gone = (r->state == GENERATION_OLD || r->state == GENERATION_ROLLED_BACK) && r->connections <= 0;
        if (gone)
            drop_row(i);
        else
            i++;
    }
    for (size_t i = 0; i < table.count && table.count >= GENERATIONS_MAX; i++) {
        if (table.rows[i].state == GENERATION_OLD || table.rows[i].state == GENERATION_ROLLED_BACK) {
            drop_row(i);
            break;
        }
    }
}

void generations_add(int generation, bool canary, int share, int rollback_errors)
{
    lock();
    for (size_t i = 0; i < table.count; i++) {
        struct generation_row *r = &table.rows[i];
        if (r->state == GENERATION_CANARY || (!canary && r->state == GENERATION_ACTIVE))
            r->state = GENERATION_OLD;
    }
    make_room();
    if (table.count < GENERATIONS_MAX)
        add_row(generation, canary ? GENERATION_CANARY : GENERATION_ACTIVE);
    table.share = share;
    table.rollback_errors = rollback_errors;
    table.picks = 0;
    unlock();
}

void generations_count_conn(int generation, int delta)
{
    lock();
    struct generation_row *r = find(generation);
    if (r)
        r->connections += delta;
    unlock();
}

/* The first line of 'message', into the row. */
static void keep_first_error(struct generation_row *r, const char *message)
{
    size_t n = strcspn(message, "\n");
    snprintf(r->first_error, sizeof r->first_error, "%.*s", (int)n, message);
}

void generations_count_error(int generation, const char *message)
{
    bool alarm = false;
    lock();
    struct generation_row *r = find(generation);
    if (r) {
        r->errors++;
        if (r->errors == 1)
            keep_first_error(r, message);
        if (r->state == GENERATION_CANARY && ++r->window_errors == (uint64_t)table.rollback_errors) {
            r->alarm_ns = uv_hrtime();
            alarm = true;
        }
    }
    void (*fn)(void *) = table.alarm;
    void *data = table.alarm_data;
    unlock();
    if (alarm && fn)
        fn(data);
}

bool generations_serve_newest(int generation)
{
    lock();
    const struct generation_row *r = find(generation);
    bool newest = true;
    if (r && r->state == GENERATION_ROLLED_BACK) {
        newest = false;
    } else if (r && r->state == GENERATION_CANARY) {
        uint64_t n = table.picks++, p = (uint64_t)table.share;
        newest = ((n + 1) * p + 99) / 100 > (n * p + 99) / 100;
    }
    unlock();
    return newest;
}

enum generation_state generations_state(int generation)
{
    lock();
    const struct generation_row *r = find(generation);
    enum generation_state state = r ? r->state : GENERATION_OLD;
    unlock();
    return state;
}

void generations_promote(int generation)
{
    lock();
    struct generation_row *r = find(generation);
    if (r && r->state == GENERATION_CANARY) {
        for (size_t i = 0; i < table.count; i++) {
            if (table.rows[i].state == GENERATION_ACTIVE)
                table.rows[i].state = GENERATION_OLD;
        }
        r->state = GENERATION_ACTIVE;
    }
    unlock();
}

void generations_roll_back(int generation, const char *why)
{
    lock();
    struct generation_row *r = find(generation);
    if (r && r->state == GENERATION_CANARY) {
        r->state = GENERATION_ROLLED_BACK;
        snprintf(table.last_rollback, sizeof table.last_rollback, "%s", why);
    }
    unlock();
}

bool generations_get(int generation, struct generation_row *row, struct generation_row *active)
{
    lock();
    const struct generation_row *r = find(generation);
    if (r && row)
        *row = *r;
    for (size_t i = 0; active && i < table.count; i++) {
        if (table.rows[i].state == GENERATION_ACTIVE)
            *active = table.rows[i];
    }
    unlock();
    return r != NULL;
}

size_t generations_snapshot(struct generation_row rows[GENERATIONS_MAX])
{
    lock();
    size_t n = table.count;
    memcpy(rows, table.rows, n * sizeof *rows);
    unlock();
    return n;
}

const char *generations_state_name(enum generation_state state)
{
    static const char *const names[] = {
        [GENERATION_CANARY] = "canary",
        [GENERATION_ACTIVE] = "active",
        [GENERATION_OLD] = "old",
        [GENERATION_ROLLED_BACK] = "rolled-back",
    };
    return names[state];
}

void generations_format(struct text_buf *out)
{
    struct generation_row rows[GENERATIONS_MAX];
    size_t n = generations_snapshot(rows);
    text_buf_puts(out, "generation loaded state connections errors\n");
    for (size_t i = 0; i < n; i++) {
        time_t t = (time_t)rows[i].loaded_at;
        struct tm tm;
        char when[32];
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        text_buf_printf(out, "%d %s %s %ld %llu\n", rows[i].generation, when, generations_state_name(rows[i].state),
                        rows[i].connections, (unsigned long long)rows[i].errors);
    }
    lock();
    if (table.last_rollback[0])
        text_buf_printf(out, "# %s\n", table.last_rollback);
    unlock();
}
