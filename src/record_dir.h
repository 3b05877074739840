/*
 * record_dir.h - the directory --record DIR writes transcripts into, and
 * --record-max: DIR kept under a byte bound by deleting the oldest
 * finished transcripts (those already there at start-up first, by name,
 * which starts with their start time).
 * One recorder per process, shared by every worker: a lock guards its
 * byte count and its list of finished files. Rule: bytes are reserved
 * before they are written, so DIR never holds more than the bound.
 */
#ifndef LUAECHO_RECORD_DIR_H
#define LUAECHO_RECORD_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct recorder;

/* Open DIR (made 0700 when missing; its parent must exist), check that a
 * file can be created in it, and count the transcripts already there
 * against 'max_bytes'. 'script' is what every header names. NULL when
 * DIR is unusable: 'why' then says so in one line. */
struct recorder *recorder_open(const char *dir, uint64_t max_bytes, const char *script, char *why, size_t len);
/* After every loop has ended. */
void recorder_close(struct recorder *r);

const char *recorder_dir(const struct recorder *r);
const char *recorder_script(const struct recorder *r);
/* May 'n' more bytes be written? Deletes the oldest finished transcripts
 * to make room; false when even that is not enough (then nothing is
 * reserved). */
bool recorder_reserve(struct recorder *r, uint64_t n);
/* Give back bytes reserved and not written (a failed write). */
void recorder_unreserve(struct recorder *r, uint64_t n);
/* The transcript 'name' (in DIR) is complete at 'size' bytes: it may be
 * deleted from now on, oldest first. */
void recorder_finished(struct recorder *r, const char *name, uint64_t size);

#endif
