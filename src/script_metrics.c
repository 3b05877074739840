/*
 * script_metrics.c - see script_metrics.h. (Being written.)
 */
#include "script_metrics.h"
