/*
 * channel_topics.h - a map from a topic (bytes) to an entry the caller
 * fills in: the hub counts a worker's subscriptions per topic in it, the
 * script layer keeps each topic's subscribers. Plain data, no locks: the
 * owner of a map serialises its use (the hub under the inbox's lock, the
 * script layer on its loop's thread).
 */
#ifndef LUAECHO_CHANNEL_TOPICS_H
#define LUAECHO_CHANNEL_TOPICS_H

#include <stddef.h>
#include <stdint.h>

struct topic_entry {
    struct topic_entry *next; /* in its bucket */
    uint64_t hash;
    long count;               /* the owner's: how many want it */
    void *first, *last;       /* the owner's: a list hung on the topic */
    size_t len;
    char name[];              /* 'len' bytes, then a NUL */
};

struct topic_map {
    struct topic_entry **buckets;
    size_t nbuckets, count;
};

/* The entry of 'name', or NULL. */
struct topic_entry *topic_map_find(const struct topic_map *m, const char *name, size_t len);
/* The entry of 'name', made (zeroed) when absent; NULL: out of memory. */
struct topic_entry *topic_map_add(struct topic_map *m, const char *name, size_t len);
/* Unlink and free 'e'. */
void topic_map_remove(struct topic_map *m, struct topic_entry *e);
/* Free every entry and the buckets; the map is empty and usable again. */
void topic_map_free(struct topic_map *m);

#endif
