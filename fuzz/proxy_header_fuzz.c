/*
 * proxy_header_fuzz.c - libFuzzer target for proxy_header_parse: each input
 * is parsed whole and as every prefix, and the promises listed in
 * proxy_header_check.c are checked. A broken promise aborts, which
 * libFuzzer reports as a crash. Built by scripts/fuzz-proxy.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proxy_header_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    if (!proxy_check(data, size, why, sizeof why)) {
        fprintf(stderr, "proxy_header: %s\n", why);
        abort();
    }
    return 0;
}
