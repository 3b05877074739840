/*
 * channel_topics.c - topic -> entry, a chained hash table (FNV-1a) that
 * doubles when it holds as many entries as buckets. Relies on nothing.
 * An entry's address stays valid until it is removed: growing moves the
 * bucket array, never the entries.
 */
#include "channel_topics.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_of(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return h;
}

struct topic_entry *topic_map_find(const struct topic_map *m, const char *name, size_t len)
{
    if (m->nbuckets == 0)
        return NULL;
    uint64_t h = hash_of(name, len);
    for (struct topic_entry *e = m->buckets[h % m->nbuckets]; e; e = e->next) {
        if (e->hash == h && e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    }
    return NULL;
}

/* Rehash into twice the buckets (16 at first). False: out of memory, the map unchanged. */
static bool grow(struct topic_map *m)
{
    size_t n = m->nbuckets ? 2 * m->nbuckets : 16;
    struct topic_entry **buckets = calloc(n, sizeof *buckets);
    if (!buckets)
        return false;
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct topic_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = buckets[e->hash % n];
            buckets[e->hash % n] = e;
        }
    }
    free(m->buckets);
    m->buckets = buckets;
    m->nbuckets = n;
    return true;
}

struct topic_entry *topic_map_add(struct topic_map *m, const char *name, size_t len)
{
    struct topic_entry *e = topic_map_find(m, name, len);
    if (e)
        return e;
    if (m->count >= m->nbuckets && !grow(m) && m->nbuckets == 0)
        return NULL; /* a full table that cannot grow still takes entries, in longer chains */
    e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    e->hash = hash_of(name, len);
    e->len = len;
    memcpy(e->name, name, len);
    struct topic_entry **bucket = &m->buckets[e->hash % m->nbuckets];
    e->next = *bucket;
    *bucket = e;
    m->count++;
    return e;
}

void topic_map_remove(struct topic_map *m, struct topic_entry *e)
{
    for (struct topic_entry **p = &m->buckets[e->hash % m->nbuckets]; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            m->count--;
            free(e);
            return;
        }
    }
}

void topic_map_free(struct topic_map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct topic_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->buckets);
    *m = (struct topic_map){0};
}
