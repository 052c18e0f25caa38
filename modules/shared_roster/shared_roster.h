/* shared_roster: what its files share (shared_roster.c: options, the
 * roster overlay, building and announcing the groups, the module;
 * sr_sources.c: a refresh, reading the account list and the directory;
 * sr_sql.c: the groups an SQL query gives). */
#ifndef SHARED_ROSTER_H
#define SHARED_ROSTER_H

#include <xmppd/xmppd.h>

#include "../auth_ldap/directory_api.h"
#include "../pgpool/pgpool.h"
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

typedef struct sr_sql_conf {
    const char *connect; /* NULL: no SQL groups */
    const char *query;
    long long connect_timeout, query_timeout, reconnect_max;
} sr_sql_conf;

typedef struct sr_conf {
    long long refresh;
    long long max_group_size;
    xmppd_opt_array groups; /* sr_group_conf */
    sr_ldap_conf ldap;
    sr_sql_conf sql;
} sr_conf;

/* ---- state ---- */

/* A group read from the directory or SQL (kept until a later read succeeds). */
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

typedef struct sr_state sr_state;

/* One refresh: the sources it waits for. Each answers once (or with a
 * CANCELLED status while the module unloads); the last one builds. */
typedef struct sr_refresh {
    sr_state *st;
    int pending;
    bool cancelled;
    char **all;           /* accounts, when the list came */
    size_t n_all;
    bool all_ok;
    sr_lgroups ldap;      /* groups, when the directory answered */
    bool ldap_ok;
    sr_lgroups sql;       /* groups, when the SQL query answered */
    bool sql_ok;
    char **dns;           /* users: normalised DN, bare JID, ... sorted by DN */
    size_t n_dns;
    const char **jids;    /* the users' bare JIDs (borrowed from dns), sorted */
    size_t n_jids;
} sr_refresh;

struct sr_state {
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
    sr_lgroups sql;        /* last good SQL groups */
    pgpool *db;            /* the SQL groups' database, NULL without */
    char *sql_text;        /* sql.query compiled */
    bool sql_uses_domain;
    bool needs_all;
    sr_refresh *running;
    char *last_unknown;
    char user_buf[2 * XMPPD_JID_PART_MAX + 2];
};

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
/* One source answered: the last one puts the new groups in force. */
void sr_step_done(sr_refresh *r);
/* Groups under construction: add one (name NULL: the id), add a member
 * (copied), find one by id. 0 or -1 on OOM; NULL when absent. */
int sr_lgroup_add(sr_lgroups *l, const char *id, const char *name);
int sr_lgroup_member(sr_lgroup *g, const char *jid);
sr_lgroup *sr_lgroup_find(sr_lgroups *l, const char *id);

/* ---- sr_sql.c ---- */
/* With sql.connect: compiles and checks sql.query on a connection made now
 * and opens the pool (from load()). 0, or -1 with a line in err. */
int sr_sql_open(sr_state *st, char *err, size_t errlen);
void sr_sql_close(sr_state *st);
/* Runs the query for refresh r (one more source it waits for). */
void sr_sql_refresh(sr_refresh *r);

#endif
