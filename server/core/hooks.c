/* Event hooks, the IQ handler registry and disco registrations.
 *
 * Hooks: each host, and the server (global modules and the kernel), has a
 * table of handler lists indexed by interned event id. Each list is kept
 * sorted by (priority descending, sequence ascending); the sequence is
 * (module load rank << 32 | global registration counter), so equal
 * priorities run in load order, then registration order, and a module
 * reloaded with the same configuration takes its old place. A fire merges
 * the host's and the global list on the fly: no allocation per fire.
 *
 * Handlers may register or release hooks during a fire. Released entries
 * are only marked dead while a fire walks their list and are freed when the
 * last fire leaves it; an insertion bumps the list's generation, and the
 * walking cursor then re-finds its place by key (binary search). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "util/strmap.h"

#define API XMPPD_EXPORT /* part of the module API: visible to dlopen'ed modules */

/* ---- event names --------------------------------------------------------- */

static strmap *g_events;   /* name -> (void *)(id + 1) */
static size_t g_n_events;

/* Every stanza fires the same few names (string literals at fixed
 * addresses) several times: a small cache by address saves hashing them.
 * An entry keeps its own copy of the name and is used only when the text
 * still matches (a caller's buffer may hold another name at that address
 * later). Unknown names are cached as -1; a new name and
 * hooks_global_free empty the cache. */
#define ID_CACHE_SLOTS 64
#define ID_CACHE_NAME 40
static struct {
    const char *addr;
    int id;
    char name[ID_CACHE_NAME];
} g_id_cache[ID_CACHE_SLOTS];

static unsigned id_slot(const char *name)
{
    return (unsigned)(((uintptr_t)name >> 3) ^ ((uintptr_t)name >> 9)) % ID_CACHE_SLOTS;
}

/* Interned id of name, creating it when create; -1 when unknown (or OOM). */
static int event_id(const char *name, bool create)
{
    unsigned slot = id_slot(name);
    if (g_id_cache[slot].addr == name && strcmp(g_id_cache[slot].name, name) == 0)
        return g_id_cache[slot].id;
    if (!g_events) {
        if (!create || !(g_events = strmap_new()))
            return -1;
    }
    void *v = strmap_get(g_events, name);
    int id = -1; /* unknown names are cached too: a new name empties the cache */
    if (v) {
        id = (int)((intptr_t)v - 1);
    } else if (create) {
        if (g_n_events >= INT_MAX - 1 ||
            strmap_put(g_events, name, (void *)(intptr_t)(g_n_events + 1)) < 0)
            return -1;
        id = (int)g_n_events++;
        memset(g_id_cache, 0, sizeof(g_id_cache));
    }
    size_t len = strlen(name);
    if (len < ID_CACHE_NAME) {
        g_id_cache[slot].addr = name;
        g_id_cache[slot].id = id;
        memcpy(g_id_cache[slot].name, name, len + 1);
    }
    return id;
}

/* ---- hook lists ------------------------------------------------------------ */

typedef struct hook_list hook_list;

typedef struct hook_entry {
    int prio;
    uint64_t seq;
    xmppd_handler fn;
    void *ud;
    xmppd_module *mod;   /* NULL: the kernel's own hook */
    hook_list *list;
    bool dead;
} hook_entry;

struct hook_list {
    hook_entry **v;      /* sorted; owned entries */
    size_t n, cap;
    unsigned firing;     /* fires currently walking this list */
    unsigned gen;        /* bumped on insertion */
    bool has_dead;
};

struct hook_table {
    hook_list **lists;   /* by event id; NULL: no handler ever */
    size_t n;
};

static uint32_t g_hook_counter;

/* Does a run before b? */
static bool runs_before(int pa, uint64_t sa, int pb, uint64_t sb)
{
    return pa > pb || (pa == pb && sa < sb);
}

/* First index whose entry runs after (prio, seq). */
static size_t upper_bound(const hook_list *l, int prio, uint64_t seq)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (runs_before(prio, seq, l->v[mid]->prio, l->v[mid]->seq))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A full array of *cap elements of elem bytes given twice the room (first
 * when it has none): the new array, or NULL on OOM (v is kept). */
static void *array_grow(void *v, size_t *cap, size_t elem, size_t first)
{
    size_t ncap = *cap ? *cap * 2 : first;
    void *nv = realloc(v, ncap * elem);
    if (nv)
        *cap = ncap;
    return nv;
}

static void list_compact(hook_list *l)
{
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->dead)
            free(l->v[i]);
        else
            l->v[j++] = l->v[i];
    }
    l->n = j;
    l->has_dead = false;
}

static void list_free(hook_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l);
}

static hook_table *table_new(void)
{
    return calloc(1, sizeof(hook_table));
}

static void table_free(hook_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        list_free(t->lists[i]);
    free(t->lists);
    free(t);
}

static hook_list *table_list(const hook_table *t, int id)
{
    return t && id >= 0 && (size_t)id < t->n ? t->lists[id] : NULL;
}

/* The list of event id in t, created on demand. NULL on OOM. */
static hook_list *table_list_make(hook_table *t, int id)
{
    if ((size_t)id >= t->n) {
        size_t n = (size_t)id + 8;
        hook_list **v = realloc(t->lists, n * sizeof(*v));
        if (!v)
            return NULL;
        memset(v + t->n, 0, (n - t->n) * sizeof(*v));
        t->lists = v;
        t->n = n;
    }
    if (!t->lists[id])
        t->lists[id] = calloc(1, sizeof(hook_list));
    return t->lists[id];
}

static int list_insert(hook_list *l, hook_entry *e)
{
    if (l->n == l->cap) {
        hook_entry **v = array_grow(l->v, &l->cap, sizeof(*v), 4);
        if (!v)
            return -1;
        l->v = v;
    }
    size_t pos = upper_bound(l, e->prio, e->seq);
    memmove(l->v + pos + 1, l->v + pos, (l->n - pos) * sizeof(*l->v));
    l->v[pos] = e;
    l->n++;
    l->gen++;
    e->list = l;
    return 0;
}

/* Module cleanup: releases one hook (deferred while its list is walked). */
static void hook_release(void *p)
{
    hook_entry *e = p;
    hook_list *l = e->list;
    e->dead = true;
    l->has_dead = true;
    if (l->firing == 0)
        list_compact(l);
}

API int xmppd_hook(xmppd_module *m, const char *event, xmppd_handler fn, int prio, void *ud)
{
    if (!event || !fn || (m && !m->loaded))
        return -1;
    hook_table **tp = m && m->host ? &m->host->hooks : &g_server.global_hooks;
    if (!*tp && !(*tp = table_new()))
        return -1;
    int id = event_id(event, true);
    hook_list *l = id < 0 ? NULL : table_list_make(*tp, id);
    hook_entry *e = l ? calloc(1, sizeof(*e)) : NULL;
    if (!e)
        return -1;
    *e = (hook_entry){ .prio = prio, .fn = fn, .ud = ud, .mod = m,
                       .seq = ((uint64_t)(m ? m->order : 0) << 32) | g_hook_counter++ };
    if (list_insert(l, e) < 0) {
        free(e);
        return -1;
    }
    if (m && !module_cleanup_add(m, hook_release, e)) {
        e->dead = true;
        l->has_dead = true;
        if (l->firing == 0)
            list_compact(l);
        return -1;
    }
    return 0;
}

/* ---- firing ------------------------------------------------------------------ */

/* A position in one list during a fire. */
typedef struct cursor {
    hook_list *l;
    size_t i;
    unsigned gen;
} cursor;

static void cursor_start(cursor *c, hook_list *l)
{
    *c = (cursor){ l, 0, l ? l->gen : 0 };
    if (l)
        l->firing++;
}

/* The next live entry after the last one run (prio, seq), or NULL. */
static hook_entry *cursor_peek(cursor *c, bool started, int prio, uint64_t seq)
{
    hook_list *l = c->l;
    if (!l)
        return NULL;
    if (c->gen != l->gen) {
        c->gen = l->gen;
        c->i = started ? upper_bound(l, prio, seq) : 0;
    }
    while (c->i < l->n && l->v[c->i]->dead)
        c->i++;
    return c->i < l->n ? l->v[c->i] : NULL;
}

/* Moves c to the first entry that runs after (prio, seq). */
static void cursor_seek(cursor *c, int prio, uint64_t seq)
{
    if (c->l)
        c->i = upper_bound(c->l, prio, seq);
}

static void cursor_end(cursor *c)
{
    hook_list *l = c->l;
    if (l && --l->firing == 0 && l->has_dead)
        list_compact(l);
}

/* The handler running now and its event (xmppd_hold reads its place),
 * and where the next fire of a resumed stanza starts. */
static const hook_entry *g_running;
static const xmppd_event *g_running_ev;
static struct {
    const xmppd_stanza *st; /* NULL: no resume pending */
    int event;
    int prio;
    uint64_t seq;
} g_resume;

static int call_handler(hook_entry *e, xmppd_event *ev)
{
    xmppd_module *m = e->mod;
    if (m)
        module_ref(m);
    const hook_entry *prev = g_running;
    const xmppd_event *prev_ev = g_running_ev;
    g_running = e;
    g_running_ev = ev;
    int rc = e->fn(ev, e->ud);
    g_running = prev;
    g_running_ev = prev_ev;
    if (rc == XMPPD_FAIL) {
        if (m)
            xmppd_log(m, XMPPD_LOG_ERROR, "handler for event \"%s\" failed", ev->name);
        else
            log_kernel("hooks", XMPPD_LOG_ERROR, "kernel handler for event \"%s\" failed", ev->name);
    }
    if (m)
        module_unref(m);
    return rc;
}

static int fire(xmppd_event *ev, bool all)
{
    if (!ev || !ev->name || !g_events)
        return XMPPD_PASS;
    int id = event_id(ev->name, false);
    hook_list *hl = ev->host ? table_list(ev->host->hooks, id) : NULL;
    hook_list *gl = table_list(g_server.global_hooks, id);
    if ((!hl || hl->n == 0) && (!gl || gl->n == 0))
        return XMPPD_PASS;

    cursor a, b;
    cursor_start(&a, hl);
    cursor_start(&b, gl);
    int result = XMPPD_PASS, prio = 0;
    uint64_t seq = 0;
    bool started = false;
    if (g_resume.st && g_resume.st == ev->stanza && g_resume.event == id) {
        /* a held stanza goes on after the handler that held it */
        prio = g_resume.prio;
        seq = g_resume.seq;
        started = true;
        cursor_seek(&a, prio, seq);
        cursor_seek(&b, prio, seq);
        g_resume.st = NULL;
    }
    for (;;) {
        hook_entry *ea = cursor_peek(&a, started, prio, seq);
        hook_entry *eb = cursor_peek(&b, started, prio, seq);
        hook_entry *e;
        if (ea && (!eb || runs_before(ea->prio, ea->seq, eb->prio, eb->seq))) {
            e = ea;
            a.i++;
        } else if (eb) {
            e = eb;
            b.i++;
        } else {
            break;
        }
        prio = e->prio;
        seq = e->seq;
        started = true;
        int rc = call_handler(e, ev);
        if (!all && rc != XMPPD_PASS) {
            result = rc == XMPPD_FAIL ? XMPPD_FAIL : XMPPD_HANDLED;
            break;
        }
    }
    cursor_end(&a);
    cursor_end(&b);
    return result;
}

bool hooks_running_place(const xmppd_event *ev, hooks_place *p)
{
    int id = ev && ev->name && g_events ? event_id(ev->name, false) : -1;
    if (!g_running || g_running_ev != ev || id < 0)
        return false;
    *p = (hooks_place){ id, g_running->prio, g_running->seq };
    return true;
}

void hooks_resume_from(const xmppd_stanza *st, const hooks_place *p)
{
    g_resume.st = st;
    g_resume.event = p ? p->event : -1;
    g_resume.prio = p ? p->prio : 0;
    g_resume.seq = p ? p->seq : 0;
    if (!p)
        g_resume.st = NULL;
}

API int xmppd_fire(xmppd_event *ev)
{
    return fire(ev, false);
}

API void xmppd_fire_all(xmppd_event *ev)
{
    fire(ev, true);
}

API void xmppd_notify(xmppd_host *h, const char *event, xmppd_session *s, void *data)
{
    xmppd_event ev = { .name = event, .host = h, .session = s, .data = data };
    fire(&ev, true);
}

/* ---- IQ handlers ------------------------------------------------------------ */

/* One registration of (type, xmlns, target). An instance replacing another
 * of the same module (reload) shadows it until the old one is released. */
typedef struct iq_entry {
    struct iq_entry *shadowed; /* older registration of the same key, same module */
    char *key;                 /* map key (owned) */
    iq_table *table;
    xmppd_handler fn;
    void *ud;
    xmppd_module *mod;
} iq_entry;

struct iq_table {
    strmap *map; /* key -> newest iq_entry */
};

static iq_table *g_global_iqs;

/* "type target xmlns" into buf; false when it does not fit. */
static bool iq_key(char *buf, size_t len, const char *type, unsigned target, const char *xmlns)
{
    size_t tl = strlen(type), nl = strlen(xmlns);
    if (tl + nl + 4 > len)
        return false;
    memcpy(buf, type, tl);
    buf[tl] = ' ';
    buf[tl + 1] = (char)('0' + target);
    buf[tl + 2] = ' ';
    memcpy(buf + tl + 3, xmlns, nl + 1);
    return true;
}

static iq_table *iq_table_get(iq_table **tp)
{
    if (!*tp) {
        iq_table *t = calloc(1, sizeof(*t));
        if (!t || !(t->map = strmap_new())) {
            free(t);
            return NULL;
        }
        *tp = t;
    }
    return *tp;
}

static int iq_free_entry(const char *key, void *value, void *ud)
{
    for (iq_entry *e = value, *next; e; e = next) {
        next = e->shadowed;
        free(e->key);
        free(e);
    }
    return 0;
}

static void iq_table_free(iq_table *t)
{
    if (!t)
        return;
    strmap_foreach(t->map, iq_free_entry, NULL);
    strmap_free(t->map);
    free(t);
}

/* Module cleanup: unlinks one IQ registration. */
static void iq_release(void *p)
{
    iq_entry *e = p;
    iq_table *t = e->table;
    iq_entry *head = strmap_get(t->map, e->key);
    if (head == e) {
        if (e->shadowed)
            strmap_put(t->map, e->key, e->shadowed);
        else
            strmap_del(t->map, e->key);
    } else {
        for (iq_entry *x = head; x; x = x->shadowed)
            if (x->shadowed == e) {
                x->shadowed = e->shadowed;
                break;
            }
    }
    free(e->key);
    free(e);
}

/* The owner of key in t if it is another module (not an older instance of
 * m's own module, which a reload replaces). */
static const iq_entry *iq_conflict(const iq_table *t, const char *key, const xmppd_module *m)
{
    const iq_entry *e = t ? strmap_get(t->map, key) : NULL;
    if (e && e->mod && m && strcmp(e->mod->def->name, m->def->name) == 0 && e->mod != m)
        return NULL;
    return e;
}

static const iq_entry *iq_find_conflict(const char *key, const xmppd_module *m)
{
    const iq_entry *e = iq_conflict(g_global_iqs, key, m);
    if (e)
        return e;
    if (m && m->host)
        return iq_conflict(m->host->iqs, key, m);
    for (size_t i = 0; i < g_server.n_hosts && !e; i++)
        e = iq_conflict(g_server.hosts[i]->iqs, key, m);
    return e;
}

static int iq_add_one(xmppd_module *m, iq_table *t, const char *key, xmppd_handler fn, void *ud)
{
    iq_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return -1;
    }
    e->table = t;
    e->fn = fn;
    e->ud = ud;
    e->mod = m;
    e->shadowed = strmap_get(t->map, key);
    if (strmap_put(t->map, key, e) < 0) {
        free(e->key);
        free(e);
        return -1;
    }
    if (m && !module_cleanup_add(m, iq_release, e)) {
        iq_release(e);
        return -1;
    }
    return 0;
}

API int xmppd_iq_handle(xmppd_module *m, const char *type, const char *xmlns, unsigned targets,
                    xmppd_handler fn, void *ud)
{
    if (!type || !xmlns || !fn || !targets || (targets & ~(unsigned)(XMPPD_IQ_HOST | XMPPD_IQ_BARE)) ||
        (m && !m->loaded))
        return -1;
    iq_table *t = iq_table_get(m && m->host ? &m->host->iqs : &g_global_iqs);
    if (!t)
        return -1;
    char key[512];
    /* Check every key first so a refusal registers nothing. */
    for (unsigned bit = 1; bit <= XMPPD_IQ_BARE; bit <<= 1) {
        if (!(targets & bit))
            continue;
        if (!iq_key(key, sizeof(key), type, bit, xmlns))
            return -1;
        const iq_entry *owner = iq_find_conflict(key, m);
        if (owner) {
            const char *who = owner->mod ? owner->mod->tag : "the kernel";
            if (m)
                xmppd_log(m, XMPPD_LOG_ERROR, "IQ %s %s (%s) is already handled by %s", type, xmlns,
                          bit == XMPPD_IQ_HOST ? "to the host" : "to accounts", who);
            else
                log_kernel("hooks", XMPPD_LOG_ERROR, "IQ %s %s is already handled by %s", type, xmlns,
                           who);
            return -1;
        }
    }
    for (unsigned bit = 1; bit <= XMPPD_IQ_BARE; bit <<= 1) {
        if (!(targets & bit))
            continue;
        iq_key(key, sizeof(key), type, bit, xmlns);
        if (iq_add_one(m, t, key, fn, ud) < 0)
            return -1;
    }
    return 0;
}

int iq_dispatch(xmppd_host *h, xmppd_event *ev, unsigned target)
{
    const char *type = ev->stanza ? xmppd_stanza_attr(ev->stanza, "type") : NULL;
    const xmppd_stanza *child = ev->stanza ? xmppd_stanza_first(ev->stanza) : NULL;
    const char *xmlns = child ? xmppd_stanza_ns(child) : NULL;
    char key[512];
    if (!type || !xmlns || !iq_key(key, sizeof(key), type, target, xmlns))
        return XMPPD_PASS;
    iq_entry *e = h && h->iqs ? strmap_get(h->iqs->map, key) : NULL;
    if (!e && g_global_iqs)
        e = strmap_get(g_global_iqs->map, key);
    if (!e)
        return XMPPD_PASS;
    xmppd_module *m = e->mod;
    if (m)
        module_ref(m);
    int rc = e->fn(ev, e->ud);
    if (rc == XMPPD_FAIL) {
        if (m)
            xmppd_log(m, XMPPD_LOG_ERROR, "IQ handler for %s %s failed", type, xmlns);
        else
            log_kernel("hooks", XMPPD_LOG_ERROR, "IQ handler for %s %s failed", type, xmlns);
    }
    if (m)
        module_unref(m);
    return rc;
}

/* ---- disco ---------------------------------------------------------------------- */

typedef struct disco_item {
    char *var;                  /* feature, or NULL for an identity */
    char *category, *type, *name;
    xmppd_module *mod;
    disco_list *list;
} disco_item;

struct disco_list {
    disco_item **v; /* registration order; owned */
    size_t n, cap;
};

static disco_list *g_global_disco;

static void disco_item_free(disco_item *d)
{
    free(d->var);
    free(d->category);
    free(d->type);
    free(d->name);
    free(d);
}

static void disco_list_free(disco_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        disco_item_free(l->v[i]);
    free(l->v);
    free(l);
}

static void disco_release(void *p)
{
    disco_item *d = p;
    disco_list *l = d->list;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i] == d) {
            memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof(*l->v));
            l->n--;
            break;
        }
    }
    disco_item_free(d);
}

static int disco_add(xmppd_module *m, disco_item *d)
{
    disco_list **lp = m && m->host ? &m->host->disco : &g_global_disco;
    if (!*lp && !(*lp = calloc(1, sizeof(disco_list))))
        goto fail;
    disco_list *l = *lp;
    if (l->n == l->cap) {
        disco_item **v = array_grow(l->v, &l->cap, sizeof(*v), 8);
        if (!v)
            goto fail;
        l->v = v;
    }
    d->list = l;
    d->mod = m;
    l->v[l->n++] = d;
    if (m && !module_cleanup_add(m, disco_release, d)) {
        disco_release(d);
        return -1;
    }
    return 0;
fail:
    disco_item_free(d);
    return -1;
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *r = s ? strdup(s) : NULL;
    if (s && !r)
        *oom = true;
    return r;
}

API int xmppd_disco_feature(xmppd_module *m, const char *var)
{
    if (!var || (m && !m->loaded))
        return -1;
    disco_item *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    if (!(d->var = strdup(var))) {
        free(d);
        return -1;
    }
    return disco_add(m, d);
}

API int xmppd_disco_identity(xmppd_module *m, const char *category, const char *type, const char *name)
{
    if (!category || !type || (m && !m->loaded))
        return -1;
    disco_item *d = calloc(1, sizeof(*d));
    bool oom = !d;
    if (d) {
        d->category = dup_or_null(category, &oom);
        d->type = dup_or_null(type, &oom);
        d->name = dup_or_null(name, &oom);
    }
    if (oom) {
        if (d)
            disco_item_free(d);
        return -1;
    }
    return disco_add(m, d);
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Has an item equal to d been visited before it (global list first, then
 * the host's)? Keeps features unique while a reload briefly registers
 * them twice, or two modules announce the same feature. */
static bool disco_seen(const disco_list *g, const disco_list *h, const disco_item *d)
{
    const disco_list *lists[2] = { g, h };
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; lists[k] && i < lists[k]->n; i++) {
            const disco_item *x = lists[k]->v[i];
            if (x == d)
                return false;
            if (same_str(x->var, d->var) && same_str(x->category, d->category) &&
                same_str(x->type, d->type) && same_str(x->name, d->name))
                return true;
        }
    }
    return false;
}

static void disco_walk(xmppd_host *h, bool features,
                       void (*feat)(const char *, void *),
                       void (*ident)(const char *, const char *, const char *, void *), void *ud)
{
    const disco_list *lists[2] = { g_global_disco, h ? h->disco : NULL };
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; lists[k] && i < lists[k]->n; i++) {
            const disco_item *d = lists[k]->v[i];
            if ((d->var != NULL) != features || disco_seen(lists[0], lists[1], d))
                continue;
            if (features)
                feat(d->var, ud);
            else
                ident(d->category, d->type, d->name, ud);
        }
    }
}

API void xmppd_disco_foreach_feature(xmppd_host *h, void (*fn)(const char *var, void *ud), void *ud)
{
    disco_walk(h, true, fn, NULL, ud);
}

API void xmppd_disco_foreach_identity(xmppd_host *h,
    void (*fn)(const char *category, const char *type, const char *name, void *ud), void *ud)
{
    disco_walk(h, false, NULL, fn, ud);
}

/* ---- teardown ------------------------------------------------------------------ */

void hooks_host_free(xmppd_host *h)
{
    table_free(h->hooks);
    h->hooks = NULL;
    iq_table_free(h->iqs);
    h->iqs = NULL;
    disco_list_free(h->disco);
    h->disco = NULL;
}

void hooks_global_free(void)
{
    table_free(g_server.global_hooks);
    g_server.global_hooks = NULL;
    iq_table_free(g_global_iqs);
    g_global_iqs = NULL;
    disco_list_free(g_global_disco);
    g_global_disco = NULL;
    strmap_free(g_events);
    g_events = NULL;
    g_n_events = 0;
    memset(g_id_cache, 0, sizeof(g_id_cache));
}

/* ---- inspection (xmppctl hooks) --------------------------------------------- */

typedef struct name_vec {
    const char **v; /* by event id */
    size_t n;
} name_vec;

static int name_of_id(const char *key, void *value, void *ud)
{
    name_vec *nv = ud;
    size_t id = (size_t)((intptr_t)value - 1);
    if (id < nv->n)
        nv->v[id] = key;
    return 0;
}

static void table_walk(const hook_table *t, const xmppd_host *h, const name_vec *nv,
                       hooks_handler_fn fn, void *ud)
{
    for (size_t id = 0; t && id < t->n && id < nv->n; id++) {
        const hook_list *l = t->lists[id];
        for (size_t i = 0; l && i < l->n; i++)
            if (!l->v[i]->dead)
                fn(nv->v[id], h, l->v[i]->mod, l->v[i]->prio, ud);
    }
}

void hooks_foreach_handler(hooks_handler_fn fn, void *ud)
{
    name_vec nv = { calloc(g_n_events ? g_n_events : 1, sizeof(char *)), g_n_events };
    if (!nv.v)
        return;
    if (g_events)
        strmap_foreach(g_events, name_of_id, &nv);
    table_walk(g_server.global_hooks, NULL, &nv, fn, ud);
    for (size_t i = 0; i < g_server.n_hosts; i++)
        table_walk(g_server.hosts[i]->hooks, g_server.hosts[i], &nv, fn, ud);
    free(nv.v);
}

typedef struct iq_walk {
    const xmppd_host *h;
    hooks_iq_fn fn;
    void *ud;
} iq_walk;

static int iq_visit(const char *key, void *value, void *ud)
{
    iq_walk *w = ud;
    /* key: "type T xmlns" (see iq_key) */
    const char *sp = strchr(key, ' ');
    if (!sp || !sp[1] || sp[2] != ' ')
        return 0;
    char type[16];
    size_t tl = (size_t)(sp - key);
    if (tl >= sizeof(type))
        return 0;
    memcpy(type, key, tl);
    type[tl] = '\0';
    unsigned target = (unsigned)(sp[1] - '0');
    for (const iq_entry *e = value; e; e = e->shadowed)
        w->fn(type, sp + 3, target, w->h, e->mod, w->ud);
    return 0;
}

void hooks_foreach_iq(hooks_iq_fn fn, void *ud)
{
    iq_walk w = { NULL, fn, ud };
    if (g_global_iqs)
        strmap_foreach(g_global_iqs->map, iq_visit, &w);
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        w.h = g_server.hosts[i];
        if (g_server.hosts[i]->iqs)
            strmap_foreach(g_server.hosts[i]->iqs->map, iq_visit, &w);
    }
}
