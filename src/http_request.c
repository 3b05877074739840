/*
 * http_request.c - see http_request.h. (Being written.)
 */
#include "http_request.h"
