/*
 * exposition.c - see exposition.h.
 */
#include "exposition.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void expo_number(struct text_buf *b, double v)
{
    if (isnan(v)) {
        text_buf_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        text_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char text[32];
    if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v) {
        /* Counters and most gauges are whole: no float formatting (a scrape
         * writes hundreds of them). */
        int n = snprintf(text, sizeof text, "%" PRId64, (int64_t)v);
        text_buf_add(b, text, (size_t)n);
        return;
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    text_buf_puts(b, text);
}

/* 's' with the bytes in 'special' (backslash, newline, and for label
 * values the double quote) escaped: the runs between them copied whole. */
static void escaped(struct text_buf *b, const char *s, const char *special)
{
    for (const char *p = s;;) {
        size_t run = strcspn(p, special);
        text_buf_add(b, p, run);
        p += run;
        if (*p == '\0')
            return;
        text_buf_add(b, *p == '\n' ? "\\n" : *p == '"' ? "\\\"" : "\\\\", 2);
        p++;
    }
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(struct text_buf *b, const char *s)
{
    escaped(b, s, "\\\"\n");
}

/* Help text: backslash and newline escaped. */
static void help_text(struct text_buf *b, const char *s)
{
    escaped(b, s, "\\\n");
}

void expo_family(struct text_buf *b, const char *name, const char *help, const char *type)
{
    text_buf_printf(b, "# HELP %s ", name);
    help_text(b, help);
    text_buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void one_label(struct text_buf *b, const struct expo_label *l, bool first)
{
    if (!first)
        text_buf_add(b, ",", 1);
    text_buf_puts(b, l->name);
    text_buf_add(b, "=\"", 2);
    label_value(b, l->value);
    text_buf_add(b, "\"", 1);
}

void expo_sample(struct text_buf *b, const char *name, const char *suffix, const struct expo_label *labels,
                 size_t n, const struct expo_label *extra, double value)
{
    text_buf_puts(b, name);
    if (suffix)
        text_buf_puts(b, suffix);
    if (n > 0 || extra) {
        text_buf_add(b, "{", 1);
        for (size_t i = 0; i < n; i++)
            one_label(b, &labels[i], i == 0);
        if (extra)
            one_label(b, extra, n == 0);
        text_buf_add(b, "}", 1);
    }
    text_buf_add(b, " ", 1);
    expo_number(b, value);
    text_buf_add(b, "\n", 1);
}

void expo_histogram(struct text_buf *b, const char *name, const struct expo_label *labels, size_t n,
                    const double *bounds, const uint64_t *counts, size_t nb, double sum)
{
    uint64_t total = 0;
    char le[32];
    for (size_t i = 0; i <= nb; i++) {
        total += counts[i];
        if (i < nb) {
            struct text_buf t;
            text_buf_init(&t);
            expo_number(&t, bounds[i]);
            char *s = text_buf_take(&t, NULL);
            snprintf(le, sizeof le, "%s", s ? s : "NaN");
            free(s);
        } else {
            snprintf(le, sizeof le, "+Inf");
        }
        expo_sample(b, name, "_bucket", labels, n, &(struct expo_label){"le", le}, (double)total);
    }
    expo_sample(b, name, "_sum", labels, n, NULL, sum);
    expo_sample(b, name, "_count", labels, n, NULL, (double)total);
}
