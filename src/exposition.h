/*
 * exposition.h - the Prometheus text exposition format, version 0.0.4:
 * the # HELP and # TYPE lines of a family, samples with escaped label
 * values, numbers as Prometheus reads them back, and a histogram's
 * _bucket/_sum/_count lines. Writes into a text_buf; knows no metric.
 */
#ifndef LUAECHO_EXPOSITION_H
#define LUAECHO_EXPOSITION_H

#include <stddef.h>
#include <stdint.h>

#include "text_buf.h"

/* The content type of a scrape's body. */
#define EXPOSITION_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct expo_label {
    const char *name;
    const char *value; /* any bytes: escaped as the format says */
};

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void expo_family(struct text_buf *b, const char *name, const char *help, const char *type);
/* "name{l1="v1",...} value". 'suffix' is appended to the name ("_total",
 * "_bucket"; NULL: none); 'extra' (NULL: none) is one more label after
 * the n in 'labels' (a bucket's "le"). */
void expo_sample(struct text_buf *b, const char *name, const char *suffix, const struct expo_label *labels,
                 size_t n, const struct expo_label *extra, double value);
/* A histogram's samples: 'counts' holds nb + 1 counts, one per bucket
 * (not cumulative; the last is above every bound, le="+Inf"), 'bounds'
 * the nb upper bounds in increasing order. */
void expo_histogram(struct text_buf *b, const char *name, const struct expo_label *labels, size_t n,
                    const double *bounds, const uint64_t *counts, size_t nb, double sum);
/* A number as the format writes it: the shortest %g that reads back, +Inf,
 * -Inf, NaN. */
void expo_number(struct text_buf *b, double v);

#endif
