/*
 * admin_command.c - see admin_command.h. (Being written.)
 */
#include "admin_command.h"
