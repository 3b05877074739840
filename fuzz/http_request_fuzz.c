/*
 * http_request_fuzz.c - libFuzzer target for http_request_parse: each
 * input is parsed whole and as its prefixes, and the promises listed in
 * http_request_check.h are checked. A broken promise aborts, which
 * libFuzzer reports as a crash. Built by scripts/fuzz-http.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "http_request_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    if (!http_request_check(data, size, why, sizeof why)) {
        fprintf(stderr, "http_request: %s\n", why);
        abort();
    }
    return 0;
}
