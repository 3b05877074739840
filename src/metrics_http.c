/*
 * metrics_http.c - see metrics_http.h. (Being written.)
 */
#include "metrics_http.h"
