/*
 * reload_policy.h - what a hot swap does to the connections of older
 * generations, as the new script's Protocol says (reload_policy,
 * drain_timeout). Relies on luaecho.loader having checked both (a bad
 * value fails the load there, with its message), so reading finds only
 * good values.
 * Rule: a script that says nothing behaves as before the policy existed:
 * upgrade(instance) when the Protocol defines it, else keep.
 */
#ifndef LUAECHO_RELOAD_POLICY_H
#define LUAECHO_RELOAD_POLICY_H

#include <lua.h>

enum reload_policy {
    RELOAD_KEEP,    /* open connections keep their instance and its code */
    RELOAD_UPGRADE, /* Protocol.upgrade(instance) for each */
    RELOAD_DRAIN,   /* closed once idle, at the latest after drain_timeout */
};

/* Seconds a drain lasts when the script gives no drain_timeout. */
#define RELOAD_DRAIN_TIMEOUT_DEFAULT 30.0

struct reload_rule {
    enum reload_policy policy;
    double drain_timeout; /* seconds, for RELOAD_DRAIN */
};

/* The rule of the Protocol table at 'index'. [-0, +0, e] */
struct reload_rule reload_policy_read(lua_State *L, int index);
/* "keep", "upgrade", "drain" */
const char *reload_policy_name(enum reload_policy policy);

#endif
