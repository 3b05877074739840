/*
 * corpus.c - see corpus.h. Relies on the C library and the target's
 * functions only, so a replay links no more than its parser.
 */
#include "corpus.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read all of 'path' into a fresh buffer; NULL on failure. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *data = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            unsigned char *more = realloc(data, cap);
            if (!more)
                break;
            data = more;
        }
        size_t n = fread(data + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    bool ok = !ferror(f) && data;
    fclose(f);
    if (!ok) {
        free(data);
        return NULL;
    }
    return data;
}

/* libFuzzer names what it finds by the SHA-1 of its contents. */
static bool is_hash_name(const char *name)
{
    return strlen(name) == 40 && strspn(name, "0123456789abcdef") == 40;
}

/* The row of the seed called 'name', or t->seeds if it has none. */
static size_t find_seed(const struct corpus_target *t, const char *name)
{
    size_t i = 0;
    while (i < t->seeds && strcmp(t->seed_name(i), name) != 0)
        i++;
    return i;
}

/* One corpus file: the promises, and its row if it has a name. */
static bool replay_file(const struct corpus_target *t, const char *dir, const char *name, bool *seen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    unsigned char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "%s: cannot read\n", path);
        return false;
    }
    char why[256];
    bool ok = t->check(data, len, why, sizeof why);
    if (!ok)
        fprintf(stderr, "%s: %s\n", name, why);
    size_t i = find_seed(t, name);
    if (i < t->seeds) {
        seen[i] = true;
        ok = t->check_seed(i, data, len) && ok;
    } else if (!is_hash_name(name)) {
        fprintf(stderr, "%s: a named seed with no row in the table of %s\n", name, t->table);
        ok = false;
    }
    free(data);
    return ok;
}

/* Every file of 'dir' but the hidden ones; counts files and failures. */
static bool replay_dir(const struct corpus_target *t, const char *dir, bool *seen, size_t *files,
                       size_t *failures)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return false;
    }
    for (struct dirent *ent; (ent = readdir(d));) {
        if (ent->d_name[0] == '.')
            continue;
        (*files)++;
        if (!replay_file(t, dir, ent->d_name, seen))
            (*failures)++;
    }
    closedir(d);
    return true;
}

int corpus_replay(const struct corpus_target *t, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    bool *seen = calloc(t->seeds ? t->seeds : 1, sizeof *seen);
    if (!seen) {
        perror(t->name);
        return 1;
    }
    size_t files = 0, failures = 0;
    int status = 1;
    if (!replay_dir(t, argv[1], seen, &files, &failures))
        goto done;
    for (size_t i = 0; i < t->seeds; i++) {
        if (!seen[i]) {
            fprintf(stderr, "%s: in the table, missing from %s\n", t->seed_name(i), argv[1]);
            failures++;
        }
    }
    printf("%s: %zu files, %zu named seeds checked, %zu failures\n", t->name, files, t->seeds, failures);
    status = failures ? 1 : 0;
done:
    free(seen);
    return status;
}
