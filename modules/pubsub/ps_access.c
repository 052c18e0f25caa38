/* Who may do what on a node: affiliations (XEP-0060 §4.1) and access
 * models (§4.5) for reading, publish models (§16.4.4) for publishing. */
#include <string.h>

#include "ps.h"

int ps_affiliation_of(const ps_node *n, const char *bare)
{
    /* PEP (XEP-0163 §2.2): the account is the one owner of every node. */
    if (n->svc->pep && bare && strcmp(bare, n->svc->jid) == 0)
        return PS_AFF_OWNER;
    for (const char *const *a = n->svc->admins; a && *a && bare; a++)
        if (strcmp(*a, bare) == 0)
            return PS_AFF_OWNER;
    return ps_aff_get(n, bare);
}

static int ps_deny(const char *type, const char *cond, const char *ps_cond, const char **type_r,
                   const char **cond_r, const char **ps_cond_r)
{
    *type_r = type;
    *cond_r = cond;
    *ps_cond_r = ps_cond;
    return -1;
}

int ps_may_read(const ps_node *n, const char *bare, void *ctx, const char **type_r,
                const char **cond_r, const char **ps_cond_r)
{
    const ps_service *s = n->svc;
    int aff = ps_affiliation_of(n, bare);
    if (aff == PS_AFF_OWNER || aff == PS_AFF_PUBLISHER || aff == PS_AFF_MEMBER)
        return 0;
    if (aff == PS_AFF_OUTCAST || aff == PS_AFF_PUBLISH_ONLY)
        return ps_deny("auth", "forbidden", NULL, type_r, cond_r, ps_cond_r);
    switch (n->cfg.access) {
    case PS_ACCESS_OPEN:
        return 0;
    case PS_ACCESS_PRESENCE:
        if (s->ops->presence_sub && s->ops->presence_sub(s, bare, ctx))
            return 0;
        return ps_deny("auth", "not-authorized", "presence-subscription-required", type_r, cond_r,
                       ps_cond_r);
    case PS_ACCESS_ROSTER:
        if (s->ops->in_groups && n->cfg.groups && s->ops->in_groups(s, bare, n->cfg.groups, ctx))
            return 0;
        return ps_deny("auth", "not-authorized", "not-in-roster-group", type_r, cond_r, ps_cond_r);
    default: /* whitelist: members only */
        return ps_deny("cancel", "not-allowed", "closed-node", type_r, cond_r, ps_cond_r);
    }
}

bool ps_may_publish(const ps_node *n, const char *bare, const char *full)
{
    int aff = ps_affiliation_of(n, bare);
    if (aff == PS_AFF_OUTCAST)
        return false;
    if (aff == PS_AFF_OWNER || aff == PS_AFF_PUBLISHER || aff == PS_AFF_PUBLISH_ONLY)
        return true;
    if (n->cfg.publish_model == PS_PUBLISH_OPEN)
        return true;
    return n->cfg.publish_model == PS_PUBLISH_SUBSCRIBERS && ps_node_subscribed(n, full, bare);
}
