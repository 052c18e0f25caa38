/* xmppd module API: the descriptor a module exports, its options, its lifecycle.
 *
 * A module is a shared object mod_NAME.so exporting exactly one symbol,
 * the descriptor declared with XMPPD_MODULE(NAME, ...). The kernel resolves
 * it with dlopen(RTLD_NOW|RTLD_LOCAL), refuses a different ABI major or a
 * newer ABI minor, copies the descriptor into a zeroed one of its own size
 * (so a module built against an older minor, with a shorter descriptor,
 * loads: the fields it lacks read as zero), parses and validates the
 * module's options from the configuration, then calls load().
 *
 * Threading: every callback a module receives runs on the event loop thread,
 * so module code needs no locks. Blocking work goes through xmppd_offload()
 * (loop.h).
 *
 * Everything a module registers through its xmppd_module handle (hooks, IQ
 * handlers, disco features, timers, stores, providers, declared events) is
 * released by the kernel when the module instance unloads. unload() frees
 * only the module's own data.
 *
 * Instances: one per host (or one for the server with XMPPD_MOD_GLOBAL).
 * `xmppctl module reload` and a configuration reload that changes a
 * module's options load a new instance next to the old one, hand it the
 * old one's single-owner registrations, then unload the old one: keep
 * state in the instance (xmppd_module_set_data), never in statics.
 * docs/modules.md is the guide. */
#ifndef XMPPD_MODULE_H
#define XMPPD_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XMPPD_ABI_MAJOR 2 /* bump: every module must be rebuilt */
#define XMPPD_ABI_MINOR 8 /* bump: additions only (fields appended to structs, new functions) */
#define XMPPD_ABI ((uint32_t)((XMPPD_ABI_MAJOR << 16) | XMPPD_ABI_MINOR))

#define XMPPD_EXPORT __attribute__((visibility("default")))

typedef struct xmppd_module xmppd_module;   /* one loaded instance; kernel-owned */
typedef struct xmppd_host xmppd_host;       /* a virtual host; kernel-owned */
typedef struct xmppd_session xmppd_session; /* a bound client session; kernel-owned */
typedef struct xmppd_stanza xmppd_stanza;   /* element tree; see stanza.h */

enum xmppd_opt_type {
    XMPPD_OPT_BOOL,     /* bool */
    XMPPD_OPT_INT,      /* long long, within [min, max] */
    XMPPD_OPT_DURATION, /* long long milliseconds; config: 30, "30s", "5m", "250ms", "1h" */
    XMPPD_OPT_SIZE,     /* long long bytes; config: 65536, "64k", "10M" */
    XMPPD_OPT_STRING,   /* const char * (NULL when unset without default, or null) */
    XMPPD_OPT_ENUM,     /* const char *, one of choices (int index with XMPPD_OPT_INDEX) */
    XMPPD_OPT_LIST,     /* const char *const *, NULL-terminated; a lone string is a list of one */
    XMPPD_OPT_PATH,     /* const char *, made absolute against the config file's folder
                           (with XMPPD_OPT_DATA: against data_dir) */
    XMPPD_OPT_JSON,     /* json_t * (borrowed), any JSON value, checked by the module */
    XMPPD_OPT_SECTION,  /* an object whose keys are the options in `fields`, parsed into a
                           struct embedded at offset (fields' offsets are within it) */
    XMPPD_OPT_ARRAY,    /* a list of such objects: an xmppd_opt_array at offset, with n
                           items of item_size bytes */
    XMPPD_OPT_MAP,      /* an object of such objects keyed by name: an xmppd_opt_array;
                           each item's first member is its key (const char *) */
};

#define XMPPD_OPT_REQUIRED 0x1u /* no default: the config must give it */
#define XMPPD_OPT_SECRET 0x2u   /* never logged nor printed by xmppctl */
#define XMPPD_OPT_INDEX 0x4u    /* ENUM: store the choice's index as an int, not the string */
#define XMPPD_OPT_DATA 0x8u     /* PATH (ABI 2.4): state the module writes (a database, uploaded
                                   files), so a relative path is taken from data_dir */

/* What ARRAY and MAP options store: the parsed items (kernel-owned, like
 * every value of the conf block). */
typedef struct xmppd_opt_array {
    void *items;
    size_t n;
} xmppd_opt_array;

/* One option. The kernel writes the parsed value into the module's conf
 * struct (conf_size bytes, zeroed, kernel-allocated) at offset; the values it
 * points to (strings, lists, JSON, items) are kernel-owned and live as long
 * as the module instance. def is parsed exactly like configuration text, so
 * "30s", "64k", "true", "[\"a\",\"b\"]" are all valid defaults (an ARRAY or
 * MAP default is its JSON text; a SECTION takes its fields' defaults). */
typedef struct xmppd_option {
    const char *name;
    enum xmppd_opt_type type;
    size_t offset;
    const char *def;
    long long min, max;          /* INT, DURATION, SIZE; both 0: unbounded */
    const char *const *choices;  /* ENUM: NULL-terminated */
    unsigned flags;
    const char *doc;             /* one line, printed by `xmppctl options` */
    const struct xmppd_option *fields; /* SECTION, ARRAY, MAP: the table of one object */
    size_t item_size;            /* ARRAY, MAP: bytes of one item */
} xmppd_option;

#define XMPPD_MOD_GLOBAL 0x1u /* one instance for the whole server, host is NULL */
/* A reload hands this module's session slots (router.h xmppd_session_get)
 * over to the new instance, so per-session state survives it. Only for
 * slot data that stays valid without the old instance: plain heap data the
 * module frees on "session-closed", nothing the old instance owns or frees
 * in unload(). Without the flag the old instance's slots are dropped after
 * its unload(), and the new instance starts with empty slots. */
#define XMPPD_MOD_KEEP_SLOTS 0x2u

/* Fields are only ever appended (a minor ABI bump), never reordered. */
typedef struct xmppd_module_def {
    uint32_t abi;                 /* XMPPD_ABI (set by XMPPD_MODULE) */
    uint32_t def_size;            /* sizeof(xmppd_module_def) (set by XMPPD_MODULE) */
    const char *name;             /* NAME of mod_NAME.so (set by XMPPD_MODULE) */
    const char *version;
    const char *summary;          /* one line */
    const char *const *depends;   /* modules loaded first, NULL-terminated */
    const char *const *specs;     /* RFCs/XEPs implemented, e.g. "XEP-0199" */
    unsigned flags;               /* XMPPD_MOD_* */
    const xmppd_option *options;  /* ends with an entry whose name is NULL */
    size_t conf_size;             /* size of the conf struct options write into */
    /* Register hooks, handlers, stores; conf is the parsed options block
     * (kernel-owned, valid as long as the instance). 0 = loaded; <0 =
     * refused: say why with `return xmppd_module_refuse(m, "...")`, which
     * the kernel logs and `xmppctl module load` prints. Everything
     * registered is then undone and unload() is NOT called, so free your
     * own data before returning. During a reload the old instance is still
     * running while the new one's load() runs. */
    int (*load)(xmppd_module *m, const void *conf);
    /* Optional: called once every module of the configuration is loaded
     * (right after load() for a module loaded later): look up other
     * modules' APIs here. */
    void (*ready)(xmppd_module *m);
    /* Optional: free the module's own data. Registrations are already
     * released (nothing calls the module any more), and callbacks still
     * pending (storage, timers) will never come: free their data too. */
    void (*unload)(xmppd_module *m);
    /* Since ABI 2.6, optional: checks what the option table cannot say
     * (formats, options that depend on each other) on the parsed options
     * alone, with no instance: `xmppctl check`, a reload and a load run it
     * after the table's own checks, so the operator hears of a bad value
     * before a start or reload fails on it. 0, or -1 with one line in err
     * (no secrets; the kernel prefixes the module's key). */
    int (*check)(const void *conf, char *err, size_t errlen);
} xmppd_module_def;

/* Declares and exports the descriptor of module n, filling abi, def_size
 * and name ("n") so they cannot be forgotten; the other fields follow as
 * designated initializers:
 *
 *   XMPPD_MODULE(ping, .version = "1.0", .load = ping_load);
 *
 * The symbol is xmppd__module_n: no API function has "__" in its name, so
 * no module name can collide with one. */
#define XMPPD_MODULE(n, ...)                                                              \
    XMPPD_EXPORT const xmppd_module_def xmppd__module_##n = {                             \
        .abi = XMPPD_ABI, .def_size = sizeof(xmppd_module_def), .name = #n, __VA_ARGS__ }
/* The descriptor symbol of module n, as a string (what the loader looks up). */
#define XMPPD_MODULE_SYMBOL_PREFIX "xmppd__module_"
/* The same header fields for a descriptor that is not exported (built-in
 * modules registered with a test harness): { XMPPD_MODULE_HEAD("n"), ... }. */
#define XMPPD_MODULE_HEAD(name_) .abi = XMPPD_ABI, .def_size = sizeof(xmppd_module_def), .name = (name_)

/* Convenience for option tables: offset of a field in the conf struct. */
#define XMPPD_OFF(type, field) offsetof(type, field)

/* The accessors below may be called from load() on, on the loop thread,
 * with the handle the module received; they never fail.
 *
 * The host this instance serves; NULL for XMPPD_MOD_GLOBAL modules.
 * Kernel-owned, valid while the instance is loaded. */
xmppd_host *xmppd_module_host(const xmppd_module *m);
/* The descriptor's name (kernel-owned, valid while the instance lives). */
const char *xmppd_module_name(const xmppd_module *m);
/* From load() only: records why the module refuses to load (formatted,
 * one line, no secrets) and returns -1, for `return xmppd_module_refuse(m,
 * "cannot open %s: %s", path, strerror(errno));`. The kernel logs it and
 * puts it into the error that `xmppctl module load`/`check` print. */
int xmppd_module_refuse(xmppd_module *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The parsed options of this instance: the conf block load() received.
 * Kernel-owned, read-only, valid until the instance is freed. */
const void *xmppd_module_conf(const xmppd_module *m);
/* One pointer of instance data for the module's own use (NULL until set).
 * The kernel never touches it: the module frees it in unload(), or before
 * returning a failure from load() (unload() is not called then). */
void *xmppd_module_data(const xmppd_module *m);
void xmppd_module_set_data(xmppd_module *m, void *data);

/* Host lookup and properties. Names are nameprepped domain strings, owned by
 * the kernel and valid while the host exists (a host removed by a reload
 * unloads its modules first, after firing "host-removed").
 * xmppd_host_find: the host serving exactly this (prepared) domain, or NULL. */
xmppd_host *xmppd_host_find(const char *domain);
/* The host's domain (kernel-owned). */
const char *xmppd_host_name(const xmppd_host *h);
/* Calls fn for every configured host; stops early when fn returns nonzero. */
void xmppd_host_foreach(int (*fn)(xmppd_host *h, void *ud), void *ud);
/* Is `name` loaded on host h (or globally when h is NULL)? */
bool xmppd_host_has_module(const xmppd_host *h, const char *name);

/* Typed calls between modules (e.g. presence uses roster's API). A module
 * publishes a vtable under a name on its host (global modules: for every
 * host); the vtable must begin with uint32_t version, uint32_t size so users
 * can check what they got. The vtable stays the provider's (it must live
 * until its unload). Released when the providing module unloads, so look it
 * up per use rather than caching it across loop turns.
 * xmppd_provide (from load() on): 0, or -1 when another module already
 * publishes the name on that host (logged) or on OOM. A newer instance of
 * the same module (a reload) may publish the same name: it takes over, and
 * the old publication comes back if the new instance fails to load. */
int xmppd_provide(xmppd_module *m, const char *api, const void *vtable);
/* The vtable published as api on h (or by a global module), or NULL when
 * nobody publishes it (or its provider is unloading). Borrowed. */
const void *xmppd_use(const xmppd_host *h, const char *api);

/* A request one module makes through another's published API that is
 * answered later (a roster load, say). The provider ties it to the caller
 * so that a caller unloading first is never called back afterwards:
 *
 *   xmppd_call_new(caller, cancel, p): made by the provider when it keeps a
 *     request of caller (NULL: the kernel, or a caller that never unloads
 *     first). If caller unloads before the answer, cancel(p) runs while it
 *     unloads, before its unload(): the provider's way to tell the caller
 *     (typically by calling the caller's callback with a failure, while its
 *     code is still loaded). NULL on OOM or when caller is unloading: the
 *     provider then fails the request at once.
 *   xmppd_call_finish(c): the provider is ready to answer; true when the
 *     caller still waits (call it back now), false when it was cancelled
 *     (answer nobody). Frees c either way; NULL is false.
 *
 * APIs that take a callback take the caller's module handle for this;
 * modules/roster/roster_api.h is the model. */
typedef struct xmppd_call xmppd_call;
xmppd_call *xmppd_call_new(xmppd_module *caller, void (*cancel)(void *p), void *p);
bool xmppd_call_finish(xmppd_call *c);

/* Server identity for modules such as version and disco: the release
 * ("0.1.0"), a static string. */
const char *xmppd_server_version(void);
/* Wall-clock second (Unix time) the server started, for uptime. Survives
 * configuration reloads. */
int64_t xmppd_server_started(void);
/* The configuration's data_dir (absolute; ABI 2.3): where every piece of
 * state lives (default $(localstatedir)/lib/xmppd), so where modules keep
 * files of their own (uploads). Kernel-owned, valid until the next
 * configuration reload: copy what you keep. A PATH option flagged
 * XMPPD_OPT_DATA is resolved against it already. */
const char *xmppd_data_dir(void);

#endif
