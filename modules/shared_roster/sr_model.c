/* shared_roster: the group model (sr_model.h). */
#define _GNU_SOURCE /* tdestroy */
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sr_model.h"

typedef struct sr_group {
    char *id, *name;
    char **members;
    size_t n, cap;
    char **shows;             /* ids, NULL-terminated */
    size_t *shown, n_shown;   /* resolved: indices of the groups it shows */
    size_t *shown_to, n_shown_to, cap_shown_to; /* the groups that show it */
} sr_group;

/* One membership: jid (borrowed from its group) in group g. */
typedef struct sr_memb {
    const char *jid;
    size_t g;
} sr_memb;

struct sr_model {
    sr_group *g;
    size_t n, cap;
    void *ids;         /* while building: tsearch of sr_idx by id */
    sr_memb *memb;
    size_t n_memb;
    char token[17];
};

/* arr (n elements of elem bytes in use, *cap allocated) with room for
 * one more, doubling; NULL on OOM (arr is then unchanged). */
static void *sr_grow(void *arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(arr, c * elem);
    if (p)
        *cap = c;
    return p;
}

sr_model *sr_model_new(void)
{
    return calloc(1, sizeof(sr_model));
}

static void sr_strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

void sr_model_free(sr_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        sr_group *g = &m->g[i];
        for (size_t k = 0; k < g->n; k++)
            free(g->members[k]);
        free(g->members);
        sr_strv_free(g->shows);
        free(g->shown);
        free(g->shown_to);
        free(g->id);
        free(g->name);
    }
    tdestroy(m->ids, free);
    free(m->g);
    free(m->memb);
    free(m);
}

/* ---- building ---- */

/* A group's place while building (id borrowed from the group). */
typedef struct sr_idx {
    const char *id;
    int i;
} sr_idx;

static int sr_id_cmp(const void *a, const void *b)
{
    return strcmp(((const sr_idx *)a)->id, ((const sr_idx *)b)->id);
}

static int sr_find(const sr_model *m, const char *id)
{
    sr_idx key = { id, 0 };
    sr_idx *const *p = tfind(&key, &m->ids, sr_id_cmp);
    return p ? (*p)->i : -1;
}

static char **sr_strv_dup(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **out = calloc(n + 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            sr_strv_free(out);
            return NULL;
        }
    return out;
}

int sr_model_group(sr_model *m, const char *id, const char *name, const char *const *shows)
{
    int i = sr_find(m, id);
    if (i < 0) {
        sr_group *grown = sr_grow(m->g, m->n, &m->cap, sizeof(*m->g));
        if (!grown)
            return -1;
        m->g = grown;
        sr_group *g = &m->g[m->n];
        memset(g, 0, sizeof(*g));
        const char *self[] = { id, NULL };
        sr_idx *x = malloc(sizeof(*x));
        bool ok = x && (g->id = strdup(id)) && (g->name = strdup(name ? name : id)) &&
                  (g->shows = sr_strv_dup(self));
        if (ok) {
            *x = (sr_idx){ g->id, (int)m->n };
            ok = tsearch(x, &m->ids, sr_id_cmp) != NULL;
        }
        if (!ok) {
            free(x);
            free(g->id);
            free(g->name);
            sr_strv_free(g->shows);
            return -1;
        }
        i = (int)m->n++;
        name = NULL; /* taken */
    }
    sr_group *g = &m->g[i];
    char *nn = name ? strdup(name) : NULL;
    char **ns = shows ? sr_strv_dup(shows) : NULL;
    if ((name && !nn) || (shows && !ns)) {
        free(nn);
        sr_strv_free(ns);
        return -1;
    }
    if (nn) {
        free(g->name);
        g->name = nn;
    }
    if (ns) {
        sr_strv_free(g->shows);
        g->shows = ns;
    }
    return i;
}

int sr_model_member(sr_model *m, int gi, const char *jid)
{
    sr_group *g = &m->g[gi];
    char **grown = sr_grow(g->members, g->n, &g->cap, sizeof(*g->members));
    if (grown)
        g->members = grown;
    if (!grown || !(g->members[g->n] = strdup(jid)))
        return -1;
    g->n++;
    return 0;
}

static int sr_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* qsort, which must not be given a NULL array even when it is empty. */
static void sr_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

static int sr_group_cmp(const void *a, const void *b)
{
    return strcmp(((const sr_group *)a)->id, ((const sr_group *)b)->id);
}

static int sr_memb_cmp(const void *a, const void *b)
{
    const sr_memb *x = a, *y = b;
    int c = strcmp(x->jid, y->jid);
    return c ? c : (x->g > y->g) - (x->g < y->g);
}

static void sr_members_sort(sr_group *g)
{
    sr_sort(g->members, g->n, sizeof(*g->members), sr_str_cmp);
    size_t u = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (u > 0 && strcmp(g->members[u - 1], g->members[i]) == 0)
            free(g->members[i]);
        else
            g->members[u++] = g->members[i];
    }
    g->n = u;
}

static long sr_index(const sr_model *m, const char *id)
{
    sr_group key = { .id = (char *)id };
    const sr_group *g = m->n ? bsearch(&key, m->g, m->n, sizeof(*m->g), sr_group_cmp) : NULL;
    return g ? (long)(g - m->g) : -1;
}

static int sr_add_shown_to(sr_group *d, size_t g)
{
    size_t *grown = sr_grow(d->shown_to, d->n_shown_to, &d->cap_shown_to, sizeof(*d->shown_to));
    if (!grown)
        return -1;
    d->shown_to = grown;
    d->shown_to[d->n_shown_to++] = g;
    return 0;
}

/* FNV-1a, 64 bits: a stable digest of the content, not a secret. */
static uint64_t sr_fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
        if (!*p)
            return h;
    }
}

static void sr_make_token(sr_model *m)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < m->n; i++) {
        const sr_group *g = &m->g[i];
        h = sr_fnv(sr_fnv(h, g->id), g->name);
        for (size_t k = 0; k < g->n_shown; k++)
            h = sr_fnv(h, m->g[g->shown[k]].id);
        h = sr_fnv(h, "\x01");
        for (size_t k = 0; k < g->n; k++)
            h = sr_fnv(h, g->members[k]);
        h = sr_fnv(h, "\x02");
    }
    snprintf(m->token, sizeof(m->token), "%016llx", (unsigned long long)h);
}

int sr_model_finish(sr_model *m, const char **unknown_r)
{
    *unknown_r = NULL;
    tdestroy(m->ids, free);
    m->ids = NULL;
    sr_sort(m->g, m->n, sizeof(*m->g), sr_group_cmp);
    size_t total = 0;
    for (size_t i = 0; i < m->n; i++) {
        sr_group *g = &m->g[i];
        sr_members_sort(g);
        total += g->n;
        size_t n = 0;
        while (g->shows && g->shows[n])
            n++;
        if (n && !(g->shown = calloc(n, sizeof(*g->shown))))
            return -1;
        for (size_t k = 0; k < n; k++) {
            long d = sr_index(m, g->shows[k]);
            if (d < 0) {
                if (!*unknown_r)
                    *unknown_r = g->shows[k];
                continue;
            }
            g->shown[g->n_shown++] = (size_t)d;
        }
    }
    for (size_t i = 0; i < m->n; i++)
        for (size_t k = 0; k < m->g[i].n_shown; k++)
            if (sr_add_shown_to(&m->g[m->g[i].shown[k]], i) != 0)
                return -1;
    if (total && !(m->memb = calloc(total, sizeof(*m->memb))))
        return -1;
    for (size_t i = 0; i < m->n; i++)
        for (size_t k = 0; k < m->g[i].n; k++)
            m->memb[m->n_memb++] = (sr_memb){ m->g[i].members[k], i };
    sr_sort(m->memb, m->n_memb, sizeof(*m->memb), sr_memb_cmp);
    sr_make_token(m);
    return 0;
}

/* ---- reading ---- */

size_t sr_model_groups(const sr_model *m)
{
    return m->n;
}

const char *sr_model_group_id(const sr_model *m, size_t i)
{
    return m->g[i].id;
}

size_t sr_model_group_size(const sr_model *m, size_t i)
{
    return m->g[i].n;
}

const char *sr_model_token(const sr_model *m)
{
    return m->token;
}

static bool sr_is_member(const sr_group *g, const char *jid)
{
    return g->n && bsearch(&jid, g->members, g->n, sizeof(*g->members), sr_str_cmp) != NULL;
}

/* The memberships of jid: memb[*lo .. *hi). */
static void sr_range(const sr_model *m, const char *jid, size_t *lo, size_t *hi)
{
    size_t a = 0, b = m->n_memb;
    while (a < b) {
        size_t mid = (a + b) / 2;
        if (strcmp(m->memb[mid].jid, jid) < 0)
            a = mid + 1;
        else
            b = mid;
    }
    *lo = a;
    while (a < m->n_memb && strcmp(m->memb[a].jid, jid) == 0)
        a++;
    *hi = a;
}

static void sr_add_name(const char **names, size_t max, size_t *k, const char *name)
{
    for (size_t i = 0; i < *k; i++)
        if (strcmp(names[i], name) == 0)
            return;
    if (*k + 1 < max)
        names[(*k)++] = name;
}

/* Does u see v? With names, also which groups show v to u. */
static bool sr_sees(const sr_model *m, const char *u, const char *v, const char **names, size_t max, size_t *k)
{
    size_t lo, hi;
    bool seen = false;
    sr_range(m, u, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const sr_group *g = &m->g[m->memb[i].g];
        for (size_t s = 0; s < g->n_shown; s++) {
            const sr_group *d = &m->g[g->shown[s]];
            if (!sr_is_member(d, v))
                continue;
            seen = true;
            if (!names)
                return true;
            sr_add_name(names, max, k, d->name);
        }
    }
    return seen;
}

unsigned sr_model_item(const sr_model *m, const char *u, const char *v, const char **names, size_t max)
{
    size_t k = 0;
    unsigned sub = 0;
    if (strcmp(u, v) != 0) {
        if (sr_sees(m, u, v, names, max, &k))
            sub |= SR_TO;
        if (sr_sees(m, v, u, NULL, 0, NULL))
            sub |= SR_FROM;
    }
    if (names && max > 0)
        names[k] = NULL;
    return sub;
}

/* One (contact, bit, group name) found while listing u's contacts. */
typedef struct sr_hit {
    const char *jid;
    unsigned sub;
    const char *name; /* NULL for a FROM hit */
} sr_hit;

typedef struct sr_hits {
    sr_hit *h;
    size_t n, cap;
} sr_hits;

static int sr_hit_add(sr_hits *hs, const char *jid, unsigned sub, const char *name)
{
    sr_hit *grown = sr_grow(hs->h, hs->n, &hs->cap, sizeof(*hs->h));
    if (!grown)
        return -1;
    hs->h = grown;
    hs->h[hs->n++] = (sr_hit){ jid, sub, name };
    return 0;
}

static int sr_hit_cmp(const void *a, const void *b)
{
    return strcmp(((const sr_hit *)a)->jid, ((const sr_hit *)b)->jid);
}

/* Every (v, bit, name) for u: members of the groups u's groups show (to),
 * members of the groups that show u's groups (from). */
static int sr_collect(const sr_model *m, const char *u, sr_hits *hs)
{
    size_t lo, hi;
    sr_range(m, u, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const sr_group *g = &m->g[m->memb[i].g];
        for (size_t s = 0; s < g->n_shown; s++) {
            const sr_group *d = &m->g[g->shown[s]];
            for (size_t k = 0; k < d->n; k++)
                if (strcmp(d->members[k], u) != 0 && sr_hit_add(hs, d->members[k], SR_TO, d->name) != 0)
                    return -1;
        }
        for (size_t s = 0; s < g->n_shown_to; s++) {
            const sr_group *w = &m->g[g->shown_to[s]];
            for (size_t k = 0; k < w->n; k++)
                if (strcmp(w->members[k], u) != 0 && sr_hit_add(hs, w->members[k], SR_FROM, NULL) != 0)
                    return -1;
        }
    }
    return 0;
}

int sr_model_contacts(const sr_model *m, const char *u, sr_contact_fn fn, void *ud)
{
    sr_hits hs = { 0 };
    const char **names = NULL;
    int rc = sr_collect(m, u, &hs);
    if (rc == 0 && hs.n) {
        sr_sort(hs.h, hs.n, sizeof(*hs.h), sr_hit_cmp); /* a stable order is not needed: names are sets */
        names = calloc(m->n + 1, sizeof(*names));
        rc = names ? 0 : -1;
    }
    for (size_t i = 0; rc == 0 && i < hs.n;) {
        size_t j = i, k = 0;
        unsigned sub = 0;
        for (; j < hs.n && strcmp(hs.h[j].jid, hs.h[i].jid) == 0; j++) {
            sub |= hs.h[j].sub;
            if (hs.h[j].name)
                sr_add_name(names, m->n + 1, &k, hs.h[j].name);
        }
        names[k] = NULL;
        if (fn(hs.h[i].jid, sub, names, ud))
            break;
        i = j;
    }
    free(names);
    free(hs.h);
    return rc;
}
