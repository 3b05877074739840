/*
 * text_buf.h - a growable byte buffer for text built in pieces: a scrape's
 * exposition, a console answer. Out of memory is sticky: once an append
 * fails, every later one does nothing and text_buf_take() returns NULL,
 * so a caller checks once, at the end.
 */
#ifndef LUAECHO_TEXT_BUF_H
#define LUAECHO_TEXT_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct text_buf {
    char *data; /* NUL-terminated while not failed (once anything was added) */
    size_t len, cap;
    bool failed;
};

void text_buf_init(struct text_buf *b);
void text_buf_free(struct text_buf *b);
void text_buf_add(struct text_buf *b, const char *s, size_t n);
void text_buf_puts(struct text_buf *b, const char *s);
void text_buf_printf(struct text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The bytes (NUL-terminated, "" if none), now the caller's to free; the
 * buffer is empty again. NULL if an append ran out of memory. */
char *text_buf_take(struct text_buf *b, size_t *len);

#endif
