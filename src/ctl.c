/*
 * ctl.c - see ctl.h. (Being written.)
 */
#include "ctl.h"
