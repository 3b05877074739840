/*
 * admin_command_fuzz.c - libFuzzer target for admin_command_parse: each
 * input is one console line, and the promises listed in
 * admin_command_check.c are checked. A broken promise aborts, which
 * libFuzzer reports as a crash. Built by scripts/fuzz-admin.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "admin_command_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    if (!admin_command_check(data, size, why, sizeof why)) {
        fprintf(stderr, "admin_command: %s\n", why);
        abort();
    }
    return 0;
}
