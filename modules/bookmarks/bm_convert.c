/* Between XEP-0048 <storage/> and XEP-0402 items (XEP-0402 §5.3, XEP-0411
 * §3): the same room JID, name, autojoin, nick and password; XEP-0402's
 * <extensions/> survive a round trip through an old client, XEP-0048's
 * <url/> bookmarks one through a new client. */
#include <stdlib.h>
#include <string.h>

#include "bm.h"

static char *bm_dup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void bm_conf_clear(bm_conf *c)
{
    free(c->jid);
    free(c->name);
    free(c->nick);
    free(c->password);
    xmppd_stanza_unref(c->extensions);
    memset(c, 0, sizeof(*c));
}

void bm_list_clear(bm_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        bm_conf_clear(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static bool bm_true(const char *v)
{
    return v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* Adds the conference el (either namespace; jid: the room, from el's 'jid'
 * or the item id). 0 (also when skipped) or -1 on OOM. */
static int bm_add(bm_list *l, const xmppd_stanza *el, const char *jid)
{
    xmppd_jid *j = jid ? xmppd_jid_parse(jid) : NULL;
    if (!j || j->resource || bm_find(l, j->bare)) {
        xmppd_jid_free(j);
        return 0; /* not a room JID, or twice */
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        bm_conf *v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            xmppd_jid_free(j);
            return -1;
        }
        l->v = v;
        l->cap = cap;
    }
    bm_conf *c = &l->v[l->n];
    memset(c, 0, sizeof(*c));
    c->jid = strdup(j->bare);
    xmppd_jid_free(j);
    c->name = bm_dup0(xmppd_stanza_attr(el, "name"));
    c->autojoin = bm_true(xmppd_stanza_attr(el, "autojoin"));
    c->nick = bm_dup0(xmppd_stanza_child_text(el, "nick", NULL));
    c->password = bm_dup0(xmppd_stanza_child_text(el, "password", NULL));
    xmppd_stanza *ext = xmppd_stanza_child(el, "extensions", BM_NS_NATIVE);
    c->extensions = ext ? xmppd_stanza_copy(ext) : NULL;
    if (!c->jid) {
        bm_conf_clear(c);
        return -1;
    }
    l->n++;
    return 0;
}

int bm_from_storage(const xmppd_stanza *storage, bm_list *out)
{
    memset(out, 0, sizeof(*out));
    for (xmppd_stanza *c = storage ? xmppd_stanza_first(storage) : NULL; c; c = xmppd_stanza_next(c))
        if (strcmp(xmppd_stanza_name(c), "conference") == 0 &&
            strcmp(xmppd_stanza_ns(c), BM_NS_LEGACY) == 0 &&
            bm_add(out, c, xmppd_stanza_attr(c, "jid")) < 0) {
            bm_list_clear(out);
            return -1;
        }
    return 0;
}

int bm_from_items(const xmppd_stanza *items, bm_list *out)
{
    memset(out, 0, sizeof(*out));
    for (xmppd_stanza *it = items ? xmppd_stanza_first(items) : NULL; it; it = xmppd_stanza_next(it)) {
        xmppd_stanza *c = xmppd_stanza_child(it, "conference", BM_NS_NATIVE);
        if (c && bm_add(out, c, xmppd_stanza_attr(it, "id")) < 0) {
            bm_list_clear(out);
            return -1;
        }
    }
    return 0;
}

const bm_conf *bm_find(const bm_list *l, const char *jid)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (strcmp(l->v[i].jid, jid) == 0)
            return &l->v[i];
    return NULL;
}

static bool bm_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool bm_same(const bm_conf *a, const bm_conf *b)
{
    return a && b && a->autojoin == b->autojoin && bm_eq(a->name, b->name) &&
           bm_eq(a->nick, b->nick) && bm_eq(a->password, b->password);
}

/* <name>text</name> in el (text NULL: nothing). */
static int bm_text_child(xmppd_stanza *el, const char *name, const char *text)
{
    xmppd_stanza *c = text ? xmppd_stanza_tag(el, name, NULL) : NULL;
    if (text && (!c || xmppd_stanza_add_text(c, text, strlen(text)) < 0))
        return -1;
    return 0;
}

/* <conference/> in ns with c's attributes and children (jid attribute in
 * the XEP-0048 form only). */
static xmppd_stanza *bm_conference(const bm_conf *c, const char *ns, const bm_conf *keep)
{
    bool legacy = strcmp(ns, BM_NS_LEGACY) == 0;
    xmppd_stanza *el = xmppd_stanza_new("conference", ns);
    if (!el)
        return NULL;
    if (legacy)
        xmppd_stanza_set_attr(el, "jid", c->jid);
    if (c->name)
        xmppd_stanza_set_attr(el, "name", c->name);
    xmppd_stanza_set_attr(el, "autojoin", c->autojoin ? "true" : "false");
    const xmppd_stanza *ext = c->extensions ? c->extensions : keep ? keep->extensions : NULL;
    if (bm_text_child(el, "nick", c->nick) < 0 || bm_text_child(el, "password", c->password) < 0 ||
        (!legacy && ext && !xmppd_stanza_add(el, xmppd_stanza_copy(ext)))) {
        xmppd_stanza_unref(el);
        return NULL;
    }
    return el;
}

xmppd_stanza *bm_to_conference(const bm_conf *c, const bm_conf *keep)
{
    return bm_conference(c, BM_NS_NATIVE, keep);
}

xmppd_stanza *bm_to_storage(const bm_list *l, const xmppd_stanza *old)
{
    xmppd_stanza *s = xmppd_stanza_new("storage", BM_NS_LEGACY);
    for (size_t i = 0; s && i < l->n; i++) {
        xmppd_stanza *c = bm_conference(&l->v[i], BM_NS_LEGACY, NULL);
        if (!c || !xmppd_stanza_add(s, c)) {
            xmppd_stanza_unref(s);
            return NULL;
        }
    }
    for (xmppd_stanza *u = old ? xmppd_stanza_first(old) : NULL; s && u; u = xmppd_stanza_next(u))
        if (strcmp(xmppd_stanza_name(u), "url") == 0)
            xmppd_stanza_add(s, xmppd_stanza_copy(u));
    return s;
}
