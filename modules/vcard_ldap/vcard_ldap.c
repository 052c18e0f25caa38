/* vcard_ldap: vCards from the directory (XEP-0054 vcard-temp).
 *
 * A vCard source for mod_vcard (modules/vcard/vcard_source.h): each
 * account's directory entry, read through auth_ldap's directory API and
 * mapped field by field (vl_map.c), is served as its vCard: alone
 * (mode "directory": read-only, sets are <not-allowed/>) or merged into
 * what the account stored (mode "merge": the directory's fields win,
 * except those named in user_fields, and the account's other fields
 * stay). Entries are cached for cache_ttl; when a read after that finds
 * the entry changed, the module fires "vcard-source-changed", so
 * mod_vcard announces the new vCard and mod_avatar updates the XEP-0153
 * photo hash (XEP-0398 §4) it puts into presence. */
#define _GNU_SOURCE /* tdestroy */
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xmppd/xmppd.h>

#include "../auth_ldap/directory_api.h"
#include "../vcard/vcard_source.h"
#include "vl_map.h"

/* ---- options ---- */

static const char *const vl_modes[] = { "merge", "directory", NULL };
enum { VL_MERGE = 0, VL_DIRECTORY = 1 };

typedef struct vl_conf {
    int mode;
    const char *const *user_fields;
    long long cache_ttl, cache_size, max_photo_size;
    vl_map map;
} vl_conf;

#define VL_FIELD(f, def, doc) \
    { #f, XMPPD_OPT_STRING, XMPPD_OFF(vl_map, f), def, 0, 0, NULL, 0, doc }
static const xmppd_option vl_map_fields[] = {
    VL_FIELD(fn, "cn", "FN, the full name (AD: displayName)"),
    VL_FIELD(family, "sn", "N/FAMILY"),
    VL_FIELD(given, "givenName", "N/GIVEN"),
    VL_FIELD(middle, NULL, "N/MIDDLE"),
    VL_FIELD(nickname, NULL, "NICKNAME"),
    VL_FIELD(email, "mail", "EMAIL/USERID, one per value"),
    VL_FIELD(tel, "telephoneNumber", "TEL WORK VOICE"),
    VL_FIELD(mobile, "mobile", "TEL CELL VOICE"),
    VL_FIELD(org, "o", "ORG/ORGNAME (AD: company)"),
    VL_FIELD(orgunit, "ou", "ORG/ORGUNIT (AD: department)"),
    VL_FIELD(title, "title", "TITLE"),
    VL_FIELD(role, NULL, "ROLE"),
    VL_FIELD(photo, "jpegPhoto", "PHOTO (JPEG, PNG or GIF; AD: thumbnailPhoto)"),
    VL_FIELD(url, NULL, "URL (labeledURI: the part before the label)"),
    VL_FIELD(street, "street", "ADR WORK STREET (AD: streetAddress)"),
    VL_FIELD(locality, "l", "ADR WORK LOCALITY"),
    VL_FIELD(region, "st", "ADR WORK REGION"),
    VL_FIELD(postcode, "postalCode", "ADR WORK PCODE"),
    VL_FIELD(country, NULL, "ADR WORK CTRY (AD: co)"),
    VL_FIELD(desc, "description", "DESC"),
    VL_FIELD(bday, NULL, "BDAY"),
    { NULL }
};

static const xmppd_option vl_options[] = {
    { "mode", XMPPD_OPT_ENUM, XMPPD_OFF(vl_conf, mode), "merge", 0, 0, vl_modes, XMPPD_OPT_INDEX,
      "merge: the directory's fields over the account's own vCard; directory: the directory's only (read-only)" },
    { "user_fields", XMPPD_OPT_LIST, XMPPD_OFF(vl_conf, user_fields), "[]", 0, 0, NULL, 0,
      "merge: vCard elements (PHOTO, NICKNAME...) where the account's own value wins over the directory's" },
    { "cache_ttl", XMPPD_OPT_DURATION, XMPPD_OFF(vl_conf, cache_ttl), "15m", 1000, 86400000, NULL, 0,
      "how long a directory entry's vCard is served before the entry is read again" },
    { "cache_size", XMPPD_OPT_INT, XMPPD_OFF(vl_conf, cache_size), "10000", 1, 10000000, NULL, 0,
      "most vCards kept (the least recently used go first)" },
    { "max_photo_size", XMPPD_OPT_SIZE, XMPPD_OFF(vl_conf, max_photo_size), "256k", 0, 16 * 1024 * 1024, NULL, 0,
      "largest photo put into a vCard (larger ones are left out)" },
    { "map", XMPPD_OPT_SECTION, XMPPD_OFF(vl_conf, map), NULL, 0, 0, NULL, 0,
      "directory attribute of each vCard field (null: not mapped)", vl_map_fields },
    { NULL }
};

/* ---- the cache ---- */

typedef struct vl_entry vl_entry;
struct vl_entry {
    char *user;            /* tree key */
    xmppd_stanza *vc;      /* the directory's vCard; NULL: no such entry */
    char *xml;             /* vc serialised, to see changes */
    uint64_t fetched;
    vl_entry *older, *newer; /* LRU list */
};

typedef struct vl_state {
    vcard_source src; /* first: the source pointer is the state */
    xmppd_module *m;
    xmppd_host *host;
    const vl_conf *conf;
    const char *attrs[VL_MAX_ATTRS + 1];
    void *tree;            /* vl_entry * by user */
    size_t n;
    vl_entry *oldest, *newest;
    bool photo_warned;
} vl_state;

static int vl_cmp(const void *a, const void *b)
{
    return strcmp(((const vl_entry *)a)->user, ((const vl_entry *)b)->user);
}

static void vl_entry_free(void *p)
{
    vl_entry *e = p;
    xmppd_stanza_unref(e->vc);
    free(e->xml);
    free(e->user);
    free(e);
}

static void vl_unlink(vl_state *st, vl_entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        st->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        st->newest = e->older;
    e->older = e->newer = NULL;
}

static void vl_push_newest(vl_state *st, vl_entry *e)
{
    e->older = st->newest;
    e->newer = NULL;
    if (st->newest)
        st->newest->newer = e;
    else
        st->oldest = e;
    st->newest = e;
}

static vl_entry *vl_find(vl_state *st, const char *user)
{
    vl_entry key = { .user = (char *)user };
    vl_entry **p = tfind(&key, &st->tree, vl_cmp);
    return p ? *p : NULL;
}

static void vl_evict(vl_state *st)
{
    while (st->n > (size_t)st->conf->cache_size && st->oldest) {
        vl_entry *e = st->oldest;
        vl_unlink(st, e);
        tdelete(e, &st->tree, vl_cmp);
        vl_entry_free(e);
        st->n--;
    }
}

/* Caches vc (taken) as user's; true when an earlier, different one was
 * cached (the entry changed). */
static bool vl_cache_put(vl_state *st, const char *user, xmppd_stanza *vc)
{
    char *xml = vc ? xmppd_stanza_to_string(vc, "vcard-temp", NULL) : NULL;
    vl_entry *e = vl_find(st, user);
    bool changed = false;
    if (e) {
        changed = (e->xml == NULL) != (xml == NULL) || (xml && strcmp(e->xml, xml) != 0);
        vl_unlink(st, e);
        xmppd_stanza_unref(e->vc);
        free(e->xml);
    } else if (!(e = calloc(1, sizeof(*e))) || !(e->user = strdup(user)) || !tsearch(e, &st->tree, vl_cmp)) {
        if (e)
            free(e->user);
        free(e);
        free(xml);
        xmppd_stanza_unref(vc);
        return false;
    } else {
        st->n++;
    }
    e->vc = vc;
    e->xml = xml;
    e->fetched = xmppd_now_ms();
    vl_push_newest(st, e);
    vl_evict(st);
    return changed;
}

/* ---- serving ---- */

/* One serve() call: the account's stored vCard waits for the entry. */
typedef struct vl_req {
    vl_state *st;
    char *user;
    xmppd_stanza *stored;  /* copy; NULL: none */
    vcard_source_cb cb;
    void *ud;
    xmppd_call *call;      /* the caller (mod_vcard) */
    bool answered;
} vl_req;

static void vl_req_free(vl_req *r)
{
    xmppd_call_finish(r->call);
    xmppd_stanza_unref(r->stored);
    free(r->user);
    free(r);
}

static bool vl_user_field(const vl_state *st, const char *name)
{
    for (const char *const *f = st->conf->user_fields; f && *f; f++)
        if (strcasecmp(*f, name) == 0)
            return true;
    return false;
}

/* The vCard to serve: the directory's (dir; NULL: not in the directory)
 * and the stored one, per mode. A new tree or NULL (none). */
static xmppd_stanza *vl_merge(const vl_state *st, const xmppd_stanza *stored, const xmppd_stanza *dir)
{
    if (!dir)
        return stored ? xmppd_stanza_copy(stored) : NULL;
    if (st->conf->mode == VL_DIRECTORY || !stored)
        return xmppd_stanza_copy(dir);
    xmppd_stanza *out = xmppd_stanza_copy(stored);
    for (xmppd_stanza *c = xmppd_stanza_first(dir); out && c; c = xmppd_stanza_next(c)) {
        const char *name = xmppd_stanza_name(c);
        xmppd_stanza *mine = xmppd_stanza_child(out, name, xmppd_stanza_ns(c));
        if (mine && vl_user_field(st, name))
            continue;
        /* the directory's fields replace the account's of the same name */
        while (mine) {
            xmppd_stanza_remove(out, mine);
            mine = xmppd_stanza_child(out, name, xmppd_stanza_ns(c));
        }
    }
    for (xmppd_stanza *c = xmppd_stanza_first(dir); out && c; c = xmppd_stanza_next(c)) {
        const char *name = xmppd_stanza_name(c);
        if (vl_user_field(st, name) && xmppd_stanza_child(stored, name, xmppd_stanza_ns(c)))
            continue;
        xmppd_stanza *copy = xmppd_stanza_copy(c);
        if (!copy || !xmppd_stanza_add(out, copy)) {
            xmppd_stanza_unref(copy);
            xmppd_stanza_unref(out);
            return NULL;
        }
    }
    return out;
}

/* Answers r (unless its caller went away) and frees it. */
static void vl_answer(vl_req *r, int status, const xmppd_stanza *dir)
{
    bool live = xmppd_call_finish(r->call);
    r->call = NULL;
    if (live && !r->answered) {
        xmppd_stanza *vc = status == VCARD_SOURCE_OK ? vl_merge(r->st, r->stored, dir) : NULL;
        r->cb(status, vc, r->ud);
        xmppd_stanza_unref(vc);
    }
    vl_req_free(r);
}

static void vl_on_entry(int status, const directory_entry *entries, size_t n, void *ud)
{
    vl_req *r = ud;
    vl_state *st = r->st;
    if (status != DIRECTORY_OK) {
        vl_entry *old = status == DIRECTORY_ERROR ? vl_find(st, r->user) : NULL;
        if (old) /* the directory is away: what was read last */
            vl_answer(r, VCARD_SOURCE_OK, old->vc);
        else
            vl_answer(r, VCARD_SOURCE_ERROR, NULL);
        return;
    }
    bool dropped = false;
    xmppd_stanza *vc = n > 0 ? vl_vcard(&st->conf->map, &entries[0], (size_t)st->conf->max_photo_size, &dropped)
                             : NULL;
    if (dropped && !st->photo_warned) {
        st->photo_warned = true;
        xmppd_log(st->m, XMPPD_LOG_WARN, "the photo of %s is left out: not a JPEG, PNG or GIF image, or larger "
                  "than max_photo_size (logged once)", r->user);
    }
    if (n > 0 && !vc) {
        vl_answer(r, VCARD_SOURCE_ERROR, NULL);
        return;
    }
    bool changed = vl_cache_put(st, r->user, vc);
    vl_entry *e = vl_find(st, r->user);
    char *user = strdup(r->user);
    vl_answer(r, VCARD_SOURCE_OK, e ? e->vc : NULL);
    if (changed && user)
        xmppd_notify(st->host, VCARD_SOURCE_EVENT_CHANGED, NULL, user);
    free(user);
}

static void vl_deferred(void *ud)
{
    vl_req *r = ud;
    vl_entry *e = vl_find(r->st, r->user);
    vl_answer(r, VCARD_SOURCE_OK, e ? e->vc : NULL);
}

/* This module unloads with r waiting: its caller hears an error. */
static void vl_defer_cancelled(void *ud)
{
    vl_answer(ud, VCARD_SOURCE_ERROR, NULL);
}

/* mod_vcard unloads first: it hears CANCELLED now, nothing later. */
static void vl_call_cancelled(void *p)
{
    vl_req *r = p;
    r->answered = true;
    r->cb(VCARD_SOURCE_CANCELLED, NULL, r->ud);
}

static const directory_api *vl_directory(const vl_state *st)
{
    const directory_api *d = xmppd_use(st->host, "directory");
    return d && d->version >= DIRECTORY_API_VERSION && d->size >= sizeof(directory_api) ? d : NULL;
}

static void vl_serve(const vcard_source *src, xmppd_module *caller, const char *user, const xmppd_stanza *stored,
                     vcard_source_cb cb, void *ud)
{
    vl_state *st = (vl_state *)src;
    vl_req *r = calloc(1, sizeof(*r));
    if (!r || !(r->user = strdup(user)) || (stored && !(r->stored = xmppd_stanza_copy(stored))) ||
        !(r->call = xmppd_call_new(caller, vl_call_cancelled, r))) {
        if (r) {
            xmppd_stanza_unref(r->stored);
            free(r->user);
        }
        free(r);
        cb(VCARD_SOURCE_ERROR, NULL, ud); /* cannot even be kept */
        return;
    }
    r->st = st;
    r->cb = cb;
    r->ud = ud;
    vl_entry *e = vl_find(st, user);
    const directory_api *dir = vl_directory(st);
    bool fresh = e && xmppd_now_ms() - e->fetched < (uint64_t)st->conf->cache_ttl;
    if (fresh || !dir) {
        if (e) {
            vl_unlink(st, e);
            vl_push_newest(st, e);
        }
        if (xmppd_defer(st->m, vl_deferred, vl_defer_cancelled, r) != 0)
            vl_answer(r, VCARD_SOURCE_ERROR, NULL);
        return;
    }
    dir->user_entry(dir, st->m, user, st->attrs, vl_on_entry, r);
}

static bool vl_read_only(const vcard_source *src)
{
    return ((const vl_state *)src)->conf->mode == VL_DIRECTORY;
}

/* ---- module ---- */

static void vl_unload(xmppd_module *m)
{
    vl_state *st = xmppd_module_data(m);
    if (!st)
        return;
    tdestroy(st->tree, vl_entry_free);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int vl_load(xmppd_module *m, const void *conf)
{
    vl_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->src = (vcard_source){ VCARD_SOURCE_VERSION, sizeof(vcard_source), vl_read_only, vl_serve };
    st->m = m;
    st->host = xmppd_module_host(m);
    st->conf = conf;
    vl_map_attrs(&st->conf->map, st->attrs);
    xmppd_module_set_data(m, st);
    if (xmppd_provide(m, "vcard_source", &st->src) < 0 ||
        xmppd_event_declare(m, VCARD_SOURCE_EVENT_CHANGED, XMPPD_EVENT_ALL,
                            "data: const char * account: its directory entry changed (vcard_source.h)") < 0) {
        vl_unload(m);
        return xmppd_module_refuse(m, "another vCard source is loaded on this host");
    }
    return 0;
}

XMPPD_MODULE(vcard_ldap,
    .version = "1.0",
    .summary = "vCards (XEP-0054) from the directory: mapped attributes, merged or read-only, cached",
    .depends = (const char *const[]){ "vcard", "auth_ldap", NULL },
    .specs = (const char *const[]){ "XEP-0054", "XEP-0153", NULL },
    .options = vl_options,
    .conf_size = sizeof(vl_conf),
    .load = vl_load,
    .unload = vl_unload);
