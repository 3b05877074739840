/*
 * text_buf.c - see text_buf.h.
 */
#include "text_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void text_buf_init(struct text_buf *b)
{
    *b = (struct text_buf){0};
}

void text_buf_free(struct text_buf *b)
{
    free(b->data);
    text_buf_init(b);
}

/* Room for 'more' bytes and the NUL. */
static bool reserve(struct text_buf *b, size_t more)
{
    if (b->failed)
        return false;
    if (more >= (size_t)-1 / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + more + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *bigger = realloc(b->data, cap);
    if (!bigger) {
        b->failed = true;
        return false;
    }
    b->data = bigger;
    b->cap = cap;
    return true;
}

void text_buf_add(struct text_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void text_buf_puts(struct text_buf *b, const char *s)
{
    text_buf_add(b, s, strlen(s));
}

void text_buf_printf(struct text_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        text_buf_add(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *text_buf_take(struct text_buf *b, size_t *len)
{
    if (b->failed) {
        text_buf_free(b);
        return NULL;
    }
    if (!b->data && !reserve(b, 0))
        return NULL;
    if (b->len == 0)
        b->data[0] = '\0';
    char *data = b->data;
    if (len)
        *len = b->len;
    text_buf_init(b);
    return data;
}
