/*
 * proxy_header_check.h - the promises of proxy_header_parse, checked on
 * any input: shared by the libFuzzer target and the corpus replay test.
 */
#ifndef LUAECHO_PROXY_HEADER_CHECK_H
#define LUAECHO_PROXY_HEADER_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/* Parse 'data' whole and every prefix of it, each from an allocation of its
 * exact size (so AddressSanitizer sees any read past 'len'), and check the
 * answers. True when every promise holds; else false, with what broke in
 * 'why' ('why_len' bytes). */
bool proxy_check(const unsigned char *data, size_t len, char *why, size_t why_len);

#endif
