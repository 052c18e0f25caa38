/* Administrators and access rules (api/xmppd/access.h): compiled from the
 * configuration when it is read, so that every mistake is an error of
 * `xmppctl check` naming file, line and key, and evaluated from the
 * configuration in force (g_server.cfg), so a reload applies new rules at
 * once. */
#ifndef XMPPD_CORE_ACCESS_H
#define XMPPD_CORE_ACCESS_H

#include <stdio.h>
#include "core/config.h"

struct opt_errors;
typedef struct access_table access_table;

/* Compiles cfg's server-wide admins, groups and rules (cfg->access) and
 * each host's admins and rules (hosts[i].access). Every error is added to
 * errs; what could be compiled is kept. The tables belong to cfg
 * (config_free frees them through access_free). */
void access_compile(xmppd_config *cfg, struct opt_errors *errs);
void access_free(access_table *t);

/* The actions the server and its bundled modules check, for `xmppctl
 * check` (a rule for another name is an error, unless it is "MODULE.NAME")
 * and for docs/administration.md. */
typedef struct access_action {
    const char *name;
    const char *checked_by;  /* "kernel" or the module */
    const char *actor;       /* who the actor, address and target are */
    const char *fallback;    /* what happens without a deciding rule */
} access_action;
extern const access_action access_actions[];

/* The action table as markdown (docs/administration.md). */
void access_print_markdown(FILE *out);

#endif
