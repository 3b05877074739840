/*
 * admin_command_check.h - the promises admin_command_parse keeps for any
 * input, checked by the libFuzzer target and by the corpus replay alike.
 */
#ifndef LUAECHO_ADMIN_COMMAND_CHECK_H
#define LUAECHO_ADMIN_COMMAND_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/* Parse 'data' and check every promise; false with 'why' filled in when
 * one is broken. */
bool admin_command_check(const unsigned char *data, size_t len, char *why, size_t why_len);

#endif
