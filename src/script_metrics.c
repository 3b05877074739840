/*
 * script_metrics.c - see script_metrics.h. The registry is one static
 * table for the process: families and series are appended under 'lock'
 * and published by a release store of their count, never moved or freed
 * before script_metrics_free(), so a Lua state names them by small
 * integer handles (1-based slots) and the renderer reads them without the
 * lock. A series is written only by its worker's thread (single writer:
 * a relaxed load, add, store is enough) and read by the renderer with
 * relaxed loads; a double is kept as its bits in a uint64_t.
 * lua/luaecho/metrics.lua checks every argument and words every error;
 * the checks here only keep a direct call from breaking the registry or
 * the exposition. Nothing raises while 'lock' is held.
 */
#include "script_metrics.h"

#include <lauxlib.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "context.h"
#include "exposition.h"
#include "runtime.h"

#define FAMILIES_MAX 1000
#define SERIES_MAX 10000
#define LABELS_MAX 16
#define BOUNDS_MAX 64

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };
static const char *const kind_names[] = {"counter", "gauge", "histogram", NULL};

struct family {
    char *name, *help;
    enum kind kind;
    size_t nlabels, nbounds;
    char **labels;         /* one block: the pointers, then the strings */
    double *bounds;        /* a histogram's upper bounds, increasing; +Inf implied */
};

struct series {
    const struct family *family;
    int worker;
    char **values;              /* family->nlabels label values, one block */
    _Atomic uint64_t value;     /* a counter's or gauge's value, a histogram's sum */
    _Atomic uint64_t counts[];  /* a histogram's nbounds + 1 counts, not cumulative */
};

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t lock;
static struct family *families[FAMILIES_MAX];
static atomic_size_t nfamilies;
static struct series *all_series[SERIES_MAX];
static atomic_size_t nseries;

static void init_lock(void)
{
    if (uv_mutex_init(&lock) != 0)
        abort(); /* cannot happen with default attributes */
}

static uint64_t bits_of(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double double_of(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* 'n' strings copied into one block: the n pointers, then the bytes.
 * NULL when out of memory (or n == 0: nothing to free either way). */
static char **copy_strings(const char *const *src, size_t n)
{
    if (n == 0)
        return NULL;
    size_t size = n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        size += strlen(src[i]) + 1;
    char **out = malloc(size);
    if (!out)
        return NULL;
    char *p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(src[i]) + 1;
        out[i] = memcpy(p, src[i], len);
        p += len;
    }
    return out;
}

static bool strings_equal(char *const *a, const char *const *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (a label name: no ':'). */
static bool valid_name(const char *s, bool colon)
{
    for (const char *p = s; *p; p++) {
        bool letter = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || (colon && *p == ':');
        if (!letter && !(p > s && *p >= '0' && *p <= '9'))
            return false;
    }
    return *s != '\0';
}

/* A declaration as a call gives it; the strings are the Lua state's. */
struct decl {
    enum kind kind;
    const char *name, *help;
    size_t nlabels, nbounds;
    const char *labels[LABELS_MAX];
    double bounds[BOUNDS_MAX];
};

/* The string at t[i], which must be one without NUL bytes. [-0, +0, v] */
static const char *string_at(lua_State *L, int arg, lua_Integer i)
{
    size_t len;
    lua_rawgeti(L, arg, i);
    const char *s = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(s) != len)
        luaL_argerror(L, arg, "strings without NUL bytes expected");
    lua_pop(L, 1); /* the table still holds it */
    return s;
}

/* The label names at 'arg': valid, not reserved, each once. [-0, +0, v] */
static void read_labels(lua_State *L, int arg, struct decl *d)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    luaL_argcheck(L, n <= LABELS_MAX, arg, "too many labels");
    d->nlabels = (size_t)n;
    for (lua_Integer i = 1; i <= n; i++) {
        const char *s = d->labels[i - 1] = string_at(L, arg, i);
        luaL_argcheck(L, valid_name(s, false) && strncmp(s, "__", 2) != 0 && strcmp(s, "worker") != 0, arg,
                      "bad label name");
        luaL_argcheck(L, d->kind != KIND_HISTOGRAM || strcmp(s, "le") != 0, arg, "bad label name");
        for (lua_Integer j = 1; j < i; j++)
            luaL_argcheck(L, strcmp(s, d->labels[j - 1]) != 0, arg, "a label given twice");
    }
}

/* A histogram's bounds at 'arg': finite, strictly increasing. [-0, +0, v] */
static void read_bounds(lua_State *L, int arg, struct decl *d)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    luaL_argcheck(L, n >= 1 && n <= BOUNDS_MAX, arg, "1 to 64 buckets expected");
    d->nbounds = (size_t)n;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, i);
        int isnum;
        double v = lua_tonumberx(L, -1, &isnum);
        lua_pop(L, 1);
        luaL_argcheck(L, isnum && isfinite(v) && (i == 1 || v > d->bounds[i - 2]), arg, "bad buckets");
        d->bounds[i - 1] = v;
    }
}

/* A family made of 'd', all of it the registry's own; NULL when out of memory. */
static struct family *family_new(const struct decl *d)
{
    struct family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    *f = (struct family){.name = strdup(d->name), .help = strdup(d->help), .kind = d->kind,
                         .nlabels = d->nlabels, .nbounds = d->nbounds,
                         .labels = copy_strings(d->labels, d->nlabels),
                         .bounds = d->nbounds ? malloc(d->nbounds * sizeof(double)) : NULL};
    if (!f->name || !f->help || (d->nlabels && !f->labels) || (d->nbounds && !f->bounds)) {
        free(f->name), free(f->help), free(f->labels), free(f->bounds), free(f);
        return NULL;
    }
    if (d->nbounds)
        memcpy(f->bounds, d->bounds, d->nbounds * sizeof(double));
    return f;
}

static void family_free(struct family *f)
{
    free(f->name), free(f->help), free(f->labels), free(f->bounds), free(f);
}

/* Whether 'f' is what 'd' declares (the help aside: the first one stays). */
static bool family_matches(const struct family *f, const struct decl *d)
{
    if (f->kind != d->kind || f->nlabels != d->nlabels || f->nbounds != d->nbounds)
        return false;
    for (size_t i = 0; i < d->nbounds; i++)
        if (f->bounds[i] != d->bounds[i]) /* ==, not memcmp: -0.0 is 0 as Lua compares */
            return false;
    return strings_equal(f->labels, d->labels, d->nlabels);
}

/* Under the lock: the slot of the family named d->name, or -1. */
static long family_find(const char *name)
{
    size_t n = atomic_load_explicit(&nfamilies, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (strcmp(families[i]->name, name) == 0)
            return (long)i;
    return -1;
}

/* Under the lock: publish 'f' in the next slot; false when full. */
static bool family_publish(struct family *f)
{
    size_t n = atomic_load_explicit(&nfamilies, memory_order_relaxed);
    if (n == FAMILIES_MAX)
        return false;
    families[n] = f;
    atomic_store_explicit(&nfamilies, n + 1, memory_order_release);
    return true;
}

/* Push what the family in 'slot' was declared as: kind, label names,
 * bounds (nil for none). Its fields never change, so no lock. [-0, +3, m] */
static int push_existing(lua_State *L, size_t slot)
{
    const struct family *f = families[slot];
    lua_pushstring(L, kind_names[f->kind]);
    lua_createtable(L, (int)f->nlabels, 0);
    for (size_t i = 0; i < f->nlabels; i++) {
        lua_pushstring(L, f->labels[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (f->kind != KIND_HISTOGRAM) {
        lua_pushnil(L);
        return 3;
    }
    lua_createtable(L, (int)f->nbounds, 0);
    for (size_t i = 0; i < f->nbounds; i++) {
        lua_pushnumber(L, f->bounds[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 3;
}

/* core.metric_family(kind, name, help, labelnames [, buckets]): the
 * handle of the family, made now or declared before exactly so; nil,
 * "clash", kind, labelnames, buckets when the name is taken otherwise;
 * nil, "full", FAMILIES_MAX when the process has that many. */
static int metric_family(lua_State *L)
{
    struct decl d = {.kind = (enum kind)luaL_checkoption(L, 1, NULL, kind_names)};
    d.name = luaL_checkstring(L, 2);
    d.help = luaL_checkstring(L, 3);
    luaL_argcheck(L, valid_name(d.name, true) && strncmp(d.name, "luaecho_", 8) != 0 &&
                         strncmp(d.name, "process_", 8) != 0, /* the host's own families */
                  2, "bad metric name");
    read_labels(L, 4, &d);
    if (d.kind == KIND_HISTOGRAM)
        read_bounds(L, 5, &d);
    struct family *f = family_new(&d);
    if (!f)
        return luaL_error(L, "not enough memory");
    uv_mutex_lock(&lock);
    long slot = family_find(d.name);
    bool made = slot < 0 && family_publish(f);
    if (made)
        slot = (long)atomic_load_explicit(&nfamilies, memory_order_relaxed) - 1;
    bool same = slot >= 0 && family_matches(families[slot], &d);
    uv_mutex_unlock(&lock);
    if (!made)
        family_free(f);
    if (same) {
        lua_pushinteger(L, slot + 1);
        return 1;
    }
    lua_pushnil(L);
    if (slot < 0) {
        lua_pushliteral(L, "full");
        lua_pushinteger(L, FAMILIES_MAX);
        return 3;
    }
    lua_pushliteral(L, "clash");
    return 2 + push_existing(L, (size_t)slot);
}

/* The family of handle 'arg'. [-0, +0, v] */
static struct family *check_family(lua_State *L, int arg)
{
    lua_Integer h = luaL_checkinteger(L, arg);
    size_t n = atomic_load_explicit(&nfamilies, memory_order_acquire);
    luaL_argcheck(L, h >= 1 && (size_t)h <= n, arg, "no such metric");
    return families[h - 1];
}

/* A series of 'f' for 'worker' with a copy of 'values'; NULL when out of memory. */
static struct series *series_new(const struct family *f, int worker, const char *const *values)
{
    size_t ncounts = f->kind == KIND_HISTOGRAM ? f->nbounds + 1 : 0;
    struct series *s = calloc(1, sizeof *s + ncounts * sizeof s->counts[0]);
    if (!s)
        return NULL;
    s->family = f;
    s->worker = worker;
    s->values = copy_strings(values, f->nlabels);
    if (f->nlabels && !s->values) {
        free(s);
        return NULL;
    }
    atomic_init(&s->value, bits_of(0.0));
    for (size_t i = 0; i < ncounts; i++)
        atomic_init(&s->counts[i], 0);
    return s;
}

static void series_free(struct series *s)
{
    free(s->values);
    free(s);
}

/* Under the lock: the slot of f's series for 'worker' and 'values', or -1. */
static long series_find(const struct family *f, int worker, const char *const *values)
{
    size_t n = atomic_load_explicit(&nseries, memory_order_relaxed);
    for (size_t i = n; i-- > 0;) {
        const struct series *s = all_series[i];
        if (s->family == f && s->worker == worker && strings_equal(s->values, values, f->nlabels))
            return (long)i;
    }
    return -1;
}

/* Under the lock: publish 's' in the next slot; false when full. */
static bool series_publish(struct series *s)
{
    size_t n = atomic_load_explicit(&nseries, memory_order_relaxed);
    if (n == SERIES_MAX)
        return false;
    all_series[n] = s;
    atomic_store_explicit(&nseries, n + 1, memory_order_release);
    return true;
}

/* core.metric_series(family, label_values): the handle of the family's
 * series for these label values (strings, one per label name) and this
 * state's worker, made now or before; nil, "full", SERIES_MAX when the
 * process has that many. */
static int metric_series(lua_State *L)
{
    struct family *f = check_family(L, 1);
    int worker = (int)lua_tointeger(L, lua_upvalueindex(1));
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_argcheck(L, lua_rawlen(L, 2) == f->nlabels, 2, "one value per label expected");
    const char *values[LABELS_MAX];
    for (size_t i = 0; i < f->nlabels; i++)
        values[i] = string_at(L, 2, (lua_Integer)i + 1);
    struct series *s = series_new(f, worker, values);
    if (!s)
        return luaL_error(L, "not enough memory");
    uv_mutex_lock(&lock);
    long slot = series_find(f, worker, values);
    bool made = slot < 0 && series_publish(s);
    if (made)
        slot = (long)atomic_load_explicit(&nseries, memory_order_relaxed) - 1;
    uv_mutex_unlock(&lock);
    if (!made)
        series_free(s);
    if (slot < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "full");
        lua_pushinteger(L, SERIES_MAX);
        return 3;
    }
    lua_pushinteger(L, slot + 1);
    return 1;
}

/* The series of handle 1, which must be this worker's and of 'kind' (a
 * gauge's is also a counter's to add to). [-0, +0, v] */
static struct series *check_series(lua_State *L, enum kind kind)
{
    lua_Integer h = luaL_checkinteger(L, 1);
    size_t n = atomic_load_explicit(&nseries, memory_order_acquire);
    luaL_argcheck(L, h >= 1 && (size_t)h <= n, 1, "no such series");
    struct series *s = all_series[h - 1];
    luaL_argcheck(L, s->worker == lua_tointeger(L, lua_upvalueindex(1)), 1, "another worker's series");
    enum kind k = s->family->kind;
    luaL_argcheck(L, k == kind || (kind == KIND_COUNTER && k == KIND_GAUGE), 1, "wrong kind of metric");
    return s;
}

/* A finite number at 'arg'. [-0, +0, v] */
static double check_finite(lua_State *L, int arg)
{
    double v = luaL_checknumber(L, arg);
    luaL_argcheck(L, isfinite(v), arg, "a finite number expected");
    return v;
}

static void add_to(_Atomic uint64_t *cell, double n)
{
    double v = double_of(atomic_load_explicit(cell, memory_order_relaxed));
    atomic_store_explicit(cell, bits_of(v + n), memory_order_relaxed);
}

/* core.metric_add(series, n): a counter's (n >= 0) or a gauge's value + n. */
static int metric_add(lua_State *L)
{
    struct series *s = check_series(L, KIND_COUNTER);
    double n = check_finite(L, 2);
    luaL_argcheck(L, n >= 0 || s->family->kind == KIND_GAUGE, 2, "a counter only goes up");
    add_to(&s->value, n);
    return 0;
}

/* core.metric_set(series, v): a gauge's value. */
static int metric_set(lua_State *L)
{
    struct series *s = check_series(L, KIND_GAUGE);
    atomic_store_explicit(&s->value, bits_of(check_finite(L, 2)), memory_order_relaxed);
    return 0;
}

/* core.metric_observe(series, v): one observation in a histogram. */
static int metric_observe(lua_State *L)
{
    struct series *s = check_series(L, KIND_HISTOGRAM);
    double v = check_finite(L, 2);
    const double *bounds = s->family->bounds;
    size_t lo = 0, hi = s->family->nbounds; /* the first bound >= v, or nbounds: +Inf */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    uint64_t c = atomic_load_explicit(&s->counts[lo], memory_order_relaxed);
    atomic_store_explicit(&s->counts[lo], c + 1, memory_order_relaxed);
    add_to(&s->value, v);
    return 0;
}

static const luaL_Reg metric_functions[] = {
    {"metric_family", metric_family}, {"metric_series", metric_series}, {"metric_add", metric_add},
    {"metric_set", metric_set},       {"metric_observe", metric_observe}, {NULL, NULL},
};

void script_metrics_register(lua_State *L, int index)
{
    uv_once(&once, init_lock);
    index = lua_absindex(L, index);
    struct loop_context *ctx = runtime_context(L);
    lua_pushvalue(L, index);
    lua_pushinteger(L, ctx ? ctx->worker_id : 1); /* the worker every call of this state writes as */
    luaL_setfuncs(L, metric_functions, 1);
    lua_pop(L, 1);
}

/* Series in the order a scrape lists them: by family name, worker, then
 * label values. */
static int series_order(const void *pa, const void *pb)
{
    const struct series *a = *(struct series *const *)pa, *b = *(struct series *const *)pb;
    if (a->family != b->family)
        return strcmp(a->family->name, b->family->name);
    if (a->worker != b->worker)
        return a->worker < b->worker ? -1 : 1;
    for (size_t i = 0; i < a->family->nlabels; i++) {
        int c = strcmp(a->values[i], b->values[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static int family_order(const void *pa, const void *pb)
{
    return strcmp((*(struct family *const *)pa)->name, (*(struct family *const *)pb)->name);
}

/* One series' samples: worker="N" first, then the script's labels. */
static void render_series(struct text_buf *out, const struct series *s)
{
    const struct family *f = s->family;
    char worker[16];
    snprintf(worker, sizeof worker, "%d", s->worker);
    struct expo_label labels[1 + LABELS_MAX] = {{"worker", worker}};
    for (size_t i = 0; i < f->nlabels; i++)
        labels[i + 1] = (struct expo_label){f->labels[i], s->values[i]};
    double value = double_of(atomic_load_explicit(&s->value, memory_order_relaxed));
    if (f->kind != KIND_HISTOGRAM) {
        expo_sample(out, f->name, NULL, labels, 1 + f->nlabels, NULL, value);
        return;
    }
    uint64_t counts[BOUNDS_MAX + 1];
    for (size_t i = 0; i <= f->nbounds; i++)
        counts[i] = atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    expo_histogram(out, f->name, labels, 1 + f->nlabels, f->bounds, counts, f->nbounds, value);
}

/* Families and series sorted for a scrape, over 'fams' and 'ser' (as
 * many as published when the render began). */
static void render_sorted(struct text_buf *out, struct family **fams, size_t nf, struct series **ser, size_t ns)
{
    qsort(fams, nf, sizeof *fams, family_order);
    qsort(ser, ns, sizeof *ser, series_order);
    size_t j = 0;
    for (size_t i = 0; i < nf; i++) {
        expo_family(out, fams[i]->name, fams[i]->help, kind_names[fams[i]->kind]);
        while (j < ns && strcmp(ser[j]->family->name, fams[i]->name) < 0)
            j++; /* never: script_metrics_render loads the counts in the safe order */
        while (j < ns && ser[j]->family == fams[i])
            render_series(out, ser[j++]);
    }
}

void script_metrics_render(struct text_buf *out)
{
    /* Series first: a family is published before any of its series, so
     * every series counted here has its family among those counted next. */
    size_t ns = atomic_load_explicit(&nseries, memory_order_acquire);
    size_t nf = atomic_load_explicit(&nfamilies, memory_order_acquire);
    if (nf == 0)
        return;
    struct family **fams = malloc(nf * sizeof *fams);
    struct series **ser = malloc((ns ? ns : 1) * sizeof *ser);
    if (!fams || !ser) {
        out->failed = true; /* as an append that ran out of memory */
    } else {
        memcpy(fams, families, nf * sizeof *fams);
        memcpy(ser, all_series, ns * sizeof *ser);
        render_sorted(out, fams, nf, ser, ns);
    }
    free(fams);
    free(ser);
}

void script_metrics_free(void)
{
    size_t ns = atomic_load_explicit(&nseries, memory_order_acquire);
    for (size_t i = 0; i < ns; i++)
        series_free(all_series[i]);
    size_t nf = atomic_load_explicit(&nfamilies, memory_order_acquire);
    for (size_t i = 0; i < nf; i++)
        family_free(families[i]);
    atomic_store(&nseries, 0);
    atomic_store(&nfamilies, 0);
}
