/*
 * ctl.h - `luaecho ctl [--admin SPEC] COMMAND...`: send one command to a
 * running server's admin console and print the answer.
 */
#ifndef LUAECHO_CTL_H
#define LUAECHO_CTL_H

/* argv[0] is "ctl". The console is --admin SPEC, else $LUAECHO_ADMIN.
 * Prints the answer on stdout and returns 0; an error answer is printed
 * on stderr and returns 1; cannot connect: one line on stderr, 1; a usage
 * mistake: one line on stderr, 2. */
int ctl_main(int argc, char **argv);

#endif
