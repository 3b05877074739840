/*
 * reload_policy.c - see reload_policy.h. Reads the fields as the loader
 * did (an __index may answer them), so it is called under protection
 * (reload.c's prepare).
 */
#include "reload_policy.h"

#include <string.h>

/* t[name], as the loader read it; 'index' is absolute. [-0, +1, e] */
static int field(lua_State *L, int index, const char *name)
{
    return lua_getfield(L, index, name);
}

struct reload_rule reload_policy_read(lua_State *L, int index)
{
    struct reload_rule rule = {.policy = RELOAD_KEEP, .drain_timeout = RELOAD_DRAIN_TIMEOUT_DEFAULT};
    index = lua_absindex(L, index);
    const char *policy = field(L, index, "reload_policy") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!policy) /* unsaid: as before the policy existed */
        rule.policy = field(L, index, "upgrade") == LUA_TFUNCTION ? RELOAD_UPGRADE : RELOAD_KEEP;
    else if (strcmp(policy, "upgrade") == 0)
        rule.policy = RELOAD_UPGRADE;
    else if (strcmp(policy, "drain") == 0)
        rule.policy = RELOAD_DRAIN;
    lua_pop(L, policy ? 1 : 2);
    if (rule.policy == RELOAD_DRAIN && field(L, index, "drain_timeout") == LUA_TNUMBER)
        rule.drain_timeout = lua_tonumber(L, -1);
    if (rule.policy == RELOAD_DRAIN)
        lua_pop(L, 1);
    return rule;
}

const char *reload_policy_name(enum reload_policy policy)
{
    static const char *const names[] = {[RELOAD_KEEP] = "keep", [RELOAD_UPGRADE] = "upgrade", [RELOAD_DRAIN] = "drain"};
    return names[policy];
}
