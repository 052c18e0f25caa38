/* Module loader: hosts, module instances, dependencies, lifecycle.
 *
 * Every operation first builds a plan from a configuration: which modules
 * run globally and on each host, with their options parsed and validated,
 * in dependency order. Building a plan opens the shared objects (dlopen)
 * and checks their descriptors but calls no module code, so `xmppctl check`
 * is a plan build, and a configuration with any error changes nothing.
 * Only then are instances created and their load() called. */
#ifdef HAVE_CONFIG_H
#include <config.h> /* the build's config.h (PACKAGE_VERSION), not core/config.h */
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/options.h"
#include "util/strmap.h"

#define API XMPPD_EXPORT /* part of the module API: visible to dlopen'ed modules */

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif
#ifndef XMPPD_MODULE_DIR
#define XMPPD_MODULE_DIR "/usr/local/lib/xmppd"
#endif

xmppd_server g_server;

/* ---- built-in modules -------------------------------------------------------- */

static const xmppd_module_def **g_builtins;
static size_t g_n_builtins;

int modules_add_builtin(const xmppd_module_def *def)
{
    const xmppd_module_def **v = realloc(g_builtins, (g_n_builtins + 1) * sizeof(*v));
    if (!v)
        return -1;
    g_builtins = v;
    g_builtins[g_n_builtins++] = def;
    return 0;
}

static const xmppd_module_def *builtin_find(const char *name)
{
    for (size_t i = g_n_builtins; i-- > 0;)
        if (strcmp(g_builtins[i]->name, name) == 0)
            return g_builtins[i];
    return NULL;
}

/* ---- the layers above core ------------------------------------------------------ */

static const core_layer *g_layers[CORE_MAX_LAYERS];
static size_t g_n_layers;

void core_register_layer(const core_layer *layer)
{
    for (size_t i = 0; i < g_n_layers; i++)
        if (g_layers[i] == layer)
            return;
    if (g_n_layers < CORE_MAX_LAYERS)
        g_layers[g_n_layers++] = layer;
}

static void layers_module_replaced(const xmppd_module *from, const xmppd_module *to)
{
    for (size_t i = 0; i < g_n_layers; i++)
        if (g_layers[i]->module_replaced)
            g_layers[i]->module_replaced(from, to);
}

/* ---- cleanups and references ---------------------------------------------------- */

struct module_cleanup {
    void (*fn)(void *p);
    void *p;
    module_cleanup *prev, *next; /* m->cleanups is the newest */
};

module_cleanup *module_cleanup_add(xmppd_module *m, void (*fn)(void *p), void *p)
{
    module_cleanup *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fn = fn;
    c->p = p;
    c->next = m->cleanups;
    if (m->cleanups)
        m->cleanups->prev = c;
    m->cleanups = c;
    return c;
}

void module_cleanup_cancel(xmppd_module *m, module_cleanup *c)
{
    if (!c)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->cleanups = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

/* Newest first; each is unlinked before it runs, so a cleanup may cancel
 * others. */
static void run_cleanups(xmppd_module *m)
{
    while (m->cleanups) {
        module_cleanup *c = m->cleanups;
        m->cleanups = c->next;
        if (m->cleanups)
            m->cleanups->prev = NULL;
        void (*fn)(void *) = c->fn;
        void *p = c->p;
        free(c);
        fn(p);
    }
}

void module_ref(xmppd_module *m)
{
    m->refs++;
}

void module_unref(xmppd_module *m)
{
    if (!m || --m->refs > 0)
        return;
    options_conf_free(m->conf);
    json_decref(m->options);
    free(m->refusal);
    if (m->dl)
        dlclose(m->dl);
    free(m->file);
    free(m->tag);
    free(m);
}

/* ---- opening modules ------------------------------------------------------------- */

typedef struct lib {
    char *name;
    char *path;                   /* NULL: built-in */
    char *dlname;                 /* what dlopen was given: path, or a
                                     temporary link to it (see lib_dlopen) */
    char *tmpdir;                 /* the link's folder, removed with it */
    void *dl;                     /* this lib's own dlopen reference */
    const xmppd_module_def *def;  /* &copy */
    xmppd_module_def copy;        /* the descriptor, zero-extended to ours */
    const void *origin;           /* the descriptor where the object has it:
                                     another address means another file */
} lib;

static void lib_free(lib *l)
{
    if (!l)
        return;
    if (l->dl)
        dlclose(l->dl);
    if (l->tmpdir) {
        unlink(l->dlname);
        rmdir(l->tmpdir);
        free(l->tmpdir);
    }
    if (l->dlname != l->path)
        free(l->dlname);
    free(l->name);
    free(l->path);
    free(l);
}

/* ---- loading a module file that changed on disk ------------------------------------
 * dlopen() of a path that is already loaded returns the loaded object, even
 * when a new build was installed there since (a new inode), so a reload
 * would run the old code. The loader remembers which file (device, inode,
 * modification time) each path was loaded from; when the path now holds
 * another file while the old one is still mapped, the new file is opened
 * through a temporary symbolic link, a name the dynamic loader has not seen. */

typedef struct file_id {
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
} file_id;

static strmap *g_file_ids; /* path -> file_id * (owned; kept for the process's life) */

static bool same_file(const file_id *a, const struct stat *st)
{
    return a->dev == st->st_dev && a->ino == st->st_ino && a->mtime.tv_sec == st->st_mtim.tv_sec &&
           a->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void remember_file(const char *path, const struct stat *st)
{
    if (!g_file_ids && !(g_file_ids = strmap_new()))
        return;
    file_id *id = strmap_get(g_file_ids, path);
    if (!id) {
        if (!(id = malloc(sizeof(*id))) || strmap_put(g_file_ids, path, id) < 0) {
            free(id);
            return;
        }
    }
    *id = (file_id){ st->st_dev, st->st_ino, st->st_mtim };
}

/* dlopen l->path (RTLD_NOW|RTLD_LOCAL), through a fresh link when an older
 * file of that path is still loaded. Sets l->dl and l->dlname; -1 with a
 * message naming the file in err. */
static int lib_dlopen(lib *l, char *err, size_t errlen)
{
    struct stat st;
    if (stat(l->path, &st) < 0) {
        snprintf(err, errlen, "%s: cannot load: %s", l->path, strerror(errno));
        return -1;
    }
    l->dlname = l->path;
    void *loaded = dlopen(l->path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    const file_id *was = g_file_ids ? strmap_get(g_file_ids, l->path) : NULL;
    if (loaded && was && !same_file(was, &st)) {
        const char *tmp = getenv("TMPDIR");
        size_t n = strlen(tmp && *tmp ? tmp : "/tmp") + 32;
        char *dir = malloc(n), *link = malloc(n + strlen(l->name) + 16);
        if (dir)
            snprintf(dir, n, "%s/xmppd-module-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!dir || !link || !mkdtemp(dir)) {
            snprintf(err, errlen, "%s: changed on disk, and no temporary folder to load the new "
                     "file from: %s", l->path, strerror(errno));
            free(dir);
            free(link);
            dlclose(loaded);
            return -1;
        }
        snprintf(link, n + strlen(l->name) + 16, "%s/mod_%s.so", dir, l->name);
        if (symlink(l->path, link) < 0) {
            snprintf(err, errlen, "%s: changed on disk, and cannot link to it from %s: %s", l->path,
                     dir, strerror(errno));
            rmdir(dir);
            free(dir);
            free(link);
            dlclose(loaded);
            return -1;
        }
        l->tmpdir = dir;
        l->dlname = link;
        log_kernel("modules", XMPPD_LOG_INFO, "%s changed on disk: loading the new file", l->path);
    }
    if (loaded)
        dlclose(loaded);
    l->dl = dlopen(l->dlname, RTLD_NOW | RTLD_LOCAL);
    if (!l->dl) {
        snprintf(err, errlen, "%s: cannot load: %s", l->path, dlerror());
        return -1;
    }
    if (!loaded)
        remember_file(l->path, &st);
    return 0;
}

static const char *const *module_dirs(const xmppd_config *cfg)
{
    static const char *const fallback[] = { XMPPD_MODULE_DIR, NULL };
    return cfg && cfg->module_path ? cfg->module_path : fallback;
}

/* DIR/mod_NAME.so, then DIR/NAME/.libs/mod_NAME.so (build tree). */
static char *find_file(const xmppd_config *cfg, const char *name)
{
    for (const char *const *d = module_dirs(cfg); *d; d++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/mod_%s.so", *d, name);
        if (access(path, R_OK) == 0)
            return strdup(path);
        snprintf(path, sizeof(path), "%s/%s/.libs/mod_%s.so", *d, name, name);
        if (access(path, R_OK) == 0)
            return strdup(path);
    }
    return NULL;
}

/* After the module path scan it uses (below). */
static bool suggest_module(const xmppd_config *cfg, const char *name, char best[65]);

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* The smallest descriptor of this ABI major: up to and including unload. */
#define DEF_MIN_SIZE (offsetof(xmppd_module_def, unload) + sizeof(((xmppd_module_def *)0)->unload))

/* Checks the descriptor d found in file and copies min(def_size, ours) of
 * it into *copy (zeroed first: what an older module lacks reads as 0). */
int module_def_adopt(xmppd_module_def *copy, const xmppd_module_def *d, const char *name,
                     const char *file, char *err, size_t errlen)
{
    unsigned major = d->abi >> 16, minor = d->abi & 0xffffu;
    const char *why = NULL;
    if (major != XMPPD_ABI_MAJOR)
        why = "a different major version: rebuild the module against this server's headers";
    else if (minor > XMPPD_ABI_MINOR)
        why = "a newer minor version: upgrade the server or use a module built for it";
    if (why) {
        snprintf(err, errlen, "%s: built for module ABI %u.%u, this server provides %u.%u (%s)",
                 file, major, minor, XMPPD_ABI_MAJOR, XMPPD_ABI_MINOR, why);
        return -1;
    }
    if (d->def_size < DEF_MIN_SIZE) {
        snprintf(err, errlen, "%s: descriptor is %u bytes, less than any ABI %u.x descriptor (%zu): "
                 "declare it with XMPPD_MODULE()", file, d->def_size, XMPPD_ABI_MAJOR,
                 (size_t)DEF_MIN_SIZE);
        return -1;
    }
    memset(copy, 0, sizeof(*copy));
    memcpy(copy, d, d->def_size < sizeof(*copy) ? d->def_size : sizeof(*copy));
    if (!copy->name || strcmp(copy->name, name) != 0) {
        snprintf(err, errlen, "%s: descriptor names module \"%s\", expected \"%s\"", file,
                 copy->name ? copy->name : "(null)", name);
        return -1;
    }
    if (!copy->version || !copy->load) {
        snprintf(err, errlen, "%s: descriptor of module %s has no %s", file, name,
                 copy->version ? "load function" : "version");
        return -1;
    }
    if (copy->options && copy->conf_size == 0) {
        snprintf(err, errlen, "%s: module %s has options but conf_size 0", file, name);
        return -1;
    }
    return 0;
}

/* Opens module name: a built-in, or mod_NAME.so from the module path.
 * NULL with a one-line message (naming the file) in err. */
static lib *lib_open(const xmppd_config *cfg, const char *name, char *err, size_t errlen)
{
    if (!valid_name(name)) {
        snprintf(err, errlen, "invalid module name \"%s\"", name);
        return NULL;
    }
    lib *l = calloc(1, sizeof(*l));
    if (!l || !(l->name = strdup(name))) {
        free(l);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const xmppd_module_def *builtin = builtin_find(name);
    if (builtin) {
        if (module_def_adopt(&l->copy, builtin, name, "built-in module", err, errlen) < 0)
            goto fail;
        l->def = &l->copy;
        l->origin = builtin;
        return l;
    }
    l->path = find_file(cfg, name);
    if (!l->path) {
        char dirs[1024] = "";
        size_t used = 0;
        for (const char *const *d = module_dirs(cfg); *d && used < sizeof(dirs); d++) {
            int n = snprintf(dirs + used, sizeof(dirs) - used, "%s%s", used ? ", " : "", *d);
            if (n > 0)
                used += (size_t)n;
        }
        char best[65];
        if (suggest_module(cfg, name, best))
            snprintf(err, errlen, "module %s: mod_%s.so not found in module_path (%s): did you "
                     "mean \"%s\"?", name, name, dirs, best);
        else
            snprintf(err, errlen, "module %s: mod_%s.so not found in module_path (%s)", name, name,
                     dirs);
        goto fail;
    }
    if (lib_dlopen(l, err, errlen) < 0)
        goto fail;
    char sym[128];
    snprintf(sym, sizeof(sym), XMPPD_MODULE_SYMBOL_PREFIX "%s", name);
    const xmppd_module_def *d = dlsym(l->dl, sym);
    if (!d) {
        snprintf(err, errlen, "%s: no symbol %s: not an xmppd %u.x module (declare it with "
                 "XMPPD_MODULE(%s, ...))", l->path, sym, XMPPD_ABI_MAJOR, name);
        goto fail;
    }
    if (module_def_adopt(&l->copy, d, name, l->path, err, errlen) < 0)
        goto fail;
    l->def = &l->copy;
    l->origin = d;
    return l;
fail:
    lib_free(l);
    return NULL;
}

static bool def_depends_on(const xmppd_module_def *def, const char *name)
{
    for (const char *const *d = def->depends; d && *d; d++)
        if (strcmp(*d, name) == 0)
            return true;
    return false;
}

/* ---- plans --------------------------------------------------------------------- */

typedef struct plan_item {
    lib *lib;               /* borrowed from the plan */
    json_t *given;          /* effective configured options (owned ref) or NULL */
    const json_t *override; /* the host's own options object (borrowed) or NULL */
    char *key;              /* "modules.N" or "hosts.H.modules.N" (owned) */
    char *override_key;     /* "hosts.H.modules.N" with override (owned) */
    void *conf;             /* parsed options (owned until moved to an instance) */
    unsigned order;
    int mark;               /* dependency walk: 0 new, 1 in progress, 2 done */
} plan_item;

typedef struct plan_set {
    plan_item **v;
    size_t n, cap;
} plan_set;

typedef struct plan {
    const xmppd_config *cfg;
    opt_errors *errs;       /* where plan_build adds every error */
    strmap *libs;           /* name -> lib (owned) */
    strmap *failed;         /* names that could not be opened (reported once) */
    plan_set globals;
    plan_set *hosts;        /* one per cfg->hosts */
    size_t n_hosts;
} plan;

static void item_free(plan_item *it)
{
    if (!it)
        return;
    json_decref(it->given);
    free(it->key);
    free(it->override_key);
    options_conf_free(it->conf);
    free(it);
}

static void set_clear(plan_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        item_free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static int lib_free_cb(const char *key, void *value, void *ud)
{
    lib_free(value);
    return 0;
}

static void plan_free(plan *p)
{
    set_clear(&p->globals);
    for (size_t i = 0; i < p->n_hosts; i++)
        set_clear(&p->hosts[i]);
    free(p->hosts);
    if (p->libs) {
        strmap_foreach(p->libs, lib_free_cb, NULL);
        strmap_free(p->libs);
    }
    strmap_free(p->failed);
    memset(p, 0, sizeof(*p));
}

static plan_item *set_find(const plan_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i]->lib->name, name) == 0)
            return s->v[i];
    return NULL;
}

/* Takes ownership of it. */
static int set_add(plan_set *s, plan_item *it)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 8;
        plan_item **v = realloc(s->v, ncap * sizeof(*v));
        if (!v) {
            item_free(it);
            return -1;
        }
        s->v = v;
        s->cap = ncap;
    }
    s->v[s->n++] = it;
    return 0;
}

static char *keyf(const char *host, const char *name)
{
    size_t n = (host ? strlen(host) + 16 : 0) + strlen(name) + 16;
    char *k = malloc(n);
    if (!k)
        return NULL;
    if (host)
        snprintf(k, n, "hosts.%s.modules.%s", host, name);
    else
        snprintf(k, n, "modules.%s", name);
    return k;
}

/* The plan's lib for name, opened on first use; NULL (error added at key)
 * when it cannot be, also on later asks for the same name. */
static lib *plan_lib(plan *p, const char *name, const char *key)
{
    lib *l = strmap_get(p->libs, name);
    if (l)
        return l;
    if (strmap_get(p->failed, name))
        return NULL;
    char why[768];
    l = lib_open(p->cfg, name, why, sizeof(why));
    if (!l) {
        opt_error(p->errs, p->cfg, key, "%s", why);
        strmap_put(p->failed, name, p);
        return NULL;
    }
    if (strmap_put(p->libs, name, l) < 0) {
        lib_free(l);
        opt_error(p->errs, NULL, key, "out of memory");
        return NULL;
    }
    return l;
}

/* New item for l on host (NULL: global). base: the top-level entry
 * (options object, true or NULL); over: the host's own entry, merged over
 * base. Errors point at the host's entry for the keys it holds, else at the
 * top-level one; from_host: the module is listed only by the host. */
static plan_item *item_new(lib *l, const char *host, const json_t *base, const json_t *over,
                           bool from_host)
{
    plan_item *it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->lib = l;
    base = json_is_object(base) ? base : NULL;
    over = json_is_object(over) ? over : NULL;
    if (base && over) {
        it->given = json_deep_copy(base);
        if (!it->given || json_object_update(it->given, (json_t *)over) < 0)
            goto fail;
        it->override = over;
        if (!(it->override_key = keyf(host, l->name)))
            goto fail;
    } else {
        it->given = json_incref((json_t *)(over ? over : base));
    }
    it->key = keyf((over || from_host) && !base ? host : NULL, l->name);
    if (!it->key)
        goto fail;
    return it;
fail:
    item_free(it);
    return NULL;
}

static int oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Adds it to s, or an out-of-memory error. */
static void plan_add(plan *p, plan_set *s, plan_item *it, const char *key)
{
    if (!it || set_add(s, it) < 0)
        opt_error(p->errs, NULL, key, "out of memory");
}

/* Explicit entries: global modules from the top level; per-host modules
 * from the top level (inherited) and from each host's own object. */
static void plan_collect(plan *p)
{
    const xmppd_config *cfg = p->cfg;
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)cfg->global_modules, name, v) {
        if (json_is_false(v))
            continue;
        char key[256];
        snprintf(key, sizeof(key), "modules.%s", name);
        lib *l = plan_lib(p, name, key);
        if (l && (l->def->flags & XMPPD_MOD_GLOBAL))
            plan_add(p, &p->globals, item_new(l, NULL, v, NULL, false), key);
    }
    for (size_t i = 0; i < p->n_hosts; i++) {
        const host_conf *hc = &cfg->hosts[i];
        plan_set *s = &p->hosts[i];
        json_object_foreach((json_t *)cfg->global_modules, name, v) {
            lib *l = strmap_get(p->libs, name);
            json_t *hv = hc->modules ? json_object_get(hc->modules, name) : NULL;
            if (!l || (l->def->flags & XMPPD_MOD_GLOBAL) || json_is_false(v) || json_is_false(hv))
                continue;
            plan_add(p, s, item_new(l, hc->name, v, hv, false), "modules");
        }
        json_object_foreach((json_t *)hc->modules, name, v) {
            if (json_is_false(v) || set_find(s, name))
                continue;
            char key[512];
            snprintf(key, sizeof(key), "hosts.%s.modules.%s", hc->name, name);
            lib *l = plan_lib(p, name, key);
            if (!l)
                continue;
            if (l->def->flags & XMPPD_MOD_GLOBAL) {
                opt_error(p->errs, cfg, key, "%s is a global module: configure it in the "
                          "top-level \"modules\" object", name);
                continue;
            }
            plan_add(p, s, item_new(l, hc->name, NULL, v, true), key);
        }
    }
}

/* Adds what the items of s depend on: global dependencies to the global
 * set, per-host ones to s (unless the host disabled them). host: NULL when
 * s is the global set. */
static void plan_close_deps(plan *p, plan_set *s, const host_conf *host)
{
    for (size_t i = 0; i < s->n; i++) {
        plan_item *it = s->v[i];
        for (const char *const *d = it->lib->def->depends; d && *d; d++) {
            lib *dl = plan_lib(p, *d, it->key);
            if (!dl)
                continue;
            bool global = dl->def->flags & XMPPD_MOD_GLOBAL;
            plan_set *target = global ? &p->globals : s;
            if (!host && !global) {
                opt_error(p->errs, p->cfg, it->key, "global module %s depends on %s, which is "
                          "a per-host module", it->lib->name, *d);
                continue;
            }
            if (set_find(target, *d))
                continue;
            if (host && !global && host->modules && json_is_false(json_object_get(host->modules, *d))) {
                char key[512];
                snprintf(key, sizeof(key), "hosts.%s.modules.%s", host->name, *d);
                opt_error(p->errs, p->cfg, key, "%s is disabled here but %s depends on it", *d,
                          it->lib->name);
                continue;
            }
            /* Not configured: loaded with its defaults, like Prosody's depends. */
            const json_t *top = p->cfg->global_modules ? json_object_get(p->cfg->global_modules, *d) : NULL;
            plan_add(p, target, item_new(dl, global ? NULL : host->name, top, NULL, false), it->key);
        }
    }
}

/* Depth-first: dependencies of it (within s) go to out first. */
static int order_visit(plan *p, plan_set *s, plan_item *it, plan_set *out, const char **stack,
                       size_t depth)
{
    if (it->mark == 2)
        return 0;
    stack[depth] = it->lib->name;
    if (it->mark == 1) {
        char chain[512] = "";
        size_t used = 0, start = 0;
        while (strcmp(stack[start], it->lib->name) != 0)
            start++;
        for (size_t k = start; k <= depth && used < sizeof(chain); k++) {
            int n = snprintf(chain + used, sizeof(chain) - used, "%s%s", k > start ? " -> " : "",
                             stack[k]);
            if (n > 0)
                used += (size_t)n;
        }
        opt_error(p->errs, p->cfg, it->key, "dependency cycle: %s", chain);
        return -1;
    }
    if (depth + 1 >= 64) {
        opt_error(p->errs, p->cfg, it->key, "dependencies nested too deeply");
        return -1;
    }
    it->mark = 1;
    for (const char *const *d = it->lib->def->depends; d && *d; d++) {
        plan_item *dep = set_find(s, *d);
        if (dep && order_visit(p, s, dep, out, stack, depth + 1) < 0)
            return -1;
    }
    it->mark = 2;
    out->v[out->n++] = it;
    return 0;
}

/* Sorts s so dependencies come first; otherwise configuration order. */
static void plan_order(plan *p, plan_set *s, unsigned *order)
{
    plan_set out = { calloc(s->n ? s->n : 1, sizeof(plan_item *)), 0, s->n };
    const char *stack[64];
    if (!out.v) {
        opt_error(p->errs, NULL, "modules", "out of memory");
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (order_visit(p, s, s->v[i], &out, stack, 0) < 0) {
            free(out.v);
            return;
        }
    }
    free(s->v);
    *s = out;
    for (size_t i = 0; i < s->n; i++)
        s->v[i]->order = ++*order;
}

/* The module's own check of its parsed options (def->check, ABI 2.6). */
static int module_check_conf(const xmppd_module_def *def, const void *conf, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!def->check || def->check(conf, err, errlen) == 0)
        return 0;
    if (!err[0])
        snprintf(err, errlen, "refused by module %s", def->name);
    return -1;
}

static void plan_parse_options(plan *p, plan_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        plan_item *it = s->v[i];
        char owner[128];
        snprintf(owner, sizeof(owner), "module %s", it->lib->name);
        opt_ctx ctx = { p->cfg, it->key, it->override, it->override_key, owner };
        it->conf = options_parse(it->lib->def->options, it->lib->def->conf_size, it->given, &ctx,
                                 false, p->errs);
        char err[512];
        if (it->conf && module_check_conf(it->lib->def, it->conf, err, sizeof(err)) < 0)
            opt_error(p->errs, p->cfg, it->key, "%s", err);
    }
}

/* Builds the whole plan for cfg, collecting every error (each line added
 * to errs). -1 and p freed when there was any. */
static int plan_build(plan *p, const xmppd_config *cfg, opt_errors *errs)
{
    memset(p, 0, sizeof(*p));
    size_t before = errs->n;
    p->cfg = cfg;
    p->errs = errs;
    p->n_hosts = cfg->n_hosts;
    p->libs = strmap_new();
    p->failed = strmap_new();
    p->hosts = calloc(cfg->n_hosts ? cfg->n_hosts : 1, sizeof(*p->hosts));
    if (!p->libs || !p->failed || !p->hosts) {
        plan_free(p);
        opt_error(errs, NULL, "modules", "out of memory");
        return -1;
    }
    plan_collect(p);
    for (size_t i = 0; i < p->n_hosts; i++)
        plan_close_deps(p, &p->hosts[i], &cfg->hosts[i]);
    plan_close_deps(p, &p->globals, NULL);
    unsigned order = 0;
    plan_order(p, &p->globals, &order);
    for (size_t i = 0; i < p->n_hosts; i++) {
        unsigned host_order = order;
        plan_order(p, &p->hosts[i], &host_order);
    }
    plan_parse_options(p, &p->globals);
    for (size_t i = 0; i < p->n_hosts; i++)
        plan_parse_options(p, &p->hosts[i]);
    if (errs->n > before) {
        plan_free(p);
        return -1;
    }
    return 0;
}

/* The same, with the errors joined into err (callers with one buffer). */
static int plan_build_err(plan *p, const xmppd_config *cfg, char *err, size_t errlen)
{
    opt_errors errs = { 0 };
    int rc = plan_build(p, cfg, &errs);
    opt_errors_join(&errs, err, errlen);
    opt_errors_free(&errs);
    return rc;
}

/* ---- instances --------------------------------------------------------------------- */

static xmppd_module ***list_of(xmppd_host *h, size_t **n_r)
{
    if (h) {
        *n_r = &h->n_modules;
        return &h->modules;
    }
    *n_r = &g_server.n_globals;
    return &g_server.globals;
}

static int list_append(xmppd_host *h, xmppd_module *m)
{
    size_t *n;
    xmppd_module ***v = list_of(h, &n);
    xmppd_module **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    nv[(*n)++] = m;
    *v = nv;
    return 0;
}

static void list_remove(xmppd_host *h, xmppd_module *m)
{
    size_t *n;
    xmppd_module ***v = list_of(h, &n);
    for (size_t i = 0; i < *n; i++) {
        if ((*v)[i] == m) {
            memmove(*v + i, *v + i + 1, (*n - i - 1) * sizeof(**v));
            (*n)--;
            return;
        }
    }
}

static xmppd_module *list_find(xmppd_host *h, const char *name)
{
    size_t *n;
    xmppd_module ***v = list_of(h, &n);
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i]->def->name, name) == 0)
            return (*v)[i];
    return NULL;
}

/* A new, not yet loaded instance of it on h; takes it->conf. */
static xmppd_module *instance_new(plan_item *it, xmppd_host *h)
{
    xmppd_module *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    size_t n = strlen(it->lib->name) + (h ? strlen(h->name) + 2 : 1);
    m->tag = malloc(n);
    if (!m->tag) {
        free(m);
        return NULL;
    }
    if (h)
        snprintf(m->tag, n, "%s:%s", h->name, it->lib->name);
    else
        snprintf(m->tag, n, "%s", it->lib->name);
    /* The instance holds its own reference to the shared object. */
    m->dl = it->lib->path ? dlopen(it->lib->dlname, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (it->lib->path && !(m->file = strdup(it->lib->path))) {
        if (m->dl)
            dlclose(m->dl);
        free(m->tag);
        free(m);
        return NULL;
    }
    m->def_copy = *it->lib->def;
    m->def = &m->def_copy;
    m->origin = it->lib->origin;
    m->host = h;
    m->conf = it->conf;
    it->conf = NULL;
    m->options = json_incref(it->given);
    m->order = it->order;
    m->refs = 1;
    return m;
}

/* Calls load(); on refusal unwinds what it registered and frees m. Does not
 * add m to any list. */
static int instance_load(xmppd_module *m, const char *key, const xmppd_config *cfg, char *err,
                         size_t errlen)
{
    m->loaded = true;
    m->in_load = true;
    int rc = m->def->load(m, m->conf);
    m->in_load = false;
    if (rc >= 0)
        return 0;
    m->loaded = false;
    run_cleanups(m);
    opt_errorf(cfg, key, err, errlen, "module %s refused to load%s%s: %s", m->def->name,
               m->host ? " on " : "", m->host ? m->host->name : "",
               m->refusal ? m->refusal : "it gave no reason (see the log)");
    module_unref(m);
    return -1;
}

/* Releases everything m registered, then its own data; frees it once no
 * async reference remains. m must already be out of its list. */
static void instance_unload(xmppd_module *m)
{
    m->loaded = false;
    run_cleanups(m);
    if (m->def->unload)
        m->def->unload(m);
    /* Whatever unload() left in session slots is forgotten, so no later
     * instance allocated at the same address ever sees it. */
    layers_module_replaced(m, NULL);
    module_unref(m);
}

static int load_item(plan_item *it, xmppd_host *h, const xmppd_config *cfg, xmppd_module **m_r,
                     char *err, size_t errlen)
{
    xmppd_module *m = instance_new(it, h);
    if (!m)
        return oom(err, errlen);
    if (instance_load(m, it->key, cfg, err, errlen) < 0)
        return -1;
    if (list_append(h, m) < 0) {
        instance_unload(m);
        return oom(err, errlen);
    }
    if (m_r)
        *m_r = m;
    return 0;
}

static void unload_all(xmppd_host *h)
{
    size_t *n;
    xmppd_module ***v = list_of(h, &n);
    while (*n > 0) {
        xmppd_module *m = (*v)[--*n];
        instance_unload(m);
    }
    free(*v);
    *v = NULL;
}

/* ---- hosts -------------------------------------------------------------------------- */

static xmppd_host *host_new(const host_conf *hc)
{
    xmppd_host *h = calloc(1, sizeof(*h));
    if (!h || !(h->name = strdup(hc->name))) {
        free(h);
        return NULL;
    }
    h->conf = hc;
    return h;
}

/* Unloads h's modules, then frees the host with the per-host state other
 * kernel parts attached to it (sessions table, TLS context). */
static void host_free(xmppd_host *h)
{
    unload_all(h);
    hooks_host_free(h);
    for (size_t i = 0; i < g_n_layers; i++)
        if (g_layers[i]->host_free)
            g_layers[i]->host_free(h);
    strmap_free(h->apis); /* empty by now: entries are withdrawn on unload */
    free(h->name);
    free(h);
}

static int hosts_append(xmppd_host *h)
{
    xmppd_host **v = realloc(g_server.hosts, (g_server.n_hosts + 1) * sizeof(*v));
    if (!v)
        return -1;
    v[g_server.n_hosts++] = h;
    g_server.hosts = v;
    return 0;
}

/* ---- start / stop ---------------------------------------------------------------------- */

static void call_ready(xmppd_module *m)
{
    if (m->loaded && m->def->ready)
        m->def->ready(m);
}

/* ready() of a module loaded after start, then "module-loaded" (data: the
 * module name) on its host. */
static void announce(xmppd_module *m)
{
    call_ready(m);
    xmppd_notify(m->host, "module-loaded", NULL, (void *)m->def->name);
}

static void ready_all(void)
{
    for (size_t i = 0; i < g_server.n_globals; i++)
        call_ready(g_server.globals[i]);
    for (size_t i = 0; i < g_server.n_hosts; i++)
        for (size_t j = 0; j < g_server.hosts[i]->n_modules; j++)
            call_ready(g_server.hosts[i]->modules[j]);
}

int modules_start(xmppd_config *cfg, char *err, size_t errlen)
{
    if (g_server.cfg) {
        snprintf(err, errlen, "modules are already started");
        return -1;
    }
    plan p;
    if (plan_build_err(&p, cfg, err, errlen) < 0)
        return -1;
    g_server.cfg = cfg;
    if (!g_server.started)
        g_server.started = (int64_t)time(NULL);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < cfg->n_hosts; i++) {
        xmppd_host *h = host_new(&cfg->hosts[i]);
        if (!h || hosts_append(h) < 0) {
            free(h ? h->name : NULL);
            free(h);
            rc = oom(err, errlen);
        }
    }
    for (size_t i = 0; rc == 0 && i < p.globals.n; i++)
        rc = load_item(p.globals.v[i], NULL, cfg, NULL, err, errlen);
    for (size_t i = 0; rc == 0 && i < p.n_hosts; i++)
        for (size_t j = 0; rc == 0 && j < p.hosts[i].n; j++)
            rc = load_item(p.hosts[i].v[j], g_server.hosts[i], cfg, NULL, err, errlen);
    plan_free(&p);
    if (rc < 0) {
        modules_stop();
        return -1;
    }
    ready_all();
    return 0;
}

void modules_stop(void)
{
    while (g_server.n_hosts > 0)
        host_free(g_server.hosts[--g_server.n_hosts]);
    free(g_server.hosts);
    g_server.hosts = NULL;
    unload_all(NULL);
    hooks_global_free();
    g_server.cfg = NULL;
}

/* Modules without which a host is not an instant-messaging server (RFC 6121:
 * rosters, presence subscriptions) or misses what every client expects. */
static const struct { const char *name, *why; } expected_modules[] = {
    { "roster", "RFC 6121 rosters: clients get service-unavailable for their contact list" },
    { "presence", "RFC 6121 presence subscriptions and broadcast: contacts never see each other online" },
    { "offline", "XEP-0160 offline messages: messages to accounts without a session are bounced" },
    { "disco", "XEP-0030 service discovery: clients cannot find any feature" },
};

static bool set_has(const plan_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i]->lib->name, name) == 0)
            return true;
    return false;
}

int modules_check(const xmppd_config *cfg, opt_errors *errs, opt_errors *warns)
{
    plan p;
    if (plan_build(&p, cfg, errs) < 0)
        return -1;
    for (size_t i = 0; warns && i < p.n_hosts; i++) {
        char key[512];
        snprintf(key, sizeof(key), "hosts.%s", cfg->hosts[i].name);
        for (size_t k = 0; k < sizeof(expected_modules) / sizeof(expected_modules[0]); k++)
            if (!set_has(&p.hosts[i], expected_modules[k].name) &&
                !set_has(&p.globals, expected_modules[k].name))
                opt_error(warns, cfg, key, "no module %s: %s", expected_modules[k].name,
                          expected_modules[k].why);
    }
    plan_free(&p);
    return 0;
}

/* ---- one module at a time ------------------------------------------------------------- */

static const host_conf *find_host_conf(const xmppd_config *cfg, const char *name, size_t *idx_r);

static unsigned next_order(xmppd_host *h)
{
    unsigned max = 0;
    for (size_t i = 0; i < g_server.n_globals; i++)
        if (g_server.globals[i]->order > max)
            max = g_server.globals[i]->order;
    for (size_t i = 0; h && i < h->n_modules; i++)
        if (h->modules[i]->order > max)
            max = h->modules[i]->order;
    return max + 1;
}

/* A one-item plan for name on h with its options from cfg (the one in force,
 * or the file as it is now for xmppctl's module commands); defaults when
 * cfg does not mention the module. */
static plan_item *single_item(plan *p, const char *name, xmppd_host *h, char *err, size_t errlen)
{
    const xmppd_config *cfg = p->cfg;
    const host_conf *hc = NULL;
    if (h) {
        size_t idx;
        if (!(hc = find_host_conf(cfg, h->name, &idx))) {
            snprintf(err, errlen, "%s: host %s is not in this file: apply the configuration first "
                     "(xmppctl reload)", cfg->path, h->name);
            return NULL;
        }
    }
    char *key = keyf(h ? h->name : NULL, name);
    opt_errors errs = { 0 };
    p->errs = &errs;
    lib *l = key ? plan_lib(p, name, key) : NULL;
    free(key);
    if (!l) {
        opt_errors_join(&errs, err, errlen);
        opt_errors_free(&errs);
        return NULL;
    }
    const json_t *top = cfg->global_modules ? json_object_get(cfg->global_modules, name) : NULL;
    const json_t *own = hc && hc->modules ? json_object_get(hc->modules, name) : NULL;
    if (json_is_false(own) || (!own && json_is_false(top))) {
        char k[512];
        if (own)
            snprintf(k, sizeof(k), "hosts.%s.modules.%s", h->name, name);
        else
            snprintf(k, sizeof(k), "modules.%s", name);
        opt_errorf(cfg, k, err, errlen, "module %s is disabled here", name);
        return NULL;
    }
    plan_item *it = item_new(l, h ? h->name : NULL, top, own, own != NULL);
    if (!it) {
        oom(err, errlen);
        return NULL;
    }
    char owner[128];
    snprintf(owner, sizeof(owner), "module %s", name);
    opt_ctx ctx = { cfg, it->key, it->override, it->override_key, owner };
    it->conf = options_parse(l->def->options, l->def->conf_size, it->given, &ctx, false, &errs);
    char why[512];
    if (it->conf && module_check_conf(l->def, it->conf, why, sizeof(why)) < 0) {
        opt_error(&errs, cfg, it->key, "%s", why);
        options_conf_free(it->conf);
        it->conf = NULL;
    }
    opt_errors_join(&errs, err, errlen);
    opt_errors_free(&errs);
    if (!it->conf) {
        item_free(it);
        return NULL;
    }
    return it;
}

static int plan_init_single(plan *p, const xmppd_config *cfg, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->cfg = cfg;
    p->libs = strmap_new();
    p->failed = strmap_new();
    return p->libs && p->failed ? 0 : oom(err, errlen);
}

static int check_loaded_deps(const xmppd_module_def *def, xmppd_host *h, char *err, size_t errlen)
{
    for (const char *const *d = def->depends; d && *d; d++) {
        if (list_find(NULL, *d) || (h && list_find(h, *d)))
            continue;
        snprintf(err, errlen, "module %s depends on %s, which is not loaded%s%s", def->name, *d,
                 h ? " on " : "", h ? h->name : "");
        return -1;
    }
    return 0;
}

static int load_on(const xmppd_config *cfg, const char *name, xmppd_host *h, char *err, size_t errlen)
{
    if (list_find(h, name)) {
        snprintf(err, errlen, "module %s is already loaded%s%s", name, h ? " on " : "", h ? h->name : "");
        return -1;
    }
    plan p;
    if (plan_init_single(&p, cfg, err, errlen) < 0)
        return -1;
    plan_item *it = single_item(&p, name, h, err, errlen);
    int rc = it ? check_loaded_deps(it->lib->def, h, err, errlen) : -1;
    if (rc == 0 && h && (it->lib->def->flags & XMPPD_MOD_GLOBAL)) {
        snprintf(err, errlen, "%s is a global module: it cannot be loaded on one host", name);
        rc = -1;
    }
    xmppd_module *m = NULL;
    if (rc == 0) {
        it->order = next_order(h);
        rc = load_item(it, h, cfg, &m, err, errlen);
    }
    item_free(it);
    plan_free(&p);
    if (rc < 0)
        return -1;
    announce(m);
    return 0;
}

int module_load_one(const char *name, xmppd_host *h, char *err, size_t errlen)
{
    return module_load_from(g_server.cfg, name, h, err, errlen);
}

int module_load_from(const xmppd_config *cfg, const char *name, xmppd_host *h, char *err,
                     size_t errlen)
{
    if (!g_server.cfg || !cfg) {
        snprintf(err, errlen, "modules are not started");
        return -1;
    }
    if (h)
        return load_on(cfg, name, h, err, errlen);
    char why[512];
    lib *l = lib_open(cfg, name, why, sizeof(why));
    if (!l) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    bool global = l->def->flags & XMPPD_MOD_GLOBAL;
    lib_free(l);
    if (global)
        return load_on(cfg, name, NULL, err, errlen);
    int rc = 0;
    bool any = false;
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        if (list_find(g_server.hosts[i], name))
            continue;
        any = true;
        char why2[1024];
        if (load_on(cfg, name, g_server.hosts[i], why2, sizeof(why2)) < 0) {
            if (rc == 0)
                snprintf(err, errlen, "%s", why2);
            rc = -1;
        }
    }
    if (!any) {
        snprintf(err, errlen, "module %s is already loaded on every host", name);
        return -1;
    }
    return rc;
}

/* A loaded instance other than m that depends on m's module and sees it:
 * on m's host, or anywhere when m is global. */
static xmppd_module *find_dependent(const xmppd_module *m)
{
    const char *name = m->def->name;
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        xmppd_host *hh = g_server.hosts[i];
        if (m->host && hh != m->host)
            continue;
        for (size_t j = hh->n_modules; j-- > 0;)
            if (hh->modules[j] != m && def_depends_on(hh->modules[j]->def, name))
                return hh->modules[j];
    }
    for (size_t j = g_server.n_globals; !m->host && j-- > 0;)
        if (g_server.globals[j] != m && def_depends_on(g_server.globals[j]->def, name))
            return g_server.globals[j];
    return NULL;
}

/* Unloads m after every instance that depends on it (cascade), then fires
 * "module-unloaded" (data: the module name) on its host. */
static void unload_cascade(xmppd_module *m)
{
    xmppd_module *dep;
    while ((dep = find_dependent(m))) {
        xmppd_log(dep, XMPPD_LOG_INFO, "unloading: it depends on %s", m->def->name);
        unload_cascade(dep);
    }
    xmppd_host *h = m->host;
    list_remove(h, m);
    module_ref(m); /* keeps the shared object (and the name) until the event ran */
    instance_unload(m);
    xmppd_notify(h, "module-unloaded", NULL, (void *)m->def->name);
    module_unref(m);
}

int module_unload_one(const char *name, xmppd_host *h, char *err, size_t errlen)
{
    xmppd_module *m = list_find(h, name);
    if (m) {
        unload_cascade(m);
        return 0;
    }
    bool any = false;
    for (size_t i = 0; !h && i < g_server.n_hosts; i++) {
        m = list_find(g_server.hosts[i], name);
        if (m) {
            unload_cascade(m);
            any = true;
        }
    }
    if (any)
        return 0;
    snprintf(err, errlen, "module %s is not loaded%s%s", name, h ? " on " : "", h ? h->name : "");
    return -1;
}

/* Loads a new instance of old's module with options from item, and only
 * when that works replaces old with it (same place in the load order).
 * The caller then calls ready() of *m_r and fires "module-loaded". */
static int swap_instance(xmppd_module *old, plan_item *it, const xmppd_config *cfg,
                         xmppd_module **m_r, char *err, size_t errlen)
{
    xmppd_host *h = old->host;
    it->order = old->order;
    xmppd_module *m = instance_new(it, h);
    if (!m)
        return oom(err, errlen);
    char why[768];
    if (instance_load(m, it->key, cfg, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s; the running instance is kept", why);
        return -1;
    }
    size_t *n;
    xmppd_module ***v = list_of(h, &n);
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i] == old)
            (*v)[i] = m;
    /* Sessions keep their state where the module says it may: the new
     * instance inherits the old one's session slots. */
    if (m->def->flags & XMPPD_MOD_KEEP_SLOTS)
        layers_module_replaced(old, m);
    instance_unload(old);
    *m_r = m;
    static xmppd_metric *reloads;
    static const char *const labels[] = { "module", NULL };
    if (!reloads)
        reloads = xmppd_metric_new(NULL, "xmppd_module_reloads_total", XMPPD_METRIC_COUNTER,
                                   "Module instances replaced by a reload", labels, NULL, 0);
    xmppd_metric_add(reloads, (const char *[]){ m->def->name }, 1);
    return 0;
}


static int reload_on(const xmppd_config *cfg, xmppd_module *old, char *err, size_t errlen)
{
    plan p;
    if (plan_init_single(&p, cfg, err, errlen) < 0)
        return -1;
    plan_item *it = single_item(&p, old->def->name, old->host, err, errlen);
    if (!it) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, "; the running instance is kept");
    }
    xmppd_module *m = NULL;
    int rc = it ? swap_instance(old, it, cfg, &m, err, errlen) : -1;
    item_free(it);
    plan_free(&p);
    if (rc == 0)
        announce(m);
    return rc;
}

int module_reload_one(const char *name, xmppd_host *h, char *err, size_t errlen)
{
    return module_reload_from(g_server.cfg, name, h, err, errlen);
}

int module_reload_from(const xmppd_config *cfg, const char *name, xmppd_host *h, char *err,
                       size_t errlen)
{
    if (!g_server.cfg || !cfg) {
        snprintf(err, errlen, "modules are not started");
        return -1;
    }
    xmppd_module *m = list_find(h, name);
    if (m)
        return reload_on(cfg, m, err, errlen);
    int rc = 0;
    bool any = false;
    for (size_t i = 0; !h && i < g_server.n_hosts; i++) {
        m = list_find(g_server.hosts[i], name);
        if (m) {
            any = true;
            char why[1024];
            if (reload_on(cfg, m, why, sizeof(why)) < 0) {
                if (rc == 0)
                    snprintf(err, errlen, "%s", why);
                rc = -1;
            }
        }
    }
    if (!any) {
        snprintf(err, errlen, "module %s is not loaded%s%s", name, h ? " on " : "", h ? h->name : "");
        return -1;
    }
    return rc;
}

/* ---- reconfiguration ------------------------------------------------------------------- */

static bool same_options(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return a == b || json_object_size(a ? a : b) == 0;
    return json_equal((json_t *)a, (json_t *)b);
}

/* Unloads the instances of h (NULL: globals) that set no longer lists,
 * newest first. */
static void drop_removed(xmppd_host *h, const plan_set *set)
{
    size_t *n;
    xmppd_module ***v = list_of(h, &n);
    for (size_t i = *n; i-- > 0;) {
        if (i >= *n)
            continue;
        xmppd_module *m = (*v)[i];
        if (!set_find(set, m->def->name)) {
            xmppd_log(m, XMPPD_LOG_INFO, "unloading: removed from the configuration");
            unload_cascade(m);
        }
    }
}

/* Brings the instances of h (NULL: globals) in line with set: reloads those
 * whose options changed, loads the new ones in plan order. Keeps going
 * after a failure; err keeps the first message of all (it starts empty). */
static int apply_set(xmppd_host *h, plan_set *set, const xmppd_config *cfg, char *err, size_t errlen)
{
    int rc = 0;
    char why[1024];
    xmppd_module **fresh = calloc(set->n ? set->n : 1, sizeof(*fresh));
    size_t n_fresh = 0;
    if (!fresh)
        return oom(err, errlen);
    for (size_t i = 0; i < set->n; i++) {
        plan_item *it = set->v[i];
        xmppd_module *old = list_find(h, it->lib->name), *m = NULL;
        int r = 0;
        if (!old) {
            it->order = next_order(h);
            r = load_item(it, h, cfg, &m, why, sizeof(why));
        } else if (!same_options(old->options, it->given) || old->origin != it->lib->origin) {
            xmppd_log(old, XMPPD_LOG_INFO, "reloading: options changed");
            r = swap_instance(old, it, cfg, &m, why, sizeof(why));
        }
        if (m)
            fresh[n_fresh++] = m;
        if (r < 0) {
            log_kernel("modules", XMPPD_LOG_ERROR, "%s", why);
            if (!err[0])
                snprintf(err, errlen, "%s", why);
            rc = -1;
        }
    }
    /* Once the whole set is in place, like at start. */
    for (size_t i = 0; i < n_fresh; i++)
        announce(fresh[i]);
    free(fresh);
    return rc;
}

static const host_conf *find_host_conf(const xmppd_config *cfg, const char *name, size_t *idx_r)
{
    for (size_t i = 0; i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].name, name) == 0) {
            *idx_r = i;
            return &cfg->hosts[i];
        }
    return NULL;
}

int modules_reconfigure(xmppd_config *cfg, char *err, size_t errlen)
{
    if (!g_server.cfg)
        return modules_start(cfg, err, errlen);
    plan p;
    if (plan_build_err(&p, cfg, err, errlen) < 0)
        return -1;
    /* From here on cfg is in force; a module whose load fails is reported
     * (the instance it would replace keeps running). */
    err[0] = '\0';
    size_t idx = 0;
    for (size_t i = g_server.n_hosts; i-- > 0;) {
        xmppd_host *h = g_server.hosts[i];
        if (find_host_conf(cfg, h->name, &idx)) {
            drop_removed(h, &p.hosts[idx]);
            continue;
        }
        log_kernel("modules", XMPPD_LOG_INFO, "host %s removed", h->name);
        xmppd_notify(h, "host-removed", NULL, NULL);
        memmove(g_server.hosts + i, g_server.hosts + i + 1,
                (g_server.n_hosts - i - 1) * sizeof(*g_server.hosts));
        g_server.n_hosts--;
        host_free(h);
    }
    drop_removed(NULL, &p.globals);
    g_server.cfg = cfg;
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        find_host_conf(cfg, g_server.hosts[i]->name, &idx);
        g_server.hosts[i]->conf = &cfg->hosts[idx];
    }
    int rc = apply_set(NULL, &p.globals, cfg, err, errlen);
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        xmppd_host *h = xmppd_host_find(cfg->hosts[i].name);
        bool added = !h;
        if (added) {
            h = host_new(&cfg->hosts[i]);
            if (!h || hosts_append(h) < 0) {
                free(h ? h->name : NULL);
                free(h);
                if (!err[0])
                    oom(err, errlen);
                rc = -1;
                continue;
            }
            log_kernel("modules", XMPPD_LOG_INFO, "host %s added", h->name);
        }
        if (apply_set(h, &p.hosts[i], cfg, err, errlen) < 0)
            rc = -1;
        if (added)
            xmppd_notify(h, "host-added", NULL, NULL);
    }
    plan_free(&p);
    xmppd_notify(NULL, "config-reloaded", NULL, NULL);
    return rc < 0 ? 1 : 0; /* 1: in force, but a module failed: see err */
}

/* ---- xmppctl options ---------------------------------------------------------------- */

static int add_name(strmap *names, const char *file)
{
    size_t n = strlen(file);
    if (n < 8 || strncmp(file, "mod_", 4) != 0 || strcmp(file + n - 3, ".so") != 0)
        return 0;
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)(n - 7), file + 4);
    return valid_name(name) ? strmap_put(names, name, (void *)1) : 0;
}

static void scan_dir(strmap *names, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        add_name(names, e->d_name);
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/%s/.libs", dir, e->d_name);
        DIR *s = opendir(sub);
        struct dirent *f;
        while (s && (f = readdir(s)))
            add_name(names, f->d_name);
        if (s)
            closedir(s);
    }
    closedir(d);
}

typedef struct name_list {
    const char **v;
    size_t n;
} name_list;

static int collect_name(const char *key, void *value, void *ud)
{
    name_list *l = ud;
    l->v[l->n++] = key;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The installed or built-in module whose name is close to name (a typo),
 * into best; false when none is (opt_suggest decides what is close). */
static bool suggest_module(const xmppd_config *cfg, const char *name, char best[65])
{
    strmap *names = strmap_new();
    if (!names)
        return false;
    for (size_t i = 0; i < g_n_builtins; i++)
        strmap_put(names, g_builtins[i]->name, (void *)1);
    for (const char *const *d = module_dirs(cfg); *d; d++)
        scan_dir(names, *d);
    name_list l = { calloc(strmap_count(names) + 1, sizeof(char *)), 0 };
    const char *hint = NULL;
    if (l.v) {
        strmap_foreach(names, collect_name, &l);
        hint = opt_suggest(name, l.v, l.n);
        if (hint)
            snprintf(best, 65, "%s", hint);
    }
    free(l.v);
    strmap_free(names);
    return hint != NULL;
}

static int print_one(const xmppd_config *cfg, const char *name, bool markdown, FILE *out)
{
    char err[768];
    lib *l = lib_open(cfg, name, err, sizeof(err));
    if (!l) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    options_print(l->def->name, l->def->version, l->def->summary, l->def->options, markdown, out);
    if (!markdown)
        fputc('\n', out);
    lib_free(l);
    return 0;
}

#define SERVER_OPTIONS "server"

int modules_print_options(const xmppd_config *cfg, const char *only, bool markdown, FILE *out)
{
    if (!only || strcmp(only, SERVER_OPTIONS) == 0) {
        options_print(SERVER_OPTIONS, NULL, "the server's own keys, at the top level of the "
                      "configuration", config_options, markdown, out);
        if (!markdown)
            fputc('\n', out);
        if (only)
            return 0;
    }
    if (only)
        return print_one(cfg, only, markdown, out);
    strmap *names = strmap_new();
    if (!names)
        return -1;
    for (size_t i = 0; i < g_n_builtins; i++)
        strmap_put(names, g_builtins[i]->name, (void *)1);
    for (const char *const *d = module_dirs(cfg); *d; d++)
        scan_dir(names, *d);
    name_list l = { calloc(strmap_count(names) + 1, sizeof(char *)), 0 };
    int rc = l.v ? 0 : -1;
    if (l.v) {
        strmap_foreach(names, collect_name, &l);
        qsort(l.v, l.n, sizeof(*l.v), cmp_str);
        for (size_t i = 0; i < l.n; i++)
            if (print_one(cfg, l.v[i], markdown, out) < 0)
                rc = -1;
    }
    free(l.v);
    strmap_free(names);
    return rc;
}

/* ---- accessors (module.h) ------------------------------------------------------------- */

API xmppd_host *xmppd_module_host(const xmppd_module *m)
{
    return m->host;
}

API const char *xmppd_module_name(const xmppd_module *m)
{
    return m->def->name;
}

API const void *xmppd_module_conf(const xmppd_module *m)
{
    return m->conf;
}

API int xmppd_module_refuse(xmppd_module *m, const char *fmt, ...)
{
    if (!m->in_load)
        return -1;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    free(m->refusal);
    m->refusal = strdup(buf);
    xmppd_log(m, XMPPD_LOG_ERROR, "refusing to load: %s", buf);
    return -1;
}

API void *xmppd_module_data(const xmppd_module *m)
{
    return m->data;
}

API void xmppd_module_set_data(xmppd_module *m, void *data)
{
    m->data = data;
}

API xmppd_host *xmppd_host_find(const char *domain)
{
    if (!domain)
        return NULL;
    for (size_t i = 0; i < g_server.n_hosts; i++)
        if (strcmp(g_server.hosts[i]->name, domain) == 0)
            return g_server.hosts[i];
    return NULL;
}

API const char *xmppd_host_name(const xmppd_host *h)
{
    return h->name;
}

API void xmppd_host_foreach(int (*fn)(xmppd_host *h, void *ud), void *ud)
{
    for (size_t i = 0; i < g_server.n_hosts; i++)
        if (fn(g_server.hosts[i], ud))
            return;
}

API bool xmppd_host_has_module(const xmppd_host *h, const char *name)
{
    return list_find((xmppd_host *)h, name) != NULL;
}

API const char *xmppd_server_version(void)
{
    return PACKAGE_VERSION;
}

API int64_t xmppd_server_started(void)
{
    return g_server.started;
}

API const char *xmppd_data_dir(void)
{
    return g_server.cfg && g_server.cfg->data_dir ? g_server.cfg->data_dir : XMPPD_DATA_DIR;
}
