/* The mam module instance, shared by its files. */
#ifndef MAM_MOD_H
#define MAM_MOD_H

#include <xmppd/xmppd.h>

#include "mam_api.h"
#include "mam_engine.h"
#include "mam_prefs.h"

typedef struct mam_conf {
    const char *default_policy; /* "always", "roster", "never" */
    long long page_size, max_page_size;
    long long expire_after;     /* ms; 0: keep forever */
    long long max_items;        /* per account; 0: no limit */
    long long cleanup_interval; /* ms between retention passes */
    long long cleanup_rate;     /* accounts per second in a pass */
} mam_conf;

typedef struct mam_mod mam_mod;

struct mam_mod {
    mam_api api;          /* first: API calls find their instance */
    mam_ctx ctx;
    xmppd_module *m;
    xmppd_host *host;
    const mam_conf *conf;
    enum mam_default def; /* default_policy parsed */
    xmppd_store *archive; /* "mam": one archive per account */
    xmppd_store *prefs;   /* "mam_prefs": keyval, one document per account */
    void *users;          /* tsearch tree of mam_user * by node (mam_users.c) */
    struct mam_expire *expire; /* retention pass state (mam_expire.c) */
};


#endif
