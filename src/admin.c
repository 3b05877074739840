/*
 * admin.c - see admin.h. (Being written.)
 */
#include "admin.h"
