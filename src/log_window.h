/*
 * log_window.h - failures that repeat: the first of each kind is logged at
 * once, with everything it says; the same again within the next 10 s is
 * only counted, and when those 10 s end one line says how many there were:
 *
 *   luaecho: error: data_received failed for 127.0.0.1:5000: x.lua:3: boom
 *   luaecho: error: data_received failed for ...: x.lua:3: boom (and 41 more like it in the last 10 s)
 *
 * "The same" is the key the caller gives (failure.c keys on the kind of
 * failure, the callback and the script's file:line), so two different
 * errors are always both logged. Process-wide and thread-safe. In JSON the
 * summary carries the count as "suppressed", and the first line's callback,
 * peer, listener and generation.
 */
#ifndef LUAECHO_LOG_WINDOW_H
#define LUAECHO_LOG_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

#define LOG_WINDOW_MS 10000

/* Log 'message' (may span lines) under 'key', or count it. */
void log_window(const char *key, enum log_level level, const char *message);
/* The same with the line's fields (log.h; NULL: none). */
void log_window_with(const char *key, enum log_level level, const struct log_fields *fields,
                     const char *message);
/* Write the summary line of every window that has ended (or all of them,
 * with 'all': at exit). Its own thread does it when a window ends. */
void log_window_flush(bool all);

#endif
