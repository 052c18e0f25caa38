/* shared_roster: what its files share (shared_roster.c: options, the
 * roster overlay, building and announcing the groups, the module;
 * sr_sources.c: reading the account list and the directory). */
#ifndef SHARED_ROSTER_H
#define SHARED_ROSTER_H

#include <xmppd/xmppd.h>

#include "../auth_ldap/directory_api.h"
#include "../roster/roster_api.h"
#include "sr_model.h"

/* ---- options (parsed by the kernel) ---- */

typedef struct sr_group_conf {
    const char *id; /* the map key */
    const char *name;
    const char *const *members;
    bool all_users;
    const char *const *shows;
} sr_group_conf;

typedef struct sr_ldap_conf {
    bool enabled;
    const char *base;
    const char *filter;
    const char *id_attribute;
    const char *name_attribute;
    const char *const *member_attributes;
    const char *const *member_uid_attributes;
    const char *user_group_attribute;
    const char *contact_name_attribute;
} sr_ldap_conf;

typedef struct sr_conf {
    long long refresh;
    long long max_group_size;
    xmppd_opt_array groups; /* sr_group_conf */
    sr_ldap_conf ldap;
} sr_conf;

/* ---- state ---- */

/* A group read from the directory (kept until a later read succeeds). */
typedef struct sr_lgroup {
    char *id, *name;
    char **members; /* bare JIDs */
    size_t n;
} sr_lgroup;

typedef struct sr_lgroups {
    sr_lgroup *g;
    size_t n;
    char **names; /* jid, name, jid, name, ... (contact names) */
    size_t n_names;
} sr_lgroups;

typedef struct sr_refresh sr_refresh;

typedef struct sr_state {
    roster_overlay ov; /* first: the overlay pointer is the state */
    xmppd_module *m;
    xmppd_host *host;
    const char *domain;
    const sr_conf *conf;
    char ***config_members; /* per configured group: its listed members, bare JIDs, NULL-terminated */
    sr_model *model;
    const char **names;    /* scratch for ov.get: group names */
    size_t names_max;
    char **all;            /* last good account list (bare JIDs) */
    size_t n_all;
    sr_lgroups ldap;       /* last good directory groups */
    bool needs_all;
    sr_refresh *running;
    char *last_unknown;
    char user_buf[2 * XMPPD_JID_PART_MAX + 2];
} sr_state;

/* ---- shared_roster.c ---- */
void sr_strs_free(char **v, size_t n);
void sr_lgroups_free(sr_lgroups *l);
/* The bare JID of account name on the host (nodeprepped), malloc'd; NULL
 * when name is not a valid localpart. */
char *sr_account_jid(const sr_state *st, const char *name);
/* The value of key in pairs (key, value, key, value, ...) sorted by key, or NULL. */
const char *sr_pair_find(char **pairs, size_t n, const char *key);
/* Builds the groups from what the sources last gave and puts them in force. */
void sr_rebuild(sr_state *st);

/* ---- sr_sources.c ---- */
/* Reads the sources again (the account list for all_users groups, the
 * directory's users and groups); the last answer rebuilds. */
void sr_refresh_start(sr_state *st);

#endif
