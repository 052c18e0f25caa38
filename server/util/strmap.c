#include "util/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char *key;     /* NULL: empty; TOMBSTONE: deleted */
    uint32_t hash;
    void *value;
};

struct strmap {
    struct slot *slots;
    size_t cap;    /* power of two */
    size_t count;  /* live entries */
    size_t used;   /* live + tombstones: drives growth */
};

static char tombstone;
#define TOMBSTONE (&tombstone)

/* FNV-1a: short keys (JIDs, event names), good enough spread, no seed needed
 * because keys are bounded by per-connection limits. */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

strmap *strmap_new(void)
{
    strmap *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->cap = 16;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void strmap_free(strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
            free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static struct slot *find(const strmap *m, const char *key, uint32_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != TOMBSTONE && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
}

void *strmap_get(const strmap *m, const char *key)
{
    struct slot *s = find(m, key, hash_str(key));
    return s ? s->value : NULL;
}

static int grow(strmap *m)
{
    size_t ncap = m->count * 4 >= m->cap ? m->cap * 2 : m->cap;
    struct slot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct slot *s = &m->slots[i];
        if (!s->key || s->key == TOMBSTONE)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->used = m->count;
    return 0;
}

int strmap_put(strmap *m, const char *key, void *value)
{
    uint32_t h = hash_str(key);
    struct slot *s = find(m, key, h);
    if (s) {
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return -1;
    char *k = strdup(key);
    if (!k)
        return -1;
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].key && m->slots[i].key != TOMBSTONE)
        i = (i + 1) & mask;
    if (!m->slots[i].key)
        m->used++;
    m->slots[i] = (struct slot){ k, h, value };
    m->count++;
    return 0;
}

void *strmap_del(strmap *m, const char *key)
{
    struct slot *s = find(m, key, hash_str(key));
    if (!s)
        return NULL;
    void *v = s->value;
    free(s->key);
    s->key = TOMBSTONE;
    s->value = NULL;
    m->count--;
    return v;
}

size_t strmap_count(const strmap *m)
{
    return m->count;
}

void strmap_foreach(const strmap *m, int (*fn)(const char *key, void *value, void *ud), void *ud)
{
    for (size_t i = 0; i < m->cap; i++) {
        struct slot *s = &m->slots[i];
        if (s->key && s->key != TOMBSTONE && fn(s->key, s->value, ud))
            return;
    }
}
