/* Kernel objects shared between kernel components: hosts, module instances.
 * Modules never see this header; they get opaque handles (api/xmppd). */
#ifndef XMPPD_CORE_H
#define XMPPD_CORE_H

#include <stdbool.h>
#include <stdio.h>
#include "core/config.h"
#include "xmppd/xmppd.h"

typedef struct hook_table hook_table;   /* hooks.c */
typedef struct iq_table iq_table;       /* hooks.c */
typedef struct disco_list disco_list;   /* hooks.c */
typedef struct sm_host sm_host;         /* session/sm.c: sessions of the host */
typedef struct ssl_ctx_st SSL_CTX;

struct xmppd_host {
    char *name;
    const host_conf *conf;
    hook_table *hooks;
    iq_table *iqs;
    disco_list *disco;
    SSL_CTX *ssl_ctx;                 /* net/tls.c */
    sm_host *sm;                      /* session/sm.c */
    const xmppd_auth_provider *auth;  /* auth.c */
    void *auth_pd;
    xmppd_module *auth_module;
    struct strmap *apis;              /* provide.c: name -> published vtable */
    xmppd_module **modules;           /* loaded instances, in load order */
    size_t n_modules;
};

typedef struct module_cleanup module_cleanup;

struct xmppd_module {
    const xmppd_module_def *def; /* &def_copy */
    xmppd_module_def def_copy;   /* the descriptor, zero-extended (module_def_adopt) */
    const void *origin;          /* where the shared object has it (reload: same file?) */
    char *refusal;               /* why load() refused (xmppd_module_refuse) */
    bool in_load;                /* inside load(): refuse is allowed */
    void *dl;                /* dlopen handle (shared between instances) */
    char *file;              /* the mod_NAME.so it came from; NULL: built-in */
    xmppd_host *host;        /* NULL: global instance */
    void *conf;              /* conf_size bytes, filled from options */
    json_t *options;         /* the option values as configured (owned ref) */
    void *data;              /* module's own */
    char *tag;               /* "host:name" or "name", for logs */
    bool loaded;             /* false once unloading starts */
    int refs;                /* struct lives until 0 (async callbacks hold refs) */
    module_cleanup *cleanups;
    unsigned order;          /* rank in the configuration's load order (1..):
                                orders equal-priority hooks, kept on reload */
};

/* Run fn(p) when m unloads (in reverse order of registration). Returns a
 * handle to cancel it when the registration is released earlier. */
module_cleanup *module_cleanup_add(xmppd_module *m, void (*fn)(void *p), void *p);
/* Forget a cleanup without running it. */
void module_cleanup_cancel(xmppd_module *m, module_cleanup *c);
/* Keep the struct of m alive across an async call; check m->loaded after. */
void module_ref(xmppd_module *m);
void module_unref(xmppd_module *m);

/* The whole server's state. */
typedef struct xmppd_server {
    xmppd_config *cfg;        /* in force; a reload (control.c server_reload)
                                 frees the one it replaces, so never keep a
                                 pointer into it across loop turns (the
                                 listener table is carried over) */
    xmppd_host **hosts;
    size_t n_hosts;
    xmppd_module **globals;   /* global module instances, in load order */
    size_t n_globals;
    hook_table *global_hooks; /* hooks of global modules: run on every host */
    int64_t started;
} xmppd_server;

extern xmppd_server g_server;

/* Loads every module of the configuration: global ones, then each host's,
 * dependencies first; fills g_server hosts and globals. 0, or -1 with a
 * one-line message in err (and everything loaded so far unloaded). */
int modules_start(xmppd_config *cfg, char *err, size_t errlen);
/* Applies a new configuration (SIGHUP): modules removed are unloaded, added
 * ones loaded, ones whose options changed reloaded; hosts added/removed.
 * -1: cfg rejected (message in err), nothing changed, the caller still owns
 * cfg. 0: cfg is in force (g_server.cfg; the caller frees the old one).
 * 1: cfg is in force, but a module's load() failed (first message in err;
 * a module being reloaded keeps its running instance). The caller owns
 * every xmppd_config; modules_stop does not free g_server.cfg. */
int modules_reconfigure(xmppd_config *cfg, char *err, size_t errlen);
/* Unloads everything, hosts included, in reverse order. */
void modules_stop(void);
/* Unload/load/reload one module on one host (NULL: global or every host). */
int module_load_one(const char *name, xmppd_host *h, char *err, size_t errlen);
int module_unload_one(const char *name, xmppd_host *h, char *err, size_t errlen);
int module_reload_one(const char *name, xmppd_host *h, char *err, size_t errlen);
/* The same with the module's options (and module_path) taken from cfg
 * instead of the configuration in force: xmppctl's module commands read the
 * file as it is now. cfg is only read during the call (the instance keeps
 * its own copies); the configuration in force does not change. A reload
 * whose new instance fails (bad option, load() refusing) keeps the running
 * one and says why in err; several hosts: err holds the first failure. */
int module_load_from(const xmppd_config *cfg, const char *name, xmppd_host *h, char *err,
                     size_t errlen);
int module_reload_from(const xmppd_config *cfg, const char *name, xmppd_host *h, char *err,
                       size_t errlen);
/* Prints the server's own keys (config_options), then every option of
 * every module found in the module path (xmppctl options); only: one
 * module, or "server"; markdown: a table per module. Returns 0 or -1. */
int modules_print_options(const xmppd_config *cfg, const char *only, bool markdown, FILE *out);
/* Validates the modules and module options of cfg without calling any
 * load(); every error line is added to errs. 0 or -1. */
struct opt_errors;
int modules_check(const xmppd_config *cfg, struct opt_errors *errs, struct opt_errors *warns);

/* Checks descriptor d of module name found in file (for messages) and
 * copies it, zero-extended, into *copy: a different ABI major, a newer
 * minor, a descriptor smaller than any of this major, a wrong name or a
 * missing version or load() are refused with one line in err. 0 or -1. */
int module_def_adopt(xmppd_module_def *copy, const xmppd_module_def *d, const char *name,
                     const char *file, char *err, size_t errlen);

/* What the layers above core attach to hosts and module instances (the
 * session table, TLS contexts, session slots), and how core lets them go:
 * core never calls upward, it calls what they register. Registered once
 * per process, before modules start; at most CORE_MAX_LAYERS. */
typedef struct core_layer {
    /* h is about to be freed (its modules are unloaded): free what the
     * layer attached to it. */
    void (*host_free)(xmppd_host *h);
    /* Module instance `from` is replaced by `to` (a reload), or gone (to
     * NULL, after its unload()): hand over or drop what the layer keeps
     * per instance. */
    void (*module_replaced)(const xmppd_module *from, const xmppd_module *to);
} core_layer;
#define CORE_MAX_LAYERS 8
void core_register_layer(const core_layer *layer);

/* Makes a statically linked module (or a test's fake one) loadable by
 * name without dlopen; looked up before the module path. def must outlive
 * every use. 0, or -1 on OOM. */
int modules_add_builtin(const xmppd_module_def *def);

/* storage.c: the kernel's own keyval stores on host h (the FAST token
 * records), through the configured driver without a module handle; the
 * kernel never unloads, so nothing is cancelled. cb runs once, later, on
 * the loop; with no driver loaded it gets XMPPD_STORE_ERROR. done may be
 * NULL for set. Strings are copied, value is borrowed. */
void storage_kernel_kv_get(const xmppd_host *h, const char *store, const char *user, const char *key,
                           xmppd_kv_get_cb cb, void *ud);
void storage_kernel_kv_set(const xmppd_host *h, const char *store, const char *user, const char *key,
                           json_t *value, xmppd_store_done_cb done, void *ud);

/* hooks.c: frees h's hook, IQ and disco tables (its modules are unloaded). */
void hooks_host_free(xmppd_host *h);
/* hooks.c: frees the global tables and the event names (at exit). */
void hooks_global_free(void);

/* hooks.c, for `xmppctl hooks`: every live handler (global table first,
 * then each host's, each list in run order) and every IQ handler (key
 * type, child xmlns, target XMPPD_IQ_HOST or XMPPD_IQ_BARE; m NULL: the
 * kernel's own; an older instance a reload is replacing shows too). */
typedef void (*hooks_handler_fn)(const char *event, const xmppd_host *h, const xmppd_module *m,
                                 int prio, void *ud);
void hooks_foreach_handler(hooks_handler_fn fn, void *ud);

/* hooks.c: the place of a handler in its event's chain, so a stanza it
 * held can go on after it (session/held.c). */
typedef struct hooks_place {
    int event;     /* interned event id */
    int prio;
    uint64_t seq;
} hooks_place;
/* The place of the handler now running for ev; false when none is. */
bool hooks_running_place(const xmppd_event *ev, hooks_place *p);
/* The next fire of p's event with stanza st starts after p (once); NULL p
 * forgets a start not taken. */
void hooks_resume_from(const xmppd_stanza *st, const hooks_place *p);
typedef void (*hooks_iq_fn)(const char *type, const char *xmlns, unsigned target,
                            const xmppd_host *h, const xmppd_module *m, void *ud);
void hooks_foreach_iq(hooks_iq_fn fn, void *ud);

/* IQ dispatch for the router: finds the handler for (type, child xmlns,
 * target) on h. Returns XMPPD_PASS when none is registered. */
int iq_dispatch(xmppd_host *h, xmppd_event *ev, unsigned target);

/* domains.c: domains that modules serve (xmppd_domain_serve), for the
 * router and s2s. domains_name: the served domain equal to `domain`
 * (prepared), as a string borrowed while it is served, or NULL.
 * domains_dispatch: calls the handler serving ev->to->domain (ev->host set
 * to its module's host) and returns what it returned, or DOMAINS_NONE when
 * no module serves that domain. */
enum { DOMAINS_NONE = -2 };
const char *domains_name(const char *domain);
int domains_dispatch(xmppd_event *ev);

/* Internal log with a kernel tag ("c2s", "tls", "router", ...). */
void log_kernel(const char *tag, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Opens/reopens the log destination (SIGHUP); level applies at once. */
int log_open(const char *file, int level);
/* "IP #N" into out: the address of a new connection with a number unique in
 * this process, so that the log lines of one connection (stream, session,
 * closing) can be told from those of others from the same address. */
#define LOG_CONN_TAG_MAX 72
void log_conn_tag(char out[LOG_CONN_TAG_MAX], const char *ip);

#endif
